//! `ReportStore` over SQL: the rollups, event reads, exports and retention
//! of `migrations/20261206001300_tenancy_usage_history.sql`.
