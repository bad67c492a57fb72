//! Usage history through the facade: reports, the event log, repricing,
//! exports and reconciliation of rollups.
//!
//! # Who reads what
//!
//! | Read                                        | owner | admin | member | viewer | operator |
//! |---------------------------------------------|:-----:|:-----:|:------:|:------:|:--------:|
//! | report, org-wide or by metric/provider/model/operation | ✓ | ✓ | ✓ | ✓ | any org |
//! | report by user, or filtered to other users  |   ✓   |   ✓   |  own ¹ | own ¹  | any org  |
//! | event log                                   |  all  |  all  |  own ² | own ²  | any org  |
//! | reprice (dry run)                           |   ✓   |   ✓   |   ✓    |   ✓    | any org  |
//!
//! ¹ A member or viewer may group by user or filter on users only when the
//! filter names exactly themselves; anything else is `PermissionDenied`
//! (it needs [`ViewMemberUsage`](Action::ViewMemberUsage), as
//! [`Tenancy::top_users`] does).
//! ² A member's or viewer's event reads are narrowed to their own events
//! (as the SQL entry points' row-level security narrows them); a filter
//! naming another user is `PermissionDenied`, and another user's event
//! read by id is `None`.

mod export;
mod stripe;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::{Operator, Tenancy};
use crate::error::{Error, Result};
use crate::ids::{EventId, OrgId};
use crate::model::price::PriceTable;
use crate::model::report::{
    CostQuery, EventPage, EventQuery, Granularity, RecordedEvent, ReportPage, ReportQuery,
    RepriceLine, RepriceReport, RetentionOutcome, RollupDrift, RollupReconcileQuery,
};
use crate::model::usage::TokenCounts;
use crate::model::{Action, TenantContext};
use crate::store::{Backend, ReportStore};

/// `PermissionDenied` for a query about another organization.
fn other_org(ctx: &TenantContext, org: OrgId) -> Error {
    Error::permission_denied(format!(
        "the query names organization {org}; the context is organization {}",
        ctx.org()
    ))
}

/// The per-user rule of reports ([`ReportQuery::reads_other_members`]):
/// grouping by user or filtering on users needs `ViewMemberUsage`, unless
/// the filter names exactly the caller.
fn check_user_breakdown(ctx: &TenantContext, query: &ReportQuery) -> Result<()> {
    if query.org != ctx.org() {
        return Err(other_org(ctx, query.org));
    }
    ctx.require(Action::ViewUsage)?;
    if query.reads_other_members(ctx.user()) {
        ctx.require(Action::ViewMemberUsage)?;
    }
    Ok(())
}

/// The per-user rule of event reads: admins and owners read every event;
/// members and viewers their own.
fn scope_event_query(ctx: &TenantContext, query: &EventQuery) -> Result<EventQuery> {
    if query.org != ctx.org() {
        return Err(other_org(ctx, query.org));
    }
    ctx.require(Action::ViewUsage)?;
    let mut query = query.clone();
    if !ctx.can(Action::ViewMemberUsage) {
        if query.filter.users.iter().any(|u| *u != ctx.user()) || query.filter.no_user {
            return Err(Error::permission_denied(format!(
                "reading other users' events needs role {} or higher; user {} is {}",
                Action::ViewMemberUsage.minimum_role(),
                ctx.user(),
                ctx.role()
            )));
        }
        query.filter.users = vec![ctx.user()];
    }
    Ok(query)
}

impl Tenancy {
    fn history_store(&self) -> Result<&dyn ReportStore> {
        self.inner
            .store
            .reports()
            .ok_or_else(crate::store::reports_unsupported)
    }

    /// One page of a report of the context's organization
    /// ([`ReportQuery`](crate::model::report::ReportQuery): range,
    /// granularity in the organization's time zone, grouping, filters,
    /// keyset page), read from rollups. Needs
    /// [`ViewUsage`](Action::ViewUsage); the per-user breakdown needs
    /// [`ViewMemberUsage`](Action::ViewMemberUsage) (see the module's
    /// table). `PermissionDenied` for a query naming another organization.
    pub async fn usage_report(
        &self,
        ctx: &TenantContext,
        query: &ReportQuery,
    ) -> Result<ReportPage> {
        check_user_breakdown(ctx, query)?;
        self.history_store()?.usage_report(query).await
    }

    /// One page of the context's organization's event log, oldest first:
    /// every event for admins and owners, their own for members and
    /// viewers. Needs [`ViewUsage`](Action::ViewUsage).
    pub async fn usage_events(&self, ctx: &TenantContext, query: &EventQuery) -> Result<EventPage> {
        let query = scope_event_query(ctx, query)?;
        self.history_store()?.usage_events(&query).await
    }

    /// One event of the context's organization by id; `None` when it is
    /// not stored, is another organization's, or (for members and
    /// viewers) another user's. Needs [`ViewUsage`](Action::ViewUsage).
    pub async fn usage_event(
        &self,
        ctx: &TenantContext,
        id: EventId,
    ) -> Result<Option<RecordedEvent>> {
        ctx.require(Action::ViewUsage)?;
        let event = self.history_store()?.usage_event(ctx.org(), id).await?;
        Ok(event.filter(|e| ctx.can(Action::ViewMemberUsage) || e.user == Some(ctx.user())))
    }

    /// A dry run of `table` over the context's organization's usage in
    /// `query`'s range: per provider and model, the recorded cost beside
    /// the cost under `table` (each hour's token classes at the price in
    /// effect at the hour's start, by [`PriceTable::quote`]). Reads token
    /// rollups; writes nothing. The query's range and filters apply; its
    /// granularity, grouping and page are ignored (a grouping by user is
    /// dropped before the per-user rule reads the query, so it refuses no
    /// one). A metric filter is `InvalidInput` naming `filter` (token rows
    /// have no metric). The per-user rule is the report's: a filter on
    /// users other than exactly the caller needs
    /// [`ViewMemberUsage`](Action::ViewMemberUsage).
    pub async fn reprice(
        &self,
        ctx: &TenantContext,
        query: &ReportQuery,
        table: &PriceTable,
    ) -> Result<RepriceReport> {
        let query = ReportQuery {
            group_by: Default::default(),
            ..query.clone()
        };
        check_user_breakdown(ctx, &query)?;
        self.reprice_org(&query, table).await
    }

    async fn reprice_org(&self, query: &ReportQuery, table: &PriceTable) -> Result<RepriceReport> {
        let store = self.history_store()?;
        let mut cost_query: CostQuery = ReportQuery {
            granularity: Granularity::Hour,
            group_by: Default::default(),
            after: None,
            limit: crate::model::report::MAX_PAGE_SIZE,
            ..query.clone()
        };
        let mut lines: BTreeMap<(String, String), RepriceLine> = BTreeMap::new();
        // An hour of a model comes in one row per cost provenance: it is
        // priced once, as a whole.
        let mut hours: BTreeMap<(String, String, DateTime<Utc>), (TokenCounts, u64)> =
            BTreeMap::new();
        loop {
            let page = store.usage_costs(&cost_query).await?;
            for row in &page.rows {
                let provider = row.key.provider.clone().unwrap_or_default();
                let model = row.key.model.clone().unwrap_or_default();
                let line = lines
                    .entry((provider.clone(), model.clone()))
                    .or_insert_with(|| RepriceLine {
                        provider: provider.clone(),
                        model: model.clone(),
                        events: 0,
                        tokens: TokenCounts::default(),
                        recorded_usd: Decimal::ZERO,
                        repriced_usd: Decimal::ZERO,
                        unpriced_events: 0,
                    });
                line.events += row.events;
                line.tokens.add(&row.tokens);
                line.recorded_usd += row.cost_usd;
                let hour = hours
                    .entry((provider, model, row.bucket_start))
                    .or_default();
                hour.0.add(&row.tokens);
                hour.1 += row.events;
            }
            match page.next {
                Some(next) => cost_query.after = Some(next),
                None => break,
            }
        }
        for ((provider, model, start), (tokens, events)) in hours {
            if tokens.is_zero() {
                continue;
            }
            let Some(line) = lines.get_mut(&(provider, model)) else {
                continue;
            };
            match table.quote(&line.provider, &line.model, start, &tokens)? {
                Ok(priced) => line.repriced_usd += priced.cost,
                Err(_) => line.unpriced_events += events,
            }
        }
        let lines: Vec<RepriceLine> = lines.into_values().collect();
        Ok(RepriceReport {
            table: table.label(),
            from: query.from,
            to: query.to,
            recorded_usd: lines.iter().map(|l| l.recorded_usd).sum(),
            repriced_usd: lines.iter().map(|l| l.repriced_usd).sum(),
            lines,
        })
    }
}

impl Operator<'_> {
    fn history_store(&self) -> Result<&dyn ReportStore> {
        self.tenancy.history_store()
    }

    /// [`Tenancy::usage_report`] for any organization, every breakdown
    /// allowed. `NotFound` if it does not exist.
    pub async fn usage_report(&self, query: &ReportQuery) -> Result<ReportPage> {
        self.history_store()?.usage_report(query).await
    }

    /// [`Tenancy::usage_events`] for any organization, every user's.
    pub async fn usage_events(&self, query: &EventQuery) -> Result<EventPage> {
        self.history_store()?.usage_events(query).await
    }

    /// One event of any organization by id.
    pub async fn usage_event(&self, org: OrgId, id: EventId) -> Result<Option<RecordedEvent>> {
        self.history_store()?.usage_event(org, id).await
    }

    /// [`Tenancy::reprice`] for any organization.
    pub async fn reprice(&self, query: &ReportQuery, table: &PriceTable) -> Result<RepriceReport> {
        self.tenancy.cached_org(query.org).await?;
        self.tenancy.reprice_org(query, table).await
    }

    /// The rollups of `query`'s hours that disagree with the event log
    /// ([`ReportStore::reconcile_rollups`]). Reads only.
    pub async fn reconcile_rollups(
        &self,
        query: &RollupReconcileQuery,
    ) -> Result<Vec<RollupDrift>> {
        self.history_store()?.reconcile_rollups(query).await
    }

    /// Sets the drifting rollups of `query`'s hours to what the event log
    /// sums to, and returns the drift corrected
    /// ([`ReportStore::repair_rollups`]).
    pub async fn repair_rollups(&self, query: &RollupReconcileQuery) -> Result<Vec<RollupDrift>> {
        self.history_store()?.repair_rollups(query).await
    }

    /// Drops every organization's events older than `age` before now from
    /// the event log, keeping rollups and counters (reports over those
    /// periods still answer). `age` must be at least
    /// [`MAX_EVENT_AGE`](crate::model::MAX_EVENT_AGE) (31 days), so no
    /// event that may still be recorded is dropped (`InvalidInput` naming
    /// `age`).
    pub async fn drop_usage_events_older_than(
        &self,
        age: chrono::TimeDelta,
    ) -> Result<RetentionOutcome> {
        if age < crate::model::MAX_EVENT_AGE {
            return Err(Error::invalid_input(
                "age",
                format_args!(
                    "at least {} days: younger events may still be recorded",
                    crate::model::MAX_EVENT_AGE.num_days()
                ),
            ));
        }
        let before = self
            .tenancy
            .now()
            .checked_sub_signed(age)
            .ok_or_else(|| Error::invalid_input("age", "too large"))?;
        self.history_store()?.drop_usage_events(before).await
    }

    /// Maps `org` to the host's Stripe customer (`None` removes it); only
    /// mapped organizations are exported.
    pub async fn set_billing_customer(
        &self,
        org: OrgId,
        stripe_customer_id: Option<&str>,
    ) -> Result<()> {
        self.history_store()?
            .set_billing_customer(org, stripe_customer_id)
            .await
    }

    /// `org`'s Stripe customer, if mapped.
    pub async fn billing_customer(&self, org: OrgId) -> Result<Option<String>> {
        self.history_store()?.billing_customer(org).await
    }
}
