//! `InvitationStore` over SQL: `public.org_invitations` through the
//! `tenancy_*_invitation*` functions, which keep the token's hash only and
//! accept atomically (the invitation's row locked, the membership added).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Idempotent, Sql, SqlError, SqlTransport, explained};
use crate::error::{ErrorKind, Result};
use crate::ids::{OrgId, UserId};
use crate::model::invitation::{
    AcceptInvitation, Invitation, InvitationAcceptance, InvitationId, TokenHash, invitation_refused,
};
use crate::store::org_not_found;

/// Arguments of `tenancy_create_invitation`.
#[derive(Debug, Serialize)]
struct CreateArgs<'a> {
    invitation: &'a Invitation,
    token_hash: &'a TokenHash,
}

/// Arguments of `tenancy_pending_invitations`.
#[derive(Debug, Serialize)]
struct PendingArgs {
    org_id: OrgId,
    at: DateTime<Utc>,
}

/// Arguments of `tenancy_revoke_invitation`.
#[derive(Debug, Serialize)]
struct RevokeArgs {
    org_id: OrgId,
    invitation_id: InvitationId,
    at: DateTime<Utc>,
}

/// Arguments of `tenancy_rotate_invitation`.
#[derive(Debug, Serialize)]
struct RotateArgs<'a> {
    org_id: OrgId,
    invitation_id: InvitationId,
    token_hash: &'a TokenHash,
    expires_at: DateTime<Utc>,
    at: DateTime<Utc>,
}

/// Arguments of `tenancy_accept_invitation_hash`.
#[derive(Debug, Serialize)]
struct AcceptArgs<'a> {
    token_hash: &'a TokenHash,
    user_id: UserId,
    email: Option<&'a str>,
    at: DateTime<Utc>,
}

/// `{revoked}` of `tenancy_revoke_invitation`.
#[derive(Debug, Deserialize)]
struct Revoked {
    revoked: bool,
}

impl<T: SqlTransport + ?Sized> Sql<'_, T> {
    pub(crate) async fn create_invitation(
        &self,
        invitation: &Invitation,
        token_hash: &TokenHash,
    ) -> Result<Invitation> {
        let org = invitation.org;
        self.rpc(
            "tenancy_create_invitation",
            "creating an invitation",
            Idempotent::No,
            &CreateArgs {
                invitation,
                token_hash,
            },
        )
        .await
        .map_err(|e| {
            explained(e, |kind, _| match kind {
                ErrorKind::NotFound => Some(org_not_found(org).message().to_owned()),
                ErrorKind::AlreadyExists => Some(format!(
                    "invitation {} or its token exists already",
                    invitation.id
                )),
                _ => None,
            })
        })
    }

    pub(crate) async fn pending_invitations(
        &self,
        org: OrgId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Invitation>> {
        self.rpc(
            "tenancy_pending_invitations",
            "reading pending invitations",
            Idempotent::Yes,
            &PendingArgs {
                org_id: org,
                at: now,
            },
        )
        .await
    }

    pub(crate) async fn revoke_invitation(
        &self,
        org: OrgId,
        id: InvitationId,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let revoked: Revoked = self
            .rpc(
                "tenancy_revoke_invitation",
                "revoking an invitation",
                Idempotent::No,
                &RevokeArgs {
                    org_id: org,
                    invitation_id: id,
                    at: now,
                },
            )
            .await?;
        Ok(revoked.revoked)
    }

    pub(crate) async fn rotate_invitation(
        &self,
        org: OrgId,
        id: InvitationId,
        token_hash: &TokenHash,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<Invitation>> {
        let rows: Vec<Invitation> = self
            .rpc(
                "tenancy_rotate_invitation",
                "resending an invitation",
                Idempotent::No,
                &RotateArgs {
                    org_id: org,
                    invitation_id: id,
                    token_hash,
                    expires_at,
                    at: now,
                },
            )
            .await?;
        Ok(rows.into_iter().next())
    }

    pub(crate) async fn accept_invitation(
        &self,
        request: &AcceptInvitation,
    ) -> Result<InvitationAcceptance> {
        // Not retried after an ambiguous failure: a retry after an accept
        // that landed finds a member and reports `joined: false`.
        self.rpc(
            "tenancy_accept_invitation_hash",
            "accepting an invitation",
            Idempotent::No,
            &AcceptArgs {
                token_hash: &request.token_hash,
                user_id: request.user,
                email: request.email.as_deref(),
                at: request.now,
            },
        )
        .await
        .map_err(|e| {
            // The function's refusal (P0002): the one error, whatever the
            // database said.
            if SqlError::find(&e).is_some_and(|sql| sql.code() == "P0002") {
                invitation_refused()
            } else {
                e
            }
        })
    }
}
