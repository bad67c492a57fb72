//! What a flush reports: a deadline that passes while the backend is down,
//! with what is still in memory and in the spool; events refused for good;
//! and what a shutdown leaves pending.

use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use tenancy::{ErrorKind, NewOrganization, OrgId, UsageEvent, UserId};

use super::{eventually, fast, record_many, rig};

/// The backend is down and there is no spool: `flush_within` returns at its
/// deadline, saying every event is still in memory; the recorder keeps
/// them, and a flush after recovery stores them.
#[tokio::test]
async fn flush_within_returns_at_the_deadline_with_the_events_in_memory() {
    let rig = rig().await;
    rig.faults.set_down(true);
    let recorder = fast(rig.recorder()).start().unwrap();
    let expected = record_many(&recorder, &rig, 5);

    let deadline = Duration::from_millis(300);
    let started = Instant::now();
    let report = recorder.flush_within(deadline).await.unwrap();
    let took = started.elapsed();
    assert!(
        took >= deadline && took < deadline + Duration::from_secs(2),
        "returned after {took:?}"
    );
    assert!(report.deadline_passed, "{report:?}");
    assert!(!report.is_complete(), "{report:?}");
    assert_eq!(report.waited_for, 5, "{report:?}");
    assert_eq!((report.stored, report.failed), (0, 0), "{report:?}");
    assert_eq!(
        (
            report.pending.in_memory,
            report.pending.in_spool,
            report.pending.handed_back
        ),
        (5, 0, 0),
        "{report:?}"
    );
    let stats = recorder.stats();
    assert_eq!(stats.queued + stats.in_flight, 5, "{stats:?}");
    assert!(stats.retried > 0, "{stats:?}");

    // The deadline changed nothing: after recovery the same events go out.
    rig.faults.set_down(false);
    let report = recorder
        .flush_within(Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        report.is_complete() && !report.deadline_passed,
        "{report:?}"
    );
    assert_eq!((report.waited_for, report.stored), (5, 5), "{report:?}");
    assert_eq!(rig.stored_tokens().await, expected);
    let report = recorder.shutdown(Duration::from_secs(1)).await;
    assert!(report.pending.is_empty(), "{report:?}");
}

/// The backend is down, memory is full and the rest spilled to the spool:
/// at the deadline the report counts a batch being sent in memory and the
/// spilled events in the spool; the shutdown that follows spools the batch
/// and reports all of them in the spool, where the next recorder finds
/// them.
#[tokio::test]
async fn flush_within_counts_what_is_in_memory_and_what_is_in_the_spool() {
    let rig = rig().await;
    let spool = tempfile::tempdir().unwrap();
    rig.faults.set_down(true);
    let spooling = || {
        fast(rig.recorder())
            .batch_size(10)
            .max_buffered_events(10)
            .spool_dir(spool.path())
            .start()
            .unwrap()
    };
    let recorder = spooling();
    // Nothing runs between these calls: 10 fill memory, 20 spill.
    let expected = record_many(&recorder, &rig, 30);
    assert_eq!(recorder.stats().spooled, 20);

    let report = recorder
        .flush_within(Duration::from_millis(300))
        .await
        .unwrap();
    assert!(report.deadline_passed, "{report:?}");
    assert_eq!(report.waited_for, 30, "{report:?}");
    assert_eq!(
        (
            report.pending.in_memory,
            report.pending.in_spool,
            report.pending.handed_back
        ),
        (10, 20, 0),
        "{report:?}"
    );
    assert_eq!(report.stored, 0, "{report:?}");
    let stats = recorder.stats();
    assert_eq!((stats.queued, stats.in_flight), (0, 10), "{stats:?}");
    assert_eq!(stats.spool_files, 1, "{stats:?}");
    let on_disk: u64 = std::fs::read_dir(spool.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(stats.spool_bytes, on_disk, "{stats:?}");

    let deadline = Duration::from_millis(100);
    let started = Instant::now();
    let report = recorder.shutdown(deadline).await;
    let took = started.elapsed();
    assert!(
        took < deadline + Duration::from_secs(1),
        "shut down after {took:?}"
    );
    assert_eq!(
        (
            report.pending.in_memory,
            report.pending.in_spool,
            report.pending.handed_back
        ),
        (0, 30, 0),
        "{report:?}"
    );
    assert!(report.undelivered.is_empty());
    assert_eq!(rig.stored_tokens().await, Decimal::ZERO);

    rig.faults.set_down(false);
    let next = spooling();
    eventually("the spool to be replayed", async || {
        next.stats().replayed == 30
    })
    .await;
    assert_eq!(rig.stored_tokens().await, expected);
    let report = next.shutdown(Duration::from_secs(1)).await;
    assert!(report.pending.is_empty(), "{report:?}");
    assert_eq!(report.stats.spool_files, 0, "{report:?}");
}

/// Events the store refuses for good — one for an organization that never
/// existed, one for an organization deleted after it was recorded — are
/// reported by the flush that waited for them, with the reason; the rest
/// is stored, and the flush is complete: nothing will be retried.
#[tokio::test]
async fn a_flush_reports_the_events_refused_for_good() {
    let rig = rig().await;
    let owner = UserId::new_v7();
    let doomed = rig
        .tenancy
        .create_organization(owner, NewOrganization::new("Doomed", "doomed").unwrap())
        .await
        .unwrap();
    let recorder = rig
        .recorder()
        .flush_interval(Duration::from_secs(3600))
        .start()
        .unwrap();
    recorder.record(rig.event(5)).unwrap();
    let orphan = recorder
        .record(UsageEvent::new(OrgId::new_v7()).tokens(9, 0, 0))
        .unwrap();
    let gone = recorder
        .record(UsageEvent::new(doomed.id).tokens(11, 0, 0))
        .unwrap();
    recorder.record(rig.event(7)).unwrap();
    let as_owner = rig.tenancy.context(owner, doomed.id).await.unwrap();
    rig.tenancy.delete_organization(&as_owner).await.unwrap();

    let report = recorder.flush().await.unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(
        (report.waited_for, report.stored, report.failed),
        (4, 2, 2),
        "{report:?}"
    );
    let mut failed: Vec<_> = report
        .failed_events
        .iter()
        .map(|f| f.event.id.unwrap())
        .collect();
    failed.sort();
    let mut expected = vec![orphan, gone];
    expected.sort();
    assert_eq!(failed, expected);
    for failed in &report.failed_events {
        assert!(
            failed.reason.contains("does not exist"),
            "{}",
            failed.reason
        );
    }
    assert_eq!(rig.stored_tokens().await, Decimal::from(12));

    // The next flush waits for nothing of theirs and reports nothing.
    recorder.record(rig.event(1)).unwrap();
    let report = recorder
        .flush_within(Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        (report.waited_for, report.stored, report.failed),
        (1, 1, 0),
        "{report:?}"
    );
    let report = recorder.shutdown(Duration::from_secs(1)).await;
    assert_eq!(report.failed.len(), 2);
}

/// A flush whose events are given back after an error the store does not
/// explain: `flush_within` reports them in the spool, `flush` is the
/// `Unavailable` error it always was.
#[tokio::test]
async fn given_back_events_are_pending_in_the_spool() {
    let rig = rig().await;
    let spool = tempfile::tempdir().unwrap();
    let recorder = rig
        .recorder()
        .flush_interval(Duration::from_secs(3600))
        .spool_dir(spool.path())
        .start()
        .unwrap();
    record_many(&recorder, &rig, 2);
    // The batch, then each of its two events on its own.
    rig.faults.garble_next(3);
    let report = recorder
        .flush_within(Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        !report.is_complete() && !report.deadline_passed,
        "{report:?}"
    );
    assert_eq!(
        (
            report.waited_for,
            report.stored,
            report.pending.in_spool,
            report.pending.in_memory
        ),
        (2, 0, 2, 0),
        "{report:?}"
    );

    eventually("the spooled events to be replayed", async || {
        recorder.stats().replayed == 2
    })
    .await;
    recorder.record(rig.event(3)).unwrap();
    rig.faults.garble_next(1);
    let err = recorder.flush().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.message().contains("1 of the events"), "{err}");
    recorder.shutdown(Duration::from_secs(1)).await;
}
