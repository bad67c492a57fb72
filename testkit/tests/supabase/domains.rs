//! Verified domains through PostgREST: joining with a user JWT, RLS on the table.
