//! Invitations: to an email or by a shareable link, naming a role.
//!
//! An invitation asks someone to join an organization with a [`Role`]. It
//! is either for one email address (used once, by a user whose *confirmed*
//! email is that address) or a shareable link (no email, used up to
//! `max_uses` times by anyone signed in). Either expires.
//!
//! Its token is the only way to accept it:
//!
//! - 256 bits from the operating system's CSPRNG, written as 64 lowercase
//!   hex digits (URL-safe as it is);
//! - stored only as its SHA-256 ([`TokenHash`]), and handed out once, when
//!   the invitation is created or resent (which replaces it);
//! - looked up by that hash, so tokens cannot be enumerated; and since a
//!   caller cannot choose the hash of what it sends, how long a lookup
//!   takes tells nothing about a stored token (no constant-time compare is
//!   needed on top).
//!
//! Every way an invitation cannot be accepted — an unknown or malformed
//! token, an expired, revoked or used-up invitation, or one for another
//! email address — is the same error, [`invitation_refused`]: the same
//! kind (`NotFound`) and the same message, which names no organization.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::{Error, ErrorKind, Result, quoted};
use crate::ids::{OrgId, UserId};
use crate::model::{Membership, Organization, Role};

/// The most uses a link invitation may allow.
pub const MAX_LINK_USES: u32 = 10_000;

/// The longest an email address may be (RFC 5321's path limit).
pub const MAX_EMAIL_CHARS: usize = 254;

/// The message of [`invitation_refused`], the same for every reason.
pub const INVITATION_REFUSED: &str = "this invitation cannot be accepted: it is unknown, expired, revoked or used up, or it is for another email address";

/// The one error for an invitation that cannot be accepted, whatever the
/// reason: `NotFound`, with [`INVITATION_REFUSED`] as its message. It names
/// no organization, so a refusal does not tell whether one exists.
pub fn invitation_refused() -> Error {
    Error::new(ErrorKind::NotFound, INVITATION_REFUSED)
}

/// An invitation's id (`org_invitations.id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InvitationId(Uuid);

impl InvitationId {
    /// Parses the hyphenated (or simple) UUID form; anything else is
    /// `InvalidInput` naming `invitation_id`.
    pub fn parse(input: &str) -> Result<Self> {
        Uuid::parse_str(input.trim())
            .map(InvitationId)
            .map_err(|e| {
                Error::invalid_input(
                    "invitation_id",
                    format_args!("{} is not a UUID", quoted(input)),
                )
                .with_source(e)
            })
    }

    /// A fresh time-ordered (UUIDv7) id.
    pub fn new_v7() -> Self {
        InvitationId(Uuid::now_v7())
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl From<Uuid> for InvitationId {
    fn from(id: Uuid) -> Self {
        InvitationId(id)
    }
}

impl FromStr for InvitationId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        InvitationId::parse(s)
    }
}

impl fmt::Display for InvitationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// An invitation's secret token: what its accept URL carries. `Debug`
/// never shows it; [`expose`](Self::expose) does, for the one place it is
/// handed out.
///
/// ```
/// use tenancy::model::invitation::InvitationToken;
///
/// let token = InvitationToken::generate()?;
/// assert_eq!(token.expose().len(), 64);
/// assert!(!format!("{token:?}").contains(token.expose()));
/// assert_eq!(token.hash(), InvitationToken::from_text(token.expose()).hash());
/// # Ok::<(), tenancy::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct InvitationToken(String);

impl InvitationToken {
    /// Random bytes in a token: 256 bits.
    pub const BYTES: usize = 32;

    /// A new token: [`BYTES`](Self::BYTES) bytes from the operating
    /// system's CSPRNG, as lowercase hex. `Unavailable` if the system
    /// cannot provide randomness.
    pub fn generate() -> Result<Self> {
        let mut bytes = [0u8; Self::BYTES];
        getrandom::fill(&mut bytes).map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("generating an invitation token: the system has no randomness ({e})"),
            )
        })?;
        Ok(InvitationToken(hex(&bytes)))
    }

    /// A token as it arrives from a request (trimmed). Never fails: a
    /// malformed one simply matches no invitation.
    pub fn from_text(text: &str) -> Self {
        InvitationToken(text.trim().to_owned())
    }

    /// The token itself. Show it only to whom it is for.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its SHA-256, what stores keep and look up.
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }
}

impl fmt::Debug for InvitationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InvitationToken(<redacted>)")
    }
}

/// The SHA-256 of a token's UTF-8 text: the only form stores keep. In SQL,
/// `sha256(convert_to(token, 'UTF8'))`; serialized as 64 lowercase hex
/// digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// The hash of `token`'s text.
    pub fn of(token: &str) -> Self {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }

    /// The digest's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses 64 hex digits; anything else is `InvalidInput` naming
    /// `token_hash`.
    pub fn from_hex(text: &str) -> Result<Self> {
        let bad = || Error::invalid_input("token_hash", "must be 64 hex digits");
        if text.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
                .map_err(|_| bad())?;
        }
        Ok(TokenHash(out))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({}…)", &self.to_hex()[..8])
    }
}

impl Serialize for TokenHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for TokenHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        TokenHash::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// An email address as invitations keep and compare it: trimmed and
/// lowercased. `InvalidInput` naming `email` unless it has one `@` with
/// text on both sides, no spaces or control characters, and at most
/// [`MAX_EMAIL_CHARS`] characters.
///
/// ```
/// use tenancy::model::invitation::normalize_email;
/// assert_eq!(normalize_email(" Ada@Example.COM ")?, "ada@example.com");
/// assert!(normalize_email("ada").is_err());
/// assert!(normalize_email("a b@example.com").is_err());
/// # Ok::<(), tenancy::Error>(())
/// ```
pub fn normalize_email(input: &str) -> Result<String> {
    let email = input.trim().to_lowercase();
    let why = if email.chars().count() > MAX_EMAIL_CHARS {
        Some(format!("is longer than {MAX_EMAIL_CHARS} characters"))
    } else if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("may not contain spaces or control characters".to_owned())
    } else {
        match email.split_once('@') {
            Some((local, domain))
                if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
            {
                None
            }
            _ => Some("is not an email address (one @, with text on both sides)".to_owned()),
        }
    };
    match why {
        Some(why) => Err(Error::invalid_input(
            "email",
            format_args!("{} {why}", quoted(input)),
        )),
        None => Ok(email),
    }
}

/// An invitation as stores keep it (never with its token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Invitation {
    /// Its id.
    pub id: InvitationId,
    /// The organization it invites to.
    #[serde(rename = "organization_id")]
    pub org: OrgId,
    /// For an email invitation, the address (normalized: see
    /// [`normalize_email`]); `None` for a link.
    pub email: Option<String>,
    /// The role the invitee joins with.
    pub role: Role,
    /// How many times it may be accepted: 1 for an email invitation.
    pub max_uses: u32,
    /// How many times it has been accepted.
    pub uses: u32,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Who created it, if a user did.
    pub created_by: Option<UserId>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Invitation {
    /// A new invitation of `org` for `email` (normalized here; `None`: a
    /// link) with `role`, `max_uses` and an expiry, created at `now` by
    /// `created_by`. `InvalidInput` naming `email`, `max_uses` (0, above
    /// [`MAX_LINK_USES`], or not 1 for an email invitation) or
    /// `expires_at` (not after `now`).
    pub fn new(
        org: OrgId,
        email: Option<&str>,
        role: Role,
        max_uses: u32,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
        created_by: Option<UserId>,
    ) -> Result<Self> {
        let email = email.map(normalize_email).transpose()?;
        if email.is_some() && max_uses != 1 {
            return Err(Error::invalid_input(
                "max_uses",
                format_args!("an email invitation is used once, not {max_uses} times"),
            ));
        }
        if !(1..=MAX_LINK_USES).contains(&max_uses) {
            return Err(Error::invalid_input(
                "max_uses",
                format_args!("{max_uses} is not between 1 and {MAX_LINK_USES}"),
            ));
        }
        if expires_at <= now {
            return Err(Error::invalid_input(
                "expires_at",
                format_args!("{expires_at} is not after {now}"),
            ));
        }
        Ok(Invitation {
            id: InvitationId::new_v7(),
            org,
            email,
            role,
            max_uses,
            uses: 0,
            expires_at,
            created_at: now,
            created_by,
            revoked_at: None,
        })
    }

    /// Whether it is a shareable link (no email).
    pub fn is_link(&self) -> bool {
        self.email.is_none()
    }

    /// Whether it can still be accepted at `now`: not revoked, not used
    /// up, not expired.
    pub fn is_pending(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.uses < self.max_uses && now < self.expires_at
    }

    /// How many more times it may be accepted.
    pub fn uses_left(&self) -> u32 {
        self.max_uses.saturating_sub(self.uses)
    }
}

/// What a store needs to accept an invitation: the token's hash, who
/// accepts, their confirmed email, and the time.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AcceptInvitation {
    /// The hash of the token presented.
    pub token_hash: TokenHash,
    /// The user accepting it.
    pub user: UserId,
    /// The user's confirmed email address, as the caller knows it (from
    /// the [`UserDirectory`](crate::store::UserDirectory)); `None` when it
    /// has none. An email invitation is accepted only when it matches,
    /// case-insensitively. The SQL stores read it from `auth.users`
    /// themselves (the confirmed email, `email_confirmed_at` set) for a
    /// user JWT, ignoring this, and for the service role when this is
    /// `None`.
    pub email: Option<String>,
    /// The time of the operation.
    pub now: DateTime<Utc>,
}

impl AcceptInvitation {
    /// A request for `user` (whose confirmed email is `email`) presenting
    /// the token with this hash at `now`.
    pub fn new(
        token_hash: TokenHash,
        user: UserId,
        email: Option<String>,
        now: DateTime<Utc>,
    ) -> Self {
        AcceptInvitation {
            token_hash,
            user,
            email,
            now,
        }
    }
}

/// What accepting an invitation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct InvitationAcceptance {
    /// The user's membership: the new one, or the one they already had
    /// (whose role the invitation did not change).
    pub membership: Membership,
    /// Whether the user joined now (`false`: they were a member already,
    /// and the invitation was not used).
    pub joined: bool,
}

// ---- delivery -------------------------------------------------------------

/// Delivers invitations: the host's business (an email service, a chat
/// message). [`Tenancy`](crate::Tenancy) calls it after creating or
/// resending an email invitation, with the plain accept URL (the only
/// place, besides the creator's answer, that the token appears). Set it
/// with [`TenancyBuilder::invitation_sender`](crate::TenancyBuilder::invitation_sender);
/// [`LogInvitationSender`] by default.
///
/// A failure is logged and reported in
/// [`CreatedInvitation::delivered`]; the invitation stays, and may be
/// resent.
#[async_trait]
pub trait InvitationSender: fmt::Debug + Send + Sync + 'static {
    /// Delivers `invitation` (to `organization`) with its `accept_url`.
    async fn send(
        &self,
        invitation: &Invitation,
        organization: &Organization,
        accept_url: &str,
    ) -> Result<()>;
}

/// The default [`InvitationSender`]: logs each invitation (`tracing`,
/// level info) with its accept URL, for development. A production host
/// sends email instead: the log then holds live tokens.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogInvitationSender;

#[async_trait]
impl InvitationSender for LogInvitationSender {
    async fn send(
        &self,
        invitation: &Invitation,
        organization: &Organization,
        accept_url: &str,
    ) -> Result<()> {
        tracing::info!(
            org = %organization.id,
            invitation = %invitation.id,
            email = invitation.email.as_deref().unwrap_or("(link)"),
            role = %invitation.role,
            "invitation to {}: {accept_url}",
            organization.name
        );
        Ok(())
    }
}

/// An [`InvitationSender`] that keeps what it was given, for tests and
/// examples: (the invitation, its accept URL), oldest first.
#[derive(Debug, Default)]
pub struct MemoryInvitationSender {
    sent: Mutex<Vec<(Invitation, String)>>,
}

impl MemoryInvitationSender {
    /// An empty one.
    pub fn new() -> Self {
        MemoryInvitationSender::default()
    }

    /// Everything sent so far.
    pub fn sent(&self) -> Vec<(Invitation, String)> {
        crate::sync::lock(&self.sent).clone()
    }

    /// The accept URL last sent to `email` (case-insensitively), if any.
    pub fn last_url_for(&self, email: &str) -> Option<String> {
        let email = email.trim().to_lowercase();
        crate::sync::lock(&self.sent)
            .iter()
            .rev()
            .find(|(i, _)| i.email.as_deref() == Some(email.as_str()))
            .map(|(_, url)| url.clone())
    }
}

#[async_trait]
impl InvitationSender for MemoryInvitationSender {
    async fn send(
        &self,
        invitation: &Invitation,
        _organization: &Organization,
        accept_url: &str,
    ) -> Result<()> {
        crate::sync::lock(&self.sent).push((invitation.clone(), accept_url.to_owned()));
        Ok(())
    }
}

// ---- what the facade takes and answers -------------------------------------

/// What to invite: an email address or a shareable link, with a role and,
/// optionally, an expiry other than the configured default.
///
/// ```
/// use std::time::Duration;
/// use tenancy::Role;
/// use tenancy::model::invitation::NewInvitation;
///
/// let by_email = NewInvitation::email("ada@example.com", Role::Member);
/// let link = NewInvitation::link(Role::Viewer, 25).expires_in(Duration::from_secs(3 * 86_400));
/// assert_eq!(link.max_uses, 25);
/// assert_eq!(by_email.max_uses, 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewInvitation {
    /// The invitee's email address; `None` for a link.
    pub email: Option<String>,
    /// The role to join with.
    pub role: Role,
    /// How many may accept it: 1 for an email invitation; 1 to
    /// [`MAX_LINK_USES`] for a link.
    pub max_uses: u32,
    /// How long it lasts; `None`: the configured default
    /// ([`TenancyBuilder::invitation_expiry`](crate::TenancyBuilder::invitation_expiry)).
    pub expires_in: Option<std::time::Duration>,
}

impl NewInvitation {
    /// An invitation for `email`, used once.
    pub fn email(email: impl Into<String>, role: Role) -> Self {
        NewInvitation {
            email: Some(email.into()),
            role,
            max_uses: 1,
            expires_in: None,
        }
    }

    /// A shareable link anyone signed in may accept, up to `max_uses`
    /// times.
    pub fn link(role: Role, max_uses: u32) -> Self {
        NewInvitation {
            email: None,
            role,
            max_uses,
            expires_in: None,
        }
    }

    /// Expires `expires_in` after creation, which must be within the
    /// configured bounds
    /// ([`TenancyBuilder::invitation_expiry_bounds`](crate::TenancyBuilder::invitation_expiry_bounds)).
    pub fn expires_in(mut self, expires_in: std::time::Duration) -> Self {
        self.expires_in = Some(expires_in);
        self
    }
}

/// A created (or resent) invitation and its token: the one time the token
/// is handed out. `Debug` shows neither the token nor the URL.
#[derive(Clone)]
#[non_exhaustive]
pub struct CreatedInvitation {
    /// The invitation.
    pub invitation: Invitation,
    /// Its token; stores keep only its hash.
    pub token: InvitationToken,
    /// The accept URL: the configured base with `token=<token>` added.
    pub accept_url: String,
    /// Whether the [`InvitationSender`] delivered it (`false`: it failed,
    /// and the failure was logged; always `false` for a link, which is not
    /// sent).
    pub delivered: bool,
}

impl fmt::Debug for CreatedInvitation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedInvitation")
            .field("invitation", &self.invitation)
            .field("token", &self.token)
            .field("accept_url", &"<redacted>")
            .field("delivered", &self.delivered)
            .finish()
    }
}

/// What a user's accepting an invitation did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AcceptedInvitation {
    /// The organization joined.
    pub organization: Organization,
    /// The user's role there: the invitation's, or, when they were a
    /// member already, the role they had.
    pub role: Role,
    /// Whether they joined now (`false`: a member already; the invitation
    /// was not used).
    pub joined: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex_and_hash_like_sql() {
        let a = InvitationToken::generate().unwrap();
        let b = InvitationToken::generate().unwrap();
        assert_ne!(a, b);
        assert!(a.expose().bytes().all(|c| c.is_ascii_hexdigit()));
        // SELECT encode(sha256(convert_to('abc', 'UTF8')), 'hex')
        assert_eq!(
            TokenHash::of("abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let h = a.hash();
        assert_eq!(TokenHash::from_hex(&h.to_hex()).unwrap(), h);
        assert!(h == a.hash() && h != b.hash());
        assert_eq!(
            TokenHash::from_hex("zz").unwrap_err().field(),
            Some("token_hash")
        );
    }

    #[test]
    fn invitations_check_their_fields() {
        let now = Utc::now();
        let later = now + chrono::TimeDelta::days(1);
        let org = OrgId::new_v7();
        let ok = Invitation::new(org, Some("A@B.io"), Role::Member, 1, later, now, None).unwrap();
        assert_eq!(ok.email.as_deref(), Some("a@b.io"));
        assert!(ok.is_pending(now) && !ok.is_pending(later));
        let field = |r: Result<Invitation>| r.unwrap_err().field();
        assert_eq!(
            field(Invitation::new(
                org,
                Some("a@b.io"),
                Role::Member,
                2,
                later,
                now,
                None
            )),
            Some("max_uses")
        );
        assert_eq!(
            field(Invitation::new(
                org,
                None,
                Role::Member,
                0,
                later,
                now,
                None
            )),
            Some("max_uses")
        );
        assert_eq!(
            field(Invitation::new(org, None, Role::Member, 3, now, now, None)),
            Some("expires_at")
        );
        assert_eq!(
            field(Invitation::new(
                org,
                Some("@b"),
                Role::Member,
                1,
                later,
                now,
                None
            )),
            Some("email")
        );
    }

    #[test]
    fn every_refusal_is_the_same_error() {
        let a = invitation_refused();
        assert_eq!(a.kind(), ErrorKind::NotFound);
        assert_eq!(a.message(), INVITATION_REFUSED);
        assert!(!a.is_retryable());
    }
}
