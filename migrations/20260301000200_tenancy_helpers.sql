-- tenancy: helper functions in the `tenancy` schema (not exposed by
-- PostgREST). The membership helpers are `security definer` with an empty
-- search_path, so policies can call them without recursing into the RLS of
-- user_organizations; they only ever answer about the acting user
-- (auth.uid()).

-- owner 4 > admin 3 > member 2 > viewer 1; anything else 0.
create or replace function tenancy.role_rank(role text) returns integer
language sql immutable parallel safe
set search_path = ''
as $$
  select case role
    when 'owner' then 4
    when 'admin' then 3
    when 'member' then 2
    when 'viewer' then 1
    else 0
  end
$$;

-- Whether the current role bypasses RLS (service_role, a superuser, the
-- migration owner). Security invoker on purpose: it must see the caller.
create or replace function tenancy.is_privileged() returns boolean
language sql stable
set search_path = ''
as $$
  select coalesce(
    (select r.rolbypassrls or r.rolsuper from pg_catalog.pg_roles r where r.rolname = current_user),
    false
  )
$$;

-- Whether the acting user belongs to `org`.
create or replace function tenancy.is_member(org uuid) returns boolean
language sql stable security definer
set search_path = ''
as $$
  select exists (
    select 1 from public.user_organizations m
    where m.organization_id = org and m.user_id = (select auth.uid())
  )
$$;

-- Whether the acting user's role in `org` is at least `min_role`.
create or replace function tenancy.has_role(org uuid, min_role text) returns boolean
language sql stable security definer
set search_path = ''
as $$
  select exists (
    select 1 from public.user_organizations m
    where m.organization_id = org
      and m.user_id = (select auth.uid())
      and tenancy.role_rank(m.role) >= tenancy.role_rank(min_role)
  )
$$;

-- The organizations where the acting user's role is at least `min_role`.
-- Policies use it as `organization_id = any (array(select tenancy.org_ids(..)))`:
-- evaluated once per statement (an InitPlan), and the comparison can use the
-- index on organization_id — unlike a per-row is_member(organization_id).
create or replace function tenancy.org_ids(min_role text default 'viewer') returns setof uuid
language sql stable security definer
set search_path = ''
as $$
  select m.organization_id from public.user_organizations m
  where m.user_id = (select auth.uid())
    and tenancy.role_rank(m.role) >= tenancy.role_rank(min_role)
$$;

-- The acting user's role in `org`, or null.
create or replace function tenancy.role_in(org uuid) returns text
language sql stable security definer
set search_path = ''
as $$
  select m.role from public.user_organizations m
  where m.organization_id = org and m.user_id = (select auth.uid())
$$;

-- Whether `org` has an owner other than `excluded_user`. For the last-owner
-- rule in the membership trigger. Executable by `authenticated` (the
-- trigger runs as the caller), so by direct SQL — not through PostgREST,
-- which does not expose this schema — it answers for any org id.
create or replace function tenancy.other_owner_exists(org uuid, excluded_user uuid) returns boolean
language sql stable security definer
set search_path = ''
as $$
  select exists (
    select 1 from public.user_organizations m
    where m.organization_id = org and m.role = 'owner' and m.user_id <> excluded_user
  )
$$;

-- Whether the organization row exists (false while it is being deleted,
-- so the cascade to its memberships is allowed).
create or replace function tenancy.org_exists(org uuid) returns boolean
language sql stable security definer
set search_path = ''
as $$
  select exists (select 1 from public.organizations o where o.id = org)
$$;

-- Whether feature `key` is enabled for `org`. Security invoker: RLS on
-- org_features decides what the caller sees, so a user JWT gets false for
-- organizations it does not belong to; service_role sees every org.
create or replace function tenancy.has_feature(org uuid, key text) returns boolean
language sql stable
set search_path = ''
as $$
  select coalesce(
    (select f.enabled from public.org_features f
     where f.organization_id = org and f.feature_key = key),
    false
  )
$$;

-- Raises 42501 unless the acting user (the JWT's) is a member of `org`
-- acting for itself (`for_user` null or its own id). Decides by the JWT
-- alone, so it answers the same inside a security definer function.
create or replace function tenancy.require_member(org uuid, for_user uuid) returns void
language plpgsql stable
set search_path = ''
as $$
begin
  if (select auth.uid()) is null or not tenancy.is_member(org) then
    raise exception 'not a member of organization %', org
      using errcode = '42501';
  end if;
  if for_user is not null and for_user <> (select auth.uid()) then
    raise exception 'may read only its own usage, not user %', for_user
      using errcode = '42501';
  end if;
end
$$;

revoke all on all functions in schema tenancy from public;
revoke all on schema tenancy from public;
grant usage on schema tenancy to authenticated, service_role;
grant execute on function
  tenancy.is_timezone(text),
  tenancy.role_rank(text),
  tenancy.is_privileged(),
  tenancy.is_member(uuid),
  tenancy.has_role(uuid, text),
  tenancy.org_ids(text),
  tenancy.role_in(uuid),
  tenancy.other_owner_exists(uuid, uuid),
  tenancy.org_exists(uuid),
  tenancy.has_feature(uuid, text),
  tenancy.require_member(uuid, uuid)
to authenticated, service_role;
