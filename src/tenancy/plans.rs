//! Plans through the facade: the operator's catalog and assignments (on
//! [`Operator`](super::Operator)), and what a member reads: the
//! organization's effective plan and `explain`.
