//! Budget leases: slice sizing and local decisions, pure.
