//! Memberships over SQL: compare-and-set and the last-owner rule are the
//! functions' and the membership trigger's.

use super::args::{AddMemberArgs, MemberCasArgs, MembershipsArgs, OrgArg, OrgMembershipRow};
use super::{Idempotent, Sql, SqlTransport, explained};
use crate::error::{ErrorKind, Result};
use crate::ids::{OrgId, UserId};
use crate::model::{Membership, OrgMembership, Role};
use crate::store::{not_a_member, org_not_found};

/// `{removed}` of `tenancy_remove_member`.
#[derive(Debug, serde::Deserialize)]
struct Removed {}

impl<T: SqlTransport + ?Sized> Sql<'_, T> {
    async fn memberships(&self, args: MembershipsArgs, what: &str) -> Result<Vec<OrgMembership>> {
        let rows: Vec<OrgMembershipRow> = self
            .rpc("tenancy_memberships", what, Idempotent::Yes, &args)
            .await?;
        Ok(rows.into_iter().map(OrgMembership::from).collect())
    }

    pub(crate) async fn membership(
        &self,
        org: OrgId,
        user: UserId,
    ) -> Result<Option<OrgMembership>> {
        let args = MembershipsArgs {
            user_id: user,
            org_id: Some(org),
        };
        let rows = self.memberships(args, "reading a membership").await?;
        Ok(rows.into_iter().next())
    }

    pub(crate) async fn memberships_of_user(&self, user: UserId) -> Result<Vec<OrgMembership>> {
        let args = MembershipsArgs {
            user_id: user,
            org_id: None,
        };
        self.memberships(args, "reading a user's memberships").await
    }

    pub(crate) async fn members(&self, org: OrgId) -> Result<Vec<Membership>> {
        self.rpc(
            "tenancy_members",
            "reading members",
            Idempotent::Yes,
            &OrgArg { org_id: org },
        )
        .await
    }

    pub(crate) async fn add_member(&self, membership: &Membership) -> Result<()> {
        let args = AddMemberArgs {
            org_id: membership.organization_id,
            user_id: membership.user_id,
            member_role: membership.role,
            created_at: membership.created_at,
        };
        let (org, user) = (membership.organization_id, membership.user_id);
        let _: Membership = self
            .rpc(
                "tenancy_add_member",
                "adding a member",
                Idempotent::No,
                &args,
            )
            .await
            .map_err(|e| {
                explained(e, |kind, sql| match kind {
                    ErrorKind::AlreadyExists => {
                        Some(format!("user {user} is already a member of {org}"))
                    }
                    // A foreign key: the user; raised by the function: the
                    // organization.
                    ErrorKind::NotFound if sql.is_some_and(|s| s.code() == "23503") => {
                        Some(format!("user {user} does not exist"))
                    }
                    ErrorKind::NotFound => Some(org_not_found(org).message().to_owned()),
                    ErrorKind::PermissionDenied => Some(format!(
                        "not allowed to add user {user} to organization {org} as {}",
                        membership.role
                    )),
                    _ => None,
                })
            })?;
        Ok(())
    }

    pub(crate) async fn set_member_role(
        &self,
        org: OrgId,
        user: UserId,
        expected: Role,
        role: Role,
    ) -> Result<Membership> {
        let args = MemberCasArgs {
            org_id: org,
            user_id: user,
            expected_role: expected,
            new_role: Some(role),
        };
        // Not retried after an ambiguous failure: a retry after a change
        // that landed would find the new role and report a conflict.
        self.rpc(
            "tenancy_set_member_role",
            "changing a member's role",
            Idempotent::No,
            &args,
        )
        .await
        .map_err(|e| {
            explained(e, |kind, _| {
                membership_refusal(
                    kind,
                    org,
                    user,
                    format!("change user {user}'s role to {role}"),
                )
            })
        })
    }

    pub(crate) async fn remove_member(
        &self,
        org: OrgId,
        user: UserId,
        expected: Role,
    ) -> Result<()> {
        let args = MemberCasArgs {
            org_id: org,
            user_id: user,
            expected_role: expected,
            new_role: None,
        };
        let _: Removed = self
            .rpc(
                "tenancy_remove_member",
                "removing a member",
                Idempotent::No,
                &args,
            )
            .await
            .map_err(|e| {
                explained(e, |kind, _| {
                    membership_refusal(kind, org, user, format!("remove user {user}"))
                })
            })?;
        Ok(())
    }
}

/// What a refused role change or removal means: the compare-and-set's
/// answers (no membership, another role meanwhile) and the role rules.
fn membership_refusal(kind: ErrorKind, org: OrgId, user: UserId, action: String) -> Option<String> {
    match kind {
        ErrorKind::NotFound => Some(not_a_member(org, user).message().to_owned()),
        ErrorKind::Conflict => Some(format!(
            "user {user}'s role in organization {org} changed meanwhile; reload and retry"
        )),
        ErrorKind::PermissionDenied => Some(format!(
            "not allowed to {action} in organization {org}: the role rules (an organization keeps an owner; only owners manage owners and admins) or your role forbid it"
        )),
        _ => None,
    }
}
