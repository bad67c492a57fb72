//! The usage-history migration: rollups kept with the record primitive,
//! event reads under RLS, partitions and retention, exports.
