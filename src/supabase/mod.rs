//! `SupabaseStore`: the production backend over PostgREST (feature
//! `supabase`). Work in progress.
