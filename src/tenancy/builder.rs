//! Configuring and building a [`Tenancy`].

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;

use super::alerts::{AlertQueue, AlertSink, LogAlertSink};
use super::cache::propagation::{Propagating, Propagation};
use super::cache::{CacheConfig, CachingStore};
#[cfg(feature = "hold-tokens")]
use super::hold_token::HoldSecrets;
use super::invitations::InvitationConfig;
use super::{Inner, Tenancy};
use crate::clock::{Clock, SystemClock};
use crate::config::{check_count, check_duration};
use crate::error::{Error, Result};
use crate::limits::AlertThresholds;
use crate::model::invitation::{InvitationSender, LogInvitationSender};
use crate::store::{DynStore, Store, UserDirectory};

/// How often the caches read the store's entitlements version, unless set
/// (when the store pushes no changes).
const DEFAULT_ENTITLEMENT_POLL: Duration = Duration::from_secs(1);
/// The shortest entitlement poll interval accepted.
const MIN_ENTITLEMENT_POLL: Duration = Duration::from_millis(10);
/// The longest entitlement poll interval accepted: one hour.
const MAX_ENTITLEMENT_POLL: Duration = Duration::from_secs(3600);
/// The longest cache TTL accepted: one day.
const MAX_CACHE_TTL: Duration = Duration::from_secs(24 * 3600);
/// The longest reservation TTL accepted: seven days.
const MAX_RESERVATION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// The largest cache accepted, in entries.
const MAX_CACHE_CAPACITY: usize = 10_000_000;
/// The default invitation lifetime: seven days.
const DEFAULT_INVITATION_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);
/// The shortest invitation lifetime an operator may allow: five minutes.
const MIN_INVITATION_EXPIRY: Duration = Duration::from_secs(5 * 60);
/// The longest invitation lifetime an operator may allow: 90 days, which
/// the SQL functions enforce too (`tenancy.max_invitation_lifetime()`).
const MAX_INVITATION_EXPIRY: Duration = Duration::from_secs(90 * 24 * 3600);

/// Configures and builds a [`Tenancy`]. Every setting has a default except
/// the store; [`build`](Self::build) checks them all, so a setting out of
/// range is a `Config` error naming it, never a failure later.
///
/// ```
/// use std::time::Duration;
/// use tenancy::{ErrorKind, MemoryStore, Tenancy};
///
/// let tenancy = Tenancy::builder()
///     .store(MemoryStore::new())
///     .feature_cache_ttl(Duration::from_secs(10))
///     .build()?;
///
/// let err = Tenancy::builder().store(MemoryStore::new()).reservation_ttl(Duration::MAX).build().unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Config);
/// assert!(err.message().contains("reservation_ttl"));
/// # Ok::<(), tenancy::Error>(())
/// ```
#[derive(Debug)]
pub struct TenancyBuilder {
    store: Option<Arc<DynStore>>,
    clock: Arc<dyn Clock>,
    feature_cache_ttl: Duration,
    feature_cache_capacity: usize,
    entitlement_poll: Duration,
    membership_cache_ttl: Duration,
    membership_cache_capacity: usize,
    reservation_ttl: Duration,
    alert_thresholds: AlertThresholds,
    alert_sink: Arc<dyn AlertSink>,
    alert_delivery_attempts: u32,
    alert_concurrency: usize,
    user_directory: Option<Arc<dyn UserDirectory>>,
    invitation_expiry: Duration,
    invitation_expiry_bounds: (Duration, Duration),
    invitation_accept_url: String,
    invitation_sender: Arc<dyn InvitationSender>,
    #[cfg(feature = "hold-tokens")]
    hold_secrets: HoldSecrets,
}

impl Default for TenancyBuilder {
    fn default() -> Self {
        TenancyBuilder {
            store: None,
            clock: Arc::new(SystemClock),
            feature_cache_ttl: Duration::from_secs(30),
            entitlement_poll: DEFAULT_ENTITLEMENT_POLL,
            feature_cache_capacity: 10_000,
            membership_cache_ttl: Duration::ZERO,
            membership_cache_capacity: 100_000,
            reservation_ttl: Duration::from_secs(600),
            alert_thresholds: AlertThresholds::default(),
            alert_sink: Arc::new(LogAlertSink),
            alert_delivery_attempts: 3,
            alert_concurrency: 8,
            user_directory: None,
            invitation_expiry: DEFAULT_INVITATION_EXPIRY,
            invitation_expiry_bounds: (
                Duration::from_secs(3600),
                Duration::from_secs(30 * 24 * 3600),
            ),
            invitation_accept_url: "/invitations/accept".into(),
            invitation_sender: Arc::new(LogInvitationSender),
            #[cfg(feature = "hold-tokens")]
            hold_secrets: HoldSecrets::default(),
        }
    }
}

impl TenancyBuilder {
    /// The store to run on. Required.
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// A store already behind an `Arc`, to share it with other code.
    pub fn shared_store(mut self, store: Arc<DynStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The clock; [`SystemClock`] by default.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How long an organization (name, time zone), its features and its
    /// limits stay cached. Default 30 s, at most a day; zero disables the
    /// cache. Changes made through this `Tenancy` are visible at once;
    /// changes made elsewhere within this bound.
    pub fn feature_cache_ttl(mut self, ttl: Duration) -> Self {
        self.feature_cache_ttl = ttl;
        self
    }

    /// How often the caches ask the store whether any organization's
    /// entitlements changed, when the store does not push changes. Default
    /// 1 s; 10 ms to 1 hour, else a `Config` error from
    /// [`build`](Self::build) naming `entitlement_poll`.
    ///
    /// Every `Tenancy` forgets cached features, limits and rate limits
    /// changed through **any** instance (a plan version, an assignment, a
    /// migration, an override, a feature or limit set by the operator or in
    /// SQL), not only through itself:
    ///
    /// - **pushed**, when the store streams changes
    ///   ([`PlanStore::watch_entitlements`](crate::store::PlanStore::watch_entitlements)):
    ///   `PgStore` (feature `postgres`) built with a
    ///   `PgStoreBuilder::listen_url` (one `LISTEN` connection to a direct
    ///   or session-mode endpoint), and `MemoryStore`. Bound on `PgStore`:
    ///   **p95 ≤ 250 ms** from the write returning to the other instance's
    ///   cached read honouring it (tested with two instances, the writer
    ///   through PgBouncer in transaction mode, 50 changes; measured p95
    ///   4–8 ms, BENCHMARKS.md "Plans").
    /// - **polled** otherwise (`SupabaseStore`,
    ///   `PgStore` without a listen URL): a cheap version counter
    ///   (`tenancy_entitlements_version()`) read every `entitlement_poll`;
    ///   a change is honoured within the interval plus one round trip:
    ///   **≤ 5 s** with the default (1 s).
    ///
    /// Propagation runs as one background task per `Tenancy`, started at
    /// [`build`](Self::build) inside a tokio runtime, or else on the first
    /// call made inside one; it ends when the last clone of the `Tenancy`
    /// is dropped (or when the runtime it started on shuts down: build the
    /// `Tenancy` on the runtime that serves it). Store errors are logged and retried; meanwhile (and on a
    /// store without plans) the [`feature_cache_ttl`](Self::feature_cache_ttl)
    /// remains the bound.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenancy::{ErrorKind, MemoryStore, Tenancy};
    ///
    /// let tenancy = Tenancy::builder()
    ///     .store(MemoryStore::new())
    ///     .entitlement_poll(Duration::from_millis(500))
    ///     .build()?;
    ///
    /// let err = Tenancy::builder()
    ///     .store(MemoryStore::new())
    ///     .entitlement_poll(Duration::ZERO)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Config);
    /// assert!(err.message().contains("entitlement_poll"));
    /// # Ok::<(), tenancy::Error>(())
    /// ```
    pub fn entitlement_poll(mut self, interval: Duration) -> Self {
        self.entitlement_poll = interval;
        self
    }

    /// How many organizations' data to cache. Default 10 000; 1 to
    /// 10 000 000.
    pub fn feature_cache_capacity(mut self, capacity: usize) -> Self {
        self.feature_cache_capacity = capacity;
        self
    }

    /// How long a confirmed membership may be reused by
    /// [`Tenancy::context`] before asking the store again. Default zero:
    /// every call asks the store, so a removed member's next call fails.
    /// With a TTL (at most a day), a member removed through another
    /// instance keeps access for at most this long; one removed through this
    /// instance loses it at once.
    pub fn membership_cache_ttl(mut self, ttl: Duration) -> Self {
        self.membership_cache_ttl = ttl;
        self
    }

    /// How many memberships to cache. Default 100 000; 1 to 10 000 000.
    pub fn membership_cache_capacity(mut self, capacity: usize) -> Self {
        self.membership_cache_capacity = capacity;
        self
    }

    /// How long a reservation holds its estimate if neither committed nor
    /// released. Default 10 minutes; 1 second to 7 days.
    pub fn reservation_ttl(mut self, ttl: Duration) -> Self {
        self.reservation_ttl = ttl;
        self
    }

    /// The alert thresholds; 80 %, 90 %, 100 % by default.
    pub fn alert_thresholds(mut self, thresholds: AlertThresholds) -> Self {
        self.alert_thresholds = thresholds;
        self
    }

    /// Where alerts go; [`LogAlertSink`] by default.
    pub fn alert_sink(mut self, sink: impl AlertSink) -> Self {
        self.alert_sink = Arc::new(sink);
        self
    }

    /// A sink already behind an `Arc`, to keep a handle on it.
    pub fn shared_alert_sink(mut self, sink: Arc<dyn AlertSink>) -> Self {
        self.alert_sink = sink;
        self
    }

    /// How many times to try delivering one alert before logging the
    /// failure. Default 3; 1 to 20.
    pub fn alert_delivery_attempts(mut self, attempts: u32) -> Self {
        self.alert_delivery_attempts = attempts;
        self
    }

    /// How many alerts may be delivered at once, off the write path.
    /// Default 8; 1 to 256.
    pub fn alert_concurrency(mut self, concurrency: usize) -> Self {
        self.alert_concurrency = concurrency;
        self
    }

    /// Where names and emails come from: [`Tenancy::member_profiles`] and
    /// [`Tenancy::profiles`] ask it about members of the caller's
    /// organization. A SQL store is its own directory (over `auth.users`):
    /// pass a clone of it; with [`MemoryStore`](crate::MemoryStore), a
    /// filled [`MemoryUserDirectory`](crate::memory::MemoryUserDirectory)
    /// or the host's own.
    ///
    /// Without one, profiles carry the user id alone (no email, no name):
    /// names are display data, and pages show the id in their place.
    ///
    /// ```
    /// use tenancy::memory::MemoryUserDirectory;
    /// use tenancy::{MemoryStore, Tenancy};
    ///
    /// let tenancy = Tenancy::builder()
    ///     .store(MemoryStore::new())
    ///     .user_directory(MemoryUserDirectory::new())
    ///     .build()?;
    /// # Ok::<(), tenancy::Error>(())
    /// ```
    pub fn user_directory(mut self, directory: impl UserDirectory) -> Self {
        self.user_directory = Some(Arc::new(directory));
        self
    }

    /// A directory already behind an `Arc`, to keep a handle on it (to fill
    /// a [`MemoryUserDirectory`](crate::memory::MemoryUserDirectory) later).
    pub fn shared_user_directory(mut self, directory: Arc<dyn UserDirectory>) -> Self {
        self.user_directory = Some(directory);
        self
    }

    /// How long an invitation lasts when its creator names no lifetime.
    /// Default 7 days; within
    /// [`invitation_expiry_bounds`](Self::invitation_expiry_bounds).
    pub fn invitation_expiry(mut self, expiry: Duration) -> Self {
        self.invitation_expiry = expiry;
        self
    }

    /// The shortest and longest lifetime an invitation's creator may name
    /// ([`NewInvitation::expires_in`](crate::model::invitation::NewInvitation::expires_in)).
    /// Default 1 hour to 30 days; the shortest at least 5 minutes, the
    /// longest at most 90 days (the SQL functions refuse longer), the
    /// shortest no longer than the longest, and the default
    /// [`invitation_expiry`](Self::invitation_expiry) between them: a
    /// `Config` error from [`build`](Self::build) naming
    /// `invitation_expiry_bounds` or `invitation_expiry` otherwise.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenancy::{ErrorKind, MemoryStore, Tenancy};
    ///
    /// let day = Duration::from_secs(86_400);
    /// let tenancy = Tenancy::builder()
    ///     .store(MemoryStore::new())
    ///     .invitation_expiry(2 * day)
    ///     .invitation_expiry_bounds(day, 14 * day)
    ///     .build()?;
    ///
    /// let err = Tenancy::builder()
    ///     .store(MemoryStore::new())
    ///     .invitation_expiry(20 * day)
    ///     .invitation_expiry_bounds(day, 14 * day)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Config);
    /// assert!(err.message().contains("invitation_expiry"));
    /// # Ok::<(), tenancy::Error>(())
    /// ```
    pub fn invitation_expiry_bounds(mut self, shortest: Duration, longest: Duration) -> Self {
        self.invitation_expiry_bounds = (shortest, longest);
        self
    }

    /// Where an invitation's link points: the page of the host (or of the
    /// console) that accepts it, to which
    /// `token=<token>` is added as a query parameter. Default
    /// `/invitations/accept` (the console's accept page, relative: set an
    /// absolute URL when invitations are emailed). `Config` naming
    /// `invitation_accept_url` when it is blank or holds spaces, a `#` or
    /// control characters.
    pub fn invitation_accept_url(mut self, base: impl Into<String>) -> Self {
        self.invitation_accept_url = base.into();
        self
    }

    /// Who delivers email invitations; [`LogInvitationSender`] by default
    /// (development only: it logs live tokens).
    ///
    /// [`LogInvitationSender`]: crate::model::invitation::LogInvitationSender
    pub fn invitation_sender(mut self, sender: impl InvitationSender) -> Self {
        self.invitation_sender = Arc::new(sender);
        self
    }

    /// A sender already behind an `Arc`, to keep a handle on it (a
    /// [`MemoryInvitationSender`](crate::model::invitation::MemoryInvitationSender)
    /// in tests).
    pub fn shared_invitation_sender(mut self, sender: Arc<dyn InvitationSender>) -> Self {
        self.invitation_sender = sender;
        self
    }

    /// The secret that signs [hold tokens](crate::HoldToken), under
    /// `key_id`, which every token names: [`Tenancy::seal`] signs with it
    /// and [`Tenancy::open`] accepts it. Give the API and its workers the
    /// same one; keep it out of logs and source (`Debug` shows only the
    /// key id).
    ///
    /// The secret is at least [`HoldToken::MIN_SECRET_BYTES`] (32) bytes,
    /// for example 32 random bytes, or 64 hex digits used as text; the key
    /// id is 1 to 32 of `A-Z a-z 0-9 _ -`, a name such as `2026-03`. Either
    /// wrong is a `Config` error from [`build`](Self::build) naming
    /// `hold_secret` (never the secret). To rotate, see
    /// [`previous_hold_secret`](Self::previous_hold_secret).
    ///
    /// ```
    /// use tenancy::{ErrorKind, MemoryStore, Tenancy};
    ///
    /// let secret = std::env::var("TENANCY_HOLD_SECRET")
    ///     .unwrap_or_else(|_| "an example secret of 32 bytes or more".into());
    /// let tenancy = Tenancy::builder().store(MemoryStore::new()).hold_secret("2026-03", secret).build()?;
    ///
    /// let err = Tenancy::builder().store(MemoryStore::new()).hold_secret("k1", "hunter2").build().unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Config);
    /// assert!(err.message().contains("hold_secret") && !err.message().contains("hunter2"));
    /// # Ok::<(), tenancy::Error>(())
    /// ```
    ///
    /// [`HoldToken::MIN_SECRET_BYTES`]: crate::HoldToken::MIN_SECRET_BYTES
    #[cfg(feature = "hold-tokens")]
    #[cfg_attr(docsrs, doc(cfg(feature = "hold-tokens")))]
    pub fn hold_secret(mut self, key_id: impl Into<String>, secret: impl AsRef<[u8]>) -> Self {
        self.hold_secrets
            .set_current(key_id.into(), secret.as_ref().to_vec());
        self
    }

    /// A secret that [`Tenancy::open`] still accepts, under its own
    /// `key_id`, but no longer signs with: for rotating the
    /// [`hold_secret`](Self::hold_secret) without refusing the tokens
    /// already in queues. May be called several times; needs a
    /// `hold_secret`, and the same checks apply.
    ///
    /// To rotate: deploy the new secret as `previous_hold_secret` on every
    /// worker, then swap the two (new as `hold_secret`, old as
    /// `previous_hold_secret`) on the API and the workers, and drop the old
    /// one once its tokens can no longer be opened (the reservation TTL
    /// plus [`EXPIRED_HOLD_RETENTION`](crate::EXPIRED_HOLD_RETENTION)), or
    /// as soon as it may have leaked.
    #[cfg(feature = "hold-tokens")]
    #[cfg_attr(docsrs, doc(cfg(feature = "hold-tokens")))]
    pub fn previous_hold_secret(
        mut self,
        key_id: impl Into<String>,
        secret: impl AsRef<[u8]>,
    ) -> Self {
        self.hold_secrets
            .add_previous(key_id.into(), secret.as_ref().to_vec());
        self
    }

    /// Validates the configuration and builds the facade. A missing store
    /// or a setting outside its documented range is a `Config` error naming
    /// the setting.
    pub fn build(self) -> Result<Tenancy> {
        let store = self.store.ok_or_else(|| {
            Error::config(
                "Tenancy::builder() needs a store: call .store(MemoryStore::new()) or another backend",
            )
        })?;
        check_duration(
            "feature_cache_ttl",
            self.feature_cache_ttl,
            Duration::ZERO,
            MAX_CACHE_TTL,
        )?;
        check_duration(
            "entitlement_poll",
            self.entitlement_poll,
            MIN_ENTITLEMENT_POLL,
            MAX_ENTITLEMENT_POLL,
        )?;
        check_duration(
            "membership_cache_ttl",
            self.membership_cache_ttl,
            Duration::ZERO,
            MAX_CACHE_TTL,
        )?;
        check_duration(
            "reservation_ttl",
            self.reservation_ttl,
            Duration::from_secs(1),
            MAX_RESERVATION_TTL,
        )?;
        check_count(
            "feature_cache_capacity",
            self.feature_cache_capacity,
            1,
            MAX_CACHE_CAPACITY,
        )?;
        check_count(
            "membership_cache_capacity",
            self.membership_cache_capacity,
            1,
            MAX_CACHE_CAPACITY,
        )?;
        check_count(
            "alert_delivery_attempts",
            self.alert_delivery_attempts as usize,
            1,
            20,
        )?;
        check_count("alert_concurrency", self.alert_concurrency, 1, 256)?;
        let (shortest, longest) = self.invitation_expiry_bounds;
        check_duration(
            "invitation_expiry_bounds (the shortest)",
            shortest,
            MIN_INVITATION_EXPIRY,
            MAX_INVITATION_EXPIRY,
        )?;
        check_duration(
            "invitation_expiry_bounds (the longest)",
            longest,
            shortest,
            MAX_INVITATION_EXPIRY,
        )?;
        check_duration(
            "invitation_expiry",
            self.invitation_expiry,
            shortest,
            longest,
        )?;
        let accept_url = self.invitation_accept_url.trim();
        if accept_url.is_empty()
            || accept_url
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '#')
        {
            return Err(Error::config(format!(
                "invitation_accept_url {:?} must be a URL or a path without spaces, control characters or a #",
                self.invitation_accept_url
            )));
        }
        let invitations = InvitationConfig {
            expiry: self.invitation_expiry,
            min_expiry: shortest,
            max_expiry: longest,
            accept_url: accept_url.to_owned(),
            sender: self.invitation_sender,
        };
        #[cfg(feature = "hold-tokens")]
        let hold_keys = self.hold_secrets.build()?;
        let reservation_ttl = TimeDelta::from_std(self.reservation_ttl).map_err(|e| {
            Error::config("reservation_ttl does not fit a time span").with_source(e)
        })?;
        let (org_ttl, org_capacity) = (self.feature_cache_ttl, self.feature_cache_capacity);
        let propagation = Propagation::new(self.entitlement_poll);
        // Outside a runtime, the first store call made inside one starts
        // propagation; inside one, it starts below and needs no hook.
        let store: Arc<DynStore> = if tokio::runtime::Handle::try_current().is_ok() {
            store
        } else {
            Arc::new(Propagating::new(store, Arc::clone(&propagation)))
        };
        let cached = Arc::new(CachingStore::new(
            store,
            Arc::clone(&self.clock),
            CacheConfig {
                org_capacity,
                org_ttl,
                membership_capacity: self.membership_cache_capacity,
                membership_ttl: self.membership_cache_ttl,
            },
        ));
        propagation.attach(&cached);
        // Alert checks read and claim through the same caching store.
        let alerts = AlertQueue::new(
            Arc::clone(&cached) as Arc<DynStore>,
            Arc::clone(&self.clock),
            self.alert_sink,
            self.alert_thresholds,
            self.alert_delivery_attempts,
            self.alert_concurrency,
        );
        Ok(Tenancy {
            inner: Arc::new(Inner {
                store: cached,
                clock: self.clock,
                reservation_ttl,
                alerts,
                directory: self.user_directory,
                invitations,
                #[cfg(feature = "hold-tokens")]
                hold_keys,
            }),
        })
    }
}
