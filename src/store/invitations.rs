//! [`InvitationStore`]: invitations to join an organization, by email or by shareable link.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::ids::OrgId;
use crate::model::invitation::{
    AcceptInvitation, Invitation, InvitationAcceptance, InvitationId, TokenHash,
};

use super::Backend;

// Signatures in the list name their types by full path: the wrappers that
// expand it (faults, caching, instrumentation, the SQL store) import none.
method_list!($ invitation_store_methods {
    fn create_invitation(invitation: &crate::model::invitation::Invitation, token_hash: &crate::model::invitation::TokenHash) -> crate::error::Result<crate::model::invitation::Invitation>;
    fn pending_invitations(org: crate::ids::OrgId, now: chrono::DateTime<chrono::Utc>) -> crate::error::Result<Vec<crate::model::invitation::Invitation>>;
    fn revoke_invitation(org: crate::ids::OrgId, id: crate::model::invitation::InvitationId, now: chrono::DateTime<chrono::Utc>) -> crate::error::Result<bool>;
    fn rotate_invitation(org: crate::ids::OrgId, id: crate::model::invitation::InvitationId, token_hash: &crate::model::invitation::TokenHash, expires_at: chrono::DateTime<chrono::Utc>, now: chrono::DateTime<chrono::Utc>) -> crate::error::Result<Option<crate::model::invitation::Invitation>>;
    fn accept_invitation(request: &crate::model::invitation::AcceptInvitation) -> crate::error::Result<crate::model::invitation::InvitationAcceptance>;
});

/// Invitations to join an organization, by email or by shareable link.
///
/// Part of the [`Store`](super::Store) bundle. A store keeps an
/// invitation's token only as its [`TokenHash`], finds it by that hash
/// alone, and never hands the hash back. Policy — who may invite whom,
/// tokens, expiry defaults — is the facade's; each method here is atomic
/// on its own and touches only the organization it names (or, for
/// [`accept_invitation`](Self::accept_invitation), the one the invitation
/// names).
///
/// "Pending" at `now`: not revoked, used fewer than `max_uses` times, and
/// `now < expires_at`.
#[async_trait]
pub trait InvitationStore: Backend {
    /// Stores `invitation` with the hash of its token and returns it.
    /// `NotFound` if its organization does not exist; `AlreadyExists` if
    /// the id or the hash is taken; `InvalidInput` for a field out of range
    /// (see [`Invitation::new`]).
    async fn create_invitation(
        &self,
        invitation: &Invitation,
        token_hash: &TokenHash,
    ) -> Result<Invitation>;

    /// The organization's invitations pending at `now`, oldest first (then
    /// by id). Empty for an organization that does not exist.
    async fn pending_invitations(&self, org: OrgId, now: DateTime<Utc>) -> Result<Vec<Invitation>>;

    /// Revokes the invitation `id` of `org` if it is pending at `now`
    /// (`revoked_at = now`); whether it was. `false` for an unknown id, one
    /// of another organization, or one no longer pending.
    async fn revoke_invitation(
        &self,
        org: OrgId,
        id: InvitationId,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// Replaces the token (by its hash) and the expiry of invitation `id`
    /// of `org`, if it is pending at `now`, atomically: from then on only
    /// the new token accepts it. The invitation after, or `None` if it is
    /// not pending (or not of `org`). `AlreadyExists` if the hash is taken.
    async fn rotate_invitation(
        &self,
        org: OrgId,
        id: InvitationId,
        token_hash: &TokenHash,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<Invitation>>;

    /// Accepts the invitation whose token hashes to `request.token_hash`
    /// for `request.user`, atomically:
    ///
    /// - refused with [`invitation_refused`](crate::model::invitation::invitation_refused)
    ///   (one error for every reason) unless it is pending at
    ///   `request.now` and, for an email invitation, `request.email`
    ///   equals its address case-insensitively;
    /// - a user already a member keeps their membership and role, and the
    ///   invitation is not used (`joined: false`);
    /// - otherwise the user joins with the invitation's role and one use is
    ///   counted (`joined: true`). Concurrent accepts never count more
    ///   uses than `max_uses`: of N racing for the last use, one joins.
    async fn accept_invitation(&self, request: &AcceptInvitation) -> Result<InvitationAcceptance>;
}

forward_capability!(InvitationStore, invitation_store_methods);

pub(crate) use invitation_store_methods;
