//! Rate limits in SQL: the GCRA primitive, and several instances on one database.
