//! Rules written in Rust and again in SQL, run on one table of cases
//! against both so they cannot drift:
//!
//! - a. the membership rules: `MembershipChange::check` against what the
//!   `user_organizations_guard` trigger and RLS let a user JWT do;
//! - b. the validation patterns: `Slug`, `FeatureKey`, `MetricKey` against
//!   the check constraints (their text, and a few thousand strings);
//! - c. the `limit_type` aliases: `LIMIT_TYPE_ALIASES` and
//!   `LimitType::parse` against `tenancy.usage_limits_derive`;
//! - d. the RPC response shapes: `migrations/examples/` against what each
//!   jsonb RPC returns;
//! - e. per-user usage rows under RLS (in [`crate::rls`]).
//!
//! Each check returns its disagreements. The last test applies the
//! migrations with one rule of each check drifted, in a scratch database,
//! and sees every check report it.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::strategy::ValueTree as _;
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};
use tenancy::ids::PlanKey;
use tenancy::limits::LIMIT_TYPE_ALIASES;
use tenancy::limits::LimitType;
use tenancy::model::MembershipChange;
use tenancy::{FeatureKey, MetricKey, Role, Slug};
use tenancy_testkit::pg::{self, Actor, Cluster, act, create_user};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Error, Transaction};
use uuid::Uuid;

use crate::support::{
    History, Reserve, add_member, claim_alert, commit_on, create_org, event, example, examples,
    history_on, hold_event, noon, put_limit, record, release_on, reserve, shape, snapshot_on,
};

// ---- a. membership rules ----------------------------------------------------------------

/// One membership change by an actor: `before`/`after` the target's role
/// (`None`: not a member), on the actor itself or on another user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Case {
    actor: Role,
    on_self: bool,
    before: Option<Role>,
    after: Option<Role>,
}

impl Case {
    /// What the Rust rule says.
    fn rust(self) -> bool {
        let change = MembershipChange {
            before: self.before,
            after: self.after,
        };
        change.check(self.actor, self.on_self).is_ok()
    }
}

/// Every case: 4 actor roles × self or other × 5 × 5 states, less the 8
/// where neither side is a membership.
fn cases() -> Vec<Case> {
    let states = [
        None,
        Some(Role::Owner),
        Some(Role::Admin),
        Some(Role::Member),
        Some(Role::Viewer),
    ];
    let mut cases = Vec::new();
    for actor in Role::ALL {
        for on_self in [false, true] {
            for before in states {
                for after in states
                    .into_iter()
                    .filter(|a| before.is_some() || a.is_some())
                {
                    cases.push(Case {
                        actor,
                        on_self,
                        before,
                        after,
                    });
                }
            }
        }
    }
    cases
}

/// What a user JWT attempts on `user_organizations` for a case.
#[derive(Debug, Clone, Copy)]
enum Op {
    Insert(Uuid, Role),
    SetRole(Uuid, Role),
    Remove(Uuid),
}

/// One organization per actor role: the actor (the creator, for owner), an
/// owner besides it (so the last-owner rule never decides), and a member
/// of each role to act on, reused by every case of that actor role.
#[derive(Debug)]
struct Stage {
    org: Uuid,
    actor: Uuid,
    members: Vec<(Role, Uuid)>,
}

impl Stage {
    async fn new(db: &Client, actor_role: Role) -> Stage {
        let creator = create_user(db).await;
        let org = create_org(db, creator).await;
        let mut actor = creator;
        if actor_role != Role::Owner {
            actor = create_user(db).await;
            add_member(db, org, actor, actor_role.as_str()).await;
        }
        let mut members = Vec::new();
        for role in Role::ALL {
            let user = create_user(db).await;
            add_member(db, org, user, role.as_str()).await;
            members.push((role, user));
        }
        Stage {
            org,
            actor,
            members,
        }
    }

    /// Who acts and what it does. On oneself, the actor is the member
    /// whose role is `before` (or, for `before: None`, a user of no
    /// organization inserting itself): the Rust rule for oneself does not
    /// depend on the actor's role, and in SQL that role *is* `before`.
    fn attempt(&self, case: Case, outsider: Uuid) -> (Uuid, Op) {
        let target = match case.before {
            None => outsider,
            Some(before) => self.members.iter().find(|m| m.0 == before).unwrap().1,
        };
        let who = if case.on_self { target } else { self.actor };
        let op = match (case.before, case.after) {
            (None, Some(after)) => Op::Insert(target, after),
            (Some(_), Some(after)) => Op::SetRole(target, after),
            (_, None) => Op::Remove(target),
        };
        (who, op)
    }
}

/// Runs `op` in a savepoint that is then rolled back: whether it changed
/// one row. Refused (42501) or filtered out by RLS (0 rows) is `false`.
async fn allowed(tx: &Transaction<'_>, org: Uuid, op: Op) -> Result<bool, Error> {
    tx.batch_execute("savepoint attempt").await?;
    let res = match op {
        Op::Insert(user, role) => {
            tx.execute(
                "insert into user_organizations (organization_id, user_id, role) values ($1, $2, $3)",
                &[&org, &user, &role.as_str()],
            )
            .await
        }
        Op::SetRole(user, role) => {
            tx.execute(
                "update user_organizations set role = $3 where organization_id = $1 and user_id = $2",
                &[&org, &user, &role.as_str()],
            )
            .await
        }
        Op::Remove(user) => {
            tx.execute(
                "delete from user_organizations where organization_id = $1 and user_id = $2",
                &[&org, &user],
            )
            .await
        }
    };
    tx.batch_execute("rollback to savepoint attempt").await?;
    match res {
        Ok(rows) => Ok(rows == 1),
        Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => Ok(false),
        Err(e) => Err(e),
    }
}

/// What the SQL allows in every case, each attempted by a user JWT.
async fn membership_answers(db: &Client, conn: &mut Client) -> Vec<(Case, bool)> {
    let outsider = create_user(db).await;
    let mut answers = Vec::new();
    for actor_role in Role::ALL {
        let stage = Stage::new(db, actor_role).await;
        let mut by_who: BTreeMap<Uuid, Vec<(Case, Op)>> = BTreeMap::new();
        for case in cases().into_iter().filter(|c| c.actor == actor_role) {
            let (who, op) = stage.attempt(case, outsider);
            by_who.entry(who).or_default().push((case, op));
        }
        for (who, attempts) in by_who {
            let got = act(conn, Actor::User(who), async |tx| {
                let mut got = Vec::new();
                for &(case, op) in &attempts {
                    got.push((case, allowed(tx, stage.org, op).await?));
                }
                Ok(got)
            })
            .await
            .expect("every attempt is allowed or refused with 42501");
            answers.extend(got);
        }
    }
    answers
}

/// The cases where Rust and SQL disagree.
fn membership_disagreements(answers: &[(Case, bool)]) -> Vec<String> {
    answers
        .iter()
        .filter(|(case, sql)| case.rust() != *sql)
        .map(|(case, sql)| format!("{case:?}: Rust allows {}, SQL {sql}", case.rust()))
        .collect()
}

/// A known answer: (actor, on self, before, after, allowed).
type Known = (Role, bool, Option<Role>, Option<Role>, bool);

/// Known answers, by hand.
const KNOWN: [Known; 16] = {
    use Role::*;
    [
        (Admin, false, None, Some(Member), true),
        (Admin, false, Some(Member), Some(Viewer), true),
        (Admin, false, Some(Viewer), None, true),
        (Admin, false, Some(Member), Some(Admin), false),
        (Admin, false, None, Some(Admin), false),
        (Admin, false, Some(Owner), None, false),
        (Owner, false, Some(Admin), Some(Owner), true),
        (Owner, false, Some(Owner), None, true),
        (Member, false, Some(Viewer), None, false),
        (Viewer, false, None, Some(Viewer), false),
        (Viewer, true, Some(Viewer), None, true),
        (Member, true, Some(Member), Some(Admin), false),
        (Admin, true, Some(Admin), Some(Member), true),
        (Owner, true, Some(Owner), Some(Owner), true),
        (Owner, true, None, Some(Owner), false),
        (Member, true, None, Some(Viewer), false),
    ]
};

#[tokio::test]
async fn membership_rules_agree_in_rust_and_sql() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let mut conn = pg.authenticator().await;
    let answers = membership_answers(&db, &mut conn).await;
    assert_eq!(answers.len(), 192, "every case, once");
    let allowed = answers.iter().filter(|a| a.1).count();
    assert!(
        allowed > 0 && allowed < answers.len(),
        "some allowed, some refused"
    );
    let problems = membership_disagreements(&answers);
    assert!(problems.is_empty(), "{problems:#?}");
    for (actor, on_self, before, after, want) in KNOWN {
        let case = Case {
            actor,
            on_self,
            before,
            after,
        };
        let sql = answers.iter().find(|a| a.0 == case).unwrap().1;
        assert_eq!((case.rust(), sql), (want, want), "{case:?}: (Rust, SQL)");
    }
}

// ---- b. validation patterns -----------------------------------------------------------

/// A validated name's Rust rule and the column whose constraint states it.
#[derive(Debug, Clone, Copy)]
struct NameRule {
    table: &'static str,
    column: &'static str,
    pattern: &'static str,
    parses: fn(&str) -> bool,
}

fn name_rules() -> [NameRule; 8] {
    let metric = |table| NameRule {
        table,
        column: "metric",
        pattern: MetricKey::PATTERN,
        parses: |s| MetricKey::parse(s).is_ok(),
    };
    [
        NameRule {
            table: "organizations",
            column: "slug",
            pattern: Slug::PATTERN,
            parses: |s| Slug::parse(s).is_ok(),
        },
        NameRule {
            table: "org_features",
            column: "feature_key",
            pattern: FeatureKey::PATTERN,
            parses: |s| FeatureKey::parse(s).is_ok(),
        },
        NameRule {
            table: "plans",
            column: "plan_key",
            pattern: PlanKey::PATTERN,
            parses: |s| PlanKey::parse(s).is_ok(),
        },
        NameRule {
            table: "plan_features",
            column: "feature_key",
            pattern: FeatureKey::PATTERN,
            parses: |s| FeatureKey::parse(s).is_ok(),
        },
        metric("usage_limits"),
        metric("usage_counters"),
        metric("usage_reservations"),
        metric("usage_alerts"),
    ]
}

/// The check constraint on `table.column`, or on the column's domain,
/// that matches a regular expression (exactly one), as
/// `pg_get_constraintdef` prints it.
async fn regex_constraint(db: &Client, table: &str, column: &str) -> String {
    let defs: Vec<String> = db
        .query(
            "select pg_get_constraintdef(c.oid) from pg_attribute a \
             join pg_constraint c on c.contype = 'c' \
               and ((c.conrelid = a.attrelid and a.attnum = any (c.conkey)) \
                    or c.contypid = a.atttypid) \
             where a.attrelid = ('public.' || $1)::regclass and a.attname = $2",
            &[&table, &column],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .filter(|def: &String| def.contains(" ~ '"))
        .collect();
    assert_eq!(
        defs.len(),
        1,
        "one regex check on {table}.{column}: {defs:?}"
    );
    defs.into_iter().next().unwrap()
}

/// The pattern of a constraint `… col ~ '<pattern>'::text …` and its
/// `char_length(col) <= <max>`, if any.
fn pattern_and_max(def: &str, column: &str) -> (String, Option<i32>) {
    let start = def.find(" ~ '").expect("a regex match") + 4;
    let end = start + def[start..].find("'::text").expect("a text literal");
    let bound = format!("char_length({column}) <= ");
    let max = def.find(&bound).map(|i| {
        let digits: String = def[i + bound.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().unwrap()
    });
    (def[start..end].to_owned(), max)
}

/// Strings near and far from the rules: fixed edge cases (empty, lengths
/// around the limits, hyphens, underscores, dots, capitals, non-ASCII,
/// newlines) and a few thousand from seeded proptest strategies.
fn candidates() -> Vec<String> {
    let mut out: Vec<String> = [
        "",
        "a",
        "z",
        "0",
        "9",
        "-",
        "_",
        ".",
        "a-",
        "-a",
        "a--b",
        "a-b",
        "a-b-c",
        "a_b",
        "a.b",
        "_a",
        ".a",
        "1a",
        "a1",
        "A",
        "aB",
        "é",
        "aé",
        "ß",
        "ａ",
        "\u{212A}",
        "İ",
        "a\n",
        "\na",
        "a b",
        " a",
        "a ",
        "a\t",
        "abc\r",
        "a\u{301}",
        "ab\u{200b}",
        "🦀",
        "a$",
        "^a",
        "a*",
    ]
    .map(String::from)
    .to_vec();
    for n in 60..=66 {
        out.push("a".repeat(n));
        out.push(format!("a{}", "_".repeat(n - 1)));
        out.push(format!("a{}", ".".repeat(n - 1)));
        out.push(format!("{}{}", "a-".repeat(n / 2), "b".repeat(n % 2 + 1)));
        out.push(format!("{}é", "a".repeat(n - 1)));
    }
    let strategies: Vec<BoxedStrategy<String>> = vec![
        "[a-z0-9-]{0,10}".boxed(),
        "-?[a-z0-9]{1,4}(-{1,2}[a-z0-9]{0,4}){0,3}-?".boxed(),
        "[a-z][a-z0-9_.-]{0,10}".boxed(),
        "[a-z0-9_.-]{58,70}".boxed(),
        "[a-z][a-z0-9_]{58,66}".boxed(),
        "[a-z0-9]{1,8}(-[a-z0-9]{1,8}){5,9}".boxed(),
        "[A-Za-z0-9 _.\\-]{0,8}".boxed(),
        "[a-zA-Z0-9_.\\-éßİＡ\u{212A}\n\t]{0,8}".boxed(),
        any::<String>().boxed(),
    ];
    let mut runner = TestRunner::deterministic();
    for strategy in &strategies {
        for _ in 0..400 {
            out.push(strategy.new_tree(&mut runner).expect("a value").current());
        }
    }
    // PostgreSQL text cannot hold NUL (and no rule accepts it).
    out.retain(|s| !s.contains('\0'));
    out
}

/// `s ~ pattern and char_length(s) <= max` for every string, in one query.
async fn sql_accepts(
    db: &Client,
    strings: &[String],
    pattern: &str,
    max: Option<i32>,
) -> Vec<bool> {
    db.query_one(
        "select array_agg(s ~ $2 and ($3::int4 is null or char_length(s) <= $3) order by n) \
         from unnest($1::text[]) with ordinality as u(s, n)",
        &[&strings, &pattern, &max],
    )
    .await
    .unwrap()
    .get(0)
}

/// Where the Rust parsers and the constraints disagree: a pattern not
/// stated verbatim, or a string one accepts and the other refuses.
async fn pattern_disagreements(db: &Client) -> Vec<String> {
    let strings = candidates();
    let mut problems = Vec::new();
    for rule in name_rules() {
        let at = format!("{}.{}", rule.table, rule.column);
        let def = regex_constraint(db, rule.table, rule.column).await;
        if !def.contains(&format!("'{}'", rule.pattern)) {
            problems.push(format!("{at}: {:?} is not in {def}", rule.pattern));
        }
        let (pattern, max) = pattern_and_max(&def, rule.column);
        let sql = sql_accepts(db, &strings, &pattern, max).await;
        let rust: Vec<bool> = strings.iter().map(|s| (rule.parses)(s)).collect();
        assert!(
            rust.contains(&true) && rust.contains(&false),
            "{at}: both kinds"
        );
        let differ: Vec<String> = strings
            .iter()
            .zip(rust.iter().zip(&sql))
            .filter(|(_, (r, s))| r != s)
            .map(|(string, (r, _))| format!("{string:?} (Rust {r})"))
            .collect();
        if !differ.is_empty() {
            let some = &differ[..differ.len().min(5)];
            problems.push(format!(
                "{at}: {} of {} strings disagree: {some:?}",
                differ.len(),
                strings.len()
            ));
        }
    }
    problems
}

#[tokio::test]
async fn validation_patterns_agree_in_rust_and_sql() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let problems = pattern_disagreements(&db).await;
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(candidates().len() > 3000, "a few thousand strings");
    // The slug bound is stated in SQL, not in the pattern.
    let def = regex_constraint(&db, "organizations", "slug").await;
    assert_eq!(
        pattern_and_max(&def, "slug"),
        (Slug::PATTERN.to_owned(), Some(63))
    );
}

// ---- c. limit_type aliases --------------------------------------------------------------

/// Every `when '<short>' then '<metric>'` of a function's source (any
/// whitespace between the words), sorted.
fn when_then_pairs(source: &str) -> Vec<(String, String)> {
    /// The quoted literal at the start of `s`, and what follows it.
    fn literal(s: &str) -> Option<(&str, &str)> {
        let s = s.trim_start().strip_prefix('\'')?;
        let end = s.find('\'')?;
        Some((&s[..end], &s[end + 1..]))
    }
    let mut pairs = Vec::new();
    for after_when in source.split("when").skip(1) {
        let Some((short, rest)) = literal(after_when) else {
            continue;
        };
        let Some(rest) = rest.trim_start().strip_prefix("then") else {
            continue;
        };
        if let Some((metric, _)) = literal(rest) {
            pairs.push((short.to_owned(), metric.to_owned()));
        }
    }
    pairs.sort();
    pairs
}

/// `limit_type` strings: the plan's, every alias (Rust's and SQL's) in both
/// periods, canonical names, and invalid ones.
fn limit_types(sql_aliases: &[(String, String)]) -> Vec<String> {
    let mut types: Vec<String> = [
        "monthly_tokens",
        "monthly_cost",
        "daily_ads",
        "daily_images",
        "daily_tokens",
        "daily_cost_usd",
        "monthly_ads_created",
        "daily_ads_",
        "weekly_tokens",
        "daily_",
        "monthly",
        "daily",
        "",
        "daily__x",
        "daily_Tokens",
        "Daily_tokens",
        "daily_1x",
        "daily_a-b",
        "daily_a.b",
        "monthly_cost usd",
        "daily_é",
    ]
    .map(String::from)
    .to_vec();
    types.push(format!("daily_{}", "a".repeat(63)));
    types.push(format!("monthly_{}", "a".repeat(64)));
    let rust_aliases = LIMIT_TYPE_ALIASES
        .into_iter()
        .map(|(short, _)| short.to_owned());
    for short in rust_aliases.chain(sql_aliases.iter().map(|a| a.0.clone())) {
        types.push(format!("daily_{short}"));
        types.push(format!("monthly_{short}"));
    }
    types.sort();
    types.dedup();
    types
}

/// The (metric, period) the trigger derives for a row with only the plan's
/// columns, or `None` when it refuses it (23514).
async fn sql_derives(
    tx: &Transaction<'_>,
    org: Uuid,
    limit_type: &str,
) -> Result<Option<(String, String)>, Error> {
    tx.batch_execute("savepoint derive").await?;
    let res = tx
        .query_one(
            "insert into usage_limits (organization_id, limit_type, limit_value) values ($1, $2, 1) \
             returning metric, period",
            &[&org, &limit_type],
        )
        .await;
    tx.batch_execute("rollback to savepoint derive").await?;
    match res {
        Ok(row) => Ok(Some((row.get(0), row.get(1)))),
        Err(e) if e.code() == Some(&SqlState::CHECK_VIOLATION) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Where the aliases, or what a `limit_type` derives, differ.
async fn alias_disagreements(db: &mut Client) -> Vec<String> {
    let source: String = db
        .query_one(
            "select prosrc from pg_proc where oid = 'tenancy.usage_limits_derive'::regproc",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let sql_aliases = when_then_pairs(&source);
    let mut rust_aliases: Vec<(String, String)> = LIMIT_TYPE_ALIASES
        .iter()
        .map(|(s, m)| (s.to_string(), m.to_string()))
        .collect();
    rust_aliases.sort();
    let mut problems = Vec::new();
    if sql_aliases != rust_aliases {
        problems.push(format!(
            "aliases: Rust {rust_aliases:?}, SQL {sql_aliases:?}"
        ));
    }
    let org = create_org(db, create_user(db).await).await;
    let tx = db.transaction().await.unwrap();
    for limit_type in limit_types(&sql_aliases) {
        let rust = LimitType::parse(&limit_type)
            .ok()
            .map(|t| (t.metric.to_string(), t.period.to_string()));
        let sql = sql_derives(&tx, org, &limit_type).await.unwrap();
        if rust != sql {
            problems.push(format!("{limit_type:?}: Rust {rust:?}, SQL {sql:?}"));
        }
    }
    tx.rollback().await.unwrap();
    problems
}

#[tokio::test]
async fn limit_type_aliases_agree_in_rust_and_sql() {
    let Some(pg) = Cluster::shared() else { return };
    let mut db = pg.superuser().await;
    let problems = alias_disagreements(&mut db).await;
    assert!(problems.is_empty(), "{problems:#?}");
    // By hand: the plan's three, and the pairs the trigger spells.
    for (limit_type, metric, period) in [
        ("monthly_cost", "cost_usd", "monthly"),
        ("daily_ads", "ads_created", "daily"),
        ("daily_images", "images", "daily"),
    ] {
        let t = LimitType::parse(limit_type).unwrap();
        assert_eq!((t.metric.as_str(), t.period.as_str()), (metric, period));
    }
    let source = "case v when 'cost' then 'cost_usd' when  'ads'  then 'ads_created' else v end";
    let want =
        [("ads", "ads_created"), ("cost", "cost_usd")].map(|(a, b)| (a.to_owned(), b.to_owned()));
    assert_eq!(when_then_pairs(source), want);
}

// ---- d. RPC response shapes -----------------------------------------------------------------

/// One real response of each jsonb RPC, by name: an org with an org-wide
/// and a per-user limit, usage of both scopes, and holds, so each array
/// holds every variant of its elements. The history is the org-wide and a
/// user's history together (one call returns one scope). The RPCs of the
/// later migrations answer in [`crate::examples::responses`].
async fn live_responses(db: &Client) -> BTreeMap<String, Value> {
    let (owner, member) = (create_user(db).await, create_user(db).await);
    let org = create_org(db, owner).await;
    add_member(db, org, member, "member").await;
    put_limit(db, org, None, "tokens", "monthly", 1000, "hard").await;
    put_limit(db, org, Some(member), "tokens", "daily", 500, "soft").await;
    let e1 = event(
        org,
        Some(member),
        json!({"tokens": 120, "cost_usd": "1.25"}),
    );
    let e2 = event(org, None, json!({"tokens": 80}));
    let mut out = BTreeMap::new();
    out.insert(
        "tenancy_record_usage",
        record(db, &json!([e1.clone(), e2, e1])).await,
    );
    let (hold, reserved) = reserve(db, &Reserve::new(org, member, 30)).await;
    out.insert("tenancy_reserve", reserved);
    let usage = hold_event(org, member, hold, json!({"tokens": 20}));
    out.insert(
        "tenancy_commit_reservation",
        commit_on(db, org, member, hold, &usage, noon())
            .await
            .unwrap(),
    );
    let (hold, _) = reserve(db, &Reserve::new(org, member, 30)).await;
    out.insert(
        "tenancy_release_reservation",
        release_on(db, org, member, hold, noon()).await.unwrap(),
    );
    reserve(db, &Reserve::new(org, member, 30)).await;
    out.insert(
        "tenancy_usage_snapshot",
        snapshot_on(db, org, Some(member), None).await.unwrap(),
    );
    let mut history = Vec::new();
    for (scope, user) in [("organization", None), ("user", Some(member))] {
        let part = history_on(db, History::march(org, scope, user))
            .await
            .unwrap();
        history.extend(part.as_array().unwrap().iter().cloned());
    }
    out.insert("tenancy_usage_history", Value::Array(history));
    out.insert("tenancy_claim_alert", claim_alert(db, org, None, 80).await);
    for (rpc, response) in crate::api::entry_point_responses(db, org, member).await {
        out.insert(rpc, response);
    }
    for (rpc, response) in store_function_responses(db, org, member).await {
        out.insert(rpc, response);
    }
    // Invitations, domains, the audit log, rate limits, leases, plans and
    // usage history, each on an organization of its own.
    for (rpc, response) in crate::examples::responses(db).await {
        out.insert(rpc, response);
    }
    // Drift in both scopes of one day: the check and the repair report it.
    let day: chrono::NaiveDate = db
        .query_one(
            "select period_start from usage_counters where organization_id = $1 \
             and period = 'daily' and scope_user_id = $2 limit 1",
            &[&org, &member],
        )
        .await
        .unwrap()
        .get(0);
    db.execute(
        "update usage_counters set used = used + 5 where organization_id = $1 \
         and period = 'daily' and period_start = $2",
        &[&org, &day],
    )
    .await
    .unwrap();
    for rpc in ["tenancy_reconcile_usage", "tenancy_repair_usage"] {
        let sql = format!("select {rpc}(org_id => $1, period => 'daily', period_start => $2)");
        out.insert(rpc, one(db, &sql, &[&org, &day]).await);
    }
    out.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// The jsonb that `sql` returns.
async fn one(db: &Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Value {
    db.query_one(sql, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// One real response of each store function and of the schema version,
/// on `org` (with its owner, `member` and both kinds of limits): a feature
/// with a config and one without, then a member added, changed and removed,
/// and deletes that find their row.
async fn store_function_responses(
    db: &Client,
    org: Uuid,
    member: Uuid,
) -> Vec<(&'static str, Value)> {
    // No dot in the keys: the drift test refuses them.
    for (key, config) in [
        ("veo_avatars", Some(json!({"quota": 3}))),
        ("exports_csv", None),
    ] {
        db.execute(
            "select tenancy_update_feature(org_id => $1, feature_key => $2, set_config => true, \
             updated_at => now(), enabled => true, config => $3)",
            &[&org, &key, &config],
        )
        .await
        .unwrap();
    }
    let slug: String = db
        .query_one("select slug from organizations where id = $1", &[&org])
        .await
        .unwrap()
        .get(0);
    let newcomer = create_user(db).await;
    let limit: Uuid = db
        .query_one(
            "select id from usage_limits where organization_id = $1 order by created_at limit 1",
            &[&org],
        )
        .await
        .unwrap()
        .get(0);
    let doomed = create_org(db, create_user(db).await).await;
    // One member with a name, the org's owner without one.
    db.execute(
        "update auth.users set raw_user_meta_data = '{\"name\": \"Ada Lovelace\"}' where id = $1",
        &[&member],
    )
    .await
    .unwrap();
    let owner: Uuid = db
        .query_one(
            "select owner_user_id from organizations where id = $1",
            &[&org],
        )
        .await
        .unwrap()
        .get(0);
    vec![
        ("tenancy_schema_version", one(db, "select tenancy_schema_version()", &[]).await),
        (
            "tenancy_user_profiles",
            one(db, "select tenancy_user_profiles(user_ids => $1)", &[&vec![owner, member]]).await,
        ),
        (
            "tenancy_organization",
            one(db, "select tenancy_organization(org_id => $1)", &[&org]).await,
        ),
        (
            "tenancy_organization_by_slug",
            one(db, "select tenancy_organization_by_slug(org_slug => $1)", &[&slug]).await,
        ),
        (
            "tenancy_memberships",
            one(db, "select tenancy_memberships(user_id => $1)", &[&member]).await,
        ),
        (
            "tenancy_members",
            one(db, "select tenancy_members(org_id => $1)", &[&org]).await,
        ),
        (
            "tenancy_features",
            one(db, "select tenancy_features(org_id => $1)", &[&org]).await,
        ),
        (
            "tenancy_limits",
            one(db, "select tenancy_limits(org_id => $1)", &[&org]).await,
        ),
        (
            "tenancy_add_member",
            one(
                db,
                "select tenancy_add_member(org_id => $1, user_id => $2, member_role => 'viewer', \
                 created_at => now())",
                &[&org, &newcomer],
            )
            .await,
        ),
        (
            "tenancy_set_member_role",
            one(
                db,
                "select tenancy_set_member_role(org_id => $1, user_id => $2, \
                 expected_role => 'viewer', new_role => 'member')",
                &[&org, &newcomer],
            )
            .await,
        ),
        (
            "tenancy_remove_member",
            one(
                db,
                "select tenancy_remove_member(org_id => $1, user_id => $2, expected_role => 'member')",
                &[&org, &newcomer],
            )
            .await,
        ),
        (
            "tenancy_rename_organization",
            one(
                db,
                "select tenancy_rename_organization(org_id => $1, new_name => 'Renamed')",
                &[&org],
            )
            .await,
        ),
        (
            "tenancy_delete_feature",
            one(
                db,
                "select tenancy_delete_feature(org_id => $1, feature_key => 'exports_csv')",
                &[&org],
            )
            .await,
        ),
        (
            "tenancy_delete_limit",
            one(
                db,
                "select tenancy_delete_limit(org_id => $1, limit_id => $2)",
                &[&org, &limit],
            )
            .await,
        ),
        (
            "tenancy_delete_organization",
            one(db, "select tenancy_delete_organization(org_id => $1)", &[&doomed]).await,
        ),
    ]
}

/// The RPCs whose response differs in shape from its example (or that
/// have no example, or an example but no response here).
async fn shape_disagreements(db: &Client) -> Vec<String> {
    let live = live_responses(db).await;
    let mut problems = Vec::new();
    let names: Vec<String> = live.keys().cloned().collect();
    if names != examples() {
        problems.push(format!(
            "examples of {:?}, responses of {names:?}",
            examples()
        ));
    }
    for (rpc, response) in &live {
        let (got, want) = (shape(response), shape(&example(rpc)));
        if got != want {
            problems.push(format!("{rpc}: returns {got}, the example has {want}"));
        }
    }
    problems
}

#[tokio::test]
async fn rpc_responses_have_the_shapes_of_their_examples() {
    let Some(pg) = Cluster::shared() else { return };
    let db = pg.superuser().await;
    let problems = shape_disagreements(&db).await;
    assert!(problems.is_empty(), "{problems:#?}");
    // Both scope variants occur in the examples, and both are one shape.
    let scopes: Vec<Value> = example("tenancy_reserve")["limits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["limit"]["scope"].clone())
        .collect();
    assert_eq!(scopes[0], json!({"scope": "organization"}));
    assert_eq!(scopes[1]["scope"], "user");
    assert_eq!(shape(&scopes[0]), shape(&scopes[1]));
}

// ---- drift ------------------------------------------------------------------------------------

/// One rule of each check, drifted: (file, what it says, what the drifted
/// copy says).
const DRIFTS: [(&str, &str, &str); 7] = [
    // a. admins may grant and revoke admin
    (
        "20260301000300_tenancy_triggers.sql",
        "if v_highest >= 3 and v_actor_rank < 4 then",
        "if v_highest >= 4 and v_actor_rank < 4 then",
    ),
    // b. a 64-character slug (the pattern text unchanged), and no dots in
    // feature keys
    (
        "20260301000100_tenancy_tables.sql",
        "char_length(slug) <= 63",
        "char_length(slug) <= 64",
    ),
    (
        "20260301000100_tenancy_tables.sql",
        "feature_key ~ '^[a-z][a-z0-9_.-]{0,63}$'",
        "feature_key ~ '^[a-z][a-z0-9_-]{0,63}$'",
    ),
    // and 63-character metrics, in the domain every metric column has
    (
        "20261206000300_tenancy_grants_and_domains.sql",
        "check (value ~ '^[a-z][a-z0-9_]{0,62}$')",
        "check (value ~ '^[a-z][a-z0-9_]{0,63}$')",
    ),
    // c. the `ads` alias renamed
    (
        "20260301000300_tenancy_triggers.sql",
        "when 'ads' then 'ads_created'",
        "when 'ad' then 'ads_created'",
    ),
    // d. LimitUsage's `reserved` renamed, where tenancy.limit_usage is
    // defined last (the plans' file: its limits are the effective ones)
    (
        "20261206001200_tenancy_plans.sql",
        "'reserved', u.reserved::text",
        "'held', u.reserved::text",
    ),
    // e. members see every member's usage rows
    (
        "20260301000400_tenancy_rls.sql",
        "'  organization_id = any (array(select tenancy.org_ids(''admin'')))'",
        "'  organization_id = any (array(select tenancy.org_ids(''member'')))'",
    ),
];

/// The migrations with [`DRIFTS`] applied, each found exactly once.
fn drifted_migrations() -> Vec<(String, String)> {
    let mut files = pg::migrations();
    for (file, from, to) in DRIFTS {
        let (_, sql) = files.iter_mut().find(|(name, _)| name == file).expect(file);
        assert_eq!(sql.matches(from).count(), 1, "{file} says {from:?} once");
        *sql = sql.replace(from, to);
    }
    files
}

#[tokio::test]
async fn every_parity_check_sees_drifted_sql() {
    let Some(pg) = Cluster::shared() else { return };
    let name = format!("drift_{}", Uuid::new_v4().simple());
    let mut db = pg.create_database(&name).await;
    db.batch_execute(&pg::bootstrap_sql()).await.unwrap();
    for (file, sql) in drifted_migrations() {
        db.batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    let mut conn = pg::connect_url(&pg.authenticator_url(&name)).await;

    let answers = membership_answers(&db, &mut conn).await;
    let problems = membership_disagreements(&answers);
    let admin_grants =
        "Case { actor: Admin, on_self: false, before: Some(Member), after: Some(Admin) }";
    assert!(
        problems.iter().any(|p| p.starts_with(admin_grants)),
        "a: {problems:#?}"
    );
    let problems = pattern_disagreements(&db).await;
    let slugs: Vec<&String> = problems
        .iter()
        .filter(|p| p.starts_with("organizations.slug"))
        .collect();
    assert!(
        slugs.len() == 1 && slugs[0].contains("strings disagree"),
        "b: the pattern text is unchanged, but 64-character slugs pass: {problems:#?}"
    );
    let feature_keys = problems
        .iter()
        .filter(|p| p.starts_with("org_features.feature_key"))
        .count();
    assert_eq!(
        feature_keys, 2,
        "b: the text and the strings: {problems:#?}"
    );
    for table in [
        "usage_limits",
        "usage_counters",
        "usage_reservations",
        "usage_alerts",
    ] {
        let metric = problems
            .iter()
            .filter(|p| p.starts_with(&format!("{table}.metric")))
            .count();
        assert_eq!(
            metric, 2,
            "b: {table}.metric, the text and the strings: {problems:#?}"
        );
    }
    let problems = alias_disagreements(&mut db).await;
    assert!(
        problems.iter().any(|p| p.starts_with("aliases:")),
        "c: {problems:#?}"
    );
    assert!(
        problems.iter().any(|p| p.starts_with("\"daily_ads\"")),
        "c: {problems:#?}"
    );
    let problems = shape_disagreements(&db).await;
    let mut drifted: Vec<&str> = problems
        .iter()
        .map(|p| p.split_once(':').map_or(p.as_str(), |(rpc, _)| rpc))
        .collect();
    drifted.sort_unstable();
    assert_eq!(
        drifted,
        [
            "tenancy_check_limit",
            "tenancy_reserve",
            "tenancy_reserve_usage",
            "tenancy_usage_snapshot",
            "tenancy_usage_summary",
        ],
        "d: the reserve and snapshot, and the entry points that read their limits: {problems:#?}"
    );
    let problems = crate::rls::per_user_disagreements(&db, &mut conn).await;
    assert!(
        problems.iter().any(|p| p.contains("the member sees")),
        "e: {problems:#?}"
    );
}
