-- tenancy: the schema version, recorded in the database.
--
-- tenancy.schema_migrations holds one row per schema version applied:
-- version 1 is the baseline (the six 20260301 files), and every later file
-- inserts its own version at its end, in the transaction that applies it.
-- public.tenancy_schema_version() reads them: {version, versions}, the
-- highest version and all of them in order. The library reads it at
-- start-up and names the files to apply when the database is behind.
--
-- Idempotent: `if not exists`, `create or replace`, `on conflict do nothing`.

create table if not exists tenancy.schema_migrations (
  version integer primary key,
  name text not null,
  applied_at timestamptz not null default now()
);

-- Read only through tenancy.schema_version() (and by service_role).
alter table tenancy.schema_migrations enable row level security;
revoke all on table tenancy.schema_migrations from public, anon, authenticated;
grant select on table tenancy.schema_migrations to service_role;

-- {version, versions}: the highest version applied and every version, in
-- order. Security definer, so a user JWT reads the version without a
-- privilege on the table.
create or replace function tenancy.schema_version() returns jsonb
language sql stable security definer
set search_path = ''
as $$
  select pg_catalog.jsonb_build_object(
    'version', pg_catalog.max(m.version),
    'versions', coalesce(pg_catalog.jsonb_agg(m.version order by m.version), '[]'::jsonb))
  from tenancy.schema_migrations m
$$;

revoke all on function tenancy.schema_version() from public, anon;
grant execute on function tenancy.schema_version() to authenticated, service_role;

-- ---------------------------------------------------------------------------
-- tenancy_schema_version() -> {version, versions}
-- The RPC: no security definer in `public`, so it calls the one in
-- `tenancy`.

create or replace function public.tenancy_schema_version() returns jsonb
language sql stable
set search_path = ''
as $$
  select tenancy.schema_version()
$$;

revoke all on function public.tenancy_schema_version() from public, anon, authenticated;
grant execute on function public.tenancy_schema_version() to authenticated, service_role;

insert into tenancy.schema_migrations (version, name) values
  (1, 'baseline: 20260301000100..600'),
  (2, '20261206000100_tenancy_schema_version')
on conflict do nothing;
