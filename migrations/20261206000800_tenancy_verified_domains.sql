-- tenancy: verified domains and joining through them.

insert into tenancy.schema_migrations (version, name)
values (9, '20261206000800_tenancy_verified_domains')
on conflict do nothing;
