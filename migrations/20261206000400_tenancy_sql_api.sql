-- tenancy: SQL that stands on its own, for callers that are not the Rust
-- library (supabase-py, supabase-js, Edge Functions, RLS policies and
-- triggers). migrations/README.md ("Entry points for any caller") is the
-- contract.
--
-- The store RPCs the library calls take the periods, `now` and each
-- event's amounts from their caller: the library owns those rules. The
-- entry points here compute them in SQL, with the same rules, from the
-- organization's IANA time zone, `now()` and the event's columns, and then
-- call those same store RPCs. Rust and SQL are checked against each other
-- by a property test (testkit/tests/sql/agreement.rs).
--
-- 1. The rules: tenancy.period_start / period_starts_at / period_resets_at
--    (PeriodKey::containing, starts_at, resets_at), tenancy.event_amounts
--    (UsageEvent::amounts), tenancy.decide (the limit decision) and
--    tenancy.usage_lines (the usage-vs-limits lines).
-- 2. The entry points in `public`, each `security invoker`: service_role
--    (which bypasses RLS) runs tenancy.<name>_for directly; a user JWT goes
--    through tenancy.member_<name>, a security definer that first checks,
--    by the JWT alone, that the caller is a member with the role the
--    action needs, acting for itself, and then runs the same
--    tenancy.<name>_for as the tables' owner.
-- 3. tenancy.within_limit, for RLS policies, and tenancy.count_usage, a
--    trigger function that records usage for each inserted row.
--
-- Idempotent: `create or replace`, `if not exists`, `on conflict do
-- nothing`.

-- Whether a user JWT may commit or release the hold itself: only a hold it
-- took itself (tenancy_reserve_usage with its JWT). A hold the server took
-- for a user (the library, the service role) is the server's to settle, or
-- a user could cancel the charge for work done on its behalf.
alter table public.usage_reservations
  add column if not exists user_settles boolean not null default false;

-- ---------------------------------------------------------------------------
-- 1. The rules.

-- The zone `tz` names, as chrono-tz reads it. PostgreSQL reads a name in
-- its abbreviation list before its zone names, and four IANA zone names
-- are also abbreviations of fixed offsets there: CET, EET, MET and WET,
-- which the IANA database (since 2024b) links to Europe/Brussels,
-- Europe/Athens, Europe/Brussels and Europe/Lisbon, daylight saving
-- included. Every other name means the same to both.
create or replace function tenancy.iana_zone(tz text) returns text
language sql immutable
as $$
  select case iana_zone.tz
    when 'CET' then 'Europe/Brussels'
    when 'MET' then 'Europe/Brussels'
    when 'EET' then 'Europe/Athens'
    when 'WET' then 'Europe/Lisbon'
    else iana_zone.tz
  end
$$;

-- The local date `at` falls on in `tz`, as a daily or monthly period's
-- start (the first of the month for monthly): PeriodKey::containing.
create or replace function tenancy.period_start(period text, at timestamptz, tz text)
returns date
language sql stable
as $$
  select case period_start.period
    when 'daily' then (period_start.at at time zone tenancy.iana_zone(period_start.tz))::date
    when 'monthly' then pg_catalog.date_trunc('month',
      period_start.at at time zone tenancy.iana_zone(period_start.tz))::date
  end
$$;

-- The first instant whose local date in `tz` is `day` or later: local
-- midnight; where midnight happens twice, the first; where a clock change
-- skips midnight, the end of the gap. PeriodKey::starts_at.
--
-- Midnight read with each UTC offset in effect within 26 hours of it, and
-- kept when that offset is the one in effect then; the earliest such
-- instant is the answer. None is kept in a gap: then the instant the local
-- date reaches `day`, bisected to the second (zones change offsets on whole
-- seconds), between 26 hours before midnight read as UTC (every offset is
-- under 15 hours, so the local date is earlier there) and 26 hours after.
create or replace function tenancy.day_starts_at(day date, tz text) returns timestamptz
language plpgsql stable
set search_path = ''
as $$
declare
  v_tz text := tenancy.iana_zone(day_starts_at.tz);
  v_midnight timestamp := day_starts_at.day::timestamp;
  v_as_utc timestamptz := v_midnight at time zone 'UTC';
  v_offset interval;
  v_candidate timestamptz;
  v_best timestamptz;
  v_lo bigint;
  v_hi bigint;
  v_mid bigint;
begin
  foreach v_offset in array array[
    ((v_as_utc - interval '26 hours') at time zone v_tz) - ((v_as_utc - interval '26 hours') at time zone 'UTC'),
    (v_as_utc at time zone v_tz) - (v_as_utc at time zone 'UTC'),
    ((v_as_utc + interval '26 hours') at time zone v_tz) - ((v_as_utc + interval '26 hours') at time zone 'UTC')
  ] loop
    v_candidate := (v_midnight - v_offset) at time zone 'UTC';
    if (v_candidate at time zone v_tz) = v_midnight and (v_best is null or v_candidate < v_best) then
      v_best := v_candidate;
    end if;
  end loop;
  if v_best is not null then
    return v_best;
  end if;
  v_lo := extract(epoch from v_as_utc - interval '26 hours')::bigint;
  v_hi := extract(epoch from v_as_utc + interval '26 hours')::bigint;
  while v_hi - v_lo > 1 loop
    v_mid := v_lo + (v_hi - v_lo) / 2;
    if (pg_catalog.to_timestamp(v_mid) at time zone v_tz) >= v_midnight then
      v_hi := v_mid;
    else
      v_lo := v_mid;
    end if;
  end loop;
  return pg_catalog.to_timestamp(v_hi);
end
$$;

-- When the period of kind `period` starting on `start` begins:
-- PeriodKey::starts_at.
create or replace function tenancy.period_starts_at(period text, start date, tz text)
returns timestamptz
language sql stable
as $$
  select tenancy.day_starts_at(period_starts_at.start, period_starts_at.tz)
$$;

-- When the period of kind `period` starting on `start` ends and the next
-- one begins, its usage resetting: PeriodKey::resets_at.
create or replace function tenancy.period_resets_at(period text, start date, tz text)
returns timestamptz
language sql stable
as $$
  select tenancy.day_starts_at(
    case period_resets_at.period
      when 'daily' then period_resets_at.start + 1
      else (pg_catalog.date_trunc('month', period_resets_at.start) + interval '1 month')::date
    end,
    period_resets_at.tz)
$$;

-- `amount` checked as validate_amount checks it: finite, zero or more, at
-- most 10^18 (MAX_AMOUNT); without trailing zeros. 22023 naming `field`
-- otherwise (null included).
create or replace function tenancy.checked_amount(field text, amount numeric) returns numeric
language plpgsql immutable
set search_path = ''
as $$
begin
  if amount is null then
    raise exception '%: is required', field using errcode = '22023';
  end if;
  -- NaN sorts above Infinity.
  if amount >= 'Infinity'::numeric or amount <= '-Infinity'::numeric then
    raise exception '%: % is not a finite number', field, amount using errcode = '22023';
  end if;
  if amount < 0 then
    raise exception '%: % is negative; amounts must be zero or more', field, amount
      using errcode = '22023';
  end if;
  if amount > 1000000000000000000 then
    raise exception '%: % exceeds the largest accepted amount, 1000000000000000000', field, amount
      using errcode = '22023';
  end if;
  return pg_catalog.trim_scale(amount);
end
$$;

-- An amount from JSON (a number, or a string holding one), checked by
-- tenancy.checked_amount; 22023 naming `field` otherwise.
create or replace function tenancy.json_amount(field text, value jsonb) returns numeric
language plpgsql immutable
set search_path = ''
as $$
declare
  v_amount numeric;
begin
  if value is null or pg_catalog.jsonb_typeof(value) not in ('number', 'string') then
    raise exception '%: % is not a number', field, coalesce(value::text, 'null') using errcode = '22023';
  end if;
  begin
    v_amount := (value #>> '{}')::numeric;
  exception when invalid_text_representation then
    raise exception '%: % is not a number', field, value using errcode = '22023';
  end;
  return tenancy.checked_amount(field, v_amount);
end
$$;

-- What an event counts towards, {metric: amount} with each amount a JSON
-- string: UsageEvent::amounts.
-- - tokens: input_tokens + cached_input_tokens + output_tokens, when above
--   zero (each a JSON integer from 0 to 18446744073709551615, or absent);
-- - cost_usd: the cost, when present (zero included);
-- - each of `quantities` ({metric: amount}); one named tokens or cost_usd
--   adds to that metric.
-- Every amount and sum as tenancy.json_amount checks it; 22023 naming
-- `tokens`, `cost_usd`, `quantity`, `quantities` or the token field.
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
  foreach v_field in array array['input_tokens', 'cached_input_tokens', 'output_tokens'] loop
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

-- x rounded to `places` decimal places, halves to the even neighbour:
-- rust_decimal's round_dp.
create or replace function tenancy.round_half_even(x numeric, places integer) returns numeric
language sql immutable
as $$
  select case
    when pg_catalog.abs(x * 10::numeric ^ places - pg_catalog.trunc(x * 10::numeric ^ places)) = 0.5
         and pg_catalog.mod(pg_catalog.trunc(x * 10::numeric ^ places), 2) = 0
      then pg_catalog.trunc(x, places)
    else pg_catalog.round(x, places)
  end
$$;

-- How close `projected` usage is to `value`: exceeded past it; warning at
-- or past `warn_percent` of it (and above zero); else ok. level_of.
create or replace function tenancy.limit_level(projected numeric, value numeric, warn_percent numeric)
returns text
language sql immutable
as $$
  select case
    when projected > value then 'exceeded'
    when projected <> 0 and projected * 100 >= value * warn_percent then 'warning'
    else 'ok'
  end
$$;

-- `consumed` as a percentage of `value`, at most 1000000, rounded to two
-- places (halves to even); null for a zero limit. percent_of.
create or replace function tenancy.limit_percent(consumed numeric, value numeric) returns numeric
language sql immutable
as $$
  select case when value = 0 then null
    else pg_catalog.trim_scale(tenancy.round_half_even(least(consumed * 100 / value, 1000000), 2))
  end
$$;

-- The decision on `requested` more of `metric` against `limits` (the
-- snapshot's LimitUsage entries, in their order): allowed iff it fits under
-- every hard limit; the tightest limit (among those that deny, if any)
-- decides and its figures are reported: least headroom, then hard before
-- soft, then daily before monthly, then the first. LimitDecision, as
-- `decide` makes it.
create or replace function tenancy.decide(
  limits jsonb, metric text, requested numeric, tz text, warn_percent numeric default 80
) returns jsonb
language plpgsql stable
set search_path = ''
as $$
begin
  return (
    with entries as (
      select e.n, e.entry,
        (e.entry #>> '{limit,value}')::numeric as value,
        (e.entry ->> 'used')::numeric as used,
        (e.entry ->> 'reserved')::numeric as reserved,
        e.entry #>> '{limit,mode}' as mode,
        e.entry #>> '{limit,period}' as period,
        (e.entry #>> '{period,start}')::date as period_start
      from pg_catalog.jsonb_array_elements(decide.limits) with ordinality e (entry, n)
    ),
    judged as (
      select x.*, x.value - x.used - x.reserved as headroom,
        x.mode = 'hard' and x.used + x.reserved + decide.requested > x.value as denies
      from entries x
    ),
    verdict as (
      select not coalesce(pg_catalog.bool_or(j.denies), false) as allowed from judged j
    ),
    deciding as (
      select j.* from judged j, verdict v
      where v.allowed or j.denies
      order by j.headroom, j.mode = 'soft', j.period, j.n
      limit 1
    )
    select coalesce(
      (select pg_catalog.jsonb_build_object(
          'allowed', v.allowed,
          'metric', decide.metric,
          'requested', pg_catalog.trim_scale(decide.requested)::text,
          'used', d.used::text,
          'reserved', d.reserved::text,
          'limit', d.value::text,
          'remaining', greatest(d.headroom, 0)::text,
          'resets_at', tenancy.period_resets_at(d.period, d.period_start, decide.tz),
          'level', tenancy.limit_level(d.used + d.reserved + decide.requested, d.value, decide.warn_percent),
          'decided_by', pg_catalog.jsonb_build_object(
            'id', d.entry #> '{limit,id}',
            'scope', d.entry #> '{limit,scope}',
            'period', d.period,
            'mode', d.mode))
       from deciding d, verdict v),
      pg_catalog.jsonb_build_object(
        'allowed', true, 'metric', decide.metric,
        'requested', pg_catalog.trim_scale(decide.requested)::text,
        'used', '0', 'reserved', '0', 'limit', null, 'remaining', null,
        'resets_at', null, 'level', 'ok', 'decided_by', null))
  );
end
$$;

-- The usage-vs-limits lines of a snapshot ({limits, counters}): one per
-- limit, then one per counter no limit covers, ordered by metric (byte
-- order), period, then scope (org-wide first, users by id). UsageLine, as
-- usage_lines makes it.
create or replace function tenancy.usage_lines(snapshot jsonb, tz text, warn_percent numeric default 80)
returns jsonb
language plpgsql stable
set search_path = ''
as $$
begin
  return (
    with limited as (
      select e.entry #>> '{limit,metric}' as metric,
        e.entry #>> '{limit,period}' as period,
        e.entry #> '{limit,scope}' as scope,
        (e.entry ->> 'used')::numeric as used,
        (e.entry ->> 'reserved')::numeric as reserved,
        (e.entry #>> '{limit,value}')::numeric as value,
        e.entry #>> '{limit,mode}' as mode,
        (e.entry #>> '{period,start}')::date as period_start
      from pg_catalog.jsonb_array_elements(usage_lines.snapshot -> 'limits') e (entry)
    ),
    unlimited as (
      select c.entry ->> 'metric' as metric,
        c.entry #>> '{period,period}' as period,
        c.entry -> 'scope' as scope,
        (c.entry ->> 'used')::numeric as used,
        (c.entry ->> 'reserved')::numeric as reserved,
        (c.entry #>> '{period,start}')::date as period_start
      from pg_catalog.jsonb_array_elements(usage_lines.snapshot -> 'counters') c (entry)
      where not exists (
        select 1 from limited l
        where l.metric = c.entry ->> 'metric'
          and l.period = c.entry #>> '{period,period}'
          and l.scope = c.entry -> 'scope')
    ),
    lines as (
      select l.metric, l.period, l.scope, pg_catalog.jsonb_build_object(
          'metric', l.metric, 'period', l.period, 'scope', l.scope,
          'used', l.used::text, 'reserved', l.reserved::text,
          'limit', l.value::text, 'mode', l.mode,
          'remaining', greatest(l.value - l.used - l.reserved, 0)::text,
          'percent', tenancy.limit_percent(l.used + l.reserved, l.value)::text,
          'level', tenancy.limit_level(l.used + l.reserved, l.value, usage_lines.warn_percent),
          'resets_at', tenancy.period_resets_at(l.period, l.period_start, usage_lines.tz)) as line
      from limited l
      union all
      select u.metric, u.period, u.scope, pg_catalog.jsonb_build_object(
          'metric', u.metric, 'period', u.period, 'scope', u.scope,
          'used', u.used::text, 'reserved', u.reserved::text,
          'limit', null, 'mode', null, 'remaining', null, 'percent', null, 'level', 'ok',
          'resets_at', tenancy.period_resets_at(u.period, u.period_start, usage_lines.tz))
      from unlimited u
    )
    select coalesce(pg_catalog.jsonb_agg(x.line order by x.metric collate "C", x.period,
        x.scope ->> 'scope' = 'user', (x.scope ->> 'user_id')::uuid), '[]'::jsonb)
    from lines x
  );
end
$$;

-- ---------------------------------------------------------------------------
-- Arguments and callers.

-- `metric` if it is a metric key (the tenancy.metric_key domain, the one
-- copy of the rule); 22023 naming `field` otherwise.
create or replace function tenancy.checked_metric(field text, metric text) returns text
language plpgsql immutable
set search_path = ''
as $$
begin
  if metric is null then
    raise exception '%: is required', field using errcode = '22023';
  end if;
  begin
    return metric::tenancy.metric_key;
  exception when check_violation then
    raise exception '%: "%" is not a metric: use 1 to 63 lowercase ASCII letters, digits and underscores, starting with a letter',
      field, metric using errcode = '22023';
  end;
end
$$;

-- The id a user JWT's own id `client` stands for, as a hold or an event
-- of `kind` in `org` for `user`: a UUID (version 8, RFC 9562) from
-- SHA-256 of the four, so that the same client id gives the same id
-- (retries stay idempotent) and no user can choose an id the server or
-- another user uses.
create or replace function tenancy.derived_id(kind text, org uuid, p_user uuid, client uuid)
returns uuid
language sql immutable
as $$
  select pg_catalog.encode(
    pg_catalog.set_byte(pg_catalog.set_byte(d, 6, (pg_catalog.get_byte(d, 6) & 15) | 128),
      8, (pg_catalog.get_byte(d, 8) & 63) | 128), 'hex')::uuid
  from (select pg_catalog.substr(pg_catalog.sha256(pg_catalog.convert_to(
      derived_id.kind || ':' || derived_id.org::text || ':' || derived_id.p_user::text || ':'
        || derived_id.client::text, 'UTF8')), 1, 16) as d) x
$$;

-- The organization's time zone; P0002 when there is no such organization.
create or replace function tenancy.org_timezone(org uuid) returns text
language plpgsql stable
set search_path = ''
as $$
declare
  v_tz text;
begin
  if org is null then
    raise exception 'org_id is required' using errcode = '22023';
  end if;
  select o.timezone into v_tz from public.organizations o where o.id = org;
  if not found then
    raise exception 'organization % not found', org using errcode = 'P0002';
  end if;
  return v_tz;
end
$$;

-- The acting user (the JWT's), after checking that it is signed in, is a
-- member of `org` with at least `min_role`, and acts for itself
-- (`for_user` null or its own id); 42501 naming what failed otherwise.
-- Decides by the JWT alone, so it answers the same inside a security
-- definer function.
create or replace function tenancy.require_role(org uuid, for_user uuid, min_role text)
returns uuid
language plpgsql stable
set search_path = ''
as $$
declare
  v_user uuid := (select auth.uid());
  v_role text;
begin
  if v_user is null then
    raise exception 'this needs a signed-in user (a user JWT) or the service role'
      using errcode = '42501';
  end if;
  if org is null then
    raise exception 'org_id is required' using errcode = '22023';
  end if;
  v_role := tenancy.role_in(org);
  if v_role is null then
    raise exception 'not a member of organization %', org using errcode = '42501';
  end if;
  if tenancy.role_rank(v_role) < tenancy.role_rank(min_role) then
    raise exception 'a % of organization % may not do this; it needs the role % or higher',
      v_role, org, min_role using errcode = '42501';
  end if;
  if for_user is not null and for_user <> v_user then
    raise exception 'a user acts only for itself, not for user %', for_user
      using errcode = '42501';
  end if;
  return v_user;
end
$$;

-- ---------------------------------------------------------------------------
-- 2. The entry points' work, for an authorized caller: service_role, or a
-- member_* definer after its checks. Executable by service_role only.

-- The decision on `amount` more of `metric` for `p_user` (null: org-wide
-- limits only) in the current periods.
create or replace function tenancy.check_limit_for(org uuid, p_user uuid, metric text, amount numeric)
returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_tz text := tenancy.org_timezone(org);
  v_metric text := tenancy.checked_metric('metric', metric);
  v_amount numeric := tenancy.checked_amount('amount', coalesce(amount, 0));
  v_now timestamptz := pg_catalog.now();
  v_snapshot jsonb;
begin
  v_snapshot := tenancy.usage_snapshot(org, p_user, v_metric,
    tenancy.period_start('daily', v_now, v_tz), tenancy.period_start('monthly', v_now, v_tz), v_now);
  return tenancy.decide(v_snapshot -> 'limits', v_metric, v_amount, v_tz);
end
$$;

-- Reserves `estimate` of `metric` for `p_user` until now() + ttl_seconds,
-- through tenancy_reserve: {granted, reservation_id, expires_at, decision}.
create or replace function tenancy.reserve_usage_for(
  org uuid, p_user uuid, metric text, estimate numeric, ttl_seconds integer, reservation_id uuid
) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
  v_tz text := tenancy.org_timezone(org);
  v_metric text := tenancy.checked_metric('metric', metric);
  v_amount numeric;
  v_now timestamptz := pg_catalog.now();
  v_id uuid := coalesce(reservation_id, gen_random_uuid());
  v_expires timestamptz;
  v_result jsonb;
  v_decision jsonb;
begin
  v_amount := tenancy.checked_amount('estimate', estimate);
  if p_user is null then
    raise exception 'user_id is required: a reservation is held for a user' using errcode = '22023';
  end if;
  if ttl_seconds is null or ttl_seconds < 1 or ttl_seconds > 604800 then
    raise exception 'ttl_seconds: % is not from 1 to 604800 (7 days)', coalesce(ttl_seconds::text, 'null')
      using errcode = '22023';
  end if;
  v_expires := v_now + pg_catalog.make_interval(secs => ttl_seconds);
  v_result := public.tenancy_reserve(
    org_id => org, user_id => p_user, metric => v_metric, amount => v_amount,
    daily_start => tenancy.period_start('daily', v_now, v_tz),
    monthly_start => tenancy.period_start('monthly', v_now, v_tz),
    now => v_now, expires_at => v_expires, reservation_id => v_id,
    purge_before => v_now - interval '7 days');
  v_decision := tenancy.decide(v_result -> 'limits', v_metric, v_amount, v_tz)
    || pg_catalog.jsonb_build_object('allowed', (v_result ->> 'granted')::boolean);
  if (v_result ->> 'granted')::boolean then
    return pg_catalog.jsonb_build_object('granted', true, 'reservation_id', v_id,
      'expires_at', v_expires, 'decision', v_decision);
  end if;
  return pg_catalog.jsonb_build_object('granted', false, 'reservation_id', null,
    'expires_at', null, 'decision', v_decision);
end
$$;

-- The keys an event may have: UsageEvent's fields, by their column names.
create or replace function tenancy.event_keys() returns text[]
language sql immutable
as $$
  select array['id', 'organization_id', 'user_id', 'provider', 'model', 'operation',
    'input_tokens', 'cached_input_tokens', 'output_tokens', 'quantities', 'cost_usd',
    'occurred_at', 'metadata']
$$;

-- An event as the record RPC takes it (one element of tenancy_record_usage's
-- array): checked as UsageEvent::into_record checks it, with its id (a new
-- one when absent), its time (now() when absent), its amounts, and the
-- periods its time falls in in `tz`. 22023 naming the field otherwise.
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
  v_tokens jsonb := '{}';
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
  foreach v_field in array array['provider', 'model', 'operation'] loop
    if event ? v_field and event -> v_field <> 'null'::jsonb then
      if pg_catalog.jsonb_typeof(event -> v_field) <> 'string' then
        raise exception '%: must be a string', v_field using errcode = '22023';
      end if;
      if pg_catalog.char_length(event ->> v_field) > 128 then
        raise exception '%: longer than 128 characters', v_field using errcode = '22023';
      end if;
    end if;
  end loop;
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
    -- RFC 3339 only: PostgreSQL would also read 'now', 'epoch' or a bare date.
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
  -- Whole numbers as the bigint columns read them (5.0 is 5): each is at
  -- most 10^18 once event_amounts has accepted the sum.
  foreach v_field in array array['input_tokens', 'cached_input_tokens', 'output_tokens'] loop
    if event ? v_field and event -> v_field <> 'null'::jsonb then
      v_tokens := v_tokens || pg_catalog.jsonb_build_object(v_field, (event -> v_field)::numeric::bigint);
    end if;
  end loop;
  return event || v_tokens || pg_catalog.jsonb_build_object(
    'id', v_id,
    'occurred_at', v_at,
    'amounts', v_amounts,
    'daily_start', tenancy.period_start('daily', v_at, tz),
    'monthly_start', tenancy.period_start('monthly', v_at, tz));
end
$$;

-- `events` if it is a JSON array of at most 1000 events; 22023 otherwise.
create or replace function tenancy.checked_events(events jsonb) returns jsonb
language plpgsql immutable
set search_path = ''
as $$
begin
  if events is null or pg_catalog.jsonb_typeof(events) <> 'array' then
    raise exception 'events must be a JSON array of events' using errcode = '22023';
  end if;
  if pg_catalog.jsonb_array_length(events) > 1000 then
    raise exception 'events: % in one call; the most is 1000', pg_catalog.jsonb_array_length(events)
      using errcode = '22023';
  end if;
  return events;
end
$$;

-- Records `events` (a JSON array; each event's user as given), through
-- tenancy_record_usage: {inserted, duplicates, ids}, `ids` in the order of
-- the events. All of them or none.
create or replace function tenancy.record_events_for(events jsonb) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
  v_records jsonb[] := '{}';
  v_event jsonb;
  v_org uuid;
  v_tzs jsonb := '{}';
  v_result jsonb;
begin
  perform tenancy.checked_events(events);
  for v_event in select e from pg_catalog.jsonb_array_elements(events) e loop
    if pg_catalog.jsonb_typeof(v_event) <> 'object' then
      raise exception 'an event must be a JSON object' using errcode = '22023';
    end if;
    begin
      v_org := (v_event ->> 'organization_id')::uuid;
    exception when invalid_text_representation then
      raise exception 'organization_id: % is not a UUID', v_event -> 'organization_id'
        using errcode = '22023';
    end;
    if v_org is null then
      raise exception 'organization_id: every event needs one' using errcode = '22023';
    end if;
    if not v_tzs ? v_org::text then
      v_tzs := v_tzs || pg_catalog.jsonb_build_object(v_org, tenancy.org_timezone(v_org));
    end if;
    v_records := v_records || tenancy.usage_record(v_event, v_tzs ->> v_org::text);
  end loop;
  v_result := public.tenancy_record_usage(pg_catalog.to_jsonb(v_records));
  return v_result || pg_catalog.jsonb_build_object('ids',
    (select coalesce(pg_catalog.jsonb_agg(r -> 'id' order by n), '[]'::jsonb)
     from pg_catalog.unnest(v_records) with ordinality x (r, n)));
end
$$;

-- Commits the hold `reservation_id` of `p_user`, recording `actual` of its
-- metric or `event`, through tenancy_commit_reservation: {released_hold,
-- recorded}. As Tenancy::commit and commit_event.
create or replace function tenancy.commit_usage_for(
  org uuid, p_user uuid, reservation_id uuid, actual numeric, event jsonb
) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
  v_tz text := tenancy.org_timezone(org);
  v_now timestamptz := pg_catalog.now();
  v_hold public.usage_reservations;
  v_has_hold boolean;
  v_event jsonb;
begin
  if reservation_id is null then
    raise exception 'reservation_id is required' using errcode = '22023';
  end if;
  if p_user is null then
    raise exception 'user_id is required: a reservation is held for a user' using errcode = '22023';
  end if;
  if (actual is null) = (event is null or event = 'null'::jsonb) then
    raise exception 'give exactly one of actual (an amount of the reserved metric) and event'
      using errcode = '22023';
  end if;
  -- The user's own hold only: another's is the core function's to refuse.
  select r.* into v_hold from public.usage_reservations r
  where r.organization_id = org and r.id = commit_usage_for.reservation_id
    and r.user_id = p_user;
  v_has_hold := found;
  if v_has_hold and v_hold.expires_at <= v_now - interval '7 days' then
    raise exception 'reservation % expired at %, 7 days or more ago; nothing was recorded',
      commit_usage_for.reservation_id, v_hold.expires_at using errcode = 'P0002';
  end if;
  if actual is not null then
    v_event := pg_catalog.jsonb_build_object('quantities',
      case when v_has_hold then pg_catalog.jsonb_build_object(v_hold.metric, actual) else '{}'::jsonb end);
    -- Checked even when the hold is gone (a retry), as Rust checks it first.
    perform tenancy.checked_amount('actual', actual);
  else
    if pg_catalog.jsonb_typeof(event) <> 'object' then
      raise exception 'event: must be a JSON object' using errcode = '22023';
    end if;
    if event ? 'organization_id' and event ->> 'organization_id' is distinct from org::text then
      raise exception 'organization_id: the event''s organization is not the reservation''s'
        using errcode = '22023';
    end if;
    if event ? 'user_id' and event -> 'user_id' <> 'null'::jsonb
       and event ->> 'user_id' is distinct from p_user::text then
      raise exception 'user_id: the event''s user is not the reservation''s' using errcode = '22023';
    end if;
    if event ? 'id' and event -> 'id' <> 'null'::jsonb
       and event ->> 'id' is distinct from commit_usage_for.reservation_id::text then
      raise exception 'id: a committed event has the reservation''s id' using errcode = '22023';
    end if;
    v_event := event;
  end if;
  v_event := tenancy.usage_record(v_event || pg_catalog.jsonb_build_object(
    'id', commit_usage_for.reservation_id, 'organization_id', org, 'user_id', p_user), v_tz);
  return public.tenancy_commit_reservation(
    org_id => org, user_id => p_user, reservation_id => commit_usage_for.reservation_id,
    event => v_event, now => v_now);
end
$$;

-- Drops the hold through tenancy_release_reservation: {released}.
create or replace function tenancy.release_usage_for(org uuid, p_user uuid, reservation_id uuid)
returns jsonb
language plpgsql volatile
set search_path = ''
as $$
begin
  perform tenancy.org_timezone(org);
  if reservation_id is null then
    raise exception 'reservation_id is required' using errcode = '22023';
  end if;
  if p_user is null then
    raise exception 'user_id is required: a reservation is held for a user' using errcode = '22023';
  end if;
  return public.tenancy_release_reservation(
    org_id => org, user_id => p_user, reservation_id => release_usage_for.reservation_id,
    now => pg_catalog.now());
end
$$;

-- The usage-vs-limits lines of `org` (org-wide, plus `p_user`'s own) in
-- the current periods.
create or replace function tenancy.usage_summary_for(org uuid, p_user uuid) returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_tz text := tenancy.org_timezone(org);
  v_now timestamptz := pg_catalog.now();
begin
  return tenancy.usage_lines(
    tenancy.usage_snapshot(org, p_user, null, tenancy.period_start('daily', v_now, v_tz),
      tenancy.period_start('monthly', v_now, v_tz), v_now),
    v_tz);
end
$$;

-- {key, enabled, config}: config only while enabled (null otherwise),
-- {key, false, null} for a feature never set (a key no feature can have
-- included).
create or replace function tenancy.feature_for(org uuid, feature_key text) returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_feature public.org_features;
begin
  perform tenancy.org_timezone(org);
  if feature_key is null then
    raise exception 'feature_key: is required' using errcode = '22023';
  end if;
  select f.* into v_feature from public.org_features f
  where f.organization_id = org and f.feature_key = feature_for.feature_key;
  return pg_catalog.jsonb_build_object(
    'key', feature_key,
    'enabled', coalesce(v_feature.enabled, false),
    'config', case when v_feature.enabled then v_feature.config end);
end
$$;

-- ---------------------------------------------------------------------------
-- The same for a user JWT: security definer, the checks first. Executable
-- by authenticated only.

create or replace function tenancy.member_check_limit(org uuid, for_user uuid, metric text, amount numeric)
returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
begin
  return tenancy.check_limit_for(org, tenancy.require_role(org, for_user, 'viewer'), metric, amount);
end
$$;

create or replace function tenancy.member_reserve_usage(
  org uuid, for_user uuid, metric text, estimate numeric, ttl_seconds integer, reservation_id uuid
) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_user uuid := tenancy.require_role(org, for_user, 'member');
  v_result jsonb;
begin
  v_result := tenancy.reserve_usage_for(org, v_user, metric, estimate, ttl_seconds,
    case when reservation_id is not null
      then tenancy.derived_id('hold', org, v_user, reservation_id) end);
  if (v_result ->> 'granted')::boolean then
    update public.usage_reservations r set user_settles = true
    where r.organization_id = org and r.id = (v_result ->> 'reservation_id')::uuid;
  end if;
  return v_result;
end
$$;

-- 42501 unless the hold `reservation_id` of `org`, when it exists for
-- `p_user`, is one the user took itself (user_settles).
create or replace function tenancy.require_own_hold(org uuid, p_user uuid, reservation_id uuid)
returns void
language plpgsql stable
set search_path = ''
as $$
begin
  if exists (
    select 1 from public.usage_reservations r
    where r.organization_id = org and r.id = require_own_hold.reservation_id
      and r.user_id = p_user and not r.user_settles
  ) then
    raise exception 'reservation % was taken for user % by the server; only the server commits or releases it',
      require_own_hold.reservation_id, p_user using errcode = '42501';
  end if;
end
$$;

create or replace function tenancy.member_commit_usage(
  org uuid, for_user uuid, reservation_id uuid, actual numeric, event jsonb
) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_user uuid := tenancy.require_role(org, for_user, 'viewer');
begin
  perform tenancy.require_own_hold(org, v_user, reservation_id);
  return tenancy.commit_usage_for(org, v_user, reservation_id, actual, event);
end
$$;

create or replace function tenancy.member_release_usage(org uuid, for_user uuid, reservation_id uuid)
returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_user uuid := tenancy.require_role(org, for_user, 'viewer');
begin
  perform tenancy.require_own_hold(org, v_user, reservation_id);
  return tenancy.release_usage_for(org, v_user, reservation_id);
end
$$;

-- Every event for the caller itself (its user_id null or the caller's,
-- then set to the caller), in organizations where it may consume.
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
begin
  perform tenancy.checked_events(events);
  for v_event in select e from pg_catalog.jsonb_array_elements(events) e loop
    if pg_catalog.jsonb_typeof(v_event) <> 'object' then
      raise exception 'an event must be a JSON object' using errcode = '22023';
    end if;
    begin
      v_org := (v_event ->> 'organization_id')::uuid;
      v_user := (v_event ->> 'user_id')::uuid;
      v_id := (v_event ->> 'id')::uuid;
    exception when invalid_text_representation then
      raise exception 'id, organization_id and user_id must be UUIDs' using errcode = '22023';
    end;
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

create or replace function tenancy.member_usage_summary(org uuid, for_user uuid) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
begin
  return tenancy.usage_summary_for(org, tenancy.require_role(org, for_user, 'viewer'));
end
$$;

create or replace function tenancy.member_feature(org uuid, feature_key text) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
begin
  perform tenancy.require_role(org, null, 'viewer');
  return tenancy.feature_for(org, feature_key);
end
$$;

-- ---------------------------------------------------------------------------
-- The entry points. Each runs the service path for a caller that bypasses
-- RLS and the member path for anyone else (is_privileged inline, as in
-- tenancy_usage_snapshot: the service role then skips a function call).

create or replace function public.tenancy_check_limit(
  org_id uuid, metric text, amount numeric default 0, user_id uuid default null
) returns jsonb
language plpgsql stable
set search_path = ''
as $$
begin
  if tenancy.is_privileged() then
    return tenancy.check_limit_for(org_id, user_id, metric, amount);
  end if;
  return tenancy.member_check_limit(org_id, user_id, metric, amount);
end
$$;

create or replace function public.tenancy_reserve_usage(
  org_id uuid, metric text, estimate numeric, ttl_seconds integer default 600,
  user_id uuid default null, reservation_id uuid default null
) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
begin
  if tenancy.is_privileged() then
    return tenancy.reserve_usage_for(org_id, user_id, metric, estimate, ttl_seconds, reservation_id);
  end if;
  return tenancy.member_reserve_usage(org_id, user_id, metric, estimate, ttl_seconds, reservation_id);
end
$$;

create or replace function public.tenancy_commit_usage(
  org_id uuid, reservation_id uuid, actual numeric default null, event jsonb default null,
  user_id uuid default null
) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
begin
  if tenancy.is_privileged() then
    return tenancy.commit_usage_for(org_id, user_id, reservation_id, actual, event);
  end if;
  return tenancy.member_commit_usage(org_id, user_id, reservation_id, actual, event);
end
$$;

create or replace function public.tenancy_release_usage(
  org_id uuid, reservation_id uuid, user_id uuid default null
) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
begin
  if tenancy.is_privileged() then
    return tenancy.release_usage_for(org_id, user_id, reservation_id);
  end if;
  return tenancy.member_release_usage(org_id, user_id, reservation_id);
end
$$;

-- One unnamed argument: PostgREST passes the request body (the events) to
-- it as it is.
create or replace function public.tenancy_record_events(jsonb) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
begin
  if tenancy.is_privileged() then
    return tenancy.record_events_for($1);
  end if;
  return tenancy.member_record_events($1);
end
$$;

-- One event: the request body is the event object.
create or replace function public.tenancy_record_event(jsonb) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
begin
  if $1 is null or pg_catalog.jsonb_typeof($1) <> 'object' then
    raise exception 'an event must be a JSON object' using errcode = '22023';
  end if;
  return public.tenancy_record_events(pg_catalog.jsonb_build_array($1));
end
$$;

create or replace function public.tenancy_usage_summary(org_id uuid, user_id uuid default null)
returns jsonb
language plpgsql stable
set search_path = ''
as $$
begin
  if tenancy.is_privileged() then
    return tenancy.usage_summary_for(org_id, user_id);
  end if;
  return tenancy.member_usage_summary(org_id, user_id);
end
$$;

-- The organizations of `user_id` (a user JWT: itself, the default) with
-- its role: [OrgMembership] in Tenancy::orgs_for_user's order.
create or replace function public.tenancy_user_organizations(user_id uuid default null)
returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_user uuid := tenancy_user_organizations.user_id;
begin
  if not tenancy.is_privileged() then
    if (select auth.uid()) is null then
      raise exception 'this needs a signed-in user (a user JWT) or the service role'
        using errcode = '42501';
    end if;
    if v_user is not null and v_user <> (select auth.uid()) then
      raise exception 'a user reads only its own organizations, not user %''s', v_user
        using errcode = '42501';
    end if;
    v_user := (select auth.uid());
  elsif v_user is null then
    raise exception 'user_id is required with the service role' using errcode = '22023';
  end if;
  -- The default first (default_membership: joined first; a tie goes to
  -- the higher role, then the lower id), then by join time and id.
  return (
    select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
        'organization', tenancy.organization_json(o),
        'role', m.role,
        'joined_at', m.created_at
      ) order by m.rank <> 1, m.created_at, m.organization_id), '[]'::jsonb)
    from (
      select u.*, pg_catalog.row_number() over (
          order by u.created_at, tenancy.role_rank(u.role) desc, u.organization_id) as rank
      from public.user_organizations u
      where u.user_id = v_user
    ) m
    join public.organizations o on o.id = m.organization_id);
end
$$;

create or replace function public.tenancy_feature(org_id uuid, feature_key text) returns jsonb
language plpgsql stable
set search_path = ''
as $$
begin
  if tenancy.is_privileged() then
    return tenancy.feature_for(org_id, feature_key);
  end if;
  return tenancy.member_feature(org_id, feature_key);
end
$$;

-- ---------------------------------------------------------------------------
-- 3. For host tables.

-- Whether `amount` more of `metric` fits now under every hard limit of
-- `org` that applies to the caller: the org-wide ones, and with a user JWT
-- its own; usage recorded and committed before the calling statement
-- began, plus unexpired holds, count. False for an organization the JWT's
-- user is not a member of, or that does not exist. For RLS policies
-- (`with check (tenancy.within_limit(organization_id, 'ads_created'))`):
-- a check, not a reservation (migrations/README.md says what it
-- guarantees under concurrency).
create or replace function tenancy.within_limit(org uuid, metric text, amount numeric default 1)
returns boolean
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_user uuid := (select auth.uid());
  v_tz text;
  v_now timestamptz := pg_catalog.now();
begin
  perform tenancy.checked_metric('metric', metric);
  perform tenancy.checked_amount('amount', amount);
  if v_user is not null and not tenancy.is_member(org) then
    return false;
  end if;
  select o.timezone into v_tz from public.organizations o where o.id = org;
  if not found then
    return false;
  end if;
  return coalesce((
    select pg_catalog.bool_and(u.mode = 'soft' or u.used + u.reserved + amount <= u.limit_value)
    from tenancy.limit_usage(org, v_user, metric, tenancy.period_start('daily', v_now, v_tz),
      tenancy.period_start('monthly', v_now, v_tz), v_now) u
  ), true);
end
$$;

-- A trigger function: records, for each inserted row, usage of the
-- trigger's first argument (a metric) by its second (an amount, 1 when
-- absent) in the row's organization_id, for the JWT's user (org-wide only
-- without one), in the same transaction as the row:
--   create trigger ads_count_usage after insert on public.ads
--     for each row execute function tenancy.count_usage('ads_created');
-- A user JWT must be able to consume in that organization (42501).
create or replace function tenancy.count_usage() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_org uuid := (pg_catalog.to_jsonb(new) ->> 'organization_id')::uuid;
  v_user uuid := (select auth.uid());
  v_metric text := tenancy.checked_metric('count_usage''s first argument', tg_argv[0]);
  v_amount text := coalesce(tg_argv[1], '1');
begin
  if tg_op <> 'INSERT' or tg_level <> 'ROW' then
    raise exception 'tenancy.count_usage runs for each inserted row' using errcode = '22023';
  end if;
  if v_user is not null then
    perform tenancy.require_role(v_org, null, 'member');
  elsif coalesce(nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb ->> 'role',
                 'service_role') <> 'service_role' then
    -- No user: the service role, or a direct connection without claims
    -- (a migration, the library's service mode). Never anon: it could
    -- charge any organization by naming it in a row.
    raise exception 'counting usage for an inserted row needs a signed-in user or the service role'
      using errcode = '42501';
  end if;
  perform tenancy.record_events_for(pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
    'organization_id', v_org,
    'user_id', v_user,
    'quantities', pg_catalog.jsonb_build_object(v_metric, v_amount))));
  return null;
end
$$;

-- ---------------------------------------------------------------------------
-- Who may call what. Supabase grants every new function in public to anon
-- and authenticated, and PostgreSQL every new function to PUBLIC: revoke.

revoke all on function
  tenancy.iana_zone(text),
  tenancy.period_start(text, timestamptz, text),
  tenancy.day_starts_at(date, text),
  tenancy.period_starts_at(text, date, text),
  tenancy.period_resets_at(text, date, text),
  tenancy.json_amount(text, jsonb),
  tenancy.checked_amount(text, numeric),
  tenancy.event_amounts(jsonb),
  tenancy.round_half_even(numeric, integer),
  tenancy.limit_level(numeric, numeric, numeric),
  tenancy.limit_percent(numeric, numeric),
  tenancy.decide(jsonb, text, numeric, text, numeric),
  tenancy.usage_lines(jsonb, text, numeric),
  tenancy.checked_metric(text, text),
  tenancy.org_timezone(uuid),
  tenancy.require_role(uuid, uuid, text),
  tenancy.derived_id(text, uuid, uuid, uuid),
  tenancy.require_own_hold(uuid, uuid, uuid),
  tenancy.checked_events(jsonb),
  tenancy.check_limit_for(uuid, uuid, text, numeric),
  tenancy.reserve_usage_for(uuid, uuid, text, numeric, integer, uuid),
  tenancy.event_keys(),
  tenancy.usage_record(jsonb, text),
  tenancy.record_events_for(jsonb),
  tenancy.commit_usage_for(uuid, uuid, uuid, numeric, jsonb),
  tenancy.release_usage_for(uuid, uuid, uuid),
  tenancy.usage_summary_for(uuid, uuid),
  tenancy.feature_for(uuid, text),
  tenancy.member_check_limit(uuid, uuid, text, numeric),
  tenancy.member_reserve_usage(uuid, uuid, text, numeric, integer, uuid),
  tenancy.member_commit_usage(uuid, uuid, uuid, numeric, jsonb),
  tenancy.member_release_usage(uuid, uuid, uuid),
  tenancy.member_record_events(jsonb),
  tenancy.member_usage_summary(uuid, uuid),
  tenancy.member_feature(uuid, text),
  tenancy.within_limit(uuid, text, numeric),
  tenancy.count_usage(),
  public.tenancy_check_limit(uuid, text, numeric, uuid),
  public.tenancy_reserve_usage(uuid, text, numeric, integer, uuid, uuid),
  public.tenancy_commit_usage(uuid, uuid, numeric, jsonb, uuid),
  public.tenancy_release_usage(uuid, uuid, uuid),
  public.tenancy_record_events(jsonb),
  public.tenancy_record_event(jsonb),
  public.tenancy_usage_summary(uuid, uuid),
  public.tenancy_user_organizations(uuid),
  public.tenancy_feature(uuid, text)
from public, anon, authenticated;

-- The rules, the argument checks and the policy helper: for everyone who
-- may call an entry point.
grant execute on function
  tenancy.iana_zone(text),
  tenancy.period_start(text, timestamptz, text),
  tenancy.day_starts_at(date, text),
  tenancy.period_starts_at(text, date, text),
  tenancy.period_resets_at(text, date, text),
  tenancy.json_amount(text, jsonb),
  tenancy.checked_amount(text, numeric),
  tenancy.event_amounts(jsonb),
  tenancy.round_half_even(numeric, integer),
  tenancy.limit_level(numeric, numeric, numeric),
  tenancy.limit_percent(numeric, numeric),
  tenancy.decide(jsonb, text, numeric, text, numeric),
  tenancy.usage_lines(jsonb, text, numeric),
  tenancy.checked_metric(text, text),
  tenancy.require_role(uuid, uuid, text),
  tenancy.within_limit(uuid, text, numeric)
to authenticated, service_role;

-- The work itself, unchecked: service_role (and the definers, as owner).
grant execute on function
  tenancy.org_timezone(uuid),
  tenancy.derived_id(text, uuid, uuid, uuid),
  tenancy.require_own_hold(uuid, uuid, uuid),
  tenancy.checked_events(jsonb),
  tenancy.check_limit_for(uuid, uuid, text, numeric),
  tenancy.reserve_usage_for(uuid, uuid, text, numeric, integer, uuid),
  tenancy.event_keys(),
  tenancy.usage_record(jsonb, text),
  tenancy.record_events_for(jsonb),
  tenancy.commit_usage_for(uuid, uuid, uuid, numeric, jsonb),
  tenancy.release_usage_for(uuid, uuid, uuid),
  tenancy.usage_summary_for(uuid, uuid),
  tenancy.feature_for(uuid, text)
to service_role;

-- The checked path: user JWTs.
grant execute on function
  tenancy.member_check_limit(uuid, uuid, text, numeric),
  tenancy.member_reserve_usage(uuid, uuid, text, numeric, integer, uuid),
  tenancy.member_commit_usage(uuid, uuid, uuid, numeric, jsonb),
  tenancy.member_release_usage(uuid, uuid, uuid),
  tenancy.member_record_events(jsonb),
  tenancy.member_usage_summary(uuid, uuid),
  tenancy.member_feature(uuid, text)
to authenticated;

grant execute on function
  public.tenancy_check_limit(uuid, text, numeric, uuid),
  public.tenancy_reserve_usage(uuid, text, numeric, integer, uuid, uuid),
  public.tenancy_commit_usage(uuid, uuid, numeric, jsonb, uuid),
  public.tenancy_release_usage(uuid, uuid, uuid),
  public.tenancy_record_events(jsonb),
  public.tenancy_record_event(jsonb),
  public.tenancy_usage_summary(uuid, uuid),
  public.tenancy_user_organizations(uuid),
  public.tenancy_feature(uuid, text)
to authenticated, service_role;

insert into tenancy.schema_migrations (version, name)
values (5, '20261206000400_tenancy_sql_api')
on conflict do nothing;
