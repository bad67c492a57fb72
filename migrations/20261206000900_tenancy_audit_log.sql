-- tenancy: the audit log, written by triggers with every change.
-- migrations/README.md ("The audit log") is the contract.
--
-- public.audit_events holds one row per change to an organization, a
-- membership, a feature row, a limit, an invitation or a verified domain:
-- who acted (a user, an operator by name, or the service), the action and
-- its target, the row before and after as JSON, the time, and the request
-- id the host passed. The row trigger tenancy.audit_row() writes it, after
-- the change, in the same transaction: whatever writes the table (a store
-- function, a security definer, a user JWT writing through PostgREST, the
-- SQL editor) leaves a trace, and a change that rolls back leaves none.
--
-- Metering (usage_events, usage_counters, usage_reservations,
-- usage_alerts) is not audited: it changes on every recorded call, and it
-- has its own log (usage_events) and reconciliation against it.
--
-- Who acted, tenancy.audit_actor():
--   * a user JWT (`request.jwt.claims` with a role other than service_role):
--     the JWT's user, auth.uid(); anything the request says about its actor
--     is ignored, so nobody poses as someone else;
--   * service_role, or a connection without claims (PgStore's service mode,
--     the SQL editor): the actor the caller names in `request.headers`
--     (`x-tenancy-actor`, JSON: {"kind": "user", "user_id": …},
--     {"kind": "operator", "name": …} or {"kind": "service", "name": …}),
--     else the service. PostgREST puts the HTTP request's headers there;
--     PgStore sets the setting itself, in the call's statement. A header
--     that names no actor fails the write (22P02, 22023).
--   * the request id: `x-tenancy-request-id` from any caller (a correlation
--     id, not an identity), at most 200 characters.
--
-- Immutable: authenticated may only read (its admin and owner rows, by
-- RLS), service_role may read everything; nobody but the table's owner
-- holds INSERT, UPDATE or DELETE, and a trigger refuses every UPDATE,
-- every TRUNCATE and every DELETE except the retention function's
-- (public.tenancy_prune_audit_log), which never deletes rows younger than
-- tenancy.audit_min_retention().
--
-- Later migrations attach tenancy.audit_row(<entity>, <target column>
-- [, <organization column>]) to their own tables:
--
--   create trigger audit_log after insert or update or delete on public.<table>
--     for each row execute function tenancy.audit_row('<entity>', '<target column>');
--
-- Idempotent: `if not exists`, `create or replace`, guarded triggers.

create table if not exists public.audit_events (
  organization_id uuid not null,
  id bigint generated always as identity,
  -- user | operator | service
  actor_kind text not null
    constraint audit_events_actor_kind_check check (actor_kind in ('user', 'operator', 'service')),
  -- The acting user for `user` (no foreign key: the trail outlives users).
  actor_user_id uuid,
  -- The operator's name for `operator`; the service's, when it gave one.
  actor_name text
    constraint audit_events_actor_name_check check (char_length(actor_name) <= 200),
  -- <entity>.<created|updated|deleted>
  action text not null,
  -- The changed row's key within the organization (a user id, a feature key, …).
  target text,
  before jsonb,
  after jsonb,
  request_id text
    constraint audit_events_request_id_check check (char_length(request_id) <= 200),
  at timestamptz not null default now(),
  constraint audit_events_pkey primary key (organization_id, id),
  constraint audit_events_actor_check
    check ((actor_kind = 'user') = (actor_user_id is not null))
);

-- An organization's pages (keyset: at desc, id desc), and the operator's.
create index if not exists audit_events_org_at_idx
  on public.audit_events (organization_id, at desc, id desc);
create index if not exists audit_events_at_idx
  on public.audit_events (at desc, id desc);

-- ---------------------------------------------------------------------------
-- Who acted: {kind, user_id, name, request_id}; see the top of this file.

create or replace function tenancy.audit_actor() returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_claims jsonb := nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb;
  v_headers jsonb := nullif(pg_catalog.current_setting('request.headers', true), '')::jsonb;
  v_named jsonb;
  v_request text;
  v_user uuid;
begin
  v_request := pg_catalog.left(nullif(pg_catalog.btrim(v_headers ->> 'x-tenancy-request-id'), ''), 200);
  if coalesce(v_claims ->> 'role', 'service_role') <> 'service_role' then
    -- A user JWT: the JWT's user, whatever the request says.
    v_user := (select auth.uid());
    if v_user is not null then
      return pg_catalog.jsonb_build_object('kind', 'user', 'user_id', v_user, 'request_id', v_request);
    end if;
    return pg_catalog.jsonb_build_object('kind', 'service', 'name', v_claims ->> 'role',
      'request_id', v_request);
  end if;
  -- The service role names the actor. A header that is not the JSON of
  -- one fails the write (22P02 or 22023): the service's own mistake,
  -- never recorded as someone else.
  v_named := (v_headers ->> 'x-tenancy-actor')::jsonb;
  if v_named is null then
    return pg_catalog.jsonb_build_object('kind', 'service', 'request_id', v_request);
  end if;
  case v_named ->> 'kind'
    when 'user' then
      return pg_catalog.jsonb_build_object('kind', 'user',
        'user_id', (v_named ->> 'user_id')::uuid, 'request_id', v_request);
    when 'operator', 'service' then
      return pg_catalog.jsonb_build_object('kind', v_named ->> 'kind',
        'name', pg_catalog.left(nullif(pg_catalog.btrim(v_named ->> 'name'), ''), 200),
        'request_id', v_request);
    else
      raise exception 'x-tenancy-actor: % names no actor (user, operator or service)', v_named
        using errcode = '22023';
  end case;
end
$$;

-- ---------------------------------------------------------------------------
-- The row trigger: tenancy.audit_row(entity, target column [, organization
-- column, default organization_id]). One event per changed row; an UPDATE
-- that changes nothing writes none. A column named token_hash never reaches
-- the log. Security definer: a user JWT writing a table directly holds no
-- privilege on public.audit_events.

create or replace function tenancy.audit_row() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_entity text := tg_argv[0];
  v_target_column text := tg_argv[1];
  v_org_column text := coalesce(tg_argv[2], 'organization_id');
  v_before jsonb;
  v_after jsonb;
  v_row jsonb;
  v_actor jsonb;
  v_verb text;
begin
  if tg_op in ('UPDATE', 'DELETE') then
    v_before := pg_catalog.to_jsonb(old) - 'token_hash';
  end if;
  if tg_op in ('INSERT', 'UPDATE') then
    v_after := pg_catalog.to_jsonb(new) - 'token_hash';
  end if;
  if tg_op = 'UPDATE' and v_before = v_after then
    return null;
  end if;
  v_row := coalesce(v_after, v_before);
  v_verb := case tg_op when 'INSERT' then 'created' when 'UPDATE' then 'updated' else 'deleted' end;
  v_actor := tenancy.audit_actor();
  insert into public.audit_events
    (organization_id, actor_kind, actor_user_id, actor_name, action, target, before, after,
     request_id)
  values (
    (v_row ->> v_org_column)::uuid,
    v_actor ->> 'kind',
    (v_actor ->> 'user_id')::uuid,
    v_actor ->> 'name',
    v_entity || '.' || v_verb,
    v_row ->> v_target_column,
    v_before,
    v_after,
    v_actor ->> 'request_id');
  return null;
end
$$;

-- Attach the trigger to the audited tables that exist.
do $$
declare
  v_table record;
begin
  for v_table in
    select * from (values
      ('organizations', 'organization', 'id', 'id'),
      ('user_organizations', 'member', 'user_id', 'organization_id'),
      ('org_features', 'feature', 'feature_key', 'organization_id'),
      ('usage_limits', 'limit', 'id', 'organization_id'),
      ('org_invitations', 'invitation', 'id', 'organization_id'),
      ('org_domains', 'domain', 'domain', 'organization_id')
    ) t (name, entity, target, org_column)
  loop
    continue when pg_catalog.to_regclass('public.' || v_table.name) is null;
    execute pg_catalog.format('drop trigger if exists audit_log on public.%I', v_table.name);
    execute pg_catalog.format(
      'create trigger audit_log after insert or update or delete on public.%I '
      'for each row execute function tenancy.audit_row(%L, %L, %L)',
      v_table.name, v_table.entity, v_table.target, v_table.org_column);
  end loop;
end
$$;

-- ---------------------------------------------------------------------------
-- Immutable: no UPDATE, no TRUNCATE, no DELETE but the retention function's.

-- The youngest an event may be when it is pruned.
create or replace function tenancy.audit_min_retention() returns interval
language sql immutable
set search_path = ''
as $$
  select interval '30 days'
$$;

create or replace function tenancy.audit_events_immutable() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op = 'DELETE' and pg_catalog.current_setting('tenancy.audit_prune', true) = 'on' then
    if old.at < pg_catalog.now() - tenancy.audit_min_retention() then
      return old;
    end if;
  end if;
  raise exception 'audit events cannot be %: they are pruned only by public.tenancy_prune_audit_log',
    case tg_op when 'UPDATE' then 'changed' when 'DELETE' then 'deleted' else 'truncated' end
    using errcode = '42501';
end
$$;

drop trigger if exists audit_events_immutable on public.audit_events;
create trigger audit_events_immutable
  before update or delete on public.audit_events
  for each row execute function tenancy.audit_events_immutable();

drop trigger if exists audit_events_no_truncate on public.audit_events;
create trigger audit_events_no_truncate
  before truncate on public.audit_events
  for each statement execute function tenancy.audit_events_immutable();

-- The work of public.tenancy_prune_audit_log, for service_role.
create or replace function tenancy.prune_audit_log_for(older_than interval) returns jsonb
language plpgsql security definer
set search_path = ''
as $$
declare
  v_cutoff timestamptz;
  v_deleted bigint;
begin
  if older_than is null or older_than < tenancy.audit_min_retention() then
    raise exception 'older_than: % is younger than the audit log''s minimum retention, %',
      coalesce(older_than::text, 'null'), tenancy.audit_min_retention()
      using errcode = '22023';
  end if;
  v_cutoff := pg_catalog.now() - older_than;
  perform pg_catalog.set_config('tenancy.audit_prune', 'on', true);
  delete from public.audit_events e where e.at < v_cutoff;
  get diagnostics v_deleted = row_count;
  perform pg_catalog.set_config('tenancy.audit_prune', 'off', true);
  return pg_catalog.jsonb_build_object('deleted', v_deleted, 'cutoff', v_cutoff);
end
$$;

-- {deleted, cutoff}: deletes the audit events older than `older_than` (at
-- least tenancy.audit_min_retention(), 22023 otherwise). service_role only:
-- schedule it (pg_cron) with the retention your customers were promised.
create or replace function public.tenancy_prune_audit_log(older_than interval) returns jsonb
language plpgsql
set search_path = ''
as $$
begin
  if not tenancy.is_privileged() then
    raise exception 'pruning the audit log needs the service role' using errcode = '42501';
  end if;
  return tenancy.prune_audit_log_for(tenancy_prune_audit_log.older_than);
end
$$;

-- ---------------------------------------------------------------------------
-- Reading: keyset pages, newest first.

create or replace function tenancy.audit_event_json(e public.audit_events) returns jsonb
language sql stable
set search_path = ''
as $$
  select pg_catalog.jsonb_build_object(
    'id', e.id,
    'organization_id', e.organization_id,
    'actor_kind', e.actor_kind,
    'actor_user_id', e.actor_user_id,
    'actor_name', e.actor_name,
    'action', e.action,
    'target', e.target,
    'before', e.before,
    'after', e.after,
    'request_id', e.request_id,
    'at', e.at)
$$;

-- The events of `org` (null: every organization) matching the filters,
-- newest first (at, then id, descending), after the cursor (before_at,
-- before_id), at most max_rows. An `action` without a dot matches every
-- action of that entity (`member` matches `member.updated`). `since` is
-- inclusive, `until` exclusive. service_role only: the checked path is
-- tenancy.member_audit_log.
create or replace function tenancy.audit_log_for(
  org uuid, actor_kind text, actor_user_id uuid, actor_name text, action text,
  since timestamptz, until timestamptz, before_at timestamptz, before_id bigint, max_rows integer)
returns jsonb
language sql stable security definer
set search_path = ''
as $$
  select coalesce(pg_catalog.jsonb_agg(p.event order by p.at desc, p.id desc), '[]'::jsonb)
  from (
    select tenancy.audit_event_json(e) as event, e.at, e.id
    from public.audit_events e
    where (audit_log_for.org is null or e.organization_id = audit_log_for.org)
      and (audit_log_for.actor_kind is null or e.actor_kind = audit_log_for.actor_kind)
      and (audit_log_for.actor_user_id is null or e.actor_user_id = audit_log_for.actor_user_id)
      and (audit_log_for.actor_name is null or e.actor_name = audit_log_for.actor_name)
      and (audit_log_for.action is null
           or e.action = audit_log_for.action
           or (pg_catalog.strpos(audit_log_for.action, '.') = 0
               and pg_catalog.starts_with(e.action, audit_log_for.action || '.')))
      and (audit_log_for.since is null or e.at >= audit_log_for.since)
      and (audit_log_for.until is null or e.at < audit_log_for.until)
      and (audit_log_for.before_at is null
           or (e.at, e.id) < (audit_log_for.before_at, coalesce(audit_log_for.before_id, 0)))
    order by e.at desc, e.id desc
    limit audit_log_for.max_rows
  ) p
$$;

-- The checked path for a user JWT: owners and admins of `org` read its log.
create or replace function tenancy.member_audit_log(
  org uuid, actor_kind text, actor_user_id uuid, actor_name text, action text,
  since timestamptz, until timestamptz, before_at timestamptz, before_id bigint, max_rows integer)
returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
begin
  perform tenancy.require_role(member_audit_log.org, null, 'admin');
  return tenancy.audit_log_for(org, actor_kind, actor_user_id, actor_name, action, since, until,
    before_at, before_id, max_rows);
end
$$;

-- [event] of one organization (a user JWT: required, and an owner's or
-- admin's; service_role: null reads every organization), see
-- tenancy.audit_log_for. max_rows 1..1001 (22023 otherwise).
create or replace function public.tenancy_audit_log(
  org_id uuid default null,
  actor_kind text default null,
  actor_user_id uuid default null,
  actor_name text default null,
  action text default null,
  since timestamptz default null,
  until timestamptz default null,
  before_at timestamptz default null,
  before_id bigint default null,
  max_rows integer default 50)
returns jsonb
language plpgsql stable
set search_path = ''
as $$
begin
  if max_rows is null or max_rows < 1 or max_rows > 1001 then
    raise exception 'max_rows: % is not between 1 and 1001', coalesce(max_rows::text, 'null')
      using errcode = '22023';
  end if;
  if actor_kind is not null and actor_kind not in ('user', 'operator', 'service') then
    raise exception 'actor_kind: % is not user, operator or service', actor_kind
      using errcode = '22023';
  end if;
  if tenancy.is_privileged() then
    return tenancy.audit_log_for(org_id, actor_kind, actor_user_id, actor_name, action, since,
      until, before_at, before_id, max_rows);
  end if;
  return tenancy.member_audit_log(org_id, actor_kind, actor_user_id, actor_name, action, since,
    until, before_at, before_id, max_rows);
end
$$;

-- ---------------------------------------------------------------------------
-- Privileges and RLS. Supabase grants every new table and function in
-- public to anon and authenticated: revoke.

alter table public.audit_events enable row level security;

revoke all on table public.audit_events from public, anon, authenticated, service_role;
grant select on table public.audit_events to authenticated, service_role;
-- Supabase grants every new sequence in public to the API roles: a role
-- that could setval the id sequence back would make every later audit
-- row collide (23505) and so block every audited change. Inserts into an
-- identity column need no privilege on its sequence.
do $$
begin
  execute pg_catalog.format('revoke all on sequence %s from public, anon, authenticated, service_role',
    pg_catalog.pg_get_serial_sequence('public.audit_events', 'id'));
end
$$;

drop policy if exists audit_events_select on public.audit_events;
create policy audit_events_select on public.audit_events
  for select to authenticated
  using (organization_id = any (array(select tenancy.org_ids('admin'))));

revoke all on function
  tenancy.audit_actor(),
  tenancy.audit_row(),
  tenancy.audit_min_retention(),
  tenancy.audit_events_immutable(),
  tenancy.prune_audit_log_for(interval),
  public.tenancy_prune_audit_log(interval),
  tenancy.audit_event_json(public.audit_events),
  tenancy.audit_log_for(uuid, text, uuid, text, text, timestamptz, timestamptz, timestamptz,
    bigint, integer),
  tenancy.member_audit_log(uuid, text, uuid, text, text, timestamptz, timestamptz, timestamptz,
    bigint, integer),
  public.tenancy_audit_log(uuid, text, uuid, text, text, timestamptz, timestamptz, timestamptz,
    bigint, integer)
from public, anon, authenticated;

grant execute on function tenancy.audit_actor() to service_role;
grant execute on function tenancy.audit_event_json(public.audit_events) to service_role;
grant execute on function tenancy.audit_min_retention() to service_role;
grant execute on function tenancy.prune_audit_log_for(interval) to service_role;
grant execute on function public.tenancy_prune_audit_log(interval) to service_role;
grant execute on function tenancy.audit_log_for(uuid, text, uuid, text, text, timestamptz,
  timestamptz, timestamptz, bigint, integer) to service_role;
grant execute on function tenancy.member_audit_log(uuid, text, uuid, text, text, timestamptz,
  timestamptz, timestamptz, bigint, integer) to authenticated;
grant execute on function public.tenancy_audit_log(uuid, text, uuid, text, text, timestamptz,
  timestamptz, timestamptz, bigint, integer) to authenticated, service_role;

insert into tenancy.schema_migrations (version, name)
values (10, '20261206000900_tenancy_audit_log')
on conflict do nothing;
