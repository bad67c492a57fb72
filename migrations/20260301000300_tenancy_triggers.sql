-- tenancy: triggers — organization ids and the creator's owner row, the
-- membership role rules, and usage_limits' derived columns.

-- ---------------------------------------------------------------------------
-- A user JWT does not choose a new organization's id or created_at: a chosen
-- id could match rows an earlier organization left behind in tables without
-- a foreign key (usage_events). Callers that bypass RLS (service_role, the
-- migration owner) keep theirs.

create or replace function tenancy.organizations_assign_id() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if not tenancy.is_privileged() then
    new.id := gen_random_uuid();
    new.created_at := pg_catalog.now();
  end if;
  return new;
end
$$;

drop trigger if exists organizations_assign_id on public.organizations;
create trigger organizations_assign_id
  before insert on public.organizations
  for each row execute function tenancy.organizations_assign_id();

-- ---------------------------------------------------------------------------
-- A new organization gets its creator as owner, in the same statement.
-- Security definer: the creator may not insert their own membership.

create or replace function tenancy.organizations_add_owner() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if new.owner_user_id is not null then
    insert into public.user_organizations (organization_id, user_id, role, created_at)
    values (new.id, new.owner_user_id, 'owner', new.created_at)
    on conflict (organization_id, user_id) do nothing;
  end if;
  return null;
end
$$;

drop trigger if exists organizations_add_owner on public.organizations;
create trigger organizations_add_owner
  after insert on public.organizations
  for each row execute function tenancy.organizations_add_owner();

-- ---------------------------------------------------------------------------
-- Membership rules, for every writer:
--   * an organization keeps at least one owner (also against service_role;
--     deleting the organization itself cascades freely);
-- and for user JWTs (callers that do not bypass RLS):
--   * nobody adds themselves; nobody raises their own role (lowering it and
--     leaving are fine);
--   * only owners grant, revoke or remove owner and admin;
--   * admins manage members and viewers; members and viewers manage nobody.
-- Violations raise 42501 (insufficient_privilege).

create or replace function tenancy.user_organizations_guard() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_org uuid;
  v_target uuid;
  v_before text;
  v_after text;
  v_actor uuid;
  v_actor_rank integer;
  v_highest integer;
begin
  if tg_op = 'INSERT' then
    v_org := new.organization_id;
    v_target := new.user_id;
    v_after := new.role;
  elsif tg_op = 'UPDATE' then
    if new.organization_id <> old.organization_id or new.user_id <> old.user_id then
      raise exception 'a membership cannot move to another organization or user'
        using errcode = '42501';
    end if;
    v_org := old.organization_id;
    v_target := old.user_id;
    v_before := old.role;
    v_after := new.role;
  else
    v_org := old.organization_id;
    v_target := old.user_id;
    v_before := old.role;
  end if;

  if not tenancy.is_privileged() then
    v_actor := (select auth.uid());
    if v_actor is null then
      raise exception 'membership changes need a signed-in user' using errcode = '42501';
    end if;
    if v_target = v_actor then
      if v_before is null then
        raise exception 'nobody may add themselves to an organization' using errcode = '42501';
      elsif v_after is not null and tenancy.role_rank(v_after) > tenancy.role_rank(v_before) then
        raise exception 'nobody may raise their own role' using errcode = '42501';
      end if;
    else
      v_highest := greatest(tenancy.role_rank(v_before), tenancy.role_rank(v_after));
      v_actor_rank := tenancy.role_rank(tenancy.role_in(v_org));
      if v_highest >= 3 and v_actor_rank < 4 then
        raise exception 'only owners grant, revoke or remove owner and admin'
          using errcode = '42501';
      elsif v_actor_rank < 3 then
        raise exception 'only owners and admins manage members' using errcode = '42501';
      end if;
    end if;
  end if;

  if v_before = 'owner' and v_after is distinct from 'owner' then
    -- Serialize owner removals per organization, so two owners demoting each
    -- other concurrently cannot both succeed.
    perform pg_catalog.pg_advisory_xact_lock(
      pg_catalog.hashtextextended('tenancy.owners:' || v_org::text, 0));
    if tenancy.org_exists(v_org) and not tenancy.other_owner_exists(v_org, v_target) then
      raise exception 'organization % must keep at least one owner', v_org
        using errcode = '42501';
    end if;
  end if;

  if tg_op = 'DELETE' then
    return old;
  end if;
  return new;
end
$$;

drop trigger if exists user_organizations_guard on public.user_organizations;
create trigger user_organizations_guard
  before insert or update or delete on public.user_organizations
  for each row execute function tenancy.user_organizations_guard();

-- ---------------------------------------------------------------------------
-- usage_limits: derive metric / period / limit_type from each other, so a
-- row with only the plan's columns is valid, and reject inconsistent ones.

create or replace function tenancy.usage_limits_derive() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_prefix text;
  v_rest text;
  v_metric text;
begin
  if tg_op = 'UPDATE' then
    if new.metric is distinct from old.metric and new.limit_type is not distinct from old.limit_type then
      new.limit_type := null;
    elsif new.limit_type is distinct from old.limit_type and new.metric is not distinct from old.metric then
      new.metric := null;
    end if;
  end if;

  if new.limit_type is null then
    if new.metric is null or new.period is null then
      raise exception 'usage_limits needs limit_type, or metric and period'
        using errcode = '23502';
    end if;
    new.limit_type := new.period || '_' || new.metric;
  end if;

  v_prefix := split_part(new.limit_type, '_', 1);
  v_rest := substr(new.limit_type, char_length(v_prefix) + 2);
  if v_prefix not in ('daily', 'monthly') or v_rest = '' then
    raise exception 'limit_type % is not <daily|monthly>_<metric>', new.limit_type
      using errcode = '23514';
  end if;
  if new.period is null then
    new.period := v_prefix;
  elsif new.period <> v_prefix then
    raise exception 'limit_type % does not match period %', new.limit_type, new.period
      using errcode = '23514';
  end if;

  v_metric := case v_rest when 'cost' then 'cost_usd' when 'ads' then 'ads_created' else v_rest end;
  if new.metric is null then
    new.metric := v_metric;
  elsif new.metric <> v_metric then
    raise exception 'limit_type % does not match metric %', new.limit_type, new.metric
      using errcode = '23514';
  end if;
  return new;
end
$$;

drop trigger if exists usage_limits_derive on public.usage_limits;
create trigger usage_limits_derive
  before insert or update on public.usage_limits
  for each row execute function tenancy.usage_limits_derive();

-- ---------------------------------------------------------------------------
-- usage_events has no foreign key (see the table); deleting an organization
-- deletes its events here instead. Security definer: the deleting user (an
-- owner) has no privilege on usage_events, as with a cascade.

create or replace function tenancy.delete_org_usage_events()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from public.usage_events where organization_id = old.id;
  return old;
end;
$$;

drop trigger if exists organizations_delete_usage_events on public.organizations;
create trigger organizations_delete_usage_events
  after delete on public.organizations
  for each row execute function tenancy.delete_org_usage_events();

-- `truncate organizations cascade` fires no row trigger and reaches only
-- tables with a foreign key, so the log is truncated with it here.

create or replace function tenancy.truncate_usage_events()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  truncate public.usage_events;
  return null;
end;
$$;

drop trigger if exists organizations_truncate_usage_events on public.organizations;
create trigger organizations_truncate_usage_events
  after truncate on public.organizations
  for each statement execute function tenancy.truncate_usage_events();

-- ---------------------------------------------------------------------------
-- Trigger functions are not for calling: created after the helpers' bulk
-- revoke, they would keep PostgreSQL's default execute for PUBLIC.

revoke all on function
  tenancy.organizations_assign_id(),
  tenancy.organizations_add_owner(),
  tenancy.user_organizations_guard(),
  tenancy.usage_limits_derive(),
  tenancy.delete_org_usage_events(),
  tenancy.truncate_usage_events()
from public;
