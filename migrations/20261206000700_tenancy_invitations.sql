-- tenancy: invitations to an organization, by email or link.

insert into tenancy.schema_migrations (version, name)
values (8, '20261206000700_tenancy_invitations')
on conflict do nothing;
