//! Invitations: the invite form, pending invitations (revoke, resend), and the accept page an invite link opens.
//!
//! The invite form and the pending list are on the members page, for
//! admins and owners only ([`members_panel`]); the facade checks the role
//! rules again on every post. A created or resent invitation's link is
//! shown once, on the page the post answers with. The accept page says
//! only that there is an invitation: which organization it is for is
//! shown after it was accepted, so a wrong or stale link tells nothing.

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{MethodRouter, get, post};
use serde::Deserialize;

use super::{Chrome, chrome, context, path_id};
use crate::console::auth::Viewer;
use crate::console::config::ConsoleConfig;
use crate::console::form::CsrfForm;
use crate::console::render::{Base, ConsoleError, page, see_other};
use crate::error::Error;
use crate::model::invitation::{CreatedInvitation, Invitation, InvitationId, NewInvitation};
use crate::model::{Action, Role, TenantContext};

/// This area's pages (`GET`), added to the console's router.
pub(in crate::console) fn pages() -> Vec<(&'static str, MethodRouter<Arc<ConsoleConfig>>)> {
    vec![("/invitations/accept", get(accept_page))]
}

/// This area's forms (`POST`), each read through `CsrfForm`; the router adds
/// them, and the security test posts to each.
pub(in crate::console) fn forms() -> Vec<(&'static str, MethodRouter<Arc<ConsoleConfig>>)> {
    vec![
        ("/orgs/{org}/invitations", post(create)),
        ("/orgs/{org}/invitations/{id}/revoke", post(revoke)),
        ("/orgs/{org}/invitations/{id}/resend", post(resend)),
        ("/invitations/join", post(join)),
    ]
}

/// One pending invitation, as the members page lists it.
pub(in crate::console) struct PendingRow {
    /// The email, or "Link" for a shareable link.
    pub(in crate::console) who: String,
    pub(in crate::console) is_link: bool,
    pub(in crate::console) role: Role,
    /// "2 of 10 used", for a link.
    pub(in crate::console) uses: String,
    /// The expiry, in the organization's zone.
    pub(in crate::console) expires: String,
    /// Whether the viewer may revoke and resend it (the role rules).
    pub(in crate::console) manageable: bool,
    pub(in crate::console) revoke_action: String,
    pub(in crate::console) resend_action: String,
}

/// The invite form and the pending invitations, for the members page: `None`
/// unless the viewer may invite ([`Action::InviteMembers`]).
pub(in crate::console) struct InvitePanel {
    pub(in crate::console) action: String,
    /// The roles the viewer may invite, highest first; the form starts at
    /// the lowest.
    pub(in crate::console) roles: Vec<Role>,
    /// The configured default lifetime, for people: "7 days", "36 hours".
    pub(in crate::console) default_expiry: String,
    pub(in crate::console) pending: Vec<PendingRow>,
}

/// The panel for `ctx`'s members page, if the viewer may invite.
pub(in crate::console) async fn members_panel(
    config: &ConsoleConfig,
    ctx: &TenantContext,
    base: &Base,
) -> Result<Option<InvitePanel>, ConsoleError> {
    if !ctx.can(Action::InviteMembers) {
        return Ok(None);
    }
    let pending = config.tenancy.invitations(ctx).await?;
    let zone = ctx.organization().timezone;
    let row = |i: Invitation| {
        let path =
            |what: &str| base.at(&format!("/orgs/{}/invitations/{}/{what}", ctx.org(), i.id));
        PendingRow {
            who: i.email.clone().unwrap_or_else(|| "Link".to_owned()),
            is_link: i.is_link(),
            role: i.role,
            uses: format!("{} of {} used", i.uses, i.max_uses),
            expires: i
                .expires_at
                .with_timezone(&zone)
                .format("%Y-%m-%d %H:%M")
                .to_string(),
            manageable: ctx.role().check_invite(i.role).is_ok(),
            revoke_action: path("revoke"),
            resend_action: path("resend"),
        }
    };
    Ok(Some(InvitePanel {
        action: base.at(&format!("/orgs/{}/invitations", ctx.org())),
        roles: ctx.role().invitable_roles(),
        default_expiry: lifetime_text(config.tenancy.invitation_expiry()),
        pending: pending.into_iter().map(row).collect(),
    }))
}

/// A lifetime for people: whole days, else whole hours, else minutes.
fn lifetime_text(lifetime: Duration) -> String {
    let secs = lifetime.as_secs();
    let (n, unit) = if secs.is_multiple_of(86_400) {
        (secs / 86_400, "day")
    } else if secs.is_multiple_of(3600) {
        (secs / 3600, "hour")
    } else {
        (secs.div_ceil(60), "minute")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// The fields of the invite form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(in crate::console) struct InviteForm {
    /// `email` or `link`; anything else (or nothing): `email` when an
    /// email was given, else `link`.
    kind: String,
    email: String,
    role: String,
    /// For a link; empty: 1.
    max_uses: String,
    /// Days until it expires; empty: the configured default.
    expires_days: String,
}

impl InviteForm {
    /// The invitation the form asks for; `InvalidInput` naming the field.
    fn invitation(&self) -> Result<NewInvitation, Error> {
        let role = Role::parse(self.role.trim())?;
        let email = self.email.trim();
        let link = match self.kind.as_str() {
            "link" => true,
            "email" => false,
            _ => email.is_empty(),
        };
        let mut new = if link {
            let max_uses = match self.max_uses.trim() {
                "" => 1,
                text => text.parse::<u32>().map_err(|_| {
                    Error::invalid_input("max_uses", format_args!("{text:?} is not a whole number"))
                })?,
            };
            NewInvitation::link(role, max_uses)
        } else {
            NewInvitation::email(email, role)
        };
        match self.expires_days.trim() {
            "" => {}
            text => {
                let days = text.parse::<u64>().map_err(|_| {
                    Error::invalid_input(
                        "expires_days",
                        format_args!("{text:?} is not a whole number of days"),
                    )
                })?;
                let secs = days
                    .checked_mul(86_400)
                    .ok_or_else(|| Error::invalid_input("expires_days", "is too large"))?;
                new = new.expires_in(Duration::from_secs(secs));
            }
        }
        Ok(new)
    }
}

#[derive(Template)]
#[template(path = "console/invitation_created.html")]
struct Created {
    chrome: Chrome,
    org_name: String,
    /// "created" or "resent".
    verb: &'static str,
    who: String,
    is_link: bool,
    role: Role,
    expires: String,
    /// The accept link, shown this once.
    url: String,
    delivered: bool,
    members_href: String,
}

/// The page that shows a created or resent invitation's link, once.
async fn created_page(
    config: &ConsoleConfig,
    viewer: &Viewer,
    base: &Base,
    ctx: &TenantContext,
    created: CreatedInvitation,
    verb: &'static str,
) -> Result<Response, ConsoleError> {
    let chrome = chrome(
        config,
        viewer,
        base,
        format!("Invitation {verb}"),
        Some(ctx),
        "members",
        None,
    )
    .await?;
    let i = &created.invitation;
    Ok(page(&Created {
        chrome,
        org_name: ctx.organization().name.clone(),
        verb,
        who: i.email.clone().unwrap_or_default(),
        is_link: i.is_link(),
        role: i.role,
        expires: i
            .expires_at
            .with_timezone(&ctx.organization().timezone)
            .format("%Y-%m-%d %H:%M")
            .to_string(),
        url: created.accept_url.clone(),
        delivered: created.delivered,
        members_href: base.at(&format!("/orgs/{}/members", ctx.org())),
    }))
}

/// `POST /orgs/{org}/invitations`: creates one, and shows its link once.
pub(in crate::console) async fn create(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Path(org): Path<String>,
    CsrfForm(form): CsrfForm<InviteForm>,
) -> Result<Response, ConsoleError> {
    let ctx = context(&config, &viewer, &org).await?;
    // The role rules before the fields: a viewer's post is refused as
    // such, whatever it holds.
    ctx.require(Action::InviteMembers)?;
    let created = config
        .tenancy
        .create_invitation(&ctx, form.invitation()?)
        .await?;
    created_page(&config, &viewer, &base, &ctx, created, "created").await
}

/// `POST /orgs/{org}/invitations/{id}/revoke`.
pub(in crate::console) async fn revoke(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Path((org, id)): Path<(String, String)>,
    _checked: CsrfForm,
) -> Result<Response, ConsoleError> {
    let ctx = context(&config, &viewer, &org).await?;
    let revoked = config
        .tenancy
        .revoke_invitation(&ctx, path_id::<InvitationId>(&id)?)
        .await?;
    let done = if revoked {
        "invitation-revoked"
    } else {
        "invitation-gone"
    };
    Ok(see_other(
        &base.at(&format!("/orgs/{}/members?done={done}", ctx.org())),
    ))
}

/// `POST /orgs/{org}/invitations/{id}/resend`: a new link (the old one
/// stops working), shown once.
pub(in crate::console) async fn resend(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Path((org, id)): Path<(String, String)>,
    _checked: CsrfForm,
) -> Result<Response, ConsoleError> {
    let ctx = context(&config, &viewer, &org).await?;
    let created = config
        .tenancy
        .resend_invitation(&ctx, path_id::<InvitationId>(&id)?)
        .await?;
    created_page(&config, &viewer, &base, &ctx, created, "resent").await
}

/// The `token` query parameter of the accept page.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(in crate::console) struct TokenQuery {
    token: String,
}

#[derive(Template)]
#[template(path = "console/invitation_accept.html")]
struct Accept {
    chrome: Chrome,
    /// Who is signed in: they will join as themselves.
    me: String,
    token: String,
    action: String,
    csrf: String,
}

/// `GET /invitations/accept?token=…`: what an invite link opens, signed
/// in. It does not look the token up: the organization is named only once
/// the invitation was accepted.
pub(in crate::console) async fn accept_page(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Query(query): Query<TokenQuery>,
) -> Result<Response, ConsoleError> {
    let chrome = chrome(
        &config,
        &viewer,
        &base,
        "Accept an invitation",
        None,
        "",
        None,
    )
    .await?;
    let me = config
        .tenancy
        .own_profile(viewer.user)
        .await
        .and_then(|p| p.label().map(str::to_owned))
        .unwrap_or_else(|| viewer.user.to_string());
    Ok(page(&Accept {
        chrome,
        me,
        token: query.token.trim().to_owned(),
        action: base.at("/invitations/join"),
        csrf: viewer.csrf.clone(),
    }))
}

/// The field of the join form: a token, or a whole invite link.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(in crate::console) struct JoinForm {
    token: String,
}

/// The token in what was pasted: the `token` parameter of a link, or the
/// text itself.
fn token_in(pasted: &str) -> &str {
    let pasted = pasted.trim();
    match pasted.split_once("token=") {
        Some((_, rest)) => rest.split('&').next().unwrap_or(""),
        None => pasted,
    }
}

/// `POST /invitations/join`: accepts as the signed-in user and opens the
/// organization's members page. Every refusal is the same 404.
pub(in crate::console) async fn join(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    CsrfForm(form): CsrfForm<JoinForm>,
) -> Result<Response, ConsoleError> {
    let accepted = config
        .tenancy
        .accept_invitation(viewer.user, token_in(&form.token))
        .await?;
    let done = if accepted.joined {
        "joined"
    } else {
        "already-member"
    };
    Ok(see_other(&base.at(&format!(
        "/orgs/{}/members?done={done}",
        accepted.organization.id
    ))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_read_well() {
        assert_eq!(lifetime_text(Duration::from_secs(7 * 86_400)), "7 days");
        assert_eq!(lifetime_text(Duration::from_secs(86_400)), "1 day");
        assert_eq!(lifetime_text(Duration::from_secs(36 * 3600)), "36 hours");
        assert_eq!(lifetime_text(Duration::from_secs(300)), "5 minutes");
    }

    #[test]
    fn a_pasted_link_or_token_gives_the_token() {
        assert_eq!(token_in(" abc "), "abc");
        assert_eq!(token_in("https://x.example/i?token=abc&x=1"), "abc");
        assert_eq!(token_in("/console/invitations/accept?token=abc"), "abc");
    }

    #[test]
    fn the_form_names_what_is_wrong() {
        let form = |kind: &str, email: &str, role: &str, uses: &str, days: &str| InviteForm {
            kind: kind.into(),
            email: email.into(),
            role: role.into(),
            max_uses: uses.into(),
            expires_days: days.into(),
        };
        let ok = form("link", "", "viewer", "5", "3").invitation().unwrap();
        assert_eq!((ok.max_uses, ok.email), (5, None));
        assert_eq!(ok.expires_in, Some(Duration::from_secs(3 * 86_400)));
        let by_email = form("", "a@b.io", "member", "", "").invitation().unwrap();
        assert_eq!(by_email.email.as_deref(), Some("a@b.io"));
        let field = |f: InviteForm| f.invitation().unwrap_err().field();
        assert_eq!(field(form("link", "", "boss", "", "")), Some("role"));
        assert_eq!(field(form("link", "", "member", "x", "")), Some("max_uses"));
        assert_eq!(
            field(form("link", "", "member", "", "-1")),
            Some("expires_days")
        );
    }
}
