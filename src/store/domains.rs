//! [`DomainStore`]: verified email domains whose users may join an organization on their own.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::ids::{OrgId, UserId};
use crate::model::domain::{
    AutoJoin, DomainChange, DomainName, JoinOutcome, JoinableOrg, VerifiedDomain,
};

use super::Backend;

// Signatures in the list name their types by full path: the wrappers that
// expand it (faults, caching, instrumentation, the SQL store) import none.
method_list!($ domain_store_methods {
    fn put_domain(org: crate::ids::OrgId, domain: &crate::model::domain::DomainName, change: &crate::model::domain::DomainChange, now: chrono::DateTime<chrono::Utc>) -> crate::error::Result<crate::model::domain::VerifiedDomain>;
    fn domains(org: crate::ids::OrgId) -> crate::error::Result<Vec<crate::model::domain::VerifiedDomain>>;
    fn remove_domain(org: crate::ids::OrgId, domain: &crate::model::domain::DomainName) -> crate::error::Result<bool>;
    fn set_auto_join(org: crate::ids::OrgId, domain: &crate::model::domain::DomainName, auto_join: crate::model::domain::AutoJoin, now: chrono::DateTime<chrono::Utc>) -> crate::error::Result<crate::model::domain::VerifiedDomain>;
    fn joinable_organizations(user: crate::ids::UserId, email: &str) -> crate::error::Result<Vec<crate::model::domain::JoinableOrg>>;
    fn join_by_domain(org: crate::ids::OrgId, user: crate::ids::UserId, email: &str, now: chrono::DateTime<chrono::Utc>) -> crate::error::Result<crate::model::domain::JoinOutcome>;
});

/// Verified email domains whose users may join an organization on their own.
///
/// Part of the [`Store`](super::Store) bundle. Each method is atomic on its
/// own and touches only the organization it names. Matching an email to a
/// domain follows [`model::domain`](crate::model::domain): the longest
/// enabled domain of the organization that matches decides. The store
/// trusts the email it is given: the facade passes only a confirmed one.
#[async_trait]
pub trait DomainStore: Backend {
    /// Records `domain` for `org`, or changes it: the fields `change` names
    /// are written, the others kept (a new domain takes
    /// `include_subdomains: false`, `enabled: true`, [`AutoJoin::Off`] and
    /// `created_at = now`); `updated_at` becomes `now`. The organization's
    /// `auto_join` is never changed here. `NotFound` if the organization
    /// does not exist.
    async fn put_domain(
        &self,
        org: OrgId,
        domain: &DomainName,
        change: &DomainChange,
        now: DateTime<Utc>,
    ) -> Result<VerifiedDomain>;

    /// The organization's domains, by name (byte order); empty for an
    /// organization that does not exist.
    async fn domains(&self, org: OrgId) -> Result<Vec<VerifiedDomain>>;

    /// Removes `domain` from `org`; whether it was there.
    async fn remove_domain(&self, org: OrgId, domain: &DomainName) -> Result<bool>;

    /// Sets the organization's join choice for `domain`, `updated_at`
    /// becoming `now`. `NotFound` if `org` has no such domain.
    async fn set_auto_join(
        &self,
        org: OrgId,
        domain: &DomainName,
        auto_join: AutoJoin,
        now: DateTime<Utc>,
    ) -> Result<VerifiedDomain>;

    /// The organizations `user` is not a member of whose deciding domain
    /// for `email` lets users join ([`AutoJoin`] not `Off`), by
    /// organization name then id.
    async fn joinable_organizations(&self, user: UserId, email: &str) -> Result<Vec<JoinableOrg>>;

    /// Adds `user` to `org` through the domain of `email`, in one atomic
    /// step: if `user` is a member already, nothing changes and their
    /// membership is returned (`joined: false`); else if the organization's
    /// deciding domain for `email` lets users join, the membership is
    /// created with its role, `created_at = now` (`joined: true`); else
    /// `PermissionDenied`, the same for an organization that does not
    /// exist.
    async fn join_by_domain(
        &self,
        org: OrgId,
        user: UserId,
        email: &str,
        now: DateTime<Utc>,
    ) -> Result<JoinOutcome>;
}

forward_capability!(DomainStore, domain_store_methods);

pub(crate) use domain_store_methods;
