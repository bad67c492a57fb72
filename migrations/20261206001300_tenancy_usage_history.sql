-- tenancy schema version 14: usage history (issue 19).
--
-- 1. usage_events gains the token classes beside input/cached/output
--    (cache writes, reasoning, audio and image in and out) and each event's
--    cost provenance (who priced it: the provider, or a price table with its
--    provider, model, effective date and name).
-- 2. usage_events becomes partitioned by month (range on occurred_at, UTC
--    months; partitions live in schema tenancy, out of PostgREST's reach),
--    keeping its rows, RLS, grants and triggers. Exact dedupe moves to
--    tenancy.usage_event_ids (organization_id, id), which the record
--    primitive inserts into first: an id is never inserted twice.
-- 3. Rollups, kept in the record's statement by a statement-level AFTER
--    INSERT trigger over the transition table (duplicates are never
--    inserted, so the trigger is idempotent by construction):
--    usage_rollups (per hour bucket in the organization's time zone, user,
--    provider, model, operation, metric: amount, events) and
--    usage_token_rollups (the same key plus cost provenance: every token
--    class, cost, events) for repricing, and usage_rollups_periods (the
--    metric sums per local day and local month) for whole-day and
--    whole-month reports.
-- 4. Reads: reports (hour / day / month in the org's time zone, grouping,
--    filters, keyset pages) from rollups only; token totals for repricing;
--    the event log by range and one event by id; all under the per-user
--    rule (admins and owners everyone's, members and viewers their own).
-- 5. Reconciliation of rollups against the event log, and its repair.
-- 6. Retention: whole partitions older than an age are dropped; rollups
--    and counters stay, so old periods still report.
-- 7. Stripe meter export state: billing_customers (org -> Stripe customer),
--    per-meter cursor, per-bucket marks, carried remainders and pending
--    batches; claim and ack functions (exactly once across crashes).
--
-- Applies as Supabase's `postgres` (not a superuser; BYPASSRLS; owner of
-- what it creates). Idempotent: re-applying it changes nothing.

-- ---------------------------------------------------------------------------
-- 1. New columns (on the plain table before the conversion copies it, or on
--    the partitioned one on a re-apply: both propagate).

alter table public.usage_events
  add column if not exists cache_write_tokens bigint not null default 0,
  add column if not exists reasoning_tokens bigint not null default 0,
  add column if not exists audio_input_tokens bigint not null default 0,
  add column if not exists audio_output_tokens bigint not null default 0,
  add column if not exists image_input_tokens bigint not null default 0,
  add column if not exists image_output_tokens bigint not null default 0,
  add column if not exists cost_source text,
  add column if not exists price_provider text,
  add column if not exists price_model text,
  add column if not exists price_effective_from date,
  add column if not exists price_table text;

do $$
declare
  c record;
begin
  for c in
    select * from (values
      ('usage_events_token_classes_check',
       'check (cache_write_tokens >= 0 and reasoning_tokens >= 0 and audio_input_tokens >= 0
          and audio_output_tokens >= 0 and image_input_tokens >= 0 and image_output_tokens >= 0)'),
      ('usage_events_cost_source_check',
       'check (cost_source in (''provider'', ''price_table''))')
    ) v (name, def)
  loop
    if not exists (
      select 1 from pg_catalog.pg_constraint k
      where k.conrelid = 'public.usage_events'::regclass and k.conname = c.name
    ) then
      execute format('alter table public.usage_events add constraint %I %s', c.name, c.def);
    end if;
  end loop;
end
$$;

-- ---------------------------------------------------------------------------
-- 2. Dedupe keys and the retention watermark.

-- One row per event ever inserted (until retention drops its month): the
-- dedupe key the partitioned table cannot hold (its primary key must carry
-- the partition key). No foreign key, as usage_events.
create table if not exists tenancy.usage_event_ids (
  organization_id uuid not null,
  id uuid not null,
  occurred_at timestamptz not null,
  primary key (organization_id, id)
);
alter table tenancy.usage_event_ids enable row level security;
revoke all on table tenancy.usage_event_ids from public;

-- Events before `kept_from` were dropped by retention (one row, id true).
create table if not exists tenancy.usage_retention (
  id boolean primary key default true check (id),
  kept_from timestamptz not null
);
alter table tenancy.usage_retention enable row level security;
revoke all on table tenancy.usage_retention from public;

do $$
begin
  if exists (select 1 from pg_catalog.pg_roles where rolname = 'anon') then
    revoke all on table tenancy.usage_event_ids, tenancy.usage_retention from anon, authenticated;
  end if;
  if exists (select 1 from pg_catalog.pg_roles where rolname = 'service_role') then
    grant select, insert, delete on table tenancy.usage_event_ids to service_role;
    grant select on table tenancy.usage_retention to service_role;
  end if;
end
$$;

-- ---------------------------------------------------------------------------
-- 3. Rollups.

-- user_id: the nil uuid for events without a user (a key column).
create table if not exists public.usage_rollups (
  organization_id uuid not null,
  bucket_start timestamptz not null,
  user_id uuid not null,
  provider text not null,
  model text not null,
  operation text not null,
  metric tenancy.metric_key not null,
  amount numeric not null,
  events bigint not null,
  primary key (organization_id, bucket_start, user_id, provider, model, operation, metric)
);

-- Provenance columns are not null ('' and '-infinity' for none) so they
-- can be part of the key.
create table if not exists public.usage_token_rollups (
  organization_id uuid not null,
  bucket_start timestamptz not null,
  user_id uuid not null,
  provider text not null,
  model text not null,
  operation text not null,
  cost_source text not null,
  price_provider text not null,
  price_model text not null,
  price_effective_from date not null,
  price_table text not null,
  input_tokens numeric not null default 0,
  cached_input_tokens numeric not null default 0,
  cache_write_tokens numeric not null default 0,
  output_tokens numeric not null default 0,
  reasoning_tokens numeric not null default 0,
  audio_input_tokens numeric not null default 0,
  audio_output_tokens numeric not null default 0,
  image_input_tokens numeric not null default 0,
  image_output_tokens numeric not null default 0,
  cost_usd numeric not null default 0,
  costed_events bigint not null default 0,
  events bigint not null,
  primary key (organization_id, bucket_start, user_id, provider, model, operation,
    cost_source, price_provider, price_model, price_effective_from, price_table)
);

-- The same sums per local day and per local month (`start`: the day, or
-- the first of the month, on the organization's clock), so a report of
-- whole days or months reads a few rows per group instead of every hour.
-- metric '' counts the events themselves (each once, whatever it counted
-- towards): `amount` = `events` = how many.
create table if not exists public.usage_rollups_periods (
  organization_id uuid not null,
  period text not null constraint usage_rollups_periods_period_check check (period in ('day', 'month')),
  start date not null,
  user_id uuid not null,
  provider text not null,
  model text not null,
  operation text not null,
  metric text not null,
  amount numeric not null,
  events bigint not null,
  primary key (organization_id, period, start, user_id, provider, model, operation, metric)
);

alter table public.usage_rollups enable row level security;
alter table public.usage_token_rollups enable row level security;
alter table public.usage_rollups_periods enable row level security;
revoke all on table public.usage_rollups, public.usage_token_rollups, public.usage_rollups_periods from public;
do $$
begin
  if exists (select 1 from pg_catalog.pg_roles where rolname = 'anon') then
    revoke all on table public.usage_rollups, public.usage_token_rollups, public.usage_rollups_periods
      from anon, authenticated;
    grant select on table public.usage_rollups, public.usage_token_rollups, public.usage_rollups_periods
      to authenticated;
    grant all on table public.usage_rollups, public.usage_token_rollups, public.usage_rollups_periods
      to service_role;
  end if;
end
$$;
do $$
declare
  t text;
begin
  foreach t in array array['usage_rollups', 'usage_token_rollups', 'usage_rollups_periods'] loop
    execute format('drop policy if exists %I on public.%I', t || '_select', t);
    execute format(
      'create policy %I on public.%I for select to authenticated using ('
      '  organization_id = any (array(select tenancy.org_ids(''admin'')))'
      '  or (organization_id = any (array(select tenancy.org_ids(''viewer'')))'
      '      and (%2$I.user_id = ''00000000-0000-0000-0000-000000000000''::uuid'
      '           or %2$I.user_id = (select auth.uid()))))',
      t || '_select', t);
  end loop;
end
$$;

-- The statement trigger: adds the statement's new events (a duplicate is
-- never inserted, so nothing counts twice) to both rollups, in key order
-- (concurrent batches lock shared rows in the same order: no deadlock).
-- Runs as whoever inserts (the service role, a security definer entry
-- point, the migration).
create or replace function tenancy.roll_up_usage() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_rows bigint;
begin
  with zones as (
    select o.id, tenancy.iana_zone(o.timezone) as tz
    from public.organizations o
    where o.id in (select distinct e.organization_id from new_events e)
  ),
  ev as (
    select e.*, tenancy.hour_start(e.occurred_at, coalesce(z.tz, 'UTC')) as bucket_start,
      (e.occurred_at at time zone coalesce(z.tz, 'UTC'))::date as local_day,
      coalesce(e.user_id, '00000000-0000-0000-0000-000000000000'::uuid) as user_key
    from new_events e left join zones z on z.id = e.organization_id
  ),
  metric_rows as (
    select ev.organization_id, ev.bucket_start, ev.user_key, ev.provider, ev.model, ev.operation,
      a.key as metric, sum((a.value #>> '{}')::numeric) as amount, count(*) as events
    from ev cross join lateral pg_catalog.jsonb_each(ev.amounts) a
    group by 1, 2, 3, 4, 5, 6, 7
  ),
  metrics as (
    insert into public.usage_rollups as r
      (organization_id, bucket_start, user_id, provider, model, operation, metric, amount, events)
    select m.organization_id, m.bucket_start, m.user_key, m.provider, m.model, m.operation,
      m.metric, m.amount, m.events
    from metric_rows m
    order by m.organization_id, m.bucket_start, m.user_key, m.provider collate "C",
      m.model collate "C", m.operation collate "C", m.metric collate "C"
    on conflict (organization_id, bucket_start, user_id, provider, model, operation, metric)
    do update set amount = r.amount + excluded.amount, events = r.events + excluded.events
    returning 1
  ),
  period_rows as (
    select ev.organization_id, p.period, p.start, ev.user_key, ev.provider, ev.model, ev.operation,
      a.metric, sum(a.amount) as amount, count(*) as events
    from ev
    cross join lateral (
      select x.key as metric, (x.value #>> '{}')::numeric as amount from pg_catalog.jsonb_each(ev.amounts) x
      union all select '', 1
    ) a
    cross join lateral (values ('day', ev.local_day),
      ('month', pg_catalog.date_trunc('month', ev.local_day)::date)) p (period, start)
    group by 1, 2, 3, 4, 5, 6, 7, 8
  ),
  periods as (
    insert into public.usage_rollups_periods as r
      (organization_id, period, start, user_id, provider, model, operation, metric, amount, events)
    select p.organization_id, p.period, p.start, p.user_key, p.provider, p.model, p.operation,
      p.metric, p.amount, p.events
    from period_rows p
    order by p.organization_id, p.period, p.start, p.user_key, p.provider collate "C",
      p.model collate "C", p.operation collate "C", p.metric collate "C"
    on conflict (organization_id, period, start, user_id, provider, model, operation, metric)
    do update set amount = r.amount + excluded.amount, events = r.events + excluded.events
    returning 1
  ),
  token_rows as (
    select ev.organization_id, ev.bucket_start, ev.user_key, ev.provider, ev.model, ev.operation,
      coalesce(ev.cost_source, '') as cost_source, coalesce(ev.price_provider, '') as price_provider,
      coalesce(ev.price_model, '') as price_model,
      coalesce(ev.price_effective_from, '-infinity'::date) as price_effective_from,
      coalesce(ev.price_table, '') as price_table,
      sum(ev.input_tokens) as input_tokens, sum(ev.cached_input_tokens) as cached_input_tokens,
      sum(ev.cache_write_tokens) as cache_write_tokens, sum(ev.output_tokens) as output_tokens,
      sum(ev.reasoning_tokens) as reasoning_tokens, sum(ev.audio_input_tokens) as audio_input_tokens,
      sum(ev.audio_output_tokens) as audio_output_tokens, sum(ev.image_input_tokens) as image_input_tokens,
      sum(ev.image_output_tokens) as image_output_tokens, coalesce(sum(ev.cost_usd), 0) as cost_usd,
      count(ev.cost_usd) as costed_events, count(*) as events
    from ev
    group by 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11
  ),
  tokens as (
    insert into public.usage_token_rollups as r
      (organization_id, bucket_start, user_id, provider, model, operation, cost_source,
       price_provider, price_model, price_effective_from, price_table, input_tokens,
       cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens,
       audio_input_tokens, audio_output_tokens, image_input_tokens, image_output_tokens,
       cost_usd, costed_events, events)
    select t.* from token_rows t
    order by t.organization_id, t.bucket_start, t.user_key, t.provider collate "C",
      t.model collate "C", t.operation collate "C", t.cost_source collate "C",
      t.price_provider collate "C", t.price_model collate "C", t.price_effective_from,
      t.price_table collate "C"
    on conflict (organization_id, bucket_start, user_id, provider, model, operation, cost_source,
      price_provider, price_model, price_effective_from, price_table)
    do update set
      input_tokens = r.input_tokens + excluded.input_tokens,
      cached_input_tokens = r.cached_input_tokens + excluded.cached_input_tokens,
      cache_write_tokens = r.cache_write_tokens + excluded.cache_write_tokens,
      output_tokens = r.output_tokens + excluded.output_tokens,
      reasoning_tokens = r.reasoning_tokens + excluded.reasoning_tokens,
      audio_input_tokens = r.audio_input_tokens + excluded.audio_input_tokens,
      audio_output_tokens = r.audio_output_tokens + excluded.audio_output_tokens,
      image_input_tokens = r.image_input_tokens + excluded.image_input_tokens,
      image_output_tokens = r.image_output_tokens + excluded.image_output_tokens,
      cost_usd = r.cost_usd + excluded.cost_usd,
      costed_events = r.costed_events + excluded.costed_events,
      events = r.events + excluded.events
    returning 1
  )
  select (select count(*) from metrics) + (select count(*) from tokens)
    + (select count(*) from periods) into v_rows;
  return null;
end
$$;
-- ---------------------------------------------------------------------------
-- 4. Partitions: one per UTC month, tenancy.usage_events_YYYY_MM.

-- The start of `at`'s event hour in `tz`: `at` minus the minutes, seconds
-- and fractions past the hour on the local clock. Exact in zones with
-- half-hour and 45-minute offsets, and the repeated hour of a clock set back
-- makes two buckets (one per offset), never one spanning two hours.
create or replace function tenancy.hour_start(at timestamptz, tz text) returns timestamptz
language sql immutable
as $$
  select hour_start.at - ((hour_start.at at time zone hour_start.tz)
    - pg_catalog.date_trunc('hour', hour_start.at at time zone hour_start.tz))
$$;

-- The partition holding `at`'s UTC month.
create or replace function tenancy.usage_partition_name(at timestamptz) returns text
language sql immutable
as $$
  select 'usage_events_' || pg_catalog.to_char(usage_partition_name.at at time zone 'UTC', 'YYYY_MM')
$$;

-- Creates the partition for the UTC month of `month_of` unless it exists;
-- returns its name. A definer (creating a partition needs the parent's
-- owner), serialized by an advisory lock so concurrent callers create it
-- once. Creating one locks usage_events briefly (ACCESS EXCLUSIVE): the
-- migration and tenancy_create_usage_partitions make them ahead of time,
-- so the record path only does it for a month nobody prepared.
create or replace function tenancy.create_usage_partition(month_of timestamptz) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_start timestamptz := pg_catalog.date_trunc('month', month_of at time zone 'UTC') at time zone 'UTC';
  v_name text := tenancy.usage_partition_name(month_of);
begin
  if month_of is null then
    raise exception 'month_of is required' using errcode = '22023';
  end if;
  if pg_catalog.to_regclass('tenancy.' || v_name) is not null then
    return v_name;
  end if;
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('tenancy.usage_events partitions'));
  -- A fresh look at the catalog (a concurrent creator may just have
  -- committed), and a creator that slipped past it is not an error.
  if exists (
    select 1 from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'tenancy' and c.relname = v_name
  ) then
    return v_name;
  end if;
  begin
    execute pg_catalog.format(
      'create table tenancy.%I partition of public.usage_events for values from (%L) to (%L)',
      v_name, v_start, v_start + interval '1 month');
  exception when duplicate_table then
    return v_name;
  end;
  -- Reached only through usage_events, whose policies apply; a partition
  -- read directly would bypass them, so nobody else holds a privilege.
  execute pg_catalog.format('alter table tenancy.%I enable row level security', v_name);
  execute pg_catalog.format('revoke all on table tenancy.%I from public', v_name);
  if exists (select 1 from pg_catalog.pg_roles where rolname = 'anon') then
    execute pg_catalog.format('revoke all on table tenancy.%I from anon, authenticated', v_name);
  end if;
  return v_name;
end
$$;

-- The conversion: a plain usage_events becomes partitioned, keeping every
-- row, its columns, defaults, checks, RLS, grants and triggers. Runs once
-- (a partitioned table is left as it is).
do $$
declare
  v_month timestamptz;
  v_rows bigint;
  v_copied bigint;
begin
  if (select c.relkind from pg_catalog.pg_class c where c.oid = 'public.usage_events'::regclass) <> 'r' then
    return;
  end if;
  alter table public.usage_events rename to usage_events_unpartitioned;
  alter table public.usage_events_unpartitioned rename constraint usage_events_pkey to usage_events_unpartitioned_pkey;
  alter index if exists public.usage_events_org_occurred_idx rename to usage_events_unpartitioned_occurred_idx;
  drop trigger if exists usage_events_consume_leases on public.usage_events_unpartitioned;

  create table public.usage_events (
    like public.usage_events_unpartitioned including defaults including constraints
  ) partition by range (occurred_at);
  -- Leading with organization_id; the partition key must be part of it,
  -- so the dedupe key is tenancy.usage_event_ids.
  alter table public.usage_events add constraint usage_events_pkey primary key (organization_id, id, occurred_at);

  for v_month in
    select distinct pg_catalog.date_trunc('month', e.occurred_at at time zone 'UTC') at time zone 'UTC'
    from public.usage_events_unpartitioned e
  loop
    perform tenancy.create_usage_partition(v_month);
  end loop;

  -- The copy goes through the rollup trigger (built from these rows) but
  -- not the lease trigger (leases were consumed when they were recorded).
  create trigger usage_events_roll_up
    after insert on public.usage_events
    referencing new table as new_events
    for each statement execute function tenancy.roll_up_usage();

  insert into tenancy.usage_event_ids (organization_id, id, occurred_at)
  select e.organization_id, e.id, e.occurred_at from public.usage_events_unpartitioned e
  on conflict do nothing;
  select count(*) into v_rows from public.usage_events_unpartitioned;
  insert into public.usage_events select * from public.usage_events_unpartitioned;
  get diagnostics v_copied = row_count;
  if v_copied <> v_rows then
    raise exception 'usage_events: copied % of % rows', v_copied, v_rows;
  end if;
  drop table public.usage_events_unpartitioned;
end
$$;

create index if not exists usage_events_org_occurred_idx
  on public.usage_events (organization_id, occurred_at, id);

-- This month, the one before and the next two, from the server's clock
-- (the migration's only use of it; the record path creates any other).
do $$
declare
  i integer;
begin
  for i in -1..2 loop
    perform tenancy.create_usage_partition(pg_catalog.now() + pg_catalog.make_interval(months => i));
  end loop;
end
$$;

-- Privileges and the per-user read policy, as the baseline gave them.
alter table public.usage_events enable row level security;
revoke all on table public.usage_events from public;
do $$
begin
  if exists (select 1 from pg_catalog.pg_roles where rolname = 'anon') then
    revoke all on table public.usage_events from anon;
    revoke all on table public.usage_events from authenticated;
    grant select on table public.usage_events to authenticated;
    grant all on table public.usage_events to service_role;
  end if;
end
$$;
drop policy if exists usage_events_select on public.usage_events;
create policy usage_events_select on public.usage_events for select to authenticated using (
  organization_id = any (array(select tenancy.org_ids('admin')))
  or (organization_id = any (array(select tenancy.org_ids('viewer')))
      and (usage_events.user_id is null
           or usage_events.user_id = '00000000-0000-0000-0000-000000000000'::uuid
           or usage_events.user_id = (select auth.uid()))));


-- The triggers, on the partitioned table (re-created on every apply).
drop trigger if exists usage_events_roll_up on public.usage_events;
create trigger usage_events_roll_up
  after insert on public.usage_events
  referencing new table as new_events
  for each statement execute function tenancy.roll_up_usage();

drop trigger if exists usage_events_consume_leases on public.usage_events;
create trigger usage_events_consume_leases
  after insert on public.usage_events
  referencing new table as new_events
  for each statement execute function tenancy.consume_leases();

-- Deleting an organization deletes its events (as before), their dedupe
-- keys and its rollups; truncating organizations truncates them all.
-- Export state (billing_customers and the rest) has foreign keys.
create or replace function tenancy.delete_org_usage_events()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from public.usage_events where organization_id = old.id;
  delete from tenancy.usage_event_ids where organization_id = old.id;
  delete from public.usage_rollups where organization_id = old.id;
  delete from public.usage_token_rollups where organization_id = old.id;
  delete from public.usage_rollups_periods where organization_id = old.id;
  return old;
end;
$$;

create or replace function tenancy.truncate_usage_events()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  truncate public.usage_events, tenancy.usage_event_ids, public.usage_rollups,
    public.usage_token_rollups, public.usage_rollups_periods;
  return null;
end;
$$;

-- ---------------------------------------------------------------------------
-- 5. The record primitive, again: the new columns, dedupe through
--    tenancy.usage_event_ids, the partitions a batch needs.
--
-- tenancy_record_usage(jsonb) -> {inserted, duplicates}. The events:
-- [{id, organization_id, user_id?, provider?, model?, operation?,
--   input_tokens?, cached_input_tokens?, cache_write_tokens?, output_tokens?,
--   reasoning_tokens?, audio_input_tokens?, audio_output_tokens?,
--   image_input_tokens?, image_output_tokens?, quantities?, cost_usd?,
--   cost_source? ('provider' | 'price_table'), price_provider?, price_model?,
--   price_effective_from? (date), price_table?, occurred_at, metadata?,
--   amounts: {metric: amount}, daily_start, monthly_start}]
-- Each new (organization_id, id) is inserted once (the first of a batch
-- wins; a key already recorded is a duplicate), and only new events add
-- their amounts to the counters, the rollups (trigger) and leases (trigger).

create or replace function public.tenancy_record_usage(jsonb) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  events alias for $1;
  v_orgs uuid[];
  v_locked integer;
  v_missing uuid;
  v_inserted integer;
  v_month timestamptz;
  v_kept timestamptz;
  v_old timestamptz;
begin
  if events is null or jsonb_typeof(events) <> 'array' then
    raise exception 'events must be a JSON array' using errcode = '22023';
  end if;
  select array_agg(distinct (e ->> 'organization_id')::uuid) into v_orgs
  from jsonb_array_elements(events) e;
  if v_orgs is null then
    return jsonb_build_object('inserted', 0, 'duplicates', 0);
  end if;
  if array_position(v_orgs, null) is not null then
    raise exception 'every event needs an organization_id' using errcode = '22023';
  end if;

  -- See 20260301000500_tenancy_rpc.sql: the batch's organizations, locked
  -- once, stand in for a foreign key.
  perform 1 from public.organizations o where o.id = any (v_orgs) order by o.id for key share;
  get diagnostics v_locked = row_count;
  if v_locked < cardinality(v_orgs) then
    select x into v_missing from unnest(v_orgs) x
    where not exists (select 1 from public.organizations o where o.id = x)
    limit 1;
    raise exception 'organization % does not exist', v_missing using errcode = 'P0002';
  end if;

  -- Every amount a number (or a string holding one), zero or more, before
  -- anything is written: a negative one must not reach a counter's check.
  -- (A CASE, so no cast meets a value it cannot read; no function call,
  -- since this runs for every amount of every event.)
  if exists (
    select 1 from jsonb_array_elements(events) e
    left join lateral jsonb_each(case when jsonb_typeof(e -> 'amounts') = 'object'
      then e -> 'amounts' end) a on true
    where case
      when jsonb_typeof(e -> 'amounts') not in ('object', 'null') then true
      when a.value is null then false
      when jsonb_typeof(a.value) = 'number' then (a.value #>> '{}')::numeric < 0
      when jsonb_typeof(a.value) = 'string' then case
        when (a.value #>> '{}') ~ '^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]{1,4})?\s*$'
        then (a.value #>> '{}')::numeric < 0
        else true end
      else true end
  ) then
    raise exception 'amounts must be zero or more' using errcode = '22023';
  end if;

  -- A new event older than what retention dropped would bring a dropped
  -- month back: refused. One already recorded is a duplicate, as ever.
  select r.kept_from into v_kept from tenancy.usage_retention r;
  if v_kept is not null then
    select (e ->> 'occurred_at')::timestamptz into v_old
    from jsonb_array_elements(events) e
    where (e ->> 'occurred_at')::timestamptz < v_kept
      and not exists (select 1 from tenancy.usage_event_ids k
        where k.organization_id = (e ->> 'organization_id')::uuid and k.id = (e ->> 'id')::uuid)
    limit 1;
    if found then
      raise exception 'occurred_at: % is before %, where retention dropped the event log', v_old, v_kept
        using errcode = '22023';
    end if;
  end if;

  -- The month partitions the batch needs (usually made ahead).
  for v_month in
    select distinct date_trunc('month', (e ->> 'occurred_at')::timestamptz at time zone 'UTC') at time zone 'UTC'
    from jsonb_array_elements(events) e
    where e ->> 'occurred_at' is not null
      and (v_kept is null or (e ->> 'occurred_at')::timestamptz >= v_kept)
  loop
    if to_regclass('tenancy.' || tenancy.usage_partition_name(v_month)) is null then
      perform tenancy.create_usage_partition(v_month);
    end if;
  end loop;

  with src as (
    select distinct on (x.organization_id, x.id) x.*
    from rows from (jsonb_to_recordset(events) as (
      id uuid, organization_id uuid, user_id uuid, provider text, model text, operation text,
      input_tokens bigint, cached_input_tokens bigint, cache_write_tokens bigint,
      output_tokens bigint, reasoning_tokens bigint, audio_input_tokens bigint,
      audio_output_tokens bigint, image_input_tokens bigint, image_output_tokens bigint,
      quantities jsonb, cost_usd numeric, cost_source text, price_provider text, price_model text,
      price_effective_from date, price_table text, occurred_at timestamptz, metadata jsonb,
      amounts jsonb, daily_start date, monthly_start date)) with ordinality as x (
      id, organization_id, user_id, provider, model, operation,
      input_tokens, cached_input_tokens, cache_write_tokens,
      output_tokens, reasoning_tokens, audio_input_tokens,
      audio_output_tokens, image_input_tokens, image_output_tokens,
      quantities, cost_usd, cost_source, price_provider, price_model,
      price_effective_from, price_table, occurred_at, metadata,
      amounts, daily_start, monthly_start, n)
    order by x.organization_id, x.id, x.n
  ),
  -- The dedupe key first: a key already there (recorded before, or by a
  -- concurrent batch, which this waits for) is skipped.
  fresh as (
    insert into tenancy.usage_event_ids (organization_id, id, occurred_at)
    select s.organization_id, s.id, s.occurred_at from src s
    order by s.organization_id, s.id
    on conflict (organization_id, id) do nothing
    returning organization_id, id
  ),
  inserted as (
    insert into public.usage_events (
      id, organization_id, user_id, provider, model, operation, input_tokens,
      cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens,
      audio_input_tokens, audio_output_tokens, image_input_tokens, image_output_tokens,
      quantities, cost_usd, cost_source, price_provider, price_model, price_effective_from,
      price_table, occurred_at, metadata, amounts, daily_start, monthly_start)
    select x.id, x.organization_id, x.user_id, coalesce(x.provider, ''), coalesce(x.model, ''),
      coalesce(x.operation, ''), coalesce(x.input_tokens, 0), coalesce(x.cached_input_tokens, 0),
      coalesce(x.cache_write_tokens, 0), coalesce(x.output_tokens, 0),
      coalesce(x.reasoning_tokens, 0), coalesce(x.audio_input_tokens, 0),
      coalesce(x.audio_output_tokens, 0), coalesce(x.image_input_tokens, 0),
      coalesce(x.image_output_tokens, 0), coalesce(x.quantities, '{}'::jsonb), x.cost_usd,
      x.cost_source, x.price_provider, x.price_model, x.price_effective_from, x.price_table,
      x.occurred_at, x.metadata, coalesce(x.amounts, '{}'::jsonb), x.daily_start, x.monthly_start
    from src x
    join fresh f on f.organization_id = x.organization_id and f.id = x.id
    returning organization_id, user_id, daily_start, monthly_start, amounts
  ),
  amounts as (
    select i.organization_id, i.user_id, i.daily_start, i.monthly_start, a.key as metric,
      (a.value #>> '{}')::numeric as amount
    from inserted i cross join lateral jsonb_each(i.amounts) a
  ),
  per_user as (
    select a.organization_id, a.user_id, a.daily_start, a.monthly_start, a.metric,
      sum(a.amount) as amount
    from amounts a
    group by 1, 2, 3, 4, 5
  ),
  deltas as (
    select u.organization_id, s.scope_user_id, u.metric, p.period, p.period_start,
      sum(u.amount) as amount
    from per_user u
    cross join lateral (values ('00000000-0000-0000-0000-000000000000'::uuid), (u.user_id)) s(scope_user_id)
    cross join lateral (values ('daily', u.daily_start), ('monthly', u.monthly_start)) p(period, period_start)
    where s.scope_user_id is not null
    group by 1, 2, 3, 4, 5
  ),
  bumped as (
    insert into public.usage_counters as c
      (organization_id, scope_user_id, metric, period, period_start, used)
    select d.organization_id, d.scope_user_id, d.metric, d.period, d.period_start, d.amount
    from deltas d
    order by d.organization_id, d.scope_user_id, d.metric collate "C", d.period, d.period_start
    on conflict (organization_id, scope_user_id, metric, period, period_start)
    do update set used = c.used + excluded.used, updated_at = pg_catalog.now()
    returning 1
  )
  select count(*) into v_inserted from inserted;
  return jsonb_build_object(
    'inserted', v_inserted,
    'duplicates', jsonb_array_length(events) - v_inserted
  );
end
$$;

-- ---------------------------------------------------------------------------
-- 6. The entry points' events (tenancy_record_event(s), commits): the new
--    token classes and provenance.

create or replace function tenancy.token_fields() returns text[]
language sql immutable
as $$
  select array['input_tokens', 'cached_input_tokens', 'cache_write_tokens', 'output_tokens',
    'reasoning_tokens', 'audio_input_tokens', 'audio_output_tokens', 'image_input_tokens',
    'image_output_tokens']
$$;

create or replace function tenancy.event_keys() returns text[]
language sql immutable
as $$
  select array['id', 'organization_id', 'user_id', 'provider', 'model', 'operation']
    || tenancy.token_fields()
    || array['quantities', 'cost_usd', 'cost_source', 'price_provider', 'price_model',
      'price_effective_from', 'price_table', 'occurred_at', 'metadata']
$$;

-- What an event counts towards, {metric: amount}: UsageEvent::amounts.
-- - tokens: the sum of every token class (input, cached input reads, cache
--   writes, output, reasoning, audio and image in and out; the classes
--   never overlap), when above zero; each a JSON integer from 0 to
--   18446744073709551615, or absent;
-- - cost_usd: the cost, when present (zero included);
-- - each of `quantities`; one named tokens or cost_usd adds to that metric.
create or replace function tenancy.event_amounts(event jsonb) returns jsonb
language plpgsql immutable
set search_path = ''
as $$
declare
  v_field text;
  v_value jsonb;
  v_count numeric;
  v_tokens numeric := 0;
  v_amounts jsonb := '{}';
  v_metric text;
  v_quantity jsonb;
  v_amount numeric;
begin
  if event is null or pg_catalog.jsonb_typeof(event) <> 'object' then
    raise exception 'an event must be a JSON object' using errcode = '22023';
  end if;
  foreach v_field in array tenancy.token_fields() loop
    v_value := event -> v_field;
    continue when v_value is null or v_value = 'null'::jsonb;
    if pg_catalog.jsonb_typeof(v_value) <> 'number' then
      raise exception '%: % is not a whole number', v_field, v_value using errcode = '22023';
    end if;
    v_count := v_value::numeric;
    if v_count <> pg_catalog.trunc(v_count) or v_count < 0 or v_count > 18446744073709551615 then
      raise exception '%: % is not a whole number from 0 to 18446744073709551615', v_field, v_value
        using errcode = '22023';
    end if;
    v_tokens := v_tokens + v_count;
  end loop;
  if v_tokens > 0 then
    v_amounts := pg_catalog.jsonb_build_object('tokens', tenancy.checked_amount('tokens', v_tokens)::text);
  end if;
  v_value := event -> 'cost_usd';
  if v_value is not null and v_value <> 'null'::jsonb then
    v_amounts := v_amounts || pg_catalog.jsonb_build_object(
      'cost_usd', tenancy.json_amount('cost_usd', v_value)::text);
  end if;
  v_value := event -> 'quantities';
  if v_value is not null and v_value <> 'null'::jsonb then
    if pg_catalog.jsonb_typeof(v_value) <> 'object' then
      raise exception 'quantities: must be an object of {metric: amount}, not %', v_value
        using errcode = '22023';
    end if;
    if (select pg_catalog.count(*) from pg_catalog.jsonb_object_keys(v_value)) > 32 then
      raise exception 'quantities: at most 32 metrics in one event' using errcode = '22023';
    end if;
    for v_metric, v_quantity in select q.key, q.value from pg_catalog.jsonb_each(v_value) q loop
      perform tenancy.checked_metric('quantities', v_metric);
      v_amount := tenancy.json_amount('quantity', v_quantity);
      if v_amounts ? v_metric then
        v_amount := tenancy.checked_amount('quantity', (v_amounts ->> v_metric)::numeric + v_amount);
      end if;
      v_amounts := v_amounts || pg_catalog.jsonb_build_object(v_metric, v_amount::text);
    end loop;
  end if;
  return v_amounts;
end
$$;

-- An event as the record RPC takes it, checked as UsageEvent::into_record
-- checks it (see 20261206000400_tenancy_sql_api.sql), now with the token
-- classes and provenance: `cost_source` is 'provider' or 'price_table'
-- (absent: 'provider' when `cost_usd` is given, else none); the price_*
-- fields are strings of at most 128 characters, `price_effective_from` a
-- date (YYYY-MM-DD).
create or replace function tenancy.usage_record(event jsonb, tz text) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
  v_now timestamptz := pg_catalog.now();
  v_unknown text;
  v_field text;
  v_at timestamptz;
  v_id uuid;
  v_size integer;
  v_amounts jsonb;
  v_extra jsonb := '{}';
begin
  if event is null or pg_catalog.jsonb_typeof(event) <> 'object' then
    raise exception 'an event must be a JSON object' using errcode = '22023';
  end if;
  select pg_catalog.string_agg(k, ', ' order by k) into v_unknown
  from pg_catalog.jsonb_object_keys(event) k
  where k <> all (tenancy.event_keys());
  if v_unknown is not null then
    raise exception 'an event has no field %; its fields are %', v_unknown,
      pg_catalog.array_to_string(tenancy.event_keys(), ', ') using errcode = '22023';
  end if;
  foreach v_field in array array['provider', 'model', 'operation', 'price_provider', 'price_model',
    'price_table', 'cost_source', 'price_effective_from'] loop
    if event ? v_field and event -> v_field <> 'null'::jsonb then
      if pg_catalog.jsonb_typeof(event -> v_field) <> 'string' then
        raise exception '%: must be a string', v_field using errcode = '22023';
      end if;
      if pg_catalog.char_length(event ->> v_field) > 128 then
        raise exception '%: longer than 128 characters', v_field using errcode = '22023';
      end if;
    end if;
  end loop;
  if event ->> 'cost_source' is not null and event ->> 'cost_source' not in ('provider', 'price_table') then
    raise exception 'cost_source: % is not provider or price_table', event -> 'cost_source'
      using errcode = '22023';
  end if;
  if event ->> 'price_effective_from' is not null then
    if (event ->> 'price_effective_from') !~ '^\d{4}-\d\d-\d\d$' then
      raise exception 'price_effective_from: % is not a date (YYYY-MM-DD)', event -> 'price_effective_from'
        using errcode = '22023';
    end if;
    begin
      perform (event ->> 'price_effective_from')::date;
    exception when others then
      raise exception 'price_effective_from: % is not a date', event -> 'price_effective_from'
        using errcode = '22023';
    end;
  end if;
  if event ->> 'cost_source' is null and event ? 'cost_usd' and event -> 'cost_usd' <> 'null'::jsonb then
    v_extra := pg_catalog.jsonb_build_object('cost_source', 'provider');
  end if;
  if event ? 'metadata' and event -> 'metadata' <> 'null'::jsonb then
    v_size := pg_catalog.octet_length((event -> 'metadata')::text);
    if v_size > 8192 then
      raise exception 'metadata: % bytes as PostgreSQL prints it; the limit is 8192', v_size
        using errcode = '22023';
    end if;
  end if;
  begin
    v_id := coalesce((event ->> 'id')::uuid, gen_random_uuid());
  exception when invalid_text_representation then
    raise exception 'id: % is not a UUID', event -> 'id' using errcode = '22023';
  end;
  if event ? 'occurred_at' and event -> 'occurred_at' <> 'null'::jsonb then
    if pg_catalog.jsonb_typeof(event -> 'occurred_at') <> 'string'
       or (event ->> 'occurred_at') !~ '^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)$' then
      raise exception 'occurred_at: % is not an RFC 3339 timestamp with an offset (2026-03-14T12:00:00Z)',
        event -> 'occurred_at' using errcode = '22023';
    end if;
    begin
      v_at := (event ->> 'occurred_at')::timestamptz;
    exception when others then
      raise exception 'occurred_at: % is not a timestamp', event -> 'occurred_at' using errcode = '22023';
    end;
  else
    v_at := v_now;
  end if;
  if v_at < v_now - interval '31 days' then
    raise exception 'occurred_at: % is more than 31 days before now (%)', v_at, v_now
      using errcode = '22023';
  end if;
  if v_at > v_now + interval '5 minutes' then
    raise exception 'occurred_at: % is more than 5 minutes after now (%)', v_at, v_now
      using errcode = '22023';
  end if;
  v_amounts := tenancy.event_amounts(event);
  foreach v_field in array tenancy.token_fields() loop
    if event ? v_field and event -> v_field <> 'null'::jsonb then
      v_extra := v_extra || pg_catalog.jsonb_build_object(v_field, (event -> v_field)::numeric::bigint);
    end if;
  end loop;
  return event || v_extra || pg_catalog.jsonb_build_object(
    'id', v_id,
    'occurred_at', v_at,
    'amounts', v_amounts,
    'daily_start', tenancy.period_start('daily', v_at, tz),
    'monthly_start', tenancy.period_start('monthly', v_at, tz));
end
$$;

-- ---------------------------------------------------------------------------
-- 7. The event log's reads.

-- One event as the reads return it (decimals as strings; the provenance
-- as stored, null when none).
create or replace function tenancy.usage_event_json(e public.usage_events) returns jsonb
language sql stable
as $$
  select pg_catalog.jsonb_build_object(
    'id', e.id, 'organization_id', e.organization_id, 'user_id', e.user_id,
    'provider', e.provider, 'model', e.model, 'operation', e.operation,
    'input_tokens', e.input_tokens, 'cached_input_tokens', e.cached_input_tokens,
    'cache_write_tokens', e.cache_write_tokens, 'output_tokens', e.output_tokens,
    'reasoning_tokens', e.reasoning_tokens, 'audio_input_tokens', e.audio_input_tokens,
    'audio_output_tokens', e.audio_output_tokens, 'image_input_tokens', e.image_input_tokens,
    'image_output_tokens', e.image_output_tokens, 'quantities', e.quantities,
    'cost_usd', e.cost_usd::text, 'cost_source', e.cost_source,
    'price_provider', e.price_provider, 'price_model', e.price_model,
    'price_effective_from', e.price_effective_from, 'price_table', e.price_table,
    'occurred_at', e.occurred_at, 'metadata', e.metadata, 'amounts', e.amounts,
    'daily_start', e.daily_start, 'monthly_start', e.monthly_start,
    'recorded_at', e.recorded_at)
$$;

-- tenancy_usage_events(org_id, since?, until?, user_ids?, no_user?,
--   providers?, models?, operations?, after_at?, after_id?, max_rows = 1000)
--   -> [UsageEventRow], oldest first (occurred_at, then id), at most
--   max_rows (1 to 10001). `since` inclusive, `until` exclusive; each
--   filter an array of the values to keep (absent: all; `no_user` keeps
--   events without a user, with or without `user_ids`); (after_at,
--   after_id) is the last event of the previous page (keyset).
-- Security invoker: a user JWT reads under usage_events' policy (admins and
-- owners every event of the organization; members and viewers the events
-- without a user and their own) after tenancy.require_role checks that it
-- is a member (42501 otherwise). The service role reads any organization's
-- (an unknown one: []).
create or replace function public.tenancy_usage_events(
  org_id uuid, since timestamptz default null, until timestamptz default null,
  user_ids uuid[] default null, no_user boolean default false, providers text[] default null,
  models text[] default null, operations text[] default null, after_at timestamptz default null,
  after_id uuid default null,
  max_rows integer default 1000
) returns jsonb
language plpgsql stable
set search_path = ''
as $$
begin
  if org_id is null then
    raise exception 'org_id is required' using errcode = '22023';
  end if;
  if max_rows is null or max_rows < 1 or max_rows > 10001 then
    raise exception 'max_rows: % is not from 1 to 10001', coalesce(max_rows::text, 'null')
      using errcode = '22023';
  end if;
  if (after_at is null) <> (after_id is null) then
    raise exception 'after_at and after_id: give both (the last event of the previous page) or neither'
      using errcode = '22023';
  end if;
  if not tenancy.is_privileged() then
    perform tenancy.require_role(org_id, null, 'viewer');
  end if;
  return (
    select coalesce(pg_catalog.jsonb_agg(tenancy.usage_event_json(e) order by e.occurred_at, e.id), '[]')
    from (
      select e.* from public.usage_events e
      where e.organization_id = tenancy_usage_events.org_id
        and (tenancy_usage_events.since is null or e.occurred_at >= tenancy_usage_events.since)
        and (tenancy_usage_events.until is null or e.occurred_at < tenancy_usage_events.until)
        and ((tenancy_usage_events.user_ids is null and not coalesce(tenancy_usage_events.no_user, false))
             or e.user_id = any (tenancy_usage_events.user_ids)
             or (coalesce(tenancy_usage_events.no_user, false) and e.user_id is null))
        and (tenancy_usage_events.providers is null or e.provider = any (tenancy_usage_events.providers))
        and (tenancy_usage_events.models is null or e.model = any (tenancy_usage_events.models))
        and (tenancy_usage_events.operations is null or e.operation = any (tenancy_usage_events.operations))
        and (tenancy_usage_events.after_at is null
             or (e.occurred_at, e.id) > (tenancy_usage_events.after_at, tenancy_usage_events.after_id))
      order by e.occurred_at, e.id
      limit tenancy_usage_events.max_rows
    ) e
  );
end
$$;

-- tenancy_usage_event(org_id, event_id) -> [UsageEventRow], zero or one:
-- under the same rule as tenancy_usage_events (an event RLS hides is []).
create or replace function public.tenancy_usage_event(org_id uuid, event_id uuid) returns jsonb
language plpgsql stable
set search_path = ''
as $$
begin
  if org_id is null or event_id is null then
    raise exception 'org_id and event_id are required' using errcode = '22023';
  end if;
  if not tenancy.is_privileged() then
    perform tenancy.require_role(org_id, null, 'viewer');
  end if;
  return (
    select coalesce(pg_catalog.jsonb_agg(tenancy.usage_event_json(e)), '[]')
    from public.usage_events e
    where e.organization_id = tenancy_usage_event.org_id and e.id = tenancy_usage_event.event_id
  );
end
$$;

-- ---------------------------------------------------------------------------
-- 8. Reports, from rollups only.

-- The per-user rule for report reads by a user JWT: any member reads the
-- organization's totals; per user (grouping by user, or filtering on
-- users), admins and owners read everyone, members and viewers only
-- themselves (user_ids exactly their own id). 42501 otherwise.
create or replace function tenancy.require_report_reader(org uuid, by_user boolean, user_ids uuid[])
returns uuid
language plpgsql stable
set search_path = ''
as $$
declare
  v_user uuid := tenancy.require_role(org, null, 'viewer');
begin
  if tenancy.role_rank(tenancy.role_in(org)) >= tenancy.role_rank('admin') then
    return v_user;
  end if;
  if (by_user or user_ids is not null)
     and (user_ids is null or user_ids is distinct from array[v_user]) then
    raise exception 'user_ids: a % of organization % reads only its own usage per user (user_ids = [its id]); other members'' needs the role admin or higher',
      tenancy.role_in(org), org using errcode = '42501';
  end if;
  return v_user;
end
$$;

create or replace function tenancy.checked_report_args(
  since timestamptz, until timestamptz, granularity text, group_by text[], max_rows integer
) returns void
language plpgsql immutable
set search_path = ''
as $$
declare
  v_bad text;
begin
  if since is null or until is null then
    raise exception 'since: since and until are required' using errcode = '22023';
  end if;
  if until <= since then
    raise exception 'until: % is not after since (%)', until, since using errcode = '22023';
  end if;
  if granularity is null or granularity not in ('hour', 'day', 'month') then
    raise exception 'granularity: % is not hour, day or month', coalesce(granularity, 'null')
      using errcode = '22023';
  end if;
  select g into v_bad from pg_catalog.unnest(group_by) g
  where g is null or g not in ('metric', 'provider', 'model', 'operation', 'user') limit 1;
  if found then
    raise exception 'group_by: % is not one of metric, provider, model, operation, user',
      coalesce(v_bad, 'null') using errcode = '22023';
  end if;
  if max_rows is null or max_rows < 1 or max_rows > 10001 then
    raise exception 'max_rows: % is not from 1 to 10001', coalesce(max_rows::text, 'null')
      using errcode = '22023';
  end if;
end
$$;

-- The start of the period of `granularity` (hour, day, month) that the
-- rollup hour `bucket` falls in, in `tz`, as an instant.
create or replace function tenancy.report_bucket(granularity text, bucket timestamptz, tz text)
returns timestamptz
language sql stable
as $$
  select case report_bucket.granularity
    when 'hour' then report_bucket.bucket
    when 'day' then tenancy.period_starts_at('daily', (report_bucket.bucket at time zone report_bucket.tz)::date, report_bucket.tz)
    else tenancy.period_starts_at('monthly',
      pg_catalog.date_trunc('month', report_bucket.bucket at time zone report_bucket.tz)::date, report_bucket.tz)
  end
$$;

-- The report (see tenancy_usage_report) for an authorized caller.
-- user_ids: users kept (the nil uuid stands for usage without a user).
create or replace function tenancy.usage_report_for(
  org uuid, since timestamptz, until timestamptz, granularity text, group_by text[],
  metrics text[], providers text[], models text[], operations text[], user_ids uuid[],
  after jsonb, max_rows integer
) returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_tz text;
  v_metric boolean := 'metric' = any (group_by);
  v_provider boolean := 'provider' = any (group_by);
  v_model boolean := 'model' = any (group_by);
  v_operation boolean := 'operation' = any (group_by);
  v_user boolean := 'user' = any (group_by);
  v_after_start timestamptz;
  v_nil constant uuid := '00000000-0000-0000-0000-000000000000';
  v_level text := 'hour';
  v_from date;
  v_to date;
begin
  perform tenancy.checked_report_args(since, until, granularity, group_by, max_rows);
  select tenancy.iana_zone(o.timezone) into v_tz from public.organizations o where o.id = org;
  if not found then
    raise exception 'organization % not found', org using errcode = 'P0002';
  end if;
  if after is not null then
    if pg_catalog.jsonb_typeof(after) <> 'object' or after ->> 'bucket_start' is null then
      raise exception 'after: must be the last row''s {bucket_start, metric, provider, model, operation, user_id}'
        using errcode = '22023';
    end if;
    v_after_start := (after ->> 'bucket_start')::timestamptz;
  end if;
  -- Whole local months (or days) read the period rollups: the same sums
  -- as the hours that start in the range, in a few rows per group.
  v_from := (since at time zone v_tz)::date;
  v_to := (until at time zone v_tz)::date;
  if granularity = 'month'
     and since = tenancy.period_starts_at('monthly', pg_catalog.date_trunc('month', v_from)::date, v_tz)
     and until = tenancy.period_starts_at('monthly', pg_catalog.date_trunc('month', v_to)::date, v_tz) then
    v_level := 'month';
  elsif granularity <> 'hour'
     and since = tenancy.period_starts_at('daily', v_from, v_tz)
     and until = tenancy.period_starts_at('daily', v_to, v_tz) then
    v_level := 'day';
  end if;
  return (
    with per_metric as (
      -- Local periods grouped by their local start (one function call per
      -- group, not per rollup row).
      select
        case when granularity = 'hour' then r.bucket_start end as at_start,
        case when granularity <> 'hour'
          then pg_catalog.date_trunc(granularity, r.bucket_start at time zone v_tz) end as local_start,
        case when v_metric then r.metric::text end as metric,
        case when v_provider then r.provider end as provider,
        case when v_model then r.model end as model,
        case when v_operation then r.operation end as operation,
        case when v_user then r.user_id end as user_id,
        r.metric::text as amount_metric,
        sum(r.amount) as amount, sum(r.events) as events
      from public.usage_rollups r
      where v_level = 'hour' and r.organization_id = org
        and r.bucket_start >= since and r.bucket_start < until
        and (metrics is null or r.metric::text = any (metrics))
        and (providers is null or r.provider = any (providers))
        and (models is null or r.model = any (models))
        and (operations is null or r.operation = any (operations))
        and (user_ids is null or r.user_id = any (user_ids))
      group by 1, 2, 3, 4, 5, 6, 7, 8
      union all
      select
        null::timestamptz,
        pg_catalog.date_trunc(granularity, r.start::timestamp),
        case when v_metric then r.metric end,
        case when v_provider then r.provider end,
        case when v_model then r.model end,
        case when v_operation then r.operation end,
        case when v_user then r.user_id end,
        r.metric,
        sum(r.amount), sum(r.events)
      from public.usage_rollups_periods r
      where v_level <> 'hour' and r.organization_id = org and r.period = v_level
        and r.start >= v_from and r.start < v_to and r.metric <> ''
        and (metrics is null or r.metric = any (metrics))
        and (providers is null or r.provider = any (providers))
        and (models is null or r.model = any (models))
        and (operations is null or r.operation = any (operations))
        and (user_ids is null or r.user_id = any (user_ids))
      group by 1, 2, 3, 4, 5, 6, 7, 8
    ),
    grouped as (
      select m.at_start, m.local_start, m.metric, m.provider, m.model, m.operation, m.user_id,
        pg_catalog.jsonb_object_agg(m.amount_metric, pg_catalog.trim_scale(m.amount)::text) as amounts,
        sum(m.events) as metric_events
      from per_metric m
      group by 1, 2, 3, 4, 5, 6, 7
    ),
    keyed as (
      select coalesce(g.at_start, tenancy.report_bucket(granularity, g.local_start at time zone v_tz, v_tz)) as bucket_start,
        g.*
      from grouped g
    ),
    page as (
      select k.* from keyed k
      where v_after_start is null
         or (k.bucket_start, coalesce(k.metric, '') collate "C", coalesce(k.provider, '') collate "C",
             coalesce(k.model, '') collate "C", coalesce(k.operation, '') collate "C",
             coalesce(k.user_id, v_nil))
          > (v_after_start, coalesce(after ->> 'metric', ''), coalesce(after ->> 'provider', ''),
             coalesce(after ->> 'model', ''), coalesce(after ->> 'operation', ''),
             coalesce((after ->> 'user_id')::uuid, v_nil))
      order by k.bucket_start, coalesce(k.metric, '') collate "C", coalesce(k.provider, '') collate "C",
        coalesce(k.model, '') collate "C", coalesce(k.operation, '') collate "C",
        coalesce(k.user_id, v_nil)
      limit max_rows
    ),
    -- Without a metric grouping, a row's events are its period's and
    -- group's events (each counted once, whatever it counted towards): the
    -- token rollups, or the period rollups' metric '', count every event
    -- once.
    event_counts as (
      select
        case when granularity = 'hour' then t.bucket_start end as at_start,
        case when granularity <> 'hour'
          then pg_catalog.date_trunc(granularity, t.bucket_start at time zone v_tz) end as local_start,
        case when v_provider then t.provider end as provider,
        case when v_model then t.model end as model,
        case when v_operation then t.operation end as operation,
        case when v_user then t.user_id end as user_id,
        sum(t.events) as events
      from public.usage_token_rollups t
      where not v_metric and v_level = 'hour' and t.organization_id = org
        and t.bucket_start >= since and t.bucket_start < until
        and (providers is null or t.provider = any (providers))
        and (models is null or t.model = any (models))
        and (operations is null or t.operation = any (operations))
        and (user_ids is null or t.user_id = any (user_ids))
      group by 1, 2, 3, 4, 5, 6
      union all
      select null::timestamptz, pg_catalog.date_trunc(granularity, t.start::timestamp),
        case when v_provider then t.provider end,
        case when v_model then t.model end,
        case when v_operation then t.operation end,
        case when v_user then t.user_id end,
        sum(t.events)
      from public.usage_rollups_periods t
      where not v_metric and v_level <> 'hour' and t.organization_id = org and t.period = v_level
        and t.start >= v_from and t.start < v_to and t.metric = ''
        and (providers is null or t.provider = any (providers))
        and (models is null or t.model = any (models))
        and (operations is null or t.operation = any (operations))
        and (user_ids is null or t.user_id = any (user_ids))
      group by 1, 2, 3, 4, 5, 6
    )
    select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
        'bucket_start', p.bucket_start, 'metric', p.metric, 'provider', p.provider,
        'model', p.model, 'operation', p.operation,
        'user_id', nullif(p.user_id, v_nil), 'amounts', p.amounts,
        'events', case when v_metric then p.metric_events else coalesce(c.events, 0) end)
      order by p.bucket_start, coalesce(p.metric, '') collate "C", coalesce(p.provider, '') collate "C",
        coalesce(p.model, '') collate "C", coalesce(p.operation, '') collate "C",
        coalesce(p.user_id, v_nil)), '[]')
    from page p
    left join event_counts c
      on c.at_start is not distinct from p.at_start and c.local_start is not distinct from p.local_start
     and c.provider is not distinct from p.provider and c.model is not distinct from p.model
     and c.operation is not distinct from p.operation and c.user_id is not distinct from p.user_id
  );
end
$$;

create or replace function tenancy.member_usage_report(
  org uuid, since timestamptz, until timestamptz, granularity text, group_by text[],
  metrics text[], providers text[], models text[], operations text[], user_ids uuid[],
  after jsonb, max_rows integer
) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
begin
  perform tenancy.require_report_reader(org, 'user' = any (group_by), user_ids);
  return tenancy.usage_report_for(org, since, until, granularity, group_by, metrics, providers,
    models, operations, user_ids, after, max_rows);
end
$$;

-- tenancy_usage_report(org_id, since, until, granularity, group_by?,
--   metrics?, providers?, models?, operations?, user_ids?, after?,
--   max_rows = 1000) -> [ReportRow]
-- Sums of the rollups whose hour bucket starts in [since, until), per
-- period (`granularity` hour, day or month in the organization's time
-- zone; `bucket_start` is when the period begins, as an instant) and per
-- the `group_by` keys (any of metric, provider, model, operation, user; the
-- others null): {bucket_start, metric, provider, model, operation,
-- user_id, amounts: {metric: amount}, events}. `user_id` null under a user
-- grouping is usage without a user. `events`: grouped by metric, the
-- events that counted towards it; otherwise the events of the period and
-- group. Ordered by bucket_start, then the keys (null first; byte order;
-- users by uuid); `after` is the previous page's last row (keyset).
-- Filters keep rows whose value is in the array (null: all); in user_ids
-- the nil uuid stands for usage without a user. P0002 for an unknown
-- organization. A user JWT: tenancy.require_report_reader.
create or replace function public.tenancy_usage_report(
  org_id uuid, since timestamptz, until timestamptz, granularity text,
  group_by text[] default '{}', metrics text[] default null, providers text[] default null,
  models text[] default null, operations text[] default null, user_ids uuid[] default null,
  after jsonb default null, max_rows integer default 1000
) returns jsonb
language plpgsql stable
set search_path = ''
as $$
begin
  if org_id is null then
    raise exception 'org_id is required' using errcode = '22023';
  end if;
  if tenancy.is_privileged() then
    return tenancy.usage_report_for(org_id, since, until, granularity, coalesce(group_by, '{}'),
      metrics, providers, models, operations, user_ids, after, max_rows);
  end if;
  return tenancy.member_usage_report(org_id, since, until, granularity, coalesce(group_by, '{}'),
    metrics, providers, models, operations, user_ids, after, max_rows);
end
$$;

-- Token rows for repricing (see tenancy_usage_costs) for an authorized
-- caller.
create or replace function tenancy.usage_costs_for(
  org uuid, since timestamptz, until timestamptz, granularity text, group_by text[],
  providers text[], models text[], operations text[], user_ids uuid[], after jsonb, max_rows integer
) returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_tz text;
  v_operation boolean := 'operation' = any (group_by);
  v_user boolean := 'user' = any (group_by);
  v_after_start timestamptz;
  v_nil constant uuid := '00000000-0000-0000-0000-000000000000';
  v_rows jsonb;
  v_more boolean;
begin
  perform tenancy.checked_report_args(since, until, granularity, group_by, max_rows);
  if exists (select 1 from pg_catalog.unnest(group_by) g where g not in ('operation', 'user')) then
    raise exception 'group_by: token rows group by operation and user only (provider and model always)'
      using errcode = '22023';
  end if;
  select tenancy.iana_zone(o.timezone) into v_tz from public.organizations o where o.id = org;
  if not found then
    raise exception 'organization % not found', org using errcode = 'P0002';
  end if;
  if after is not null then
    v_after_start := (after ->> 'bucket_start')::timestamptz;
  end if;
  with grouped as (
    select
      case when granularity = 'hour' then t.bucket_start end as at_start,
      case when granularity <> 'hour'
        then pg_catalog.date_trunc(granularity, t.bucket_start at time zone v_tz) end as local_start,
      t.provider, t.model,
      case when v_operation then t.operation end as operation,
      case when v_user then t.user_id end as user_id,
      t.cost_source, t.price_provider, t.price_model, t.price_effective_from, t.price_table,
      sum(t.input_tokens) as input_tokens, sum(t.cached_input_tokens) as cached_input_tokens,
      sum(t.cache_write_tokens) as cache_write_tokens, sum(t.output_tokens) as output_tokens,
      sum(t.reasoning_tokens) as reasoning_tokens, sum(t.audio_input_tokens) as audio_input_tokens,
      sum(t.audio_output_tokens) as audio_output_tokens, sum(t.image_input_tokens) as image_input_tokens,
      sum(t.image_output_tokens) as image_output_tokens, sum(t.cost_usd) as cost_usd,
      sum(t.events) as events
    from public.usage_token_rollups t
    where t.organization_id = org and t.bucket_start >= since and t.bucket_start < until
      and (providers is null or t.provider = any (providers))
      and (models is null or t.model = any (models))
      and (operations is null or t.operation = any (operations))
      and (user_ids is null or t.user_id = any (user_ids))
    group by 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11
  ),
  keyed as (
    select coalesce(g.at_start, tenancy.report_bucket(granularity, g.local_start at time zone v_tz, v_tz)) as bucket_start,
      g.*
    from grouped g
  ),
  after_cursor as (
    select k.* from keyed k
    where v_after_start is null
       or (k.bucket_start, k.provider collate "C", k.model collate "C",
           coalesce(k.operation, '') collate "C", coalesce(k.user_id, v_nil))
        > (v_after_start, coalesce(after ->> 'provider', ''), coalesce(after ->> 'model', ''),
           coalesce(after ->> 'operation', ''), coalesce((after ->> 'user_id')::uuid, v_nil))
  ),
  ranked as (
    select a.*,
      pg_catalog.row_number() over w as n,
      pg_catalog.dense_rank() over (order by a.bucket_start, a.provider collate "C", a.model collate "C",
        coalesce(a.operation, '') collate "C", coalesce(a.user_id, v_nil)) as key_rank
    from after_cursor a
    window w as (order by a.bucket_start, a.provider collate "C", a.model collate "C",
      coalesce(a.operation, '') collate "C", coalesce(a.user_id, v_nil),
      case a.cost_source when '' then 0 when 'provider' then 1 else 2 end,
      a.price_provider collate "C", a.price_model collate "C", a.price_effective_from,
      a.price_table collate "C")
  ),
  -- Every provenance row of the keys of the first max_rows rows.
  last_key as (
    select max(r.key_rank) as key_rank from ranked r where r.n <= max_rows
  )
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
      'bucket_start', r.bucket_start, 'provider', r.provider, 'model', r.model,
      'operation', r.operation, 'user_id', nullif(r.user_id, v_nil),
      'cost_source', nullif(r.cost_source, ''), 'price_provider', nullif(r.price_provider, ''),
      'price_model', nullif(r.price_model, ''),
      'price_effective_from', nullif(r.price_effective_from, '-infinity'::date),
      'price_table', nullif(r.price_table, ''),
      'input_tokens', r.input_tokens::text, 'cached_input_tokens', r.cached_input_tokens::text,
      'cache_write_tokens', r.cache_write_tokens::text, 'output_tokens', r.output_tokens::text,
      'reasoning_tokens', r.reasoning_tokens::text, 'audio_input_tokens', r.audio_input_tokens::text,
      'audio_output_tokens', r.audio_output_tokens::text,
      'image_input_tokens', r.image_input_tokens::text,
      'image_output_tokens', r.image_output_tokens::text,
      'cost_usd', pg_catalog.trim_scale(r.cost_usd)::text, 'events', r.events)
    order by r.n) filter (where r.key_rank <= l.key_rank), '[]'),
    coalesce(bool_or(r.key_rank > l.key_rank), false)
  into v_rows, v_more
  from ranked r cross join last_key l;
  return pg_catalog.jsonb_build_object('rows', v_rows, 'more', v_more);
end
$$;

create or replace function tenancy.member_usage_costs(
  org uuid, since timestamptz, until timestamptz, granularity text, group_by text[],
  providers text[], models text[], operations text[], user_ids uuid[], after jsonb, max_rows integer
) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
begin
  perform tenancy.require_report_reader(org, 'user' = any (group_by), user_ids);
  return tenancy.usage_costs_for(org, since, until, granularity, group_by, providers, models,
    operations, user_ids, after, max_rows);
end
$$;

-- tenancy_usage_costs(org_id, since, until, granularity, group_by?,
--   providers?, models?, operations?, user_ids?, after?, max_rows = 1000)
--   -> {rows: [CostRow], more}: the token rollups per period, provider and
-- model (and operation and user when grouped) and cost provenance: every
-- token class (strings), cost_usd, events. Ordered by period, key, then
-- provenance (none, provider, then price-table rows by provider, model,
-- effective date, table). A page holds every provenance row of each of its
-- keys (it may pass max_rows by those of its last key); `more` says rows
-- follow; `after` is the last row's {bucket_start, provider, model,
-- operation, user_id}. The input of a reprice dry run.
create or replace function public.tenancy_usage_costs(
  org_id uuid, since timestamptz, until timestamptz, granularity text,
  group_by text[] default '{}', providers text[] default null, models text[] default null,
  operations text[] default null, user_ids uuid[] default null, after jsonb default null,
  max_rows integer default 1000
) returns jsonb
language plpgsql stable
set search_path = ''
as $$
begin
  if org_id is null then
    raise exception 'org_id is required' using errcode = '22023';
  end if;
  if tenancy.is_privileged() then
    return tenancy.usage_costs_for(org_id, since, until, granularity, coalesce(group_by, '{}'),
      providers, models, operations, user_ids, after, max_rows);
  end if;
  return tenancy.member_usage_costs(org_id, since, until, granularity, coalesce(group_by, '{}'),
    providers, models, operations, user_ids, after, max_rows);
end
$$;

-- ---------------------------------------------------------------------------
-- 9. Reconciliation of rollups: recomputed from the event log.

-- The hourly metric rollups of `org` (zone `tz`) whose bucket starts in
-- [since, until), recomputed from its event log: what reconciliation
-- compares with usage_rollups and what its repair writes back.
create or replace function tenancy.hourly_rollups_from_events(
  org uuid, tz text, since timestamptz, until timestamptz
) returns table (b timestamptz, u uuid, p text, m text, o text, k text, amount numeric, events bigint)
language sql stable
set search_path = ''
as $$
  select x.* from (
    select tenancy.hour_start(e.occurred_at, tz) as b,
      coalesce(e.user_id, '00000000-0000-0000-0000-000000000000'::uuid) as u,
      e.provider as p, e.model as m, e.operation as o, a.key as k,
      sum((a.value #>> '{}')::numeric) as amount, count(*) as events
    from public.usage_events e cross join lateral pg_catalog.jsonb_each(e.amounts) a
    where e.organization_id = org and e.occurred_at >= since and e.occurred_at < until + interval '1 hour'
    group by 1, 2, 3, 4, 5, 6
  ) x
  where x.b >= since and x.b < until
$$;

-- Every metric rollup of `org` whose bucket starts in [since, until) and
-- whose amount or event count differs from what the organization's events
-- sum to (a missing rollup counts 0; a rollup without events recomputes to
-- 0), bucketed in the organization's time zone now. 22023 when the range
-- starts before the events retention kept.
create or replace function tenancy.rollup_drift(org uuid, since timestamptz, until timestamptz)
returns table (bucket_start timestamptz, user_id uuid, provider text, model text, operation text,
  metric text, counted numeric, recomputed numeric, counted_events bigint, recomputed_events bigint)
language plpgsql stable
set search_path = ''
as $$
declare
  v_tz text;
  v_kept timestamptz;
begin
  if org is null or since is null or until is null then
    raise exception 'org_id, since and until are required' using errcode = '22023';
  end if;
  if until <= since then
    raise exception 'until: % is not after since (%)', until, since using errcode = '22023';
  end if;
  select r.kept_from into v_kept from tenancy.usage_retention r;
  if v_kept is not null and since < v_kept then
    raise exception 'since: events before % were dropped by retention; rollups before then cannot be recomputed', v_kept
      using errcode = '22023';
  end if;
  select tenancy.iana_zone(o.timezone) into v_tz from public.organizations o where o.id = org;
  if not found then
    return;
  end if;
  return query
  with counted as (
    select r.bucket_start as b, r.user_id as u, r.provider as p, r.model as m, r.operation as o,
      r.metric::text as k, r.amount, r.events
    from public.usage_rollups r
    where r.organization_id = org and r.bucket_start >= since and r.bucket_start < until
  )
  select coalesce(c.b, x.b), nullif(coalesce(c.u, x.u), '00000000-0000-0000-0000-000000000000'::uuid),
    coalesce(c.p, x.p), coalesce(c.m, x.m), coalesce(c.o, x.o), coalesce(c.k, x.k),
    coalesce(c.amount, 0), coalesce(x.amount, 0), coalesce(c.events, 0), coalesce(x.events, 0)
  from counted c
  full join tenancy.hourly_rollups_from_events(org, v_tz, since, until) x
    on x.b = c.b and x.u = c.u and x.p = c.p and x.m = c.m and x.o = c.o and x.k = c.k
  where coalesce(c.amount, 0) <> coalesce(x.amount, 0) or coalesce(c.events, 0) <> coalesce(x.events, 0);
end
$$;

create or replace function tenancy.rollup_drift_json(org uuid, since timestamptz, until timestamptz)
returns jsonb
language sql stable
as $$
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
      'bucket_start', d.bucket_start, 'user_id', d.user_id, 'provider', d.provider,
      'model', d.model, 'operation', d.operation, 'metric', d.metric,
      'counted', d.counted::text, 'recomputed', d.recomputed::text,
      'counted_events', d.counted_events, 'recomputed_events', d.recomputed_events)
    order by d.bucket_start, d.user_id nulls first, d.provider collate "C", d.model collate "C",
      d.operation collate "C", d.metric collate "C"), '[]')
  from tenancy.rollup_drift(org, since, until) d
$$;

-- tenancy_reconcile_rollups(org_id, since, until) -> [RollupDrift]: reads only.
create or replace function public.tenancy_reconcile_rollups(
  org_id uuid, since timestamptz, until timestamptz
) returns jsonb
language sql stable
set search_path = ''
as $$
  select tenancy.rollup_drift_json(org_id, since, until)
$$;

-- tenancy_repair_rollups(org_id, since, until) -> [RollupDrift]: in one
-- transaction, rebuilds the hourly rollups (metric and token) of the
-- buckets starting in [since, until) from the event log, then the period
-- rollups of every local day and month the range touches from the hourly
-- ones, and returns the metric drift it corrected ([]
-- when there was none). Takes the organization's row `for update` first:
-- every record path holds it `for key share`, so records in progress
-- finish first and later ones wait (nothing counted twice or lost).
create or replace function public.tenancy_repair_rollups(
  org_id uuid, since timestamptz, until timestamptz
) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
  v_org uuid := tenancy_repair_rollups.org_id;
  v_tz text;
  v_drift jsonb;
  v_first_day date;
  v_last_day date;
  v_first_month date;
  v_end_month date;
begin
  if v_org is null then
    raise exception 'org_id is required' using errcode = '22023';
  end if;
  select tenancy.iana_zone(o.timezone) into v_tz from public.organizations o where o.id = v_org for update;
  if not found then
    raise exception 'organization % not found', v_org using errcode = 'P0002';
  end if;
  v_drift := tenancy.rollup_drift_json(v_org, since, until);
  delete from public.usage_rollups r
  where r.organization_id = v_org and r.bucket_start >= since and r.bucket_start < until;
  delete from public.usage_token_rollups r
  where r.organization_id = v_org and r.bucket_start >= since and r.bucket_start < until;
  insert into public.usage_rollups
    (organization_id, bucket_start, user_id, provider, model, operation, metric, amount, events)
  select v_org, x.b, x.u, x.p, x.m, x.o, x.k, x.amount, x.events
  from tenancy.hourly_rollups_from_events(v_org, v_tz, since, until) x;
  insert into public.usage_token_rollups
    (organization_id, bucket_start, user_id, provider, model, operation, cost_source,
     price_provider, price_model, price_effective_from, price_table, input_tokens,
     cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens,
     audio_input_tokens, audio_output_tokens, image_input_tokens, image_output_tokens,
     cost_usd, costed_events, events)
  select v_org, x.* from (
    select tenancy.hour_start(e.occurred_at, v_tz) as b,
      coalesce(e.user_id, '00000000-0000-0000-0000-000000000000'::uuid),
      e.provider, e.model, e.operation, coalesce(e.cost_source, ''), coalesce(e.price_provider, ''),
      coalesce(e.price_model, ''), coalesce(e.price_effective_from, '-infinity'::date),
      coalesce(e.price_table, ''),
      sum(e.input_tokens), sum(e.cached_input_tokens), sum(e.cache_write_tokens),
      sum(e.output_tokens), sum(e.reasoning_tokens), sum(e.audio_input_tokens),
      sum(e.audio_output_tokens), sum(e.image_input_tokens), sum(e.image_output_tokens),
      coalesce(sum(e.cost_usd), 0), count(e.cost_usd), count(*)
    from public.usage_events e
    where e.organization_id = v_org and e.occurred_at >= since and e.occurred_at < until + interval '1 hour'
    group by 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
  ) x
  where x.b >= since and x.b < until;
  -- The period rollups of every local day and month the range touches,
  -- again, from the (repaired) hourly rollups.
  v_first_day := (since at time zone v_tz)::date;
  v_last_day := ((until - interval '1 microsecond') at time zone v_tz)::date;
  v_first_month := pg_catalog.date_trunc('month', v_first_day)::date;
  v_end_month := (pg_catalog.date_trunc('month', v_last_day) + interval '1 month')::date;
  delete from public.usage_rollups_periods r
  where r.organization_id = v_org
    and ((r.period = 'day' and r.start between v_first_day and v_last_day)
      or (r.period = 'month' and r.start >= v_first_month and r.start < v_end_month));
  insert into public.usage_rollups_periods
    (organization_id, period, start, user_id, provider, model, operation, metric, amount, events)
  select v_org, p.period, p.start, h.user_id, h.provider, h.model, h.operation, h.metric,
    sum(h.amount), sum(h.events)
  from (
    select (r.bucket_start at time zone v_tz)::date as day, r.user_id, r.provider, r.model,
      r.operation, r.metric::text as metric, r.amount, r.events
    from public.usage_rollups r
    where r.organization_id = v_org
      and r.bucket_start >= tenancy.period_starts_at('monthly', v_first_month, v_tz)
      and r.bucket_start < tenancy.period_starts_at('monthly', v_end_month, v_tz)
    union all
    select (t.bucket_start at time zone v_tz)::date, t.user_id, t.provider, t.model, t.operation,
      '', t.events, t.events
    from public.usage_token_rollups t
    where t.organization_id = v_org
      and t.bucket_start >= tenancy.period_starts_at('monthly', v_first_month, v_tz)
      and t.bucket_start < tenancy.period_starts_at('monthly', v_end_month, v_tz)
  ) h
  cross join lateral (values ('day', h.day), ('month', pg_catalog.date_trunc('month', h.day)::date)) p (period, start)
  where p.period = 'month' or h.day between v_first_day and v_last_day
  group by 1, 2, 3, 4, 5, 6, 7, 8;
  return v_drift;
end
$$;

-- ---------------------------------------------------------------------------
-- 10. Partitions ahead, and retention.

-- tenancy_create_usage_partitions(from_month, months) -> {created: [name]}:
-- makes the partitions of `months` (1 to 120) UTC months from the one of
-- `from_month` that do not exist yet. Schedule it monthly (pg_cron), e.g.
-- `select tenancy_create_usage_partitions(now(), 3)`.
create or replace function public.tenancy_create_usage_partitions(from_month timestamptz, months integer)
returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
  i integer;
  v_at timestamptz;
  v_created text[] := '{}';
begin
  if from_month is null or months is null or months < 1 or months > 120 then
    raise exception 'months: % is not from 1 to 120 (and from_month is required)',
      coalesce(months::text, 'null') using errcode = '22023';
  end if;
  for i in 0..months - 1 loop
    v_at := from_month + pg_catalog.make_interval(months => i);
    if pg_catalog.to_regclass('tenancy.' || tenancy.usage_partition_name(v_at)) is null then
      v_created := v_created || tenancy.create_usage_partition(v_at);
    end if;
  end loop;
  return pg_catalog.jsonb_build_object('created', pg_catalog.to_jsonb(v_created));
end
$$;

-- The partitions of usage_events, oldest first.
create or replace function tenancy.usage_partitions()
returns table (name text, from_at timestamptz, to_at timestamptz)
language sql stable
set search_path = ''
as $$
  select c.relname::text,
    (pg_catalog.regexp_match(pg_catalog.pg_get_expr(c.relpartbound, c.oid), 'FROM \(''([^'']+)''\)'))[1]::timestamptz,
    (pg_catalog.regexp_match(pg_catalog.pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]::timestamptz
  from pg_catalog.pg_inherits i
  join pg_catalog.pg_class c on c.oid = i.inhrelid
  where i.inhparent = 'public.usage_events'::regclass
  order by 2
$$;

-- Drops whole months of events (never single rows). A definer: dropping a
-- partition needs its owner.
create or replace function tenancy.drop_usage_events_for(before timestamptz)
returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_part record;
  v_dropped text[] := '{}';
  v_events bigint := 0;
  v_n bigint;
  v_before timestamptz;
begin
  if before is null then
    raise exception 'before: is required' using errcode = '22023';
  end if;
  -- The start of the UTC month holding `before`: every partition ending
  -- at or before it goes.
  v_before := pg_catalog.date_trunc('month', before at time zone 'UTC') at time zone 'UTC';
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('tenancy.usage_events partitions'));
  for v_part in
    select p.* from tenancy.usage_partitions() p where p.to_at <= v_before order by p.from_at
  loop
    execute pg_catalog.format('select count(*) from tenancy.%I', v_part.name) into v_n;
    execute pg_catalog.format('drop table tenancy.%I', v_part.name);
    v_dropped := v_dropped || v_part.name;
    v_events := v_events + v_n;
  end loop;
  insert into tenancy.usage_retention as r (id, kept_from) values (true, v_before)
  on conflict (id) do update set kept_from = greatest(r.kept_from, excluded.kept_from);
  return pg_catalog.jsonb_build_object('dropped_before', v_before, 'events', v_events,
    'partitions', pg_catalog.to_jsonb(v_dropped));
end
$$;

-- tenancy_drop_usage_events(before) -> {dropped_before, events,
-- partitions}: drops every month of events (UTC, a partition) that ends at
-- or before `before`; `dropped_before` is the start of the UTC month
-- holding `before` (never after it): no event before it is left. The
-- dedupe keys stay (an event recorded again still counts once), and so do
-- rollups and counters: reports over those months still answer;
-- reconciliation refuses them (22023 naming `since`).
create or replace function public.tenancy_drop_usage_events(before timestamptz)
returns jsonb
language sql volatile
set search_path = ''
as $$
  select tenancy.drop_usage_events_for(before)
$$;

-- ---------------------------------------------------------------------------
-- 11. Stripe meter export state (service_role only: RLS on, no policy, no
--     privilege for anon or authenticated).

create table if not exists public.billing_customers (
  organization_id uuid primary key references public.organizations (id) on delete cascade,
  stripe_customer_id text not null
    constraint billing_customers_stripe_customer_id_check
    check (stripe_customer_id ~ '^[A-Za-z0-9_]{1,255}$'),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

-- One row per meter (Stripe's event_name): its batch counter.
create table if not exists public.usage_export_meters (
  meter text primary key
    constraint usage_export_meters_meter_check check (char_length(meter) between 1 and 100),
  batches bigint not null default 0,
  created_at timestamptz not null default now()
);

-- What acknowledged batches exported of each (meter, organization, hour),
-- in the metric's units, and in how many deltas (the next delta's seq).
create table if not exists public.usage_export_marks (
  meter text not null references public.usage_export_meters (meter) on delete cascade,
  organization_id uuid not null references public.organizations (id) on delete cascade,
  bucket_start timestamptz not null,
  exported numeric not null,
  deltas integer not null,
  primary key (meter, organization_id, bucket_start)
);

-- What is below one whole unit after the organization's last acknowledged
-- delta, carried to its next.
create table if not exists public.usage_export_remainders (
  meter text not null references public.usage_export_meters (meter) on delete cascade,
  organization_id uuid not null references public.organizations (id) on delete cascade,
  carried numeric not null
    constraint usage_export_remainders_carried_check check (carried >= 0 and carried < 1),
  primary key (meter, organization_id)
);

-- Claimed batches; acknowledged once delivered. At most one of a meter is
-- unacknowledged at a time (a claim returns it again).
create table if not exists public.usage_export_batches (
  meter text not null references public.usage_export_meters (meter) on delete cascade,
  id bigint not null,
  claimed_at timestamptz not null,
  acked_at timestamptz,
  items jsonb not null,
  primary key (meter, id)
);
create index if not exists usage_export_batches_pending_idx
  on public.usage_export_batches (meter, id) where acked_at is null;

do $$
declare
  t text;
begin
  foreach t in array array['billing_customers', 'usage_export_meters', 'usage_export_marks',
    'usage_export_remainders', 'usage_export_batches'] loop
    execute format('alter table public.%I enable row level security', t);
    execute format('revoke all on table public.%I from public', t);
    if exists (select 1 from pg_catalog.pg_roles where rolname = 'anon') then
      execute format('revoke all on table public.%I from anon, authenticated', t);
      execute format('grant all on table public.%I to service_role', t);
    end if;
  end loop;
end
$$;

-- tenancy_set_billing_customer(org_id, stripe_customer_id?, at? = now())
--   -> {organization_id, stripe_customer_id}:
-- maps the organization to the host's Stripe customer (replacing the
-- mapping), or removes the mapping (stripe_customer_id null). P0002 for an
-- unknown organization; 22023 for an id that is not 1 to 255 ASCII
-- letters, digits or `_`.
create or replace function public.tenancy_set_billing_customer(
  org_id uuid, stripe_customer_id text default null, at timestamptz default null
) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
begin
  if org_id is null then
    raise exception 'org_id is required' using errcode = '22023';
  end if;
  if stripe_customer_id is not null and stripe_customer_id !~ '^[A-Za-z0-9_]{1,255}$' then
    raise exception 'stripe_customer_id: % is not 1 to 255 ASCII letters, digits or _',
      stripe_customer_id using errcode = '22023';
  end if;
  perform 1 from public.organizations o where o.id = org_id for key share;
  if not found then
    raise exception 'organization % not found', org_id using errcode = 'P0002';
  end if;
  if stripe_customer_id is null then
    delete from public.billing_customers c where c.organization_id = tenancy_set_billing_customer.org_id;
  else
    insert into public.billing_customers as c (organization_id, stripe_customer_id, created_at, updated_at)
    values (org_id, stripe_customer_id, coalesce(at, pg_catalog.now()), coalesce(at, pg_catalog.now()))
    on conflict (organization_id) do update
      set stripe_customer_id = excluded.stripe_customer_id, updated_at = excluded.updated_at;
  end if;
  return pg_catalog.jsonb_build_object('organization_id', org_id, 'stripe_customer_id', stripe_customer_id);
end
$$;

-- tenancy_billing_customer(org_id) -> [stripe_customer_id], zero or one.
create or replace function public.tenancy_billing_customer(org_id uuid) returns jsonb
language sql stable
set search_path = ''
as $$
  select coalesce(pg_catalog.jsonb_agg(c.stripe_customer_id), '[]')
  from public.billing_customers c where c.organization_id = tenancy_billing_customer.org_id
$$;

create or replace function tenancy.export_batch_json(b public.usage_export_batches) returns jsonb
language sql stable
as $$
  select pg_catalog.jsonb_build_object('id', b.id, 'event_name', b.meter,
    'claimed_at', b.claimed_at, 'items', b.items)
$$;

-- tenancy_export_claim(meter, metric, unit_scale, up_to, now, max_items)
--   -> [ExportBatch], zero or one
-- One exporter of `meter` at a time (a transaction-level advisory lock).
-- 1. The meter's unacknowledged batch, if any, again, unchanged (same id,
--    items, identifiers): a crash between claim and ack redelivers it and
--    Stripe dedupes.
-- 2. Else a new batch (id: the meter's next, from 1) of, across every
--    organization with a billing customer, the not-yet-exported amount of
--    `metric` per organization and hour that ended at or before `up_to`
--    (its rollups' sum less what acknowledged batches of the meter
--    exported for it), the oldest hours first, at most `max_items`; or
--    none ([]) when nothing is left. Items, by organization then hour:
--    {org, stripe_customer_id, bucket_start, seq (the hour's acknowledged
--    deltas so far), amount, value (whole units), carried, timestamp}:
--    per organization in hour order, from the remainder its last
--    acknowledged batch left, value = floor(amount × unit_scale +
--    carried before) and carried = the fraction left (exact, never
--    rounded twice, never lost). `timestamp` is the hour's start, or
--    `now` - 34 days when older (Stripe takes 35 days back at most).
-- Nothing counts as exported until tenancy_export_ack.
create or replace function public.tenancy_export_claim(
  meter text, metric text, unit_scale numeric, up_to timestamptz, now timestamptz,
  max_items integer
) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
  v_meter text := tenancy_export_claim.meter;
  v_metric text := tenancy.checked_metric('metric', tenancy_export_claim.metric);
  v_scale numeric := tenancy_export_claim.unit_scale;
  v_now timestamptz := tenancy_export_claim.now;
  v_batch public.usage_export_batches;
  v_items jsonb;
  v_id bigint;
begin
  if v_meter is null or char_length(v_meter) not between 1 and 100 then
    raise exception 'meter: must have 1 to 100 characters' using errcode = '22023';
  end if;
  if v_scale is null or v_scale <= 0 or v_scale >= 'Infinity'::numeric then
    raise exception 'unit_scale: % is not more than 0', coalesce(v_scale::text, 'null')
      using errcode = '22023';
  end if;
  if up_to is null or v_now is null then
    raise exception 'up_to: up_to and now are required' using errcode = '22023';
  end if;
  if max_items is null or max_items < 1 or max_items > 10000 then
    raise exception 'max_items: % is not from 1 to 10000', coalesce(max_items::text, 'null')
      using errcode = '22023';
  end if;
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('tenancy export ' || v_meter));
  insert into public.usage_export_meters (meter, created_at) values (v_meter, v_now)
  on conflict do nothing;

  select b.* into v_batch from public.usage_export_batches b
  where b.meter = v_meter and b.acked_at is null
  order by b.id limit 1;
  if found then
    return pg_catalog.jsonb_build_array(tenancy.export_batch_json(v_batch));
  end if;

  with sums as (
    select r.organization_id, r.bucket_start, sum(r.amount) as amount
    from public.usage_rollups r
    where r.metric = v_metric::tenancy.metric_key
      and r.bucket_start <= up_to - interval '1 hour'
      and r.organization_id in (select c.organization_id from public.billing_customers c)
    group by 1, 2
  ),
  picked as (
    select s.organization_id, s.bucket_start, s.amount - coalesce(k.exported, 0) as amount,
      coalesce(k.deltas, 0) as seq
    from sums s
    left join public.usage_export_marks k
      on k.meter = v_meter and k.organization_id = s.organization_id and k.bucket_start = s.bucket_start
    where s.amount > coalesce(k.exported, 0)
    order by s.bucket_start, s.organization_id
    limit max_items
  ),
  chained as (
    select p.*, c.stripe_customer_id,
      coalesce(q.carried, 0) + sum(p.amount * v_scale) over (
        partition by p.organization_id order by p.bucket_start rows unbounded preceding) as total
    from picked p
    join public.billing_customers c on c.organization_id = p.organization_id
    left join public.usage_export_remainders q
      on q.meter = v_meter and q.organization_id = p.organization_id
  )
  select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
      'org', x.organization_id, 'stripe_customer_id', x.stripe_customer_id,
      'bucket_start', x.bucket_start, 'seq', x.seq,
      'amount', pg_catalog.trim_scale(x.amount)::text,
      'value', (pg_catalog.floor(x.total) - pg_catalog.floor(x.total - x.amount * v_scale))::text,
      'carried', pg_catalog.trim_scale(x.total - pg_catalog.floor(x.total))::text,
      'timestamp', greatest(x.bucket_start, v_now - interval '34 days'))
    order by x.organization_id, x.bucket_start)
  into v_items
  from chained x;
  if v_items is null then
    return '[]'::jsonb;
  end if;
  update public.usage_export_meters m set batches = m.batches + 1 where m.meter = v_meter
  returning m.batches into v_id;
  insert into public.usage_export_batches (meter, id, claimed_at, items)
  values (v_meter, v_id, v_now, v_items)
  returning * into v_batch;
  return pg_catalog.jsonb_build_array(tenancy.export_batch_json(v_batch));
end
$$;

-- tenancy_export_ack(meter, batch_id, at) -> {acked}: the batch's amounts
-- become exported and its organizations' remainders carried, once: true
-- when it was pending, false when it was acknowledged already. P0002 for a
-- batch never claimed.
create or replace function public.tenancy_export_ack(meter text, batch_id bigint, at timestamptz)
returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
  v_batch public.usage_export_batches;
begin
  if meter is null or batch_id is null or at is null then
    raise exception 'batch_id: meter, batch_id and at are required' using errcode = '22023';
  end if;
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('tenancy export ' || meter));
  select b.* into v_batch from public.usage_export_batches b
  where b.meter = tenancy_export_ack.meter and b.id = tenancy_export_ack.batch_id
  for update;
  if not found then
    raise exception 'batch_id: meter % has no batch %', meter, batch_id using errcode = 'P0002';
  end if;
  if v_batch.acked_at is not null then
    return pg_catalog.jsonb_build_object('acked', false);
  end if;
  update public.usage_export_batches b set acked_at = tenancy_export_ack.at
  where b.meter = v_batch.meter and b.id = v_batch.id;
  insert into public.usage_export_marks as k (meter, organization_id, bucket_start, exported, deltas)
  select v_batch.meter, (i ->> 'org')::uuid, (i ->> 'bucket_start')::timestamptz,
    (i ->> 'amount')::numeric, 1
  from pg_catalog.jsonb_array_elements(v_batch.items) i
  order by 2, 3
  on conflict on constraint usage_export_marks_pkey
  do update set exported = k.exported + excluded.exported, deltas = k.deltas + 1;
  insert into public.usage_export_remainders as q (meter, organization_id, carried)
  select distinct on ((i ->> 'org')::uuid) v_batch.meter, (i ->> 'org')::uuid, (i ->> 'carried')::numeric
  from pg_catalog.jsonb_array_elements(v_batch.items) i
  order by (i ->> 'org')::uuid, (i ->> 'bucket_start')::timestamptz desc
  on conflict on constraint usage_export_remainders_pkey do update set carried = excluded.carried;
  return pg_catalog.jsonb_build_object('acked', true);
end
$$;

-- ---------------------------------------------------------------------------
-- 12. Who may call what. Supabase grants every new function in public to
--     anon and authenticated, and PostgreSQL every new function to PUBLIC.

revoke all on function
  public.tenancy_usage_events(uuid, timestamptz, timestamptz, uuid[], boolean, text[], text[], text[], timestamptz, uuid, integer),
  public.tenancy_usage_event(uuid, uuid),
  public.tenancy_usage_report(uuid, timestamptz, timestamptz, text, text[], text[], text[], text[], text[], uuid[], jsonb, integer),
  public.tenancy_usage_costs(uuid, timestamptz, timestamptz, text, text[], text[], text[], text[], uuid[], jsonb, integer),
  public.tenancy_reconcile_rollups(uuid, timestamptz, timestamptz),
  public.tenancy_repair_rollups(uuid, timestamptz, timestamptz),
  public.tenancy_create_usage_partitions(timestamptz, integer),
  public.tenancy_drop_usage_events(timestamptz),
  public.tenancy_set_billing_customer(uuid, text, timestamptz),
  public.tenancy_billing_customer(uuid),
  public.tenancy_export_claim(text, text, numeric, timestamptz, timestamptz, integer),
  public.tenancy_export_ack(text, bigint, timestamptz),
  tenancy.hour_start(timestamptz, text),
  tenancy.usage_partition_name(timestamptz),
  tenancy.create_usage_partition(timestamptz),
  tenancy.roll_up_usage(),
  tenancy.token_fields(),
  tenancy.usage_event_json(public.usage_events),
  tenancy.require_report_reader(uuid, boolean, uuid[]),
  tenancy.checked_report_args(timestamptz, timestamptz, text, text[], integer),
  tenancy.report_bucket(text, timestamptz, text),
  tenancy.usage_report_for(uuid, timestamptz, timestamptz, text, text[], text[], text[], text[], text[], uuid[], jsonb, integer),
  tenancy.member_usage_report(uuid, timestamptz, timestamptz, text, text[], text[], text[], text[], text[], uuid[], jsonb, integer),
  tenancy.usage_costs_for(uuid, timestamptz, timestamptz, text, text[], text[], text[], text[], uuid[], jsonb, integer),
  tenancy.member_usage_costs(uuid, timestamptz, timestamptz, text, text[], text[], text[], text[], uuid[], jsonb, integer),
  tenancy.rollup_drift(uuid, timestamptz, timestamptz),
  tenancy.hourly_rollups_from_events(uuid, text, timestamptz, timestamptz),
  tenancy.rollup_drift_json(uuid, timestamptz, timestamptz),
  tenancy.usage_partitions(),
  tenancy.drop_usage_events_for(timestamptz),
  tenancy.export_batch_json(public.usage_export_batches)
from public, anon, authenticated;

-- A user JWT: the reads (their checks inside), and what they call as it.
grant execute on function
  public.tenancy_usage_events(uuid, timestamptz, timestamptz, uuid[], boolean, text[], text[], text[], timestamptz, uuid, integer),
  public.tenancy_usage_event(uuid, uuid),
  public.tenancy_usage_report(uuid, timestamptz, timestamptz, text, text[], text[], text[], text[], text[], uuid[], jsonb, integer),
  public.tenancy_usage_costs(uuid, timestamptz, timestamptz, text, text[], text[], text[], text[], uuid[], jsonb, integer),
  tenancy.hour_start(timestamptz, text),
  tenancy.token_fields(),
  tenancy.usage_event_json(public.usage_events),
  tenancy.require_report_reader(uuid, boolean, uuid[]),
  tenancy.checked_report_args(timestamptz, timestamptz, text, text[], integer),
  tenancy.report_bucket(text, timestamptz, text),
  tenancy.member_usage_report(uuid, timestamptz, timestamptz, text, text[], text[], text[], text[], text[], uuid[], jsonb, integer),
  tenancy.member_usage_costs(uuid, timestamptz, timestamptz, text, text[], text[], text[], text[], uuid[], jsonb, integer)
to authenticated;

-- The service role: everything but the checked paths and the trigger.
grant execute on function
  public.tenancy_usage_events(uuid, timestamptz, timestamptz, uuid[], boolean, text[], text[], text[], timestamptz, uuid, integer),
  public.tenancy_usage_event(uuid, uuid),
  public.tenancy_usage_report(uuid, timestamptz, timestamptz, text, text[], text[], text[], text[], text[], uuid[], jsonb, integer),
  public.tenancy_usage_costs(uuid, timestamptz, timestamptz, text, text[], text[], text[], text[], uuid[], jsonb, integer),
  public.tenancy_reconcile_rollups(uuid, timestamptz, timestamptz),
  public.tenancy_repair_rollups(uuid, timestamptz, timestamptz),
  public.tenancy_create_usage_partitions(timestamptz, integer),
  public.tenancy_drop_usage_events(timestamptz),
  public.tenancy_set_billing_customer(uuid, text, timestamptz),
  public.tenancy_billing_customer(uuid),
  public.tenancy_export_claim(text, text, numeric, timestamptz, timestamptz, integer),
  public.tenancy_export_ack(text, bigint, timestamptz),
  tenancy.hour_start(timestamptz, text),
  tenancy.usage_partition_name(timestamptz),
  tenancy.create_usage_partition(timestamptz),
  tenancy.token_fields(),
  tenancy.usage_event_json(public.usage_events),
  tenancy.require_report_reader(uuid, boolean, uuid[]),
  tenancy.checked_report_args(timestamptz, timestamptz, text, text[], integer),
  tenancy.report_bucket(text, timestamptz, text),
  tenancy.usage_report_for(uuid, timestamptz, timestamptz, text, text[], text[], text[], text[], text[], uuid[], jsonb, integer),
  tenancy.usage_costs_for(uuid, timestamptz, timestamptz, text, text[], text[], text[], text[], uuid[], jsonb, integer),
  tenancy.rollup_drift(uuid, timestamptz, timestamptz),
  tenancy.hourly_rollups_from_events(uuid, text, timestamptz, timestamptz),
  tenancy.rollup_drift_json(uuid, timestamptz, timestamptz),
  tenancy.usage_partitions(),
  tenancy.drop_usage_events_for(timestamptz),
  tenancy.export_batch_json(public.usage_export_batches)
to service_role;

-- ---------------------------------------------------------------------------
-- The user-JWT path of tenancy_record_event(s) again: each id field
-- refused by its own name (`organization_id: …`), as the service path
-- refuses them, before the membership check.
create or replace function tenancy.member_record_events(events jsonb) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_events jsonb[] := '{}';
  v_event jsonb;
  v_org uuid;
  v_user uuid;
  v_id uuid;
  v_field text;
begin
  perform tenancy.checked_events(events);
  for v_event in select e from pg_catalog.jsonb_array_elements(events) e loop
    if pg_catalog.jsonb_typeof(v_event) <> 'object' then
      raise exception 'an event must be a JSON object' using errcode = '22023';
    end if;
    begin
      v_field := 'organization_id';
      v_org := (v_event ->> 'organization_id')::uuid;
      v_field := 'user_id';
      v_user := (v_event ->> 'user_id')::uuid;
      v_field := 'id';
      v_id := (v_event ->> 'id')::uuid;
    exception when invalid_text_representation then
      raise exception '%: % is not a UUID', v_field, v_event -> v_field using errcode = '22023';
    end;
    if v_org is null then
      raise exception 'organization_id: every event needs one' using errcode = '22023';
    end if;
    v_user := tenancy.require_role(v_org, v_user, 'member');
    -- The caller's own ids stand for ids of its own: it cannot record
    -- under an id the server uses (a hold's, whose commit would then
    -- find its event recorded and record nothing).
    v_events := v_events || (v_event || pg_catalog.jsonb_build_object(
      'user_id', v_user,
      'id', case when v_id is not null then tenancy.derived_id('event', v_org, v_user, v_id) end));
  end loop;
  return tenancy.record_events_for(pg_catalog.to_jsonb(v_events));
end
$$;

-- ---------------------------------------------------------------------------
-- No API role truncates a tenancy table. TRUNCATE fires no row trigger, so
-- neither the audit log nor the last-owner rule would see it, and RLS does
-- not apply to it; Supabase's default privileges (and the earlier `grant
-- all`) gave it to service_role. The tables of `tenancy` (this crate's
-- schema) and the crate's tables in `public`, by name.
do $$
declare
  v_table regclass;
begin
  for v_table in
    select c.oid::regclass from pg_catalog.pg_class c
    join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where c.relkind in ('r', 'p') and (n.nspname = 'tenancy' or (n.nspname = 'public' and c.relname in (
      'organizations', 'user_organizations', 'org_features', 'usage_limits', 'usage_events',
      'usage_counters', 'usage_reservations', 'usage_alerts', 'org_invitations', 'org_domains',
      'audit_events', 'usage_rate_limits', 'usage_leases', 'plans', 'plan_versions',
      'plan_features', 'plan_limits', 'plan_rate_limits', 'org_plans', 'usage_rollups',
      'usage_token_rollups', 'usage_rollups_periods', 'billing_customers', 'usage_export_meters',
      'usage_export_marks', 'usage_export_remainders', 'usage_export_batches')))
  loop
    execute pg_catalog.format('revoke truncate on table %s from public, anon, authenticated, service_role',
      v_table);
  end loop;
end
$$;

insert into tenancy.schema_migrations (version, name)
values (14, '20261206001300_tenancy_usage_history')
on conflict do nothing;
