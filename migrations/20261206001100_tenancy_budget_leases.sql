-- tenancy: budget leases. An instance leases a slice of an organization's
-- remaining budget for one (user, metric) and decides on it locally; a
-- live lease counts as held against every hard limit that applies, so
-- used + held + leased <= limit holds whoever decides. migrations/README.md
-- ("Budget leases") is the contract; src/limits/lease.rs the sizing rule.
--
-- 1. public.usage_leases: the leases. RLS on, no policy; anon and
--    authenticated hold no privilege on it: only the service role (and
--    security definer functions) read or write leases.
-- 2. tenancy.lease_grant: the sizing rule, the same as the Rust
--    `lease_grant` (a table of cases runs against both).
-- 3. tenancy.limit_usage and tenancy.usage_snapshot again: `reserved`
--    counts live leases' outstanding amounts besides unexpired holds, so
--    reserve, check_limit, the snapshot and within_limit all see them.
--    Expired leases count nothing, whether or not they were deleted.
-- 4. public.tenancy_lease_budget: take, renew, grow, shrink or return a
--    lease, in one step, under the lock tenancy_reserve takes.
-- 5. A statement trigger on usage_events: an event recorded the first time
--    whose metadata names a lease (`tenancy_lease`) adds its amount of the
--    lease's metric to the lease's `consumed`, in the same statement that
--    counts it, so it moves from leased to used at once.
-- 6. public.tenancy_reconcile_leases / tenancy_repair_leases: a lease's
--    cached `consumed` against what the events recorded under it sum to,
--    and its repair (service_role only).
--
-- Idempotent: `if not exists`, `create or replace`, `drop trigger if
-- exists`, `on conflict do nothing`.

-- ---------------------------------------------------------------------------
-- 1. The table.

create table if not exists public.usage_leases (
  organization_id uuid not null references public.organizations (id) on delete cascade,
  id uuid not null,
  user_id uuid not null,
  metric tenancy.metric_key not null,
  daily_start date not null,
  monthly_start date not null,
  -- The lease's total: what its holder decided on plus what it may still
  -- decide on. It counts granted - consumed (never below 0) while live.
  granted numeric not null constraint usage_leases_granted_check check (granted >= 0),
  -- What recorded events decided on under it have consumed.
  consumed numeric not null default 0 constraint usage_leases_consumed_check check (consumed >= 0),
  expires_at timestamptz not null,
  created_at timestamptz not null default pg_catalog.now(),
  updated_at timestamptz not null default pg_catalog.now(),
  constraint usage_leases_pkey primary key (organization_id, id)
);

create index if not exists usage_leases_org_metric_idx
  on public.usage_leases (organization_id, metric, expires_at);

alter table public.usage_leases enable row level security;
revoke all on table public.usage_leases from public, anon, authenticated;
grant select, insert, update, delete on table public.usage_leases to service_role;

-- ---------------------------------------------------------------------------
-- 2. The sizing rule: at most `want`, at most share x headroom (headroom
-- null: no hard limit applies, and then at most 1024 x max(min_grant, 1)),
-- rounded down to 9 places (trailing zeros
-- trimmed); 0 below min_grant. src/limits/lease.rs `lease_grant` is the same rule.

create or replace function tenancy.lease_grant(
  want numeric, min_grant numeric, share numeric, headroom numeric
) returns numeric
language sql immutable
set search_path = ''
as $$
  select pg_catalog.trim_scale(
    case when g.grant_amount = 0 or g.grant_amount < lease_grant.min_grant then 0
         else g.grant_amount end)
  from (
    select greatest(pg_catalog.trunc(
      case when lease_grant.headroom is null
             then least(lease_grant.want, greatest(lease_grant.min_grant, 1) * 1024)
           when lease_grant.headroom <= 0 then 0
           else least(lease_grant.want, lease_grant.headroom * lease_grant.share) end,
      9), 0) as grant_amount
  ) g
$$;

-- ---------------------------------------------------------------------------
-- 3. tenancy.limit_usage (20261206000200_tenancy_store_functions.sql), the
-- same query, columns and JSON, its `reserved` now unexpired holds plus
-- live leases (org-wide limits: every lease of the metric; a user's: that
-- user's). Still `language sql`, stable, no `set`: inlined into its caller.

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

-- tenancy.usage_snapshot (20261206000200_tenancy_store_functions.sql), the
-- same query and answer, each counter's `reserved` counting live leases
-- as its limits' does.
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
            'reserved', (coalesce((
              select sum(r.amount) from public.usage_reservations r
              where r.organization_id = p_org
                and r.metric = c.metric
                and r.expires_at > p_now
                and (case c.period when 'daily' then r.daily_start else r.monthly_start end)
                    = c.period_start
                and (c.scope_user_id = c_nil or r.user_id = c.scope_user_id)
            ), 0) + coalesce((
              select sum(greatest(s.granted - s.consumed, 0)) from public.usage_leases s
              where s.organization_id = p_org
                and s.metric = c.metric
                and s.expires_at > p_now
                and (case c.period when 'daily' then s.daily_start else s.monthly_start end)
                    = c.period_start
                and (c.scope_user_id = c_nil or s.user_id = c.scope_user_id)
            ), 0))::text
          ) order by c.metric collate "C", c.period, c.period_start,
                     c.scope_user_id <> c_nil, c.scope_user_id)
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
          offset 0 -- keeps the lookup per wanted key
        ) c
        where k.scope_user_id is not null
      ), '[]'::jsonb)
    )
  );
end
$$;

-- ---------------------------------------------------------------------------
-- 4. tenancy_lease_budget(org_id, lease_id, user_id, metric, daily_start,
--   monthly_start, now, expires_at, spoken_for, want, min_grant, share,
--   purge_before) -> {free, granted, consumed, headroom, expires_at}
--
-- Serialized with tenancy_reserve per (org, metric) by the same advisory
-- lock. base = max(spoken_for, consumed) stays covered (whatever the lease
-- covered beyond it is returned); headroom = least over the applicable
-- hard limits of limit - used - holds - other live leases - (base -
-- consumed); free = tenancy.lease_grant(want, min_grant, share, headroom);
-- the lease then covers granted = base + free until expires_at. Deletes the
-- organization's leases that expired at or before purge_before. A lease id
-- already used for another user, metric or periods: 40001.

create or replace function public.tenancy_lease_budget(
  org_id uuid,
  lease_id uuid,
  user_id uuid,
  metric text,
  daily_start date,
  monthly_start date,
  now timestamptz,
  expires_at timestamptz,
  spoken_for numeric,
  want numeric,
  min_grant numeric,
  share numeric,
  purge_before timestamptz
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_org uuid := tenancy_lease_budget.org_id;
  v_id uuid := tenancy_lease_budget.lease_id;
  v_user uuid := tenancy_lease_budget.user_id;
  v_metric text := tenancy_lease_budget.metric;
  v_daily date := tenancy_lease_budget.daily_start;
  v_monthly date := tenancy_lease_budget.monthly_start;
  v_now timestamptz := tenancy_lease_budget.now;
  v_expires timestamptz := tenancy_lease_budget.expires_at;
  v_spoken numeric := tenancy_lease_budget.spoken_for;
  v_want numeric := tenancy_lease_budget.want;
  v_min numeric := tenancy_lease_budget.min_grant;
  v_share numeric := tenancy_lease_budget.share;
  v_purge timestamptz := tenancy_lease_budget.purge_before;
  v_row public.usage_leases;
  v_consumed numeric := 0;
  v_live numeric := 0;
  v_base numeric;
  v_headroom numeric;
  v_free numeric;
begin
  if v_org is null or v_id is null or v_user is null or v_metric is null or v_daily is null
     or v_monthly is null or v_now is null or v_expires is null or v_purge is null then
    raise exception 'every argument of tenancy_lease_budget is required' using errcode = '22023';
  end if;
  -- As the Rust LeaseRequest checks them: a metric key, amounts finite,
  -- zero or more and at most 10^18 (22023 naming the argument).
  v_metric := tenancy.checked_metric('metric', v_metric);
  v_spoken := tenancy.checked_amount('spoken_for', v_spoken);
  v_want := tenancy.checked_amount('want', v_want);
  v_min := tenancy.checked_amount('min_grant', v_min);
  if v_share is null or v_share <= 0 or v_share > 1 then
    raise exception 'share: must be in (0, 1]' using errcode = '22023';
  end if;
  if not exists (select 1 from public.organizations o where o.id = v_org) then
    raise exception 'organization % does not exist', v_org using errcode = 'P0002';
  end if;

  perform pg_catalog.pg_advisory_xact_lock(
    pg_catalog.hashtextextended('tenancy.reserve:' || v_org::text || ':' || v_metric, 0));

  delete from public.usage_leases s
  where s.organization_id = v_org and s.expires_at <= v_purge;

  select s.* into v_row from public.usage_leases s
  where s.organization_id = v_org and s.id = v_id
  for update;
  if found then
    if v_row.user_id <> v_user or v_row.metric::text <> v_metric
       or v_row.daily_start <> v_daily or v_row.monthly_start <> v_monthly then
      raise exception 'lease % in organization % is for another user, metric or period', v_id, v_org
        using errcode = '40001';
    end if;
    v_consumed := v_row.consumed;
    if v_row.expires_at > v_now then
      v_live := greatest(v_row.granted - v_row.consumed, 0);
    end if;
  end if;
  v_base := greatest(v_spoken, v_consumed);

  -- limit_usage counts this lease as it stands (v_live): count base -
  -- consumed for it instead.
  select min(u.limit_value - u.used - u.reserved + v_live - (v_base - v_consumed))
  into v_headroom
  from tenancy.limit_usage(v_org, v_user, v_metric, v_daily, v_monthly, v_now) u
  where u.mode = 'hard';

  v_free := tenancy.lease_grant(v_want, v_min, v_share, v_headroom);

  insert into public.usage_leases as s
    (organization_id, id, user_id, metric, daily_start, monthly_start, granted, consumed,
     expires_at)
  values (v_org, v_id, v_user, v_metric, v_daily, v_monthly, v_base + v_free, v_consumed,
          v_expires)
  on conflict (organization_id, id) do update set
    granted = excluded.granted, expires_at = excluded.expires_at,
    updated_at = pg_catalog.now();

  return jsonb_build_object(
    'free', v_free::text,
    'granted', (v_base + v_free)::text,
    'consumed', v_consumed::text,
    'headroom', (v_headroom - v_free)::text,
    'expires_at', v_expires
  );
end
$$;

-- ---------------------------------------------------------------------------
-- 5. Usage decided on a lease moves from leased to used in one statement.
-- Only events the statement inserted (a duplicate is not inserted) whose
-- organization and user are the lease's; their amount of the lease's
-- metric. Runs as whoever inserts (the service role, or a security
-- definer entry point).

-- The lease an event's metadata names under 'tenancy_lease': a uuid in
-- the hyphenated form (either case), else null. Plain SQL with no SET
-- clause, so the planner inlines it (the trigger runs it per event); the
-- CASE keeps the cast from text that is not a uuid.
create or replace function tenancy.lease_named(metadata jsonb) returns uuid
language sql immutable
as $$
  select case
    when pg_catalog.jsonb_typeof(metadata) = 'object'
     and (metadata ->> 'tenancy_lease')
         ~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
    then (metadata ->> 'tenancy_lease')::uuid
  end
$$;

create or replace function tenancy.consume_leases() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  r record;
begin
  -- One update per lease, in key order, so concurrent batches lock shared
  -- leases in the same order and cannot deadlock.
  for r in
    select s.organization_id, s.id,
      sum(coalesce((e.amounts ->> s.metric::text)::numeric, 0)) as amount
    from new_events e
    join public.usage_leases s
      on s.organization_id = e.organization_id
     and s.id = tenancy.lease_named(e.metadata)
     and s.user_id = e.user_id
    group by s.organization_id, s.id
    order by s.organization_id, s.id
  loop
    if r.amount > 0 then
      update public.usage_leases s
      set consumed = s.consumed + r.amount, updated_at = pg_catalog.now()
      where s.organization_id = r.organization_id and s.id = r.id;
    end if;
  end loop;
  return null;
end
$$;

drop trigger if exists usage_events_consume_leases on public.usage_events;
create trigger usage_events_consume_leases
  after insert on public.usage_events
  referencing new table as new_events
  for each statement execute function tenancy.consume_leases();

-- ---------------------------------------------------------------------------
-- 6. Reconciliation. `consumed` is a cache of the events recorded under a
-- lease (section 5 adds to it): these recompute it from usage_events and
-- report (and repair) the leases where it disagrees. A consumed too low
-- over-holds (granted - consumed is held while live); too high, it
-- under-holds.

-- The leases of `org_id` whose period of kind `period` ('daily' or
-- 'monthly') starts `period_start` (one metric, or all when `metric` is
-- null), live or expired (until purged), whose consumed differs from the
-- sum, over the organization's recorded events whose metadata names the
-- lease under 'tenancy_lease' (the same test as tenancy.consume_leases)
-- and whose user is the lease's, of their amount of the lease's metric.
-- Reads the organization's events through the primary key's
-- organization_id prefix: an operator's check, not a hot path. Ordered by
-- lease id.
create or replace function tenancy.lease_drift(
  org_id uuid,
  period text,
  period_start date,
  metric text
) returns table (lease_id uuid, user_id uuid, metric_key text, consumed numeric,
                 recomputed numeric)
language sql stable
set search_path = ''
as $$
  with leases as (
    select s.id, s.user_id, s.metric::text as metric, s.consumed
    from public.usage_leases s
    where s.organization_id = lease_drift.org_id
      and case lease_drift.period
            when 'daily' then s.daily_start
            else s.monthly_start
          end = lease_drift.period_start
      and (lease_drift.metric is null or s.metric = lease_drift.metric)
  ),
  named as (
    select e.user_id, e.amounts, tenancy.lease_named(e.metadata) as lease_id
    from public.usage_events e
    where e.organization_id = lease_drift.org_id
      and e.metadata ? 'tenancy_lease'
  ),
  recomputed as (
    select l.id, sum(coalesce((n.amounts ->> l.metric)::numeric, 0)) as amount
    from leases l
    join named n on n.lease_id = l.id and n.user_id = l.user_id
    group by l.id
  )
  select l.id, l.user_id, l.metric, l.consumed, coalesce(r.amount, 0)
  from leases l
  left join recomputed r on r.id = l.id
  where l.consumed <> coalesce(r.amount, 0)
  order by l.id
$$;

-- The drift as JSON: [{lease, user, metric, consumed, recomputed}], the
-- serde shape of the Rust Vec<LeaseDrift>, numbers as text, by lease id.
create or replace function tenancy.lease_drift_json(
  org_id uuid,
  period text,
  period_start date,
  metric text
) returns jsonb
language sql stable
set search_path = ''
as $$
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
      'lease', d.lease_id,
      'user', d.user_id,
      'metric', d.metric_key,
      'consumed', d.consumed::text,
      'recomputed', d.recomputed::text
    ) order by d.lease_id), '[]'::jsonb)
  from tenancy.lease_drift(lease_drift_json.org_id, lease_drift_json.period,
    lease_drift_json.period_start, lease_drift_json.metric) d
$$;

-- tenancy_reconcile_leases(org_id, period, period_start, metric): the
-- leases of one organization and period whose consumed disagrees with the
-- event log (see tenancy.lease_drift). Reads only; [] for an organization
-- that does not exist. Arguments as tenancy_reconcile_usage's (22023).
create or replace function public.tenancy_reconcile_leases(
  org_id uuid,
  period text,
  period_start date,
  metric text default null
) returns jsonb
language plpgsql stable
set search_path = ''
as $$
begin
  perform tenancy.check_reconcile_args(tenancy_reconcile_leases.org_id,
    tenancy_reconcile_leases.period, tenancy_reconcile_leases.period_start,
    tenancy_reconcile_leases.metric);
  return tenancy.lease_drift_json(tenancy_reconcile_leases.org_id,
    tenancy_reconcile_leases.period, tenancy_reconcile_leases.period_start,
    tenancy_reconcile_leases.metric);
end
$$;

-- tenancy_repair_leases: sets the consumed of every drifting lease of one
-- organization and period to what its events sum to (granted and
-- expires_at stay) and returns the drift it corrected, as
-- tenancy_reconcile_leases reports it. P0002 if the organization does not
-- exist.
--
-- Serialized against recording as tenancy_repair_usage is: every path
-- that records locks the organization's row `for key share` until its
-- transaction ends (and the trigger that adds to consumed runs inside
-- it); this takes it `for update`, so a repair waits for the records in
-- progress and records that start meanwhile wait for it. The drift is
-- read by a statement after the lock, whose snapshot sees every event
-- committed before it. tenancy_lease_budget does not change consumed; a
-- concurrent one holds the lease's row lock, which the update waits for.
create or replace function public.tenancy_repair_leases(
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
  perform tenancy.check_reconcile_args(tenancy_repair_leases.org_id,
    tenancy_repair_leases.period, tenancy_repair_leases.period_start,
    tenancy_repair_leases.metric);
  perform 1 from public.organizations o where o.id = tenancy_repair_leases.org_id for update;
  if not found then
    raise exception 'organization % does not exist', tenancy_repair_leases.org_id
      using errcode = 'P0002';
  end if;
  v_drift := tenancy.lease_drift_json(tenancy_repair_leases.org_id,
    tenancy_repair_leases.period, tenancy_repair_leases.period_start,
    tenancy_repair_leases.metric);
  update public.usage_leases s
  set consumed = (d ->> 'recomputed')::numeric, updated_at = pg_catalog.now()
  from pg_catalog.jsonb_array_elements(v_drift) d
  where s.organization_id = tenancy_repair_leases.org_id
    and s.id = (d ->> 'lease')::uuid;
  return v_drift;
end
$$;

-- ---------------------------------------------------------------------------
-- Who may call what. Supabase grants every new function in public to anon
-- and authenticated, and PostgreSQL every new function to PUBLIC: revoke.
-- Leasing is the back end's: service_role only.

revoke all on function
  public.tenancy_lease_budget(uuid, uuid, uuid, text, date, date, timestamptz, timestamptz,
    numeric, numeric, numeric, numeric, timestamptz),
  tenancy.lease_grant(numeric, numeric, numeric, numeric),
  tenancy.consume_leases(),
  tenancy.lease_named(jsonb),
  tenancy.lease_drift(uuid, text, date, text),
  tenancy.lease_drift_json(uuid, text, date, text),
  public.tenancy_reconcile_leases(uuid, text, date, text),
  public.tenancy_repair_leases(uuid, text, date, text)
from public, anon, authenticated;
grant execute on function
  public.tenancy_lease_budget(uuid, uuid, uuid, text, date, date, timestamptz, timestamptz,
    numeric, numeric, numeric, numeric, timestamptz),
  tenancy.lease_grant(numeric, numeric, numeric, numeric),
  tenancy.lease_named(jsonb),
  tenancy.lease_drift(uuid, text, date, text),
  tenancy.lease_drift_json(uuid, text, date, text),
  public.tenancy_reconcile_leases(uuid, text, date, text),
  public.tenancy_repair_leases(uuid, text, date, text)
to service_role;

insert into tenancy.schema_migrations (version, name)
values (12, '20261206001100_tenancy_budget_leases')
on conflict do nothing;
