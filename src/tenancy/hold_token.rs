//! Holds that travel: a [`Reservation`] sealed into a signed [`HoldToken`]
//! that a worker with the same secret opens, to commit or release it.
//!
//! The token is
//!
//! ```text
//! hold-v1.<key id>.<payload>.<signature>
//! ```
//!
//! - `hold-v1`: the format and its version; another version is refused.
//! - `<key id>`: which secret signed it (1 to 32 of `A-Z a-z 0-9 _ -`),
//!   so secrets can be rotated.
//! - `<payload>`: the hold as JSON (id, organization, user, time zone,
//!   periods, expiry, and the decision with its metric and estimate),
//!   base64url without padding.
//! - `<signature>`: HMAC-SHA256, keyed with the secret, of the ASCII bytes
//!   `hold-v1.<key id>.<payload>` (everything before the last `.`),
//!   base64url without padding.
//!
//! The payload is signed, not encrypted: whoever sees a token can read its
//! organization, user, metric and estimate, but cannot change them.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use ring::hmac;
use serde::{Deserialize, Serialize};

use super::Tenancy;
use super::metering::EXPIRED_HOLD_RETENTION;
use crate::error::{Error, Result, quoted};
use crate::ids::{OrgId, ReservationId, UserId};
use crate::limits::{CurrentPeriods, LimitDecision, Reservation};

/// The format and version every token starts with.
const VERSION: &str = "hold-v1";
/// The longest token [`Tenancy::open`] reads; a longer one is refused
/// before anything is decoded. Real ones are well under 2 kB.
const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The longest key id.
const MAX_KEY_ID_CHARS: usize = 32;

/// A [`Reservation`] sealed by [`Tenancy::seal`] to travel to a worker
/// (over a queue, in a job row), which gets the reservation back with
/// [`Tenancy::open`].
///
/// A plain string: put it in a message with [`as_str`](Self::as_str) or
/// serde (it serializes as the string), and take it out with
/// [`From<String>`](#impl-From<String>-for-HoldToken) or serde. Whether it
/// is genuine is decided by [`Tenancy::open`], not when it is made.
///
/// Whoever holds a token can commit usage against its hold (once), so treat
/// it like a credential: its `Debug` form shows only its key id and length.
/// Its payload is signed, not encrypted: it names the organization, the
/// user, the metric and the estimate.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HoldToken(String);

impl HoldToken {
    /// The shortest secret accepted for signing tokens: 32 bytes.
    pub const MIN_SECRET_BYTES: usize = 32;

    /// The token's text, to put in a message.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The token's text, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl From<String> for HoldToken {
    fn from(token: String) -> Self {
        HoldToken(token)
    }
}

impl From<&str> for HoldToken {
    fn from(token: &str) -> Self {
        HoldToken(token.to_owned())
    }
}

impl AsRef<str> for HoldToken {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for HoldToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key_id = self
            .0
            .split('.')
            .nth(1)
            .filter(|k| valid_key_id(k))
            .unwrap_or("?");
        write!(f, "HoldToken({key_id}, {} bytes)", self.0.len())
    }
}

/// The secrets given to the builder, before they are checked. `Debug`
/// shows key ids, never secrets.
#[derive(Default)]
pub(super) struct HoldSecrets {
    current: Option<(String, Vec<u8>)>,
    previous: Vec<(String, Vec<u8>)>,
}

impl HoldSecrets {
    pub(super) fn set_current(&mut self, key_id: String, secret: Vec<u8>) {
        self.current = Some((key_id, secret));
    }

    pub(super) fn add_previous(&mut self, key_id: String, secret: Vec<u8>) {
        self.previous.push((key_id, secret));
    }

    /// Checks every key id and secret: `Config` naming the setting (and,
    /// for a previous secret, which one), never a key id or a secret. A
    /// host that swapped the arguments (`hold_secret(secret, "k1")`) would
    /// otherwise find its secret quoted as a key id.
    pub(super) fn build(self) -> Result<HoldKeys> {
        let Some((current_id, current)) = self.current else {
            if !self.previous.is_empty() {
                return Err(Error::config(
                    "previous_hold_secret is set without hold_secret: \
                     set the secret new tokens are signed with",
                ));
            }
            return Ok(HoldKeys::default());
        };
        let mut accepted: Vec<(String, hmac::Key)> = Vec::with_capacity(1 + self.previous.len());
        let all = std::iter::once(("hold_secret".to_owned(), current_id.clone(), current)).chain(
            self.previous
                .into_iter()
                .enumerate()
                .map(|(i, (id, secret))| (format!("previous_hold_secret #{}", i + 1), id, secret)),
        );
        for (setting, key_id, secret) in all {
            if !valid_key_id(&key_id) {
                return Err(Error::config(format!(
                    "{setting}: the key id (the first argument, not shown) is {} bytes; \
                     it must be 1 to {MAX_KEY_ID_CHARS} of A-Z a-z 0-9 _ -",
                    key_id.len()
                )));
            }
            if secret.len() < HoldToken::MIN_SECRET_BYTES {
                return Err(Error::config(format!(
                    "{setting}: the secret (the second argument) is {} bytes; \
                     it must be at least {}",
                    secret.len(),
                    HoldToken::MIN_SECRET_BYTES
                )));
            }
            if accepted.iter().any(|(id, _)| *id == key_id) {
                return Err(Error::config(format!(
                    "{setting}: its key id is already given to another secret"
                )));
            }
            accepted.push((key_id, hmac::Key::new(hmac::HMAC_SHA256, &secret)));
        }
        Ok(HoldKeys {
            signing: Some(current_id),
            accepted,
        })
    }
}

impl fmt::Debug for HoldSecrets {
    /// A key id only when it and its secret would pass `build`: with the
    /// arguments swapped, the "key id" is the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn shown((id, secret): &(String, Vec<u8>)) -> &str {
            if valid_key_id(id) && secret.len() >= HoldToken::MIN_SECRET_BYTES {
                id
            } else {
                "<invalid>"
            }
        }
        f.debug_struct("HoldSecrets")
            .field("current", &self.current.as_ref().map(shown))
            .field(
                "previous",
                &self.previous.iter().map(shown).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The checked keys a [`Tenancy`] seals and opens with: none when the
/// builder had no hold secret. `Debug` shows key ids, never keys.
#[derive(Default)]
pub(super) struct HoldKeys {
    /// The key id new tokens are signed with; the first of `accepted`.
    signing: Option<String>,
    /// Every key id a token may name, with its key.
    accepted: Vec<(String, hmac::Key)>,
}

impl HoldKeys {
    fn key(&self, key_id: &str) -> Option<&hmac::Key> {
        self.accepted
            .iter()
            .find(|(id, _)| id == key_id)
            .map(|(_, key)| key)
    }

    fn unconfigured(action: &str) -> Error {
        Error::config(format!(
            "{action} a hold token needs a secret: set TenancyBuilder::hold_secret"
        ))
    }
}

impl fmt::Debug for HoldKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HoldKeys")
            .field("signing", &self.signing)
            .field(
                "accepted",
                &self.accepted.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// What a token carries: everything a [`Reservation`] is made of.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    id: ReservationId,
    org: OrgId,
    user: UserId,
    tz: Tz,
    periods: CurrentPeriods,
    expires_at: DateTime<Utc>,
    decision: LimitDecision,
}

impl Tenancy {
    /// Seals `reservation` into a signed [`HoldToken`], for a worker that
    /// will [`open`](Self::open) it and then [`commit`](Self::commit),
    /// [`commit_event`](Self::commit_event) or [`release`](Self::release)
    /// the hold. Sealing changes nothing in the store: the hold keeps
    /// counting against the limits, and expires as any other, while the
    /// token travels.
    ///
    /// `Config` when the builder had no
    /// [`hold_secret`](super::TenancyBuilder::hold_secret).
    ///
    /// ```
    /// use rust_decimal_macros::dec;
    /// use tenancy::{HoldToken, MemoryStore, NewOrganization, Tenancy, UserId};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenancy::Result<()> {
    /// let secret = "an example secret of 32 bytes or more";
    /// let api = Tenancy::builder().store(MemoryStore::new()).hold_secret("k1", secret).build()?;
    /// # let alice = UserId::new_v7();
    /// # let acme = api.create_organization(alice, NewOrganization::new("Acme", "acme")?).await?;
    /// # let ctx = api.context(alice, acme.id).await?;
    /// // The API reserves and hands the hold to a queue.
    /// let hold = api.reserve(&ctx, "tokens", dec!(800)).await?.granted().expect("no limit");
    /// let message: String = api.seal(&hold)?.into_string();
    ///
    /// // The worker (here the same Tenancy; in real life one with the same
    /// // store and secret) opens it and commits what the work used.
    /// let hold = api.open(&HoldToken::from(message))?;
    /// assert!(api.commit(&hold, dec!(650)).await?.recorded);
    /// # Ok(()) }
    /// ```
    pub fn seal(&self, reservation: &Reservation) -> Result<HoldToken> {
        let keys = &self.inner.hold_keys;
        let (Some(key_id), Some((_, key))) = (&keys.signing, keys.accepted.first()) else {
            return Err(HoldKeys::unconfigured("sealing"));
        };
        let payload = Payload {
            id: reservation.id(),
            org: reservation.org(),
            user: reservation.user(),
            tz: reservation.timezone(),
            periods: reservation.periods(),
            expires_at: reservation.expires_at(),
            decision: reservation.decision().clone(),
        };
        let json = serde_json::to_vec(&payload)
            .map_err(|e| Error::unexpected("sealing a hold token").with_source(e))?;
        let mut token = format!("{VERSION}.{key_id}.{}", URL_SAFE_NO_PAD.encode(json));
        let tag = hmac::sign(key, token.as_bytes());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(tag.as_ref()));
        Ok(HoldToken(token))
    }

    /// The [`Reservation`] sealed in `token`, to commit or release. Opening
    /// reads nothing from the store and records nothing; the commit then
    /// checks with the store that the hold exists for that organization
    /// and user, and counts it once however often it is retried.
    ///
    /// # Refusals
    ///
    /// A token is refused with [`ErrorKind::PermissionDenied`] (and nothing
    /// is recorded) when it is
    ///
    /// - malformed, truncated, or of another format version;
    /// - signed with a key id this `Tenancy` does not have, or with another
    ///   secret, or changed in any byte;
    /// - expired: its hold expired [`EXPIRED_HOLD_RETENTION`] ago or more,
    ///   after which a commit would record nothing anyway.
    ///
    /// The message says which; the same call will never succeed, so it is
    /// not retryable. A hold that expired more recently opens, and its
    /// commit records the usage as for any late commit (see
    /// [`reserve`](Self::reserve)).
    ///
    /// `Config` when the builder had no
    /// [`hold_secret`](super::TenancyBuilder::hold_secret).
    ///
    /// ```
    /// use tenancy::{ErrorKind, HoldToken, MemoryStore, Tenancy};
    ///
    /// let worker = Tenancy::builder()
    ///     .store(MemoryStore::new())
    ///     .hold_secret("k1", "an example secret of 32 bytes or more")
    ///     .build()?;
    /// let forged = HoldToken::from("hold-v1.k1.eyJpZCI6IjEifQ.AAAA");
    /// let err = worker.open(&forged).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    /// assert!(err.message().starts_with("hold token refused"));
    /// # Ok::<(), tenancy::Error>(())
    /// ```
    ///
    /// [`ErrorKind::PermissionDenied`]: crate::error::ErrorKind::PermissionDenied
    pub fn open(&self, token: &HoldToken) -> Result<Reservation> {
        let keys = &self.inner.hold_keys;
        if keys.signing.is_none() {
            return Err(HoldKeys::unconfigured("opening"));
        }
        let payload = verified_payload(keys, token.as_str())?;
        let now = self.now();
        let cutoff = now
            .checked_sub_signed(EXPIRED_HOLD_RETENTION)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        if payload.expires_at <= cutoff {
            return Err(refused(format_args!(
                "its hold {} expired at {}, {} days or more ago",
                payload.id,
                payload.expires_at,
                EXPIRED_HOLD_RETENTION.num_days()
            )));
        }
        Ok(Reservation::new(
            payload.id,
            payload.org,
            payload.user,
            payload.tz,
            payload.periods,
            payload.expires_at,
            payload.decision,
        ))
    }
}

/// The payload of `token` once its format and signature check out.
fn verified_payload(keys: &HoldKeys, token: &str) -> Result<Payload> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(refused(format_args!(
            "malformed: {} bytes, more than {MAX_TOKEN_BYTES}",
            token.len()
        )));
    }
    let mut parts = token.split('.');
    let (Some(version), Some(key_id), Some(payload), Some(signature), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(refused("malformed: not four parts separated by '.'"));
    };
    if version != VERSION {
        return Err(refused(format_args!(
            "its format {} is not {VERSION}",
            quoted(version)
        )));
    }
    let Some(key) = keys.key(key_id) else {
        return Err(refused(format_args!(
            "it names the key id {}, which this Tenancy does not have",
            quoted(key_id)
        )));
    };
    let signed = &token[..token.len() - signature.len() - 1];
    let signature_ok = URL_SAFE_NO_PAD
        .decode(signature)
        .is_ok_and(|tag| hmac::verify(key, signed.as_bytes(), &tag).is_ok());
    if !signature_ok {
        return Err(refused(format_args!(
            "its signature does not match key {key_id:?}: it was altered or signed with another secret"
        )));
    }
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|e| refused("malformed: the payload is not base64url").with_source(e))?;
    serde_json::from_slice(&json)
        .map_err(|e| refused("malformed: the payload is not a v1 hold").with_source(e))
}

/// The one error every refused token gets.
fn refused(why: impl fmt::Display) -> Error {
    Error::permission_denied(format!("hold token refused: {why}; nothing was recorded"))
}

/// 1 to 32 of `A-Z a-z 0-9 _ -`: never a `.`, so it cannot shift the parts.
fn valid_key_id(key_id: &str) -> bool {
    (1..=MAX_KEY_ID_CHARS).contains(&key_id.len())
        && key_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(pairs: &[(&str, &str)]) -> Result<HoldKeys> {
        let mut secrets = HoldSecrets::default();
        let (first, rest) = pairs.split_first().expect("a key");
        secrets.set_current(first.0.into(), first.1.into());
        for (id, secret) in rest {
            secrets.add_previous((*id).into(), (*secret).into());
        }
        secrets.build()
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn secrets_are_checked_and_never_shown() {
        let err = keys(&[("k1", "short")]).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::Config);
        assert!(err.message().contains("hold_secret"), "{err}");
        assert!(!err.message().contains("short"), "{err}");
        let err = keys(&[("k1", SECRET), ("k0", "tiny")]).unwrap_err();
        assert!(err.message().contains("previous_hold_secret"), "{err}");
        assert!(keys(&[("k.1", SECRET)]).is_err());
        assert!(keys(&[("", SECRET)]).is_err());
        assert!(keys(&[("k1", SECRET), ("k1", SECRET)]).is_err());

        let mut secrets = HoldSecrets::default();
        secrets.add_previous("k0".into(), SECRET.into());
        assert!(format!("{secrets:?}").contains("k0"));
        assert!(!format!("{secrets:?}").contains(SECRET));
        assert!(secrets.build().is_err(), "previous without current");

        let keys = keys(&[("k1", SECRET), ("k0", SECRET)]).unwrap();
        let shown = format!("{keys:?}");
        assert!(shown.contains("k1") && shown.contains("k0"));
        assert!(!shown.contains(SECRET));
    }

    /// With the arguments swapped (`hold_secret(secret, "k1")`), neither
    /// the errors nor `Debug` show the secret, whatever its length: as an
    /// invalid key id, as a valid-looking one next to a short "secret", or
    /// as a duplicate.
    #[test]
    fn swapped_arguments_never_show_the_secret() {
        let hex32 = "0123456789abcdef0123456789abcdef";
        let base64 = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq8+/==";
        let long = "a shared secret that is far longer than thirty-two characters";
        for secret in [hex32, base64, long, "short.secret"] {
            let mut swapped = HoldSecrets::default();
            swapped.set_current(secret.into(), "k1".into());
            let shown = format!("{swapped:?}");
            assert!(!shown.contains(&secret[..12]), "{shown}");
            let err = swapped.build().unwrap_err();
            assert_eq!(err.kind(), crate::error::ErrorKind::Config);
            let shown = format!("{err} {err:?}");
            assert!(shown.contains("hold_secret"), "{shown}");
            assert!(!shown.contains(&secret[..12]), "{shown}");

            let mut previous = HoldSecrets::default();
            previous.set_current("k1".into(), SECRET.into());
            previous.add_previous(secret.into(), "k0".into());
            let shown = format!("{previous:?}");
            assert!(!shown.contains(&secret[..12]), "{shown}");
            let err = previous.build().unwrap_err();
            assert!(err.message().contains("previous_hold_secret #1"), "{err}");
            assert!(!err.to_string().contains(&secret[..12]), "{err}");

            let mut orphan = HoldSecrets::default();
            orphan.add_previous(secret.into(), "k0".into());
            let err = orphan.build().unwrap_err();
            assert!(!err.to_string().contains(&secret[..12]), "{err}");
        }
        let err = keys(&[(hex32, SECRET), ("k0", SECRET), (hex32, SECRET)]).unwrap_err();
        assert!(err.message().contains("previous_hold_secret #2"), "{err}");
        assert!(err.message().contains("already given"), "{err}");
        assert!(!err.to_string().contains(hex32), "{err}");
    }

    #[test]
    fn debug_shows_the_key_id_only() {
        let token = HoldToken::from("hold-v1.k1.cGF5bG9hZA.c2ln");
        assert_eq!(format!("{token:?}"), "HoldToken(k1, 26 bytes)");
        assert_eq!(
            format!("{:?}", HoldToken::from("x.y.z")),
            "HoldToken(y, 5 bytes)"
        );
        assert_eq!(
            format!("{:?}", HoldToken::from("")),
            "HoldToken(?, 0 bytes)"
        );
    }

    #[test]
    fn refusals_say_why() {
        let keys = keys(&[("k1", SECRET)]).unwrap();
        let why = |token: &str| verified_payload(&keys, token).err().unwrap().to_string();
        assert!(why("hold-v1.k1.e30").contains("four parts"));
        assert!(why("hold-v2.k1.e30.AAAA").contains("not hold-v1"));
        assert!(why("hold-v1.k9.e30.AAAA").contains("key id \"k9\""));
        assert!(why("hold-v1.k1.e30.AAAA").contains("signature"));
        assert!(why(&"a".repeat(MAX_TOKEN_BYTES + 1)).contains("more than"));
        // Signed, but not a hold: refused as malformed.
        let key = keys.key("k1").unwrap();
        let signed = "hold-v1.k1.e30";
        let tag = URL_SAFE_NO_PAD.encode(hmac::sign(key, signed.as_bytes()).as_ref());
        assert!(why(&format!("{signed}.{tag}")).contains("not a v1 hold"));
    }
}
