-- tenancy: short-window rate limits (GCRA).

insert into tenancy.schema_migrations (version, name)
values (11, '20261206001000_tenancy_rate_limits')
on conflict do nothing;
