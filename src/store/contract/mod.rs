//! The store-contract suite (feature `test-util`): what every [`Store`](crate::store::Store)
//! must do, tested by calling the trait's methods directly.
//!
//! Each test is an async function taking a store. They use fresh random
//! organizations and users, so they can share one database. Run them all
//! with [`store_contract_tests!`](crate::store_contract_tests):
//!
//! ```ignore
//! async fn store() -> Option<std::sync::Arc<tenancy::store::DynStore>> {
//!     Some(std::sync::Arc::new(tenancy::MemoryStore::new()))
//! }
//! tenancy::store_contract_tests!(store);
//! ```
//!
//! The factory returns `None` to skip (a live backend whose server is not
//! installed); it should say why, loudly.
//!
//! **Unstable:** the suite grows with the trait, and its functions and
//! helpers may change in any release. It is published for backends of
//! this crate's own version.
//!
//! The facade's behaviour (roles, caches, alerts, summaries) is tested
//! elsewhere, once, on [`MemoryStore`](crate::MemoryStore); this suite is
//! only about the storage contract: atomicity, compare-and-set conflicts,
//! idempotency, organization isolation, expiry and the `now` a store is
//! given.

mod alerts;
mod audit;
mod domains;
mod features;
mod invitations;
mod isolation;
mod leases;
mod limits;
mod members;
mod metering;
mod orgs;
mod plans;
mod rate_limits;
mod reconcile;
mod reports;
mod reserve;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;

use crate::error::{ErrorKind, Result};
use crate::ids::{EventId, LimitId, MetricKey, OrgId, ReservationId, Slug, UserId};
use crate::limits::{CurrentPeriods, Limit, LimitMode, LimitScope, Period};
use crate::model::{Organization, UsageEvent, UsageRecord};
use crate::store::{DynStore, ReserveRequest, UsageQuery};

pub use alerts::*;
pub use audit::*;
pub use domains::*;
pub use features::*;
pub use invitations::*;
pub use isolation::*;
pub use leases::*;
pub use limits::*;
pub use members::*;
pub use metering::*;
pub use orgs::*;
pub use plans::*;
pub use rate_limits::*;
pub use reconcile::*;
pub use reports::*;
pub use reserve::*;

/// Calls `$callback! { $($prefix)* ; <every contract test> }`: the one
/// list of the suite's tests, which [`store_contract_tests!`](crate::store_contract_tests)
/// runs and a unit test compares with the functions in this module's files,
/// so a test written but left out of it fails the build's tests.
#[doc(hidden)]
#[macro_export]
macro_rules! __store_contract_list {
    ([$($callback:tt)*] { $($prefix:tt)* }) => {
        $($callback)*! { $($prefix)* ;
            create_organization_returns_it_with_its_owner,
            a_taken_slug_is_already_exists,
            rename_and_delete_organizations,
            list_organizations_searches_and_pages,
            adding_a_member_twice_is_already_exists,
            set_member_role_is_compare_and_set,
            remove_member_is_compare_and_set,
            the_last_owner_is_kept,
            owners_demoting_each_other_at_once_keep_one,
            feature_changes_touch_only_the_named_field,
            concurrent_feature_changes_are_never_lost,
            limits_replace_their_slot,
            limits_are_ordered_by_creation_time_then_id,
            record_is_idempotent_by_event_id,
            record_counts_exactly_the_given_amounts,
            a_batch_is_recorded_all_or_nothing,
            snapshots_count_org_wide_and_own_usage,
            history_reads_past_periods,
            recorded_counters_agree_with_the_log,
            reconciling_an_unknown_organization,
            reserve_holds_only_what_fits_under_hard_limits,
            concurrent_reservations_never_overshoot,
            holds_stop_counting_when_they_expire,
            commit_reports_whether_the_hold_was_live,
            a_commit_counts_in_its_holds_periods,
            no_overshoot_across_midnight_utc,
            no_overshoot_across_month_end_in_tokyo,
            an_unknown_or_foreign_hold_records_nothing,
            holds_are_out_of_reach_of_another_org,
            release_is_for_the_holds_user_only,
            an_alert_is_claimed_once_however_many_race,
            organizations_are_kept_apart,
        }
    };
}

/// The names of every contract test, in the order they run.
pub const TESTS: &[&str] = &__names();

/// Every list's names, one slice per list.
const LISTS: [&[&str]; 8] = {
    macro_rules! names {
        (; $($name:ident),* $(,)?) => { &[$(stringify!($name)),*] };
    }
    [
        crate::__store_contract_list!([names] {}),
        crate::__invitation_contract_list!([names] {}),
        crate::__domain_contract_list!([names] {}),
        crate::__audit_contract_list!([names] {}),
        crate::__rate_limit_contract_list!([names] {}),
        crate::__lease_contract_list!([names] {}),
        crate::__plan_contract_list!([names] {}),
        crate::__report_contract_list!([names] {}),
    ]
};

const fn count_tests() -> usize {
    let (mut count, mut i) = (0, 0);
    while i < LISTS.len() {
        count += LISTS[i].len();
        i += 1;
    }
    count
}

const fn __names() -> [&'static str; count_tests()] {
    let mut names = [""; count_tests()];
    let (mut next, mut i) = (0, 0);
    while i < LISTS.len() {
        let mut j = 0;
        while j < LISTS[i].len() {
            names[next] = LISTS[i][j];
            next += 1;
            j += 1;
        }
        i += 1;
    }
    names
}

/// Generates one `#[tokio::test]` per contract test, each calling
/// `$factory().await` for its store and returning early when it is `None`.
#[macro_export]
macro_rules! store_contract_tests {
    ($factory:path) => {
        $crate::__store_contract_list!([$crate::store_contract_tests] { @tests $factory });
        $crate::__invitation_contract_list!([$crate::store_contract_tests] { @tests $factory });
        $crate::__domain_contract_list!([$crate::store_contract_tests] { @tests $factory });
        $crate::__audit_contract_list!([$crate::store_contract_tests] { @tests $factory });
        $crate::__rate_limit_contract_list!([$crate::store_contract_tests] { @tests $factory });
        $crate::__lease_contract_list!([$crate::store_contract_tests] { @tests $factory });
        $crate::__plan_contract_list!([$crate::store_contract_tests] { @tests $factory });
        $crate::__report_contract_list!([$crate::store_contract_tests] { @tests $factory });
    };
    (@tests $factory:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let Some(store) = $factory().await else { return };
                $crate::store::contract::$name(store).await;
            }
        )*
    };
}

/// A slug no other test (or earlier run against the same database) uses.
pub(super) fn unique_slug(prefix: &str) -> Slug {
    let id = uuid::Uuid::new_v4().simple().to_string();
    Slug::parse(&format!("{prefix}-{}", &id[..12])).unwrap_or_else(|e| panic!("{e}"))
}

/// A fixed instant, so tests are deterministic whatever the clock says.
pub(super) fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339}: {e}"))
        .with_timezone(&Utc)
}

/// The instant most tests act at.
pub(super) fn noon() -> DateTime<Utc> {
    at("2026-03-04T12:00:00Z")
}

/// A new organization in `tz` with a new owner, created in the store.
pub(super) async fn new_org_in(store: &DynStore, tz: Tz) -> (Organization, UserId) {
    let owner = UserId::new_v7();
    let org = Organization {
        id: OrgId::new_v7(),
        name: "Contract".into(),
        slug: unique_slug("contract"),
        owner_user_id: Some(owner),
        timezone: tz,
        created_at: noon(),
    };
    let org = store
        .create_organization(&org)
        .await
        .unwrap_or_else(|e| panic!("create an organization: {e}"));
    (org, owner)
}

/// A new UTC organization with a new owner.
pub(super) async fn new_org(store: &DynStore) -> (Organization, UserId) {
    new_org_in(store, Tz::UTC).await
}

/// A record of `amounts` for `org` (and `user`) at `at`, as the core makes
/// one: periods in the organization's time zone, a fresh id.
pub(super) fn record(
    org: &Organization,
    user: Option<UserId>,
    amounts: &[(MetricKey, i64)],
    at: DateTime<Utc>,
) -> UsageRecord {
    let mut event = UsageEvent::new(org.id);
    event.user = user;
    for (metric, amount) in amounts {
        event = event.quantity(metric.clone(), Decimal::from(*amount));
    }
    event
        .into_record(at, org.timezone)
        .unwrap_or_else(|e| panic!("a valid record: {e}"))
}

/// A limit of `value` on `metric` per `period` for `org`, org-wide or for
/// one user.
pub(super) fn limit(
    org: OrgId,
    scope: LimitScope,
    metric: MetricKey,
    period: Period,
    value: i64,
) -> Limit {
    Limit {
        id: LimitId::new_v7(),
        org,
        scope,
        metric,
        period,
        value: Decimal::from(value),
        mode: LimitMode::Hard,
        created_at: noon(),
        expires_at: None,
    }
}

/// A request to hold `amount` tokens for `user` at `now`, for `ttl_secs`.
pub(super) fn hold(
    org: &Organization,
    user: UserId,
    amount: i64,
    now: DateTime<Utc>,
    ttl_secs: i64,
) -> ReserveRequest {
    ReserveRequest {
        id: ReservationId::new_v7(),
        org: org.id,
        user,
        metric: MetricKey::TOKENS,
        amount: Decimal::from(amount),
        periods: CurrentPeriods::at(now, org.timezone),
        now,
        expires_at: now + chrono::TimeDelta::seconds(ttl_secs),
        purge_before: now - chrono::TimeDelta::days(7),
    }
}

/// Org-wide usage of `metric` in `period` as the store counts it at `at`
/// (in the org's time zone): (used, reserved). Read from the org-wide limit
/// on it when there is one (which reports holds even before anything is
/// recorded), else from the counter.
pub(super) async fn usage_at(
    store: &DynStore,
    org: &Organization,
    metric: &MetricKey,
    period: Period,
    at: DateTime<Utc>,
) -> (Decimal, Decimal) {
    let query = UsageQuery {
        org: org.id,
        user: None,
        metric: Some(metric.clone()),
        periods: CurrentPeriods::at(at, org.timezone),
        now: at,
    };
    let snapshot = store
        .usage_snapshot(&query)
        .await
        .unwrap_or_else(|e| panic!("usage snapshot: {e}"));
    let key = CurrentPeriods::at(at, org.timezone).key(period);
    let limited = snapshot.limits.iter().find(|u| {
        u.limit.scope == LimitScope::Organization
            && u.limit.period == period
            && &u.limit.metric == metric
    });
    if let Some(u) = limited {
        return (u.used, u.reserved);
    }
    snapshot
        .counters
        .iter()
        .find(|c| c.scope == LimitScope::Organization && c.period == key && &c.metric == metric)
        .map_or((Decimal::ZERO, Decimal::ZERO), |c| (c.used, c.reserved))
}

/// The error kind of a result that must be an error.
pub(super) fn kind<T: std::fmt::Debug>(result: Result<T>) -> ErrorKind {
    result.expect_err("expected an error").kind()
}

/// The event id a committed reservation records under.
pub(super) fn event_of(id: ReservationId) -> EventId {
    EventId::from(id)
}

/// A store shared by concurrent tasks.
pub(super) fn shared(store: &Arc<DynStore>) -> Arc<DynStore> {
    Arc::clone(store)
}

#[cfg(test)]
mod tests {
    /// Every `pub async fn` of the suite's files is in the one list, and
    /// the list names nothing else.
    #[test]
    fn the_list_runs_every_contract_test() {
        let sources = [
            include_str!("alerts.rs"),
            include_str!("audit.rs"),
            include_str!("domains.rs"),
            include_str!("features.rs"),
            include_str!("invitations.rs"),
            include_str!("isolation.rs"),
            include_str!("leases.rs"),
            include_str!("limits.rs"),
            include_str!("members.rs"),
            include_str!("metering.rs"),
            include_str!("orgs.rs"),
            include_str!("plans.rs"),
            include_str!("rate_limits.rs"),
            include_str!("reconcile.rs"),
            include_str!("reports.rs"),
            include_str!("reserve.rs"),
        ];
        let mut written: Vec<&str> = sources
            .iter()
            .flat_map(|src| src.lines())
            .filter_map(|line| line.strip_prefix("pub async fn "))
            .filter_map(|rest| rest.split('(').next())
            .collect();
        written.sort_unstable();
        let mut listed = super::TESTS.to_vec();
        listed.sort_unstable();
        assert_eq!(
            written, listed,
            "store_contract_tests! must run exactly the suite's tests"
        );
    }

    /// Every file of the suite is read above: a new capability's file must
    /// be added there too.
    #[test]
    fn every_suite_file_is_checked() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/store/contract");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|f| f != "mod.rs")
            .collect();
        files.sort();
        assert_eq!(
            files,
            [
                "alerts.rs",
                "audit.rs",
                "domains.rs",
                "features.rs",
                "invitations.rs",
                "isolation.rs",
                "leases.rs",
                "limits.rs",
                "members.rs",
                "metering.rs",
                "orgs.rs",
                "plans.rs",
                "rate_limits.rs",
                "reconcile.rs",
                "reports.rs",
                "reserve.rs"
            ]
        );
    }
}
