//! Runs on `MemoryStore`: a scripted one through the outcomes it names,
//! and one whose store drifts behind the model's back.

use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;

use super::{Actual, Mark, Op, Runner, Setup, run};
use crate::clock::FakeClock;
use crate::ids::MetricKey;
use crate::memory::MemoryStore;
use crate::model::UsageEvent;
use crate::store::DynStore;

fn store() -> Arc<DynStore> {
    Arc::new(MemoryStore::new())
}

/// A short scripted run on `MemoryStore` goes through the outcomes it
/// names.
#[tokio::test]
async fn a_scripted_run_keeps_the_invariant() {
    let ops = [
        Op::Reserve {
            user: 1,
            estimate: Decimal::from(400),
        },
        Op::Reserve {
            user: 1,
            estimate: Decimal::from(101),
        },
        Op::Check {
            user: 1,
            amount: Decimal::from(100),
        },
        Op::Jump {
            mark: Mark::NextMidnight,
            offset: -5,
        },
        Op::Reserve {
            user: 2,
            estimate: Decimal::new(12_345, 3),
        },
        Op::Jump {
            mark: Mark::NextMidnight,
            offset: 1,
        },
        Op::Commit {
            hold: 0,
            actual: Actual::Share(200),
        },
        Op::Commit {
            hold: 0,
            actual: Actual::Estimate,
        },
        Op::Release { hold: 1 },
        Op::Commit {
            hold: 1,
            actual: Actual::Estimate,
        },
        Op::Reserve {
            user: 0,
            estimate: -Decimal::ONE,
        },
        Op::Advance { seconds: 3_600 },
    ];
    let setup = Setup::default().with_reservation_ttl(Duration::from_secs(86_400));
    let coverage = run(store(), FakeClock::at("2026-01-01T00:00:00Z"), setup, ops)
        .await
        .unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(
        (coverage.grants, coverage.denials, coverage.checks),
        (2, 1, 1)
    );
    assert_eq!((coverage.commits, coverage.commits_across_midnight), (1, 1));
    assert_eq!(
        (
            coverage.repeated_commits,
            coverage.releases,
            coverage.commits_of_released
        ),
        (1, 1, 1)
    );
    assert_eq!((coverage.invalid_amounts, coverage.midnights), (1, 1));
}

/// Usage the model does not know of, written straight to the store, is
/// found at the next step: the checks can fail.
#[tokio::test]
async fn a_store_that_drifts_is_caught() {
    let store = store();
    let setup = Setup::default();
    let clock = FakeClock::new(setup.start);
    let mut runner = Runner::start(Arc::clone(&store), clock, setup)
        .await
        .unwrap_or_else(|f| panic!("{f}"));
    let reserve = Op::Reserve {
        user: 0,
        estimate: Decimal::from(10),
    };
    runner
        .apply(reserve)
        .await
        .unwrap_or_else(|f| panic!("{f}"));
    let drift = UsageEvent::new(runner.org)
        .quantity(MetricKey::TOKENS, Decimal::ONE)
        .into_record(runner.now(), runner.setup.zone)
        .expect("a record");
    store.record_usage(&[drift]).await.expect("recorded");
    let failure = runner
        .apply(Op::Advance { seconds: 1 })
        .await
        .expect_err("the drift is found");
    assert_eq!(failure.step(), 2);
    assert!(
        failure
            .message()
            .contains("the store has 1 used, the model 0"),
        "{failure}"
    );
    assert_eq!(failure.ops().len(), 2);
}
