-- tenancy: reconciliation. Recomputes an organization's counters in one
-- period from the event log (usage_events.amounts, daily_start,
-- monthly_start: what each event counted, and where), reports the
-- counters that disagree, and repairs them. migrations/README.md
-- ("Reconciliation") is the contract.
--
-- Holds are read live (unexpired rows of usage_reservations) and never
-- counted, so only counters can drift.
--
-- Both public functions are `security invoker`, as every RPC, and
-- executable by service_role only: an operator's tool, not a member's.
--
-- Idempotent: `create or replace`, `on conflict do nothing`.

-- The counters of `org_id` in one period (`period` 'daily' or 'monthly',
-- starting `period_start`; one metric, or all when `metric` is null) that
-- differ from the sum of the recorded events' amounts counted in that
-- period: org-wide (scope_user_id the nil uuid) every event, a user's that
-- user's events. A missing counter counts 0; a counter without events
-- recomputes to 0. Reads the organization's events through the primary
-- key's organization_id prefix (the period starts have no index: this is a
-- check an operator runs, not a hot path). Ordered by scope (org-wide
-- first, then users by id), then metric.
create or replace function tenancy.usage_drift(
  org_id uuid,
  period text,
  period_start date,
  metric text
) returns table (scope_user_id uuid, metric_key text, counted numeric, recomputed numeric)
language sql stable
set search_path = ''
as $$
  with amounts as (
    select e.user_id, a.key as metric, (a.value #>> '{}')::numeric as amount
    from public.usage_events e
    cross join lateral pg_catalog.jsonb_each(e.amounts) a
    where e.organization_id = usage_drift.org_id
      and case usage_drift.period
            when 'daily' then e.daily_start
            else e.monthly_start
          end = usage_drift.period_start
      and (usage_drift.metric is null or a.key = usage_drift.metric)
  ),
  recomputed as (
    select s.scope_user_id, a.metric, sum(a.amount) as amount
    from amounts a
    cross join lateral (values ('00000000-0000-0000-0000-000000000000'::uuid), (a.user_id))
      s(scope_user_id)
    where s.scope_user_id is not null
    group by 1, 2
  ),
  counted as (
    select c.scope_user_id, c.metric, c.used
    from public.usage_counters c
    where c.organization_id = usage_drift.org_id
      and c.period = usage_drift.period
      and c.period_start = usage_drift.period_start
      and (usage_drift.metric is null or c.metric = usage_drift.metric)
  )
  select coalesce(c.scope_user_id, r.scope_user_id), coalesce(c.metric, r.metric),
    coalesce(c.used, 0), coalesce(r.amount, 0)
  from counted c
  full join recomputed r on r.scope_user_id = c.scope_user_id and r.metric = c.metric
  where coalesce(c.used, 0) <> coalesce(r.amount, 0)
  order by coalesce(c.scope_user_id, r.scope_user_id) <> '00000000-0000-0000-0000-000000000000'::uuid,
    coalesce(c.scope_user_id, r.scope_user_id), coalesce(c.metric, r.metric) collate "C"
$$;

-- The arguments' checks, shared by both public functions: 22023.
create or replace function tenancy.check_reconcile_args(
  org_id uuid,
  period text,
  period_start date,
  metric text
) returns void
language plpgsql immutable
set search_path = ''
as $$
begin
  if check_reconcile_args.org_id is null then
    raise exception 'org_id is required' using errcode = '22023';
  end if;
  if check_reconcile_args.period is null
     or check_reconcile_args.period not in ('daily', 'monthly') then
    raise exception 'period must be daily or monthly' using errcode = '22023';
  end if;
  if check_reconcile_args.period_start is null then
    raise exception 'period_start is required' using errcode = '22023';
  end if;
  if check_reconcile_args.metric is not null
     and check_reconcile_args.metric !~ '^[a-z][a-z0-9_]{0,62}$' then
    raise exception 'metric % is not a metric key', check_reconcile_args.metric
      using errcode = '22023';
  end if;
end
$$;

-- The drift as JSON: [{scope: {scope: organization} | {scope: user,
-- user_id}, metric, period: {period, start}, counted, recomputed}], the
-- serde shape of the Rust Vec<CounterDrift>, numbers as text.
create or replace function tenancy.drift_json(
  org_id uuid,
  period text,
  period_start date,
  metric text
) returns jsonb
language sql stable
set search_path = ''
as $$
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
      'scope', case when d.scope_user_id = '00000000-0000-0000-0000-000000000000'::uuid
        then pg_catalog.jsonb_build_object('scope', 'organization')
        else pg_catalog.jsonb_build_object('scope', 'user', 'user_id', d.scope_user_id) end,
      'metric', d.metric_key,
      'period', pg_catalog.jsonb_build_object('period', drift_json.period,
        'start', drift_json.period_start),
      'counted', d.counted::text,
      'recomputed', d.recomputed::text
    ) order by d.scope_user_id <> '00000000-0000-0000-0000-000000000000'::uuid,
      d.scope_user_id, d.metric_key collate "C"), '[]'::jsonb)
  from tenancy.usage_drift(drift_json.org_id, drift_json.period, drift_json.period_start,
    drift_json.metric) d
$$;

-- tenancy_reconcile_usage: the counters of one organization and period
-- that disagree with the event log (see tenancy.usage_drift). Reads only;
-- [] for an organization that does not exist.
create or replace function public.tenancy_reconcile_usage(
  org_id uuid,
  period text,
  period_start date,
  metric text default null
) returns jsonb
language plpgsql stable
set search_path = ''
as $$
begin
  perform tenancy.check_reconcile_args(tenancy_reconcile_usage.org_id,
    tenancy_reconcile_usage.period, tenancy_reconcile_usage.period_start,
    tenancy_reconcile_usage.metric);
  return tenancy.drift_json(tenancy_reconcile_usage.org_id, tenancy_reconcile_usage.period,
    tenancy_reconcile_usage.period_start, tenancy_reconcile_usage.metric);
end
$$;

-- tenancy_repair_usage: sets every drifting counter of one organization
-- and period to what its events sum to (inserting a missing counter,
-- zeroing an orphan, deleting nothing) and returns the drift it corrected,
-- as tenancy_reconcile_usage reports it. P0002 if the organization does
-- not exist.
--
-- Serialized against recording: tenancy_record_usage (and every path that
-- records: commits, tenancy_record_events) locks the organization's row
-- `for key share` until its transaction ends. This takes it `for update`,
-- which conflicts with that (`for no key update` would not): a repair
-- waits for the records in progress to commit, and records that start
-- during the repair wait for it. The drift is read by a statement after
-- the lock, whose snapshot (read committed) sees every event committed
-- before it; so a repair never overwrites a counter with a sum that misses
-- an event, and no record adds to a counter the repair then overwrites.
create or replace function public.tenancy_repair_usage(
  org_id uuid,
  period text,
  period_start date,
  metric text default null
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_drift jsonb;
begin
  perform tenancy.check_reconcile_args(tenancy_repair_usage.org_id,
    tenancy_repair_usage.period, tenancy_repair_usage.period_start,
    tenancy_repair_usage.metric);
  perform 1 from public.organizations o where o.id = tenancy_repair_usage.org_id for update;
  if not found then
    raise exception 'organization % does not exist', tenancy_repair_usage.org_id
      using errcode = 'P0002';
  end if;
  v_drift := tenancy.drift_json(tenancy_repair_usage.org_id, tenancy_repair_usage.period,
    tenancy_repair_usage.period_start, tenancy_repair_usage.metric);
  insert into public.usage_counters as c
    (organization_id, scope_user_id, metric, period, period_start, used)
  select tenancy_repair_usage.org_id,
    coalesce((d -> 'scope' ->> 'user_id')::uuid, '00000000-0000-0000-0000-000000000000'::uuid),
    d ->> 'metric', tenancy_repair_usage.period, tenancy_repair_usage.period_start,
    (d ->> 'recomputed')::numeric
  from pg_catalog.jsonb_array_elements(v_drift) d
  -- By the constraint's name: the arguments `metric` and `period` would
  -- make a column list ambiguous.
  on conflict on constraint usage_counters_pkey
  do update set used = excluded.used, updated_at = pg_catalog.now();
  return v_drift;
end
$$;

-- ---------------------------------------------------------------------------
-- Who may call what. Supabase grants every new function in public to anon
-- and authenticated, and PostgreSQL every new function to PUBLIC: revoke.

revoke all on function
  tenancy.usage_drift(uuid, text, date, text),
  tenancy.check_reconcile_args(uuid, text, date, text),
  tenancy.drift_json(uuid, text, date, text),
  public.tenancy_reconcile_usage(uuid, text, date, text),
  public.tenancy_repair_usage(uuid, text, date, text)
from public, anon, authenticated;

grant execute on function
  tenancy.usage_drift(uuid, text, date, text),
  tenancy.check_reconcile_args(uuid, text, date, text),
  tenancy.drift_json(uuid, text, date, text),
  public.tenancy_reconcile_usage(uuid, text, date, text),
  public.tenancy_repair_usage(uuid, text, date, text)
to service_role;

insert into tenancy.schema_migrations (version, name)
values (7, '20261206000600_tenancy_reconciliation')
on conflict do nothing;
