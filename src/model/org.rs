//! Organizations and their members: the rows of `organizations` and
//! `user_organizations`.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, quoted};
use crate::ids::{OrgId, Slug, UserId};
use crate::model::role::Role;

/// Longest organization name accepted, in characters.
pub const MAX_ORG_NAME_CHARS: usize = 200;

/// An organization: a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    /// Its id.
    pub id: OrgId,
    /// Display name.
    pub name: String,
    /// Unique URL name.
    pub slug: Slug,
    /// The user who created it. They start as its owner; the `owner` role,
    /// not this column, decides permissions afterwards. `None` for an
    /// organization created without an owner (the "Default" organization
    /// that `tenancy.adopt_table` makes for legacy rows) or whose creator's
    /// account was deleted.
    pub owner_user_id: Option<UserId>,
    /// The IANA time zone its daily and monthly usage periods follow.
    pub timezone: Tz,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// What it takes to create an organization.
///
/// ```
/// use tenancy::NewOrganization;
/// let acme = NewOrganization::new("Acme Labs", "acme-labs")?.timezone("Asia/Tokyo")?;
/// assert_eq!(acme.slug().as_str(), "acme-labs");
/// assert!(NewOrganization::new("Acme", "Acme Labs").is_err());
/// # Ok::<(), tenancy::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct NewOrganization {
    pub(crate) name: String,
    pub(crate) slug: Slug,
    pub(crate) timezone: Tz,
}

impl NewOrganization {
    /// A new organization named `name` at `slug`, in UTC.
    pub fn new(name: &str, slug: &str) -> Result<Self> {
        Ok(NewOrganization {
            name: validate_org_name(name)?,
            slug: Slug::parse(slug)?,
            timezone: Tz::UTC,
        })
    }

    /// Sets the IANA time zone (`"America/New_York"`) that its usage periods
    /// follow.
    pub fn timezone(mut self, iana_name: &str) -> Result<Self> {
        self.timezone = parse_timezone(iana_name)?;
        Ok(self)
    }

    /// The validated slug.
    pub fn slug(&self) -> &Slug {
        &self.slug
    }
}

/// Trims `name` and checks it is 1–200 characters with no control
/// characters (NUL included).
pub(crate) fn validate_org_name(name: &str) -> Result<String> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_ORG_NAME_CHARS {
        return Err(Error::invalid_input(
            "name",
            format!("organization name must be 1 to {MAX_ORG_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid_input(
            "name",
            "organization name must not contain control characters",
        ));
    }
    Ok(name.to_owned())
}

/// Parses an IANA time zone name, `InvalidInput` naming `timezone` if unknown.
pub fn parse_timezone(iana_name: &str) -> Result<Tz> {
    iana_name.parse::<Tz>().map_err(|_| {
        Error::invalid_input(
            "timezone",
            format_args!("{} is not an IANA time zone name", quoted(iana_name)),
        )
    })
}

/// One row of `user_organizations`: a user's role in an organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// The member.
    pub user_id: UserId,
    /// The organization.
    pub organization_id: OrgId,
    /// Their role in it.
    pub role: Role,
    /// When they joined.
    pub created_at: DateTime<Utc>,
}

/// An organization together with a user's membership in it: one entry of
/// the org selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgMembership {
    /// The organization.
    pub organization: Organization,
    /// The user's role in it.
    pub role: Role,
    /// When the user joined it.
    pub joined_at: DateTime<Utc>,
}

/// Picks the default organization among a user's memberships.
///
/// The rule: the organization the user joined first; ties (same instant)
/// go to the higher role, then the lower org id. It is stable — joining
/// more organizations never changes a user's default — and it lands a new
/// user who created their own workspace in that workspace.
pub fn default_membership(memberships: &[OrgMembership]) -> Option<&OrgMembership> {
    memberships.iter().min_by(|a, b| {
        a.joined_at
            .cmp(&b.joined_at)
            .then(b.role.cmp(&a.role))
            .then(a.organization.id.cmp(&b.organization.id))
    })
}
