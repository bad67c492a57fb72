//! Verified domains: the operator's list per organization, the org's join setting, and joining.
//!
//! - `GET /operator/orgs/{org}/domains`: the operator records, disables
//!   and removes an organization's verified domains (operator policy, 403
//!   for anyone else).
//! - `GET /orgs/{org}/domains`: owners and admins choose, per domain,
//!   whether users with a confirmed email there may join, and as what
//!   (members and viewers get 403, on the page and on the post).
//! - `GET /join`: the organizations the signed-in user may join through
//!   the domain of their confirmed email, each with a Join button.
//!
//! The domain a form acts on is a field of the form, not of the path.
//! Every form reads its body through [`CsrfForm`]; the facade checks the
//! rules again on every post.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{MethodRouter, get, post};
use serde::Deserialize;

use super::{Chrome, chrome, context, path_id};
use crate::console::auth::Viewer;
use crate::console::config::ConsoleConfig;
use crate::console::form::CsrfForm;
use crate::console::render::{Base, ConsoleError, form_refusal, page, see_other};
use crate::error::Error;
use crate::ids::OrgId;
use crate::model::TenantContext;
use crate::model::domain::{AutoJoin, VerifiedDomain};

/// This area's pages (`GET`), added to the console's router.
pub(in crate::console) fn pages() -> Vec<(&'static str, MethodRouter<Arc<ConsoleConfig>>)> {
    vec![
        ("/operator/orgs/{org}/domains", get(operator_domains)),
        ("/orgs/{org}/domains", get(org_domains)),
        ("/join", get(joinable)),
    ]
}

/// This area's forms (`POST`), each read through `CsrfForm`; the router adds
/// them, and the security test posts to each.
pub(in crate::console) fn forms() -> Vec<(&'static str, MethodRouter<Arc<ConsoleConfig>>)> {
    vec![
        ("/operator/orgs/{org}/domains/add", post(add_domain)),
        ("/operator/orgs/{org}/domains/enabled", post(set_enabled)),
        ("/operator/orgs/{org}/domains/remove", post(remove_domain)),
        ("/orgs/{org}/domains/auto-join", post(set_auto_join)),
        ("/join/{org}", post(join)),
    ]
}

/// The `done` query parameter of this area's redirects.
#[derive(Debug, Default, Deserialize)]
struct Done {
    done: Option<String>,
}

impl Done {
    /// The notice for a known value; anything else shows nothing (the
    /// text never comes from the request).
    fn notice(&self) -> Option<String> {
        let text = match self.done.as_deref()? {
            "domain-added" => "The domain was recorded.",
            "domain-enabled" => "The domain was enabled.",
            "domain-disabled" => "The domain was disabled: it matches no email now.",
            "domain-removed" => "The domain was removed.",
            "domain-unknown" => "There was no such domain.",
            "auto-join" => "The join setting was saved.",
            _ => return None,
        };
        Some(text.to_owned())
    }
}

/// What the org's owners see of one domain.
fn auto_join_text(d: &VerifiedDomain) -> &'static str {
    match (d.enabled, d.auto_join) {
        (false, _) => "disabled by the platform operator: nobody joins through it",
        (true, AutoJoin::Off) => "nobody joins on their own",
        (true, AutoJoin::Viewer) => "people join on their own as viewers",
        (true, AutoJoin::Member) => "people join on their own as members",
    }
}

// ---- the operator's page ----------------------------------------------------

/// One row of the operator's table.
struct OperatorRow {
    domain: String,
    enabled: bool,
    include_subdomains: bool,
    auto_join: AutoJoin,
    added: String,
}

#[derive(Template)]
#[template(path = "console/domains_operator.html")]
struct OperatorDomains {
    chrome: Chrome,
    org_name: String,
    org_href: String,
    error: Option<String>,
    domains: Vec<OperatorRow>,
    add_action: String,
    enabled_action: String,
    remove_action: String,
    csrf: String,
}

async fn operator_page(
    config: &ConsoleConfig,
    viewer: &Viewer,
    base: &Base,
    org: OrgId,
    notice: Option<String>,
    error: Option<String>,
) -> Result<OperatorDomains, ConsoleError> {
    let operator = config.tenancy.operator(viewer.operator()?);
    let organization = config
        .tenancy
        .service()
        .organization(org)
        .await?
        .ok_or_else(ConsoleError::not_found)?;
    let domains = operator
        .domains(org)
        .await?
        .into_iter()
        .map(|d| OperatorRow {
            domain: d.domain.to_string(),
            enabled: d.enabled,
            include_subdomains: d.include_subdomains,
            auto_join: d.auto_join,
            added: d
                .created_at
                .with_timezone(&organization.timezone)
                .date_naive()
                .to_string(),
        })
        .collect();
    let at = |path: &str| base.at(&format!("/operator/orgs/{org}{path}"));
    let chrome = chrome(
        config,
        viewer,
        base,
        format!("Domains of {}", organization.name),
        None,
        "orgs",
        notice,
    )
    .await?;
    Ok(OperatorDomains {
        chrome,
        org_name: organization.name.clone(),
        org_href: at(""),
        error,
        domains,
        add_action: at("/domains/add"),
        enabled_action: at("/domains/enabled"),
        remove_action: at("/domains/remove"),
        csrf: viewer.csrf.clone(),
    })
}

/// `GET /operator/orgs/{org}/domains`.
async fn operator_domains(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Path(org): Path<String>,
    Query(done): Query<Done>,
) -> Result<Response, ConsoleError> {
    viewer.operator()?;
    let org = path_id::<OrgId>(&org)?;
    let data = operator_page(&config, &viewer, &base, org, done.notice(), None).await?;
    Ok(page(&data))
}

/// The fields of the operator's forms; each form has some of them.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OperatorForm {
    domain: String,
    /// A checkbox: present (`on`) or absent.
    include_subdomains: Option<String>,
    /// `true` or `false`.
    enabled: String,
}

/// What every operator form answers: back to the domains page with the
/// `done` notice (303), or the page again with why it was refused.
async fn operator_answer<T>(
    config: &ConsoleConfig,
    viewer: &Viewer,
    base: &Base,
    org: OrgId,
    done: &str,
    result: crate::error::Result<T>,
) -> Result<Response, ConsoleError> {
    match result {
        Ok(_) => Ok(see_other(
            &base.at(&format!("/operator/orgs/{org}/domains?done={done}")),
        )),
        Err(e) => {
            let (status, message) = form_refusal(e)?;
            let data = operator_page(config, viewer, base, org, None, Some(message)).await?;
            let mut response = page(&data);
            *response.status_mut() = status;
            Ok(response)
        }
    }
}

/// `POST /operator/orgs/{org}/domains/add`: records `domain`, with
/// `include_subdomains` when the box is ticked.
async fn add_domain(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Path(org): Path<String>,
    CsrfForm(form): CsrfForm<OperatorForm>,
) -> Result<Response, ConsoleError> {
    let org = path_id::<OrgId>(&org)?;
    let operator = config.tenancy.operator(viewer.operator()?);
    let added = operator
        .add_domain(org, &form.domain, form.include_subdomains.is_some())
        .await;
    operator_answer(&config, &viewer, &base, org, "domain-added", added).await
}

/// `POST /operator/orgs/{org}/domains/enabled`: `enabled` = `true` or
/// `false`.
async fn set_enabled(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Path(org): Path<String>,
    CsrfForm(form): CsrfForm<OperatorForm>,
) -> Result<Response, ConsoleError> {
    let org = path_id::<OrgId>(&org)?;
    let operator = config.tenancy.operator(viewer.operator()?);
    let enabled = match form.enabled.as_str() {
        "true" => true,
        "false" => false,
        _ => {
            let e = Error::invalid_input("enabled", "is neither true nor false");
            return operator_answer::<()>(&config, &viewer, &base, org, "", Err(e)).await;
        }
    };
    let done = if enabled {
        "domain-enabled"
    } else {
        "domain-disabled"
    };
    let changed = operator
        .set_domain_enabled(org, &form.domain, enabled)
        .await;
    operator_answer(&config, &viewer, &base, org, done, changed).await
}

/// `POST /operator/orgs/{org}/domains/remove`.
async fn remove_domain(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Path(org): Path<String>,
    CsrfForm(form): CsrfForm<OperatorForm>,
) -> Result<Response, ConsoleError> {
    let org = path_id::<OrgId>(&org)?;
    let operator = config.tenancy.operator(viewer.operator()?);
    let removed = operator.remove_domain(org, &form.domain).await;
    let done = match removed {
        Ok(false) => "domain-unknown",
        _ => "domain-removed",
    };
    operator_answer(&config, &viewer, &base, org, done, removed).await
}

// ---- the organization's page ------------------------------------------------

/// One option of a domain's join picker.
struct JoinOption {
    value: AutoJoin,
    label: &'static str,
    selected: bool,
}

/// One row of the organization's table.
struct OrgRow {
    domain: String,
    include_subdomains: bool,
    enabled: bool,
    state: &'static str,
    options: Vec<JoinOption>,
}

#[derive(Template)]
#[template(path = "console/domains_org.html")]
struct OrgDomains {
    chrome: Chrome,
    org_name: String,
    error: Option<String>,
    domains: Vec<OrgRow>,
    action: String,
    csrf: String,
}

async fn org_page(
    config: &ConsoleConfig,
    viewer: &Viewer,
    base: &Base,
    ctx: &TenantContext,
    notice: Option<String>,
    error: Option<String>,
) -> Result<OrgDomains, ConsoleError> {
    let domains = config
        .tenancy
        .domains(ctx)
        .await?
        .into_iter()
        .map(|d| OrgRow {
            domain: d.domain.to_string(),
            include_subdomains: d.include_subdomains,
            enabled: d.enabled,
            state: auto_join_text(&d),
            options: AutoJoin::ALL
                .into_iter()
                .map(|a| JoinOption {
                    value: a,
                    label: match a {
                        AutoJoin::Off => "nobody joins on their own",
                        AutoJoin::Viewer => "join as viewer",
                        AutoJoin::Member => "join as member",
                    },
                    selected: a == d.auto_join,
                })
                .collect(),
        })
        .collect();
    let chrome = chrome(
        config,
        viewer,
        base,
        "Verified domains",
        Some(ctx),
        "domains",
        notice,
    )
    .await?;
    Ok(OrgDomains {
        chrome,
        org_name: ctx.organization().name.clone(),
        error,
        domains,
        action: base.at(&format!("/orgs/{}/domains/auto-join", ctx.org())),
        csrf: viewer.csrf.clone(),
    })
}

/// `GET /orgs/{org}/domains`: owners and admins only.
async fn org_domains(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Path(org): Path<String>,
    Query(done): Query<Done>,
) -> Result<Response, ConsoleError> {
    let ctx = context(&config, &viewer, &org).await?;
    let data = org_page(&config, &viewer, &base, &ctx, done.notice(), None).await?;
    Ok(page(&data))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AutoJoinForm {
    domain: String,
    auto_join: String,
}

/// `POST /orgs/{org}/domains/auto-join`: `auto_join` = `off`, `viewer` or
/// `member` for `domain`.
async fn set_auto_join(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Path(org): Path<String>,
    CsrfForm(form): CsrfForm<AutoJoinForm>,
) -> Result<Response, ConsoleError> {
    let ctx = context(&config, &viewer, &org).await?;
    let result = match AutoJoin::parse(&form.auto_join) {
        Ok(auto_join) => {
            config
                .tenancy
                .set_domain_auto_join(&ctx, &form.domain, auto_join)
                .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Ok(see_other(
            &base.at(&format!("/orgs/{}/domains?done=auto-join", ctx.org())),
        )),
        Err(e) => {
            let (status, message) = form_refusal(e)?;
            let data = org_page(&config, &viewer, &base, &ctx, None, Some(message)).await?;
            let mut response = page(&data);
            *response.status_mut() = status;
            Ok(response)
        }
    }
}

// ---- joining ------------------------------------------------------------------

/// One organization the viewer may join.
struct JoinRow {
    name: String,
    slug: String,
    role: String,
    domain: String,
    action: String,
}

#[derive(Template)]
#[template(path = "console/join.html")]
struct JoinPage {
    chrome: Chrome,
    orgs: Vec<JoinRow>,
    csrf: String,
}

/// `GET /join`: the organizations the viewer may join.
async fn joinable(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
) -> Result<Response, ConsoleError> {
    let orgs = config
        .tenancy
        .orgs_joinable_by(viewer.user)
        .await?
        .into_iter()
        .map(|j| JoinRow {
            name: j.organization.name.clone(),
            slug: j.organization.slug.to_string(),
            role: j.role.to_string(),
            domain: j.domain.to_string(),
            action: base.at(&format!("/join/{}", j.organization.id)),
        })
        .collect();
    let chrome = chrome(
        &config,
        &viewer,
        &base,
        "Join an organization",
        None,
        "join",
        None,
    )
    .await?;
    Ok(page(&JoinPage {
        chrome,
        orgs,
        csrf: viewer.csrf.clone(),
    }))
}

/// `POST /join/{org}`: joins through the domain of the viewer's confirmed
/// email, then opens the organization. Refused (403) when the rules do not
/// let the viewer join; a member already simply lands there.
async fn join(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Path(org): Path<String>,
    _checked: CsrfForm,
) -> Result<Response, ConsoleError> {
    let org = path_id::<OrgId>(&org)?;
    config
        .tenancy
        .join_organization(viewer.user, org)
        .await
        .map_err(|e| match e.kind() {
            crate::error::ErrorKind::PermissionDenied => ConsoleError::forbidden(
                "You may not join this organization: your confirmed email is not at one of its domains open to joining.",
            ),
            _ => ConsoleError::from(e),
        })?;
    Ok(see_other(&base.at(&format!("/orgs/{org}/usage"))))
}
