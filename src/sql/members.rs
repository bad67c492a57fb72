//! Memberships over SQL: compare-and-set and the last-owner rule are the
//! functions' and the membership trigger's.

use super::args::{AddMemberArgs, MemberCasArgs, MembershipsArgs, OrgArg, OrgMembershipRow};
use super::{Idempotent, Sql, SqlTransport};
use crate::error::Result;
use crate::ids::{OrgId, UserId};
use crate::model::{Membership, OrgMembership, Role};

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
        let _: Membership = self
            .rpc(
                "tenancy_add_member",
                "adding a member",
                Idempotent::No,
                &args,
            )
            .await?;
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
            .await?;
        Ok(())
    }
}
