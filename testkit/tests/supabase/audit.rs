//! The audit log through PostgREST: direct table writes leave a trace, nobody erases it.
