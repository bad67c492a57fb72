//! Verified domains and joining an organization through one: the
//! organization's join setting and joining ([`Tenancy`]), and the
//! operator's record of which domains an organization owns
//! ([`Operator`]). The matching rules are [`model::domain`](crate::model::domain)'s.

use super::{Operator, Tenancy};
use crate::error::{Error, Result};
use crate::ids::{OrgId, UserId};
use crate::model::audit::AuditActor;
use crate::model::domain::{
    AutoJoin, DomainChange, DomainName, JoinOutcome, JoinableOrg, VerifiedDomain,
};
use crate::model::{Action, TenantContext};
use crate::store::DomainStore;

impl Tenancy {
    /// The active organization's verified domains with its join setting for
    /// each, by name. Owners and admins only
    /// ([`Action::ManageMembers`]); anyone else is `PermissionDenied`.
    pub async fn domains(&self, ctx: &TenantContext) -> Result<Vec<VerifiedDomain>> {
        ctx.require(Action::ManageMembers)?;
        self.store().domains(ctx.org()).await
    }

    /// Chooses whether users with a confirmed email at `domain` may join
    /// the active organization on their own, and as what (never above
    /// `member`: [`AutoJoin`]). Owners and admins only
    /// ([`Action::ManageMembers`]): anyone else is `PermissionDenied`. An
    /// invalid name is `InvalidInput` naming `domain`; a domain the
    /// operator has not recorded for this organization, `NotFound`.
    ///
    /// ```
    /// use tenancy::memory::MemoryUserDirectory;
    /// use tenancy::model::domain::AutoJoin;
    /// use tenancy::{MemoryStore, NewOrganization, PlatformOperator, Role, Tenancy, UserId};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenancy::Result<()> {
    /// let (ada, bob) = (UserId::new_v7(), UserId::new_v7());
    /// let directory = std::sync::Arc::new(MemoryUserDirectory::new());
    /// directory.insert(bob, Some("bob@acme.com"), Some("Bob"));
    /// directory.set_email_confirmed(bob, true);
    /// let tenancy = Tenancy::builder()
    ///     .store(MemoryStore::new())
    ///     .user_directory(directory.clone())
    ///     .build()?;
    /// let acme = tenancy.create_organization(ada, NewOrganization::new("Acme", "acme")?).await?;
    ///
    /// // The operator records the domain; the organization opens it.
    /// let operator = PlatformOperator::new("admin-cli");
    /// tenancy.operator(&operator).add_domain(acme.id, "acme.com", false).await?;
    /// let ctx = tenancy.context(ada, acme.id).await?;
    /// tenancy.set_domain_auto_join(&ctx, "acme.com", AutoJoin::Member).await?;
    ///
    /// // Bob sees Acme in his selector and joins it.
    /// let joinable = tenancy.orgs_joinable_by(bob).await?;
    /// assert_eq!(joinable[0].organization.id, acme.id);
    /// let joined = tenancy.join_organization(bob, acme.id).await?;
    /// assert!(joined.joined);
    /// assert_eq!(tenancy.context(bob, acme.id).await?.role(), Role::Member);
    /// # Ok(()) }
    /// ```
    pub async fn set_domain_auto_join(
        &self,
        ctx: &TenantContext,
        domain: &str,
        auto_join: AutoJoin,
    ) -> Result<VerifiedDomain> {
        ctx.require(Action::ManageMembers)?;
        let domain = DomainName::parse(domain)?;
        let set = self
            .store()
            .set_auto_join(ctx.org(), &domain, auto_join, self.now());
        self.audited(AuditActor::user(ctx.user()), set).await
    }

    /// The organizations `user` may join on their own, for the org
    /// selector: those they are not a member of whose deciding domain for
    /// their confirmed email (see [`model::domain`](crate::model::domain))
    /// lets users join, with the role they would get; by organization
    /// name. Empty for a user whose email the
    /// [user directory](crate::TenancyBuilder::user_directory) does not know
    /// or who has not confirmed it, and without a directory.
    pub async fn orgs_joinable_by(&self, user: UserId) -> Result<Vec<JoinableOrg>> {
        match self.confirmed_email(user).await? {
            Some(email) => self.store().joinable_organizations(user, &email).await,
            None => Ok(Vec::new()),
        }
    }

    /// Joins `user` to `org` through the domain of their confirmed email,
    /// in one atomic store step, by the rules of
    /// [`orgs_joinable_by`](Self::orgs_joinable_by). The confirmed email is
    /// checked first; then a user who is a member already changes nothing
    /// and gets their membership back (`joined: false`), whatever their
    /// role and whether or not a domain matches. Refused with
    /// `PermissionDenied`: a user without a confirmed
    /// email (unknown to the directory, unconfirmed, no directory), and one
    /// whose email no enabled domain of `org` with joining turned on
    /// matches, which is also the answer for an organization that does not
    /// exist.
    ///
    /// `user` is who joins: pass the signed-in user (as the console does
    /// with the verified session), never an id taken from request data.
    pub async fn join_organization(&self, user: UserId, org: OrgId) -> Result<JoinOutcome> {
        let Some(email) = self.confirmed_email(user).await? else {
            return Err(Error::permission_denied(format!(
                "user {user} has no confirmed email, so may not join organization {org} through its domain"
            )));
        };
        let join = self.store().join_by_domain(org, user, &email, self.now());
        let outcome = self.audited(AuditActor::user(user), join).await?;
        if outcome.joined {
            tracing::info!(%org, %user, role = %outcome.membership.role,
                "joined through a verified domain");
        }
        Ok(outcome)
    }
}

impl Operator<'_> {
    /// `org`'s verified domains, by name.
    pub async fn domains(&self, org: OrgId) -> Result<Vec<VerifiedDomain>> {
        self.tenancy.store().domains(org).await
    }

    /// Records that `org` owns `domain` (verified by the host, by DNS or
    /// email), enabled; with `include_subdomains`, emails at its subdomains
    /// match too. Recording one again enables it and sets
    /// `include_subdomains`, keeping the organization's join setting (a new
    /// domain starts with joining [`Off`](AutoJoin::Off)). An invalid name
    /// is `InvalidInput` naming `domain`; a missing organization,
    /// `NotFound`.
    pub async fn add_domain(
        &self,
        org: OrgId,
        domain: &str,
        include_subdomains: bool,
    ) -> Result<VerifiedDomain> {
        let change = DomainChange {
            include_subdomains: Some(include_subdomains),
            enabled: Some(true),
        };
        self.change_domain(org, domain, change).await
    }

    /// Enables or disables `domain` of `org`: a disabled domain matches no
    /// email, whatever the organization chose. `NotFound` if `org` has no
    /// such domain. (Checked before the write: a domain removed by another
    /// operator in between is recorded again, with this state.)
    pub async fn set_domain_enabled(
        &self,
        org: OrgId,
        domain: &str,
        enabled: bool,
    ) -> Result<VerifiedDomain> {
        self.require_domain(org, domain).await?;
        self.change_domain(org, domain, DomainChange::enabled(enabled))
            .await
    }

    /// Sets whether emails at subdomains of `domain` match too. `NotFound`
    /// if `org` has no such domain.
    pub async fn set_domain_subdomains(
        &self,
        org: OrgId,
        domain: &str,
        include_subdomains: bool,
    ) -> Result<VerifiedDomain> {
        self.require_domain(org, domain).await?;
        self.change_domain(
            org,
            domain,
            DomainChange::include_subdomains(include_subdomains),
        )
        .await
    }

    /// Removes `domain` from `org`; whether it was there. Members who
    /// joined through it stay members.
    pub async fn remove_domain(&self, org: OrgId, domain: &str) -> Result<bool> {
        let domain = DomainName::parse(domain)?;
        let removed = self
            .audited(self.tenancy.store().remove_domain(org, &domain))
            .await;
        tracing::info!(operator = self.operator.name(), %org, %domain,
            removed = ?removed.as_ref().ok(), "verified domain removed");
        removed
    }

    async fn require_domain(&self, org: OrgId, domain: &str) -> Result<()> {
        let name = DomainName::parse(domain)?;
        let known = self.domains(org).await?;
        if known.iter().any(|d| d.domain == name) {
            Ok(())
        } else {
            Err(Error::not_found(format!(
                "organization {org} has no verified domain {name}"
            )))
        }
    }

    async fn change_domain(
        &self,
        org: OrgId,
        domain: &str,
        change: DomainChange,
    ) -> Result<VerifiedDomain> {
        let domain = DomainName::parse(domain)?;
        let now = self.tenancy.now();
        let put = self.tenancy.store().put_domain(org, &domain, &change, now);
        let stored = self.audited(put).await?;
        tracing::info!(operator = self.operator.name(), %org, %domain,
            enabled = stored.enabled, include_subdomains = stored.include_subdomains,
            "verified domain recorded");
        Ok(stored)
    }
}
