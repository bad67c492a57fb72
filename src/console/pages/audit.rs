//! The audit log: an organization's for its owners and admins, and the operator's view of all.
//!
//! - `GET /orgs/{org}/audit`: the organization's log, for its owners and
//!   admins (403 for members and viewers, as for non-members). Times are in
//!   the organization's zone; people by name and email where the user
//!   directory gives them (current members only), else a short id.
//! - `GET /operator/audit`: every organization's log, or one's
//!   (`org=<id>`), for the platform operator (403 otherwise), in UTC.
//!
//! Both take the filters `actor` (`user:<id>`, `operator:<name>`,
//! `service`), `action` (an action or an entity), `since` and `until`
//! (dates, `until` inclusive), and `after` (the cursor of the page before);
//! a filter that does not parse is 400, naming it. Pages are newest first,
//! with a link to the next (older) page.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{MethodRouter, get};
use chrono::NaiveDate;
use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::Value;

use super::{Chrome, Person, chrome, context, encode, path_id, short_id};
use crate::console::auth::Viewer;
use crate::console::config::ConsoleConfig;
use crate::console::render::{Base, ConsoleError, page};
use crate::error::{Error, Result};
use crate::ids::{OrgId, UserId};
use crate::limits::local_start_of_day;
use crate::model::audit::{AuditActor, AuditCursor, AuditEvent, AuditPage, AuditQuery};
use crate::model::{Action, UserProfile};

/// How many events a page shows.
const PAGE_SIZE: usize = 50;

/// The entities the action filter offers.
const ENTITIES: [&str; 6] = [
    "organization",
    "member",
    "feature",
    "limit",
    "invitation",
    "domain",
];

/// This area's pages (`GET`), added to the console's router.
pub(in crate::console) fn pages() -> Vec<(&'static str, MethodRouter<Arc<ConsoleConfig>>)> {
    vec![
        ("/orgs/{org}/audit", get(org_audit)),
        ("/operator/audit", get(operator_audit)),
    ]
}

/// This area's forms (`POST`), each read through `CsrfForm`; the router adds
/// them, and the security test posts to each.
pub(in crate::console) fn forms() -> Vec<(&'static str, MethodRouter<Arc<ConsoleConfig>>)> {
    Vec::new()
}

/// The query string: filters and the page.
#[derive(Debug, Default, Deserialize)]
pub(in crate::console) struct Filters {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    after: String,
    /// The operator's page only: one organization.
    #[serde(default)]
    org: String,
}

impl Filters {
    /// The query these filters ask for, dates read in `tz`.
    fn query(&self, tz: Tz) -> Result<AuditQuery> {
        let mut query = AuditQuery::new(PAGE_SIZE)?.action(&self.action)?;
        if let Some(actor) = parse_actor(&self.actor)? {
            query = query.actor(actor);
        }
        let since = parse_day(&self.since, "since")?.map(|day| local_start_of_day(day, tz));
        // `until` is inclusive: up to the start of the next day (a day of
        // a clock change is 23 or 25 hours long).
        let until = match parse_day(&self.until, "until")? {
            None => None,
            Some(day) => Some(local_start_of_day(
                day.succ_opt()
                    .ok_or_else(|| Error::invalid_input("until", "is too far ahead"))?,
                tz,
            )),
        };
        query = query.between(since, until)?;
        let after = self.after.trim();
        if !after.is_empty() {
            query = query.after(after.parse::<AuditCursor>()?);
        }
        Ok(query)
    }

    /// The query string of the page after `cursor`, these filters kept.
    fn next_href(&self, path: &str, cursor: AuditCursor) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        for (key, value) in [
            ("org", &self.org),
            ("actor", &self.actor),
            ("action", &self.action),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if !value.trim().is_empty() {
                pairs.push((key, value.trim().to_owned()));
            }
        }
        pairs.push(("after", cursor.to_string()));
        let query: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect();
        format!("{path}?{}", query.join("&"))
    }
}

/// `user:<id>`, `operator:<name>`, `service` (blank: no filter).
fn parse_actor(raw: &str) -> Result<Option<AuditActor>> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let bad = || Error::invalid_input("actor", "must be user:<id>, operator:<name> or service");
    match raw.split_once(':') {
        None if raw == "service" => Ok(Some(AuditActor::service())),
        Some(("user", id)) => Ok(Some(AuditActor::user(
            UserId::parse(id.trim()).map_err(|_| bad())?,
        ))),
        Some(("operator", name)) if !name.trim().is_empty() => Ok(Some(AuditActor::operator(name))),
        _ => Err(bad()),
    }
}

/// A `YYYY-MM-DD` day (blank: none); its start in a zone is
/// [`local_start_of_day`], which every day has, whatever the clock does at
/// midnight.
fn parse_day(raw: &str, field: &'static str) -> Result<Option<NaiveDate>> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| Error::invalid_input(field, "must be a date, YYYY-MM-DD"))
}

/// Who acted, as a cell shows it, with the filter link for them.
struct ActorCell {
    /// A user's name and email, for a user.
    person: Option<Person>,
    /// "operator support", "service": for everyone else.
    label: String,
    filter_href: String,
}

/// One row of the table.
struct EventRow {
    at: String,
    org: Option<(String, String)>,
    actor: ActorCell,
    action: String,
    target: String,
    /// The target user, for a membership.
    target_person: Option<Person>,
    changes: Vec<String>,
    request_id: Option<String>,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditView {
    chrome: Chrome,
    heading: String,
    subtitle: String,
    /// Whether rows name their organization (the operator's view of all).
    org_column: bool,
    form_action: String,
    filters_org: String,
    actor: String,
    action: String,
    since: String,
    until: String,
    entities: Vec<(&'static str, bool)>,
    rows: Vec<EventRow>,
    next_href: Option<String>,
    first_href: Option<String>,
}

/// What changed, one line per field: `role: viewer → admin` for an update,
/// the row's fields for a creation or deletion. Timestamps of the row's own
/// bookkeeping are left out.
fn changes(before: Option<&Value>, after: Option<&Value>) -> Vec<String> {
    const SKIP: [&str; 3] = ["organization_id", "updated_at", "scope_user_id"];
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "none".to_owned(),
        other => other.to_string(),
    };
    let (Some(b), Some(a)) = (before, after) else {
        let Some(row) = before.or(after).and_then(Value::as_object) else {
            return Vec::new();
        };
        return row
            .iter()
            .filter(|(k, v)| !SKIP.contains(&k.as_str()) && !v.is_null())
            .map(|(k, v)| format!("{k}: {}", text(v)))
            .collect();
    };
    let (Some(b), Some(a)) = (b.as_object(), a.as_object()) else {
        return Vec::new();
    };
    let keys: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
    keys.into_iter()
        .filter(|k| !SKIP.contains(&k.as_str()))
        .filter_map(|k| {
            let (old, new) = (b.get(k), a.get(k));
            (old != new).then(|| {
                format!(
                    "{k}: {} → {}",
                    old.map_or_else(|| "none".to_owned(), text),
                    new.map_or_else(|| "none".to_owned(), text)
                )
            })
        })
        .collect()
}

/// The users a page names: actors, and the targets of membership events.
fn people_in(events: &[AuditEvent]) -> Vec<UserId> {
    let mut users: Vec<UserId> = events
        .iter()
        .flat_map(|e| {
            let target = (e.entity() == "member")
                .then(|| e.target.as_deref().and_then(|t| UserId::parse(t).ok()))
                .flatten();
            [e.actor.user_id(), target]
        })
        .flatten()
        .collect();
    users.sort_unstable();
    users.dedup();
    users
}

/// The rows of `page`: times in `tz`, people from `profiles`, filter
/// links to `path`, organizations named by `orgs` (the operator's view).
fn rows(
    page: &AuditPage,
    tz: Tz,
    profiles: &HashMap<UserId, UserProfile>,
    path: &str,
    orgs: Option<&HashMap<OrgId, (String, String)>>,
) -> Vec<EventRow> {
    page.events
        .iter()
        .map(|e| {
            let filter = match &e.actor {
                AuditActor::User { user_id } => format!("user:{user_id}"),
                AuditActor::Operator { name } => format!("operator:{name}"),
                AuditActor::Service { .. } => "service".to_owned(),
            };
            let actor = ActorCell {
                person: e.actor.user_id().map(|u| Person::of(u, profiles.get(&u))),
                label: match &e.actor {
                    AuditActor::User { user_id } => short_id(*user_id),
                    other => other.to_string(),
                },
                filter_href: format!("{path}?actor={}", encode(&filter)),
            };
            let target_person = (e.entity() == "member")
                .then(|| e.target.as_deref().and_then(|t| UserId::parse(t).ok()))
                .flatten()
                .map(|u| Person::of(u, profiles.get(&u)));
            EventRow {
                at: format!(
                    "{} {}",
                    e.at.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S"),
                    tz.name()
                ),
                org: orgs.map(|names| {
                    names.get(&e.organization_id).cloned().unwrap_or_else(|| {
                        (
                            format!("{} (deleted)", e.organization_id),
                            format!("{path}?org={}", e.organization_id),
                        )
                    })
                }),
                actor,
                action: e.action.clone(),
                target: e.target.clone().unwrap_or_default(),
                target_person,
                changes: changes(e.before.as_ref(), e.after.as_ref()),
                request_id: e.request_id.clone(),
            }
        })
        .collect()
}

/// The filter form's entity options, `selected` marked.
fn entity_options(selected: &str) -> Vec<(&'static str, bool)> {
    ENTITIES
        .into_iter()
        .map(|e| (e, e == selected.trim()))
        .collect()
}

/// `GET /orgs/{org}/audit`.
async fn org_audit(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Path(org): Path<String>,
    Query(filters): Query<Filters>,
) -> Result<Response, ConsoleError> {
    let ctx = context(&config, &viewer, &org).await?;
    // Refused before the filters are read: a member learns nothing of them.
    ctx.require(Action::ViewAuditLog)?;
    let tz = ctx.organization().timezone;
    let query = filters.query(tz)?;
    let log = config.tenancy.audit_log(&ctx, query).await?;
    let users = people_in(&log.events);
    let profiles: HashMap<UserId, UserProfile> = config
        .tenancy
        .profiles(&ctx, &users)
        .await?
        .into_iter()
        .map(|p| (p.user_id, p))
        .collect();
    let path = base.at(&format!("/orgs/{}/audit", ctx.org()));
    let name = ctx.organization().name.clone();
    let chrome = chrome(
        &config,
        &viewer,
        &base,
        format!("Audit log of {name}"),
        Some(&ctx),
        "audit",
        None,
    )
    .await?;
    let view = AuditView {
        chrome,
        heading: "Audit log".to_owned(),
        subtitle: format!(
            "{name} · every change, newest first · times in {}",
            tz.name()
        ),
        org_column: false,
        rows: rows(&log, tz, &profiles, &path, None),
        next_href: log.next.map(|c| filters.next_href(&path, c)),
        first_href: (!filters.after.trim().is_empty()).then(|| path.clone()),
        form_action: path,
        filters_org: String::new(),
        actor: filters.actor.trim().to_owned(),
        action: filters.action.trim().to_owned(),
        since: filters.since.trim().to_owned(),
        until: filters.until.trim().to_owned(),
        entities: entity_options(&filters.action),
    };
    Ok(page(&view))
}

/// `GET /operator/audit`.
async fn operator_audit(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Query(filters): Query<Filters>,
) -> Result<Response, ConsoleError> {
    let operator = config.tenancy.operator(viewer.operator()?);
    let mut query = filters.query(Tz::UTC)?;
    let org = filters.org.trim();
    if !org.is_empty() {
        query = query.org(path_id::<OrgId>(org)?);
    }
    let log = operator.audit_log(query.clone()).await?;
    let users = people_in(&log.events);
    let profiles: HashMap<UserId, UserProfile> = operator
        .profiles(&users)
        .await?
        .into_iter()
        .map(|p| (p.user_id, p))
        .collect();
    let org_ids: BTreeSet<OrgId> = log.events.iter().map(|e| e.organization_id).collect();
    let mut orgs: HashMap<OrgId, (String, String)> = HashMap::new();
    for id in org_ids {
        if let Some(o) = config.tenancy.service().organization(id).await? {
            orgs.insert(id, (o.name, base.at(&format!("/operator/audit?org={id}"))));
        }
    }
    let path = base.at("/operator/audit");
    let subtitle = match query.org {
        Some(id) => format!(
            "{} · newest first · times in UTC",
            orgs.get(&id)
                .map_or_else(|| id.to_string(), |o| o.0.clone())
        ),
        None => "Every organization · newest first · times in UTC".to_owned(),
    };
    let chrome = chrome(&config, &viewer, &base, "Audit log", None, "audit", None).await?;
    let view = AuditView {
        chrome,
        heading: "Audit log".to_owned(),
        subtitle,
        org_column: true,
        rows: rows(&log, Tz::UTC, &profiles, &path, Some(&orgs)),
        next_href: log.next.map(|c| filters.next_href(&path, c)),
        first_href: (!filters.after.trim().is_empty()).then(|| path.clone()),
        form_action: path,
        filters_org: org.to_owned(),
        actor: filters.actor.trim().to_owned(),
        action: filters.action.trim().to_owned(),
        since: filters.since.trim().to_owned(),
        until: filters.until.trim().to_owned(),
        entities: entity_options(&filters.action),
    };
    Ok(page(&view))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_update_shows_the_fields_that_changed() {
        let before = json!({"role": "viewer", "user_id": "u", "organization_id": "o"});
        let after = json!({"role": "admin", "user_id": "u", "organization_id": "o"});
        assert_eq!(
            changes(Some(&before), Some(&after)),
            ["role: viewer → admin"]
        );
        assert_eq!(changes(None, Some(&after)), ["role: admin", "user_id: u"]);
    }

    #[test]
    fn filters_that_do_not_parse_name_themselves() {
        let bad = |f: Filters| f.query(Tz::UTC).unwrap_err().field();
        let f = |actor: &str, since: &str, after: &str| Filters {
            actor: actor.into(),
            since: since.into(),
            after: after.into(),
            ..Filters::default()
        };
        assert_eq!(bad(f("root", "", "")), Some("actor"));
        assert_eq!(bad(f("user:nope", "", "")), Some("actor"));
        assert_eq!(bad(f("", "yesterday", "")), Some("since"));
        assert_eq!(bad(f("", "", "12")), Some("cursor"));
        let ok = f("operator:Zoë support", "2026-03-01", "1767225600000000_4")
            .query(Tz::UTC)
            .unwrap();
        assert_eq!(ok.actor, Some(AuditActor::operator("Zoë support")));
    }

    #[test]
    fn days_start_where_the_zone_starts_them() {
        let santiago = |since: &str, until: &str| {
            let q = Filters {
                since: since.into(),
                until: until.into(),
                ..Filters::default()
            }
            .query(Tz::America__Santiago)
            .unwrap();
            (
                q.since.map(|t| t.to_rfc3339()),
                q.until.map(|t| t.to_rfc3339()),
            )
        };
        // 2026-09-06 00:00 does not exist there (04:00Z: 23:59:59 -04 →
        // 01:00 -03): the day starts at the end of the gap.
        assert_eq!(
            santiago("2026-09-06", "2026-09-06"),
            (
                Some("2026-09-06T04:00:00+00:00".to_owned()),
                Some("2026-09-07T03:00:00+00:00".to_owned())
            )
        );
        // 2026-04-04 is 25 hours long (23:00 comes twice): `until` covers
        // all of it.
        assert_eq!(
            santiago("2026-04-04", "2026-04-04"),
            (
                Some("2026-04-04T03:00:00+00:00".to_owned()),
                Some("2026-04-05T04:00:00+00:00".to_owned())
            )
        );
        assert_eq!(santiago("", ""), (None, None));
    }

    #[test]
    fn the_next_link_keeps_the_filters_encoded() {
        let filters = Filters {
            actor: "operator:Zoë & co".into(),
            action: "member".into(),
            ..Filters::default()
        };
        let cursor: AuditCursor = "5_7".parse().unwrap();
        assert_eq!(
            filters.next_href("/c/operator/audit", cursor),
            "/c/operator/audit?actor=operator:Zo%C3%AB%20%26%20co&action=member&after=5_7"
        );
    }
}
