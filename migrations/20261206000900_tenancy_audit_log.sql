-- tenancy: the audit log, written by triggers with every change.

insert into tenancy.schema_migrations (version, name)
values (10, '20261206000900_tenancy_audit_log')
on conflict do nothing;
