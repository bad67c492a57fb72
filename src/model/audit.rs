//! Audit events: who changed what, before and after.
//!
//! An [`AuditEvent`] records one change to an organization, a membership,
//! a feature row, a limit, an invitation or a verified domain: the
//! organization, the [`AuditActor`], the action (`<entity>.<verb>`, see
//! [`AuditEvent::action`]) and its target, the row before and after as
//! JSON, the time, and the [`RequestId`] the host passed. Reading the log
//! is an [`AuditQuery`]: keyset pages, newest first.

use std::fmt;
use std::future::Future;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::ids::{OrgId, UserId};

/// The most events one page of the audit log holds.
pub const MAX_AUDIT_PAGE: usize = 1000;

/// The most characters of a [`RequestId`], and of an operator's or
/// service's name in the log (a longer name is cut).
pub const MAX_AUDIT_TEXT_CHARS: usize = 200;

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum AuditActor {
    /// A signed-in user: through the facade acting for them, or their own
    /// JWT writing a table directly (then always the JWT's user).
    User {
        /// The user.
        user_id: UserId,
    },
    /// The platform operator, by the name of its
    /// [`PlatformOperator`](crate::PlatformOperator).
    Operator {
        /// The operator's name.
        name: String,
    },
    /// The service itself: a store call no user or operator was named for
    /// (a worker, a migration, the SQL editor), with a name when it gave one.
    Service {
        /// The service's name, when it gave one.
        name: Option<String>,
    },
}

impl AuditActor {
    /// A user.
    pub fn user(user_id: UserId) -> Self {
        AuditActor::User { user_id }
    }

    /// An operator by name (cut to [`MAX_AUDIT_TEXT_CHARS`]).
    pub fn operator(name: &str) -> Self {
        AuditActor::Operator {
            name: cut(name.trim()),
        }
    }

    /// The service, unnamed.
    pub fn service() -> Self {
        AuditActor::Service { name: None }
    }

    /// `user`, `operator` or `service`.
    pub fn kind(&self) -> &'static str {
        match self {
            AuditActor::User { .. } => "user",
            AuditActor::Operator { .. } => "operator",
            AuditActor::Service { .. } => "service",
        }
    }

    /// The user, for a user.
    pub fn user_id(&self) -> Option<UserId> {
        match self {
            AuditActor::User { user_id } => Some(*user_id),
            _ => None,
        }
    }

    /// The name, for an operator or a named service.
    pub fn name(&self) -> Option<&str> {
        match self {
            AuditActor::User { .. } => None,
            AuditActor::Operator { name } => Some(name),
            AuditActor::Service { name } => name.as_deref(),
        }
    }

    /// Whether an event by `self` matches this actor as a filter: the same
    /// user, the same operator, or (a service without a name) any service.
    pub fn matches(&self, actor: &AuditActor) -> bool {
        match (self, actor) {
            (AuditActor::Service { name: None }, AuditActor::Service { .. }) => true,
            _ => self == actor,
        }
    }
}

impl fmt::Display for AuditActor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditActor::User { user_id } => write!(f, "user {user_id}"),
            AuditActor::Operator { name } => write!(f, "operator {name}"),
            AuditActor::Service { name: None } => f.write_str("service"),
            AuditActor::Service { name: Some(name) } => write!(f, "service {name}"),
        }
    }
}

/// The host's id of the request a change was made in (a trace or request
/// id), carried into the audit log: 1 to [`MAX_AUDIT_TEXT_CHARS`] visible
/// ASCII characters (it travels as an HTTP header).
///
/// It correlates, it does not identify: whoever calls may set it.
///
/// ```
/// use tenancy::model::audit::RequestId;
/// assert!(RequestId::parse("req-42").is_ok());
/// assert!(RequestId::parse("").is_err());
/// assert!(RequestId::parse("two words").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct RequestId(String);

impl RequestId {
    /// Checks `id`: `InvalidInput` naming `request_id` if it is empty,
    /// longer than [`MAX_AUDIT_TEXT_CHARS`], or holds anything but visible
    /// ASCII.
    pub fn parse(id: &str) -> Result<Self> {
        if id.is_empty() || id.len() > MAX_AUDIT_TEXT_CHARS {
            return Err(Error::invalid_input(
                "request_id",
                format_args!("must be 1 to {MAX_AUDIT_TEXT_CHARS} characters"),
            ));
        }
        if !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::invalid_input(
                "request_id",
                "must be visible ASCII characters without spaces",
            ));
        }
        Ok(RequestId(id.to_owned()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RequestId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        RequestId::parse(s)
    }
}

/// One change, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct AuditEvent {
    /// The event's number: increasing in the order events were written.
    pub id: i64,
    /// The organization the change belongs to.
    pub organization_id: OrgId,
    /// Who made it.
    pub actor: AuditActor,
    /// `<entity>.<verb>`: the entity is `organization`, `member`,
    /// `feature`, `limit`, `rate_limit`, `invitation`, `domain`, `plan`
    /// (an organization's plan assignment) or `plan_version`; the verb
    /// `created`, `updated` or `deleted`. `plan_version.created` is written
    /// under the nil organization id (the catalog belongs to no
    /// organization).
    pub action: String,
    /// The changed row's key: the organization's id, the member's user id,
    /// the feature key, the limit's id, the invitation's id, the domain.
    pub target: Option<String>,
    /// The row before (`None` for `created`), with the SQL table's column
    /// names; secrets (an invitation's `token_hash`) are never in it.
    pub before: Option<Value>,
    /// The row after (`None` for `deleted`).
    pub after: Option<Value>,
    /// When: the database's transaction time on the SQL stores, the
    /// facade's clock on `MemoryStore` (to the microsecond).
    pub at: DateTime<Utc>,
    /// The request id the host passed, if any.
    pub request_id: Option<String>,
}

impl AuditEvent {
    /// Where this event is in the log: the cursor of the page after it.
    pub fn cursor(&self) -> AuditCursor {
        AuditCursor {
            at: self.at,
            id: self.id,
        }
    }

    /// The entity of [`action`](Self::action): `member` of `member.updated`.
    pub fn entity(&self) -> &str {
        self.action.split('.').next().unwrap_or_default()
    }
}

/// A position in the log, newest first: a page after it holds the events
/// older than (`at`, `id`).
///
/// It prints (and serializes) as text for a URL (`<microseconds>_<id>`),
/// and parses back.
///
/// ```
/// use tenancy::model::audit::AuditCursor;
/// let cursor: AuditCursor = "1767225600000000_42".parse()?;
/// assert_eq!(cursor.id, 42);
/// assert_eq!(cursor.to_string().parse::<AuditCursor>()?, cursor);
/// assert!("42".parse::<AuditCursor>().is_err());
/// # Ok::<(), tenancy::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AuditCursor {
    /// The last event's time.
    pub at: DateTime<Utc>,
    /// The last event's id.
    pub id: i64,
}

impl fmt::Display for AuditCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.at.timestamp_micros(), self.id)
    }
}

impl Serialize for AuditCursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl FromStr for AuditCursor {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::invalid_input("cursor", "is not a page cursor of the audit log");
        let (micros, id) = s.split_once('_').ok_or_else(bad)?;
        let micros: i64 = micros.parse().map_err(|_| bad())?;
        let id: i64 = id.parse().map_err(|_| bad())?;
        let at = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
        Ok(AuditCursor { at, id })
    }
}

/// Which events to read: filters and a page.
///
/// ```
/// use tenancy::model::audit::{AuditActor, AuditQuery};
/// use tenancy::UserId;
/// let query = AuditQuery::new(50)?.action("member")?.actor(AuditActor::user(UserId::new_v7()));
/// assert_eq!(query.limit, 50);
/// assert!(AuditQuery::new(0).is_err());
/// # Ok::<(), tenancy::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditQuery {
    /// One organization's events; `None` (the operator only): every
    /// organization's. The tenant facade sets it to the context's.
    pub org: Option<OrgId>,
    /// Only this actor's events ([`AuditActor::matches`]).
    pub actor: Option<AuditActor>,
    /// Only this action (`member.updated`), or with no dot every action of
    /// that entity (`member`).
    pub action: Option<String>,
    /// Only events at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only events before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only events older than this position (the previous page's last).
    pub after: Option<AuditCursor>,
    /// At most this many events, 1 to [`MAX_AUDIT_PAGE`].
    pub limit: usize,
}

impl AuditQuery {
    /// The newest `limit` events (1 to [`MAX_AUDIT_PAGE`]; `InvalidInput`
    /// naming `limit` otherwise), unfiltered.
    pub fn new(limit: usize) -> Result<Self> {
        if limit == 0 || limit > MAX_AUDIT_PAGE {
            return Err(Error::invalid_input(
                "limit",
                format_args!("{limit} is not between 1 and {MAX_AUDIT_PAGE} events a page"),
            ));
        }
        Ok(AuditQuery {
            org: None,
            actor: None,
            action: None,
            since: None,
            until: None,
            after: None,
            limit,
        })
    }

    /// Only `org`'s events.
    pub fn org(mut self, org: OrgId) -> Self {
        self.org = Some(org);
        self
    }

    /// Only `actor`'s events.
    pub fn actor(mut self, actor: AuditActor) -> Self {
        self.actor = Some(actor);
        self
    }

    /// Only `action` (`member.updated`) or, without a dot, its entity's
    /// (`member`): lowercase letters, `_` and at most one `.`, at most 64
    /// characters (`InvalidInput` naming `action` otherwise). Blank: no
    /// filter.
    pub fn action(mut self, action: &str) -> Result<Self> {
        let action = action.trim();
        if action.is_empty() {
            self.action = None;
            return Ok(self);
        }
        let valid = action.len() <= 64
            && action.matches('.').count() <= 1
            && action.split('.').all(|part| {
                !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            });
        if !valid {
            return Err(Error::invalid_input(
                "action",
                "must be an entity (member) or an action (member.updated)",
            ));
        }
        self.action = Some(action.to_owned());
        Ok(self)
    }

    /// Only events at or after `since` and before `until` (either open).
    /// `InvalidInput` naming `until` if it is not after `since`.
    pub fn between(
        mut self,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Result<Self> {
        if let (Some(s), Some(u)) = (since, until)
            && u <= s
        {
            return Err(Error::invalid_input("until", "must be after since"));
        }
        self.since = since;
        self.until = until;
        Ok(self)
    }

    /// The page after `cursor`.
    pub fn after(mut self, cursor: AuditCursor) -> Self {
        self.after = Some(cursor);
        self
    }

    /// Whether `event` passes the filters and lies after the cursor (the
    /// rule every store applies; `MemoryStore` calls it).
    pub fn admits(&self, event: &AuditEvent) -> bool {
        self.org.is_none_or(|o| o == event.organization_id)
            && self.actor.as_ref().is_none_or(|a| a.matches(&event.actor))
            && self.action.as_deref().is_none_or(|a| {
                event.action == a
                    || (!a.contains('.')
                        && event
                            .action
                            .strip_prefix(a)
                            .is_some_and(|r| r.starts_with('.')))
            })
            && self.since.is_none_or(|s| event.at >= s)
            && self.until.is_none_or(|u| event.at < u)
            && self.after.is_none_or(|c| event.cursor() < c)
    }
}

/// One page of the audit log, newest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct AuditPage {
    /// The events, newest first (by time, then id).
    pub events: Vec<AuditEvent>,
    /// The cursor of the next (older) page, `None` on the last page.
    pub next: Option<AuditCursor>,
}

impl AuditPage {
    /// A page of `events` with `next`.
    pub fn new(events: Vec<AuditEvent>, next: Option<AuditCursor>) -> Self {
        AuditPage { events, next }
    }
}

tokio::task_local! {
    static AUDIT_CONTEXT: AuditContext;
}

/// Who is acting, and in which request, for the audit events of the store
/// calls made inside [`scope`](AuditContext::scope).
///
/// The facade sets it around its store calls ([`Tenancy`](crate::Tenancy)
/// names the user of the context, [`Operator`](crate::Operator) its name),
/// and [`Tenancy::with_request_id`](crate::Tenancy::with_request_id) adds
/// the host's request id. Code that calls a store directly (a worker) may
/// set its own. The backends read it: `MemoryStore` in its locked section;
/// `SupabaseStore` sends it as the request headers `x-tenancy-actor` and
/// `x-tenancy-request-id`; `PgStore` sets `request.headers` to the same for
/// the call's statement. The SQL believes the actor only from the service
/// role: a user JWT's events always name the JWT's user.
///
/// It is task-local: a task spawned inside the scope does not inherit it.
///
/// ```
/// use tenancy::model::audit::{AuditActor, AuditContext, RequestId};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenancy::Result<()> {
/// let context = AuditContext::new()
///     .actor(AuditActor::operator("billing-worker"))
///     .request_id(RequestId::parse("req-7")?);
/// let seen = context.scope(async { AuditContext::current() }).await;
/// assert_eq!(seen.actor, Some(AuditActor::operator("billing-worker")));
/// assert_eq!(AuditContext::current().actor, None);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditContext {
    /// Who acts; `None`: the service.
    pub actor: Option<AuditActor>,
    /// The host's request id.
    pub request_id: Option<RequestId>,
    /// The time the facade read for the operation: `MemoryStore` stamps its
    /// events with it (stores never read the clock). The SQL stores use the
    /// database's transaction time.
    pub at: Option<DateTime<Utc>>,
}

impl AuditContext {
    /// No actor (the service), no request id, no time.
    pub fn new() -> Self {
        AuditContext::default()
    }

    /// The context of the running task (empty outside any scope).
    pub fn current() -> Self {
        AUDIT_CONTEXT.try_with(Clone::clone).unwrap_or_default()
    }

    /// With `actor`.
    pub fn actor(mut self, actor: AuditActor) -> Self {
        self.actor = Some(actor);
        self
    }

    /// With `request_id`.
    pub fn request_id(mut self, request_id: RequestId) -> Self {
        self.request_id = Some(request_id);
        self
    }

    /// With the operation's time.
    pub fn at(mut self, at: DateTime<Utc>) -> Self {
        self.at = Some(at);
        self
    }

    /// Runs `future` with this context.
    pub async fn scope<F: Future>(self, future: F) -> F::Output {
        AUDIT_CONTEXT.scope(self, future).await
    }

    /// `x-tenancy-actor` and `x-tenancy-request-id` (header name, value), as
    /// the SQL reads them: the actor as JSON in ASCII.
    #[cfg_attr(not(any(feature = "supabase", feature = "postgres")), allow(dead_code))]
    pub(crate) fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = Vec::new();
        if let Some(actor) = &self.actor {
            let json = serde_json::to_string(actor).unwrap_or_default();
            headers.push(("x-tenancy-actor", ascii_json(&json)));
        }
        if let Some(id) = &self.request_id {
            headers.push(("x-tenancy-request-id", id.as_str().to_owned()));
        }
        headers
    }
}

/// `json` with every non-ASCII character escaped (`\uXXXX`, surrogate
/// pairs beyond the BMP): an HTTP header value that decodes to the same JSON.
#[cfg_attr(not(any(feature = "supabase", feature = "postgres")), allow(dead_code))]
fn ascii_json(json: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        // DEL is ASCII but no header value's.
        if c.is_ascii() && c != '\x7f' {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        }
    }
    out
}

/// `s` cut to [`MAX_AUDIT_TEXT_CHARS`] characters.
pub(crate) fn cut(s: &str) -> String {
    s.chars().take(MAX_AUDIT_TEXT_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_actor_header_is_ascii_json_that_decodes_to_the_actor() {
        let context = AuditContext::new().actor(AuditActor::operator("Zoë 🚀\u{7f}"));
        let headers = context.headers();
        assert_eq!(headers[0].0, "x-tenancy-actor");
        assert!(headers[0].1.is_ascii(), "{}", headers[0].1);
        let decoded: serde_json::Value = serde_json::from_str(&headers[0].1).unwrap();
        assert_eq!(decoded["kind"], "operator");
        assert_eq!(decoded["name"], "Zoë 🚀\u{7f}");
        assert!(
            headers[0].1.bytes().all(|b| (0x20..0x7f).contains(&b)),
            "visible ASCII and spaces: a valid header value"
        );
    }

    #[test]
    fn a_service_filter_matches_every_service_and_nothing_else() {
        let any = AuditActor::service();
        let named = AuditActor::Service {
            name: Some("worker".into()),
        };
        assert!(any.matches(&named));
        assert!(!named.matches(&any));
        assert!(!any.matches(&AuditActor::operator("ops")));
    }

    #[test]
    fn an_entity_filter_matches_its_actions_only() {
        let event = |action: &str| AuditEvent {
            id: 1,
            organization_id: OrgId::new_v7(),
            actor: AuditActor::service(),
            action: action.into(),
            target: None,
            before: None,
            after: None,
            at: DateTime::UNIX_EPOCH,
            request_id: None,
        };
        let q = AuditQuery::new(10).unwrap().action("member").unwrap();
        assert!(q.admits(&event("member.updated")));
        assert!(!q.admits(&event("membership.updated")));
        let q = AuditQuery::new(10)
            .unwrap()
            .action("member.created")
            .unwrap();
        assert!(!q.admits(&event("member.updated")));
        assert!(AuditQuery::new(10).unwrap().action("Member; drop").is_err());
    }

    #[test]
    fn a_request_id_is_visible_ascii() {
        assert!(RequestId::parse(&"x".repeat(MAX_AUDIT_TEXT_CHARS)).is_ok());
        assert!(RequestId::parse(&"x".repeat(MAX_AUDIT_TEXT_CHARS + 1)).is_err());
        assert_eq!(
            RequestId::parse("a\nb").unwrap_err().field(),
            Some("request_id")
        );
        assert!(RequestId::parse("é").is_err());
    }
}
