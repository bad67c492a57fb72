//! Who is acting, in which organization, with what role.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::ids::{OrgId, UserId};
use crate::model::org::Organization;
use crate::model::role::{Action, MembershipChange, Role};

/// A user acting in one organization with a role, confirmed by the store.
///
/// There is no public constructor: a context comes only from
/// [`Tenancy::context`](crate::Tenancy::context) and its relatives, after the
/// store has confirmed the membership. A client-supplied org id alone never
/// becomes a context.
///
/// # How long it is good for
///
/// A context is a snapshot, meant to live for one request. What it allows
/// is decided by its role at [`checked_at`](Self::checked_at), and the calls
/// that take it do not read the membership again (that would cost a store
/// read per call). So a member removed, or demoted, while a request of
/// theirs is running can finish that request with the context it has —
/// including reserving and committing usage. Their next
/// [`Tenancy::context`](crate::Tenancy::context) fails (or, with a
/// membership cache, within its TTL). Do not keep contexts across requests.
#[derive(Clone)]
pub struct TenantContext {
    user: UserId,
    organization: Arc<Organization>,
    role: Role,
    checked_at: DateTime<Utc>,
}

impl TenantContext {
    pub(crate) fn new(
        user: UserId,
        organization: Arc<Organization>,
        role: Role,
        checked_at: DateTime<Utc>,
    ) -> Self {
        TenantContext {
            user,
            organization,
            role,
            checked_at,
        }
    }

    /// The acting user.
    pub fn user(&self) -> UserId {
        self.user
    }

    /// The active organization's id.
    pub fn org(&self) -> OrgId {
        self.organization.id
    }

    /// The active organization as it was when the membership was checked.
    pub fn organization(&self) -> &Organization {
        &self.organization
    }

    /// The user's role in the active organization.
    pub fn role(&self) -> Role {
        self.role
    }

    /// When the store confirmed the membership: the time of the context's
    /// making, or with a membership cache, of the lookup it came from (up to
    /// the cache's TTL in the past).
    pub fn checked_at(&self) -> DateTime<Utc> {
        self.checked_at
    }

    /// Whether the user's role allows `action`.
    ///
    /// ```
    /// # use tenancy::{Action, MemoryStore, NewOrganization, Tenancy, UserId};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenancy::Result<()> {
    /// let tenancy = Tenancy::builder().store(MemoryStore::new()).build()?;
    /// let alice = UserId::new_v7();
    /// let org = tenancy.create_organization(alice, NewOrganization::new("Acme", "acme")?).await?;
    /// let ctx = tenancy.context(alice, org.id).await?;
    /// assert!(ctx.can(Action::DeleteOrganization));
    /// # Ok(()) }
    /// ```
    pub fn can(&self, action: Action) -> bool {
        self.role.can(action)
    }

    /// Like [`can`](Self::can), but a `PermissionDenied` error naming the
    /// action and role when the answer is no.
    pub fn require(&self, action: Action) -> Result<()> {
        if self.can(action) {
            Ok(())
        } else {
            Err(Error::permission_denied(format!(
                "{action:?} needs role {} or higher; user {} is {} in organization {}",
                action.minimum_role(),
                self.user,
                self.role,
                self.organization.slug
            )))
        }
    }

    /// Whether the user may make `change` to `target`'s membership, by the
    /// rules in [`model::role`](crate::model::role) (the last-owner rule
    /// aside: the store checks it when the change is made). For showing
    /// only the controls a user may use; the facade checks again.
    pub fn may_change_member(&self, target: UserId, change: MembershipChange) -> bool {
        change.allowed(self.role, target == self.user)
    }

    /// [`may_change_member`](Self::may_change_member) as a `Result`, the
    /// `PermissionDenied` naming the rule, the user and the organization.
    pub(crate) fn require_member_change(
        &self,
        target: UserId,
        change: MembershipChange,
    ) -> Result<()> {
        change.check(self.role, target == self.user).map_err(|e| {
            Error::permission_denied(format!(
                "{} (user {} in {})",
                e.message(),
                self.user,
                self.organization.slug
            ))
        })
    }
}

impl fmt::Debug for TenantContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantContext")
            .field("user", &self.user)
            .field("org", &self.organization.id)
            .field("slug", &self.organization.slug)
            .field("role", &self.role)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::ids::Slug;

    fn ctx(role: Role) -> TenantContext {
        let org = Organization {
            id: OrgId::new_v7(),
            name: "Acme".into(),
            slug: Slug::parse("acme").unwrap(),
            owner_user_id: Some(UserId::new_v7()),
            timezone: chrono_tz::UTC,
            created_at: DateTime::UNIX_EPOCH,
        };
        TenantContext::new(UserId::new_v7(), Arc::new(org), role, DateTime::UNIX_EPOCH)
    }

    #[test]
    fn require_names_action_and_role() {
        let err = ctx(Role::Viewer).require(Action::WriteData).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
        assert!(err.message().contains("WriteData"), "{err}");
        assert!(err.message().contains("viewer"), "{err}");
    }

    #[test]
    fn member_changes_follow_the_rules_for_self_and_others() {
        let admin = ctx(Role::Admin);
        let promote = MembershipChange {
            before: Some(Role::Admin),
            after: Some(Role::Owner),
        };
        assert!(!admin.may_change_member(admin.user(), promote));
        let demote_self = MembershipChange {
            before: Some(Role::Admin),
            after: Some(Role::Member),
        };
        assert!(admin.may_change_member(admin.user(), demote_self));
        assert!(!admin.may_change_member(UserId::new_v7(), demote_self));
        let err = admin
            .require_member_change(UserId::new_v7(), demote_self)
            .unwrap_err();
        assert!(err.message().contains("acme"), "{err}");
    }
}
