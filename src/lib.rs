//! # tenancy
//!
//! The multi-tenant layer for SaaS applications built on Supabase:
//! organizations with members and roles, org-scoped access, per-organization
//! feature flags, usage tracking of AI/API calls, and usage limits enforced
//! before expensive operations.
//!
//! - [`Tenancy`] is the facade, built with [`Tenancy::builder`] over a
//!   [`Store`](store::Store). People act through a [`TenantContext`]: a user in one
//!   organization with a role, which exists only after the store has
//!   confirmed the membership.
//! - Features: [`Tenancy::has_feature`] and [`Tenancy::feature_config`].
//! - Usage and limits: [`Tenancy::check_limit`], and [`Tenancy::reserve`] →
//!   [`Tenancy::commit`] / [`Tenancy::release`] for expensive operations;
//!   [`Tenancy::usage_summary`]. The guarantees (no overshoot, boundary
//!   rule, idempotency) are in the facade's metering docs on
//!   [`Tenancy::reserve`] and [`EXPIRED_HOLD_RETENTION`].
//! - Plans: versioned tiers of features and limits with trials and expiring
//!   overrides ([`model::plan`]); every reader uses the organization's
//!   effective view, and [`Tenancy::explain`] says where a value came from.
//! - Usage history: [`Tenancy::usage_report`] and [`Tenancy::usage_events`]
//!   from rollups and the event log, [`Tenancy::reprice`], CSV/NDJSON
//!   exports and a Stripe meter export ([`model::report`]).
//! - The platform operator manages features and limits for any organization
//!   through [`Tenancy::operator`], never through an org role; back-end
//!   services record usage for any organization through
//!   [`Tenancy::service`].
//! - Workers: [`UsageRecorder`] records usage without waiting on the
//!   network: batched, retried, spooled to disk when the backend is down
//!   ([`recorder`] for what `Ok` from `record` means).
//! - Stores: [`MemoryStore`] (embedded), and one SQL store (the SQL in
//!   `migrations/`, embedded as [`migrations`]) over two transports:
//!   `supabase::SupabaseStore` (feature `supabase`: PostgREST, with
//!   org-filtered queries of your own tables) and `postgres::PgStore`
//!   (feature `postgres`: direct connections through Supabase's pooler).
//!   Every backend passes the same store-contract suite (`store::contract`,
//!   feature `test-util`).
//! - Web hosts: the `axum` module (feature `axum`) verifies Supabase JWTs
//!   and extracts a [`TenantContext`], feature gates and metered calls.
//!
//! Expected outcomes are values — a limit denial is a [`LimitDecision`], an
//! absent organization is `None`, a disabled feature is `false` — and
//! errors ([`Error`], with an [`ErrorKind`]) are for failures.
//!
//! The modules follow the layers: [`model`], [`limits`], [`ids`], [`error`]
//! and [`clock`] are plain data and pure rules; [`store`] holds the
//! capability traits the backends ([`memory`], and `sql` over `supabase` and
//! `postgres`) implement; the facade ([`Tenancy`], [`Operator`],
//! [`Service`]) and the [`recorder`] sit on top; `axum` and `console` on top
//! of those. The crate root holds the facade, the ids, the errors, and what
//! facade calls take and return; everything else is in its module.
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
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
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

// The root holds the facade, ids, errors, and what facade calls take and
// return; everything else has one path, in its module.
pub use crate::error::{Error, ErrorKind, Result};
pub use crate::ids::{
    AsFeatureKey, EventId, FeatureKey, LimitId, MetricKey, OrgId, PlanKey, ReservationId, Slug,
    UserId,
};
pub use crate::limits::lease::LeaseConfig;
pub use crate::limits::rate::{NewRateLimit, RateDecision, RateLimit};
pub use crate::limits::{
    Limit, LimitDecision, NewLimit, Period, Reservation, ReserveOutcome, UsageLine,
};
pub use crate::memory::MemoryStore;
pub use crate::model::audit::{AuditActor, AuditEvent, AuditPage, AuditQuery, RequestId};
pub use crate::model::domain::{AutoJoin, JoinOutcome, JoinableOrg, VerifiedDomain};
pub use crate::model::invitation::{
    AcceptedInvitation, CreatedInvitation, Invitation, InvitationId, NewInvitation,
};
pub use crate::model::plan::{
    AssignPlan, Entitlement, EntitlementSource, EntitlementValue, Entitlements, Explanation,
    MigratePlan, NewPlanVersion, PlanAssignment, PlanRef, PlanVersion,
};
pub use crate::model::report::{
    EventQuery, ExportFormat, Granularity, Meter, MeterSink, ReportDimension, ReportQuery,
};
pub use crate::model::{
    Action, Feature, FeatureChange, Membership, NewOrganization, OrgMembership, Organization,
    PlatformOperator, Role, TenantContext, UsageEvent, UserProfile,
};
pub use crate::recorder::UsageRecorder;
pub use crate::store::{CommitOutcome, RecordOutcome};
#[cfg(feature = "hold-tokens")]
#[cfg_attr(docsrs, doc(cfg(feature = "hold-tokens")))]
pub use crate::tenancy::HoldToken;
pub use crate::tenancy::{
    EXPIRED_HOLD_RETENTION, LeaseShutdown, LeasedMeter, LeasedOutcome, LeasedReservation,
    MAX_HISTORY_PERIODS, MAX_ORG_PAGE, MemberUsage, Operator, Service, Tenancy, TenancyBuilder,
};

/// Where alerts go: the [`AlertSink`](alerts::AlertSink) a
/// [`Tenancy`] delivers them to, and its sinks: the log, memory, and
/// (feature `webhook`) signed webhooks in `alerts::webhook`. The alert
/// itself and its thresholds are in [`limits`]
/// ([`LimitAlert`](limits::LimitAlert),
/// [`AlertThresholds`](limits::AlertThresholds)).
pub mod alerts {
    #[cfg(feature = "webhook")]
    #[cfg_attr(docsrs, doc(cfg(feature = "webhook")))]
    pub use crate::tenancy::webhook;
    pub use crate::tenancy::{AlertSink, LogAlertSink, MemoryAlertSink};
}
