-- tenancy schema version 13: plans. migrations/README.md ("Plans") is the
-- contract; src/limits/entitlements.rs states the same effective rule in
-- Rust, and one table of cases runs against both (testkit/tests/sql).
--
-- 1. The catalog: public.plans (one row per key, with the last version
--    number given), public.plan_versions and their entries
--    public.plan_features, public.plan_limits, public.plan_rate_limits.
--    Versions are immutable (a trigger refuses every UPDATE and DELETE of
--    them) and numbered 1, 2, ... per key in one atomic step (an upsert of
--    the key's row, which concurrent puts wait on).
-- 2. public.org_plans: each organization's one assignment (its plan
--    version, start, trial end and fallback), deleted with it.
-- 3. Overrides: `expires_at` on org_features, usage_limits and
--    usage_rate_limits; a row whose expires_at <= the instant asked about
--    counts as absent.
-- 4. The effective view, ONE rule: tenancy.effective_plan,
--    tenancy.effective_features, tenancy.effective_limits,
--    tenancy.effective_rate_limits (org, at). Every reader now goes
--    through them: tenancy.limit_usage (behind tenancy_reserve, the
--    snapshot, tenancy_lease_budget, tenancy_check_limit,
--    tenancy_reserve_usage, tenancy_usage_summary, tenancy.within_limit,
--    tenancy.count_usage), tenancy.has_feature, tenancy.feature_for
--    (tenancy_feature) and tenancy_acquire_rate. The functions that read
--    an organization's own rows (tenancy_features, tenancy_limits,
--    tenancy_rate_limits) still read only those, now with expires_at.
-- 5. Rate-limit state is keyed by (organization, limit id), the id an
--    override row's or a plan entry's: its foreign key to usage_rate_limits
--    goes; deleting a row deletes its state by trigger, deleting an
--    organization by a foreign key to organizations.
-- 6. Store functions for PlanStore (service_role), tenancy_entitlements
--    (members read their own organization's, read-only) and
--    tenancy_entitlements_version.
-- 7. Propagation: tenancy.entitlements_version, one row, bumped in the
--    changing transaction by statement triggers on org_plans,
--    org_features, usage_limits and usage_rate_limits, which also
--    pg_notify('tenancy_entitlements', <organization id> | '*'). A new
--    catalog version changes no organization's view (each names its
--    version, and versions are immutable): only a truncate of a catalog
--    table bumps it.
-- 8. Audit: the row trigger on org_plans (entity `plan`); a new catalog
--    version is one event `plan_version.created` under the nil
--    organization id (audit_events.organization_id is NOT NULL and part
--    of its key: the catalog belongs to no organization).
--
-- Applies as Supabase's `postgres` role. Idempotent: `if not exists`,
-- `create or replace`, `drop ... if exists`, guarded DO blocks, `on
-- conflict do nothing`.

-- ---------------------------------------------------------------------------
-- 1. The catalog.

create table if not exists public.plans (
  plan_key text not null
    constraint plans_plan_key_check check (plan_key ~ '^[a-z][a-z0-9_-]{0,63}$'),
  -- The highest version number given to this key.
  latest_version integer not null default 0,
  created_at timestamptz not null default pg_catalog.now(),
  constraint plans_pkey primary key (plan_key)
);

create table if not exists public.plan_versions (
  plan_key text not null references public.plans (plan_key),
  version integer not null constraint plan_versions_version_check check (version >= 1),
  name text not null
    constraint plan_versions_name_check check (char_length(name) between 1 and 100),
  created_at timestamptz not null,
  constraint plan_versions_pkey primary key (plan_key, version)
);

create table if not exists public.plan_features (
  plan_key text not null,
  version integer not null,
  feature_key text not null
    constraint plan_features_feature_key_check
    check (feature_key ~ '^[a-z][a-z0-9_.-]{0,63}$'),
  enabled boolean not null,
  config jsonb,
  -- The entry's place in the version as it was written.
  position integer not null,
  constraint plan_features_pkey primary key (plan_key, version, feature_key),
  constraint plan_features_version_fkey foreign key (plan_key, version)
    references public.plan_versions (plan_key, version)
);

create table if not exists public.plan_limits (
  plan_key text not null,
  version integer not null,
  -- Fresh per version: the id an organization's effective limit carries.
  id uuid not null,
  metric tenancy.metric_key not null,
  period text not null
    constraint plan_limits_period_check check (period in ('daily', 'monthly')),
  limit_value numeric not null
    constraint plan_limits_value_check check (limit_value >= 0 and limit_value <= 1e18),
  mode text not null
    constraint plan_limits_mode_check check (mode in ('hard', 'soft')),
  position integer not null,
  constraint plan_limits_pkey primary key (plan_key, version, id),
  constraint plan_limits_id_key unique (id),
  constraint plan_limits_slot_key unique (plan_key, version, metric, period),
  constraint plan_limits_version_fkey foreign key (plan_key, version)
    references public.plan_versions (plan_key, version)
);

create table if not exists public.plan_rate_limits (
  plan_key text not null,
  version integer not null,
  id uuid not null,
  metric tenancy.metric_key not null,
  rate_window text not null
    constraint plan_rate_limits_window_check check (rate_window in ('second', 'minute', 'hour')),
  limit_value numeric not null
    constraint plan_rate_limits_value_check check (limit_value >= 0 and limit_value <= 1e18),
  burst numeric not null
    constraint plan_rate_limits_burst_check check (burst > 0 and burst <= 1e18),
  mode text not null
    constraint plan_rate_limits_mode_check check (mode in ('hard', 'soft')),
  position integer not null,
  constraint plan_rate_limits_pkey primary key (plan_key, version, id),
  constraint plan_rate_limits_id_key unique (id),
  constraint plan_rate_limits_slot_key unique (plan_key, version, metric, rate_window),
  constraint plan_rate_limits_version_fkey foreign key (plan_key, version)
    references public.plan_versions (plan_key, version)
);

-- Versions are immutable: no UPDATE, no DELETE, by anyone but the owner
-- (who can drop the trigger).
create or replace function tenancy.plan_versions_immutable() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  raise exception 'plan versions are immutable: write a new version instead'
    using errcode = '42501';
end
$$;

do $$
declare
  t text;
begin
  foreach t in array array['plan_versions', 'plan_features', 'plan_limits', 'plan_rate_limits'] loop
    execute pg_catalog.format('drop trigger if exists plan_immutable on public.%I', t);
    execute pg_catalog.format(
      'create trigger plan_immutable before update or delete on public.%I '
      'for each row execute function tenancy.plan_versions_immutable()', t);
  end loop;
end
$$;

-- ---------------------------------------------------------------------------
-- 2. Assignments: one per organization.

create table if not exists public.org_plans (
  organization_id uuid not null references public.organizations (id) on delete cascade,
  plan_key text not null,
  version integer not null,
  started_at timestamptz not null,
  trial_ends_at timestamptz,
  fallback_key text,
  fallback_version integer,
  constraint org_plans_pkey primary key (organization_id),
  constraint org_plans_plan_fkey foreign key (plan_key, version)
    references public.plan_versions (plan_key, version),
  constraint org_plans_fallback_fkey foreign key (fallback_key, fallback_version)
    references public.plan_versions (plan_key, version),
  constraint org_plans_fallback_check
    check ((fallback_key is null) = (fallback_version is null))
);

create index if not exists org_plans_plan_idx on public.org_plans (plan_key, version);
create index if not exists org_plans_fallback_idx
  on public.org_plans (fallback_key, fallback_version) where fallback_key is not null;

-- ---------------------------------------------------------------------------
-- 3. Overrides lapse.

alter table public.org_features add column if not exists expires_at timestamptz;
alter table public.usage_limits add column if not exists expires_at timestamptz;
alter table public.usage_rate_limits add column if not exists expires_at timestamptz;

-- ---------------------------------------------------------------------------
-- RLS and privileges. Members (viewer and up) read their organization's
-- assignment and the versions it names (the plan and the fallback), and
-- nothing else of the catalog; only service_role writes.

alter table public.plans enable row level security;
alter table public.plan_versions enable row level security;
alter table public.plan_features enable row level security;
alter table public.plan_limits enable row level security;
alter table public.plan_rate_limits enable row level security;
alter table public.org_plans enable row level security;

revoke all on table public.plans, public.plan_versions, public.plan_features,
  public.plan_limits, public.plan_rate_limits, public.org_plans
from public, anon, authenticated, service_role;
grant select on table public.plans, public.plan_versions, public.plan_features,
  public.plan_limits, public.plan_rate_limits, public.org_plans
to authenticated;
grant select, insert on table public.plan_versions, public.plan_features,
  public.plan_limits, public.plan_rate_limits
to service_role;
grant select, insert, update on table public.plans to service_role;
grant select, insert, update, delete on table public.org_plans to service_role;

-- Whether a member of one of the caller's organizations is on (or falls
-- to) version `version` of `key` (any version with a null `version`).
-- Security definer: a policy on the catalog asks it without reading
-- org_plans through RLS again.
create or replace function tenancy.plan_visible(key text, version integer) returns boolean
language sql stable security definer
set search_path = ''
as $$
  select exists (
    select 1 from public.org_plans a
    where a.organization_id = any (array(select tenancy.org_ids('viewer')))
      and ((a.plan_key = plan_visible.key
            and (plan_visible.version is null or a.version = plan_visible.version))
        or (a.fallback_key = plan_visible.key
            and (plan_visible.version is null or a.fallback_version = plan_visible.version))))
$$;

drop policy if exists org_plans_select on public.org_plans;
create policy org_plans_select on public.org_plans
  for select to authenticated
  using (organization_id = any (array(select tenancy.org_ids('viewer'))));

drop policy if exists plans_select on public.plans;
create policy plans_select on public.plans
  for select to authenticated
  using (tenancy.plan_visible(plan_key, null));

do $$
declare
  t text;
begin
  foreach t in array array['plan_versions', 'plan_features', 'plan_limits', 'plan_rate_limits'] loop
    execute pg_catalog.format('drop policy if exists %I on public.%I', t || '_select', t);
    execute pg_catalog.format(
      'create policy %I on public.%I for select to authenticated '
      'using (tenancy.plan_visible(plan_key, version))', t || '_select', t);
  end loop;
end
$$;

-- ---------------------------------------------------------------------------
-- 4. The effective view: the plan version in effect (the assignment's;
-- once trial_ends_at <= at, its fallback, or none without one) with the
-- organization's unexpired rows on top, matched: features by key; limits
-- by (org-wide, metric, period); rate limits by (org-wide, metric,
-- window). Per-user rows are added as they are. A plan entry carries its
-- version's created_at, no expiry, and (limits) its own id.
-- All `language sql`, stable, no `set`, names schema-qualified: inlined
-- into their callers, so tenancy.limit_usage keeps one cached plan.

create or replace function tenancy.effective_plan(p_org uuid, p_at timestamptz)
returns table (plan_key text, version integer)
language sql stable
as $$
  select e.plan_key, e.version
  from public.org_plans a
  cross join lateral (
    select case when a.trial_ends_at is not null and a.trial_ends_at <= p_at
             then a.fallback_key else a.plan_key end as plan_key,
           case when a.trial_ends_at is not null and a.trial_ends_at <= p_at
             then a.fallback_version else a.version end as version
  ) e
  where a.organization_id = p_org and e.plan_key is not null
$$;

create or replace function tenancy.effective_features(p_org uuid, p_at timestamptz)
returns table (
  feature_key text, enabled boolean, config jsonb, updated_at timestamptz,
  expires_at timestamptz, plan_key text, plan_version integer
)
language sql stable
as $$
  select f.feature_key, f.enabled, f.config, f.updated_at, f.expires_at,
    null::text, null::integer
  from public.org_features f
  where f.organization_id = p_org and (f.expires_at is null or f.expires_at > p_at)
  union all
  select pf.feature_key, pf.enabled, pf.config, pv.created_at, null::timestamptz,
    pv.plan_key, pv.version
  from tenancy.effective_plan(p_org, p_at) ep
  join public.plan_versions pv on pv.plan_key = ep.plan_key and pv.version = ep.version
  join public.plan_features pf on pf.plan_key = pv.plan_key and pf.version = pv.version
  where not exists (
    select 1 from public.org_features f
    where f.organization_id = p_org and f.feature_key = pf.feature_key
      and (f.expires_at is null or f.expires_at > p_at))
$$;

create or replace function tenancy.effective_limits(p_org uuid, p_at timestamptz)
returns table (
  id uuid, organization_id uuid, user_id uuid, metric text, period text,
  limit_value numeric, mode text, created_at timestamptz, limit_type text,
  expires_at timestamptz, scope_user_id uuid, plan_key text, plan_version integer
)
language sql stable
as $$
  select l.id, l.organization_id, l.user_id, l.metric::text, l.period, l.limit_value, l.mode,
    l.created_at, l.limit_type, l.expires_at, l.scope_user_id, null::text, null::integer
  from public.usage_limits l
  where l.organization_id = p_org and (l.expires_at is null or l.expires_at > p_at)
  union all
  select pl.id, p_org, null::uuid, pl.metric::text, pl.period, pl.limit_value, pl.mode,
    pv.created_at, pl.period || '_' || pl.metric::text, null::timestamptz,
    '00000000-0000-0000-0000-000000000000'::uuid, pv.plan_key, pv.version
  from tenancy.effective_plan(p_org, p_at) ep
  join public.plan_versions pv on pv.plan_key = ep.plan_key and pv.version = ep.version
  join public.plan_limits pl on pl.plan_key = pv.plan_key and pl.version = pv.version
  where not exists (
    select 1 from public.usage_limits l
    where l.organization_id = p_org and l.user_id is null
      and l.metric = pl.metric and l.period = pl.period
      and (l.expires_at is null or l.expires_at > p_at))
$$;

create or replace function tenancy.effective_rate_limits(p_org uuid, p_at timestamptz)
returns table (
  id uuid, organization_id uuid, user_id uuid, metric text, rate_window text,
  limit_value numeric, burst numeric, mode text, created_at timestamptz,
  expires_at timestamptz, plan_key text, plan_version integer
)
language sql stable
as $$
  select l.id, l.organization_id, l.user_id, l.metric::text, l.rate_window, l.limit_value,
    l.burst, l.mode, l.created_at, l.expires_at, null::text, null::integer
  from public.usage_rate_limits l
  where l.organization_id = p_org and (l.expires_at is null or l.expires_at > p_at)
  union all
  select pr.id, p_org, null::uuid, pr.metric::text, pr.rate_window, pr.limit_value, pr.burst,
    pr.mode, pv.created_at, null::timestamptz, pv.plan_key, pv.version
  from tenancy.effective_plan(p_org, p_at) ep
  join public.plan_versions pv on pv.plan_key = ep.plan_key and pv.version = ep.version
  join public.plan_rate_limits pr on pr.plan_key = pv.plan_key and pr.version = pv.version
  where not exists (
    select 1 from public.usage_rate_limits l
    where l.organization_id = p_org and l.user_id is null
      and l.metric = pr.metric and l.rate_window = pr.rate_window
      and (l.expires_at is null or l.expires_at > p_at))
$$;

-- The first instant after `p_at` at which the view changes by itself: the
-- earliest unexpired row's expires_at, or the trial's end. With a
-- `p_viewer`, over the rows that viewer is shown: org-wide ones and its
-- own per-user ones.
create or replace function tenancy.entitlements_valid_until(
  p_org uuid, p_at timestamptz, p_viewer uuid default null
)
returns timestamptz
language sql stable
as $$
  select min(t.at) from (
    select f.expires_at as at from public.org_features f
    where f.organization_id = p_org and f.expires_at > p_at
    union all
    select l.expires_at from public.usage_limits l
    where l.organization_id = p_org and l.expires_at > p_at
      and (p_viewer is null or l.user_id is null or l.user_id = p_viewer)
    union all
    select r.expires_at from public.usage_rate_limits r
    where r.organization_id = p_org and r.expires_at > p_at
      and (p_viewer is null or r.user_id is null or r.user_id = p_viewer)
    union all
    select a.trial_ends_at from public.org_plans a
    where a.organization_id = p_org and a.trial_ends_at > p_at
  ) t
$$;

-- ---------------------------------------------------------------------------
-- The JSON of each row type, with expires_at.

-- Feature: {key, enabled, config, updated_at, expires_at}.
create or replace function tenancy.feature_json(f public.org_features) returns jsonb
language sql stable
as $$
  select pg_catalog.jsonb_build_object(
    'key', f.feature_key,
    'enabled', f.enabled,
    'config', f.config,
    'updated_at', f.updated_at,
    'expires_at', f.expires_at)
$$;

-- A rate limit as tenancy::limits::rate::RateLimit serializes, from its
-- columns (a row's, or an effective entry's).
create or replace function tenancy.rate_limit_entry_json(
  id uuid, organization_id uuid, user_id uuid, metric text, rate_window text,
  limit_value numeric, burst numeric, mode text, created_at timestamptz, expires_at timestamptz
) returns jsonb
language sql stable
as $$
  select pg_catalog.jsonb_build_object(
    'id', rate_limit_entry_json.id,
    'org', rate_limit_entry_json.organization_id,
    'scope', case when rate_limit_entry_json.user_id is null
      then pg_catalog.jsonb_build_object('scope', 'organization')
      else pg_catalog.jsonb_build_object('scope', 'user', 'user_id', rate_limit_entry_json.user_id) end,
    'metric', rate_limit_entry_json.metric,
    'window', rate_limit_entry_json.rate_window,
    'value', rate_limit_entry_json.limit_value::text,
    'burst', rate_limit_entry_json.burst::text,
    'mode', rate_limit_entry_json.mode,
    'created_at', rate_limit_entry_json.created_at,
    'expires_at', rate_limit_entry_json.expires_at)
$$;

create or replace function tenancy.rate_limit_json(l public.usage_rate_limits) returns jsonb
language sql stable
set search_path = ''
as $$
  select tenancy.rate_limit_entry_json(l.id, l.organization_id, l.user_id, l.metric::text,
    l.rate_window, l.limit_value, l.burst, l.mode, l.created_at, l.expires_at)
$$;

-- Where an effective entry comes from: {kind: plan, plan: {key, version}}
-- or {kind: override, expires_at}.
create or replace function tenancy.entitlement_source_json(
  plan_key text, plan_version integer, expires_at timestamptz
) returns jsonb
language sql immutable
as $$
  select case when entitlement_source_json.plan_key is not null
    then pg_catalog.jsonb_build_object('kind', 'plan', 'plan', pg_catalog.jsonb_build_object(
      'key', entitlement_source_json.plan_key, 'version', entitlement_source_json.plan_version))
    else pg_catalog.jsonb_build_object('kind', 'override',
      'expires_at', entitlement_source_json.expires_at) end
$$;

-- ---------------------------------------------------------------------------
-- The readers, redefined over the effective view.

-- tenancy.limit_usage (20261206001100_tenancy_budget_leases.sql), the same
-- columns and JSON (the limit's now with expires_at), its limits the
-- effective ones at p_now. Still `language sql`, stable, no `set`:
-- inlined into its caller with tenancy.effective_limits.
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
  select u.id, u.organization_id, u.user_id, u.metric, u.period, u.limit_value, u.mode,
    u.created_at, u.limit_type, u.pstart, u.used, u.reserved,
    pg_catalog.jsonb_build_object(
      'limit', tenancy.limit_json(u.id, u.organization_id, u.user_id, u.metric, u.period,
                                  u.limit_value, u.mode, u.created_at, u.limit_type)
               || pg_catalog.jsonb_build_object('expires_at', u.expires_at),
      'period', pg_catalog.jsonb_build_object('period', u.period, 'start', u.pstart),
      'used', u.used::text,
      'reserved', u.reserved::text
    ) as entry
  from (
    select l.id, l.organization_id, l.user_id, l.metric, l.period,
      l.limit_value, l.mode, l.created_at, l.limit_type, l.expires_at, p.pstart,
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
      ), 0)
      + coalesce((
        select sum(greatest(s.granted - s.consumed, 0)) from public.usage_leases s
        where s.organization_id = p_org
          and s.metric = l.metric
          and s.expires_at > p_now
          and (case l.period when 'daily' then s.daily_start else s.monthly_start end)
              = p.pstart
          and (l.user_id is null or s.user_id = l.user_id)
      ), 0) as reserved
    from tenancy.effective_limits(p_org, p_now) l
    cross join lateral (
      select case l.period when 'daily' then p_daily else p_monthly end as pstart
    ) p
    where (p_metric is null or l.metric = p_metric)
      and (l.user_id is null or (p_user is not null and l.user_id = p_user))
    offset 0 -- evaluate used and reserved once per limit
  ) u
$$;

-- tenancy.has_feature (20260301000200_tenancy_helpers.sql): whether the
-- feature is effectively on now. Security invoker as before: a user JWT
-- sees its own organizations' rows and plan only, so gets false elsewhere.
create or replace function tenancy.has_feature(org uuid, key text) returns boolean
language sql stable
set search_path = ''
as $$
  select coalesce(
    (select f.enabled from tenancy.effective_features(org, pg_catalog.now()) f
     where f.feature_key = key),
    false
  )
$$;

-- tenancy.feature_for (20261206000400_tenancy_sql_api.sql), behind
-- tenancy_feature: the effective feature now.
create or replace function tenancy.feature_for(org uuid, feature_key text) returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_enabled boolean;
  v_config jsonb;
begin
  perform tenancy.org_timezone(org);
  if feature_key is null then
    raise exception 'feature_key: is required' using errcode = '22023';
  end if;
  select f.enabled, f.config into v_enabled, v_config
  from tenancy.effective_features(org, pg_catalog.now()) f
  where f.feature_key = feature_for.feature_key;
  return pg_catalog.jsonb_build_object(
    'key', feature_key,
    'enabled', coalesce(v_enabled, false),
    'config', case when v_enabled then v_config end);
end
$$;

-- tenancy_features(org_id) (version 2) is unchanged: the organization's
-- own rows through tenancy.feature_json, which now carries expires_at.

-- tenancy_limits(org_id) -> [Limit], the organization's own rows, every
-- scope, by created_at then id, with expires_at.
create or replace function public.tenancy_limits(org_id uuid) returns jsonb
language sql stable
set search_path = ''
as $$
  select coalesce(pg_catalog.jsonb_agg(
      tenancy.limit_json(l.id, l.organization_id, l.user_id, l.metric, l.period,
                         l.limit_value, l.mode, l.created_at, l.limit_type)
        || pg_catalog.jsonb_build_object('expires_at', l.expires_at)
      order by l.created_at, l.id), '[]'::jsonb)
  from public.usage_limits l
  where l.organization_id = tenancy_limits.org_id
$$;

-- tenancy_update_feature (20260301000500_tenancy_rpc.sql) with the row's
-- expiry: `expires_at` is written when set_expires (a missing one then
-- means never), else kept (a new row: never). A row that lapsed at or
-- before updated_at counts as absent: what the change does not name starts
-- afresh (off, no config, no expiry).
drop function if exists public.tenancy_update_feature(uuid, text, boolean, timestamptz, boolean, jsonb);
create or replace function public.tenancy_update_feature(
  org_id uuid,
  feature_key text,
  set_config boolean,
  updated_at timestamptz,
  enabled boolean default null,
  config jsonb default null,
  set_expires boolean default false,
  expires_at timestamptz default null
) returns setof public.org_features
language sql
volatile
set search_path = ''
as $$
  insert into public.org_features as f
    (organization_id, feature_key, enabled, config, updated_at, expires_at)
  values (
    tenancy_update_feature.org_id,
    tenancy_update_feature.feature_key,
    coalesce(tenancy_update_feature.enabled, false),
    case when tenancy_update_feature.set_config then tenancy_update_feature.config end,
    tenancy_update_feature.updated_at,
    case when tenancy_update_feature.set_expires then tenancy_update_feature.expires_at end
  )
  on conflict (organization_id, feature_key) do update set
    enabled = coalesce(tenancy_update_feature.enabled,
      case when f.expires_at <= tenancy_update_feature.updated_at then false else f.enabled end),
    config = case when tenancy_update_feature.set_config then tenancy_update_feature.config
      when f.expires_at <= tenancy_update_feature.updated_at then null else f.config end,
    updated_at = excluded.updated_at,
    expires_at = case when tenancy_update_feature.set_expires then tenancy_update_feature.expires_at
      when f.expires_at <= tenancy_update_feature.updated_at then null else f.expires_at end
  returning f.*
$$;

-- tenancy_put_limit (20260301000500_tenancy_rpc.sql) with the row's expiry:
-- setting a limit sets its value, mode and expires_at (none: never).
drop function if exists public.tenancy_put_limit(uuid, uuid, text, text, numeric, text, uuid, timestamptz);
create or replace function public.tenancy_put_limit(
  limit_id uuid,
  org_id uuid,
  metric text,
  period text,
  limit_value numeric,
  mode text default 'hard',
  user_id uuid default null,
  created_at timestamptz default null,
  expires_at timestamptz default null
) returns setof public.usage_limits
language plpgsql
set search_path = ''
as $$
declare
  v_id uuid;
begin
  if not exists (select 1 from public.organizations o where o.id = tenancy_put_limit.org_id) then
    raise exception 'organization % does not exist', tenancy_put_limit.org_id
      using errcode = 'P0002';
  end if;
  insert into public.usage_limits as l
    (id, organization_id, user_id, metric, period, limit_value, mode, created_at, expires_at)
  values (
    coalesce(tenancy_put_limit.limit_id, gen_random_uuid()),
    tenancy_put_limit.org_id,
    tenancy_put_limit.user_id,
    tenancy_put_limit.metric,
    tenancy_put_limit.period,
    tenancy_put_limit.limit_value,
    coalesce(tenancy_put_limit.mode, 'hard'),
    coalesce(tenancy_put_limit.created_at, pg_catalog.now()),
    tenancy_put_limit.expires_at
  )
  on conflict on constraint usage_limits_slot_key
  do update set limit_value = excluded.limit_value, mode = excluded.mode,
    expires_at = excluded.expires_at
  returning l.id into v_id;
  return query select l.* from public.usage_limits l
    where l.organization_id = tenancy_put_limit.org_id and l.id = v_id;
end
$$;

-- tenancy_put_rate_limit (20261206001000_tenancy_rate_limits.sql) with the
-- row's expiry, replaced with the value, burst and mode.
drop function if exists public.tenancy_put_rate_limit(uuid, uuid, text, text, numeric, numeric, text, timestamptz, uuid);
create or replace function public.tenancy_put_rate_limit(
  limit_id uuid, org_id uuid, metric text, rate_window text, limit_value numeric,
  burst numeric, mode text, created_at timestamptz, user_id uuid default null,
  expires_at timestamptz default null
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_row public.usage_rate_limits;
begin
  if not exists (select 1 from public.organizations o where o.id = tenancy_put_rate_limit.org_id) then
    raise exception 'org_id: organization % not found', tenancy_put_rate_limit.org_id
      using errcode = 'P0002';
  end if;
  insert into public.usage_rate_limits as l
    (id, organization_id, user_id, metric, rate_window, limit_value, burst, mode, created_at,
     expires_at)
  values (tenancy_put_rate_limit.limit_id, tenancy_put_rate_limit.org_id,
          tenancy_put_rate_limit.user_id, tenancy_put_rate_limit.metric,
          tenancy_put_rate_limit.rate_window, tenancy_put_rate_limit.limit_value,
          tenancy_put_rate_limit.burst, tenancy_put_rate_limit.mode,
          tenancy_put_rate_limit.created_at, tenancy_put_rate_limit.expires_at)
  on conflict on constraint usage_rate_limits_slot_key do update
    set limit_value = excluded.limit_value, burst = excluded.burst, mode = excluded.mode,
      expires_at = excluded.expires_at
  returning * into v_row;
  return tenancy.rate_limit_json(v_row);
end
$$;

-- ---------------------------------------------------------------------------
-- 5. Rate-limit state by (organization, limit id): an override row's id or
-- a plan entry's. The foreign key to usage_rate_limits goes; a row's
-- state goes with the row (trigger), an organization's with it (foreign
-- key).

alter table tenancy.usage_rate_state drop constraint if exists usage_rate_state_limit_fkey;
do $$
begin
  if not exists (select 1 from pg_catalog.pg_constraint
                 where conname = 'usage_rate_state_org_fkey'
                   and conrelid = 'tenancy.usage_rate_state'::regclass) then
    delete from tenancy.usage_rate_state s
    where not exists (select 1 from public.organizations o where o.id = s.organization_id);
    alter table tenancy.usage_rate_state add constraint usage_rate_state_org_fkey
      foreign key (organization_id) references public.organizations (id) on delete cascade;
  end if;
end
$$;

create or replace function tenancy.rate_limits_drop_state() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  delete from tenancy.usage_rate_state s
  using old_rows o
  where s.organization_id = o.organization_id and s.rate_limit_id = o.id;
  return null;
end
$$;

drop trigger if exists usage_rate_limits_drop_state on public.usage_rate_limits;
create trigger usage_rate_limits_drop_state
  after delete on public.usage_rate_limits
  referencing old table as old_rows
  for each statement execute function tenancy.rate_limits_drop_state();

-- tenancy_acquire_rate (20261206001000_tenancy_rate_limits.sql), the same
-- GCRA over the effective rate limits at now_us. An acquire or refund
-- takes a transaction-level advisory lock per applicable limit, in id
-- order, so decisions on one limit run one after another and never
-- deadlock (a plan entry has no row of the organization's to lock).
create or replace function public.tenancy_acquire_rate(
  org_id uuid, user_id uuid, charges jsonb, now_us bigint, action text
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_granted boolean := true;
  v_limits jsonb := '[]';
  v_ids uuid[] := '{}';
  v_tats bigint[] := '{}';
  r record;
  v_at timestamptz;
  v_window bigint;
  v_inc bigint;
  v_tol bigint;
  v_start bigint;
  v_conforms boolean;
  v_new bigint;
begin
  if tenancy_acquire_rate.action is null
      or tenancy_acquire_rate.action not in ('check', 'acquire', 'refund') then
    raise exception 'action: % is not check, acquire or refund', tenancy_acquire_rate.action
      using errcode = '22023';
  end if;
  if tenancy_acquire_rate.now_us is null or tenancy_acquire_rate.org_id is null
      or tenancy_acquire_rate.user_id is null
      or pg_catalog.jsonb_typeof(tenancy_acquire_rate.charges) is distinct from 'array' then
    raise exception 'org_id, user_id, charges (an array) and now_us are required'
      using errcode = '22023';
  end if;
  v_at := pg_catalog.to_timestamp(0) + tenancy_acquire_rate.now_us * interval '1 microsecond';

  if tenancy_acquire_rate.action <> 'check' then
    perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended(
      'tenancy.rate:' || tenancy_acquire_rate.org_id::text || ':' || k.id::text, 0))
    from (
      select l.id from tenancy.effective_rate_limits(tenancy_acquire_rate.org_id, v_at) l
      where (l.user_id is null or l.user_id = tenancy_acquire_rate.user_id)
        and l.metric in (
          select c ->> 0 from pg_catalog.jsonb_array_elements(tenancy_acquire_rate.charges) c)
      order by l.id
    ) k;
  end if;

  for r in
    with c as (
      select e ->> 0 as metric, sum((e ->> 1)::numeric) as amount
      from pg_catalog.jsonb_array_elements(tenancy_acquire_rate.charges) e
      group by 1
    )
    select l.id, l.organization_id, l.user_id, l.metric, l.rate_window, l.limit_value,
      l.burst, l.mode, l.created_at, l.expires_at, c.amount, s.tat_us
    from tenancy.effective_rate_limits(tenancy_acquire_rate.org_id, v_at) l
    join c on c.metric = l.metric
    left join tenancy.usage_rate_state s
      on s.organization_id = tenancy_acquire_rate.org_id and s.rate_limit_id = l.id
    where (l.user_id is null or l.user_id = tenancy_acquire_rate.user_id)
    order by l.id
  loop
    v_window := tenancy.rate_window_us(r.rate_window);
    v_inc := tenancy.rate_increment(r.amount, v_window, r.limit_value);
    v_tol := tenancy.rate_tolerance(r.burst, v_window, r.limit_value);
    v_start := greatest(coalesce(r.tat_us, tenancy_acquire_rate.now_us), tenancy_acquire_rate.now_us);
    v_conforms := v_inc is not null and v_inc <= v_tol
      and v_start + v_inc - tenancy_acquire_rate.now_us <= v_tol;
    if not v_conforms and r.mode = 'hard' then
      v_granted := false;
    end if;
    if tenancy_acquire_rate.action = 'refund' then
      v_new := case when r.tat_us is null or v_inc is null then null
                    else greatest(r.tat_us - v_inc, tenancy_acquire_rate.now_us) end;
    else
      v_new := v_start + v_inc;
    end if;
    v_ids := v_ids || r.id;
    v_tats := v_tats || v_new;
    v_limits := v_limits || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
      'limit', tenancy.rate_limit_entry_json(r.id, r.organization_id, r.user_id, r.metric,
        r.rate_window, r.limit_value, r.burst, r.mode, r.created_at, r.expires_at),
      'tat', r.tat_us));
  end loop;

  if tenancy_acquire_rate.action = 'refund' then
    v_granted := true;
  end if;
  if tenancy_acquire_rate.action = 'refund'
      or (tenancy_acquire_rate.action = 'acquire' and v_granted) then
    insert into tenancy.usage_rate_state as s (organization_id, rate_limit_id, tat_us)
    select tenancy_acquire_rate.org_id, t.id, t.tat
    from rows from (pg_catalog.unnest(v_ids), pg_catalog.unnest(v_tats)) as t (id, tat)
    where t.tat is not null
    on conflict on constraint usage_rate_state_pkey do update set tat_us = excluded.tat_us;
  end if;

  return pg_catalog.jsonb_build_object('granted', v_granted, 'limits', v_limits);
end
$$;

-- ---------------------------------------------------------------------------
-- 6. The store functions.

-- PlanVersion: {plan: {key, version}, name, features: [{key, enabled,
-- config}], limits: [{id, metric, period, value, mode}], rate_limits:
-- [{id, metric, window, value, burst, mode}], created_at}; entries in the
-- order they were written.
create or replace function tenancy.plan_version_json(v public.plan_versions) returns jsonb
language sql stable
set search_path = ''
as $$
  select pg_catalog.jsonb_build_object(
    'plan', pg_catalog.jsonb_build_object('key', v.plan_key, 'version', v.version),
    'name', v.name,
    'features', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
          'key', f.feature_key, 'enabled', f.enabled, 'config', f.config) order by f.position)
      from public.plan_features f where f.plan_key = v.plan_key and f.version = v.version),
      '[]'::jsonb),
    'limits', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
          'id', l.id, 'metric', l.metric, 'period', l.period, 'value', l.limit_value::text,
          'mode', l.mode) order by l.position)
      from public.plan_limits l where l.plan_key = v.plan_key and l.version = v.version),
      '[]'::jsonb),
    'rate_limits', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
          'id', r.id, 'metric', r.metric, 'window', r.rate_window,
          'value', r.limit_value::text, 'burst', r.burst::text, 'mode', r.mode)
          order by r.position)
      from public.plan_rate_limits r where r.plan_key = v.plan_key and r.version = v.version),
      '[]'::jsonb),
    'created_at', v.created_at)
$$;

-- PlanAssignment: {org, plan: {key, version}, started_at, trial_ends_at,
-- fallback: {key, version} | null}.
create or replace function tenancy.plan_assignment_json(a public.org_plans) returns jsonb
language sql stable
set search_path = ''
as $$
  select pg_catalog.jsonb_build_object(
    'org', a.organization_id,
    'plan', pg_catalog.jsonb_build_object('key', a.plan_key, 'version', a.version),
    'started_at', a.started_at,
    'trial_ends_at', a.trial_ends_at,
    'fallback', case when a.fallback_key is not null then pg_catalog.jsonb_build_object(
      'key', a.fallback_key, 'version', a.fallback_version) end)
$$;

-- A JSON number, or a string holding one (how Rust writes a Decimal), as
-- numeric; null for anything else.
create or replace function tenancy.json_numeric(value jsonb)
returns numeric
language plpgsql immutable
set search_path = ''
as $$
begin
  if pg_catalog.jsonb_typeof(json_numeric.value) = 'number' then
    return (json_numeric.value #>> '{}')::numeric;
  end if;
  if pg_catalog.jsonb_typeof(json_numeric.value) = 'string'
      and (json_numeric.value #>> '{}') ~ '^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$' then
    return (json_numeric.value #>> '{}')::numeric;
  end if;
  return null;
exception when numeric_value_out_of_range or invalid_text_representation then
  return null;
end
$$;

-- Refuses a malformed plan entry with 22023 naming it as
-- `features[i].key`, `limits[i].value`, ... (i from 0, in the plan's
-- order), so the inserts below never meet a cast or constraint error.
create or replace function tenancy.check_plan_entries(plan jsonb)
returns void
language plpgsql immutable
set search_path = ''
as $$
declare
  v_list text;
  v_entry jsonb;
  v_i bigint;
  v_at text;
  v_value jsonb;
begin
  foreach v_list in array array['features', 'limits', 'rate_limits'] loop
    if pg_catalog.jsonb_typeof(check_plan_entries.plan -> v_list) not in ('array', 'null') then
      raise exception '%: must be an array', v_list using errcode = '22023';
    end if;
    for v_entry, v_i in
      select e.value, e.ordinality - 1
      from pg_catalog.jsonb_array_elements(
        coalesce(nullif(check_plan_entries.plan -> v_list, 'null'::jsonb), '[]'::jsonb)) with ordinality e
    loop
      v_at := pg_catalog.format('%s[%s]', v_list, v_i);
      if pg_catalog.jsonb_typeof(v_entry) <> 'object' then
        raise exception '%: must be an object', v_at using errcode = '22023';
      end if;
      if v_list = 'features' then
        if pg_catalog.jsonb_typeof(v_entry -> 'key') is distinct from 'string'
            or (v_entry ->> 'key') !~ '^[a-z][a-z0-9_.-]{0,63}$' then
          raise exception '%.key: % is not a feature key (^[a-z][a-z0-9_.-]{0,63}$)',
            v_at, coalesce(v_entry -> 'key', 'null') using errcode = '22023';
        end if;
        if pg_catalog.jsonb_typeof(v_entry -> 'enabled') is distinct from 'boolean' then
          raise exception '%.enabled: must be true or false', v_at using errcode = '22023';
        end if;
        continue;
      end if;
      -- A usage limit or a rate limit.
      v_value := v_entry -> 'id';
      if v_value is not null and v_value <> 'null'::jsonb and (pg_catalog.jsonb_typeof(v_value) <> 'string'
          or (v_value #>> '{}') !~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$') then
        raise exception '%.id: % is not a UUID', v_at, v_value using errcode = '22023';
      end if;
      if pg_catalog.jsonb_typeof(v_entry -> 'metric') is distinct from 'string'
          or (v_entry ->> 'metric') !~ '^[a-z][a-z0-9_]{0,62}$' then
        raise exception '%.metric: % is not a metric key (^[a-z][a-z0-9_]{0,62}$)',
          v_at, coalesce(v_entry -> 'metric', 'null') using errcode = '22023';
      end if;
      if v_list = 'limits' and (v_entry ->> 'period') is distinct from 'daily'
          and (v_entry ->> 'period') is distinct from 'monthly' then
        raise exception '%.period: % is not daily or monthly',
          v_at, coalesce(v_entry -> 'period', 'null') using errcode = '22023';
      end if;
      if v_list = 'rate_limits' and coalesce(v_entry ->> 'window', '') not in ('second', 'minute', 'hour') then
        raise exception '%.window: % is not second, minute or hour',
          v_at, coalesce(v_entry -> 'window', 'null') using errcode = '22023';
      end if;
      if tenancy.json_numeric(v_entry -> 'value') is null
          or tenancy.json_numeric(v_entry -> 'value') not between 0 and 1e18 then
        raise exception '%.value: % is not a number from 0 to 1e18',
          v_at, coalesce(v_entry -> 'value', 'null') using errcode = '22023';
      end if;
      if v_list = 'rate_limits' and (tenancy.json_numeric(v_entry -> 'burst') is null
          or tenancy.json_numeric(v_entry -> 'burst') <= 0
          or tenancy.json_numeric(v_entry -> 'burst') > 1e18) then
        raise exception '%.burst: % is not a number above 0, at most 1e18',
          v_at, coalesce(v_entry -> 'burst', 'null') using errcode = '22023';
      end if;
      if coalesce(v_entry ->> 'mode', 'hard') not in ('hard', 'soft') then
        raise exception '%.mode: % is not hard or soft', v_at, v_entry -> 'mode'
          using errcode = '22023';
      end if;
    end loop;
  end loop;
end
$$;

-- tenancy_put_plan_version(plan, now) -> PlanVersion. `plan` is {key, name,
-- features, limits, rate_limits} (a NewPlanVersion); the version is the
-- key's next number (1 for a new key), taken by an upsert of the key's row
-- that concurrent puts of the same key wait on, so no two get the same
-- number. An entry's id already used in the catalog, or by an earlier
-- entry of this plan, is replaced by a fresh one: ids are fresh per
-- version. 22023 naming the field for a malformed plan
-- (tenancy.check_plan_entries); 23505 for two entries in one slot.
create or replace function public.tenancy_put_plan_version(plan jsonb, now timestamptz)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_key text := tenancy_put_plan_version.plan ->> 'key';
  v_name text := tenancy_put_plan_version.plan ->> 'name';
  v_version integer;
  v_row public.plan_versions;
begin
  if pg_catalog.jsonb_typeof(tenancy_put_plan_version.plan) is distinct from 'object' then
    raise exception 'plan: must be an object {key, name, features, limits, rate_limits}'
      using errcode = '22023';
  end if;
  if v_key is null or v_key !~ '^[a-z][a-z0-9_-]{0,63}$' then
    raise exception 'key: % is not a plan key (^[a-z][a-z0-9_-]{0,63}$)', coalesce(v_key, 'null')
      using errcode = '22023';
  end if;
  if v_name is null or char_length(v_name) not between 1 and 100 then
    raise exception 'name: must be 1 to 100 characters' using errcode = '22023';
  end if;
  if tenancy_put_plan_version.now is null then
    raise exception 'now: is required' using errcode = '22023';
  end if;
  perform tenancy.check_plan_entries(tenancy_put_plan_version.plan);
  insert into public.plans as p (plan_key, latest_version, created_at)
  values (v_key, 1, tenancy_put_plan_version.now)
  on conflict (plan_key) do update set latest_version = p.latest_version + 1
  returning p.latest_version into v_version;

  insert into public.plan_versions (plan_key, version, name, created_at)
  values (v_key, v_version, v_name, tenancy_put_plan_version.now)
  returning * into v_row;

  insert into public.plan_features (plan_key, version, feature_key, enabled, config, position)
  select v_key, v_version, e.value ->> 'key', (e.value ->> 'enabled')::boolean,
    nullif(e.value -> 'config', 'null'::jsonb), e.ordinality::integer
  from pg_catalog.jsonb_array_elements(coalesce(tenancy_put_plan_version.plan -> 'features', '[]'))
    with ordinality e;

  insert into public.plan_limits (plan_key, version, id, metric, period, limit_value, mode, position)
  select v_key, v_version,
    case when exists (select 1 from public.plan_limits x where x.id = (e.value ->> 'id')::uuid)
        or pg_catalog.row_number() over (partition by (e.value ->> 'id')::uuid order by e.ordinality) > 1
      then gen_random_uuid() else coalesce((e.value ->> 'id')::uuid, gen_random_uuid()) end,
    e.value ->> 'metric', e.value ->> 'period', (e.value ->> 'value')::numeric,
    coalesce(e.value ->> 'mode', 'hard'), e.ordinality::integer
  from pg_catalog.jsonb_array_elements(coalesce(tenancy_put_plan_version.plan -> 'limits', '[]'))
    with ordinality e;

  insert into public.plan_rate_limits
    (plan_key, version, id, metric, rate_window, limit_value, burst, mode, position)
  select v_key, v_version,
    case when exists (select 1 from public.plan_rate_limits x where x.id = (e.value ->> 'id')::uuid)
        or pg_catalog.row_number() over (partition by (e.value ->> 'id')::uuid order by e.ordinality) > 1
      then gen_random_uuid() else coalesce((e.value ->> 'id')::uuid, gen_random_uuid()) end,
    e.value ->> 'metric', e.value ->> 'window', (e.value ->> 'value')::numeric,
    (e.value ->> 'burst')::numeric, coalesce(e.value ->> 'mode', 'hard'), e.ordinality::integer
  from pg_catalog.jsonb_array_elements(coalesce(tenancy_put_plan_version.plan -> 'rate_limits', '[]'))
    with ordinality e;

  return tenancy.plan_version_json(v_row);
end
$$;

-- tenancy_plan_versions(plan_key?) -> [PlanVersion] by key (byte order),
-- then version: one plan's, or every plan's. Security invoker: a user JWT
-- sees the versions its organizations are on (RLS).
create or replace function public.tenancy_plan_versions(plan_key text default null)
returns jsonb
language sql stable
set search_path = ''
as $$
  select coalesce(pg_catalog.jsonb_agg(tenancy.plan_version_json(v)
      order by v.plan_key collate "C", v.version), '[]'::jsonb)
  from public.plan_versions v
  where tenancy_plan_versions.plan_key is null or v.plan_key = tenancy_plan_versions.plan_key
$$;

-- tenancy_plan_version(plan_key, version) -> [PlanVersion], zero or one.
create or replace function public.tenancy_plan_version(plan_key text, version integer)
returns jsonb
language sql stable
set search_path = ''
as $$
  select coalesce(pg_catalog.jsonb_agg(tenancy.plan_version_json(v)), '[]'::jsonb)
  from public.plan_versions v
  where v.plan_key = tenancy_plan_version.plan_key and v.version = tenancy_plan_version.version
$$;

-- tenancy_assign_plan(org_id, plan_key, version, started_at, trial_ends_at?,
-- fallback_key?, fallback_version?) -> PlanAssignment: replaces the
-- organization's assignment. P0002 naming org_id, plan or fallback when
-- one does not exist.
create or replace function public.tenancy_assign_plan(
  org_id uuid, plan_key text, version integer, started_at timestamptz,
  trial_ends_at timestamptz default null, fallback_key text default null,
  fallback_version integer default null
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_row public.org_plans;
begin
  if org_id is null or plan_key is null or version is null or started_at is null then
    raise exception 'org_id, plan_key, version and started_at are required' using errcode = '22023';
  end if;
  if (fallback_key is null) <> (fallback_version is null) then
    raise exception 'fallback_key and fallback_version: give both or neither' using errcode = '22023';
  end if;
  if not exists (select 1 from public.organizations o where o.id = tenancy_assign_plan.org_id) then
    raise exception 'org_id: organization % not found', tenancy_assign_plan.org_id
      using errcode = 'P0002';
  end if;
  if not exists (select 1 from public.plan_versions v
                 where v.plan_key = tenancy_assign_plan.plan_key
                   and v.version = tenancy_assign_plan.version) then
    raise exception 'plan: % version % not found', tenancy_assign_plan.plan_key,
      tenancy_assign_plan.version using errcode = 'P0002';
  end if;
  if fallback_key is not null and not exists (
      select 1 from public.plan_versions v
      where v.plan_key = tenancy_assign_plan.fallback_key
        and v.version = tenancy_assign_plan.fallback_version) then
    raise exception 'fallback: % version % not found', tenancy_assign_plan.fallback_key,
      tenancy_assign_plan.fallback_version using errcode = 'P0002';
  end if;
  insert into public.org_plans as a
    (organization_id, plan_key, version, started_at, trial_ends_at, fallback_key, fallback_version)
  values (tenancy_assign_plan.org_id, tenancy_assign_plan.plan_key, tenancy_assign_plan.version,
          tenancy_assign_plan.started_at, tenancy_assign_plan.trial_ends_at,
          tenancy_assign_plan.fallback_key, tenancy_assign_plan.fallback_version)
  on conflict (organization_id) do update set
    plan_key = excluded.plan_key, version = excluded.version, started_at = excluded.started_at,
    trial_ends_at = excluded.trial_ends_at, fallback_key = excluded.fallback_key,
    fallback_version = excluded.fallback_version
  returning * into v_row;
  return tenancy.plan_assignment_json(v_row);
end
$$;

-- tenancy_plan_assignment(org_id) -> [PlanAssignment], zero or one.
-- Security invoker: a user JWT reads its own organizations' (RLS).
create or replace function public.tenancy_plan_assignment(org_id uuid) returns jsonb
language sql stable
set search_path = ''
as $$
  select coalesce(pg_catalog.jsonb_agg(tenancy.plan_assignment_json(a)), '[]'::jsonb)
  from public.org_plans a
  where a.organization_id = tenancy_plan_assignment.org_id
$$;

-- tenancy_unassign_plan(org_id) -> {deleted}: whether it had one.
create or replace function public.tenancy_unassign_plan(org_id uuid) returns jsonb
language plpgsql
set search_path = ''
as $$
begin
  delete from public.org_plans a where a.organization_id = tenancy_unassign_plan.org_id;
  return pg_catalog.jsonb_build_object('deleted', found);
end
$$;

-- tenancy_migrate_plan(plan_key, from_version, to_version, org_id?) ->
-- {migrated}: moves the assignments on (plan_key, from_version) — one
-- organization's, or all — to to_version, and the trials whose fallback
-- is that version to fall to to_version, keeping start and trial end, in
-- one statement; migrated counts the assignments changed. Usage is
-- untouched. P0002 naming to_version when it does not exist.
create or replace function public.tenancy_migrate_plan(
  plan_key text, from_version integer, to_version integer, org_id uuid default null
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_moved bigint;
begin
  if plan_key is null or from_version is null or to_version is null then
    raise exception 'plan_key, from_version and to_version are required' using errcode = '22023';
  end if;
  if not exists (select 1 from public.plan_versions v
                 where v.plan_key = tenancy_migrate_plan.plan_key
                   and v.version = tenancy_migrate_plan.to_version) then
    raise exception 'to_version: % version % not found', tenancy_migrate_plan.plan_key,
      tenancy_migrate_plan.to_version using errcode = 'P0002';
  end if;
  -- A migration to the version itself changes nothing.
  if tenancy_migrate_plan.to_version = tenancy_migrate_plan.from_version then
    return pg_catalog.jsonb_build_object('migrated', 0);
  end if;
  update public.org_plans a
  set version = case when a.plan_key = tenancy_migrate_plan.plan_key
        and a.version = tenancy_migrate_plan.from_version
      then tenancy_migrate_plan.to_version else a.version end,
    fallback_version = case when a.fallback_key = tenancy_migrate_plan.plan_key
        and a.fallback_version = tenancy_migrate_plan.from_version
      then tenancy_migrate_plan.to_version else a.fallback_version end
  where ((a.plan_key = tenancy_migrate_plan.plan_key
          and a.version = tenancy_migrate_plan.from_version)
      or (a.fallback_key = tenancy_migrate_plan.plan_key
          and a.fallback_version = tenancy_migrate_plan.from_version))
    and (tenancy_migrate_plan.org_id is null or a.organization_id = tenancy_migrate_plan.org_id);
  get diagnostics v_moved = row_count;
  return pg_catalog.jsonb_build_object('migrated', v_moved);
end
$$;

-- The effective view's JSON (Entitlements): {org, assignment, plan,
-- features: [[Feature, source]], limits: [[Limit, source]], rate_limits:
-- [[RateLimit, source]], valid_until}. Features by key (byte order),
-- limits and rate limits by created_at, then id. `viewer`: null for every
-- row; a user, for the per-user rows RLS would show it (org-wide and its
-- own; all for admins and owners). P0002 for an unknown organization.
create or replace function tenancy.entitlements_for(org uuid, at timestamptz, viewer uuid)
returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_all boolean;
  v_assignment public.org_plans;
  v_plan jsonb;
begin
  if org is null or at is null then
    raise exception 'org_id and at are required' using errcode = '22023';
  end if;
  if not exists (select 1 from public.organizations o where o.id = org) then
    raise exception 'org_id: organization % not found', org using errcode = 'P0002';
  end if;
  v_all := case when viewer is null then true
    else coalesce(tenancy.role_rank(tenancy.role_in(org)) >= tenancy.role_rank('admin'), false) end;
  select a.* into v_assignment from public.org_plans a where a.organization_id = org;
  select pg_catalog.jsonb_build_object('key', e.plan_key, 'version', e.version) into v_plan
  from tenancy.effective_plan(org, at) e;
  return pg_catalog.jsonb_build_object(
    'org', org,
    'assignment', case when v_assignment.organization_id is not null
      then tenancy.plan_assignment_json(v_assignment) end,
    'plan', v_plan,
    'features', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(
          pg_catalog.jsonb_build_object('key', f.feature_key, 'enabled', f.enabled,
            'config', f.config, 'updated_at', f.updated_at, 'expires_at', f.expires_at),
          tenancy.entitlement_source_json(f.plan_key, f.plan_version, f.expires_at))
        order by f.feature_key collate "C")
      from tenancy.effective_features(org, at) f), '[]'::jsonb),
    'limits', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(
          tenancy.limit_json(l.id, l.organization_id, l.user_id, l.metric, l.period,
                             l.limit_value, l.mode, l.created_at, l.limit_type)
            || pg_catalog.jsonb_build_object('expires_at', l.expires_at),
          tenancy.entitlement_source_json(l.plan_key, l.plan_version, l.expires_at))
        order by l.created_at, l.id)
      from tenancy.effective_limits(org, at) l
      where v_all or l.user_id is null or l.user_id = viewer), '[]'::jsonb),
    'rate_limits', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(
          tenancy.rate_limit_entry_json(r.id, r.organization_id, r.user_id, r.metric,
            r.rate_window, r.limit_value, r.burst, r.mode, r.created_at, r.expires_at),
          tenancy.entitlement_source_json(r.plan_key, r.plan_version, r.expires_at))
        order by r.created_at, r.id)
      from tenancy.effective_rate_limits(org, at) r
      where v_all or r.user_id is null or r.user_id = viewer), '[]'::jsonb),
    -- Over the rows this viewer is shown: another member's per-user
    -- expiry is not its business.
    'valid_until', tenancy.entitlements_valid_until(org, at,
      case when v_all then null else viewer end));
end
$$;

-- The checked path for a user JWT: any member of `org` (viewer and up)
-- reads its effective view, at `at` or now.
create or replace function tenancy.member_entitlements(org uuid, at timestamptz) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_user uuid := tenancy.require_role(org, null, 'viewer');
begin
  return tenancy.entitlements_for(org, coalesce(at, pg_catalog.now()), v_user);
end
$$;

-- tenancy_entitlements(org_id, at?) -> Entitlements at `at` (default:
-- now()). service_role: any organization; a user JWT: its own (42501
-- otherwise), read-only.
create or replace function public.tenancy_entitlements(org_id uuid, at timestamptz default null)
returns jsonb
language plpgsql stable
set search_path = ''
as $$
begin
  if tenancy.is_privileged() then
    return tenancy.entitlements_for(tenancy_entitlements.org_id,
      coalesce(tenancy_entitlements.at, pg_catalog.now()), null);
  end if;
  return tenancy.member_entitlements(tenancy_entitlements.org_id, tenancy_entitlements.at);
end
$$;

-- ---------------------------------------------------------------------------
-- 7. Propagation: a version counter bumped in the changing transaction
-- (a reader sees the new number exactly when it sees the change), and a
-- notification delivered at commit.

create table if not exists tenancy.entitlements_version (
  id boolean not null default true constraint entitlements_version_one_row check (id),
  version bigint not null default 0,
  constraint entitlements_version_pkey primary key (id)
);
alter table tenancy.entitlements_version enable row level security;
revoke all on table tenancy.entitlements_version from public, anon, authenticated, service_role;
insert into tenancy.entitlements_version (id, version) values (true, 0) on conflict do nothing;

-- Bumps the version and notifies `tenancy_entitlements` with the changed
-- organization's id, or '*' for a statement touching more than one
-- organization, or a truncate (the only trigger on the catalog tables:
-- writing a version changes no view). A statement that changed no row
-- does nothing.
create or replace function tenancy.entitlements_changed() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_orgs bigint;
  v_org uuid;
  v_payload text;
begin
  if tg_op = 'TRUNCATE' then
    v_payload := '*';
  else
    if tg_op = 'INSERT' then
      select count(distinct n.organization_id), min(n.organization_id::text)::uuid
        into v_orgs, v_org from new_rows n;
    elsif tg_op = 'DELETE' then
      select count(distinct o.organization_id), min(o.organization_id::text)::uuid
        into v_orgs, v_org from old_rows o;
    else
      select count(distinct t.organization_id), min(t.organization_id::text)::uuid
        into v_orgs, v_org
      from (select n.organization_id from new_rows n
            union all select o.organization_id from old_rows o) t;
    end if;
    if v_orgs = 0 then
      return null;
    end if;
    v_payload := case when v_orgs = 1 then v_org::text else '*' end;
  end if;
  update tenancy.entitlements_version set version = version + 1 where id;
  perform pg_catalog.pg_notify('tenancy_entitlements', v_payload);
  return null;
end
$$;

do $$
declare
  v record;
begin
  for v in
    select * from (values
      ('plans', 'catalog'), ('plan_versions', 'catalog'), ('plan_features', 'catalog'),
      ('plan_limits', 'catalog'), ('plan_rate_limits', 'catalog'),
      ('org_plans', 'org'), ('org_features', 'org'), ('usage_limits', 'org'),
      ('usage_rate_limits', 'org')
    ) t (name, kind)
  loop
    execute pg_catalog.format('drop trigger if exists entitlements_inserted on public.%I', v.name);
    execute pg_catalog.format('drop trigger if exists entitlements_updated on public.%I', v.name);
    execute pg_catalog.format('drop trigger if exists entitlements_deleted on public.%I', v.name);
    execute pg_catalog.format('drop trigger if exists entitlements_truncated on public.%I', v.name);
    execute pg_catalog.format(
      'create trigger entitlements_truncated after truncate on public.%I '
      'for each statement execute function tenancy.entitlements_changed(%L)', v.name, v.kind);
    continue when v.kind = 'catalog';
    execute pg_catalog.format(
      'create trigger entitlements_inserted after insert on public.%I '
      'referencing new table as new_rows for each statement '
      'execute function tenancy.entitlements_changed(%L)', v.name, v.kind);
    execute pg_catalog.format(
      'create trigger entitlements_updated after update on public.%I '
      'referencing old table as old_rows new table as new_rows for each statement '
      'execute function tenancy.entitlements_changed(%L)', v.name, v.kind);
    execute pg_catalog.format(
      'create trigger entitlements_deleted after delete on public.%I '
      'referencing old table as old_rows for each statement '
      'execute function tenancy.entitlements_changed(%L)', v.name, v.kind);
  end loop;
end
$$;

-- tenancy_entitlements_version() -> bigint: the counter. A cheap read a
-- cache polls; service_role only.
create or replace function tenancy.entitlements_version_value() returns bigint
language sql stable security definer
set search_path = ''
as $$
  select coalesce((select v.version from tenancy.entitlements_version v where v.id), 0)
$$;

create or replace function public.tenancy_entitlements_version() returns bigint
language sql stable security invoker
set search_path = ''
as $$
  select tenancy.entitlements_version_value()
$$;

-- ---------------------------------------------------------------------------
-- 8. Audit. An assignment change is an event of its organization (entity
-- `plan`, target the plan key). A new catalog version is one event
-- `plan_version.created` under the nil organization id, target
-- `<key>:<version>`, `after` the version's JSON with its entries, written
-- when the transaction commits (a deferred constraint trigger: its
-- entries are inserted after the version row).

drop trigger if exists audit_log on public.org_plans;
create trigger audit_log after insert or update or delete on public.org_plans
  for each row execute function tenancy.audit_row('plan', 'plan_key', 'organization_id');

create or replace function tenancy.audit_plan_version() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_actor jsonb := tenancy.audit_actor();
begin
  insert into public.audit_events
    (organization_id, actor_kind, actor_user_id, actor_name, action, target, before, after,
     request_id)
  values (
    '00000000-0000-0000-0000-000000000000'::uuid,
    v_actor ->> 'kind',
    (v_actor ->> 'user_id')::uuid,
    v_actor ->> 'name',
    'plan_version.created',
    new.plan_key || ':' || new.version,
    null,
    tenancy.plan_version_json(new),
    v_actor ->> 'request_id');
  return null;
end
$$;

drop trigger if exists audit_log on public.plan_versions;
create constraint trigger audit_log after insert on public.plan_versions
  deferrable initially deferred
  for each row execute function tenancy.audit_plan_version();

-- ---------------------------------------------------------------------------
-- Who may call what. Supabase grants every new function in public to anon
-- and authenticated, and PostgreSQL every new function to PUBLIC: revoke.

revoke all on function
  tenancy.plan_versions_immutable(),
  tenancy.plan_visible(text, integer),
  tenancy.effective_plan(uuid, timestamptz),
  tenancy.effective_features(uuid, timestamptz),
  tenancy.effective_limits(uuid, timestamptz),
  tenancy.effective_rate_limits(uuid, timestamptz),
  tenancy.entitlements_valid_until(uuid, timestamptz, uuid),
  tenancy.rate_limit_entry_json(uuid, uuid, uuid, text, text, numeric, numeric, text,
    timestamptz, timestamptz),
  tenancy.entitlement_source_json(text, integer, timestamptz),
  tenancy.rate_limits_drop_state(),
  tenancy.plan_version_json(public.plan_versions),
  tenancy.plan_assignment_json(public.org_plans),
  tenancy.entitlements_for(uuid, timestamptz, uuid),
  tenancy.member_entitlements(uuid, timestamptz),
  tenancy.entitlements_changed(),
  tenancy.entitlements_version_value(),
  tenancy.audit_plan_version(),
  tenancy.json_numeric(jsonb),
  tenancy.check_plan_entries(jsonb),
  public.tenancy_update_feature(uuid, text, boolean, timestamptz, boolean, jsonb, boolean,
    timestamptz),
  public.tenancy_put_limit(uuid, uuid, text, text, numeric, text, uuid, timestamptz, timestamptz),
  public.tenancy_put_rate_limit(uuid, uuid, text, text, numeric, numeric, text, timestamptz, uuid,
    timestamptz),
  public.tenancy_put_plan_version(jsonb, timestamptz),
  public.tenancy_plan_versions(text),
  public.tenancy_plan_version(text, integer),
  public.tenancy_assign_plan(uuid, text, integer, timestamptz, timestamptz, text, integer),
  public.tenancy_plan_assignment(uuid),
  public.tenancy_unassign_plan(uuid),
  public.tenancy_migrate_plan(text, integer, integer, uuid),
  public.tenancy_entitlements(uuid, timestamptz),
  public.tenancy_entitlements_version()
from public, anon, authenticated;

-- The effective view and the catalog's JSON: what the readers (service
-- paths, member definers, security-invoker helpers a user JWT calls, RLS
-- policies) run.
grant execute on function
  tenancy.plan_visible(text, integer),
  tenancy.effective_plan(uuid, timestamptz),
  tenancy.effective_features(uuid, timestamptz),
  tenancy.effective_limits(uuid, timestamptz),
  tenancy.effective_rate_limits(uuid, timestamptz),
  tenancy.entitlements_valid_until(uuid, timestamptz, uuid),
  tenancy.rate_limit_entry_json(uuid, uuid, uuid, text, text, numeric, numeric, text,
    timestamptz, timestamptz),
  tenancy.entitlement_source_json(text, integer, timestamptz),
  tenancy.plan_version_json(public.plan_versions),
  tenancy.plan_assignment_json(public.org_plans),
  public.tenancy_plan_versions(text),
  public.tenancy_plan_version(text, integer),
  public.tenancy_plan_assignment(uuid),
  public.tenancy_entitlements(uuid, timestamptz)
to authenticated, service_role;

grant execute on function
  tenancy.member_entitlements(uuid, timestamptz)
to authenticated;

grant execute on function
  tenancy.entitlements_for(uuid, timestamptz, uuid),
  tenancy.entitlements_version_value(),
  tenancy.json_numeric(jsonb),
  tenancy.check_plan_entries(jsonb),
  public.tenancy_update_feature(uuid, text, boolean, timestamptz, boolean, jsonb, boolean,
    timestamptz),
  public.tenancy_put_limit(uuid, uuid, text, text, numeric, text, uuid, timestamptz, timestamptz),
  public.tenancy_put_rate_limit(uuid, uuid, text, text, numeric, numeric, text, timestamptz, uuid,
    timestamptz),
  public.tenancy_put_plan_version(jsonb, timestamptz),
  public.tenancy_assign_plan(uuid, text, integer, timestamptz, timestamptz, text, integer),
  public.tenancy_unassign_plan(uuid),
  public.tenancy_migrate_plan(text, integer, integer, uuid),
  public.tenancy_entitlements_version()
to service_role;

insert into tenancy.schema_migrations (version, name)
values (13, '20261206001200_tenancy_plans')
on conflict do nothing;
