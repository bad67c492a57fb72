//! Reservations: hold an estimate against every applicable limit, then
//! commit the actual amount or release it.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;

use crate::ids::{MetricKey, OrgId, ReservationId, UserId};
use crate::limits::decision::LimitDecision;
use crate::limits::period::CurrentPeriods;

/// An amount held against every applicable limit until it is committed,
/// released, or expires.
///
/// Pass it to [`Tenancy::commit`](crate::Tenancy::commit) with the actual
/// amount once the expensive operation is done, or to
/// [`Tenancy::release`](crate::Tenancy::release) if it failed. A reservation
/// that is dropped stops counting when it expires; no background job is
/// needed.
///
/// It cannot be built or deserialized outside this crate: only
/// [`Tenancy::reserve`](crate::Tenancy::reserve) makes one, for the hold it
/// just wrote, and (feature `hold-tokens`) `Tenancy::open` gives one back
/// from a token that `Tenancy::seal` signed with the same secret, so a hold
/// can travel to a worker. And the store checks, when it is committed or
/// released, that the hold exists for that organization and user, so even
/// a hold id copied from elsewhere cannot record usage into another
/// organization.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "commit or release a reservation; a dropped one holds budget until it expires"]
pub struct Reservation {
    id: ReservationId,
    org: OrgId,
    user: UserId,
    timezone: Tz,
    periods: CurrentPeriods,
    expires_at: DateTime<Utc>,
    /// Its metric and amount are the reservation's.
    decision: LimitDecision,
}

impl Reservation {
    /// The hold `id` of `user` in `org` (whose time zone is `timezone`),
    /// for `decision.requested` of `decision.metric`.
    pub(crate) fn new(
        id: ReservationId,
        org: OrgId,
        user: UserId,
        timezone: Tz,
        periods: CurrentPeriods,
        expires_at: DateTime<Utc>,
        decision: LimitDecision,
    ) -> Self {
        Reservation {
            id,
            org,
            user,
            timezone,
            periods,
            expires_at,
            decision,
        }
    }

    /// Its id; the committed usage event gets the same id.
    pub fn id(&self) -> ReservationId {
        self.id
    }

    /// The organization.
    pub fn org(&self) -> OrgId {
        self.org
    }

    /// The user it was made for.
    pub fn user(&self) -> UserId {
        self.user
    }

    /// The metric held.
    pub fn metric(&self) -> &MetricKey {
        &self.decision.metric
    }

    /// The amount held.
    pub fn amount(&self) -> Decimal {
        self.decision.requested
    }

    /// The organization's time zone when it was reserved.
    pub(crate) fn timezone(&self) -> Tz {
        self.timezone
    }

    /// The periods it holds in, and the periods its committed usage counts
    /// in, wherever the commit falls.
    pub fn periods(&self) -> CurrentPeriods {
        self.periods
    }

    /// When the hold lapses if neither committed nor released.
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }

    /// The decision that granted it.
    pub fn decision(&self) -> &LimitDecision {
        &self.decision
    }
}

/// The result of [`Tenancy::reserve`](crate::Tenancy::reserve): a held
/// reservation, or the denial that refused it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum ReserveOutcome {
    /// The estimate fits under every hard limit and is now held.
    Granted(Reservation),
    /// Some hard limit would be passed; nothing is held.
    Denied(LimitDecision),
}

impl ReserveOutcome {
    /// The decision, granted or not.
    pub fn decision(&self) -> &LimitDecision {
        match self {
            ReserveOutcome::Granted(r) => &r.decision,
            ReserveOutcome::Denied(d) => d,
        }
    }

    /// The reservation, if granted.
    pub fn granted(self) -> Option<Reservation> {
        match self {
            ReserveOutcome::Granted(r) => Some(r),
            ReserveOutcome::Denied(_) => None,
        }
    }
}
