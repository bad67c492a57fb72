//! The SQL shipped in `migrations/`, tested on a private PostgreSQL cluster:
//! the migrations and the catalog, row-level security between and inside
//! organizations, organizations and the membership rules, recording usage,
//! reservations and the snapshot, reconciling counters with the event log,
//! the user directory, the rules Rust and SQL must agree on, and
//! the files after the baseline (store functions, schema version, the host
//! table guard, the metric domain, upgrading a baseline database).
//!
//! Every test shares one cluster (`tenancy_testkit::pg`) and uses fresh
//! organizations and users, so tests are independent; those that change the
//! schema make a database of their own. Without PostgreSQL they print
//! `SKIPPED` and pass, unless `TENANCY_REQUIRE_LIVE` is set.

mod agreement;
mod api;
mod audit;
mod catalog;
mod directory;
mod domains;
mod examples;
mod invitations;
mod leases;
mod members;
mod parity;
mod plans;
mod rate_limits;
mod reconcile;
mod reserve;
mod rls;
mod store_functions;
mod support;
mod usage;
mod usage_history;
