//! Plans through the facade: the catalog, assignments and trials,
//! overrides, the effective view and `explain`, and mid-period changes.
