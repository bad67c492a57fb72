//! The facade's scenarios, once, on `MemoryStore` with a fake clock:
//! organizations, members and contexts, members' names and emails, features, usage, limits and
//! reservations, period rollovers, alerts and summaries, and the operator's
//! handle. They test the policy `Tenancy` adds above a store; what every
//! backend must do is the store-contract suite's business.

#[path = "facade/alerts.rs"]
mod alerts;
#[path = "facade/audit.rs"]
mod audit;
#[path = "facade/domains.rs"]
mod domains;
#[path = "facade/features.rs"]
mod features;
#[path = "facade/hold_tokens.rs"]
mod hold_tokens;
#[path = "facade/input.rs"]
mod input;
#[path = "facade/invitations.rs"]
mod invitations;
#[path = "facade/isolation.rs"]
mod isolation;
#[path = "facade/leases.rs"]
mod leases;
#[path = "facade/limits.rs"]
mod limits;
#[path = "facade/members.rs"]
mod members;
#[path = "facade/metrics.rs"]
mod metrics;
#[path = "facade/operator.rs"]
mod operator;
#[path = "facade/orgs.rs"]
mod orgs;
#[path = "facade/ownership.rs"]
mod ownership;
#[path = "facade/people.rs"]
mod people;
#[path = "facade/periods.rs"]
mod periods;
#[path = "facade/plans.rs"]
mod plans;
#[path = "facade/rate_limits.rs"]
mod rate_limits;
#[path = "facade/reports.rs"]
mod reports;
#[path = "facade/reservations.rs"]
mod reservations;
#[path = "facade/scene.rs"]
mod scene;
#[path = "facade/summary.rs"]
mod summary;
#[path = "facade/usage.rs"]
mod usage;
#[path = "facade/webhook.rs"]
mod webhook;
