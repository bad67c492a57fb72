//! Who is acting, in which organization, with what role.
//!
//! # Roles and permissions
//!
//! Roles are ordered `owner > admin > member > viewer`. What each may do is
//! the [`Action`] matrix below; [`TenantContext::can`] answers it.
//!
//! | action                                   | owner | admin | member | viewer |
//! |------------------------------------------|:-----:|:-----:|:------:|:------:|
//! | [`ViewOrganization`](Action::ViewOrganization) | ✓ | ✓ | ✓ | ✓ |
//! | [`ReadData`](Action::ReadData)           |   ✓   |   ✓   |   ✓    |   ✓    |
//! | [`ViewMembers`](Action::ViewMembers)     |   ✓   |   ✓   |   ✓    |   ✓    |
//! | [`ViewUsage`](Action::ViewUsage)         |   ✓   |   ✓   |   ✓    |   ✓    |
//! | [`Leave`](Action::Leave) ¹               |   ✓   |   ✓   |   ✓    |   ✓    |
//! | [`WriteData`](Action::WriteData)         |   ✓   |   ✓   |   ✓    |        |
//! | [`ConsumeUsage`](Action::ConsumeUsage)   |   ✓   |   ✓   |   ✓    |        |
//! | [`RenameOrganization`](Action::RenameOrganization) | ✓ | ✓ |      |        |
//! | [`ManageMembers`](Action::ManageMembers) ² |  ✓   |   ✓   |        |        |
//! | [`ManageAdmins`](Action::ManageAdmins)   |   ✓   |       |        |        |
//! | [`ManageOwners`](Action::ManageOwners)   |   ✓   |       |        |        |
//! | [`DeleteOrganization`](Action::DeleteOrganization) | ✓ |  |        |        |
//!
//! ¹ The last owner cannot leave; an organization always keeps an owner.
//! ² Adding, removing and re-roling members and viewers.
//!
//! On top of the matrix, membership changes follow these rules in every
//! backend:
//!
//! - an organization always keeps at least one owner;
//! - only owners grant or revoke `owner` (and `admin`);
//! - admins manage members and viewers;
//! - nobody raises their own role (lowering it is allowed);
//! - anyone may leave, unless they are the last owner.
//!
//! Enabling features and setting limits are not org actions at all: they
//! belong to the [`PlatformOperator`], so an org owner cannot grant their own
//! organization a feature or raise its limits.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::{OrgId, UserId};
use crate::org::Organization;

/// A member's role in one organization, ordered `Owner > Admin > Member >
/// Viewer`.
///
/// ```
/// use tenancy::Role;
/// assert!(Role::Owner > Role::Admin);
/// assert_eq!("viewer".parse::<Role>().unwrap(), Role::Viewer);
/// assert!("superuser".parse::<Role>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads only.
    Viewer,
    /// Reads and writes the organization's data.
    Member,
    /// Also manages members and viewers and renames the organization.
    Admin,
    /// Everything, including owners, admins and deleting the organization.
    Owner,
}

impl Role {
    /// All roles, highest first.
    pub const ALL: [Role; 4] = [Role::Owner, Role::Admin, Role::Member, Role::Viewer];

    /// The name stored in `user_organizations.role`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }

    /// Parses a stored role name; anything else is `InvalidInput` naming
    /// `role`.
    pub fn parse(input: &str) -> Result<Role> {
        match input {
            "owner" => Ok(Role::Owner),
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            "viewer" => Ok(Role::Viewer),
            _ => Err(Error::invalid_input(
                "role",
                format!("{input:?} is not one of owner, admin, member, viewer"),
            )),
        }
    }

    /// Whether this role may perform `action` (the matrix in the module docs).
    pub fn can(self, action: Action) -> bool {
        self >= action.minimum_role()
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Role> {
        Role::parse(s)
    }
}

/// Something a member may try to do in their organization. See the matrix
/// in the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// See the organization's name, slug and settings.
    ViewOrganization,
    /// Read org-scoped data (brands and other adopted tables).
    ReadData,
    /// See who the members are and their roles.
    ViewMembers,
    /// See usage and limits.
    ViewUsage,
    /// Leave the organization.
    Leave,
    /// Create, change and delete org-scoped data.
    WriteData,
    /// Run metered operations that record usage and reserve against limits.
    ConsumeUsage,
    /// Rename the organization.
    RenameOrganization,
    /// Add, remove and re-role members and viewers.
    ManageMembers,
    /// Grant or revoke `admin`, and remove admins.
    ManageAdmins,
    /// Grant or revoke `owner`, and remove owners.
    ManageOwners,
    /// Delete the organization and everything in it.
    DeleteOrganization,
}

impl Action {
    /// The lowest role allowed to perform this action.
    pub fn minimum_role(self) -> Role {
        match self {
            Action::ViewOrganization
            | Action::ReadData
            | Action::ViewMembers
            | Action::ViewUsage
            | Action::Leave => Role::Viewer,
            Action::WriteData | Action::ConsumeUsage => Role::Member,
            Action::RenameOrganization | Action::ManageMembers => Role::Admin,
            Action::ManageAdmins | Action::ManageOwners | Action::DeleteOrganization => Role::Owner,
        }
    }
}

/// A user acting in one organization with a role, confirmed by the store.
///
/// There is no public constructor: a context comes only from
/// [`Tenancy::context`](crate::Tenancy::context) and its relatives, after the
/// store has confirmed the membership. A client-supplied org id alone never
/// becomes a context.
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

/// The SaaS operator's own identity, for admin tools and workers.
///
/// It is not an org role: it manages features and limits for any
/// organization, which no org role — not even `owner` — may do. Create it
/// only in trusted code (an admin CLI, a worker's startup), never from
/// request data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformOperator {
    name: String,
}

impl PlatformOperator {
    /// An operator identity; `name` identifies the tool in logs
    /// (`"admin-cli"`, `"billing-worker"`).
    pub fn new(name: impl Into<String>) -> Self {
        PlatformOperator { name: name.into() }
    }

    /// The name given at construction.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A change to one membership: its role before and after (`None` = not a
/// member).
#[derive(Debug, Clone, Copy)]
pub(crate) struct MembershipChange {
    pub(crate) before: Option<Role>,
    pub(crate) after: Option<Role>,
}

/// Checks the role rules for `actor` changing `target`'s membership. The
/// last-owner rule needs the whole membership list and is enforced
/// atomically by the store.
pub(crate) fn authorize_membership_change(
    actor: &TenantContext,
    target: UserId,
    change: MembershipChange,
) -> Result<()> {
    let on_self = actor.user == target;
    let deny = |why: &str| {
        Err(Error::permission_denied(format!(
            "{why} (user {} is {} in {})",
            actor.user, actor.role, actor.organization.slug
        )))
    };
    if on_self {
        return match (change.before, change.after) {
            (Some(before), Some(after)) if after > before => {
                deny("nobody may raise their own role")
            }
            // Lowering one's own role or leaving is always allowed; the store
            // keeps the last owner in place.
            (Some(_), _) => Ok(()),
            (None, _) => deny("nobody may add themselves to an organization"),
        };
    }
    // The most privileged role involved decides who may make the change.
    let highest = change.before.max(change.after).unwrap_or(Role::Viewer);
    let needed = match highest {
        Role::Owner => Action::ManageOwners,
        Role::Admin => Action::ManageAdmins,
        Role::Member | Role::Viewer => Action::ManageMembers,
    };
    if actor.can(needed) {
        Ok(())
    } else {
        match highest {
            Role::Owner => deny("only owners grant or revoke owner"),
            Role::Admin => deny("only owners grant or revoke admin"),
            _ => deny("only owners and admins manage members"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
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

    fn change(before: Option<Role>, after: Option<Role>) -> MembershipChange {
        MembershipChange { before, after }
    }

    #[test]
    fn matrix_is_monotonic_in_role() {
        let actions = [
            Action::ViewOrganization,
            Action::ReadData,
            Action::ViewMembers,
            Action::ViewUsage,
            Action::Leave,
            Action::WriteData,
            Action::ConsumeUsage,
            Action::RenameOrganization,
            Action::ManageMembers,
            Action::ManageAdmins,
            Action::ManageOwners,
            Action::DeleteOrganization,
        ];
        for action in actions {
            for pair in Role::ALL.windows(2) {
                // A higher role can do at least what the one below it can.
                assert!(pair[0].can(action) || !pair[1].can(action), "{action:?}");
            }
        }
        assert!(!Role::Viewer.can(Action::WriteData));
        assert!(Role::Member.can(Action::WriteData));
        assert!(!Role::Admin.can(Action::DeleteOrganization));
    }

    #[test]
    fn role_rules() {
        let other = UserId::new_v7();
        let admin = ctx(Role::Admin);
        let owner = ctx(Role::Owner);
        let member = ctx(Role::Member);
        let ok = |c: &TenantContext, t, ch| authorize_membership_change(c, t, ch).is_ok();

        // admins manage members and viewers
        assert!(ok(&admin, other, change(None, Some(Role::Member))));
        assert!(ok(
            &admin,
            other,
            change(Some(Role::Viewer), Some(Role::Member))
        ));
        assert!(ok(&admin, other, change(Some(Role::Member), None)));
        // ...but not owners or admins
        assert!(!ok(
            &admin,
            other,
            change(Some(Role::Member), Some(Role::Owner))
        ));
        assert!(!ok(&admin, other, change(None, Some(Role::Admin))));
        assert!(!ok(&admin, other, change(Some(Role::Owner), None)));
        // owners do everything to others
        assert!(ok(
            &owner,
            other,
            change(Some(Role::Member), Some(Role::Owner))
        ));
        assert!(ok(
            &owner,
            other,
            change(Some(Role::Owner), Some(Role::Viewer))
        ));
        // members manage nobody
        assert!(!ok(&member, other, change(None, Some(Role::Viewer))));
        // nobody raises their own role; lowering and leaving are fine
        let me = member.user();
        assert!(!ok(
            &member,
            me,
            change(Some(Role::Member), Some(Role::Admin))
        ));
        assert!(ok(
            &member,
            me,
            change(Some(Role::Member), Some(Role::Viewer))
        ));
        assert!(ok(&member, me, change(Some(Role::Member), None)));
        let err = authorize_membership_change(
            &admin,
            admin.user(),
            change(Some(Role::Admin), Some(Role::Owner)),
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    }

    #[test]
    fn require_names_action_and_role() {
        let err = ctx(Role::Viewer).require(Action::WriteData).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
        assert!(err.message().contains("WriteData"), "{err}");
        assert!(err.message().contains("viewer"), "{err}");
    }
}
