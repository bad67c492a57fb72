-- tenancy: budget leases.

insert into tenancy.schema_migrations (version, name)
values (12, '20261206001100_tenancy_budget_leases')
on conflict do nothing;
