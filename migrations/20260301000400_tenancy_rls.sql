-- tenancy: row-level security and table privileges.
--
-- service_role bypasses RLS and keeps every privilege. `authenticated` (a
-- user JWT) sees only organizations it belongs to:
--   organizations       read: members; insert: as its own owner_user_id;
--                       update name/slug/timezone: admins+; delete: owners
--   user_organizations  read: members; insert/update/delete: admins+ or on
--                       its own row, refined by the user_organizations_guard
--                       trigger (role rules, last owner)
--   org_features        read: members; no writes (service_role and the RPCs)
--   usage_limits, usage_events, usage_counters, usage_reservations,
--   usage_alerts        read: members see the org-wide rows and their own;
--                       admins and owners also other members' (the Action
--                       ViewMemberUsage); no writes
-- `anon` gets no privilege on any of these tables.
--
-- Policies name the orgs the user may act in once per statement
-- (`organization_id = any (array(select tenancy.org_ids(...)))`, an
-- InitPlan) so the planner can use the organization_id indexes.

do $$
declare
  t text;
begin
  foreach t in array array[
    'organizations', 'user_organizations', 'org_features', 'usage_limits',
    'usage_events', 'usage_counters', 'usage_reservations', 'usage_alerts'
  ] loop
    execute format('alter table public.%I enable row level security', t);
    execute format('revoke all on table public.%I from public, anon', t);
    execute format('grant all on table public.%I to service_role', t);
    execute format('grant select on table public.%I to authenticated', t);
  end loop;
end
$$;

-- Writes a user JWT may attempt at all (RLS and triggers decide the rest).
revoke insert, update, delete, truncate, references, trigger
  on public.organizations, public.user_organizations, public.org_features,
     public.usage_limits, public.usage_events, public.usage_counters,
     public.usage_reservations, public.usage_alerts
  from authenticated;
grant insert on public.organizations to authenticated;
grant update (name, slug, timezone) on public.organizations to authenticated;
grant delete on public.organizations to authenticated;
grant insert, delete on public.user_organizations to authenticated;
grant update (role) on public.user_organizations to authenticated;

-- ---------------------------------------------------------------------------
-- organizations

drop policy if exists organizations_select on public.organizations;
create policy organizations_select on public.organizations
  for select to authenticated
  using (id = any (array(select tenancy.org_ids('viewer'))));

drop policy if exists organizations_insert on public.organizations;
create policy organizations_insert on public.organizations
  for insert to authenticated
  with check (owner_user_id = (select auth.uid()));

drop policy if exists organizations_update on public.organizations;
create policy organizations_update on public.organizations
  for update to authenticated
  using (id = any (array(select tenancy.org_ids('admin'))))
  with check (id = any (array(select tenancy.org_ids('admin'))));

drop policy if exists organizations_delete on public.organizations;
create policy organizations_delete on public.organizations
  for delete to authenticated
  using (id = any (array(select tenancy.org_ids('owner'))));

-- ---------------------------------------------------------------------------
-- user_organizations

drop policy if exists user_organizations_select on public.user_organizations;
create policy user_organizations_select on public.user_organizations
  for select to authenticated
  using (organization_id = any (array(select tenancy.org_ids('viewer'))));

drop policy if exists user_organizations_insert on public.user_organizations;
create policy user_organizations_insert on public.user_organizations
  for insert to authenticated
  with check (organization_id = any (array(select tenancy.org_ids('admin'))));

drop policy if exists user_organizations_update on public.user_organizations;
create policy user_organizations_update on public.user_organizations
  for update to authenticated
  using (
    organization_id = any (array(select tenancy.org_ids('admin')))
    or user_id = (select auth.uid())
  )
  with check (
    organization_id = any (array(select tenancy.org_ids('admin')))
    or user_id = (select auth.uid())
  );

drop policy if exists user_organizations_delete on public.user_organizations;
create policy user_organizations_delete on public.user_organizations
  for delete to authenticated
  using (
    organization_id = any (array(select tenancy.org_ids('admin')))
    or user_id = (select auth.uid())
  );

-- ---------------------------------------------------------------------------
-- read-only (for users) tables

drop policy if exists org_features_select on public.org_features;
create policy org_features_select on public.org_features
  for select to authenticated
  using (organization_id = any (array(select tenancy.org_ids('viewer'))));

-- Per-user usage rows: a row is org-wide (no user, or the nil scope), the
-- reader's own, or another member's, which only admins and owners see.
do $$
declare
  t text;
  v_user_column text;
begin
  foreach t in array array[
    'usage_limits', 'usage_events', 'usage_counters', 'usage_reservations', 'usage_alerts'
  ] loop
    v_user_column := case when t in ('usage_counters', 'usage_alerts') then 'scope_user_id' else 'user_id' end;
    execute format('drop policy if exists %I on public.%I', t || '_select', t);
    execute format(
      'create policy %I on public.%I for select to authenticated using ('
      '  organization_id = any (array(select tenancy.org_ids(''admin'')))'
      '  or (organization_id = any (array(select tenancy.org_ids(''viewer'')))'
      '      and (%2$I.%3$I is null or %2$I.%3$I = ''00000000-0000-0000-0000-000000000000''::uuid'
      '           or %2$I.%3$I = (select auth.uid()))))',
      t || '_select', t, v_user_column);
  end loop;
end
$$;
