-- tenancy: the tables.
--
-- Organizations and memberships, per-org feature flags, usage limits, the
-- usage event log, per-period counters, reservations (holds) and alert
-- dedupe records. Every key leads with organization_id (ready to distribute
-- by tenant); usage_events is keyed by (organization_id, client event id),
-- so a retried event is recognised within its organization.
--
-- Idempotent: `if not exists` everywhere.

-- A host table of the same name. `create table if not exists` below would
-- keep a host's own `public.organizations (id, title)` and the migrations
-- would fail later, far from the cause; so first, every one of the eight
-- tables that already exists must be a table with the columns tenancy
-- needs (a database that applied this file has them all). Otherwise this
-- stops here, naming each table and what it lacks, and changes nothing.
do $$
declare
  v_needed constant jsonb := '{
    "organizations": ["id", "name", "slug", "owner_user_id", "timezone", "created_at"],
    "user_organizations": ["organization_id", "user_id", "role", "created_at"],
    "org_features": ["organization_id", "feature_key", "enabled", "config", "updated_at"],
    "usage_limits": ["id", "organization_id", "user_id", "limit_type", "limit_value", "period",
                     "mode", "metric", "created_at", "scope_user_id"],
    "usage_events": ["id", "organization_id", "user_id", "provider", "model", "operation",
                     "input_tokens", "cached_input_tokens", "output_tokens", "quantities",
                     "cost_usd", "occurred_at", "metadata", "daily_start", "monthly_start",
                     "recorded_at"],
    "usage_counters": ["organization_id", "scope_user_id", "metric", "period", "period_start",
                       "used", "updated_at"],
    "usage_reservations": ["organization_id", "id", "user_id", "metric", "amount", "daily_start",
                           "monthly_start", "expires_at", "created_at"],
    "usage_alerts": ["organization_id", "scope_user_id", "metric", "period", "period_start",
                     "threshold_percent", "fired_at"]
  }';
  v_table text;
  v_relation oid;
  v_kind "char";
  v_missing text;
  v_problems text[] := '{}';
begin
  foreach v_table in array array[
    'organizations', 'user_organizations', 'org_features', 'usage_limits',
    'usage_events', 'usage_counters', 'usage_reservations', 'usage_alerts'
  ] loop
    v_relation := pg_catalog.to_regclass('public.' || pg_catalog.quote_ident(v_table));
    continue when v_relation is null;
    select c.relkind into v_kind from pg_catalog.pg_class c where c.oid = v_relation;
    if v_kind not in ('r', 'p') then
      v_problems := v_problems || pg_catalog.format('public.%I is not a table', v_table);
      continue;
    end if;
    select pg_catalog.string_agg(n.name, ', ' order by n.ord) into v_missing
    from pg_catalog.jsonb_array_elements_text(v_needed -> v_table) with ordinality n (name, ord)
    where not exists (
      select 1 from pg_catalog.pg_attribute a
      where a.attrelid = v_relation and a.attname = n.name and a.attnum > 0 and not a.attisdropped
    );
    if v_missing is not null then
      v_problems := v_problems
        || pg_catalog.format('public.%I exists without the columns %s', v_table, v_missing);
    end if;
  end loop;
  if pg_catalog.cardinality(v_problems) > 0 then
    raise exception 'tenancy cannot create its tables: %. Rename the application''s own '
        'table (alter table public.<name> rename to app_<name>), then apply '
        'the migrations again', pg_catalog.array_to_string(v_problems, '; ')
      using errcode = '42P07';
  end if;
end
$$;

create schema if not exists tenancy;

-- Whether PostgreSQL knows the time zone `tz` (IANA names, as chrono-tz).
create or replace function tenancy.is_timezone(tz text) returns boolean
language plpgsql immutable
set search_path = ''
as $$
begin
  perform pg_catalog.now() at time zone tz;
  return true;
exception when others then
  return false;
end
$$;

-- ---------------------------------------------------------------------------
-- organizations

create table if not exists public.organizations (
  id uuid primary key default gen_random_uuid(),
  name text not null
    constraint organizations_name_check
    check (char_length(btrim(name)) between 1 and 200),
  slug text not null
    constraint organizations_slug_key unique
    constraint organizations_slug_check
    check (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$' and char_length(slug) <= 63),
  -- The creator. Null only for a system organization (the "Default" org that
  -- adopt_table creates for pre-existing rows) or after the user is deleted.
  -- The `owner` role in user_organizations, not this column, grants rights.
  owner_user_id uuid references auth.users (id) on delete set null,
  timezone text not null default 'UTC'
    constraint organizations_timezone_check check (tenancy.is_timezone(timezone)),
  created_at timestamptz not null default now()
);

create index if not exists organizations_owner_user_id_idx
  on public.organizations (owner_user_id);

-- ---------------------------------------------------------------------------
-- user_organizations

create table if not exists public.user_organizations (
  organization_id uuid not null references public.organizations (id) on delete cascade,
  user_id uuid not null references auth.users (id) on delete cascade,
  role text not null
    constraint user_organizations_role_check
    check (role in ('owner', 'admin', 'member', 'viewer')),
  created_at timestamptz not null default now(),
  constraint user_organizations_pkey primary key (organization_id, user_id),
  constraint user_organizations_user_id_organization_id_key unique (user_id, organization_id)
);

-- ---------------------------------------------------------------------------
-- org_features

create table if not exists public.org_features (
  organization_id uuid not null references public.organizations (id) on delete cascade,
  feature_key text not null
    constraint org_features_feature_key_check
    check (feature_key ~ '^[a-z][a-z0-9_.-]{0,63}$'),
  enabled boolean not null default false,
  config jsonb,
  updated_at timestamptz not null default now(),
  constraint org_features_pkey primary key (organization_id, feature_key)
);

-- ---------------------------------------------------------------------------
-- usage_limits
--
-- The plan's columns (organization_id, user_id, limit_type, limit_value,
-- period) suffice to insert a row: `metric` is derived from `limit_type` by
-- a trigger (monthly_tokens -> tokens, monthly_cost -> cost_usd,
-- daily_ads -> ads_created, <period>_<metric> -> <metric>), `mode` defaults
-- to hard.

create table if not exists public.usage_limits (
  id uuid not null default gen_random_uuid(),
  organization_id uuid not null references public.organizations (id) on delete cascade,
  -- null = org-wide
  user_id uuid references auth.users (id) on delete cascade,
  limit_type text not null,
  limit_value numeric not null
    constraint usage_limits_limit_value_check check (limit_value >= 0),
  period text not null
    constraint usage_limits_period_check check (period in ('daily', 'monthly')),
  mode text not null default 'hard'
    constraint usage_limits_mode_check check (mode in ('hard', 'soft')),
  metric text not null
    constraint usage_limits_metric_check check (metric ~ '^[a-z][a-z0-9_]{0,62}$'),
  created_at timestamptz not null default now(),
  -- user_id, or the nil uuid for org-wide: lets the one-limit-per-slot rule
  -- be a plain unique constraint (usable as a PostgREST on_conflict target).
  scope_user_id uuid not null
    generated always as (coalesce(user_id, '00000000-0000-0000-0000-000000000000'::uuid)) stored,
  constraint usage_limits_pkey primary key (organization_id, id),
  constraint usage_limits_slot_key unique (organization_id, scope_user_id, metric, period)
);

create index if not exists usage_limits_user_id_idx on public.usage_limits (user_id);

-- ---------------------------------------------------------------------------
-- usage_events: the log. Written only by the record RPCs.

create table if not exists public.usage_events (
  id uuid not null,
  -- No foreign key: checking one per row was most of the record RPC's time
  -- (one lookup and row lock per event). The record RPC checks each batch's
  -- organizations once, and tenancy.delete_org_usage_events cascades
  -- deletes (20260301000300_tenancy_triggers.sql).
  organization_id uuid not null,
  user_id uuid,
  provider text not null default '',
  model text not null default '',
  operation text not null default '',
  input_tokens bigint not null default 0 constraint usage_events_input_tokens_check check (input_tokens >= 0),
  cached_input_tokens bigint not null default 0 constraint usage_events_cached_input_tokens_check check (cached_input_tokens >= 0),
  output_tokens bigint not null default 0 constraint usage_events_output_tokens_check check (output_tokens >= 0),
  quantities jsonb not null default '{}'::jsonb,
  cost_usd numeric constraint usage_events_cost_usd_check check (cost_usd >= 0),
  occurred_at timestamptz not null,
  metadata jsonb,
  -- What the event counted, {metric: amount}, as the library computed it
  -- (UsageEvent::amounts is the one place that rule lives), and the period
  -- keys it was counted in (in the org's time zone; for a committed
  -- reservation, the hold's). Enough to rebuild the counters from the log.
  amounts jsonb not null default '{}'::jsonb,
  daily_start date not null,
  monthly_start date not null,
  recorded_at timestamptz not null default now(),
  primary key (organization_id, id)
);

-- Databases created before the amounts column.
alter table public.usage_events add column if not exists amounts jsonb not null default '{}'::jsonb;

create index if not exists usage_events_org_occurred_idx
  on public.usage_events (organization_id, occurred_at desc);

-- ---------------------------------------------------------------------------
-- usage_counters: one row per (org, scope, metric, period): a limit check
-- reads a row, never a SUM over events. scope_user_id is the user, or the
-- nil uuid for the org-wide counter. The key puts the metric last: a
-- snapshot of every metric then reads one scope's current periods, not its
-- whole history.

create table if not exists public.usage_counters (
  organization_id uuid not null references public.organizations (id) on delete cascade,
  scope_user_id uuid not null,
  metric text not null
    constraint usage_counters_metric_check check (metric ~ '^[a-z][a-z0-9_]{0,62}$'),
  period text not null
    constraint usage_counters_period_check check (period in ('daily', 'monthly')),
  period_start date not null,
  used numeric not null default 0 constraint usage_counters_used_check check (used >= 0),
  updated_at timestamptz not null default now(),
  constraint usage_counters_pkey
    primary key (organization_id, scope_user_id, period, period_start, metric)
);

-- ---------------------------------------------------------------------------
-- usage_reservations: holds written by reserve, dropped by commit/release.
-- An expired hold stops counting but stays until a reserve purges it (the
-- caller says how old), so that a late commit is still recognised.

create table if not exists public.usage_reservations (
  organization_id uuid not null references public.organizations (id) on delete cascade,
  id uuid not null,
  user_id uuid not null,
  metric text not null
    constraint usage_reservations_metric_check check (metric ~ '^[a-z][a-z0-9_]{0,62}$'),
  amount numeric not null constraint usage_reservations_amount_check check (amount >= 0),
  daily_start date not null,
  monthly_start date not null,
  expires_at timestamptz not null,
  created_at timestamptz not null default now(),
  constraint usage_reservations_pkey primary key (organization_id, id)
);

create index if not exists usage_reservations_org_metric_idx
  on public.usage_reservations (organization_id, metric, expires_at);

-- ---------------------------------------------------------------------------
-- usage_alerts: one row per alert fired (dedupe).

create table if not exists public.usage_alerts (
  organization_id uuid not null references public.organizations (id) on delete cascade,
  scope_user_id uuid not null,
  metric text not null
    constraint usage_alerts_metric_check check (metric ~ '^[a-z][a-z0-9_]{0,62}$'),
  period text not null
    constraint usage_alerts_period_check check (period in ('daily', 'monthly')),
  period_start date not null,
  threshold_percent integer not null
    constraint usage_alerts_threshold_percent_check check (threshold_percent > 0),
  fired_at timestamptz not null default now(),
  constraint usage_alerts_pkey
    primary key (organization_id, scope_user_id, metric, period, period_start, threshold_percent)
);

-- Databases created before the metric checks of the hold and alert tables.
do $$
begin
  if not exists (select 1 from pg_catalog.pg_constraint where conname = 'usage_reservations_metric_check'
                   and conrelid = 'public.usage_reservations'::regclass) then
    alter table public.usage_reservations add constraint usage_reservations_metric_check
      check (metric ~ '^[a-z][a-z0-9_]{0,62}$');
  end if;
  if not exists (select 1 from pg_catalog.pg_constraint where conname = 'usage_alerts_metric_check'
                   and conrelid = 'public.usage_alerts'::regclass) then
    alter table public.usage_alerts add constraint usage_alerts_metric_check
      check (metric ~ '^[a-z][a-z0-9_]{0,62}$');
  end if;
end
$$;

-- Databases created before usage_counters' key put the metric last.
do $$
begin
  if (select a.attname from pg_catalog.pg_index i
      join pg_catalog.pg_attribute a
        on a.attrelid = i.indrelid and a.attnum = i.indkey[pg_catalog.array_upper(i.indkey, 1)]
      where i.indexrelid = 'public.usage_counters_pkey'::regclass) <> 'metric' then
    alter table public.usage_counters
      drop constraint usage_counters_pkey,
      add constraint usage_counters_pkey
        primary key (organization_id, scope_user_id, period, period_start, metric);
  end if;
end
$$;
