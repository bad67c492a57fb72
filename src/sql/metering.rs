//! Recording, reading and holding usage over SQL.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use super::args::{
    EventArg, HistoryArgs, ReconcileArgs, ReleaseArgs, Released, ReserveArgs, SnapshotArgs,
};
use super::{Idempotent, Sql, SqlTransport, explained, org_missing};
use crate::error::{ErrorKind, Result};
use crate::ids::{OrgId, ReservationId, UserId};
use crate::limits::UsageSnapshot;
use crate::model::UsageRecord;
use crate::model::usage::CostSource;
use crate::store::{
    CommitOutcome, CommitRequest, CounterDrift, CounterScope, CounterValue, HistoryQuery,
    ReconcileQuery, RecordOutcome, ReleaseRequest, ReserveRequest, ReserveResult, UsageQuery,
};

impl<T: SqlTransport + ?Sized> Sql<'_, T> {
    pub(crate) async fn record_usage(&self, batch: &[UsageRecord]) -> Result<RecordOutcome> {
        if batch.is_empty() {
            return Ok(RecordOutcome::default());
        }
        // The function's one argument is unnamed: the events array itself.
        let events: Vec<RecordArg<'_>> = batch.iter().map(RecordArg::from).collect();
        // Idempotent by event id: safe to retry after any transient failure.
        self.rpc(
            "tenancy_record_usage",
            "recording usage",
            Idempotent::Yes,
            &events,
        )
        .await
        .map_err(super::named_field(&[("occurred_at", "occurred_at")]))
    }

    pub(crate) async fn usage_snapshot(&self, query: &UsageQuery) -> Result<UsageSnapshot> {
        let args = SnapshotArgs {
            org_id: query.org,
            daily_start: query.periods.daily.start,
            monthly_start: query.periods.monthly.start,
            now: query.now,
            user_id: query.user,
            metric: query.metric.as_ref(),
        };
        self.rpc(
            "tenancy_usage_snapshot",
            "reading usage",
            Idempotent::Yes,
            &args,
        )
        .await
    }

    pub(crate) async fn usage_history(&self, query: &HistoryQuery) -> Result<Vec<CounterValue>> {
        let (scope, user) = match query.scope {
            CounterScope::Organization => ("organization", None),
            CounterScope::User(user) => ("user", Some(user)),
            CounterScope::EachUser => ("each_user", None),
        };
        // Every period start is a date of years 1 to 9999 (events are
        // recorded near now); wider bounds, which PostgreSQL cannot read
        // (chrono writes them as `+10000-01-01`), ask for the same rows.
        let (first, last) = (
            NaiveDate::from_ymd_opt(1, 1, 1).unwrap_or(NaiveDate::MIN),
            NaiveDate::from_ymd_opt(9999, 12, 31).unwrap_or(NaiveDate::MAX),
        );
        let args = HistoryArgs {
            org_id: query.org,
            scope,
            user_id: user,
            metric: query.metric.as_ref(),
            period: query.period,
            from_start: query.from.clamp(first, last),
            to_start: query.to.clamp(first, last),
        };
        self.rpc(
            "tenancy_usage_history",
            "reading usage history",
            Idempotent::Yes,
            &args,
        )
        .await
    }

    pub(crate) async fn reserve(&self, request: &ReserveRequest) -> Result<ReserveResult> {
        let args = ReserveArgs {
            org_id: request.org,
            user_id: request.user,
            metric: &request.metric,
            amount: request.amount,
            daily_start: request.periods.daily.start,
            monthly_start: request.periods.monthly.start,
            now: request.now,
            expires_at: request.expires_at,
            reservation_id: request.id,
            purge_before: request.purge_before,
        };
        // Not idempotent: a retried grant would count its own first hold.
        self.rpc("tenancy_reserve", "reserving", Idempotent::No, &args)
            .await
            .map_err(org_missing(request.org))
    }

    pub(crate) async fn commit_reservation(
        &self,
        request: &CommitRequest,
    ) -> Result<CommitOutcome> {
        let args = CommitArgs {
            org_id: request.org,
            user_id: request.user,
            reservation_id: request.id,
            event: RecordArg::from(&request.usage),
            now: request.now,
        };
        // Retrying a commit is harmless: the event id dedupes, and a retry
        // after the hold was dropped finds the event recorded.
        self.rpc(
            "tenancy_commit_reservation",
            "committing a reservation",
            Idempotent::Yes,
            &args,
        )
        .await
        .map_err(|e| {
            explained(e, |kind, _| {
                hold_refusal(kind, request.org, request.user, request.id)
            })
        })
    }

    pub(crate) async fn release_reservation(&self, request: &ReleaseRequest) -> Result<bool> {
        let args = ReleaseArgs {
            org_id: request.org,
            user_id: request.user,
            reservation_id: request.id,
            now: request.now,
        };
        // Not retried after an ambiguous failure: a retry would report a
        // hold it had just released as gone.
        let released: Released = self
            .rpc(
                "tenancy_release_reservation",
                "releasing a reservation",
                Idempotent::No,
                &args,
            )
            .await
            .map_err(|e| {
                explained(e, |kind, _| {
                    hold_refusal(kind, request.org, request.user, request.id)
                })
            })?;
        Ok(released.released)
    }
}

impl<T: SqlTransport + ?Sized> Sql<'_, T> {
    pub(crate) async fn reconcile_usage(
        &self,
        query: &ReconcileQuery,
    ) -> Result<Vec<CounterDrift>> {
        self.rpc(
            "tenancy_reconcile_usage",
            "reconciling usage",
            Idempotent::Yes,
            &ReconcileArgs::from(query),
        )
        .await
    }

    pub(crate) async fn repair_usage(&self, query: &ReconcileQuery) -> Result<Vec<CounterDrift>> {
        // Idempotent: a retry after a repair that landed finds no drift
        // left and reports none.
        self.rpc(
            "tenancy_repair_usage",
            "repairing usage counters",
            Idempotent::Yes,
            &ReconcileArgs::from(query),
        )
        .await
        .map_err(org_missing(query.org))
    }
}

impl<'a> From<&'a ReconcileQuery> for ReconcileArgs<'a> {
    fn from(query: &'a ReconcileQuery) -> Self {
        ReconcileArgs {
            org_id: query.org,
            period: query.period.period,
            period_start: query.period.start,
            metric: query.metric.as_ref(),
        }
    }
}

/// One event of `tenancy_record_usage` (and the `event` of
/// `tenancy_commit_reservation`): the columns of [`EventArg`], then the
/// token classes past input, cached input and output, and the cost's
/// provenance (migration 14). Every event carries every key (PostgREST
/// refuses a batch whose objects have different keys).
#[derive(Debug, Serialize)]
struct RecordArg<'a> {
    #[serde(flatten)]
    event: EventArg<'a>,
    cache_write_tokens: u64,
    reasoning_tokens: u64,
    audio_input_tokens: u64,
    audio_output_tokens: u64,
    image_input_tokens: u64,
    image_output_tokens: u64,
    /// `provider` or `price_table`; null for an event without a cost.
    cost_source: Option<&'static str>,
    price_provider: Option<&'a str>,
    price_model: Option<&'a str>,
    price_effective_from: Option<NaiveDate>,
    price_table: Option<&'a str>,
}

impl<'a> From<&'a UsageRecord> for RecordArg<'a> {
    fn from(r: &'a UsageRecord) -> Self {
        let e = &r.event;
        // As the record has it (`UsageEvent::cost_source`): the memory
        // store keeps the same.
        let source = e.cost_source.as_ref();
        let price = match source {
            Some(CostSource::PriceTable {
                provider,
                model,
                effective_from,
                table,
            }) => Some((
                provider.as_str(),
                model.as_str(),
                *effective_from,
                table.as_str(),
            )),
            _ => None,
        };
        RecordArg {
            event: EventArg::from(r),
            cache_write_tokens: e.cache_write_tokens,
            reasoning_tokens: e.reasoning_tokens,
            audio_input_tokens: e.audio_input_tokens,
            audio_output_tokens: e.audio_output_tokens,
            image_input_tokens: e.image_input_tokens,
            image_output_tokens: e.image_output_tokens,
            cost_source: source.map(CostSource::kind),
            price_provider: price.map(|p| p.0),
            price_model: price.map(|p| p.1),
            price_effective_from: price.map(|p| p.2),
            price_table: price.map(|p| p.3),
        }
    }
}

/// Arguments of `tenancy_commit_reservation`, its event a [`RecordArg`].
#[derive(Debug, Serialize)]
struct CommitArgs<'a> {
    org_id: OrgId,
    user_id: UserId,
    reservation_id: ReservationId,
    event: RecordArg<'a>,
    now: DateTime<Utc>,
}

/// What a refused commit or release means: no such hold (and, for a
/// commit, no event under its id), or another user's hold.
fn hold_refusal(kind: ErrorKind, org: OrgId, user: UserId, hold: ReservationId) -> Option<String> {
    match kind {
        ErrorKind::NotFound => Some(format!(
            "reservation {hold} not found in organization {org}; nothing was recorded"
        )),
        ErrorKind::PermissionDenied => {
            Some(format!("reservation {hold} was not made for user {user}"))
        }
        _ => None,
    }
}
