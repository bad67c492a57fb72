-- tenancy: short-window rate limits (GCRA). migrations/README.md ("Rate
-- limits") is the contract; tenancy::limits::rate is the algorithm, and the
-- store contract checks these functions against it case by case.
--
-- Tables of their own, not a new period of usage_limits: usage_limits
-- rows are read by every budget path (reserve, snapshots, alerts, the SQL
-- entry points) joined to counters by a period *date*, and a rate limit's
-- state is a single number changed on every request, not a counter per
-- period. Keeping them apart leaves the daily and monthly paths as they
-- were.
--
-- - public.usage_rate_limits: the configuration, one row per (org, scope,
--   metric, window). Members read the org-wide rows and their own, admins
--   and owners all of their organization's (the usage_limits rule); only
--   service_role writes.
-- - tenancy.usage_rate_state: each limit's theoretical arrival time (TAT,
--   µs since the Unix epoch). Out of reach of user JWTs: no grant, RLS on,
--   no policy, and not in an exposed schema.
-- - public.tenancy_acquire_rate: one GCRA decision over every applicable
--   limit, all or nothing, in one round trip. service_role only.
--
-- Idempotent: `if not exists`, `create or replace`, guarded DO blocks.

create table if not exists public.usage_rate_limits (
  id uuid not null default gen_random_uuid(),
  organization_id uuid not null references public.organizations (id) on delete cascade,
  -- null = org-wide
  user_id uuid references auth.users (id) on delete cascade,
  metric tenancy.metric_key not null,
  rate_window text not null
    constraint usage_rate_limits_window_check check (rate_window in ('second', 'minute', 'hour')),
  limit_value numeric not null
    constraint usage_rate_limits_value_check check (limit_value >= 0 and limit_value <= 1e18),
  burst numeric not null
    constraint usage_rate_limits_burst_check check (burst > 0 and burst <= 1e18),
  mode text not null default 'hard'
    constraint usage_rate_limits_mode_check check (mode in ('hard', 'soft')),
  created_at timestamptz not null default now(),
  scope_user_id uuid not null
    generated always as (coalesce(user_id, '00000000-0000-0000-0000-000000000000'::uuid)) stored,
  constraint usage_rate_limits_pkey primary key (organization_id, id),
  constraint usage_rate_limits_slot_key unique (organization_id, scope_user_id, metric, rate_window)
);

create index if not exists usage_rate_limits_user_id_idx on public.usage_rate_limits (user_id);

create table if not exists tenancy.usage_rate_state (
  organization_id uuid not null,
  rate_limit_id uuid not null,
  tat_us bigint not null,
  constraint usage_rate_state_pkey primary key (organization_id, rate_limit_id),
  constraint usage_rate_state_limit_fkey foreign key (organization_id, rate_limit_id)
    references public.usage_rate_limits (organization_id, id) on delete cascade
);

alter table public.usage_rate_limits enable row level security;
alter table tenancy.usage_rate_state enable row level security;

revoke all on table public.usage_rate_limits from public, anon, authenticated;
grant all on table public.usage_rate_limits to service_role;
grant select on table public.usage_rate_limits to authenticated;

revoke all on table tenancy.usage_rate_state from public, anon, authenticated;
grant select, insert, update, delete on table tenancy.usage_rate_state to service_role;

drop policy if exists usage_rate_limits_select on public.usage_rate_limits;
create policy usage_rate_limits_select on public.usage_rate_limits
  for select to authenticated
  using (
    organization_id = any (array(select tenancy.org_ids('admin')))
    or (organization_id = any (array(select tenancy.org_ids('viewer')))
        and (user_id is null or user_id = (select auth.uid()))));

-- ---------------------------------------------------------------------------
-- GCRA, as tenancy::limits::rate. Spans are capped at 10^15 µs
-- (MAX_SPAN_MICROS).

create or replace function tenancy.rate_window_us(p_window text) returns bigint
language sql immutable
set search_path = ''
as $$
  select case p_window when 'second' then 1000000::bigint
                       when 'minute' then 60000000::bigint
                       when 'hour' then 3600000000::bigint end
$$;

-- ceil(amount · W / value) µs; 0 for a zero amount; null (never conforms)
-- for a zero limit or beyond the cap. Exact: div and mod on numeric.
create or replace function tenancy.rate_increment(p_amount numeric, p_window_us bigint, p_value numeric)
returns bigint
language plpgsql immutable
set search_path = ''
as $$
declare
  v_x numeric;
  v_q numeric;
begin
  if p_amount <= 0 then
    return 0;
  end if;
  if p_value = 0 then
    return null;
  end if;
  v_x := p_amount * p_window_us;
  v_q := pg_catalog.div(v_x, p_value) + case when pg_catalog.mod(v_x, p_value) = 0 then 0 else 1 end;
  if v_q > 1000000000000000 then
    return null;
  end if;
  return v_q::bigint;
end
$$;

-- floor(burst · W / value) µs, at most the cap; 0 for a zero limit.
create or replace function tenancy.rate_tolerance(p_burst numeric, p_window_us bigint, p_value numeric)
returns bigint
language sql immutable
set search_path = ''
as $$
  select case when p_value = 0 then 0::bigint
    else least(pg_catalog.div(p_burst * p_window_us, p_value), 1000000000000000)::bigint end
$$;

-- A limit as tenancy::limits::rate::RateLimit serializes.
create or replace function tenancy.rate_limit_json(l public.usage_rate_limits) returns jsonb
language sql stable
set search_path = ''
as $$
  select pg_catalog.jsonb_build_object(
    'id', l.id,
    'org', l.organization_id,
    'scope', case when l.user_id is null then pg_catalog.jsonb_build_object('scope', 'organization')
             else pg_catalog.jsonb_build_object('scope', 'user', 'user_id', l.user_id) end,
    'metric', l.metric,
    'window', l.rate_window,
    'value', l.limit_value::text,
    'burst', l.burst::text,
    'mode', l.mode,
    'created_at', l.created_at)
$$;

-- ---------------------------------------------------------------------------
-- Configuration

-- tenancy_rate_limits(org_id) -> [{limit, tat}], by created_at then id.
-- The service role reads every limit with its state; a user JWT reads the
-- rows RLS shows it (org-wide and its own; all of them for admins), with
-- tat null: the state is never shown to users.
create or replace function public.tenancy_rate_limits(org_id uuid) returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_out jsonb;
begin
  if tenancy.is_privileged() then
    select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
        'limit', tenancy.rate_limit_json(l), 'tat', s.tat_us) order by l.created_at, l.id), '[]')
      into v_out
    from public.usage_rate_limits l
    left join tenancy.usage_rate_state s
      on s.organization_id = l.organization_id and s.rate_limit_id = l.id
    where l.organization_id = tenancy_rate_limits.org_id;
  else
    select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
        'limit', tenancy.rate_limit_json(l), 'tat', null) order by l.created_at, l.id), '[]')
      into v_out
    from public.usage_rate_limits l
    where l.organization_id = tenancy_rate_limits.org_id;
  end if;
  return v_out;
end
$$;

-- tenancy_put_rate_limit(limit_id, org_id, metric, rate_window,
-- limit_value, burst, mode, created_at, user_id?) -> RateLimit. Replaces the limit in the same
-- slot in place (id, created_at and state stay). P0002 for an unknown
-- organization.
create or replace function public.tenancy_put_rate_limit(
  limit_id uuid, org_id uuid, metric text, rate_window text, limit_value numeric,
  burst numeric, mode text, created_at timestamptz, user_id uuid default null
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
    (id, organization_id, user_id, metric, rate_window, limit_value, burst, mode, created_at)
  values (tenancy_put_rate_limit.limit_id, tenancy_put_rate_limit.org_id,
          tenancy_put_rate_limit.user_id, tenancy_put_rate_limit.metric,
          tenancy_put_rate_limit.rate_window, tenancy_put_rate_limit.limit_value,
          tenancy_put_rate_limit.burst, tenancy_put_rate_limit.mode,
          tenancy_put_rate_limit.created_at)
  on conflict on constraint usage_rate_limits_slot_key do update
    set limit_value = excluded.limit_value, burst = excluded.burst, mode = excluded.mode
  returning * into v_row;
  return tenancy.rate_limit_json(v_row);
end
$$;

-- tenancy_delete_rate_limit(org_id, limit_id) -> {deleted}; its state goes
-- with it.
create or replace function public.tenancy_delete_rate_limit(org_id uuid, limit_id uuid)
returns jsonb
language plpgsql
set search_path = ''
as $$
begin
  delete from public.usage_rate_limits l
  where l.organization_id = tenancy_delete_rate_limit.org_id
    and l.id = tenancy_delete_rate_limit.limit_id;
  return pg_catalog.jsonb_build_object('deleted', found);
end
$$;

-- ---------------------------------------------------------------------------
-- The decision

-- tenancy_acquire_rate(org_id, user_id, charges [[metric, amount], …],
-- now_us, action 'check' | 'acquire' | 'refund') -> {granted, limits:
-- [{limit, tat}]}: tenancy::limits::rate::apply over every limit of the
-- organization that applies to the user (org-wide or theirs) on a charged
-- metric, with `tat` as it was before the call, ordered by id. An acquire
-- or refund locks those limits' rows in id order first, so concurrent
-- decisions on a limit run one after the other and two decisions never
-- wait on each other in a cycle. An acquire writes only if every hard
-- limit conforms.
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

  if tenancy_acquire_rate.action <> 'check' then
    perform 1 from public.usage_rate_limits l
    where l.organization_id = tenancy_acquire_rate.org_id
      and (l.user_id is null or l.user_id = tenancy_acquire_rate.user_id)
      and l.metric::text in (
        select c ->> 0 from pg_catalog.jsonb_array_elements(tenancy_acquire_rate.charges) c)
    order by l.id
    for no key update of l;
  end if;

  for r in
    with c as (
      select e ->> 0 as metric, sum((e ->> 1)::numeric) as amount
      from pg_catalog.jsonb_array_elements(tenancy_acquire_rate.charges) e
      group by 1
    )
    select l, c.amount, s.tat_us
    from public.usage_rate_limits l
    join c on c.metric = l.metric::text
    left join tenancy.usage_rate_state s
      on s.organization_id = l.organization_id and s.rate_limit_id = l.id
    where l.organization_id = tenancy_acquire_rate.org_id
      and (l.user_id is null or l.user_id = tenancy_acquire_rate.user_id)
    order by l.id
  loop
    v_window := tenancy.rate_window_us((r.l).rate_window);
    v_inc := tenancy.rate_increment(r.amount, v_window, (r.l).limit_value);
    v_tol := tenancy.rate_tolerance((r.l).burst, v_window, (r.l).limit_value);
    v_start := greatest(coalesce(r.tat_us, tenancy_acquire_rate.now_us), tenancy_acquire_rate.now_us);
    v_conforms := v_inc is not null and v_inc <= v_tol
      and v_start + v_inc - tenancy_acquire_rate.now_us <= v_tol;
    if not v_conforms and (r.l).mode = 'hard' then
      v_granted := false;
    end if;
    if tenancy_acquire_rate.action = 'refund' then
      v_new := case when r.tat_us is null or v_inc is null then null
                    else greatest(r.tat_us - v_inc, tenancy_acquire_rate.now_us) end;
    else
      v_new := v_start + v_inc;
    end if;
    v_ids := v_ids || (r.l).id;
    v_tats := v_tats || v_new;
    v_limits := v_limits || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
      'limit', tenancy.rate_limit_json(r.l), 'tat', r.tat_us));
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
-- Who may call what. Supabase grants every new function in public to anon
-- and authenticated, and PostgreSQL every new function to PUBLIC: revoke.

revoke all on function
  tenancy.rate_window_us(text),
  tenancy.rate_increment(numeric, bigint, numeric),
  tenancy.rate_tolerance(numeric, bigint, numeric),
  tenancy.rate_limit_json(public.usage_rate_limits),
  public.tenancy_rate_limits(uuid),
  public.tenancy_put_rate_limit(uuid, uuid, text, text, numeric, numeric, text, timestamptz, uuid),
  public.tenancy_delete_rate_limit(uuid, uuid),
  public.tenancy_acquire_rate(uuid, uuid, jsonb, bigint, text)
from public, anon, authenticated;

grant execute on function
  tenancy.rate_window_us(text),
  tenancy.rate_increment(numeric, bigint, numeric),
  tenancy.rate_tolerance(numeric, bigint, numeric),
  tenancy.rate_limit_json(public.usage_rate_limits),
  public.tenancy_rate_limits(uuid),
  public.tenancy_put_rate_limit(uuid, uuid, text, text, numeric, numeric, text, timestamptz, uuid),
  public.tenancy_delete_rate_limit(uuid, uuid),
  public.tenancy_acquire_rate(uuid, uuid, jsonb, bigint, text)
to service_role;

-- User JWTs read the configuration RLS shows them, never the state.
grant execute on function
  tenancy.rate_limit_json(public.usage_rate_limits),
  public.tenancy_rate_limits(uuid)
to authenticated;

-- Every change to a rate limit is an audit event, as a budget limit's is
-- (the row trigger of 20261206000900_tenancy_audit_log.sql).
drop trigger if exists audit_log on public.usage_rate_limits;
create trigger audit_log after insert or update or delete on public.usage_rate_limits
  for each row execute function tenancy.audit_row('rate_limit', 'id', 'organization_id');

insert into tenancy.schema_migrations (version, name)
values (11, '20261206001000_tenancy_rate_limits')
on conflict do nothing;
