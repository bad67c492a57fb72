-- tenancy: one SQL function per store primitive that was a table request.
--
-- Reading, renaming and deleting an organization, the memberships (read,
-- add, change by compare-and-set, remove), and reading and deleting
-- features and limits; and creating an organization without an owner. Each
-- primitive is then one call, over PostgREST (`rpc`) or a direct
-- connection alike.
--
-- All are `security invoker`: a user JWT meets row-level security and the
-- membership trigger exactly as its table requests did, and service_role
-- bypasses RLS. They return jsonb in the serde shape of the Rust type
-- (migrations/README.md, examples/); a read of at most one row returns an
-- array of zero or one element. The JSON of each row type is built in one
-- place, tenancy.organization_json / membership_json / feature_json /
-- limit_json, which stay inlinable (`language sql`, no `set` clause, every
-- name schema-qualified).
--
-- Idempotent: `create or replace`, `on conflict do nothing`.

-- ---------------------------------------------------------------------------
-- The JSON of each row type.

-- Organization: {id, name, slug, owner_user_id, timezone, created_at}.
create or replace function tenancy.organization_json(o public.organizations) returns jsonb
language sql stable
as $$
  select pg_catalog.jsonb_build_object(
    'id', o.id,
    'name', o.name,
    'slug', o.slug,
    'owner_user_id', o.owner_user_id,
    'timezone', o.timezone,
    'created_at', o.created_at)
$$;

-- Membership: {user_id, organization_id, role, created_at}.
create or replace function tenancy.membership_json(m public.user_organizations) returns jsonb
language sql stable
as $$
  select pg_catalog.jsonb_build_object(
    'user_id', m.user_id,
    'organization_id', m.organization_id,
    'role', m.role,
    'created_at', m.created_at)
$$;

-- Feature: {key, enabled, config, updated_at}; a null config is JSON null.
create or replace function tenancy.feature_json(f public.org_features) returns jsonb
language sql stable
as $$
  select pg_catalog.jsonb_build_object(
    'key', f.feature_key,
    'enabled', f.enabled,
    'config', f.config,
    'updated_at', f.updated_at)
$$;

-- Limit: {id, org, scope: {scope: organization} | {scope: user, user_id},
-- metric, period, value (a string), mode, created_at, limit_type}. Its
-- columns one by one, so that tenancy.limit_usage can pass those of its
-- own query.
create or replace function tenancy.limit_json(
  id uuid, organization_id uuid, user_id uuid, metric text, period text,
  limit_value numeric, mode text, created_at timestamptz, limit_type text
) returns jsonb
language sql stable
as $$
  select pg_catalog.jsonb_build_object(
    'id', limit_json.id,
    'org', limit_json.organization_id,
    'scope', case when limit_json.user_id is null
      then pg_catalog.jsonb_build_object('scope', 'organization')
      else pg_catalog.jsonb_build_object('scope', 'user', 'user_id', limit_json.user_id) end,
    'metric', limit_json.metric,
    'period', limit_json.period,
    'value', limit_json.limit_value::text,
    'mode', limit_json.mode,
    'created_at', limit_json.created_at,
    'limit_type', limit_json.limit_type)
$$;

-- tenancy.limit_usage (20260301000500_tenancy_rpc.sql), the same query and
-- columns, its limit's JSON now from tenancy.limit_json: one definition
-- for tenancy_reserve, tenancy_usage_snapshot and tenancy_limits. Still
-- inlinable, limit_json with it.
create or replace function tenancy.limit_usage(
  p_org uuid, p_user uuid, p_metric text, p_daily date, p_monthly date, p_now timestamptz
) returns table (
  id uuid, organization_id uuid, user_id uuid, metric text, period text,
  limit_value numeric, mode text, created_at timestamptz, limit_type text,
  pstart date, used numeric, reserved numeric, entry jsonb
)
language sql
stable
as $$
  select u.*,
    pg_catalog.jsonb_build_object(
      'limit', tenancy.limit_json(u.id, u.organization_id, u.user_id, u.metric, u.period,
                                  u.limit_value, u.mode, u.created_at, u.limit_type),
      'period', pg_catalog.jsonb_build_object('period', u.period, 'start', u.pstart),
      'used', u.used::text,
      'reserved', u.reserved::text
    ) as entry
  from (
    select l.id, l.organization_id, l.user_id, l.metric::text as metric, l.period,
      l.limit_value, l.mode, l.created_at, l.limit_type, p.pstart,
      coalesce((
        select c.used from public.usage_counters c
        where c.organization_id = p_org
          and c.scope_user_id = l.scope_user_id
          and c.metric = l.metric
          and c.period = l.period
          and c.period_start = p.pstart
      ), 0) as used,
      coalesce((
        select sum(r.amount) from public.usage_reservations r
        where r.organization_id = p_org
          and r.metric = l.metric
          and r.expires_at > p_now
          and (case l.period when 'daily' then r.daily_start else r.monthly_start end)
              = p.pstart
          and (l.user_id is null or r.user_id = l.user_id)
      ), 0) as reserved
    from public.usage_limits l
    cross join lateral (
      select case l.period when 'daily' then p_daily else p_monthly end as pstart
    ) p
    where l.organization_id = p_org
      and (p_metric is null or l.metric = p_metric)
      and (l.user_id is null or (p_user is not null and l.user_id = p_user))
    offset 0 -- evaluate used and reserved once per limit
  ) u
$$;

-- tenancy.usage_snapshot (20260301000500_tenancy_rpc.sql), the same query
-- and answer, with its counters looked up by key for sure: without the
-- `offset 0` the planner may flatten the lateral lookup and scan every
-- counter of the organization's metric, each period's since it began,
-- joining them with the wanted keys afterwards (it did so right after an
-- organization's history was loaded: 1 448 rows read for 4, three times
-- the time of the lookups).
create or replace function tenancy.usage_snapshot(
  p_org uuid, p_user uuid, p_metric text, p_daily date, p_monthly date, p_now timestamptz
) returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  c_nil constant uuid := '00000000-0000-0000-0000-000000000000';
begin
  return (
    select pg_catalog.jsonb_build_object(
      'limits', (
        select coalesce(pg_catalog.jsonb_agg(u.entry order by u.created_at, u.id), '[]'::jsonb)
        from tenancy.limit_usage(p_org, p_user, p_metric, p_daily, p_monthly, p_now) u
      ),
      'counters', coalesce((
        select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
            'scope', case when c.scope_user_id = c_nil
              then pg_catalog.jsonb_build_object('scope', 'organization')
              else pg_catalog.jsonb_build_object('scope', 'user', 'user_id', c.scope_user_id) end,
            'metric', c.metric,
            'period', pg_catalog.jsonb_build_object('period', c.period, 'start', c.period_start),
            'used', c.used::text,
            'reserved', coalesce((
              select sum(r.amount) from public.usage_reservations r
              where r.organization_id = p_org
                and r.metric = c.metric
                and r.expires_at > p_now
                and (case c.period when 'daily' then r.daily_start else r.monthly_start end)
                    = c.period_start
                and (c.scope_user_id = c_nil or r.user_id = c.scope_user_id)
            ), 0)::text
          ) order by c.metric collate "C", c.period, c.period_start,
                     c.scope_user_id <> c_nil, c.scope_user_id)
        -- Each wanted (scope, period, start) looked up by the primary key
        -- (metric last), so that the cached generic plan reads the current
        -- periods' rows only, not the organization's whole history.
        -- A nil p_user names no user: the org-wide rows are already there.
        from (values (c_nil, 'daily', p_daily), (c_nil, 'monthly', p_monthly),
                     (nullif(p_user, c_nil), 'daily', p_daily),
                     (nullif(p_user, c_nil), 'monthly', p_monthly))
             k (scope_user_id, period, period_start)
        cross join lateral (
          select * from public.usage_counters c
          where c.organization_id = p_org
            and c.scope_user_id = k.scope_user_id
            and c.period = k.period
            and c.period_start = k.period_start
            and (p_metric is null or c.metric = p_metric)
          offset 0 -- keeps the lookup per wanted key (see above)
        ) c
        where k.scope_user_id is not null
      ), '[]'::jsonb)
    )
  );
end
$$;

-- ---------------------------------------------------------------------------
-- Organizations.

-- tenancy_organization(org_id) -> [Organization] (zero or one)
create or replace function public.tenancy_organization(org_id uuid) returns jsonb
language sql stable
set search_path = ''
as $$
  select coalesce(pg_catalog.jsonb_agg(tenancy.organization_json(o)), '[]'::jsonb)
  from public.organizations o
  where o.id = tenancy_organization.org_id
$$;

-- tenancy_organization_by_slug(org_slug) -> [Organization] (zero or one)
create or replace function public.tenancy_organization_by_slug(org_slug text) returns jsonb
language sql stable
set search_path = ''
as $$
  select coalesce(pg_catalog.jsonb_agg(tenancy.organization_json(o)), '[]'::jsonb)
  from public.organizations o
  where o.slug = tenancy_organization_by_slug.org_slug
$$;

-- tenancy_rename_organization(org_id, new_name) -> Organization
-- Sets the name, trimmed (as tenancy_create_organization does). No such
-- organization, or one the caller cannot see: P0002. One the caller sees
-- but may not rename (below admin): 42501.
create or replace function public.tenancy_rename_organization(org_id uuid, new_name text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_org public.organizations;
begin
  update public.organizations o
  set name = pg_catalog.btrim(tenancy_rename_organization.new_name)
  where o.id = tenancy_rename_organization.org_id
  returning o.* into v_org;
  if not found then
    if exists (select 1 from public.organizations o where o.id = tenancy_rename_organization.org_id) then
      raise exception 'only admins and owners rename organization %',
        tenancy_rename_organization.org_id using errcode = '42501';
    end if;
    raise exception 'organization % not found', tenancy_rename_organization.org_id
      using errcode = 'P0002';
  end if;
  return tenancy.organization_json(v_org);
end
$$;

-- tenancy_delete_organization(org_id) -> {deleted}
-- Deletes the organization and, by cascade and trigger, everything of it.
-- `deleted` is false when there was no such organization or the caller
-- cannot see it; one the caller sees but may not delete (below owner):
-- 42501.
create or replace function public.tenancy_delete_organization(org_id uuid) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_deleted integer;
begin
  delete from public.organizations o where o.id = tenancy_delete_organization.org_id;
  get diagnostics v_deleted = row_count;
  if v_deleted = 0
     and exists (select 1 from public.organizations o where o.id = tenancy_delete_organization.org_id) then
    raise exception 'only owners delete organization %', tenancy_delete_organization.org_id
      using errcode = '42501';
  end if;
  return pg_catalog.jsonb_build_object('deleted', v_deleted > 0);
end
$$;

-- tenancy_create_unowned_organization(name, slug, timezone?, id?,
--   created_at?) -> SETOF organizations (one row)
-- An organization without an owner (service_role adds one later), keeping
-- the id and created_at given. For service_role: a user JWT creates
-- organizations it owns, with tenancy_create_organization. A taken slug
-- or id is 23505.
create or replace function public.tenancy_create_unowned_organization(
  name text,
  slug text,
  timezone text default 'UTC',
  id uuid default null,
  created_at timestamptz default null
) returns setof public.organizations
language sql
volatile
set search_path = ''
as $$
  insert into public.organizations as o (id, name, slug, owner_user_id, timezone, created_at)
  values (
    coalesce(tenancy_create_unowned_organization.id, pg_catalog.gen_random_uuid()),
    pg_catalog.btrim(tenancy_create_unowned_organization.name),
    tenancy_create_unowned_organization.slug,
    null,
    coalesce(tenancy_create_unowned_organization.timezone, 'UTC'),
    coalesce(tenancy_create_unowned_organization.created_at, pg_catalog.now())
  )
  returning o.*
$$;

-- ---------------------------------------------------------------------------
-- Memberships.

-- tenancy_memberships(user_id, org_id?) -> [OrgMembership]
-- The user's memberships with their organizations, {organization, role,
-- joined_at}, by organization id; with org_id, only that one (zero or
-- one). A user JWT sees those in organizations it belongs to.
create or replace function public.tenancy_memberships(user_id uuid, org_id uuid default null)
returns jsonb
language sql stable
set search_path = ''
as $$
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
      'organization', tenancy.organization_json(o),
      'role', m.role,
      'joined_at', m.created_at
    ) order by m.organization_id), '[]'::jsonb)
  from public.user_organizations m
  join public.organizations o on o.id = m.organization_id
  where m.user_id = tenancy_memberships.user_id
    and (tenancy_memberships.org_id is null or m.organization_id = tenancy_memberships.org_id)
$$;

-- tenancy_members(org_id) -> [Membership], by user id.
create or replace function public.tenancy_members(org_id uuid) returns jsonb
language sql stable
set search_path = ''
as $$
  select coalesce(pg_catalog.jsonb_agg(tenancy.membership_json(m) order by m.user_id), '[]'::jsonb)
  from public.user_organizations m
  where m.organization_id = tenancy_members.org_id
$$;

-- tenancy_add_member(org_id, user_id, member_role, created_at?) -> Membership
-- No such organization: P0002; no such user: 23503; already a member:
-- 23505; a caller who may not add members there (RLS, the role rules),
-- an outsider included: 42501, as for a direct insert.
create or replace function public.tenancy_add_member(
  org_id uuid, user_id uuid, member_role text, created_at timestamptz default null
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_row public.user_organizations;
begin
  if not tenancy.org_exists(tenancy_add_member.org_id) then
    raise exception 'organization % not found', tenancy_add_member.org_id
      using errcode = 'P0002';
  end if;
  insert into public.user_organizations as m (organization_id, user_id, role, created_at)
  values (
    tenancy_add_member.org_id,
    tenancy_add_member.user_id,
    tenancy_add_member.member_role,
    coalesce(tenancy_add_member.created_at, pg_catalog.now())
  )
  returning m.* into v_row;
  return tenancy.membership_json(v_row);
end
$$;

-- Why a compare-and-set on (org, user, expected role) changed no row, as
-- the caller sees the membership now: not a member (or not visible), P0002;
-- another role, 40001; still the expected role, so row-level security kept
-- the caller from changing it, 42501. Always raises. Security invoker.
create or replace function tenancy.membership_cas_failed(
  p_org uuid, p_user uuid, p_expected text, p_action text
) returns void
language plpgsql stable
set search_path = ''
as $$
declare
  v_role text;
begin
  select m.role into v_role from public.user_organizations m
  where m.organization_id = p_org and m.user_id = p_user;
  if not found then
    raise exception 'user % is not a member of organization %', p_user, p_org
      using errcode = 'P0002';
  end if;
  if v_role is distinct from p_expected then
    raise exception 'user %''s role changed to % meanwhile; reload and retry', p_user, v_role
      using errcode = '40001';
  end if;
  raise exception 'not allowed to % user % in organization %', p_action, p_user, p_org
    using errcode = '42501';
end
$$;

-- tenancy_set_member_role(org_id, user_id, expected_role, new_role)
--   -> Membership
-- Compare-and-set: changes the role only while it is expected_role.
-- Errors: see tenancy.membership_cas_failed; the role rules and the last
-- owner (the user_organizations_guard trigger): 42501.
create or replace function public.tenancy_set_member_role(
  org_id uuid, user_id uuid, expected_role text, new_role text
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_row public.user_organizations;
begin
  update public.user_organizations m
  set role = tenancy_set_member_role.new_role
  where m.organization_id = tenancy_set_member_role.org_id
    and m.user_id = tenancy_set_member_role.user_id
    and m.role = tenancy_set_member_role.expected_role
  returning m.* into v_row;
  if not found then
    perform tenancy.membership_cas_failed(tenancy_set_member_role.org_id,
      tenancy_set_member_role.user_id, tenancy_set_member_role.expected_role,
      'change the role of');
  end if;
  return tenancy.membership_json(v_row);
end
$$;

-- tenancy_remove_member(org_id, user_id, expected_role) -> {removed: true}
-- Compare-and-set: removes the membership only while its role is
-- expected_role. Errors as tenancy_set_member_role.
create or replace function public.tenancy_remove_member(
  org_id uuid, user_id uuid, expected_role text
) returns jsonb
language plpgsql
set search_path = ''
as $$
begin
  delete from public.user_organizations m
  where m.organization_id = tenancy_remove_member.org_id
    and m.user_id = tenancy_remove_member.user_id
    and m.role = tenancy_remove_member.expected_role;
  if not found then
    perform tenancy.membership_cas_failed(tenancy_remove_member.org_id,
      tenancy_remove_member.user_id, tenancy_remove_member.expected_role, 'remove');
  end if;
  return pg_catalog.jsonb_build_object('removed', true);
end
$$;

-- ---------------------------------------------------------------------------
-- Features and limits.

-- tenancy_features(org_id) -> [Feature], by key (byte order).
create or replace function public.tenancy_features(org_id uuid) returns jsonb
language sql stable
set search_path = ''
as $$
  select coalesce(pg_catalog.jsonb_agg(tenancy.feature_json(f) order by f.feature_key collate "C"),
                  '[]'::jsonb)
  from public.org_features f
  where f.organization_id = tenancy_features.org_id
$$;

-- tenancy_delete_feature(org_id, feature_key) -> {deleted}
create or replace function public.tenancy_delete_feature(org_id uuid, feature_key text)
returns jsonb
language plpgsql
set search_path = ''
as $$
begin
  delete from public.org_features f
  where f.organization_id = tenancy_delete_feature.org_id
    and f.feature_key = tenancy_delete_feature.feature_key;
  return pg_catalog.jsonb_build_object('deleted', found);
end
$$;

-- tenancy_limits(org_id) -> [Limit], every scope, by created_at then id.
create or replace function public.tenancy_limits(org_id uuid) returns jsonb
language sql stable
set search_path = ''
as $$
  select coalesce(pg_catalog.jsonb_agg(
      tenancy.limit_json(l.id, l.organization_id, l.user_id, l.metric, l.period,
                         l.limit_value, l.mode, l.created_at, l.limit_type)
      order by l.created_at, l.id), '[]'::jsonb)
  from public.usage_limits l
  where l.organization_id = tenancy_limits.org_id
$$;

-- tenancy_delete_limit(org_id, limit_id) -> {deleted}
create or replace function public.tenancy_delete_limit(org_id uuid, limit_id uuid) returns jsonb
language plpgsql
set search_path = ''
as $$
begin
  delete from public.usage_limits l
  where l.organization_id = tenancy_delete_limit.org_id and l.id = tenancy_delete_limit.limit_id;
  return pg_catalog.jsonb_build_object('deleted', found);
end
$$;

-- ---------------------------------------------------------------------------
-- Who may call what. Supabase grants every new function in `public` to
-- anon and authenticated, PostgreSQL every new function to PUBLIC.

revoke all on function
  tenancy.organization_json(public.organizations),
  tenancy.membership_json(public.user_organizations),
  tenancy.feature_json(public.org_features),
  tenancy.limit_json(uuid, uuid, uuid, text, text, numeric, text, timestamptz, text),
  tenancy.membership_cas_failed(uuid, uuid, text, text)
from public, anon;
grant execute on function
  tenancy.organization_json(public.organizations),
  tenancy.membership_json(public.user_organizations),
  tenancy.feature_json(public.org_features),
  tenancy.limit_json(uuid, uuid, uuid, text, text, numeric, text, timestamptz, text),
  tenancy.membership_cas_failed(uuid, uuid, text, text)
to authenticated, service_role;

revoke all on function
  public.tenancy_organization(uuid),
  public.tenancy_organization_by_slug(text),
  public.tenancy_rename_organization(uuid, text),
  public.tenancy_delete_organization(uuid),
  public.tenancy_create_unowned_organization(text, text, text, uuid, timestamptz),
  public.tenancy_memberships(uuid, uuid),
  public.tenancy_members(uuid),
  public.tenancy_add_member(uuid, uuid, text, timestamptz),
  public.tenancy_set_member_role(uuid, uuid, text, text),
  public.tenancy_remove_member(uuid, uuid, text),
  public.tenancy_features(uuid),
  public.tenancy_delete_feature(uuid, text),
  public.tenancy_limits(uuid),
  public.tenancy_delete_limit(uuid, uuid)
from public, anon, authenticated;

-- Workers and the back end (service_role): all of them.
grant execute on function
  public.tenancy_organization(uuid),
  public.tenancy_organization_by_slug(text),
  public.tenancy_rename_organization(uuid, text),
  public.tenancy_delete_organization(uuid),
  public.tenancy_create_unowned_organization(text, text, text, uuid, timestamptz),
  public.tenancy_memberships(uuid, uuid),
  public.tenancy_members(uuid),
  public.tenancy_add_member(uuid, uuid, text, timestamptz),
  public.tenancy_set_member_role(uuid, uuid, text, text),
  public.tenancy_remove_member(uuid, uuid, text),
  public.tenancy_features(uuid),
  public.tenancy_delete_feature(uuid, text),
  public.tenancy_limits(uuid),
  public.tenancy_delete_limit(uuid, uuid)
to service_role;

-- User JWTs: what their table requests could do; RLS and the triggers
-- decide what each call sees and changes.
grant execute on function
  public.tenancy_organization(uuid),
  public.tenancy_organization_by_slug(text),
  public.tenancy_rename_organization(uuid, text),
  public.tenancy_delete_organization(uuid),
  public.tenancy_memberships(uuid, uuid),
  public.tenancy_members(uuid),
  public.tenancy_add_member(uuid, uuid, text, timestamptz),
  public.tenancy_set_member_role(uuid, uuid, text, text),
  public.tenancy_remove_member(uuid, uuid, text),
  public.tenancy_features(uuid),
  public.tenancy_delete_feature(uuid, text),
  public.tenancy_limits(uuid),
  public.tenancy_delete_limit(uuid, uuid)
to authenticated;

insert into tenancy.schema_migrations (version, name)
values (3, '20261206000200_tenancy_store_functions')
on conflict do nothing;
