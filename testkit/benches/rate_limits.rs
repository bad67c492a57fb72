//! A rate-limit decision: one store round trip, beside a limit check.

fn main() {}
