//! The effective view of an organization's entitlements, as one pure rule:
//! its plan version (the assignment's, or the fallback once a trial ended)
//! with its unexpired overrides on top.
