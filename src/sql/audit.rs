//! `AuditStore` over SQL: `tenancy_audit_log` reads `public.audit_events`,
//! which the triggers of `migrations/20261206000900_tenancy_audit_log.sql`
//! write with every change.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Idempotent, Sql, SqlTransport};
use crate::error::{Error, Result};
use crate::ids::{OrgId, UserId};
use crate::model::audit::{AuditActor, AuditEvent, AuditQuery, MAX_AUDIT_PAGE};

/// Arguments of `tenancy_audit_log`.
#[derive(Debug, Serialize)]
struct AuditLogArgs<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    org_id: Option<OrgId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor_kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor_user_id: Option<UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    until: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    before_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    before_id: Option<i64>,
    max_rows: usize,
}

/// One event as `tenancy.audit_event_json` writes it.
#[derive(Debug, Deserialize)]
struct AuditRow {
    id: i64,
    organization_id: OrgId,
    actor_kind: String,
    actor_user_id: Option<UserId>,
    actor_name: Option<String>,
    action: String,
    target: Option<String>,
    before: Option<Value>,
    after: Option<Value>,
    request_id: Option<String>,
    at: DateTime<Utc>,
}

impl AuditRow {
    fn into_event(self) -> Result<AuditEvent> {
        let actor = match (self.actor_kind.as_str(), self.actor_user_id) {
            ("user", Some(user_id)) => AuditActor::User { user_id },
            ("operator", _) => AuditActor::Operator {
                name: self.actor_name.unwrap_or_default(),
            },
            ("service", _) => AuditActor::Service {
                name: self.actor_name,
            },
            (kind, _) => {
                return Err(Error::unexpected(format!(
                    "reading the audit log: event {} has the actor kind {kind:?}",
                    self.id
                )));
            }
        };
        Ok(AuditEvent {
            id: self.id,
            organization_id: self.organization_id,
            actor,
            action: self.action,
            target: self.target,
            before: self.before,
            after: self.after,
            at: self.at,
            request_id: self.request_id,
        })
    }
}

impl<T: SqlTransport + ?Sized> Sql<'_, T> {
    pub(crate) async fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        if query.limit == 0 || query.limit > MAX_AUDIT_PAGE + 1 {
            return Err(Error::invalid_input(
                "limit",
                format_args!(
                    "{} is not between 1 and {} events a page",
                    query.limit,
                    MAX_AUDIT_PAGE + 1
                ),
            ));
        }
        let actor = query.actor.as_ref();
        let args = AuditLogArgs {
            org_id: query.org,
            actor_kind: actor.map(AuditActor::kind),
            actor_user_id: actor.and_then(AuditActor::user_id),
            actor_name: actor.and_then(AuditActor::name),
            action: query.action.as_deref(),
            since: query.since,
            until: query.until,
            before_at: query.after.map(|c| c.at),
            before_id: query.after.map(|c| c.id),
            max_rows: query.limit,
        };
        let rows: Vec<AuditRow> = self
            .rpc(
                "tenancy_audit_log",
                "reading the audit log",
                Idempotent::Yes,
                &args,
            )
            .await?;
        rows.into_iter().map(AuditRow::into_event).collect()
    }
}
