//! What the audit triggers add to a membership change and a feature change.

fn main() {}
