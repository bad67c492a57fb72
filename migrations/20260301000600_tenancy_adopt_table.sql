-- tenancy: adopting a host table.
--
--   select tenancy.adopt_table('public.brands');
--
-- makes a table tenant-scoped:
--   * adds organization_id uuid (nullable, references organizations on
--     delete cascade);
--   * moves rows without an organization into the organization named
--     default_org_name (the oldest one of that name), creating it when
--     missing — with slug derived from the name and owner_user_id =
--     default_owner (who then gets the owner role), or no owner at all when
--     default_owner is null: service_role adds the first owner later;
--   * sets organization_id not null, indexes it, enables RLS;
--   * installs the standard policies for `authenticated`: members and above
--     read, insert, update and delete rows of their organizations; viewers
--     only read; no row of another organization is reachable.
-- Calling it again is harmless. Other policies already on the table stay
-- (and OR with these), so it warns about each one.
-- Returns the default organization's id, or null when no row needed it.
-- Run it as the table's owner (a migration); it is not granted to API roles.

-- A row of an adopted table never changes organization, whoever updates it
-- (service_role included): an upsert that collides with another
-- organization's row, or an update naming another organization, fails
-- instead of taking the row over. Move data between organizations by
-- copying it, deliberately.
create or replace function tenancy.keep_organization_id()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.organization_id is distinct from old.organization_id then
    raise exception 'a row of % cannot move to another organization', tg_table_name
      using errcode = '42501';
  end if;
  return new;
end;
$$;

create or replace function tenancy.adopt_table(
  target regclass,
  default_org_name text default 'Default',
  default_owner uuid default null
) returns uuid
language plpgsql
set search_path = ''
as $$
declare
  v_table text;
  v_org uuid;
  v_has_nulls boolean;
  v_slug text;
  v_policy text;
begin
  select c.relname into v_table from pg_catalog.pg_class c where c.oid = target;

  execute format(
    'alter table %s add column if not exists organization_id uuid '
    'references public.organizations (id) on delete cascade', target);

  execute format('select exists (select 1 from %s where organization_id is null)', target)
    into v_has_nulls;
  if v_has_nulls then
    select o.id into v_org from public.organizations o
    where o.name = default_org_name
    order by o.created_at, o.id
    limit 1;
    if v_org is null then
      v_slug := btrim(left(btrim(regexp_replace(lower(default_org_name), '[^a-z0-9]+', '-', 'g'), '-'), 63), '-');
      if v_slug = '' then
        v_slug := 'default';
      end if;
      if exists (select 1 from public.organizations o where o.slug = v_slug) then
        v_slug := btrim(left(v_slug, 56), '-') || '-' || left(md5(gen_random_uuid()::text), 6);
      end if;
      insert into public.organizations (name, slug, owner_user_id)
      values (default_org_name, v_slug, default_owner)
      returning id into v_org;
    end if;
    execute format('update %s set organization_id = $1 where organization_id is null', target)
      using v_org;
  end if;

  execute format('alter table %s alter column organization_id set not null', target);
  execute format('create index if not exists %I on %s (organization_id)',
                 left(v_table, 40) || '_organization_id_idx', target);
  execute format('alter table %s enable row level security', target);
  execute format('drop trigger if exists tenancy_keep_organization_id on %s', target);
  execute format(
    'create trigger tenancy_keep_organization_id before update of organization_id on %s '
    'for each row execute function tenancy.keep_organization_id()', target);

  for v_policy in
    select p.polname from pg_catalog.pg_policy p
    where p.polrelid = target and p.polname not like 'tenancy\_%'
  loop
    raise warning 'policy % on % is not a tenancy policy; it applies as well (policies OR together)',
      v_policy, target;
  end loop;

  execute format('drop policy if exists tenancy_select on %s', target);
  execute format(
    'create policy tenancy_select on %s for select to authenticated '
    'using (organization_id = any (array(select tenancy.org_ids(''viewer''))))', target);
  execute format('drop policy if exists tenancy_insert on %s', target);
  execute format(
    'create policy tenancy_insert on %s for insert to authenticated '
    'with check (organization_id = any (array(select tenancy.org_ids(''member''))))', target);
  execute format('drop policy if exists tenancy_update on %s', target);
  execute format(
    'create policy tenancy_update on %s for update to authenticated '
    'using (organization_id = any (array(select tenancy.org_ids(''member'')))) '
    'with check (organization_id = any (array(select tenancy.org_ids(''member''))))', target);
  execute format('drop policy if exists tenancy_delete on %s', target);
  execute format(
    'create policy tenancy_delete on %s for delete to authenticated '
    'using (organization_id = any (array(select tenancy.org_ids(''member''))))', target);

  return v_org;
end
$$;

revoke all on function
  tenancy.keep_organization_id(),
  tenancy.adopt_table(regclass, text, uuid)
from public;
