//! Verified email domains, and who may join an organization through one.
//!
//! The operator records that an organization owns a domain (how it was
//! verified, by DNS or by email, is the host's business) as a
//! [`VerifiedDomain`]; the organization's owners and admins choose, per
//! domain, whether users with a confirmed email there may join on their own,
//! and as what ([`AutoJoin`]: never above `member`).
//!
//! # Matching
//!
//! An email matches a domain on the part after its last `@`, compared
//! exactly after lowercasing ASCII letters: `ada@ACME.com` matches
//! `acme.com`; `ada@acme.com.evil.io` and `ada@evilacme.com` do not. A
//! subdomain (`ada@eu.acme.com`) matches only a domain whose
//! `include_subdomains` the operator set. Names are ASCII: internationalized
//! names are recorded in their punycode form (`xn--bcher-kva.example`), and
//! no IDNA mapping is applied to either side. Where several enabled domains
//! of one organization match, the most specific (longest) decides, its
//! [`AutoJoin::Off`] included; a disabled domain matches nothing.
//! [`deciding_domain`] is the rule in Rust; the SQL functions apply the same
//! one, and the store contract checks both.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, quoted};
use crate::ids::OrgId;
use crate::model::org::{Membership, Organization};
use crate::model::role::Role;

/// The longest domain name accepted, in bytes (RFC 1035).
pub const MAX_DOMAIN_LEN: usize = 253;

/// The longest label (the text between dots) accepted, in bytes.
pub const MAX_DOMAIN_LABEL_LEN: usize = 63;

/// A domain name as the operator records it: lowercase ASCII letters,
/// digits and hyphens in dot-separated labels.
///
/// [`parse`](Self::parse) lowercases ASCII letters and trims surrounding
/// whitespace, then refuses, with `InvalidInput` naming `domain`: a blank
/// name, inner whitespace, an `@`, a leading or trailing dot or an empty
/// label, a character other than a letter, digit, hyphen or dot (write an
/// internationalized name in punycode), a label that starts or ends with a
/// hyphen, a label over [`MAX_DOMAIN_LABEL_LEN`] bytes, a name over
/// [`MAX_DOMAIN_LEN`] bytes, a bare top-level domain (`com`), and an
/// all-digit last label (an IP address is not a domain).
///
/// ```
/// use tenancy::model::domain::DomainName;
/// assert_eq!(DomainName::parse(" Acme.COM ")?.as_str(), "acme.com");
/// for bad in ["", "acme com", "ada@acme.com", ".acme.com", "acme.com.", "com", "10.0.0.1"] {
///     assert_eq!(DomainName::parse(bad).unwrap_err().field(), Some("domain"));
/// }
/// # Ok::<(), tenancy::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct DomainName(String);

impl DomainName {
    /// Validates and lowercases `input`; see the type's docs.
    pub fn parse(input: &str) -> Result<DomainName> {
        let name = input.trim().to_ascii_lowercase();
        let refuse = |why: &str| {
            Err(Error::invalid_input(
                "domain",
                format_args!("{} {why}", quoted(input)),
            ))
        };
        if name.is_empty() {
            return refuse("is blank");
        }
        if name.chars().any(char::is_whitespace) {
            return refuse("contains a space");
        }
        if name.contains('@') {
            return refuse("contains an @: give the domain alone, not an email address");
        }
        if name.starts_with('.') || name.ends_with('.') {
            return refuse("starts or ends with a dot");
        }
        if name.len() > MAX_DOMAIN_LEN {
            return refuse(&format!("is longer than {MAX_DOMAIN_LEN} bytes"));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
        {
            return refuse(&format!(
                "contains {c:?}: only letters, digits, hyphens and dots (write an internationalized name in punycode)"
            ));
        }
        let labels: Vec<&str> = name.split('.').collect();
        for label in &labels {
            if label.is_empty() {
                return refuse("has an empty label (two dots in a row)");
            }
            if label.len() > MAX_DOMAIN_LABEL_LEN {
                return refuse(&format!(
                    "has a label longer than {MAX_DOMAIN_LABEL_LEN} bytes"
                ));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return refuse("has a label that starts or ends with a hyphen");
            }
        }
        if labels.len() < 2 {
            return refuse("is a bare top-level domain; give a registered domain such as acme.com");
        }
        if labels
            .last()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return refuse("ends in an all-digit label: an IP address is not a domain");
        }
        Ok(DomainName(name))
    }

    /// The name, lowercase.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether an email at `email_domain` (already lowercase, as
    /// [`email_domain`] returns it) matches this domain: the same name, or
    /// with `include_subdomains` a name ending in `.` and this one.
    pub fn matches(&self, email_domain: &str, include_subdomains: bool) -> bool {
        email_domain == self.0
            || (include_subdomains
                && email_domain
                    .strip_suffix(self.0.as_str())
                    .is_some_and(|head| head.len() > 1 && head.ends_with('.')))
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DomainName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        DomainName::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// The domain of an email address: the part after its last `@`, ASCII
/// letters lowercased; `None` without an `@` or with nothing after it.
///
/// ```
/// use tenancy::model::domain::email_domain;
/// assert_eq!(email_domain("Ada@Acme.COM").as_deref(), Some("acme.com"));
/// assert_eq!(email_domain("\"a@b\"@acme.com").as_deref(), Some("acme.com"));
/// assert_eq!(email_domain("acme.com"), None);
/// ```
pub fn email_domain(email: &str) -> Option<String> {
    let (_, domain) = email.rsplit_once('@')?;
    (!domain.is_empty()).then(|| domain.to_ascii_lowercase())
}

/// Whether, and as what, users with a confirmed email at a domain may join
/// its organization on their own. Never above `member`: admins and owners
/// are made by people, not by an email address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoJoin {
    /// Nobody joins through this domain (the default).
    #[default]
    Off,
    /// Users join as viewers.
    Viewer,
    /// Users join as members.
    Member,
}

impl AutoJoin {
    /// Every choice, in the order a picker shows them.
    pub const ALL: [AutoJoin; 3] = [AutoJoin::Off, AutoJoin::Viewer, AutoJoin::Member];

    /// The role a user joins with; `None` for [`Off`](Self::Off).
    pub fn role(self) -> Option<Role> {
        match self {
            AutoJoin::Off => None,
            AutoJoin::Viewer => Some(Role::Viewer),
            AutoJoin::Member => Some(Role::Member),
        }
    }

    /// The name stored in `org_domains.auto_join`.
    pub fn as_str(self) -> &'static str {
        match self {
            AutoJoin::Off => "off",
            AutoJoin::Viewer => "viewer",
            AutoJoin::Member => "member",
        }
    }

    /// Parses `off`, `viewer` or `member`; anything else (`admin`, `owner`
    /// included) is `InvalidInput` naming `auto_join`.
    pub fn parse(input: &str) -> Result<AutoJoin> {
        AutoJoin::ALL
            .into_iter()
            .find(|a| a.as_str() == input)
            .ok_or_else(|| {
                Error::invalid_input(
                    "auto_join",
                    format_args!("{} is not one of off, viewer, member", quoted(input)),
                )
            })
    }
}

impl fmt::Display for AutoJoin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A domain the operator recorded as verified for an organization, with
/// the organization's join setting: one row of `org_domains`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct VerifiedDomain {
    /// The organization that owns the domain.
    pub organization_id: OrgId,
    /// The domain.
    pub domain: DomainName,
    /// Whether emails at its subdomains match too (the operator's choice).
    pub include_subdomains: bool,
    /// Whether the domain counts; a disabled one matches nothing (the
    /// operator's choice).
    pub enabled: bool,
    /// Whether its users may join on their own, and as what (the
    /// organization's choice).
    pub auto_join: AutoJoin,
    /// When the operator recorded it.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// What the operator changes of a domain: `None` keeps a field (a new
/// domain takes `include_subdomains: false`, `enabled: true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[non_exhaustive]
pub struct DomainChange {
    /// Whether emails at subdomains match too.
    pub include_subdomains: Option<bool>,
    /// Whether the domain counts.
    pub enabled: Option<bool>,
}

impl DomainChange {
    /// A change of `include_subdomains` alone.
    pub fn include_subdomains(include: bool) -> Self {
        DomainChange {
            include_subdomains: Some(include),
            enabled: None,
        }
    }

    /// A change of `enabled` alone.
    pub fn enabled(enabled: bool) -> Self {
        DomainChange {
            include_subdomains: None,
            enabled: Some(enabled),
        }
    }
}

/// Of an organization's `domains`, the one that decides for an email at
/// `email_domain`: the longest enabled domain that matches it, or `None`.
/// Its [`auto_join`](VerifiedDomain::auto_join) says whether, and as what,
/// the user may join.
pub fn deciding_domain<'a>(
    domains: impl IntoIterator<Item = &'a VerifiedDomain>,
    email_domain: &str,
) -> Option<&'a VerifiedDomain> {
    domains
        .into_iter()
        .filter(|d| d.enabled && d.domain.matches(email_domain, d.include_subdomains))
        .max_by_key(|d| d.domain.as_str().len())
}

/// An organization a user may join through a verified domain: one entry of
/// the org selector's "join" list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct JoinableOrg {
    /// The organization.
    pub organization: Organization,
    /// The role the user would join with.
    pub role: Role,
    /// The domain that lets them.
    pub domain: DomainName,
}

/// The result of joining through a verified domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct JoinOutcome {
    /// The user's membership: the new one, or the one they had.
    pub membership: Membership,
    /// Whether they joined now (`false`: they were a member already, and
    /// nothing changed).
    pub joined: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_names_are_validated() {
        let long_label = "a".repeat(64);
        let long_name = format!("{}.com", ["abcdefghi"; 26].join("."));
        assert!(long_name.len() > MAX_DOMAIN_LEN);
        for bad in [
            "",
            "   ",
            "acme .com",
            "ada@acme.com",
            ".acme.com",
            "acme.com.",
            "acme..com",
            "com",
            "-acme.com",
            "acme-.com",
            "acme_corp.com",
            "bücher.example",
            "10.0.0.1",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            let e = DomainName::parse(bad).unwrap_err();
            assert_eq!(e.field(), Some("domain"), "{bad:?}: {e}");
        }
        let label63 = format!("{}.com", "a".repeat(63));
        for (good, stored) in [
            ("Acme.COM", "acme.com"),
            ("  eu.acme.com\t", "eu.acme.com"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
            ("a-b.co", "a-b.co"),
            (label63.as_str(), label63.as_str()),
        ] {
            assert_eq!(DomainName::parse(good).unwrap().as_str(), stored);
        }
    }

    #[test]
    fn matching_is_exact_unless_subdomains_are_included() {
        let acme = DomainName::parse("acme.com").unwrap();
        assert!(acme.matches("acme.com", false));
        for other in [
            "acme.com.evil.io",
            "evilacme.com",
            "eu.acme.com",
            ".acme.com",
        ] {
            assert!(!acme.matches(other, false), "{other}");
        }
        assert!(acme.matches("eu.acme.com", true));
        assert!(acme.matches("a.b.acme.com", true));
        for other in ["acme.com.evil.io", "evilacme.com", ".acme.com", "com"] {
            assert!(!acme.matches(other, true), "{other}");
        }
        assert_eq!(
            email_domain("x@EU.Acme.Com").as_deref(),
            Some("eu.acme.com")
        );
        assert_eq!(email_domain("x@"), None);
    }

    #[test]
    fn auto_join_never_grants_more_than_member() {
        assert_eq!(
            AutoJoin::parse("member").unwrap().role(),
            Some(Role::Member)
        );
        assert_eq!(
            AutoJoin::parse("viewer").unwrap().role(),
            Some(Role::Viewer)
        );
        assert_eq!(AutoJoin::Off.role(), None);
        for bad in ["admin", "owner", "Member", ""] {
            assert_eq!(AutoJoin::parse(bad).unwrap_err().field(), Some("auto_join"));
        }
    }
}
