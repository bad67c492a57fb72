//! Invitations through PostgREST: accepting with a user JWT, RLS on the table.
