-- tenancy schema version 13: plans (being written).

insert into tenancy.schema_migrations (version, name)
values (13, '20261206001200_tenancy_plans')
on conflict do nothing;
