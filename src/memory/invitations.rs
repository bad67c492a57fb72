//! `InvitationStore` for [`MemoryStore`].

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::error::{Error, ErrorKind, Result};
use crate::ids::OrgId;
use crate::model::Membership;
use crate::model::invitation::{
    AcceptInvitation, Invitation, InvitationAcceptance, InvitationId, TokenHash, invitation_refused,
};
use crate::store::{InvitationStore, org_not_found};

use super::MemoryStore;
use super::audit::time;

/// What the embedded store keeps for this capability, under its one lock.
#[derive(Debug, Default)]
pub(super) struct InvitationState {
    /// Every invitation, with the hash of its current token.
    by_id: HashMap<InvitationId, (Invitation, TokenHash)>,
    /// Current token hashes to their invitation.
    by_hash: HashMap<TokenHash, InvitationId>,
}

impl InvitationState {
    /// The invitation whose current token hashes to `hash`.
    fn find(&self, hash: &TokenHash) -> Option<InvitationId> {
        self.by_hash.get(hash).copied()
    }
}

/// Deletes `org`'s invitations with the organization, each an audit event,
/// as the SQL foreign key cascades (the caller holds the lock).
pub(super) fn delete_organization(state: &mut super::tenant::State, org: OrgId) {
    let gone: Vec<InvitationId> = state
        .invitations
        .by_id
        .iter()
        .filter(|(_, (inv, _))| inv.org == org)
        .map(|(id, _)| *id)
        .collect();
    for id in gone {
        if let Some((inv, hash)) = state.invitations.by_id.remove(&id) {
            state.invitations.by_hash.remove(&hash);
            audit_invitation(state, Some(&inv), None, inv.created_at);
        }
    }
}

/// An `org_invitations` row for the audit log, as the SQL trigger writes it:
/// the token hash left out.
fn invitation_row(inv: &Invitation) -> Value {
    json!({
        "id": inv.id,
        "organization_id": inv.org,
        "email": inv.email,
        "role": inv.role,
        "max_uses": inv.max_uses,
        "uses": inv.uses,
        "expires_at": time(inv.expires_at),
        "created_at": time(inv.created_at),
        "created_by": inv.created_by,
        "revoked_at": inv.revoked_at.map(time),
    })
}

/// The audit event of a change to one invitation.
fn audit_invitation(
    state: &mut super::tenant::State,
    before: Option<&Invitation>,
    after: Option<&Invitation>,
    at: DateTime<Utc>,
) {
    let Some(inv) = after.or(before) else { return };
    state.audit.write(
        inv.org,
        "invitation",
        inv.id.to_string(),
        before.map(invitation_row),
        after.map(invitation_row),
        Some(at),
    );
}

#[async_trait]
impl InvitationStore for MemoryStore {
    async fn create_invitation(
        &self,
        invitation: &Invitation,
        token_hash: &TokenHash,
    ) -> Result<Invitation> {
        // The same checks as the constructor (and the SQL constraints).
        Invitation::new(
            invitation.org,
            invitation.email.as_deref(),
            invitation.role,
            invitation.max_uses,
            invitation.expires_at,
            invitation.created_at,
            invitation.created_by,
        )?;
        let mut guard = self.lock();
        let state = &mut *guard;
        if state.tenant(invitation.org).is_none() {
            return Err(org_not_found(invitation.org));
        }
        let invitations = &mut state.invitations;
        if invitations.by_id.contains_key(&invitation.id)
            || invitations.by_hash.contains_key(token_hash)
        {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("invitation {} or its token exists already", invitation.id),
            ));
        }
        let mut stored = invitation.clone();
        stored.email = invitation.email.as_deref().map(str::to_lowercase);
        stored.uses = 0;
        stored.revoked_at = None;
        invitations.by_hash.insert(*token_hash, stored.id);
        invitations
            .by_id
            .insert(stored.id, (stored.clone(), *token_hash));
        audit_invitation(state, None, Some(&stored), stored.created_at);
        Ok(stored)
    }

    async fn pending_invitations(&self, org: OrgId, now: DateTime<Utc>) -> Result<Vec<Invitation>> {
        let state = self.lock();
        if state.tenant(org).is_none() {
            return Ok(Vec::new());
        }
        let mut pending: Vec<Invitation> = state
            .invitations
            .by_id
            .values()
            .map(|(inv, _)| inv)
            .filter(|inv| inv.org == org && inv.is_pending(now))
            .cloned()
            .collect();
        pending.sort_by_key(|inv| (inv.created_at, inv.id));
        Ok(pending)
    }

    async fn revoke_invitation(
        &self,
        org: OrgId,
        id: InvitationId,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mut state = self.lock();
        if state.tenant(org).is_none() {
            return Ok(false);
        }
        let (before, after) = match state.invitations.by_id.get_mut(&id) {
            Some((inv, _)) if inv.org == org && inv.is_pending(now) => {
                let before = inv.clone();
                inv.revoked_at = Some(now);
                (before, inv.clone())
            }
            _ => return Ok(false),
        };
        audit_invitation(&mut state, Some(&before), Some(&after), now);
        Ok(true)
    }

    async fn rotate_invitation(
        &self,
        org: OrgId,
        id: InvitationId,
        token_hash: &TokenHash,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<Invitation>> {
        if expires_at <= now {
            return Err(Error::invalid_input(
                "expires_at",
                format_args!("{expires_at} is not after {now}"),
            ));
        }
        let mut state = self.lock();
        if state.tenant(org).is_none() {
            return Ok(None);
        }
        let invitations = &mut state.invitations;
        match invitations.by_id.get(&id) {
            Some((inv, _)) if inv.org == org && inv.is_pending(now) => {}
            _ => return Ok(None),
        }
        if invitations.by_hash.contains_key(token_hash) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                "that invitation token exists already",
            ));
        }
        let Some((inv, old)) = invitations.by_id.get_mut(&id) else {
            return Ok(None);
        };
        let before = inv.clone();
        let old_hash = std::mem::replace(old, *token_hash);
        inv.expires_at = expires_at;
        let rotated = inv.clone();
        invitations.by_hash.remove(&old_hash);
        invitations.by_hash.insert(*token_hash, id);
        audit_invitation(&mut state, Some(&before), Some(&rotated), now);
        Ok(Some(rotated))
    }

    async fn accept_invitation(&self, request: &AcceptInvitation) -> Result<InvitationAcceptance> {
        let mut state = self.lock();
        let id = state
            .invitations
            .find(&request.token_hash)
            .ok_or_else(invitation_refused)?;
        let (invitation, _) = &state.invitations.by_id[&id];
        let invitation = invitation.clone();
        if !invitation.is_pending(request.now) {
            return Err(invitation_refused());
        }
        if let Some(email) = &invitation.email {
            let matches = request
                .email
                .as_deref()
                .is_some_and(|given| given.trim().to_lowercase() == *email);
            if !matches {
                return Err(invitation_refused());
            }
        }
        let org = invitation.org;
        // An invitation of an organization deleted since is no invitation.
        let Some(tenant) = state.tenants.get_mut(&org) else {
            return Err(invitation_refused());
        };
        if let Some(existing) = tenant.members.get(&request.user) {
            return Ok(InvitationAcceptance {
                membership: existing.clone(),
                joined: false,
            });
        }
        // As `MemberStore::add_member` does, under the same lock.
        let membership = Membership {
            user_id: request.user,
            organization_id: org,
            role: invitation.role,
            created_at: request.now,
        };
        tenant.members.insert(request.user, membership.clone());
        state
            .orgs_of_user
            .entry(request.user)
            .or_default()
            .insert(org);
        state
            .audit
            .member(None, Some(&membership), Some(request.now));
        let used = match state.invitations.by_id.get_mut(&id) {
            Some((inv, _)) => {
                let before = inv.clone();
                inv.uses += 1;
                Some((before, inv.clone()))
            }
            None => None,
        };
        if let Some((before, after)) = used {
            audit_invitation(&mut state, Some(&before), Some(&after), request.now);
        }
        Ok(InvitationAcceptance {
            membership,
            joined: true,
        })
    }
}
