//! The plan pages: the operator's catalog, assignments, trials and
//! overrides, and an organization's own plan.
