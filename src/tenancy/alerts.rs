//! Alert delivery, off the write path: sinks, and the queue of threshold
//! checks that a background task works through.
//!
//! A usage write that counted something enqueues one check per
//! (organization, user-or-org-wide, periods) it may have moved past a
//! threshold, and returns. Checks waiting for the same key are merged, so
//! a burst of writes for one organization costs one check. A task started
//! on the current tokio runtime (and ending when the queue is empty) reads
//! the usage, claims each crossed threshold in the store (exactly one
//! claimant wins, across every instance), and delivers the alert through
//! the [`AlertSink`] — a few at a time, with retries. A slow or failing
//! sink never slows or fails a write.
//!
//! Checks are kept in memory: a process that stops before its queue is
//! empty skips them; the next write past the same threshold in the same
//! period raises the alert then. [`Tenancy::flush_alerts`](crate::Tenancy::flush_alerts)
//! waits for the queue.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono_tz::Tz;
use tokio::sync::{Semaphore, watch};

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::ids::{OrgId, UserId};
use crate::limits::{AlertKey, AlertThresholds, CurrentPeriods, LimitAlert};
use crate::store::{DynStore, UsageQuery};
use crate::sync::lock;

/// Where alerts go: email, Slack, a webhook, a queue.
///
/// Delivery happens after the usage write has succeeded, on a background
/// task. A failing sink never fails or undoes the write: delivery is
/// retried a few times, then the failure is logged with `tracing` at error
/// level.
#[async_trait]
pub trait AlertSink: Debug + Send + Sync + 'static {
    /// Delivers one alert.
    async fn deliver(&self, alert: &LimitAlert) -> Result<()>;
}

/// The default sink: logs each alert with `tracing` at warn level.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogAlertSink;

#[async_trait]
impl AlertSink for LogAlertSink {
    async fn deliver(&self, alert: &LimitAlert) -> Result<()> {
        tracing::warn!(
            org = %alert.key.org,
            scope = %alert.key.scope,
            metric = %alert.key.metric,
            period = %alert.key.period,
            threshold_percent = alert.key.threshold_percent,
            used = %alert.used,
            limit = %alert.limit,
            "usage limit threshold crossed"
        );
        Ok(())
    }
}

/// A sink that keeps alerts in memory, for tests and demos.
#[derive(Debug, Default)]
pub struct MemoryAlertSink {
    alerts: Mutex<Vec<LimitAlert>>,
}

impl MemoryAlertSink {
    /// An empty sink.
    pub fn new() -> Self {
        MemoryAlertSink::default()
    }

    /// The alerts delivered so far, oldest first.
    pub fn alerts(&self) -> Vec<LimitAlert> {
        lock(&self.alerts).clone()
    }
}

#[async_trait]
impl AlertSink for MemoryAlertSink {
    async fn deliver(&self, alert: &LimitAlert) -> Result<()> {
        lock(&self.alerts).push(alert.clone());
        Ok(())
    }
}

/// One threshold check: an organization's org-wide limits (`user` `None`)
/// or one user's own limits, in the periods a write counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct AlertCheck {
    pub(super) org: OrgId,
    pub(super) user: Option<UserId>,
    pub(super) periods: CurrentPeriods,
}

/// The queue of checks, shared with its worker task.
#[derive(Debug)]
pub(super) struct AlertQueue {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    store: Arc<DynStore>,
    clock: Arc<dyn Clock>,
    sink: Arc<dyn AlertSink>,
    thresholds: AlertThresholds,
    attempts: u32,
    deliveries: Arc<Semaphore>,
    state: Mutex<Pending>,
    /// True while a worker is running (or about to): what `flush` waits on.
    busy: watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct Pending {
    checks: HashMap<AlertCheck, Tz>,
    worker_running: bool,
}

impl AlertQueue {
    pub(super) fn new(
        store: Arc<DynStore>,
        clock: Arc<dyn Clock>,
        sink: Arc<dyn AlertSink>,
        thresholds: AlertThresholds,
        attempts: u32,
        concurrency: usize,
    ) -> Self {
        AlertQueue {
            shared: Arc::new(Shared {
                store,
                clock,
                sink,
                thresholds,
                attempts,
                deliveries: Arc::new(Semaphore::new(concurrency)),
                state: Mutex::default(),
                busy: watch::Sender::new(false),
            }),
        }
    }

    /// Whether any thresholds are configured (none: alerts are off).
    pub(super) fn enabled(&self) -> bool {
        !self.shared.thresholds.percents().is_empty()
    }

    /// The first alert threshold, where a limit's level becomes `Warning`.
    pub(super) fn warning_percent(&self) -> rust_decimal::Decimal {
        self.shared.thresholds.warning_percent()
    }

    /// Queues checks (each with its organization's time zone) and makes
    /// sure a worker runs. Never waits.
    pub(super) fn enqueue(&self, checks: impl IntoIterator<Item = (AlertCheck, Tz)>) {
        let mut state = lock(&self.shared.state);
        state.checks.extend(checks);
        if state.checks.is_empty() || state.worker_running {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!("alert checks need a tokio runtime; they are skipped");
            state.checks.clear();
            return;
        };
        state.worker_running = true;
        self.shared.busy.send_replace(true);
        drop(state);
        runtime.spawn(Arc::clone(&self.shared).work());
    }

    /// Waits until the queue is empty and no check or delivery is running.
    pub(super) async fn flush(&self) {
        let mut busy = self.shared.busy.subscribe();
        let _ = busy.wait_for(|busy| !busy).await;
    }
}

impl Shared {
    /// The worker: runs queued checks until none are left, then ends.
    async fn work(self: Arc<Self>) {
        loop {
            let checks = {
                let mut state = lock(&self.state);
                if state.checks.is_empty() {
                    state.worker_running = false;
                    self.busy.send_replace(false);
                    return;
                }
                std::mem::take(&mut state.checks)
            };
            let mut deliveries = tokio::task::JoinSet::new();
            for (check, tz) in checks {
                // Alerts claimed before a failure are delivered: they are
                // claimed in the store, so no later check would fire them.
                let (alerts, failure) = self.crossed(check, tz).await;
                if let Some(e) = failure {
                    tracing::error!(org = %check.org, error = %e,
                        "alert check failed; the usage was recorded");
                }
                for alert in alerts {
                    let me = Arc::clone(&self);
                    let permit = Arc::clone(&self.deliveries).acquire_owned().await.ok();
                    deliveries.spawn(async move {
                        me.deliver(&alert).await;
                        drop(permit);
                    });
                }
            }
            while let Some(joined) = deliveries.join_next().await {
                if let Err(e) = joined {
                    tracing::error!(error = %e, "an alert delivery task failed");
                }
            }
        }
    }

    /// The alerts `check` newly fires: thresholds its limits' usage has
    /// reached, each claimed in the store (false: already fired). A failed
    /// claim is skipped (unclaimed, it fires on a later check) and the
    /// others are still tried; the first failure comes back beside every
    /// alert that was claimed.
    async fn crossed(&self, check: AlertCheck, tz: Tz) -> (Vec<LimitAlert>, Option<Error>) {
        let now = self.clock.now();
        let query = UsageQuery {
            org: check.org,
            user: check.user,
            metric: None,
            periods: check.periods,
            now,
        };
        let snapshot = match self.store.usage_snapshot(&query).await {
            Ok(snapshot) => snapshot,
            Err(e) => return (Vec::new(), Some(e)),
        };
        let mut alerts = Vec::new();
        let mut failure = None;
        // A user's snapshot includes the org-wide limits, which their own
        // check covers.
        let own = snapshot
            .limits
            .iter()
            .filter(|u| u.limit.scope.user() == check.user);
        for usage in own {
            for threshold_percent in self.thresholds.crossed(usage.used, usage.limit.value) {
                let key = AlertKey {
                    org: check.org,
                    scope: usage.limit.scope,
                    metric: usage.limit.metric.clone(),
                    period: usage.period,
                    threshold_percent,
                };
                match self.store.claim_alert(&key, now).await {
                    Ok(true) => {
                        #[cfg(feature = "metrics")]
                        crate::metrics::alert_fired();
                    }
                    Ok(false) => continue,
                    Err(e) => {
                        failure.get_or_insert(e);
                        continue;
                    }
                }
                alerts.push(LimitAlert {
                    key,
                    limit_id: usage.limit.id,
                    limit: usage.limit.value,
                    mode: usage.limit.mode,
                    used: usage.used,
                    resets_at: usage.period.resets_at(tz),
                    fired_at: now,
                });
            }
        }
        (alerts, failure)
    }

    /// Delivers one alert, retrying with backoff; logs if every try fails.
    async fn deliver(&self, alert: &LimitAlert) {
        for attempt in 1..=self.attempts {
            match self.sink.deliver(alert).await {
                Ok(()) => {
                    #[cfg(feature = "metrics")]
                    crate::metrics::alert_delivery(true);
                    return;
                }
                Err(e) if attempt == self.attempts => {
                    #[cfg(feature = "metrics")]
                    crate::metrics::alert_delivery(false);
                    tracing::error!(org = %alert.key.org, metric = %alert.key.metric,
                        threshold_percent = alert.key.threshold_percent, error = %e,
                        "alert delivery failed; giving up");
                }
                Err(e) => {
                    tracing::warn!(attempt, error = %e, "alert delivery failed; retrying");
                    tokio::time::sleep(Duration::from_millis(20 << attempt.min(6))).await;
                }
            }
        }
    }
}
