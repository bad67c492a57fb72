//! Inviting people: create, list, revoke, resend and accept invitations.
//!
//! The policy lives here: who may invite whom ([`Role::check_invite`](crate::Role::check_invite)),
//! tokens ([`InvitationToken`]: generated, hashed, handed out once), the
//! expiry (the builder's default and bounds) and delivery (the
//! [`InvitationSender`]). The store keeps hashes and accepts atomically.

use crate::model::audit::AuditActor;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::Tenancy;
use crate::error::{Error, Result};
use crate::ids::UserId;
use crate::model::invitation::{
    AcceptInvitation, AcceptedInvitation, CreatedInvitation, Invitation, InvitationId,
    InvitationSender, InvitationToken, NewInvitation, invitation_refused,
};
use crate::model::{Action, Organization, TenantContext};
use crate::store::InvitationStore;

/// The invitation settings the builder checked.
#[derive(Debug, Clone)]
pub(crate) struct InvitationConfig {
    /// The lifetime of an invitation that names none.
    pub(crate) expiry: Duration,
    /// The shortest and longest lifetime one may name.
    pub(crate) min_expiry: Duration,
    pub(crate) max_expiry: Duration,
    /// The accept URL, before `token=<token>` is added.
    pub(crate) accept_url: String,
    pub(crate) sender: Arc<dyn InvitationSender>,
}

impl InvitationConfig {
    /// `base` with `token=<token>` added as a query parameter.
    fn accept_url(&self, token: &InvitationToken) -> String {
        let joiner = if self.accept_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{}{joiner}token={}", self.accept_url, token.expose())
    }

    /// The lifetime asked for (the default when none), within the bounds:
    /// `InvalidInput` naming `expires_in` otherwise.
    fn lifetime(&self, asked: Option<Duration>) -> Result<TimeDelta> {
        let lifetime = asked.unwrap_or(self.expiry);
        if lifetime < self.min_expiry || lifetime > self.max_expiry {
            return Err(Error::invalid_input(
                "expires_in",
                format_args!(
                    "{lifetime:?} is not between {:?} and {:?}",
                    self.min_expiry, self.max_expiry
                ),
            ));
        }
        TimeDelta::from_std(lifetime)
            .map_err(|e| Error::invalid_input("expires_in", "does not fit").with_source(e))
    }
}

impl Tenancy {
    /// Invites someone to the active organization: by email, or as a
    /// shareable link (see [`NewInvitation`]), with a role the caller may
    /// grant ([`Role::check_invite`](crate::Role::check_invite): admins invite members and viewers,
    /// only owners invite admins and owners; anyone else is
    /// `PermissionDenied`).
    ///
    /// The answer carries the token and the accept URL: the only time they
    /// are handed out (the store keeps the token's SHA-256). An email
    /// invitation is also given to the [`InvitationSender`]; a link is for
    /// the caller to share. `InvalidInput` names `email`, `max_uses` or
    /// `expires_in` (outside the configured bounds).
    ///
    /// ```
    /// use tenancy::memory::MemoryUserDirectory;
    /// use tenancy::model::invitation::NewInvitation;
    /// use tenancy::{MemoryStore, NewOrganization, Role, Tenancy, UserId};
    /// use std::sync::Arc;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenancy::Result<()> {
    /// let (ada, bob) = (UserId::new_v7(), UserId::new_v7());
    /// let directory = Arc::new(MemoryUserDirectory::new());
    /// directory.insert(bob, Some("bob@example.com"), Some("Bob"));
    /// directory.set_email_confirmed(bob, true);
    /// let tenancy = Tenancy::builder()
    ///     .store(MemoryStore::new())
    ///     .shared_user_directory(directory)
    ///     .build()?;
    /// let acme = tenancy.create_organization(ada, NewOrganization::new("Acme", "acme")?).await?;
    /// let as_ada = tenancy.context(ada, acme.id).await?;
    ///
    /// let invite = tenancy
    ///     .create_invitation(&as_ada, NewInvitation::email("Bob@Example.com", Role::Member))
    ///     .await?;
    /// let accepted = tenancy.accept_invitation(bob, invite.token.expose()).await?;
    /// assert_eq!((accepted.organization.id, accepted.role), (acme.id, Role::Member));
    ///
    /// // Used: the same token is refused, with the one refusal.
    /// let again = tenancy.accept_invitation(bob, invite.token.expose()).await;
    /// assert_eq!(again.unwrap_err().kind(), tenancy::ErrorKind::NotFound);
    /// # Ok(()) }
    /// ```
    pub async fn create_invitation(
        &self,
        ctx: &TenantContext,
        new: NewInvitation,
    ) -> Result<CreatedInvitation> {
        ctx.role().check_invite(new.role)?;
        let config = &self.inner.invitations;
        let now = self.now();
        let lifetime = config.lifetime(new.expires_in)?;
        let invitation = Invitation::new(
            ctx.org(),
            new.email.as_deref(),
            new.role,
            new.max_uses,
            now + lifetime,
            now,
            Some(ctx.user()),
        )?;
        let token = InvitationToken::generate()?;
        let hash = token.hash();
        let create = self.store().create_invitation(&invitation, &hash);
        let stored = self.audited(AuditActor::user(ctx.user()), create).await?;
        tracing::info!(
            org = %ctx.org(),
            invitation = %stored.id,
            by = %ctx.user(),
            role = %stored.role,
            link = stored.is_link(),
            "invitation created"
        );
        Ok(self.hand_out(ctx, stored, token).await)
    }

    /// The active organization's pending invitations (not revoked, used up
    /// or expired), oldest first. Admins and owners
    /// ([`Action::InviteMembers`]); anyone else is `PermissionDenied`.
    pub async fn invitations(&self, ctx: &TenantContext) -> Result<Vec<Invitation>> {
        ctx.require(Action::InviteMembers)?;
        self.store()
            .pending_invitations(ctx.org(), self.now())
            .await
    }

    /// Revokes a pending invitation of the active organization: its token
    /// stops working at once. Whether it was pending (`false`: unknown,
    /// another organization's, or no longer pending). The caller must be
    /// allowed to create it ([`Role::check_invite`](crate::Role::check_invite) with its role).
    pub async fn revoke_invitation(&self, ctx: &TenantContext, id: InvitationId) -> Result<bool> {
        ctx.require(Action::InviteMembers)?;
        let now = self.now();
        let Some(invitation) = self.pending(ctx, id, now).await? else {
            return Ok(false);
        };
        ctx.role().check_invite(invitation.role)?;
        let revoke = self.store().revoke_invitation(ctx.org(), id, now);
        let revoked = self.audited(AuditActor::user(ctx.user()), revoke).await?;
        if revoked {
            tracing::info!(org = %ctx.org(), invitation = %id, by = %ctx.user(), "invitation revoked");
        }
        Ok(revoked)
    }

    /// Resends a pending invitation of the active organization with a new
    /// token, which replaces the old one (the old stops working), and a
    /// fresh default expiry; an email invitation goes to the sender again.
    /// `NotFound` if it is not pending (or not this organization's); the
    /// caller must be allowed to create it.
    pub async fn resend_invitation(
        &self,
        ctx: &TenantContext,
        id: InvitationId,
    ) -> Result<CreatedInvitation> {
        ctx.require(Action::InviteMembers)?;
        let now = self.now();
        let not_pending = || Error::not_found(format!("invitation {id} is not pending"));
        let invitation = self.pending(ctx, id, now).await?.ok_or_else(not_pending)?;
        ctx.role().check_invite(invitation.role)?;
        let lifetime = self.inner.invitations.lifetime(None)?;
        let token = InvitationToken::generate()?;
        let hash = token.hash();
        let rotate = self
            .store()
            .rotate_invitation(ctx.org(), id, &hash, now + lifetime, now);
        let rotated = self
            .audited(AuditActor::user(ctx.user()), rotate)
            .await?
            .ok_or_else(not_pending)?;
        tracing::info!(org = %ctx.org(), invitation = %id, by = %ctx.user(), "invitation resent");
        Ok(self.hand_out(ctx, rotated, token).await)
    }

    /// Accepts an invitation for `user`, who must be signed in (the host
    /// authenticated them). An email invitation needs `user`'s *confirmed*
    /// email, from the [user directory](crate::TenancyBuilder::user_directory),
    /// to match its address case-insensitively: without a directory, or
    /// with an unconfirmed email, it is refused.
    ///
    /// Every refusal — an unknown or malformed token, an expired, revoked
    /// or used-up invitation, another email's — is the same error,
    /// [`invitation_refused`] (`NotFound`), naming no organization.
    ///
    /// A user who is a member already keeps their role and the invitation
    /// is not used: the answer says `joined: false`, with their role.
    pub async fn accept_invitation(&self, user: UserId, token: &str) -> Result<AcceptedInvitation> {
        let token = InvitationToken::from_text(token);
        if token.expose().is_empty() {
            return Err(invitation_refused());
        }
        let email = self.confirmed_email(user).await?;
        let request = AcceptInvitation::new(token.hash(), user, email, self.now());
        let accept = self.store().accept_invitation(&request);
        let accepted = self.audited(AuditActor::user(user), accept).await?;
        let org = accepted.membership.organization_id;
        let organization = self.cached_org(org).await?;
        if accepted.joined {
            tracing::info!(org = %org, user = %user, role = %accepted.membership.role, "invitation accepted");
        }
        Ok(AcceptedInvitation {
            organization: Organization::clone(&organization),
            role: accepted.membership.role,
            joined: accepted.joined,
        })
    }

    /// How long an invitation lasts when its creator names no lifetime
    /// ([`TenancyBuilder::invitation_expiry`](crate::TenancyBuilder::invitation_expiry)).
    pub fn invitation_expiry(&self) -> Duration {
        self.inner.invitations.expiry
    }

    /// `user`'s own profile from the directory (what a page shows the
    /// signed-in user about themselves), if there is one.
    #[cfg(feature = "console")]
    pub(crate) async fn own_profile(&self, user: UserId) -> Option<crate::model::UserProfile> {
        use crate::store::UserDirectory as _;
        let directory = self.inner.directory.as_ref()?;
        let profiles = directory.profiles(&[user]).await.ok()?;
        profiles.into_iter().find(|p| p.user_id == user)
    }

    /// The invitation `id` of the active organization if pending at `now`.
    async fn pending(
        &self,
        ctx: &TenantContext,
        id: InvitationId,
        now: DateTime<Utc>,
    ) -> Result<Option<Invitation>> {
        Ok(self
            .store()
            .pending_invitations(ctx.org(), now)
            .await?
            .into_iter()
            .find(|i| i.id == id))
    }

    /// The answer to a create or a resend: the token and URL, after an
    /// email invitation went to the sender.
    async fn hand_out(
        &self,
        ctx: &TenantContext,
        invitation: Invitation,
        token: InvitationToken,
    ) -> CreatedInvitation {
        let config = &self.inner.invitations;
        let accept_url = config.accept_url(&token);
        let mut delivered = false;
        if !invitation.is_link() {
            match config
                .sender
                .send(&invitation, ctx.organization(), &accept_url)
                .await
            {
                Ok(()) => delivered = true,
                Err(e) => tracing::warn!(
                    org = %ctx.org(),
                    invitation = %invitation.id,
                    error = %e,
                    "delivering an invitation failed; it stays pending and may be resent"
                ),
            }
        }
        CreatedInvitation {
            invitation,
            token,
            accept_url,
            delivered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::invitation::LogInvitationSender;

    fn config() -> InvitationConfig {
        InvitationConfig {
            expiry: Duration::from_secs(7 * 86_400),
            min_expiry: Duration::from_secs(3600),
            max_expiry: Duration::from_secs(30 * 86_400),
            accept_url: "https://app.example/invite".into(),
            sender: Arc::new(LogInvitationSender),
        }
    }

    #[test]
    fn accept_urls_add_the_token() {
        let token = InvitationToken::from_text("abc");
        assert_eq!(
            config().accept_url(&token),
            "https://app.example/invite?token=abc"
        );
        let mut with_query = config();
        with_query.accept_url = "https://app.example/i?x=1".into();
        assert_eq!(
            with_query.accept_url(&token),
            "https://app.example/i?x=1&token=abc"
        );
    }

    #[test]
    fn lifetimes_stay_within_bounds() {
        let c = config();
        assert_eq!(c.lifetime(None).unwrap(), TimeDelta::days(7));
        assert_eq!(
            c.lifetime(Some(Duration::from_secs(60)))
                .unwrap_err()
                .field(),
            Some("expires_in")
        );
        assert!(c.lifetime(Some(Duration::from_secs(31 * 86_400))).is_err());
        assert!(c.lifetime(Some(Duration::from_secs(3600))).is_ok());
    }
}
