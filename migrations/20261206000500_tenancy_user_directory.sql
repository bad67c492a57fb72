-- tenancy: the user directory. Who a user is (an email, and a name where
-- the host's sign-up stores one in raw_user_meta_data), read from
-- auth.users for pages that show people, and shown to a caller only where
-- it may learn it. migrations/README.md ("The user directory") is the
-- contract.
--
-- public.tenancy_user_profiles(user_ids) is `security invoker`, as every
-- RPC: the service role (which bypasses RLS) runs
-- tenancy.user_profiles_for(user_ids, null) and reads any user; a user JWT
-- goes through tenancy.member_user_profiles, a security definer that reads
-- only the users who share at least one organization with the JWT's user,
-- and that user itself. Any other id is left out of the answer, as an
-- unknown one is: nobody learns from it that a user exists.
-- `authenticated` holds no privilege on auth.users; only these functions,
-- owned by the migrations' role, read it.
--
-- Idempotent: `create or replace`, `on conflict do nothing`.

-- The most ids one call takes (tenancy::store::MAX_PROFILE_IDS).
create or replace function tenancy.max_profile_ids() returns integer
language sql immutable
set search_path = ''
as $$
  select 1000
$$;

-- [{user_id, email, name}] of the users in `user_ids` that exist and that
-- `viewer` may see: every one when `viewer` is null (the service role),
-- else `viewer` itself and the users who share an organization with it.
-- Ordered by user id; each user once. `name` is raw_user_meta_data's
-- `name`, else its `full_name` (what Supabase's OAuth providers store),
-- blank ones and non-strings as null; a blank email is null too.
-- Executable by service_role only: the checked path is
-- tenancy.member_user_profiles.
create or replace function tenancy.user_profiles_for(user_ids uuid[], viewer uuid)
returns jsonb
language sql stable security definer
set search_path = ''
as $$
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
      'user_id', u.id,
      'email', nullif(pg_catalog.btrim(u.email), ''),
      'name', coalesce(
        nullif(pg_catalog.btrim(case pg_catalog.jsonb_typeof(u.raw_user_meta_data -> 'name')
          when 'string' then u.raw_user_meta_data ->> 'name' end), ''),
        nullif(pg_catalog.btrim(case pg_catalog.jsonb_typeof(u.raw_user_meta_data -> 'full_name')
          when 'string' then u.raw_user_meta_data ->> 'full_name' end), ''))
    ) order by u.id), '[]'::jsonb)
  from auth.users u
  where u.id = any (user_profiles_for.user_ids)
    and (user_profiles_for.viewer is null
      or u.id = user_profiles_for.viewer
      or exists (
        select 1
        from public.user_organizations mine
        join public.user_organizations theirs
          on theirs.organization_id = mine.organization_id
        where mine.user_id = user_profiles_for.viewer
          and theirs.user_id = u.id))
$$;

-- The checked path for a user JWT: the profiles the JWT's user may see.
-- 42501 without a signed-in user.
create or replace function tenancy.member_user_profiles(user_ids uuid[])
returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_user uuid := (select auth.uid());
begin
  if v_user is null then
    raise exception 'this needs a signed-in user (a user JWT) or the service role'
      using errcode = '42501';
  end if;
  -- Checked here too: a direct SQL call skips the public function.
  if pg_catalog.cardinality(member_user_profiles.user_ids) > tenancy.max_profile_ids() then
    raise exception 'user_ids: % ids; at most % a call',
      pg_catalog.cardinality(member_user_profiles.user_ids), tenancy.max_profile_ids()
      using errcode = '22023';
  end if;
  return tenancy.user_profiles_for(member_user_profiles.user_ids, v_user);
end
$$;

-- [{user_id, email, name}] of `user_ids` (at most 1000; 22023 otherwise,
-- or when null) that the caller may see; see above.
create or replace function public.tenancy_user_profiles(user_ids uuid[])
returns jsonb
language plpgsql stable
set search_path = ''
as $$
begin
  if tenancy_user_profiles.user_ids is null then
    raise exception 'user_ids is required' using errcode = '22023';
  end if;
  if pg_catalog.cardinality(tenancy_user_profiles.user_ids) > tenancy.max_profile_ids() then
    raise exception 'user_ids: % ids; at most % a call',
      pg_catalog.cardinality(tenancy_user_profiles.user_ids), tenancy.max_profile_ids()
      using errcode = '22023';
  end if;
  if tenancy.is_privileged() then
    return tenancy.user_profiles_for(tenancy_user_profiles.user_ids, null);
  end if;
  return tenancy.member_user_profiles(tenancy_user_profiles.user_ids);
end
$$;

-- ---------------------------------------------------------------------------
-- Who may call what. Supabase grants every new function in public to anon
-- and authenticated, and PostgreSQL every new function to PUBLIC: revoke.

revoke all on function
  tenancy.max_profile_ids(),
  tenancy.user_profiles_for(uuid[], uuid),
  tenancy.member_user_profiles(uuid[]),
  public.tenancy_user_profiles(uuid[])
from public, anon, authenticated;

grant execute on function tenancy.max_profile_ids() to authenticated, service_role;
grant execute on function tenancy.user_profiles_for(uuid[], uuid) to service_role;
grant execute on function tenancy.member_user_profiles(uuid[]) to authenticated;
grant execute on function public.tenancy_user_profiles(uuid[]) to authenticated, service_role;

insert into tenancy.schema_migrations (version, name)
values (6, '20261206000500_tenancy_user_directory')
on conflict do nothing;
