//! The console's rate limits: the org's usage page shows them, the operator sets them.
