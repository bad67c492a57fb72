-- tenancy: invitations to an organization, by email or link.
-- migrations/README.md ("Invitations") is the contract.
--
-- public.org_invitations keeps each invitation with the SHA-256 of its
-- token (hex), never the token. Admins and owners read their
-- organization's invitations through RLS, without the token_hash column
-- (column privileges: `authenticated` may select every column but that
-- one); nobody else reads any, and no user JWT writes the table: every
-- write goes through the functions below.
--
-- Entry points, as in the SQL API: public functions are security invoker;
-- the service role runs tenancy.<name>_for itself; a user JWT goes through
-- tenancy.member_<name>, a security definer that checks who it is first.
-- For a user JWT, the time is the database's now() (a caller cannot choose
-- it), and the email an invitation is matched against is the user's
-- confirmed one in auth.users (email_confirmed_at set): a Supabase access
-- token carries `email` but no proof that it was confirmed.
--
-- Every refusal to accept (an unknown token, an expired, revoked or used-up
-- invitation, another email's) is one error: P0002 with the same message,
-- naming no organization.
--
-- The user directory's tenancy.user_profiles_for is replaced to report
-- `email_confirmed` too (same visibility rules).
--
-- Idempotent: `if not exists`, `create or replace`, guarded policies.

create table if not exists public.org_invitations (
  id uuid primary key,
  organization_id uuid not null references public.organizations (id) on delete cascade,
  -- Normalized (trimmed, lowercase); null for a shareable link.
  email text check (email is null or (
    email = pg_catalog.lower(pg_catalog.btrim(email))
    and email like '_%@_%'
    and pg_catalog.char_length(email) <= 254)),
  role text not null check (role in ('owner', 'admin', 'member', 'viewer')),
  -- SHA-256 of the token's UTF-8 text, lowercase hex. Unreadable by users.
  token_hash text not null unique check (token_hash ~ '^[0-9a-f]{64}$'),
  max_uses integer not null check (max_uses between 1 and 10000),
  uses integer not null default 0 check (uses between 0 and max_uses),
  expires_at timestamptz not null,
  created_at timestamptz not null default pg_catalog.now(),
  -- Who created it; no foreign key, so the record outlives the user.
  created_by uuid,
  revoked_at timestamptz,
  constraint org_invitations_email_once check (email is null or max_uses = 1),
  constraint org_invitations_expires_later check (expires_at > created_at)
);

create index if not exists org_invitations_by_org
  on public.org_invitations (organization_id, created_at, id);

alter table public.org_invitations enable row level security;

revoke all on table public.org_invitations from public, anon, authenticated;
grant select (id, organization_id, email, role, max_uses, uses, expires_at, created_at,
  created_by, revoked_at) on table public.org_invitations to authenticated;
grant select, insert, update, delete on table public.org_invitations to service_role;

do $$
begin
  if not exists (select 1 from pg_catalog.pg_policies
      where schemaname = 'public' and tablename = 'org_invitations'
        and policyname = 'org_invitations_admins_read') then
    create policy org_invitations_admins_read on public.org_invitations
      for select to authenticated
      using (tenancy.has_role(organization_id, 'admin'));
  end if;
end
$$;

-- ---------------------------------------------------------------------------
-- The rules.

-- The longest an invitation may last (TenancyBuilder's ceiling too).
create or replace function tenancy.max_invitation_lifetime() returns interval
language sql immutable
set search_path = ''
as $$
  select interval '90 days'
$$;

-- Whether a member with role `actor_role` may invite someone as
-- `invited_role` (Role::check_invite): admins and owners invite; only
-- owners invite owners or admins.
create or replace function tenancy.may_invite(actor_role text, invited_role text)
returns boolean
language sql immutable
set search_path = ''
as $$
  select case
    when tenancy.role_rank(invited_role) = 0 then false
    when tenancy.role_rank(invited_role) >= 3 then tenancy.role_rank(actor_role) >= 4
    else tenancy.role_rank(actor_role) >= 3
  end
$$;

-- The one refusal's message (tenancy::model::invitation::INVITATION_REFUSED).
create or replace function tenancy.invitation_refused() returns text
language sql immutable
set search_path = ''
as $$
  select 'this invitation cannot be accepted: it is unknown, expired, revoked or used up, or it is for another email address'
$$;

-- Invitation: every column but token_hash.
create or replace function tenancy.invitation_json(i public.org_invitations) returns jsonb
language sql stable
set search_path = ''
as $$
  select pg_catalog.jsonb_build_object(
    'id', i.id,
    'organization_id', i.organization_id,
    'email', i.email,
    'role', i.role,
    'max_uses', i.max_uses,
    'uses', i.uses,
    'expires_at', i.expires_at,
    'created_at', i.created_at,
    'created_by', i.created_by,
    'revoked_at', i.revoked_at)
$$;

-- The confirmed email of `p_user` in auth.users (trimmed, lowercase), or
-- null when it has none or never confirmed it (email_confirmed_at null).
create or replace function tenancy.confirmed_email(p_user uuid) returns text
language sql stable security definer
set search_path = ''
as $$
  select nullif(pg_catalog.lower(pg_catalog.btrim(u.email)), '')
  from auth.users u
  where u.id = confirmed_email.p_user
    and u.email_confirmed_at is not null
$$;

-- 22023 unless `token_hash` is 64 lowercase hex digits.
create or replace function tenancy.checked_token_hash(token_hash text) returns text
language plpgsql immutable
set search_path = ''
as $$
begin
  if token_hash is null or token_hash !~ '^[0-9a-f]{64}$' then
    raise exception 'token_hash: must be 64 lowercase hex digits' using errcode = '22023';
  end if;
  return token_hash;
end
$$;

-- ---------------------------------------------------------------------------
-- The work, for an authorized caller (service_role, or a member_* definer
-- after its checks). Executable by service_role only.

-- Stores `invitation` (an Invitation as JSON) with `token_hash`, its
-- email trimmed and lowercased. P0002 without the organization; 23505
-- when the id or hash is taken; 22023 for an expiry not after the
-- creation or a lifetime over tenancy.max_invitation_lifetime(); 23514
-- for another field out of range.
create or replace function tenancy.create_invitation_for(invitation jsonb, token_hash text)
returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
  v_row public.org_invitations;
begin
  begin
    v_row := pg_catalog.jsonb_populate_record(null::public.org_invitations, invitation);
  exception when invalid_text_representation or datetime_field_overflow
      or invalid_datetime_format then
    raise exception 'invitation: a field has the wrong type' using errcode = '22023';
  end;
  -- Stored normalized, as the Rust side writes it: trimmed, lowercase.
  v_row.email := pg_catalog.lower(pg_catalog.btrim(v_row.email));
  if not tenancy.org_exists(v_row.organization_id) then
    raise exception 'organization % not found', v_row.organization_id using errcode = 'P0002';
  end if;
  -- Measured from the time the row will carry: now() when none is given.
  v_row.created_at := coalesce(v_row.created_at, pg_catalog.now());
  if v_row.expires_at is null or v_row.expires_at <= v_row.created_at then
    raise exception 'expires_at: must be after created_at' using errcode = '22023';
  end if;
  if v_row.expires_at - v_row.created_at > tenancy.max_invitation_lifetime() then
    raise exception 'expires_at: an invitation lasts at most %', tenancy.max_invitation_lifetime()
      using errcode = '22023';
  end if;
  insert into public.org_invitations as i (id, organization_id, email, role, token_hash,
    max_uses, uses, expires_at, created_at, created_by, revoked_at)
  values (v_row.id, v_row.organization_id, v_row.email, v_row.role,
    tenancy.checked_token_hash(create_invitation_for.token_hash), v_row.max_uses, 0,
    v_row.expires_at, v_row.created_at, v_row.created_by, null)
  returning i.* into v_row;
  return tenancy.invitation_json(v_row);
end
$$;

-- [Invitation] of `org` pending at `at`, oldest first.
create or replace function tenancy.pending_invitations_for(org uuid, at timestamptz)
returns jsonb
language sql stable
set search_path = ''
as $$
  select coalesce(pg_catalog.jsonb_agg(tenancy.invitation_json(i)
      order by i.created_at, i.id), '[]'::jsonb)
  from public.org_invitations i
  where i.organization_id = pending_invitations_for.org
    and i.revoked_at is null and i.uses < i.max_uses and i.expires_at > pending_invitations_for.at
$$;

-- {revoked} for invitation `id` of `org` if pending at `at`.
create or replace function tenancy.revoke_invitation_for(org uuid, id uuid, at timestamptz)
returns jsonb
language plpgsql volatile
set search_path = ''
as $$
begin
  update public.org_invitations i set revoked_at = revoke_invitation_for.at
  where i.organization_id = revoke_invitation_for.org and i.id = revoke_invitation_for.id
    and i.revoked_at is null and i.uses < i.max_uses and i.expires_at > revoke_invitation_for.at;
  return pg_catalog.jsonb_build_object('revoked', found);
end
$$;

-- [Invitation] (zero or one): invitation `id` of `org` with a new token
-- hash and expiry, if pending at `at`.
create or replace function tenancy.rotate_invitation_for(
  org uuid, id uuid, token_hash text, expires_at timestamptz, at timestamptz
) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
  v_row public.org_invitations;
begin
  if rotate_invitation_for.expires_at is null or rotate_invitation_for.expires_at <= rotate_invitation_for.at
    or rotate_invitation_for.expires_at - rotate_invitation_for.at > tenancy.max_invitation_lifetime() then
    raise exception 'expires_at: must be after now and at most % later', tenancy.max_invitation_lifetime()
      using errcode = '22023';
  end if;
  -- Checked whether or not an invitation matches.
  perform tenancy.checked_token_hash(rotate_invitation_for.token_hash);
  update public.org_invitations i
  set token_hash = rotate_invitation_for.token_hash,
      expires_at = rotate_invitation_for.expires_at
  where i.organization_id = rotate_invitation_for.org and i.id = rotate_invitation_for.id
    and i.revoked_at is null and i.uses < i.max_uses and i.expires_at > rotate_invitation_for.at
  returning i.* into v_row;
  if not found then
    return '[]'::jsonb;
  end if;
  return pg_catalog.jsonb_build_array(tenancy.invitation_json(v_row));
end
$$;

-- {membership, joined}: accepts the invitation whose token hashes to
-- `token_hash` for `p_user` at `at`. An email invitation is matched
-- against `email` when given (the service role vouching for it), else
-- against p_user's confirmed email in auth.users (read only then). The
-- invitation's row is locked first, so concurrent accepts count uses one
-- at a time. A member already keeps their role and uses nothing.
-- Refusals: P0002, tenancy.invitation_refused().
create or replace function tenancy.accept_invitation_for(
  token_hash text, p_user uuid, email text, at timestamptz
) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
  v_inv public.org_invitations;
  v_member public.user_organizations;
  v_email text := accept_invitation_for.email;
begin
  if p_user is null then
    raise exception 'user_id is required' using errcode = '22023';
  end if;
  select i.* into v_inv from public.org_invitations i
  where i.token_hash = accept_invitation_for.token_hash
  for update;
  if found and v_inv.email is not null and v_email is null then
    v_email := tenancy.confirmed_email(p_user);
  end if;
  if not found
    or v_inv.revoked_at is not null
    or v_inv.uses >= v_inv.max_uses
    or v_inv.expires_at <= accept_invitation_for.at
    or (v_inv.email is not null and v_inv.email is distinct from
        pg_catalog.lower(pg_catalog.btrim(v_email))) then
    raise exception '%', tenancy.invitation_refused() using errcode = 'P0002';
  end if;
  select m.* into v_member from public.user_organizations m
  where m.organization_id = v_inv.organization_id and m.user_id = p_user;
  if found then
    return pg_catalog.jsonb_build_object(
      'membership', tenancy.membership_json(v_member), 'joined', false);
  end if;
  insert into public.user_organizations as m (organization_id, user_id, role, created_at)
  values (v_inv.organization_id, p_user, v_inv.role, accept_invitation_for.at)
  returning m.* into v_member;
  update public.org_invitations i set uses = i.uses + 1 where i.id = v_inv.id;
  return pg_catalog.jsonb_build_object(
    'membership', tenancy.membership_json(v_member), 'joined', true);
end
$$;

-- ---------------------------------------------------------------------------
-- The same for a user JWT: security definer, the checks first, the
-- database's clock. Executable by authenticated only.

create or replace function tenancy.member_create_invitation(invitation jsonb, token_hash text)
returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_org uuid;
  v_user uuid;
  v_role text := invitation ->> 'role';
  v_now timestamptz := pg_catalog.now();
  v_expires timestamptz;
begin
  if pg_catalog.jsonb_typeof(invitation) is distinct from 'object' then
    raise exception 'invitation must be a JSON object' using errcode = '22023';
  end if;
  begin
    v_org := (invitation ->> 'organization_id')::uuid;
    v_expires := (invitation ->> 'expires_at')::timestamptz;
  exception when others then
    raise exception 'invitation: organization_id and expires_at must be a UUID and a time'
      using errcode = '22023';
  end;
  v_user := tenancy.require_role(v_org, null, 'admin');
  if not tenancy.may_invite(tenancy.role_in(v_org), v_role) then
    raise exception 'a % of organization % may not invite a %', tenancy.role_in(v_org), v_org,
      coalesce(v_role, 'null') using errcode = '42501';
  end if;
  return tenancy.create_invitation_for(invitation || pg_catalog.jsonb_build_object(
    'created_by', v_user, 'created_at', v_now,
    'expires_at', v_expires), token_hash);
end
$$;

create or replace function tenancy.member_pending_invitations(org uuid, at timestamptz)
returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
begin
  perform tenancy.require_role(org, null, 'admin');
  return tenancy.pending_invitations_for(org, coalesce(at, pg_catalog.now()));
end
$$;

-- 42501 unless the caller may invite with the role of invitation `id` of
-- `org` (when it exists).
create or replace function tenancy.require_invite_right(org uuid, id uuid)
returns void
language plpgsql stable
set search_path = ''
as $$
declare
  v_role text;
begin
  perform tenancy.require_role(org, null, 'admin');
  select i.role into v_role from public.org_invitations i
  where i.organization_id = org and i.id = require_invite_right.id;
  if found and not tenancy.may_invite(tenancy.role_in(org), v_role) then
    raise exception 'a % of organization % may not manage an invitation for a %',
      tenancy.role_in(org), org, v_role using errcode = '42501';
  end if;
end
$$;

create or replace function tenancy.member_revoke_invitation(org uuid, id uuid)
returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  perform tenancy.require_invite_right(org, id);
  return tenancy.revoke_invitation_for(org, id, pg_catalog.now());
end
$$;

create or replace function tenancy.member_rotate_invitation(
  org uuid, id uuid, token_hash text, expires_at timestamptz
) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  perform tenancy.require_invite_right(org, id);
  return tenancy.rotate_invitation_for(org, id, token_hash, expires_at, pg_catalog.now());
end
$$;

-- Accepts for the JWT's user, matched against its confirmed email.
create or replace function tenancy.member_accept_invitation(token_hash text)
returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_user uuid := (select auth.uid());
begin
  if v_user is null then
    raise exception 'this needs a signed-in user (a user JWT) or the service role'
      using errcode = '42501';
  end if;
  -- No email: accept_invitation_for reads the user's confirmed one.
  return tenancy.accept_invitation_for(token_hash, v_user, null, pg_catalog.now());
end
$$;

-- ---------------------------------------------------------------------------
-- The entry points.

-- Invitation: stores `invitation` with `token_hash` (the store's create).
-- A user JWT: an admin or owner of the organization, inviting a role it
-- may grant; created_by and created_at are the caller and now().
create or replace function public.tenancy_create_invitation(invitation jsonb, token_hash text)
returns jsonb
language plpgsql volatile
set search_path = ''
as $$
begin
  if tenancy.is_privileged() then
    return tenancy.create_invitation_for(invitation, token_hash);
  end if;
  return tenancy.member_create_invitation(invitation, token_hash);
end
$$;

-- [Invitation] of org_id pending at `at` (a user JWT: an admin or owner).
create or replace function public.tenancy_pending_invitations(org_id uuid, at timestamptz default null)
returns jsonb
language plpgsql stable
set search_path = ''
as $$
begin
  if tenancy.is_privileged() then
    return tenancy.pending_invitations_for(org_id, coalesce(at, pg_catalog.now()));
  end if;
  return tenancy.member_pending_invitations(org_id, at);
end
$$;

-- {revoked}: revokes a pending invitation (a user JWT: one it may create).
create or replace function public.tenancy_revoke_invitation(
  org_id uuid, invitation_id uuid, at timestamptz default null
) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
begin
  if tenancy.is_privileged() then
    return tenancy.revoke_invitation_for(org_id, invitation_id, coalesce(at, pg_catalog.now()));
  end if;
  return tenancy.member_revoke_invitation(org_id, invitation_id);
end
$$;

-- [Invitation] (zero or one): a pending invitation with a new token hash
-- and expiry (a user JWT: one it may create).
create or replace function public.tenancy_rotate_invitation(
  org_id uuid, invitation_id uuid, token_hash text, expires_at timestamptz,
  at timestamptz default null
) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
begin
  if tenancy.is_privileged() then
    return tenancy.rotate_invitation_for(org_id, invitation_id, token_hash, expires_at,
      coalesce(at, pg_catalog.now()));
  end if;
  return tenancy.member_rotate_invitation(org_id, invitation_id, token_hash, expires_at);
end
$$;

-- {membership, joined}: the store's accept, by the token's hash. The
-- service role names the user, and may vouch for its confirmed email
-- (`email`; null: read from auth.users) and the time; a user JWT accepts
-- for itself (user_id null or its own), with its confirmed email from
-- auth.users and now().
create or replace function public.tenancy_accept_invitation_hash(
  token_hash text, user_id uuid default null, email text default null, at timestamptz default null
) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
begin
  if tenancy.is_privileged() then
    if tenancy_accept_invitation_hash.user_id is null then
      raise exception 'user_id is required with the service role' using errcode = '22023';
    end if;
    return tenancy.accept_invitation_for(token_hash, tenancy_accept_invitation_hash.user_id,
      tenancy_accept_invitation_hash.email, coalesce(at, pg_catalog.now()));
  end if;
  if tenancy_accept_invitation_hash.user_id is not null
      and tenancy_accept_invitation_hash.user_id is distinct from (select auth.uid()) then
    raise exception 'a user accepts only for itself, not for user %',
      tenancy_accept_invitation_hash.user_id using errcode = '42501';
  end if;
  return tenancy.member_accept_invitation(token_hash);
end
$$;

-- {membership, joined}: accepts the invitation `token` (as the accept URL
-- carries it) for the JWT's user, or, for the service role, for `user_id`;
-- the email is the user's confirmed one in auth.users, the time now().
create or replace function public.tenancy_accept_invitation(token text, user_id uuid default null)
returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
  v_hash text := pg_catalog.encode(pg_catalog.sha256(
    pg_catalog.convert_to(pg_catalog.btrim(coalesce(token, '')), 'UTF8')), 'hex');
begin
  return public.tenancy_accept_invitation_hash(v_hash, tenancy_accept_invitation.user_id, null, null);
end
$$;

-- ---------------------------------------------------------------------------
-- The user directory reports whether each email is confirmed
-- (UserProfile::email_confirmed): auth.users.email_confirmed_at is set.
-- Same visibility rules as version 6.

create or replace function tenancy.user_profiles_for(user_ids uuid[], viewer uuid)
returns jsonb
language sql stable security definer
set search_path = ''
as $$
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
      'user_id', u.id,
      'email', nullif(pg_catalog.btrim(u.email), ''),
      'name', coalesce(
        nullif(pg_catalog.btrim(case pg_catalog.jsonb_typeof(u.raw_user_meta_data -> 'name')
          when 'string' then u.raw_user_meta_data ->> 'name' end), ''),
        nullif(pg_catalog.btrim(case pg_catalog.jsonb_typeof(u.raw_user_meta_data -> 'full_name')
          when 'string' then u.raw_user_meta_data ->> 'full_name' end), '')),
      'email_confirmed', u.email_confirmed_at is not null
        and nullif(pg_catalog.btrim(u.email), '') is not null
    ) order by u.id), '[]'::jsonb)
  from auth.users u
  where u.id = any (user_profiles_for.user_ids)
    and (user_profiles_for.viewer is null
      or u.id = user_profiles_for.viewer
      or exists (
        select 1
        from public.user_organizations mine
        join public.user_organizations theirs
          on theirs.organization_id = mine.organization_id
        where mine.user_id = user_profiles_for.viewer
          and theirs.user_id = u.id))
$$;

-- ---------------------------------------------------------------------------
-- Who may call what. Supabase grants every new function in public to anon
-- and authenticated, and PostgreSQL every new function to PUBLIC: revoke.

revoke all on function
  tenancy.max_invitation_lifetime(),
  tenancy.may_invite(text, text),
  tenancy.invitation_refused(),
  tenancy.invitation_json(public.org_invitations),
  tenancy.confirmed_email(uuid),
  tenancy.checked_token_hash(text),
  tenancy.create_invitation_for(jsonb, text),
  tenancy.pending_invitations_for(uuid, timestamptz),
  tenancy.revoke_invitation_for(uuid, uuid, timestamptz),
  tenancy.rotate_invitation_for(uuid, uuid, text, timestamptz, timestamptz),
  tenancy.accept_invitation_for(text, uuid, text, timestamptz),
  tenancy.member_create_invitation(jsonb, text),
  tenancy.member_pending_invitations(uuid, timestamptz),
  tenancy.require_invite_right(uuid, uuid),
  tenancy.member_revoke_invitation(uuid, uuid),
  tenancy.member_rotate_invitation(uuid, uuid, text, timestamptz),
  tenancy.member_accept_invitation(text),
  public.tenancy_create_invitation(jsonb, text),
  public.tenancy_pending_invitations(uuid, timestamptz),
  public.tenancy_revoke_invitation(uuid, uuid, timestamptz),
  public.tenancy_rotate_invitation(uuid, uuid, text, timestamptz, timestamptz),
  public.tenancy_accept_invitation_hash(text, uuid, text, timestamptz),
  public.tenancy_accept_invitation(text, uuid)
from public, anon, authenticated;

grant execute on function
  tenancy.max_invitation_lifetime(),
  tenancy.may_invite(text, text),
  tenancy.invitation_refused()
to authenticated, service_role;
grant execute on function
  tenancy.invitation_json(public.org_invitations),
  tenancy.confirmed_email(uuid),
  tenancy.checked_token_hash(text),
  tenancy.create_invitation_for(jsonb, text),
  tenancy.pending_invitations_for(uuid, timestamptz),
  tenancy.revoke_invitation_for(uuid, uuid, timestamptz),
  tenancy.rotate_invitation_for(uuid, uuid, text, timestamptz, timestamptz),
  tenancy.accept_invitation_for(text, uuid, text, timestamptz),
  -- Called inside the member_* definers, as their owner; for the service
  -- role (which has no JWT user) it refuses.
  tenancy.require_invite_right(uuid, uuid)
to service_role;
grant execute on function
  tenancy.member_create_invitation(jsonb, text),
  tenancy.member_pending_invitations(uuid, timestamptz),
  tenancy.member_revoke_invitation(uuid, uuid),
  tenancy.member_rotate_invitation(uuid, uuid, text, timestamptz),
  tenancy.member_accept_invitation(text)
to authenticated;
grant execute on function
  public.tenancy_create_invitation(jsonb, text),
  public.tenancy_pending_invitations(uuid, timestamptz),
  public.tenancy_revoke_invitation(uuid, uuid, timestamptz),
  public.tenancy_rotate_invitation(uuid, uuid, text, timestamptz, timestamptz),
  public.tenancy_accept_invitation_hash(text, uuid, text, timestamptz),
  public.tenancy_accept_invitation(text, uuid)
to authenticated, service_role;

insert into tenancy.schema_migrations (version, name)
values (8, '20261206000700_tenancy_invitations')
on conflict do nothing;
