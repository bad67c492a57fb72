-- tenancy: the grants the README lists, and the metric key as one domain.
--
-- 1. `authenticated` executes only the helpers in `tenancy` that policies,
--    triggers and its RPCs call (migrations/README.md lists them). The
--    baseline also granted it tenancy.limit_usage, which only service_role
--    RPCs and security definers call: revoked.
-- 2. tenancy.metric_key: text matching the metric rule (MetricKey::PATTERN
--    in src/ids.rs), the type of every column that holds a metric. Each of
--    those columns had its own copy of the check; they are dropped. A
--    column whose type changes is rewritten once, under an exclusive lock,
--    its rows checked against the domain; a view over it would block the
--    change.
--
-- Idempotent: a re-apply finds the domain and the columns on it, and drops
-- again the copies of the check that a re-applied baseline adds back.

revoke execute on function tenancy.limit_usage(uuid, uuid, text, date, date, timestamptz)
  from authenticated;

do $$
begin
  if pg_catalog.to_regtype('tenancy.metric_key') is null then
    create domain tenancy.metric_key as text
      constraint metric_key_check check (value ~ '^[a-z][a-z0-9_]{0,62}$');
  end if;
end
$$;

-- Each metric column onto the domain, without its own check, in one
-- statement per table. The checks are found in pg_constraint: those on
-- that column alone that match it against a regular expression.
do $$
declare
  v_table text;
  v_relation regclass;
  v_column smallint;
  v_type oid;
  v_changes text[];
  v_check text;
begin
  foreach v_table in array array['usage_limits', 'usage_counters', 'usage_reservations', 'usage_alerts'] loop
    v_relation := pg_catalog.format('public.%I', v_table)::regclass;
    select a.attnum, a.atttypid into v_column, v_type
    from pg_catalog.pg_attribute a
    where a.attrelid = v_relation and a.attname = 'metric' and not a.attisdropped;
    v_changes := '{}';
    for v_check in
      select c.conname from pg_catalog.pg_constraint c
      where c.conrelid = v_relation and c.contype = 'c' and c.conkey = array[v_column]
        and pg_catalog.strpos(pg_catalog.pg_get_constraintdef(c.oid), ' ~ ''') > 0
      order by c.conname
    loop
      v_changes := v_changes || pg_catalog.format('drop constraint %I', v_check);
    end loop;
    if v_type <> 'tenancy.metric_key'::regtype then
      v_changes := v_changes || 'alter column metric type tenancy.metric_key'::text;
    end if;
    if pg_catalog.cardinality(v_changes) > 0 then
      execute pg_catalog.format('alter table %s %s', v_relation,
                                pg_catalog.array_to_string(v_changes, ', '));
    end if;
  end loop;
end
$$;

insert into tenancy.schema_migrations (version, name)
values (4, '20261206000300_tenancy_grants_and_domains')
on conflict do nothing;
