//! Org filters for query builders and scoped table handles. Work in
//! progress.
