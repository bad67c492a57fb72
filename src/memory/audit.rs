//! `AuditStore` for [`MemoryStore`]: the log kept beside the tenants (it
//! outlives a deleted organization), written under the store's lock by the
//! other capabilities' writes through [`AuditState::write`].
//!
//! The rows before and after are JSON objects with the SQL tables' column
//! names (`organizations`, `user_organizations`, `org_features`,
//! `usage_limits`), built by the `*_row` functions here.

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::error::Result;
use crate::ids::OrgId;
use crate::limits::Limit;
use crate::model::audit::{AuditActor, AuditContext, AuditEvent, AuditQuery};
use crate::model::{Feature, Membership, Organization};
use crate::store::AuditStore;

use super::MemoryStore;

/// What the embedded store keeps for this capability, under its one lock.
#[derive(Debug, Default)]
pub(super) struct AuditState {
    /// Every event, oldest first (by id).
    events: Vec<AuditEvent>,
    /// The id of the last event written.
    last_id: i64,
}

impl AuditState {
    /// Appends the event of one change to a row of `org`: `entity` is the
    /// action's first part (`invitation`), `target` the row's key, `before`
    /// and `after` the row (`None`: absent) as JSON with the SQL table's
    /// column names and no secrets (leave `token_hash` out). The verb
    /// follows: created (no `before`), deleted (no `after`), updated (both;
    /// nothing is written when they are equal). The actor and request id
    /// are the task's [`AuditContext`]; the time is its `at`, else `at`
    /// (the change's own time, when it carries one), else the last event's.
    ///
    /// Call it in the same locked section as the change, after the change
    /// can no longer fail.
    pub(super) fn write(
        &mut self,
        org: OrgId,
        entity: &str,
        target: String,
        before: Option<Value>,
        after: Option<Value>,
        at: Option<DateTime<Utc>>,
    ) {
        let verb = match (&before, &after) {
            (None, None) => return,
            (None, Some(_)) => "created",
            (Some(_), None) => "deleted",
            (Some(b), Some(a)) if a == b => return,
            (Some(_), Some(_)) => "updated",
        };
        let context = AuditContext::current();
        let last_at = self.events.last().map(|e| e.at);
        let at = context
            .at
            .or(at)
            .or(last_at)
            .unwrap_or(DateTime::UNIX_EPOCH);
        // The SQL stores keep microseconds; so does a cursor.
        let at = DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at);
        self.last_id += 1;
        self.events.push(AuditEvent {
            id: self.last_id,
            organization_id: org,
            actor: context.actor.unwrap_or_else(AuditActor::service),
            action: format!("{entity}.{verb}"),
            target: Some(target),
            before,
            after,
            at,
            request_id: context.request_id.map(|r| r.as_str().to_owned()),
        });
    }

    /// [`write`](Self::write) of a membership.
    pub(super) fn member(
        &mut self,
        before: Option<&Membership>,
        after: Option<&Membership>,
        at: Option<DateTime<Utc>>,
    ) {
        let Some(m) = after.or(before) else { return };
        self.write(
            m.organization_id,
            "member",
            m.user_id.to_string(),
            before.map(membership_row),
            after.map(membership_row),
            at,
        );
    }

    /// [`write`](Self::write) of an organization.
    pub(super) fn organization(
        &mut self,
        before: Option<&Organization>,
        after: Option<&Organization>,
        at: Option<DateTime<Utc>>,
    ) {
        let Some(o) = after.or(before) else { return };
        self.write(
            o.id,
            "organization",
            o.id.to_string(),
            before.map(organization_row),
            after.map(organization_row),
            at,
        );
    }

    /// [`write`](Self::write) of a feature row of `org`.
    pub(super) fn feature(
        &mut self,
        org: OrgId,
        before: Option<&Feature>,
        after: Option<&Feature>,
        at: Option<DateTime<Utc>>,
    ) {
        let Some(f) = after.or(before) else { return };
        self.write(
            org,
            "feature",
            f.key.to_string(),
            before.map(|f| feature_row(org, f)),
            after.map(|f| feature_row(org, f)),
            at,
        );
    }

    /// [`write`](Self::write) of a limit.
    pub(super) fn limit(
        &mut self,
        before: Option<&Limit>,
        after: Option<&Limit>,
        at: Option<DateTime<Utc>>,
    ) {
        let Some(l) = after.or(before) else { return };
        self.write(
            l.org,
            "limit",
            l.id.to_string(),
            before.map(limit_row),
            after.map(limit_row),
            at,
        );
    }
}

/// A time as `to_jsonb(timestamptz)` writes it.
pub(super) fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, false)
}

/// An `organizations` row.
pub(super) fn organization_row(o: &Organization) -> Value {
    json!({
        "id": o.id,
        "name": o.name,
        "slug": o.slug.as_str(),
        "owner_user_id": o.owner_user_id,
        "timezone": o.timezone.name(),
        "created_at": time(o.created_at),
    })
}

/// A `user_organizations` row.
pub(super) fn membership_row(m: &Membership) -> Value {
    json!({
        "organization_id": m.organization_id,
        "user_id": m.user_id,
        "role": m.role,
        "created_at": time(m.created_at),
    })
}

/// An `org_features` row.
pub(super) fn feature_row(org: OrgId, f: &Feature) -> Value {
    json!({
        "organization_id": org,
        "feature_key": f.key.as_str(),
        "enabled": f.enabled,
        "config": f.config,
        "updated_at": time(f.updated_at),
        "expires_at": f.expires_at.map(time),
    })
}

/// A `usage_limits` row.
pub(super) fn limit_row(l: &Limit) -> Value {
    let value: Value = serde_json::from_str(&l.value.normalize().to_string())
        .unwrap_or_else(|_| Value::String(l.value.to_string()));
    json!({
        "id": l.id,
        "organization_id": l.org,
        "user_id": l.scope.user(),
        "limit_type": format!("{}_{}", l.period.as_str(), l.metric),
        "limit_value": value,
        "period": l.period.as_str(),
        "mode": l.mode.as_str(),
        "metric": l.metric.as_str(),
        "created_at": time(l.created_at),
        "expires_at": l.expires_at.map(time),
    })
}

#[async_trait]
impl AuditStore for MemoryStore {
    async fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let state = self.lock();
        let mut events: Vec<&AuditEvent> = state
            .audit
            .events
            .iter()
            .filter(|e| query.admits(e))
            .collect();
        events.sort_by_key(|e| std::cmp::Reverse(e.cursor()));
        Ok(events.into_iter().take(query.limit).cloned().collect())
    }
}
