-- tenancy: verified domains and joining through them. migrations/README.md
-- ("Verified domains") is the contract; src/model/domain.rs holds the same
-- rules in Rust, and the store contract checks both.
--
-- The operator records that an organization owns a domain (how it was
-- verified is the host's business): a row of public.org_domains, written by
-- service_role only. The organization's owners and admins choose, per
-- domain, whether users with a confirmed email there may join on their own
-- (auto_join: off, viewer or member; never higher), only through
-- public.tenancy_set_domain_auto_join. A user JWT lists the organizations it
-- may join and joins one through public.tenancy_joinable_organizations and
-- public.tenancy_join_organization, which read its confirmed email from
-- auth.users (email, email_confirmed_at: a Supabase JWT carries no
-- email_verified claim).
--
-- Matching: the part of the email after its last `@`, ASCII letters
-- lowercased, equals the domain, or, where the domain's include_subdomains
-- is set, ends in `.` and the domain. No IDNA mapping: names are ASCII
-- (punycode for internationalized ones). Of an organization's enabled
-- domains that match, the longest decides, its `off` included; a disabled
-- domain matches nothing.
--
-- RLS: owners and admins of an organization read its domains; nobody reads
-- another organization's; members and viewers read none; no user JWT writes
-- the table. Anon: nothing.
--
-- Idempotent: `if not exists`, `create or replace`, `drop policy if
-- exists`, `on conflict do nothing`.

-- ---------------------------------------------------------------------------
-- 1. The rules.

-- Why `domain` (already trimmed and lowercased) is not a domain name, or
-- null if it is one: DomainName::parse.
create or replace function tenancy.domain_problem(domain text) returns text
language sql immutable
set search_path = ''
as $$
  select case
    when domain is null or domain = '' then 'is blank'
    when domain ~ '[[:space:]]' then 'contains a space'
    when pg_catalog.strpos(domain, '@') > 0
      then 'contains an @: give the domain alone, not an email address'
    when domain like '.%' or domain like '%.' then 'starts or ends with a dot'
    when pg_catalog.octet_length(domain) > 253 then 'is longer than 253 bytes'
    when domain ~ '[^a-z0-9.-]'
      then 'contains a character other than a letter, digit, hyphen or dot (write an internationalized name in punycode)'
    when pg_catalog.strpos(domain, '..') > 0 then 'has an empty label (two dots in a row)'
    when domain ~ '[^.]{64}' then 'has a label longer than 63 bytes'
    when domain ~ '(^|\.)-|-($|\.)' then 'has a label that starts or ends with a hyphen'
    when pg_catalog.strpos(domain, '.') = 0
      then 'is a bare top-level domain; give a registered domain such as acme.com'
    when domain ~ '\.[0-9]+$' then 'ends in an all-digit label: an IP address is not a domain'
  end
$$;

-- ASCII letters of `value` lowercased, nothing else changed (lower() would
-- map some non-ASCII letters to ASCII ones, and differ from Rust's
-- to_ascii_lowercase).
create or replace function tenancy.ascii_lower(value text) returns text
language sql immutable
set search_path = ''
as $$
  select pg_catalog.translate(value, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')
$$;

-- `domain` trimmed and lowercased, checked: 22023 naming `field` unless it
-- is a domain name.
create or replace function tenancy.checked_domain(field text, domain text) returns text
language plpgsql immutable
set search_path = ''
as $$
declare
  v_domain text := tenancy.ascii_lower(pg_catalog.btrim(domain, E' \t\n\r\f\v'));
  v_problem text := tenancy.domain_problem(v_domain);
begin
  if v_problem is not null then
    raise exception '%: % %', field, coalesce(pg_catalog.quote_literal(domain), 'null'), v_problem
      using errcode = '22023';
  end if;
  return v_domain;
end
$$;

-- The domain of an email address: after its last `@`, ASCII letters
-- lowercased; null without an `@` or with nothing after it. email_domain.
create or replace function tenancy.email_domain(email text) returns text
language sql immutable
set search_path = ''
as $$
  select nullif(tenancy.ascii_lower(pg_catalog.substring(email, '@([^@]*)$')), '')
$$;

-- The names an email domain is a proper subdomain of: the text after each
-- of its dots but a leading one (`a.b.acme.com`: b.acme.com, acme.com,
-- com). DomainName::matches with include_subdomains.
create or replace function tenancy.domain_parents(email_domain text) returns text[]
language sql immutable
set search_path = ''
as $$
  select coalesce(pg_catalog.array_agg(pg_catalog.substr(email_domain, p + 1) order by p), '{}')
  from pg_catalog.generate_series(2, pg_catalog.length(email_domain)) p
  where pg_catalog.substr(email_domain, p, 1) = '.'
$$;

-- ---------------------------------------------------------------------------
-- 2. The table.

create table if not exists public.org_domains (
  organization_id uuid not null references public.organizations (id) on delete cascade,
  domain text not null,
  include_subdomains boolean not null default false,
  enabled boolean not null default true,
  auto_join text not null default 'off',
  created_at timestamptz not null default pg_catalog.now(),
  updated_at timestamptz not null default pg_catalog.now(),
  primary key (organization_id, domain),
  constraint org_domains_domain_check check (tenancy.domain_problem(domain) is null),
  constraint org_domains_auto_join_check check (auto_join in ('off', 'viewer', 'member'))
);

-- The joinable list looks domains up by name across organizations.
create index if not exists org_domains_domain_idx on public.org_domains (domain);

alter table public.org_domains enable row level security;
revoke all on table public.org_domains from public, anon, authenticated;
grant all on table public.org_domains to service_role;
grant select on table public.org_domains to authenticated;

drop policy if exists org_domains_select on public.org_domains;
create policy org_domains_select on public.org_domains
  for select to authenticated
  using (organization_id = any (array(select tenancy.org_ids('admin'))));

-- ---------------------------------------------------------------------------
-- 3. The work, for an authorized caller (service_role, or a member_*
--    definer after its checks). Executable by service_role only.

-- VerifiedDomain.
create or replace function tenancy.domain_json(d public.org_domains) returns jsonb
language sql stable
set search_path = ''
as $$
  select pg_catalog.jsonb_build_object(
    'organization_id', d.organization_id,
    'domain', d.domain,
    'include_subdomains', d.include_subdomains,
    'enabled', d.enabled,
    'auto_join', d.auto_join,
    'created_at', d.created_at,
    'updated_at', d.updated_at)
$$;

-- [VerifiedDomain] of `org`, by name (byte order).
create or replace function tenancy.domains_for(org uuid) returns jsonb
language sql stable
set search_path = ''
as $$
  select coalesce(pg_catalog.jsonb_agg(tenancy.domain_json(d) order by d.domain collate "C"),
                  '[]'::jsonb)
  from public.org_domains d
  where d.organization_id = domains_for.org
$$;

-- Sets the join choice of `org`'s `domain`; P0002 if it has no such domain.
create or replace function tenancy.set_auto_join_for(
  org uuid, domain text, auto_join text, at timestamptz
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_domain text := tenancy.checked_domain('domain', set_auto_join_for.domain);
  v_row public.org_domains;
begin
  if set_auto_join_for.auto_join is null
     or set_auto_join_for.auto_join not in ('off', 'viewer', 'member') then
    raise exception 'auto_join: % is not one of off, viewer, member',
      coalesce(pg_catalog.quote_literal(set_auto_join_for.auto_join), 'null')
      using errcode = '22023';
  end if;
  update public.org_domains d
  set auto_join = set_auto_join_for.auto_join,
      updated_at = coalesce(set_auto_join_for.at, pg_catalog.now())
  where d.organization_id = set_auto_join_for.org and d.domain = v_domain
  returning d.* into v_row;
  if not found then
    raise exception 'domain: organization % has no verified domain %', set_auto_join_for.org, v_domain
      using errcode = 'P0002';
  end if;
  return tenancy.domain_json(v_row);
end
$$;

-- `user`'s email if confirmed (auth.users.email_confirmed_at set), trimmed;
-- else null.
create or replace function tenancy.join_email(p_user uuid) returns text
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_email text;
begin
  select nullif(pg_catalog.btrim(u.email), '') into v_email
  from auth.users u
  where u.id = join_email.p_user and u.email_confirmed_at is not null;
  return v_email;
end
$$;

-- [JoinableOrg] for `p_user` with `p_email`: the organizations it is not a
-- member of whose deciding domain lets it join, by name (byte order), id.
create or replace function tenancy.joinable_for(p_user uuid, p_email text) returns jsonb
language sql stable
set search_path = ''
as $$
  with e as (
    select tenancy.email_domain(joinable_for.p_email) as ed
  ), decided as (
    select distinct on (d.organization_id) d.organization_id, d.domain, d.auto_join
    from public.org_domains d, e
    where d.enabled
      and (d.domain = e.ed
        or (d.include_subdomains and d.domain = any (tenancy.domain_parents(e.ed))))
    order by d.organization_id, pg_catalog.length(d.domain) desc
  )
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
      'organization', tenancy.organization_json(o),
      'role', x.auto_join,
      'domain', x.domain
    ) order by o.name collate "C", o.id), '[]'::jsonb)
  from decided x
  join public.organizations o on o.id = x.organization_id
  where x.auto_join <> 'off'
    and not exists (
      select 1 from public.user_organizations m
      where m.organization_id = x.organization_id and m.user_id = joinable_for.p_user)
$$;

-- Adds `p_user` to `p_org` through the domain of `p_email`, atomically:
-- {membership, joined}. A member already: its membership, joined false,
-- nothing changed. Else the deciding domain's role (locked against a
-- concurrent change until the transaction ends), joined true; else 42501,
-- the same for an organization that does not exist.
create or replace function tenancy.join_for(
  p_org uuid, p_user uuid, p_email text, p_at timestamptz
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_ed text := tenancy.email_domain(join_for.p_email);
  v_member public.user_organizations;
  v_role text;
begin
  if join_for.p_org is null then
    raise exception 'org_id is required' using errcode = '22023';
  end if;
  if join_for.p_user is null then
    raise exception 'user_id is required' using errcode = '22023';
  end if;
  select m.* into v_member from public.user_organizations m
  where m.organization_id = join_for.p_org and m.user_id = join_for.p_user;
  if found then
    return pg_catalog.jsonb_build_object('membership', tenancy.membership_json(v_member),
                                         'joined', false);
  end if;
  select d.auto_join into v_role
  from public.org_domains d
  where d.organization_id = join_for.p_org
    and d.enabled
    and (d.domain = v_ed
      or (d.include_subdomains and d.domain = any (tenancy.domain_parents(v_ed))))
  order by pg_catalog.length(d.domain) desc
  limit 1
  for share;
  if v_role is null or v_role = 'off' then
    raise exception 'user % may not join organization % through the domain of their email',
      join_for.p_user, join_for.p_org using errcode = '42501';
  end if;
  insert into public.user_organizations (organization_id, user_id, role, created_at)
  values (join_for.p_org, join_for.p_user, v_role, coalesce(join_for.p_at, pg_catalog.now()))
  on conflict do nothing
  returning * into v_member;
  if not found then
    -- A concurrent join landed first.
    select m.* into v_member from public.user_organizations m
    where m.organization_id = join_for.p_org and m.user_id = join_for.p_user;
    return pg_catalog.jsonb_build_object('membership', tenancy.membership_json(v_member),
                                         'joined', false);
  end if;
  return pg_catalog.jsonb_build_object('membership', tenancy.membership_json(v_member),
                                       'joined', true);
end
$$;

-- ---------------------------------------------------------------------------
-- 4. The checked path for user JWTs: security definers that first check
--    who the caller is.

-- Owners and admins of `org`: its domains.
create or replace function tenancy.member_domains(org uuid) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
begin
  perform tenancy.require_role(org, null, 'admin');
  return tenancy.domains_for(org);
end
$$;

-- Owners and admins of `org`: the join choice of one of its domains, at
-- the database's now().
create or replace function tenancy.member_set_auto_join(org uuid, domain text, auto_join text)
returns jsonb
language plpgsql security definer
set search_path = ''
as $$
begin
  perform tenancy.require_role(org, null, 'admin');
  return tenancy.set_auto_join_for(org, domain, auto_join, pg_catalog.now());
end
$$;

-- The JWT's user, acting for itself (`for_user` null or its own id); 42501
-- otherwise.
create or replace function tenancy.require_self(for_user uuid) returns uuid
language plpgsql stable
set search_path = ''
as $$
declare
  v_user uuid := (select auth.uid());
begin
  if v_user is null then
    raise exception 'this needs a signed-in user (a user JWT) or the service role'
      using errcode = '42501';
  end if;
  if for_user is not null and for_user <> v_user then
    raise exception 'user_id: a user acts only for itself, not for user %', for_user
      using errcode = '42501';
  end if;
  return v_user;
end
$$;

-- The organizations the JWT's user may join through its confirmed email.
create or replace function tenancy.member_joinable(for_user uuid) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_user uuid := tenancy.require_self(for_user);
  v_email text := tenancy.join_email(v_user);
begin
  if v_email is null then
    return '[]'::jsonb;
  end if;
  return tenancy.joinable_for(v_user, v_email);
end
$$;

-- The JWT's user joins `org` through its confirmed email.
create or replace function tenancy.member_join(org uuid, for_user uuid) returns jsonb
language plpgsql security definer
set search_path = ''
as $$
declare
  v_user uuid := tenancy.require_self(for_user);
  v_email text := tenancy.join_email(v_user);
begin
  if v_email is null then
    raise exception 'user % has no confirmed email, so may not join organization % through its domain',
      v_user, org using errcode = '42501';
  end if;
  return tenancy.join_for(org, v_user, v_email, pg_catalog.now());
end
$$;

-- ---------------------------------------------------------------------------
-- 5. The functions in `public`, each `security invoker`.

-- The store's (service_role only).

-- tenancy_put_domain(org_id, domain, include_subdomains, enabled, at)
--   -> VerifiedDomain
-- Records or changes `domain` of `org_id`: the fields given are written,
-- the null ones kept (a new domain: include_subdomains false, enabled
-- true, auto_join off, created_at = at); updated_at = at (default now()).
-- The org's auto_join is never changed here. P0002 for a missing
-- organization; 22023 for a bad domain.
create or replace function public.tenancy_put_domain(
  org_id uuid,
  domain text,
  include_subdomains boolean default null,
  enabled boolean default null,
  at timestamptz default null
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_domain text := tenancy.checked_domain('domain', tenancy_put_domain.domain);
  v_at timestamptz := coalesce(tenancy_put_domain.at, pg_catalog.now());
  v_row public.org_domains;
begin
  if not exists (select 1 from public.organizations o where o.id = tenancy_put_domain.org_id) then
    raise exception 'org_id: organization % does not exist', tenancy_put_domain.org_id
      using errcode = 'P0002';
  end if;
  insert into public.org_domains as d
    (organization_id, domain, include_subdomains, enabled, created_at, updated_at)
  values (tenancy_put_domain.org_id, v_domain,
          coalesce(tenancy_put_domain.include_subdomains, false),
          coalesce(tenancy_put_domain.enabled, true), v_at, v_at)
  on conflict on constraint org_domains_pkey do update
  set include_subdomains = coalesce(tenancy_put_domain.include_subdomains, d.include_subdomains),
      enabled = coalesce(tenancy_put_domain.enabled, d.enabled),
      updated_at = v_at
  returning d.* into v_row;
  return tenancy.domain_json(v_row);
end
$$;

-- tenancy_remove_domain(org_id, domain) -> {removed}
create or replace function public.tenancy_remove_domain(org_id uuid, domain text) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_domain text := tenancy.checked_domain('domain', tenancy_remove_domain.domain);
begin
  delete from public.org_domains d
  where d.organization_id = tenancy_remove_domain.org_id and d.domain = v_domain;
  return pg_catalog.jsonb_build_object('removed', found);
end
$$;

-- tenancy_domain_joinable(user_id, email) -> [JoinableOrg]
-- For an email the caller vouches is the user's, confirmed.
create or replace function public.tenancy_domain_joinable(user_id uuid, email text) returns jsonb
language sql stable
set search_path = ''
as $$
  select tenancy.joinable_for(tenancy_domain_joinable.user_id, tenancy_domain_joinable.email)
$$;

-- tenancy_domain_join(org_id, user_id, email, joined_at) -> {membership, joined}
-- For an email the caller vouches is the user's, confirmed.
create or replace function public.tenancy_domain_join(
  org_id uuid, user_id uuid, email text, joined_at timestamptz
) returns jsonb
language sql
set search_path = ''
as $$
  select tenancy.join_for(tenancy_domain_join.org_id, tenancy_domain_join.user_id,
                          tenancy_domain_join.email, tenancy_domain_join.joined_at)
$$;

-- Entry points for any caller: service_role runs the work itself; a user
-- JWT goes through the member_* definers.

-- tenancy_domains(org_id) -> [VerifiedDomain]: service_role, or an owner
-- or admin of org_id.
create or replace function public.tenancy_domains(org_id uuid) returns jsonb
language plpgsql stable
set search_path = ''
as $$
begin
  if tenancy.is_privileged() then
    return tenancy.domains_for(tenancy_domains.org_id);
  end if;
  return tenancy.member_domains(tenancy_domains.org_id);
end
$$;

-- tenancy_set_domain_auto_join(org_id, domain, auto_join, at) -> VerifiedDomain
-- service_role (updated_at = at, default now()), or an owner or admin of
-- org_id (updated_at = now(); `at` ignored).
create or replace function public.tenancy_set_domain_auto_join(
  org_id uuid, domain text, auto_join text, at timestamptz default null
) returns jsonb
language plpgsql
set search_path = ''
as $$
begin
  if tenancy.is_privileged() then
    return tenancy.set_auto_join_for(tenancy_set_domain_auto_join.org_id,
      tenancy_set_domain_auto_join.domain, tenancy_set_domain_auto_join.auto_join,
      tenancy_set_domain_auto_join.at);
  end if;
  return tenancy.member_set_auto_join(tenancy_set_domain_auto_join.org_id,
    tenancy_set_domain_auto_join.domain, tenancy_set_domain_auto_join.auto_join);
end
$$;

-- tenancy_joinable_organizations(user_id) -> [JoinableOrg]
-- The organizations user_id (a user JWT: itself, the default) may join
-- through its confirmed email; [] without one.
create or replace function public.tenancy_joinable_organizations(user_id uuid default null)
returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_email text;
begin
  if tenancy.is_privileged() then
    if tenancy_joinable_organizations.user_id is null then
      raise exception 'user_id is required with the service role' using errcode = '22023';
    end if;
    v_email := tenancy.join_email(tenancy_joinable_organizations.user_id);
    if v_email is null then
      return '[]'::jsonb;
    end if;
    return tenancy.joinable_for(tenancy_joinable_organizations.user_id, v_email);
  end if;
  return tenancy.member_joinable(tenancy_joinable_organizations.user_id);
end
$$;

-- tenancy_join_organization(org_id, user_id) -> {membership, joined}
-- user_id (a user JWT: itself, the default) joins org_id through its
-- confirmed email. 42501: no confirmed email, or no enabled domain of
-- org_id with joining on matches it (also for an organization that does
-- not exist).
create or replace function public.tenancy_join_organization(org_id uuid, user_id uuid default null)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_email text;
begin
  if tenancy.is_privileged() then
    if tenancy_join_organization.user_id is null then
      raise exception 'user_id is required with the service role' using errcode = '22023';
    end if;
    v_email := tenancy.join_email(tenancy_join_organization.user_id);
    if v_email is null then
      raise exception 'user % has no confirmed email, so may not join organization % through its domain',
        tenancy_join_organization.user_id, tenancy_join_organization.org_id using errcode = '42501';
    end if;
    return tenancy.join_for(tenancy_join_organization.org_id, tenancy_join_organization.user_id,
                            v_email, pg_catalog.now());
  end if;
  return tenancy.member_join(tenancy_join_organization.org_id, tenancy_join_organization.user_id);
end
$$;

-- ---------------------------------------------------------------------------
-- Who may call what. Supabase grants every new function in public to anon
-- and authenticated, and PostgreSQL every new function to PUBLIC: revoke.

revoke all on function
  tenancy.domain_problem(text),
  tenancy.ascii_lower(text),
  tenancy.checked_domain(text, text),
  tenancy.email_domain(text),
  tenancy.domain_parents(text),
  tenancy.domain_json(public.org_domains),
  tenancy.domains_for(uuid),
  tenancy.set_auto_join_for(uuid, text, text, timestamptz),
  tenancy.join_email(uuid),
  tenancy.joinable_for(uuid, text),
  tenancy.join_for(uuid, uuid, text, timestamptz),
  tenancy.member_domains(uuid),
  tenancy.member_set_auto_join(uuid, text, text),
  tenancy.require_self(uuid),
  tenancy.member_joinable(uuid),
  tenancy.member_join(uuid, uuid),
  public.tenancy_put_domain(uuid, text, boolean, boolean, timestamptz),
  public.tenancy_remove_domain(uuid, text),
  public.tenancy_domain_joinable(uuid, text),
  public.tenancy_domain_join(uuid, uuid, text, timestamptz),
  public.tenancy_domains(uuid),
  public.tenancy_set_domain_auto_join(uuid, text, text, timestamptz),
  public.tenancy_joinable_organizations(uuid),
  public.tenancy_join_organization(uuid, uuid)
from public, anon, authenticated;

-- The rules, the argument checks and the work itself, unchecked:
-- service_role (and the definers, as owner). A user JWT needs none of
-- them: it reaches them only through the member_* definers (the table's
-- check constraint calls domain_problem as the writer, never a user).
grant execute on function
  tenancy.domain_problem(text),
  tenancy.ascii_lower(text),
  tenancy.checked_domain(text, text),
  tenancy.email_domain(text),
  tenancy.domain_parents(text),
  tenancy.require_self(uuid),
  tenancy.domain_json(public.org_domains),
  tenancy.domains_for(uuid),
  tenancy.set_auto_join_for(uuid, text, text, timestamptz),
  tenancy.join_email(uuid),
  tenancy.joinable_for(uuid, text),
  tenancy.join_for(uuid, uuid, text, timestamptz),
  public.tenancy_put_domain(uuid, text, boolean, boolean, timestamptz),
  public.tenancy_remove_domain(uuid, text),
  public.tenancy_domain_joinable(uuid, text),
  public.tenancy_domain_join(uuid, uuid, text, timestamptz)
to service_role;

-- The checked path: user JWTs.
grant execute on function
  tenancy.member_domains(uuid),
  tenancy.member_set_auto_join(uuid, text, text),
  tenancy.member_joinable(uuid),
  tenancy.member_join(uuid, uuid)
to authenticated;

grant execute on function
  public.tenancy_domains(uuid),
  public.tenancy_set_domain_auto_join(uuid, text, text, timestamptz),
  public.tenancy_joinable_organizations(uuid),
  public.tenancy_join_organization(uuid, uuid)
to authenticated, service_role;

insert into tenancy.schema_migrations (version, name)
values (9, '20261206000800_tenancy_verified_domains')
on conflict do nothing;
