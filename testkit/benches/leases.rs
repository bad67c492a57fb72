//! Budget leases: the hot organization, and a local decision beside governor's GCRA.

fn main() {}
