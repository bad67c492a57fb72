//! # tenancy
//!
//! The multi-tenant layer for SaaS applications built on Supabase:
//! organizations with members and roles, org-scoped access, per-organization
//! feature flags, usage tracking of AI/API calls, and usage limits enforced
//! before expensive operations.
//!
//! - [`Tenancy`] is the facade, built with [`Tenancy::builder`] over a
//!   [`Store`]. People act through a [`TenantContext`]: a user in one
//!   organization with a role, which exists only after the store has
//!   confirmed the membership.
//! - Features: [`Tenancy::has_feature`] and [`Tenancy::feature_config`].
//! - Usage and limits: [`Tenancy::check_limit`], and [`Tenancy::reserve`] →
//!   [`Tenancy::commit`] / [`Tenancy::release`] for expensive operations;
//!   [`Tenancy::usage_summary`]. The guarantees (no overshoot, boundary
//!   rule, idempotency) are in the facade's metering docs on
//!   [`Tenancy::reserve`] and [`EXPIRED_HOLD_RETENTION`].
//! - The platform operator manages features and limits for any organization
//!   through [`Tenancy::operator`], never through an org role.
//! - Workers: [`UsageRecorder`] records usage without waiting on the
//!   network: batched, retried, spooled to disk when the backend is down
//!   ([`recorder`] for what `Ok` from `record` means).
//! - Stores: [`MemoryStore`] (embedded) and `supabase::SupabaseStore`
//!   (feature `supabase`: PostgREST, with the SQL in `migrations/`, and
//!   org-filtered queries of your own tables). Every backend passes the same
//!   store-contract suite (`store::contract`, feature `test-util`).
//! - Web hosts: the `axum` module (feature `axum`) verifies Supabase JWTs
//!   and extracts a [`TenantContext`], feature gates and metered calls.
//!
//! Expected outcomes are values — a limit denial is a [`LimitDecision`], an
//! absent organization is `None`, a disabled feature is `false` — and
//! errors ([`Error`], with an [`ErrorKind`]) are for failures.
//!
//! The modules follow the layers: [`model`], [`limits`], [`ids`], [`error`]
//! and [`clock`] are plain data and pure rules; [`store`] is the trait the
//! backends ([`memory`], `supabase`) implement; the facade ([`Tenancy`],
//! [`Operator`]) and the [`recorder`] sit on top; `axum` on top of those.
//!
//! ## Quickstart
//!
//! ```
//! use rust_decimal_macros::dec;
//! use tenancy::{Action, MemoryStore, NewLimit, NewOrganization, PlatformOperator, ReserveOutcome, Role, Tenancy, UserId};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> tenancy::Result<()> {
//! let tenancy = Tenancy::builder().store(MemoryStore::new()).build()?;
//! let operator = PlatformOperator::new("quickstart");
//! let (alice, bob) = (UserId::new_v7(), UserId::new_v7());
//!
//! // Alice creates an organization and adds Bob as a member.
//! let acme = tenancy.create_organization(alice, NewOrganization::new("Acme", "acme")?).await?;
//! let as_alice = tenancy.context(alice, acme.id).await?;
//! tenancy.add_member(&as_alice, bob, Role::Member).await?;
//!
//! // Bob may write data but not manage members.
//! let as_bob = tenancy.context(bob, acme.id).await?;
//! assert!(as_bob.can(Action::WriteData));
//! assert!(!as_bob.can(Action::ManageMembers));
//!
//! // Features are off until the operator turns them on.
//! assert!(!tenancy.has_feature(&as_bob, "veo_avatars").await?);
//! tenancy.operator(&operator).enable_feature(acme.id, "veo_avatars").await?;
//! assert!(tenancy.has_feature(&as_bob, "veo_avatars").await?);
//!
//! // Limits are checked and held before expensive work.
//! let limit = NewLimit::from_limit_type("monthly_tokens", dec!(1000))?;
//! tenancy.operator(&operator).set_limit(acme.id, limit).await?;
//! let ReserveOutcome::Granted(hold) = tenancy.reserve(&as_bob, "tokens", dec!(800)).await? else {
//!     panic!("800 of 1000 fits");
//! };
//! assert!(!tenancy.check_limit(&as_bob, "tokens", dec!(300)).await?.allowed);
//! tenancy.commit(&hold, dec!(650)).await?;
//! assert!(tenancy.check_limit(&as_bob, "tokens", dec!(300)).await?.allowed);
//! # Ok(()) }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
pub mod clock;
mod config;
#[cfg(feature = "console")]
#[cfg_attr(docsrs, doc(cfg(feature = "console")))]
pub mod console;
pub mod error;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod faults;
pub mod ids;
pub mod limits;
pub mod memory;
pub mod migrations;
pub mod model;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
pub mod recorder;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod reservation_model;
#[cfg(any(feature = "supabase", feature = "postgres"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "supabase", feature = "postgres"))))]
pub mod sql;
pub mod store;
#[cfg(feature = "supabase")]
#[cfg_attr(docsrs, doc(cfg(feature = "supabase")))]
pub mod supabase;
mod sync;
mod tenancy;

pub use async_trait::async_trait;

/// Compiles the README's code samples as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use crate::clock::{Clock, FakeClock, SystemClock};
pub use crate::error::{Error, ErrorKind, Result};
pub use crate::ids::{
    AsFeatureKey, EventId, FeatureKey, LimitId, MetricKey, OrgId, ReservationId, Slug, UserId,
};
pub use crate::limits::{
    AlertKey, AlertThresholds, CurrentPeriods, DecidingLimit, Limit, LimitAlert, LimitDecision,
    LimitLevel, LimitMode, LimitScope, LimitType, LimitUsage, NewLimit, Period, PeriodKey,
    Reservation, ReserveOutcome, UsageLine,
};
pub use crate::memory::MemoryStore;
pub use crate::model::{
    Action, Feature, FeatureChange, Membership, MembershipChange, ModelPrice, NewOrganization,
    OrgMembership, Organization, PlatformOperator, PriceTable, Role, TenantContext, UsageEvent,
    UsageRecord,
};
pub use crate::recorder::{
    RecorderBuilder, RecorderConfig, RecorderStats, ShutdownReport, UsageRecorder,
};
pub use crate::store::{CommitOutcome, DynStore, RecordOutcome, Store};
pub use crate::tenancy::{
    AlertSink, EXPIRED_HOLD_RETENTION, LogAlertSink, MAX_HISTORY_PERIODS, MAX_ORG_PAGE,
    MemberUsage, MemoryAlertSink, Operator, Service, Tenancy, TenancyBuilder,
};
