//! The console's pages: the frame they share, and one module per area.

pub(super) mod audit;
pub(super) mod domains;
pub(super) mod index;
pub(super) mod invitations;
pub(super) mod members;
pub(super) mod operator;
pub(super) mod plans;
pub(super) mod reports;
pub(super) mod usage;

use askama::Template;
use serde::Deserialize;

use super::assets::stylesheet_name;
use super::auth::Viewer;
use super::config::ConsoleConfig;
use super::render::{Base, ConsoleError};
use crate::error::{Error, ErrorKind};
use crate::ids::{OrgId, UserId};
use crate::model::{Action, OrgMembership, TenantContext, UserProfile};
use crate::tenancy::Tenancy;

/// What every page around its content shows: the org selector, the
/// sections of the current organization, the operator's sections.
pub(super) struct Chrome {
    pub(super) title: String,
    pub(super) base: String,
    pub(super) stylesheet: String,
    pub(super) selector_html: String,
    pub(super) current: Option<CurrentOrg>,
    pub(super) operator: bool,
    /// Which navigation entry is this page: `usage`, `members`, `plan`,
    /// `reports`, `overview`, `orgs`, `plans`, or empty.
    pub(super) section: &'static str,
    /// What the last form did, from the `done` query parameter.
    pub(super) notice: Option<String>,
    /// The viewer's form token, for the sidebar's join form.
    pub(super) csrf: String,
    /// Where the sidebar's join form posts (an invitation's token or link).
    pub(super) join_action: String,
}

/// The organization a page is about.
pub(super) struct CurrentOrg {
    pub(super) name: String,
    pub(super) usage_href: String,
    pub(super) members_href: String,
    /// The org's verified domains and join setting, for owners and admins.
    pub(super) domains_href: Option<String>,
    /// The org's audit log, for owners and admins.
    pub(super) audit_href: Option<String>,
    /// The org's plan and what it includes, for every member.
    pub(super) plan_href: String,
    /// The org's usage reports, for every member (the page checks the
    /// role).
    pub(super) reports_href: String,
}

/// One entry of the org selector.
pub(super) struct OrgEntry {
    pub(super) name: String,
    pub(super) slug: String,
    pub(super) role: String,
    pub(super) href: String,
    pub(super) current: bool,
}

#[derive(Template)]
#[template(path = "console/selector.html")]
struct SelectorFragment<'a> {
    orgs: &'a [OrgEntry],
}

/// The `done` query parameter a form's redirect carries.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Done {
    done: Option<String>,
}

impl Done {
    /// The notice for a known `done` value; anything else shows nothing
    /// (the text never comes from the request).
    pub(super) fn notice(&self) -> Option<String> {
        let text = match self.done.as_deref()? {
            "role" => "The role was changed.",
            "role-unchanged" => "The role was not changed: the member has it already.",
            "owner" => "Ownership was handed over: you are now an admin.",
            "ownership" => "Ownership was transferred.",
            "removed" => "The member was removed.",
            "feature" => "The feature was changed.",
            "config" => "The feature's configuration was saved.",
            "limit" => "The limit was saved.",
            "limit-removed" => "The limit was removed.",
            "org-created" => "The organization was created, with you as its owner.",
            "invitation-revoked" => "The invitation was revoked: its link no longer works.",
            "invitation-gone" => "That invitation is no longer pending.",
            "joined" => "You accepted the invitation and joined.",
            "already-member" => "You are a member already: your role is unchanged.",
            _ => return None,
        };
        Some(text.to_owned())
    }
}

/// The user's organizations as selector entries linking to `section`.
pub(super) fn org_entries(
    orgs: &[OrgMembership],
    base: &Base,
    current: Option<OrgId>,
) -> Vec<OrgEntry> {
    orgs.iter()
        .map(|m| OrgEntry {
            name: m.organization.name.clone(),
            slug: m.organization.slug.to_string(),
            role: m.role.to_string(),
            href: base.at(&format!("/orgs/{}/usage", m.organization.id)),
            current: Some(m.organization.id) == current,
        })
        .collect()
}

/// The org selector of `user` as an HTML fragment, links under `base`,
/// `current` marked as the page's (`aria-current`).
pub(super) async fn selector_html(
    tenancy: &Tenancy,
    user: UserId,
    base: &Base,
    current: Option<OrgId>,
) -> Result<String, ConsoleError> {
    let orgs = tenancy.orgs_for_user(user).await?;
    render_selector(&org_entries(&orgs, base, current))
}

fn render_selector(entries: &[OrgEntry]) -> Result<String, ConsoleError> {
    SelectorFragment { orgs: entries }
        .render()
        .map_err(|_| ConsoleError::internal())
}

/// The frame of a page titled `title`, about `ctx`'s organization if any.
pub(super) async fn chrome(
    config: &ConsoleConfig,
    viewer: &Viewer,
    base: &Base,
    title: impl Into<String>,
    ctx: Option<&TenantContext>,
    section: &'static str,
    notice: Option<String>,
) -> Result<Chrome, ConsoleError> {
    let orgs = config.tenancy.orgs_for_user(viewer.user).await?;
    chrome_with(&orgs, viewer, base, title, ctx, section, notice)
}

/// [`chrome`] with the viewer's organizations already read.
pub(super) fn chrome_with(
    orgs: &[OrgMembership],
    viewer: &Viewer,
    base: &Base,
    title: impl Into<String>,
    ctx: Option<&TenantContext>,
    section: &'static str,
    notice: Option<String>,
) -> Result<Chrome, ConsoleError> {
    let current = ctx.map(|ctx| ctx.org());
    let selector_html = render_selector(&org_entries(orgs, base, current))?;
    Ok(Chrome {
        title: title.into(),
        base: base.0.clone(),
        stylesheet: base.at(&format!("/assets/{}", stylesheet_name())),
        selector_html,
        current: ctx.map(|ctx| CurrentOrg {
            name: ctx.organization().name.clone(),
            usage_href: base.at(&format!("/orgs/{}/usage", ctx.org())),
            members_href: base.at(&format!("/orgs/{}/members", ctx.org())),
            domains_href: ctx
                .can(Action::ManageMembers)
                .then(|| base.at(&format!("/orgs/{}/domains", ctx.org()))),
            audit_href: ctx
                .can(Action::ViewAuditLog)
                .then(|| base.at(&format!("/orgs/{}/audit", ctx.org()))),
            plan_href: base.at(&format!("/orgs/{}/plan", ctx.org())),
            reports_href: base.at(&format!("/orgs/{}/reports", ctx.org())),
        }),
        operator: viewer.operator.is_some(),
        section,
        notice,
        csrf: viewer.csrf.clone(),
        join_action: base.at("/invitations/join"),
    })
}

/// An id from the URL path; one that does not parse is 404, as an id
/// that names nothing is.
pub(super) fn path_id<T: std::str::FromStr>(raw: &str) -> Result<T, ConsoleError> {
    raw.parse().map_err(|_| ConsoleError::not_found())
}

/// The viewer's context in `org`: the store confirms the membership, or the
/// page is refused (403), whatever the URL says. An id that is not one is
/// 404; a store that fails is 500 or 503 ([`not_a_member`]).
pub(super) async fn context(
    config: &ConsoleConfig,
    viewer: &Viewer,
    org: &str,
) -> Result<TenantContext, ConsoleError> {
    let org: OrgId = path_id(org)?;
    config
        .tenancy
        .context(viewer.user, org)
        .await
        .map_err(not_a_member)
}

/// A failed membership check: 403 when the user is not a member (or the
/// organization does not exist, indistinguishably); otherwise the error by
/// its kind, so an outage is not mistaken for a refusal.
fn not_a_member(error: Error) -> ConsoleError {
    match error.kind() {
        ErrorKind::PermissionDenied | ErrorKind::NotFound => {
            ConsoleError::forbidden("You are not a member of this organization.")
        }
        _ => ConsoleError::from(error),
    }
}

/// A user id short enough for a table cell: its last eight hex digits.
/// Not the first eight: those of a UUIDv7 are its timestamp, the same for
/// every user created in the same minute or so.
pub(super) fn short_id(user: UserId) -> String {
    let simple = user.as_uuid().simple().to_string();
    simple[simple.len() - 8..].to_owned()
}

/// `s` percent-encoded for a query string value (`:` kept as is).
pub(super) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A person as a cell shows them: the name (and email), else the email,
/// else a short id ([`short_id`]).
pub(super) struct Person {
    pub(super) name: Option<String>,
    pub(super) email: Option<String>,
    pub(super) short: String,
}

impl Person {
    /// `user` with what the user directory says of them, if anything.
    pub(super) fn of(user: UserId, profile: Option<&UserProfile>) -> Person {
        Person {
            name: profile.and_then(|p| p.name.clone()),
            email: profile.and_then(|p| p.email.clone()),
            short: short_id(user),
        }
    }

    /// One line of text: `Name email`, the name, the email, or the short
    /// id.
    pub(super) fn text(&self) -> String {
        match (&self.name, &self.email) {
            (Some(name), Some(email)) => format!("{name} {email}"),
            (Some(name), None) => name.clone(),
            (None, Some(email)) => email.clone(),
            (None, None) => self.short.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    use super::*;

    #[test]
    fn only_a_missing_membership_is_403_and_an_outage_is_not() {
        let status = |kind| {
            not_a_member(Error::new(kind, "db at 10.0.0.7 said no"))
                .into_response()
                .status()
        };
        assert_eq!(status(ErrorKind::PermissionDenied), StatusCode::FORBIDDEN);
        assert_eq!(status(ErrorKind::NotFound), StatusCode::FORBIDDEN);
        assert_eq!(
            status(ErrorKind::Unavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status(ErrorKind::Unexpected),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(status(ErrorKind::Config), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(status(ErrorKind::Unauthenticated), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn users_created_together_get_different_short_ids() {
        let users: Vec<UserId> = (0..50).map(|_| UserId::new_v7()).collect();
        let mut short: Vec<String> = users.iter().map(|u| short_id(*u)).collect();
        assert!(short.iter().all(|s| s.len() == 8), "{short:?}");
        assert!(users[0].to_string().ends_with(&short[0]));
        short.sort();
        short.dedup();
        assert_eq!(short.len(), users.len());
    }
}
