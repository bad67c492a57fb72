//! Members: the list with names, emails and roles; changing a role, handing ownership to
//! another member, removing a member and leaving, and (for admins and
//! owners) inviting people and the pending invitations, within the
//! permission matrix. The controls shown follow the matrix, and the facade checks it
//! again on every post.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::invitations::{InvitePanel, members_panel};
use super::{Chrome, Done, chrome, context, path_id, short_id};
use crate::console::auth::Viewer;
use crate::console::config::ConsoleConfig;
use crate::console::form::CsrfForm;
use crate::console::render::{Base, ConsoleError, page, see_other};
use crate::ids::UserId;
use crate::model::{Action, MembershipChange, Role, TenantContext, UserProfile};

/// One option of a row's role picker.
struct RoleOption {
    role: Role,
    /// The member's current role: where the picker starts.
    selected: bool,
}

/// One row of the members table, with the controls the viewer may use.
struct MemberRow {
    user: String,
    user_short: String,
    /// The member's name and email, where the user directory gives them.
    name: Option<String>,
    email: Option<String>,
    /// What buttons call the member: the name, else the email, else the
    /// short id.
    label: String,
    is_me: bool,
    role: Role,
    joined: String,
    /// The role picker, highest first: the member's current role and the
    /// roles the viewer may change it to; empty when there are none of
    /// those.
    roles: Vec<RoleOption>,
    can_remove: bool,
    /// Whether the viewer may hand ownership to this member (the viewer
    /// is an owner, the member another person and not an owner).
    can_make_owner: bool,
    role_action: String,
    remove_action: String,
    owner_action: String,
}

#[derive(Template)]
#[template(path = "console/members.html")]
struct Members {
    chrome: Chrome,
    org_name: String,
    my_role: Role,
    /// The zone the joined dates are in: the organization's.
    timezone: String,
    members: Vec<MemberRow>,
    /// Whether any row offers "Make owner" (the page then says what it
    /// does).
    offers_ownership: bool,
    leave_action: String,
    csrf: String,
    /// The invite form and pending invitations: admins and owners only.
    invite: Option<InvitePanel>,
}

fn row(
    ctx: &TenantContext,
    base: &Base,
    profile: UserProfile,
    role: Role,
    joined: String,
) -> MemberRow {
    let user = profile.user_id;
    let change = |after| MembershipChange {
        before: Some(role),
        after,
    };
    let others = Role::ALL
        .into_iter()
        .any(|r| r != role && ctx.may_change_member(user, change(Some(r))));
    let roles = if others {
        Role::ALL
            .into_iter()
            .filter(|r| *r == role || ctx.may_change_member(user, change(Some(*r))))
            .map(|r| RoleOption {
                role: r,
                selected: r == role,
            })
            .collect()
    } else {
        Vec::new()
    };
    let is_me = user == ctx.user();
    let path = |action: &str| base.at(&format!("/orgs/{}/members/{user}/{action}", ctx.org()));
    let user_short = short_id(user);
    MemberRow {
        user: user.to_string(),
        label: profile.label().unwrap_or(&user_short).to_owned(),
        user_short,
        name: profile.name,
        email: profile.email,
        is_me,
        role,
        joined,
        roles,
        can_remove: !is_me && ctx.may_change_member(user, change(None)),
        can_make_owner: !is_me && role != Role::Owner && ctx.can(Action::ManageOwners),
        role_action: path("role"),
        remove_action: path("remove"),
        owner_action: path("owner"),
    }
}

/// `GET /orgs/{org}/members`.
pub(in crate::console) async fn list(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Path(org): Path<String>,
    Query(done): Query<Done>,
) -> Result<Response, ConsoleError> {
    let ctx = context(&config, &viewer, &org).await?;
    let members = config.tenancy.member_profiles(&ctx).await?;
    let rows: Vec<MemberRow> = members
        .into_iter()
        .map(|(m, profile)| {
            row(
                &ctx,
                &base,
                profile,
                m.role,
                m.created_at
                    .with_timezone(&ctx.organization().timezone)
                    .date_naive()
                    .to_string(),
            )
        })
        .collect();
    let invite = members_panel(&config, &ctx, &base).await?;
    let chrome = chrome(
        &config,
        &viewer,
        &base,
        "Members",
        Some(&ctx),
        "members",
        done.notice(),
    )
    .await?;
    Ok(page(&Members {
        chrome,
        org_name: ctx.organization().name.clone(),
        my_role: ctx.role(),
        timezone: ctx.organization().timezone.name().to_owned(),
        offers_ownership: rows.iter().any(|r| r.can_make_owner),
        members: rows,
        leave_action: base.at(&format!("/orgs/{}/leave", ctx.org())),
        csrf: viewer.csrf.clone(),
        invite,
    }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(in crate::console) struct RoleForm {
    role: String,
}

/// Back to the members page with the `done` notice (303).
fn back_to_members(base: &Base, ctx: &TenantContext, done: &str) -> Response {
    see_other(&base.at(&format!("/orgs/{}/members?done={done}", ctx.org())))
}

/// `POST /orgs/{org}/members/{user}/role`. The member's current role
/// (where the picker starts) changes nothing and says so.
pub(in crate::console) async fn change_role(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Path((org, user)): Path<(String, String)>,
    CsrfForm(form): CsrfForm<RoleForm>,
) -> Result<Response, ConsoleError> {
    let ctx = context(&config, &viewer, &org).await?;
    let role = Role::parse(&form.role)?;
    let (_, changed) = config
        .tenancy
        .apply_role(&ctx, path_id::<UserId>(&user)?, role)
        .await?;
    let done = if changed { "role" } else { "role-unchanged" };
    Ok(back_to_members(&base, &ctx, done))
}

/// `POST /orgs/{org}/members/{user}/owner`: the viewer, an owner, hands
/// ownership to the member and becomes an admin.
pub(in crate::console) async fn make_owner(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Path((org, user)): Path<(String, String)>,
    _checked: CsrfForm,
) -> Result<Response, ConsoleError> {
    let ctx = context(&config, &viewer, &org).await?;
    config
        .tenancy
        .transfer_ownership(&ctx, path_id::<UserId>(&user)?)
        .await?;
    Ok(back_to_members(&base, &ctx, "owner"))
}

/// `POST /orgs/{org}/members/{user}/remove`.
pub(in crate::console) async fn remove(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Path((org, user)): Path<(String, String)>,
    _checked: CsrfForm,
) -> Result<Response, ConsoleError> {
    let ctx = context(&config, &viewer, &org).await?;
    config
        .tenancy
        .remove_member(&ctx, path_id::<UserId>(&user)?)
        .await?;
    Ok(back_to_members(&base, &ctx, "removed"))
}

/// `POST /orgs/{org}/leave`: back to the start page.
pub(in crate::console) async fn leave(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Path(org): Path<String>,
    _checked: CsrfForm,
) -> Result<Response, ConsoleError> {
    let ctx = context(&config, &viewer, &org).await?;
    config.tenancy.leave(&ctx).await?;
    Ok(see_other(&base.home()))
}
