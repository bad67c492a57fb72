//! Roles, what each may do, and the rules for changing memberships.
//!
//! # Roles and permissions
//!
//! Roles are ordered `owner > admin > member > viewer`. What each may do is
//! the [`Action`] matrix below; [`Role::can`] and
//! [`TenantContext::can`](crate::TenantContext::can) answer it.
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
//! | [`ViewMemberUsage`](Action::ViewMemberUsage) | ✓ |  ✓   |        |        |
//! | [`RenameOrganization`](Action::RenameOrganization) | ✓ | ✓ |      |        |
//! | [`ManageMembers`](Action::ManageMembers) ² |  ✓   |   ✓   |        |        |
//! | [`ViewAuditLog`](Action::ViewAuditLog)   |   ✓   |   ✓   |        |        |
//! | [`InviteMembers`](Action::InviteMembers) ³ |  ✓   |   ✓   |        |        |
//! | [`InviteAdmins`](Action::InviteAdmins)   |   ✓   |       |        |        |
//! | [`ManageAdmins`](Action::ManageAdmins)   |   ✓   |       |        |        |
//! | [`ManageOwners`](Action::ManageOwners)   |   ✓   |       |        |        |
//! | [`DeleteOrganization`](Action::DeleteOrganization) | ✓ |  |        |        |
//!
//! ¹ The last owner cannot leave; an organization always keeps an owner.
//! ² Adding, removing and re-roling members and viewers.
//! ³ Inviting members and viewers, and listing, revoking and resending the
//!   organization's invitations. Inviting an admin or an owner needs
//!   [`InviteAdmins`](Action::InviteAdmins); see [`Role::check_invite`].
//!
//! # Membership changes
//!
//! On top of the matrix, membership changes follow these rules in every
//! backend, and in SQL for user JWTs writing `user_organizations` directly
//! ([`MembershipChange::check`] is the Rust side; one table of cases runs
//! against both):
//!
//! - an organization always keeps at least one owner (the store enforces
//!   this one atomically, since it needs the whole membership list);
//! - only owners grant or revoke `owner` and `admin`;
//! - admins manage members and viewers;
//! - nobody adds themselves or raises their own role (lowering it is
//!   allowed);
//! - anyone may leave, unless they are the last owner.
//!
//! # Invitations
//!
//! Inviting follows the same rules as adding a member, in every backend and
//! in SQL (`tenancy.may_invite`; [`Role::check_invite`] is the Rust side,
//! and one table of cases runs against both):
//!
//! - only admins and owners invite;
//! - nobody invites with a role above what they could grant: admins invite
//!   members and viewers;
//! - only owners invite owners or admins.
//!
//! Resending or revoking an invitation needs the right to create it.
//!
//! Enabling features and setting limits are not org actions at all: they
//! belong to the [`PlatformOperator`], so an org owner cannot grant their own
//! organization a feature or raise its limits.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, quoted};

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
                format_args!(
                    "{} is not one of owner, admin, member, viewer",
                    quoted(input)
                ),
            )),
        }
    }

    /// Whether this role may perform `action` (the matrix in the module docs).
    pub fn can(self, action: Action) -> bool {
        self >= action.minimum_role()
    }

    /// Whether a member with this role may invite someone as `invited` (or
    /// resend or revoke such an invitation): `PermissionDenied` saying
    /// which rule otherwise. See [Invitations](self#invitations).
    ///
    /// ```
    /// use tenancy::Role;
    /// assert!(Role::Admin.check_invite(Role::Member).is_ok());
    /// assert!(Role::Admin.check_invite(Role::Admin).is_err());
    /// assert!(Role::Owner.check_invite(Role::Owner).is_ok());
    /// assert!(Role::Member.check_invite(Role::Viewer).is_err());
    /// ```
    pub fn check_invite(self, invited: Role) -> Result<()> {
        let (needed, why) = match invited {
            Role::Owner | Role::Admin => {
                (Action::InviteAdmins, "only owners invite owners or admins")
            }
            Role::Member | Role::Viewer => (Action::InviteMembers, "only owners and admins invite"),
        };
        if self.can(needed) {
            Ok(())
        } else {
            Err(Error::permission_denied(format!(
                "{why} (the inviter is {self}, the invitation for {invited})"
            )))
        }
    }

    /// The roles this role may invite, highest first (empty for members
    /// and viewers): what an invite form offers.
    pub fn invitable_roles(self) -> Vec<Role> {
        Role::ALL
            .into_iter()
            .filter(|r| self.check_invite(*r).is_ok())
            .collect()
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
    /// See the organization's usage and limits, and one's own.
    ViewUsage,
    /// Leave the organization.
    Leave,
    /// Create, change and delete org-scoped data.
    WriteData,
    /// Run metered operations that record usage and reserve against limits.
    ConsumeUsage,
    /// See other members' usage (the top users of a metric).
    ViewMemberUsage,
    /// Rename the organization.
    RenameOrganization,
    /// Add, remove and re-role members and viewers.
    ManageMembers,
    /// Read the organization's audit log.
    ViewAuditLog,
    /// Invite members and viewers; list, revoke and resend the
    /// organization's invitations.
    InviteMembers,
    /// Invite admins and owners.
    InviteAdmins,
    /// Grant or revoke `admin`, and remove admins.
    ManageAdmins,
    /// Grant or revoke `owner`, and remove owners.
    ManageOwners,
    /// Delete the organization and everything in it.
    DeleteOrganization,
}

impl Action {
    /// Every action, in the order of the matrix.
    pub const ALL: [Action; 16] = [
        Action::ViewOrganization,
        Action::ReadData,
        Action::ViewMembers,
        Action::ViewUsage,
        Action::Leave,
        Action::WriteData,
        Action::ConsumeUsage,
        Action::ViewMemberUsage,
        Action::RenameOrganization,
        Action::ManageMembers,
        Action::ViewAuditLog,
        Action::InviteMembers,
        Action::InviteAdmins,
        Action::ManageAdmins,
        Action::ManageOwners,
        Action::DeleteOrganization,
    ];

    /// The lowest role allowed to perform this action.
    pub fn minimum_role(self) -> Role {
        match self {
            Action::ViewOrganization
            | Action::ReadData
            | Action::ViewMembers
            | Action::ViewUsage
            | Action::Leave => Role::Viewer,
            Action::WriteData | Action::ConsumeUsage => Role::Member,
            Action::ViewMemberUsage
            | Action::RenameOrganization
            | Action::ManageMembers
            | Action::ViewAuditLog
            | Action::InviteMembers => Role::Admin,
            Action::InviteAdmins
            | Action::ManageAdmins
            | Action::ManageOwners
            | Action::DeleteOrganization => Role::Owner,
        }
    }
}

/// The SaaS operator's own identity, for admin tools and workers.
///
/// It is not an org role: it manages features and limits for any
/// organization, which no org role — not even `owner` — may do. Create it
/// only in trusted code (an admin CLI, a worker's startup, a console policy
/// that checked the signed-in user), never from request data. Its name
/// appears in the logs of every operator action.
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

/// A change to one membership: the member's role before and after (`None`:
/// not a member; `before: None` adds them, `after: None` removes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MembershipChange {
    /// The role before, `None` to add a member.
    pub before: Option<Role>,
    /// The role after, `None` to remove them.
    pub after: Option<Role>,
}

impl MembershipChange {
    /// Whether an actor with role `actor` may make this change, to
    /// themselves (`on_self`) or to someone else. A refusal is
    /// `PermissionDenied` saying which rule. The last-owner rule is not
    /// checked here: it needs the whole membership list, and the store
    /// enforces it atomically.
    ///
    /// ```
    /// use tenancy::Role;
    /// use tenancy::model::MembershipChange;
    /// let promote = MembershipChange { before: Some(Role::Member), after: Some(Role::Admin) };
    /// assert!(promote.check(Role::Owner, false).is_ok());
    /// assert!(promote.check(Role::Admin, false).is_err());
    /// assert!(promote.check(Role::Member, true).is_err()); // nobody raises their own role
    /// ```
    pub fn check(self, actor: Role, on_self: bool) -> Result<()> {
        let deny = |why: &str| {
            Err(Error::permission_denied(format!(
                "{why} (the actor is {actor})"
            )))
        };
        if on_self {
            return match (self.before, self.after) {
                (None, _) => deny("nobody may add themselves to an organization"),
                (Some(before), Some(after)) if after > before => {
                    deny("nobody may raise their own role")
                }
                // Lowering one's own role or leaving is always allowed; the
                // store keeps the last owner in place.
                (Some(_), _) => Ok(()),
            };
        }
        // The most privileged role involved decides who may make the change.
        let highest = self.before.max(self.after).unwrap_or(Role::Viewer);
        let (needed, why) = match highest {
            Role::Owner => (Action::ManageOwners, "only owners grant or revoke owner"),
            Role::Admin => (Action::ManageAdmins, "only owners grant or revoke admin"),
            Role::Member | Role::Viewer => (
                Action::ManageMembers,
                "only owners and admins manage members",
            ),
        };
        if actor.can(needed) { Ok(()) } else { deny(why) }
    }

    /// Whether [`check`](Self::check) allows it.
    pub fn allowed(self, actor: Role, on_self: bool) -> bool {
        self.check(actor, on_self).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn change(before: Option<Role>, after: Option<Role>) -> MembershipChange {
        MembershipChange { before, after }
    }

    #[test]
    fn matrix_is_monotonic_in_role() {
        for action in Action::ALL {
            for pair in Role::ALL.windows(2) {
                // A higher role can do at least what the one below it can.
                assert!(pair[0].can(action) || !pair[1].can(action), "{action:?}");
            }
        }
        assert!(!Role::Viewer.can(Action::WriteData));
        assert!(Role::Member.can(Action::WriteData));
        assert!(!Role::Member.can(Action::ViewMemberUsage));
        assert!(!Role::Admin.can(Action::DeleteOrganization));
    }

    #[test]
    fn role_rules() {
        use Role::*;
        let ok = |actor, on_self, before, after| change(before, after).allowed(actor, on_self);
        // admins manage members and viewers
        assert!(ok(Admin, false, None, Some(Member)));
        assert!(ok(Admin, false, Some(Viewer), Some(Member)));
        assert!(ok(Admin, false, Some(Member), None));
        // ...but not owners or admins
        assert!(!ok(Admin, false, Some(Member), Some(Owner)));
        assert!(!ok(Admin, false, None, Some(Admin)));
        assert!(!ok(Admin, false, Some(Owner), None));
        // owners do everything to others
        assert!(ok(Owner, false, Some(Member), Some(Owner)));
        assert!(ok(Owner, false, Some(Owner), Some(Viewer)));
        // members manage nobody
        assert!(!ok(Member, false, None, Some(Viewer)));
        // nobody raises their own role; lowering and leaving are fine
        assert!(!ok(Member, true, Some(Member), Some(Admin)));
        assert!(ok(Member, true, Some(Member), Some(Viewer)));
        assert!(ok(Member, true, Some(Member), None));
        assert!(!ok(Owner, true, None, Some(Owner)));
        let err = change(Some(Admin), Some(Owner))
            .check(Admin, true)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    }

    /// Inviting as a role is allowed exactly when adding someone else with
    /// that role is.
    #[test]
    fn inviting_follows_the_adding_rules() {
        for actor in Role::ALL {
            for invited in Role::ALL {
                assert_eq!(
                    actor.check_invite(invited).is_ok(),
                    change(None, Some(invited)).allowed(actor, false),
                    "{actor} inviting {invited}"
                );
            }
        }
        assert_eq!(Role::Admin.invitable_roles(), [Role::Member, Role::Viewer]);
        assert!(Role::Member.invitable_roles().is_empty());
    }
}
