//! Budget leases through PostgREST: the hot organization and the crashed instance.
