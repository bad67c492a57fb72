-- tenancy: the RPCs PostgREST exposes under /rpc/. They implement the
-- Store trait's atomic primitives; migrations/README.md is the contract.
--
-- All are `security invoker` with an empty search_path: service_role (which
-- bypasses RLS) runs the writers; a user JWT may call only the readers, for
-- organizations it belongs to and for its own user id. Amounts go out as
-- JSON strings (exact decimals); they come in as strings or numbers.

-- ---------------------------------------------------------------------------
-- tenancy_record_usage(jsonb) -> {inserted, duplicates}
--
-- The one argument is unnamed, so PostgREST passes the request body to it
-- as it is, parsed once, instead of taking it apart as named arguments.
-- It is the events: [{id, organization_id, user_id?, provider?, model?,
--   operation?, input_tokens?, cached_input_tokens?, output_tokens?,
--   quantities?, cost_usd?, occurred_at, metadata?, amounts: {metric: amount},
--   daily_start, monthly_start}]
-- Inserts each new event (ON CONFLICT (organization_id, id) DO NOTHING, which
-- also counts an id repeated inside the batch once) and adds its `amounts`
-- — what the library computed the event counts towards; nothing is derived
-- here — to the org-wide counters and, with a user, the user's, daily and
-- monthly; only for newly inserted events. One statement: all of the batch
-- or none.

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
  v_bad_amount boolean;
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

  -- usage_events has no foreign key (one check per row was most of this
  -- function's time): lock the batch's organizations once instead, as the
  -- key would, so an organization deleted concurrently waits for this
  -- transaction and its delete trigger then removes these events too.
  perform 1 from public.organizations o where o.id = any (v_orgs) order by o.id for key share;
  get diagnostics v_locked = row_count;
  if v_locked < cardinality(v_orgs) then
    select x into v_missing from unnest(v_orgs) x
    where not exists (select 1 from public.organizations o where o.id = x)
    limit 1;
    raise exception 'organization % does not exist', v_missing using errcode = 'P0002';
  end if;

  with inserted as (
    insert into public.usage_events (
      id, organization_id, user_id, provider, model, operation, input_tokens,
      cached_input_tokens, output_tokens, quantities, cost_usd, occurred_at, metadata,
      amounts, daily_start, monthly_start)
    select x.id, x.organization_id, x.user_id, coalesce(x.provider, ''), coalesce(x.model, ''),
      coalesce(x.operation, ''), coalesce(x.input_tokens, 0), coalesce(x.cached_input_tokens, 0),
      coalesce(x.output_tokens, 0), coalesce(x.quantities, '{}'::jsonb), x.cost_usd,
      x.occurred_at, x.metadata, coalesce(x.amounts, '{}'::jsonb), x.daily_start, x.monthly_start
    from jsonb_to_recordset(events) as x(
      id uuid, organization_id uuid, user_id uuid, provider text, model text, operation text,
      input_tokens bigint, cached_input_tokens bigint, output_tokens bigint, quantities jsonb,
      cost_usd numeric, occurred_at timestamptz, metadata jsonb, amounts jsonb,
      daily_start date, monthly_start date)
    on conflict (organization_id, id) do nothing
    returning organization_id, user_id, daily_start, monthly_start, amounts
  ),
  amounts as (
    select i.organization_id, i.user_id, i.daily_start, i.monthly_start, a.key as metric,
      (a.value #>> '{}')::numeric as amount
    from inserted i cross join lateral jsonb_each(i.amounts) a
  ),
  -- Summed per (org, user, periods, metric) first, then spread over the
  -- scopes and periods: fewer rows to build and sum than spreading each
  -- event (sums are exact, so the totals are the same).
  per_user as (
    select a.organization_id, a.user_id, a.daily_start, a.monthly_start, a.metric,
      sum(a.amount) as amount,
      -- NaN sorts above Infinity, so this refuses both, and negatives.
      bool_or(a.amount is null or a.amount < 0 or a.amount >= 'Infinity'::numeric) as bad_amount
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
    -- A fixed order, so concurrent batches lock shared counters in the same
    -- order and cannot deadlock.
    select d.organization_id, d.scope_user_id, d.metric, d.period, d.period_start, d.amount
    from deltas d
    order by d.organization_id, d.scope_user_id, d.metric collate "C", d.period, d.period_start
    on conflict (organization_id, scope_user_id, metric, period, period_start)
    do update set used = c.used + excluded.used, updated_at = pg_catalog.now()
    returning 1
  )
  select (select count(*) from inserted),
    coalesce((select bool_or(u.bad_amount) from per_user u), false)
  into v_inserted, v_bad_amount;
  -- Checked after the fact, in the one pass over the amounts: raising
  -- here rolls the whole statement back all the same.
  if v_bad_amount then
    raise exception 'amounts must be zero or more' using errcode = '22023';
  end if;
  return jsonb_build_object(
    'inserted', v_inserted,
    'duplicates', jsonb_array_length(events) - v_inserted
  );
end
$$;

-- ---------------------------------------------------------------------------
-- tenancy.limit_usage: the applicable limits of an org (org-wide, plus the
-- user's own when a user is given; one metric or all), each with its usage
-- and unexpired holds in the given period keys, and `entry`: the limit as
-- the JSON tenancy_reserve and tenancy_usage_snapshot return (the serde
-- shape of the Rust LimitUsage):
--   {limit: {id, org, scope: {scope: organization} | {scope: user, user_id},
--            metric, period, value, mode, created_at, limit_type},
--    period: {period, start}, used, reserved}
-- Both aggregate the entries ordered by the limit's created_at, id, in the
-- same statement as their other reads: one snapshot, so a commit landing
-- meanwhile is seen entirely or not at all.
--
-- `language sql`, `stable`, no `set` clause, not security definer, every
-- name schema-qualified: so PostgreSQL inlines it into the calling
-- statement, whose plan plpgsql caches per connection (a helper with `set
-- search_path` is re-planned on every call instead, which cost reserve and
-- check_limit about half a millisecond each).

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
      'limit', pg_catalog.jsonb_build_object(
        'id', u.id,
        'org', u.organization_id,
        'scope', case when u.user_id is null
          then pg_catalog.jsonb_build_object('scope', 'organization')
          else pg_catalog.jsonb_build_object('scope', 'user', 'user_id', u.user_id) end,
        'metric', u.metric,
        'period', u.period,
        'value', u.limit_value::text,
        'mode', u.mode,
        'created_at', u.created_at,
        'limit_type', u.limit_type),
      'period', pg_catalog.jsonb_build_object('period', u.period, 'start', u.pstart),
      'used', u.used::text,
      'reserved', u.reserved::text
    ) as entry
  from (
    select l.id, l.organization_id, l.user_id, l.metric, l.period, l.limit_value, l.mode,
      l.created_at, l.limit_type, p.pstart,
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

revoke all on function tenancy.limit_usage(uuid, uuid, text, date, date, timestamptz) from public;
grant execute on function tenancy.limit_usage(uuid, uuid, text, date, date, timestamptz)
  to authenticated, service_role;

-- ---------------------------------------------------------------------------
-- tenancy_reserve(org_id, user_id, metric, amount, daily_start,
--   monthly_start, now, expires_at, reservation_id, purge_before)
--   -> {granted, limits}
--
-- Check-and-reserve in one step, serialized per (org, metric) with an
-- advisory transaction lock: reads every applicable limit (org-wide and the
-- user's) with used and reserved (unexpired holds, excluding this request),
-- grants iff amount fits under every hard limit, and writes the hold only
-- when granted. Drops the org's holds that expired at or before
-- purge_before on the way (later expired ones stay, for late commits).

-- The signatures before purge_before, user_id and now were added.
drop function if exists public.tenancy_reserve(uuid, uuid, text, numeric, date, date, timestamptz, timestamptz, uuid);
drop function if exists public.tenancy_commit_reservation(uuid, uuid, jsonb);
drop function if exists public.tenancy_release_reservation(uuid, uuid);

create or replace function public.tenancy_reserve(
  org_id uuid,
  user_id uuid,
  metric text,
  amount numeric,
  daily_start date,
  monthly_start date,
  now timestamptz,
  expires_at timestamptz,
  reservation_id uuid,
  purge_before timestamptz
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_org uuid := tenancy_reserve.org_id;
  v_user uuid := tenancy_reserve.user_id;
  v_metric text := tenancy_reserve.metric;
  v_amount numeric := tenancy_reserve.amount;
  v_daily date := tenancy_reserve.daily_start;
  v_monthly date := tenancy_reserve.monthly_start;
  v_now timestamptz := tenancy_reserve.now;
  v_expires timestamptz := tenancy_reserve.expires_at;
  v_id uuid := tenancy_reserve.reservation_id;
  v_purge timestamptz := tenancy_reserve.purge_before;
  v_limits jsonb;
  v_granted boolean;
begin
  if v_org is null or v_user is null or v_metric is null or v_id is null
     or v_daily is null or v_monthly is null or v_now is null or v_expires is null
     or v_purge is null then
    raise exception 'every argument of tenancy_reserve is required' using errcode = '22023';
  end if;
  -- NaN sorts above Infinity, so this refuses both, and negatives.
  if v_amount is null or v_amount < 0 or v_amount >= 'Infinity'::numeric then
    raise exception 'amount must be a finite number, zero or more' using errcode = '22023';
  end if;
  if not exists (select 1 from public.organizations o where o.id = v_org) then
    raise exception 'organization % does not exist', v_org using errcode = 'P0002';
  end if;

  perform pg_catalog.pg_advisory_xact_lock(
    pg_catalog.hashtextextended('tenancy.reserve:' || v_org::text || ':' || v_metric, 0));

  delete from public.usage_reservations r
  where r.organization_id = v_org and r.expires_at <= v_purge;

  -- After the lock, so this statement's snapshot sees every earlier grant.
  -- The limits JSON (see tenancy.limit_usage) and the decision, in one
  -- statement.
  select coalesce(pg_catalog.jsonb_agg(u.entry order by u.created_at, u.id), '[]'::jsonb),
    coalesce(pg_catalog.bool_and(
      u.mode = 'soft' or u.used + u.reserved + v_amount <= u.limit_value), true)
  into v_limits, v_granted
  from tenancy.limit_usage(v_org, v_user, v_metric, v_daily, v_monthly, v_now) u;

  if v_granted then
    insert into public.usage_reservations as r
      (organization_id, id, user_id, metric, amount, daily_start, monthly_start, expires_at)
    values (v_org, v_id, v_user, v_metric, v_amount, v_daily, v_monthly, v_expires)
    on conflict (organization_id, id) do update set
      user_id = excluded.user_id, metric = excluded.metric, amount = excluded.amount,
      daily_start = excluded.daily_start, monthly_start = excluded.monthly_start,
      expires_at = excluded.expires_at;
  end if;

  return jsonb_build_object('granted', v_granted, 'limits', v_limits);
end
$$;

-- ---------------------------------------------------------------------------
-- tenancy_commit_reservation(org_id, user_id, reservation_id, event, now)
--   -> {released_hold, recorded}
-- Commits the hold reservation_id of user_id in org_id, in one transaction:
-- records `event` (one element of tenancy_record_usage's array, whose
-- organization_id, id and user_id must be org_id, reservation_id and
-- user_id, else 22023) in the hold's periods, whatever the event says, and
-- drops the hold; released_hold says whether it was live at `now`. No hold
-- but the event recorded (a retried commit): nothing changes, both false.
-- No hold and no event: P0002, nothing recorded. Another user's hold:
-- 42501, nothing recorded.

create or replace function public.tenancy_commit_reservation(
  org_id uuid, user_id uuid, reservation_id uuid, event jsonb, now timestamptz
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_org uuid := tenancy_commit_reservation.org_id;
  v_user uuid := tenancy_commit_reservation.user_id;
  v_id uuid := tenancy_commit_reservation.reservation_id;
  v_now timestamptz := tenancy_commit_reservation.now;
  v_hold public.usage_reservations;
  v_recorded jsonb;
begin
  if v_org is null or v_user is null or v_id is null or v_now is null then
    raise exception 'every argument of tenancy_commit_reservation is required' using errcode = '22023';
  end if;
  if event is null or jsonb_typeof(event) <> 'object' then
    raise exception 'event must be a JSON object' using errcode = '22023';
  end if;
  if (event ->> 'organization_id')::uuid is distinct from v_org
     or (event ->> 'id')::uuid is distinct from v_id
     or (event ->> 'user_id')::uuid is distinct from v_user then
    raise exception 'the event must have the reservation''s organization, id and user'
      using errcode = '22023';
  end if;
  select r.* into v_hold from public.usage_reservations r
  where r.organization_id = v_org and r.id = v_id
  for update;
  if not found then
    if exists (select 1 from public.usage_events e where e.organization_id = v_org and e.id = v_id) then
      return jsonb_build_object('released_hold', false, 'recorded', false);
    end if;
    raise exception 'no reservation % in organization %; nothing was recorded', v_id, v_org
      using errcode = 'P0002';
  end if;
  if v_hold.user_id <> v_user then
    raise exception 'reservation % was not made for user %', v_id, v_user using errcode = '42501';
  end if;
  v_recorded := public.tenancy_record_usage(jsonb_build_array(
    event || jsonb_build_object('daily_start', v_hold.daily_start,
                                'monthly_start', v_hold.monthly_start)));
  delete from public.usage_reservations r where r.organization_id = v_org and r.id = v_id;
  return jsonb_build_object(
    'released_hold', v_hold.expires_at > v_now,
    'recorded', (v_recorded ->> 'inserted')::integer = 1
  );
end
$$;

-- ---------------------------------------------------------------------------
-- tenancy_release_reservation(org_id, user_id, reservation_id, now)
--   -> {released}
-- Drops the hold of user_id; released says whether it was live at `now`.
-- Another user's hold: 42501, the hold stays.

create or replace function public.tenancy_release_reservation(
  org_id uuid, user_id uuid, reservation_id uuid, now timestamptz
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_hold public.usage_reservations;
begin
  if tenancy_release_reservation.org_id is null or tenancy_release_reservation.user_id is null
     or tenancy_release_reservation.reservation_id is null or tenancy_release_reservation.now is null then
    raise exception 'every argument of tenancy_release_reservation is required' using errcode = '22023';
  end if;
  select r.* into v_hold from public.usage_reservations r
  where r.organization_id = tenancy_release_reservation.org_id
    and r.id = tenancy_release_reservation.reservation_id
  for update;
  if not found then
    return jsonb_build_object('released', false);
  end if;
  if v_hold.user_id is distinct from tenancy_release_reservation.user_id then
    raise exception 'reservation % was not made for user %',
      v_hold.id, tenancy_release_reservation.user_id using errcode = '42501';
  end if;
  delete from public.usage_reservations r
  where r.organization_id = v_hold.organization_id and r.id = v_hold.id;
  return jsonb_build_object('released', v_hold.expires_at > tenancy_release_reservation.now);
end
$$;

-- ---------------------------------------------------------------------------
-- tenancy_usage_snapshot(org_id, daily_start, monthly_start, now,
--   user_id?, metric?) -> {limits, counters}
-- The check and the summary: applicable limits with usage (org-wide, plus
-- the user's when user_id is given) and every counter in scope for the
-- current periods, with reserved amounts. A user JWT may read only orgs it
-- belongs to, and only its own user_id (else 42501); its org-wide
-- reserved amounts count every member's holds.

-- tenancy.usage_snapshot(org, user, metric, daily, monthly, now): the
-- snapshot itself, as its caller sees the tables. plpgsql, so its plan is
-- cached per connection.
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
        ) c
        where k.scope_user_id is not null
      ), '[]'::jsonb)
    )
  );
end
$$;

-- tenancy.member_usage_snapshot(...): the snapshot for a user JWT, read as
-- the tables' owner. Per-user RLS hides other members' holds from a
-- member, yet what its org-wide limits and counters have reserved must
-- count them, as reserve counts them. It checks the member itself
-- (tenancy.require_member, by the JWT); the snapshot holds only org-wide
-- rows and the member's own, and other members' holds only as sums.
create or replace function tenancy.member_usage_snapshot(
  p_org uuid, p_user uuid, p_metric text, p_daily date, p_monthly date, p_now timestamptz
) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
begin
  perform tenancy.require_member(p_org, p_user);
  return tenancy.usage_snapshot(p_org, p_user, p_metric, p_daily, p_monthly, p_now);
end
$$;

revoke all on function
  tenancy.usage_snapshot(uuid, uuid, text, date, date, timestamptz),
  tenancy.member_usage_snapshot(uuid, uuid, text, date, date, timestamptz)
from public;
grant execute on function tenancy.usage_snapshot(uuid, uuid, text, date, date, timestamptz)
  to service_role;
grant execute on function tenancy.member_usage_snapshot(uuid, uuid, text, date, date, timestamptz)
  to authenticated;

create or replace function public.tenancy_usage_snapshot(
  org_id uuid,
  daily_start date,
  monthly_start date,
  now timestamptz,
  user_id uuid default null,
  metric text default null
) returns jsonb
language plpgsql stable
set search_path = ''
as $$
begin
  -- tenancy.is_privileged as a cached plpgsql statement: the service role,
  -- the common caller, then skips a function call.
  if coalesce((
    select r.rolbypassrls or r.rolsuper from pg_catalog.pg_roles r
    where r.rolname = current_user
  ), false) then
    return tenancy.usage_snapshot(
      tenancy_usage_snapshot.org_id, tenancy_usage_snapshot.user_id,
      tenancy_usage_snapshot.metric, tenancy_usage_snapshot.daily_start,
      tenancy_usage_snapshot.monthly_start, tenancy_usage_snapshot.now);
  end if;
  return tenancy.member_usage_snapshot(
    tenancy_usage_snapshot.org_id, tenancy_usage_snapshot.user_id,
    tenancy_usage_snapshot.metric, tenancy_usage_snapshot.daily_start,
    tenancy_usage_snapshot.monthly_start, tenancy_usage_snapshot.now);
end
$$;

-- ---------------------------------------------------------------------------
-- tenancy_claim_alert(org_id, metric, period, period_start,
--   threshold_percent, fired_at, user_id?) -> {claimed}
-- True for exactly one caller per key, however many race.

create or replace function public.tenancy_claim_alert(
  org_id uuid,
  metric text,
  period text,
  period_start date,
  threshold_percent integer,
  fired_at timestamptz,
  user_id uuid default null
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_org uuid := tenancy_claim_alert.org_id;
  v_claimed integer;
begin
  if not exists (select 1 from public.organizations o where o.id = v_org) then
    raise exception 'organization % does not exist', v_org using errcode = 'P0002';
  end if;
  insert into public.usage_alerts
    (organization_id, scope_user_id, metric, period, period_start, threshold_percent, fired_at)
  values (
    v_org,
    coalesce(tenancy_claim_alert.user_id, '00000000-0000-0000-0000-000000000000'::uuid),
    tenancy_claim_alert.metric,
    tenancy_claim_alert.period,
    tenancy_claim_alert.period_start,
    tenancy_claim_alert.threshold_percent,
    tenancy_claim_alert.fired_at
  )
  on conflict do nothing;
  get diagnostics v_claimed = row_count;
  return jsonb_build_object('claimed', v_claimed > 0);
end
$$;

-- ---------------------------------------------------------------------------
-- tenancy_put_limit(limit_id, org_id, metric, period, limit_value, mode?,
--   user_id?, created_at?) -> SETOF usage_limits (one row)
-- Sets the limit of its (org, scope, metric, period) slot: updates value
-- and mode of the existing one (keeping id and created_at) or inserts.

create or replace function public.tenancy_put_limit(
  limit_id uuid,
  org_id uuid,
  metric text,
  period text,
  limit_value numeric,
  mode text default 'hard',
  user_id uuid default null,
  created_at timestamptz default null
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
    (id, organization_id, user_id, metric, period, limit_value, mode, created_at)
  values (
    coalesce(tenancy_put_limit.limit_id, gen_random_uuid()),
    tenancy_put_limit.org_id,
    tenancy_put_limit.user_id,
    tenancy_put_limit.metric,
    tenancy_put_limit.period,
    tenancy_put_limit.limit_value,
    coalesce(tenancy_put_limit.mode, 'hard'),
    coalesce(tenancy_put_limit.created_at, pg_catalog.now())
  )
  on conflict on constraint usage_limits_slot_key
  do update set limit_value = excluded.limit_value, mode = excluded.mode
  returning l.id into v_id;
  return query select l.* from public.usage_limits l
    where l.organization_id = tenancy_put_limit.org_id and l.id = v_id;
end
$$;

-- ---------------------------------------------------------------------------
-- tenancy_create_organization(name, slug, timezone?, id?, owner_user_id?,
--   created_at?) -> SETOF organizations (one row)
-- Inserts the organization; a trigger makes owner_user_id its owner in the
-- same transaction. A user JWT creates organizations owned by itself only
-- (owner_user_id omitted or its own id), and the organizations_assign_id
-- trigger replaces the id and created_at it passes; service_role names the
-- owner and keeps its id. A taken slug is 23505.

create or replace function public.tenancy_create_organization(
  name text,
  slug text,
  timezone text default 'UTC',
  id uuid default null,
  owner_user_id uuid default null,
  created_at timestamptz default null
) returns setof public.organizations
language plpgsql
set search_path = ''
as $$
declare
  v_owner uuid := tenancy_create_organization.owner_user_id;
begin
  if not tenancy.is_privileged() then
    if (select auth.uid()) is null then
      raise exception 'creating an organization needs a signed-in user' using errcode = '42501';
    end if;
    if v_owner is not null and v_owner <> (select auth.uid()) then
      raise exception 'a user may create organizations only for itself' using errcode = '42501';
    end if;
    v_owner := (select auth.uid());
  elsif v_owner is null then
    raise exception 'owner_user_id is required' using errcode = '22023';
  end if;

  insert into public.organizations (id, name, slug, owner_user_id, timezone, created_at)
  values (
    coalesce(tenancy_create_organization.id, gen_random_uuid()),
    btrim(tenancy_create_organization.name),
    tenancy_create_organization.slug,
    v_owner,
    coalesce(tenancy_create_organization.timezone, 'UTC'),
    coalesce(tenancy_create_organization.created_at, pg_catalog.now())
  );
  -- Read back after the owner row exists, so RLS lets a user JWT see it
  -- (`returning` would be checked before it does). By the unique slug: for
  -- a user JWT the trigger has replaced the id.
  return query select o.* from public.organizations o
    where o.slug = tenancy_create_organization.slug;
end
$$;

-- ---------------------------------------------------------------------------
-- tenancy_update_feature(org_id, feature_key, set_config, updated_at,
--   enabled?, config?) -> SETOF org_features (one row)
-- Changes one feature row in one statement: `enabled` when given (null:
-- keep), `config` when set_config (a missing config then means SQL null),
-- and updated_at. A new row starts disabled with a null config. Two
-- concurrent calls changing different fields both land. A missing
-- organization is 23503.

create or replace function public.tenancy_update_feature(
  org_id uuid,
  feature_key text,
  set_config boolean,
  updated_at timestamptz,
  enabled boolean default null,
  config jsonb default null
) returns setof public.org_features
language sql
volatile
set search_path = ''
as $$
  insert into public.org_features as f (organization_id, feature_key, enabled, config, updated_at)
  values (
    tenancy_update_feature.org_id,
    tenancy_update_feature.feature_key,
    coalesce(tenancy_update_feature.enabled, false),
    case when tenancy_update_feature.set_config then tenancy_update_feature.config end,
    tenancy_update_feature.updated_at
  )
  on conflict (organization_id, feature_key) do update set
    enabled = coalesce(tenancy_update_feature.enabled, f.enabled),
    config = case when tenancy_update_feature.set_config
      then tenancy_update_feature.config else f.config end,
    updated_at = excluded.updated_at
  returning f.*
$$;

-- ---------------------------------------------------------------------------
-- tenancy_list_organizations(max_rows, skip_rows?, search?)
--   -> SETOF organizations
-- A page of organizations by name (byte order), then id; with `search`,
-- only those whose name or slug contains it, ignoring the case of ASCII
-- letters (no wildcards: `%` and `_` are literal). For operator tools.

create or replace function public.tenancy_list_organizations(
  max_rows integer,
  skip_rows integer default 0,
  search text default null
) returns setof public.organizations
language sql
stable
set search_path = ''
as $$
  select o.* from public.organizations o
  where tenancy_list_organizations.search is null
     or pg_catalog.strpos(pg_catalog.lower(o.name collate "C"),
                          pg_catalog.lower(tenancy_list_organizations.search collate "C")) > 0
     or pg_catalog.strpos(o.slug,
                          pg_catalog.lower(tenancy_list_organizations.search collate "C")) > 0
  order by o.name collate "C", o.id
  limit tenancy_list_organizations.max_rows
  offset coalesce(tenancy_list_organizations.skip_rows, 0)
$$;

-- ---------------------------------------------------------------------------
-- tenancy_usage_history(org_id, scope, period, from_start, to_start,
--   user_id?, metric?) -> [CounterValue]
-- Recorded usage per counter and period whose start lies in
-- [from_start, to_start]: scope 'organization' (the org-wide counters),
-- 'user' (user_id's own) or 'each_user' (every user's own), ordered by
-- period start, metric, then scope (org-wide first, users by id). A user
-- JWT must be a member; its own history is open to every role, other
-- users' (each_user, or another user_id) needs admin or owner (42501).

create or replace function public.tenancy_usage_history(
  org_id uuid,
  scope text,
  period text,
  from_start date,
  to_start date,
  user_id uuid default null,
  metric text default null
) returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_org uuid := tenancy_usage_history.org_id;
  v_scope text := tenancy_usage_history.scope;
  v_period text := tenancy_usage_history.period;
  v_user uuid := tenancy_usage_history.user_id;
  v_metric text := tenancy_usage_history.metric;
  v_nil constant uuid := '00000000-0000-0000-0000-000000000000';
begin
  if v_scope is null or v_scope not in ('organization', 'user', 'each_user')
     or (v_scope = 'user') <> (v_user is not null) then
    raise exception 'scope must be organization, each_user, or user with a user_id'
      using errcode = '22023';
  end if;
  if not tenancy.is_privileged() then
    perform tenancy.require_member(v_org, null);
    if (v_scope = 'each_user' or (v_scope = 'user' and v_user <> (select auth.uid())))
       and not tenancy.has_role(v_org, 'admin') then
      raise exception 'only admins and owners see other members'' usage' using errcode = '42501';
    end if;
  end if;
  return coalesce((
    select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
        'scope', case when c.scope_user_id = v_nil
          then pg_catalog.jsonb_build_object('scope', 'organization')
          else pg_catalog.jsonb_build_object('scope', 'user', 'user_id', c.scope_user_id) end,
        'metric', c.metric,
        'period', pg_catalog.jsonb_build_object('period', c.period, 'start', c.period_start),
        'used', c.used::text
      ) order by c.period_start, c.metric collate "C", c.scope_user_id <> v_nil, c.scope_user_id)
    from public.usage_counters c
    where c.organization_id = v_org
      and c.period = v_period
      and c.period_start between tenancy_usage_history.from_start and tenancy_usage_history.to_start
      and (v_metric is null or c.metric = v_metric)
      and case v_scope
        when 'organization' then c.scope_user_id = v_nil
        when 'user' then c.scope_user_id = v_user
        else c.scope_user_id <> v_nil
      end
  ), '[]'::jsonb);
end
$$;

-- ---------------------------------------------------------------------------
-- Who may call what.

revoke all on function
  public.tenancy_record_usage(jsonb),
  public.tenancy_reserve(uuid, uuid, text, numeric, date, date, timestamptz, timestamptz, uuid, timestamptz),
  public.tenancy_commit_reservation(uuid, uuid, uuid, jsonb, timestamptz),
  public.tenancy_release_reservation(uuid, uuid, uuid, timestamptz),
  public.tenancy_usage_snapshot(uuid, date, date, timestamptz, uuid, text),
  public.tenancy_usage_history(uuid, text, text, date, date, uuid, text),
  public.tenancy_claim_alert(uuid, text, text, date, integer, timestamptz, uuid),
  public.tenancy_put_limit(uuid, uuid, text, text, numeric, text, uuid, timestamptz),
  public.tenancy_update_feature(uuid, text, boolean, timestamptz, boolean, jsonb),
  public.tenancy_list_organizations(integer, integer, text),
  public.tenancy_create_organization(text, text, text, uuid, uuid, timestamptz)
from public, anon, authenticated;

-- Workers and the back end (service_role): everything.
grant execute on function
  public.tenancy_record_usage(jsonb),
  public.tenancy_reserve(uuid, uuid, text, numeric, date, date, timestamptz, timestamptz, uuid, timestamptz),
  public.tenancy_commit_reservation(uuid, uuid, uuid, jsonb, timestamptz),
  public.tenancy_release_reservation(uuid, uuid, uuid, timestamptz),
  public.tenancy_usage_snapshot(uuid, date, date, timestamptz, uuid, text),
  public.tenancy_usage_history(uuid, text, text, date, date, uuid, text),
  public.tenancy_claim_alert(uuid, text, text, date, integer, timestamptz, uuid),
  public.tenancy_put_limit(uuid, uuid, text, text, numeric, text, uuid, timestamptz),
  public.tenancy_update_feature(uuid, text, boolean, timestamptz, boolean, jsonb),
  public.tenancy_list_organizations(integer, integer, text),
  public.tenancy_create_organization(text, text, text, uuid, uuid, timestamptz)
to service_role;

-- User JWTs: the readers (own orgs; their own usage, or with admin any
-- member's) and creating an org they own.
grant execute on function
  public.tenancy_usage_snapshot(uuid, date, date, timestamptz, uuid, text),
  public.tenancy_usage_history(uuid, text, text, date, date, uuid, text),
  public.tenancy_create_organization(text, text, text, uuid, uuid, timestamptz)
to authenticated;
