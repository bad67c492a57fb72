//! Rate limits through PostgREST: several `Tenancy` instances on one database.
