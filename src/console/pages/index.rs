//! The start page (the user's organizations, and where the console allows
//! it, a form to create the first one) and the embeddable org selector.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::{Chrome, OrgEntry, chrome_with, org_entries, selector_html};
use crate::console::auth::Viewer;
use crate::console::config::ConsoleConfig;
use crate::console::form::CsrfForm;
use crate::console::render::{Base, ConsoleError, form_refusal, html_response, page, see_other};
use crate::ids::{OrgId, Slug};
use crate::model::{NewOrganization, OrgMembership};

#[derive(Template)]
#[template(path = "console/index.html")]
struct Index {
    chrome: Chrome,
    orgs: Vec<OrgEntry>,
    /// The form to create a first organization, when the console allows it
    /// and the user has none.
    create: Option<CreateForm>,
}

/// The create-organization form as shown: its values (the posted ones
/// when it comes back refused) and why it was refused.
struct CreateForm {
    action: String,
    csrf: String,
    name: String,
    slug: String,
    timezone: String,
    error: Option<String>,
}

/// The start page of `viewer`, whose organizations are `orgs`; `create`
/// fills the create form (a refused post), or leaves it empty.
fn start_page(
    config: &ConsoleConfig,
    viewer: &Viewer,
    base: &Base,
    orgs: &[OrgMembership],
    create: Option<(&NewOrgForm, String)>,
) -> Result<Index, ConsoleError> {
    let chrome = chrome_with(orgs, viewer, base, "Your organizations", None, "", None)?;
    let form = (config.allow_first_organization && orgs.is_empty()).then(|| {
        let (posted, error) = match create {
            Some((posted, error)) => (Some(posted), Some(error)),
            None => (None, None),
        };
        let value = |field: fn(&NewOrgForm) -> &str| posted.map(field).unwrap_or("").to_owned();
        CreateForm {
            action: base.at("/orgs"),
            csrf: viewer.csrf.clone(),
            name: value(|f| &f.name),
            slug: value(|f| &f.slug),
            timezone: posted.map_or_else(|| "UTC".to_owned(), |f| f.timezone.clone()),
            error,
        }
    });
    Ok(Index {
        chrome,
        orgs: org_entries(orgs, base, None),
        create: form,
    })
}

/// `GET /`: the user's organizations, their default first; with none, the
/// form to create one where the console allows it.
pub(in crate::console) async fn index(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
) -> Result<Response, ConsoleError> {
    let orgs = config.tenancy.orgs_for_user(viewer.user).await?;
    Ok(page(&start_page(&config, &viewer, &base, &orgs, None)?))
}

/// The create-organization form as posted. Every field defaults, so that
/// a missing one is explained with the form (see [`CsrfForm`]).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(in crate::console) struct NewOrgForm {
    name: String,
    slug: String,
    timezone: String,
}

impl NewOrgForm {
    /// The organization the form describes: the slug made from the name
    /// when left empty, UTC when no time zone is given.
    fn organization(&self) -> crate::error::Result<NewOrganization> {
        let slug = match self.slug.trim() {
            "" => slug_from_name(&self.name),
            typed => typed.to_owned(),
        };
        let new = NewOrganization::new(&self.name, &slug)?;
        match self.timezone.trim() {
            "" => Ok(new),
            zone => new.timezone(zone),
        }
    }
}

/// `POST /orgs`: creates the viewer's first organization, with them as its
/// owner, and opens its usage page. Checked in this order: the CSRF token,
/// that the console allows it, that the viewer belongs to no organization
/// (each 403, before anything is created). A value the person can correct
/// (an invalid name, slug or zone, a slug taken) brings the form back with
/// why.
pub(in crate::console) async fn create_organization(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    CsrfForm(form): CsrfForm<NewOrgForm>,
) -> Result<Response, ConsoleError> {
    if !config.allow_first_organization {
        return Err(ConsoleError::forbidden(
            "This console does not create organizations. Ask the platform's operator, or an organization's owner to add you.",
        ));
    }
    let orgs = config.tenancy.orgs_for_user(viewer.user).await?;
    if !orgs.is_empty() {
        return Err(ConsoleError::forbidden(
            "You already belong to an organization: this console creates only a first one.",
        ));
    }
    let created = match form.organization() {
        Ok(new) => config.tenancy.create_organization(viewer.user, new).await,
        Err(e) => Err(e),
    };
    match created {
        Ok(org) => Ok(see_other(
            &base.at(&format!("/orgs/{}/usage?done=org-created", org.id)),
        )),
        Err(e) => {
            let (status, message) = form_refusal(e)?;
            let data = start_page(&config, &viewer, &base, &orgs, Some((&form, message)))?;
            let mut response = page(&data);
            *response.status_mut() = status;
            Ok(response)
        }
    }
}

/// A slug made from an organization's name: its ASCII letters and digits,
/// lowercased, with a hyphen for every run of anything else, at most
/// [`Slug::MAX_LEN`] bytes. Empty when the name has no such character (the
/// slug's own check then says so).
fn slug_from_name(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if slug.len() == Slug::MAX_LEN {
                break;
            }
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            if slug.len() + 1 >= Slug::MAX_LEN {
                break;
            }
            slug.push('-');
        }
    }
    slug.trim_end_matches('-').to_owned()
}

#[derive(Debug, Deserialize)]
pub(in crate::console) struct Current {
    current: Option<String>,
}

/// `GET /fragments/org-selector?current=<org id>`: the org selector alone,
/// to embed in the host's own layout (it carries no stylesheet; style the
/// `.org-selector` classes, or link the console's).
pub(in crate::console) async fn selector_fragment(
    State(config): State<Arc<ConsoleConfig>>,
    viewer: Viewer,
    base: Base,
    Query(current): Query<Current>,
) -> Result<Response, ConsoleError> {
    let current = current
        .current
        .as_deref()
        .and_then(|c| OrgId::parse(c).ok());
    let html = selector_html(&config.tenancy, viewer.user, &base, current).await?;
    Ok(html_response(StatusCode::OK, html))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slug_is_made_from_the_name_when_left_empty() {
        assert_eq!(slug_from_name("Acme Labs"), "acme-labs");
        assert_eq!(slug_from_name("  Nina's Studio!  "), "nina-s-studio");
        assert_eq!(slug_from_name("Café 2000 — Paris"), "caf-2000-paris");
        assert_eq!(slug_from_name("日本"), "");
        let long = slug_from_name(&"ab ".repeat(40));
        assert!(long.len() <= Slug::MAX_LEN, "{long}");
        assert!(Slug::parse(&long).is_ok(), "{long}");
        for name in ["Acme Labs", "x", "A--B", "-a-", "9 lives"] {
            let slug = slug_from_name(name);
            assert!(Slug::parse(&slug).is_ok(), "{name:?} -> {slug:?}");
        }
        let form = NewOrgForm {
            name: "Acme Labs".into(),
            timezone: " ".into(),
            ..NewOrgForm::default()
        };
        assert_eq!(form.organization().unwrap().slug().as_str(), "acme-labs");
        let bad_zone = NewOrgForm {
            timezone: "Mars/Olympus".into(),
            ..form
        };
        let err = bad_zone.organization().unwrap_err();
        assert_eq!(err.field(), Some("timezone"));
    }
}
