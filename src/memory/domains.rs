//! `DomainStore` for [`MemoryStore`]: verified domains per organization,
//! and joining through one under the store's lock.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::ids::{OrgId, UserId};
use crate::model::Membership;
use crate::model::domain::{
    AutoJoin, DomainChange, DomainName, JoinOutcome, JoinableOrg, VerifiedDomain, deciding_domain,
    email_domain,
};
use crate::store::{DomainStore, org_not_found};

use super::MemoryStore;
use super::audit::time;
use super::tenant::State;

/// What the embedded store keeps for this capability, under its one lock.
#[derive(Debug, Default)]
pub(super) struct DomainState {
    /// Each organization's domains, by name.
    by_org: BTreeMap<OrgId, BTreeMap<DomainName, VerifiedDomain>>,
}

/// Deletes `org`'s domains with the organization, each an audit event, as
/// the SQL foreign key cascades (the caller holds the lock).
pub(super) fn delete_organization(state: &mut State, org: OrgId) {
    for domain in state
        .domains
        .by_org
        .remove(&org)
        .into_iter()
        .flat_map(BTreeMap::into_values)
    {
        audit_domain(state, Some(&domain), None, None);
    }
}

/// The audit event of a change to one verified domain: the row as the SQL
/// trigger writes it (the same column names).
fn audit_domain(
    state: &mut State,
    before: Option<&VerifiedDomain>,
    after: Option<&VerifiedDomain>,
    at: Option<DateTime<Utc>>,
) {
    let Some(d) = after.or(before) else { return };
    let row = |d: &VerifiedDomain| {
        serde_json::json!({
            "organization_id": d.organization_id,
            "domain": d.domain.as_str(),
            "include_subdomains": d.include_subdomains,
            "enabled": d.enabled,
            "auto_join": d.auto_join,
            "created_at": time(d.created_at),
            "updated_at": time(d.updated_at),
        })
    };
    state.audit.write(
        d.organization_id,
        "domain",
        d.domain.to_string(),
        before.map(row),
        after.map(row),
        at,
    );
}

/// The refusal of a join, the same whatever the reason (no such
/// organization, no matching domain, joining turned off).
fn may_not_join(org: OrgId, user: UserId) -> Error {
    Error::permission_denied(format!(
        "user {user} may not join organization {org} through the domain of their email"
    ))
}

#[async_trait]
impl DomainStore for MemoryStore {
    async fn put_domain(
        &self,
        org: OrgId,
        domain: &DomainName,
        change: &DomainChange,
        now: DateTime<Utc>,
    ) -> Result<VerifiedDomain> {
        let mut state = self.lock();
        if !state.tenants.contains_key(&org) {
            return Err(org_not_found(org));
        }
        let before = state
            .domains
            .by_org
            .get(&org)
            .and_then(|d| d.get(domain))
            .cloned();
        let record = state
            .domains
            .by_org
            .entry(org)
            .or_default()
            .entry(domain.clone())
            .or_insert_with(|| VerifiedDomain {
                organization_id: org,
                domain: domain.clone(),
                include_subdomains: false,
                enabled: true,
                auto_join: AutoJoin::Off,
                created_at: now,
                updated_at: now,
            });
        if let Some(include) = change.include_subdomains {
            record.include_subdomains = include;
        }
        if let Some(enabled) = change.enabled {
            record.enabled = enabled;
        }
        record.updated_at = now;
        let after = record.clone();
        audit_domain(&mut state, before.as_ref(), Some(&after), Some(now));
        Ok(after)
    }

    async fn domains(&self, org: OrgId) -> Result<Vec<VerifiedDomain>> {
        let state = self.lock();
        Ok(state
            .domains
            .by_org
            .get(&org)
            .map(|d| d.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn remove_domain(&self, org: OrgId, domain: &DomainName) -> Result<bool> {
        let mut state = self.lock();
        let removed = state
            .domains
            .by_org
            .get_mut(&org)
            .and_then(|d| d.remove(domain));
        audit_domain(&mut state, removed.as_ref(), None, None);
        Ok(removed.is_some())
    }

    async fn set_auto_join(
        &self,
        org: OrgId,
        domain: &DomainName,
        auto_join: AutoJoin,
        now: DateTime<Utc>,
    ) -> Result<VerifiedDomain> {
        let mut state = self.lock();
        let record = state
            .domains
            .by_org
            .get_mut(&org)
            .and_then(|d| d.get_mut(domain))
            .ok_or_else(|| {
                Error::not_found(format!(
                    "organization {org} has no verified domain {domain}"
                ))
            })?;
        let before = record.clone();
        record.auto_join = auto_join;
        record.updated_at = now;
        let after = record.clone();
        audit_domain(&mut state, Some(&before), Some(&after), Some(now));
        Ok(after)
    }

    async fn joinable_organizations(&self, user: UserId, email: &str) -> Result<Vec<JoinableOrg>> {
        let state = self.lock();
        let Some(at) = email_domain(email) else {
            return Ok(Vec::new());
        };
        let mut found: Vec<JoinableOrg> = state
            .domains
            .by_org
            .iter()
            .filter_map(|(org, domains)| {
                let tenant = state.tenants.get(org)?;
                if tenant.members.contains_key(&user) {
                    return None;
                }
                let decides = deciding_domain(domains.values(), &at)?;
                Some(JoinableOrg {
                    organization: tenant.org.clone(),
                    role: decides.auto_join.role()?,
                    domain: decides.domain.clone(),
                })
            })
            .collect();
        found.sort_by(|a, b| {
            (a.organization.name.as_str(), a.organization.id)
                .cmp(&(b.organization.name.as_str(), b.organization.id))
        });
        Ok(found)
    }

    async fn join_by_domain(
        &self,
        org: OrgId,
        user: UserId,
        email: &str,
        now: DateTime<Utc>,
    ) -> Result<JoinOutcome> {
        let mut state = self.lock();
        let Some(tenant) = state.tenants.get(&org) else {
            return Err(may_not_join(org, user));
        };
        if let Some(existing) = tenant.members.get(&user) {
            return Ok(JoinOutcome {
                membership: existing.clone(),
                joined: false,
            });
        }
        let role = email_domain(email)
            .and_then(|at| {
                let domains = state.domains.by_org.get(&org)?;
                deciding_domain(domains.values(), &at)?.auto_join.role()
            })
            .ok_or_else(|| may_not_join(org, user))?;
        let membership = Membership {
            user_id: user,
            organization_id: org,
            role,
            created_at: now,
        };
        // As MemberStore::add_member writes a membership.
        state
            .tenants
            .get_mut(&org)
            .ok_or_else(|| may_not_join(org, user))?
            .members
            .insert(user, membership.clone());
        state.orgs_of_user.entry(user).or_default().insert(org);
        state.audit.member(None, Some(&membership), Some(now));
        Ok(JoinOutcome {
            membership,
            joined: true,
        })
    }
}
