//! `DomainStore` over SQL: the `tenancy_*domain*` functions of
//! `migrations/20261206000800_tenancy_verified_domains.sql`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Idempotent, Sql, SqlTransport, explained};
use crate::error::{ErrorKind, Result};
use crate::ids::{OrgId, UserId};
use crate::model::domain::{
    AutoJoin, DomainChange, DomainName, JoinOutcome, JoinableOrg, VerifiedDomain,
};
use crate::store::org_not_found;

/// Arguments of `tenancy_put_domain`; `None`s are left out (null: keep).
#[derive(Debug, Serialize)]
struct PutDomainArgs<'a> {
    org_id: OrgId,
    domain: &'a DomainName,
    #[serde(skip_serializing_if = "Option::is_none")]
    include_subdomains: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    at: DateTime<Utc>,
}

/// `{org_id}`.
#[derive(Debug, Serialize)]
struct OrgArg {
    org_id: OrgId,
}

/// `{org_id, domain}`.
#[derive(Debug, Serialize)]
struct DomainArgs<'a> {
    org_id: OrgId,
    domain: &'a DomainName,
}

/// Arguments of `tenancy_set_domain_auto_join`.
#[derive(Debug, Serialize)]
struct AutoJoinArgs<'a> {
    org_id: OrgId,
    domain: &'a DomainName,
    auto_join: AutoJoin,
    at: DateTime<Utc>,
}

/// Arguments of `tenancy_domain_joinable`.
#[derive(Debug, Serialize)]
struct JoinableArgs<'a> {
    user_id: UserId,
    email: &'a str,
}

/// Arguments of `tenancy_domain_join`.
#[derive(Debug, Serialize)]
struct JoinArgs<'a> {
    org_id: OrgId,
    user_id: UserId,
    email: &'a str,
    joined_at: DateTime<Utc>,
}

/// `{removed}` of `tenancy_remove_domain`.
#[derive(Debug, Deserialize)]
struct Removed {
    removed: bool,
}

impl<T: SqlTransport + ?Sized> Sql<'_, T> {
    pub(crate) async fn put_domain(
        &self,
        org: OrgId,
        domain: &DomainName,
        change: &DomainChange,
        now: DateTime<Utc>,
    ) -> Result<VerifiedDomain> {
        let args = PutDomainArgs {
            org_id: org,
            domain,
            include_subdomains: change.include_subdomains,
            enabled: change.enabled,
            at: now,
        };
        self.rpc(
            "tenancy_put_domain",
            "recording a verified domain",
            Idempotent::Yes,
            &args,
        )
        .await
        .map_err(|e| {
            explained(e, |kind, _| match kind {
                ErrorKind::NotFound => Some(org_not_found(org).message().to_owned()),
                _ => None,
            })
        })
    }

    pub(crate) async fn domains(&self, org: OrgId) -> Result<Vec<VerifiedDomain>> {
        self.rpc(
            "tenancy_domains",
            "reading verified domains",
            Idempotent::Yes,
            &OrgArg { org_id: org },
        )
        .await
    }

    pub(crate) async fn remove_domain(&self, org: OrgId, domain: &DomainName) -> Result<bool> {
        let removed: Removed = self
            .rpc(
                "tenancy_remove_domain",
                "removing a verified domain",
                // A retry after a delete that landed would answer "was not
                // there".
                Idempotent::No,
                &DomainArgs {
                    org_id: org,
                    domain,
                },
            )
            .await?;
        Ok(removed.removed)
    }

    pub(crate) async fn set_auto_join(
        &self,
        org: OrgId,
        domain: &DomainName,
        auto_join: AutoJoin,
        now: DateTime<Utc>,
    ) -> Result<VerifiedDomain> {
        let args = AutoJoinArgs {
            org_id: org,
            domain,
            auto_join,
            at: now,
        };
        self.rpc(
            "tenancy_set_domain_auto_join",
            "changing a domain's join setting",
            Idempotent::Yes,
            &args,
        )
        .await
        .map_err(|e| {
            explained(e, |kind, _| match kind {
                ErrorKind::NotFound => Some(format!(
                    "organization {org} has no verified domain {domain}"
                )),
                _ => None,
            })
        })
    }

    pub(crate) async fn joinable_organizations(
        &self,
        user: UserId,
        email: &str,
    ) -> Result<Vec<JoinableOrg>> {
        self.rpc(
            "tenancy_domain_joinable",
            "reading the organizations a user may join",
            Idempotent::Yes,
            &JoinableArgs {
                user_id: user,
                email,
            },
        )
        .await
    }

    pub(crate) async fn join_by_domain(
        &self,
        org: OrgId,
        user: UserId,
        email: &str,
        now: DateTime<Utc>,
    ) -> Result<JoinOutcome> {
        let args = JoinArgs {
            org_id: org,
            user_id: user,
            email,
            joined_at: now,
        };
        // Safe to repeat: a join that landed answers `joined: false` after.
        self.rpc(
            "tenancy_domain_join",
            "joining an organization through a verified domain",
            Idempotent::Yes,
            &args,
        )
        .await
        .map_err(|e| {
            explained(e, |kind, _| match kind {
                ErrorKind::PermissionDenied => Some(format!(
                    "user {user} may not join organization {org} through the domain of their email"
                )),
                _ => None,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    //! The results of the domain functions, as PostgreSQL returns them
    //! (keys in jsonb's order), read into their Rust types.

    use super::*;

    #[test]
    fn the_functions_results_read_into_their_types() {
        let domain: VerifiedDomain = serde_json::from_str(
            r#"{"domain": "acme.com", "enabled": true, "auto_join": "member",
                "created_at": "2026-12-06T19:48:46.369306+00:00",
                "updated_at": "2026-12-06T19:48:46.374069+00:00",
                "organization_id": "00000000-0000-0000-0000-00000000000a",
                "include_subdomains": true}"#,
        )
        .unwrap();
        assert_eq!(domain.auto_join, AutoJoin::Member);
        assert!(domain.include_subdomains);

        let joinable: Vec<JoinableOrg> = serde_json::from_str(
            r#"[{"role": "member", "domain": "acme.com", "organization": {
                "id": "00000000-0000-0000-0000-00000000000a", "name": "Acme",
                "slug": "acme-1", "timezone": "UTC",
                "created_at": "2026-12-06T19:48:42.455699+00:00",
                "owner_user_id": "00000000-0000-0000-0000-0000000000a1"}}]"#,
        )
        .unwrap();
        assert_eq!(joinable[0].role, crate::model::Role::Member);
        assert_eq!(joinable[0].domain.as_str(), "acme.com");

        let joined: JoinOutcome = serde_json::from_str(
            r#"{"joined": true, "membership": {"role": "viewer",
                "user_id": "00000000-0000-0000-0000-0000000000b2",
                "created_at": "2026-12-06T19:48:46.377473+00:00",
                "organization_id": "00000000-0000-0000-0000-00000000000a"}}"#,
        )
        .unwrap();
        assert!(joined.joined);
        assert_eq!(joined.membership.role, crate::model::Role::Viewer);

        let removed: Removed = serde_json::from_str(r#"{"removed": false}"#).unwrap();
        assert!(!removed.removed);

        // A name the SQL check let through but Rust refuses is an error,
        // not a silently wrong value.
        assert!(serde_json::from_str::<DomainName>(r#""ACME .com""#).is_err());
    }
}
