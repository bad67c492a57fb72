-- tenancy schema version 14: usage_history (being written).

insert into tenancy.schema_migrations (version, name)
values (14, '20261206001300_tenancy_usage_history')
on conflict do nothing;
