//! User mode: a store acting as the holder of verified claims, and the
//! host's own queries as that user.

use std::sync::Arc;

use serde_json::Value;
use tokio_postgres::Transaction;
use tokio_postgres::types::Type;

use super::PgStore;
use super::call::from_postgres_error;
use crate::error::{Error, Result};
use crate::ids::UserId;

/// A user's verified claims, as user mode sets them.
#[derive(Debug)]
pub(super) struct UserClaims {
    pub(super) role: String,
    pub(super) json: String,
}

impl PgStore {
    /// A user-mode store acting as the holder of `claims`: the payload of
    /// a Supabase access token **that the caller has verified** (for
    /// example with `tenancy::axum::TokenVerifier`). It shares this store's
    /// pool. `claims` must be an object with a `sub` that is a user id and
    /// a `role` (Supabase's is `authenticated`); otherwise `InvalidInput`.
    pub fn as_user(&self, claims: &Value) -> Result<PgStore> {
        let object = claims
            .as_object()
            .ok_or_else(|| Error::invalid_input("claims", "not a JSON object"))?;
        let sub = object
            .get("sub")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::invalid_input("claims", "no `sub`"))?;
        UserId::parse(sub).map_err(|_| Error::invalid_input("claims", "`sub` is not a user id"))?;
        let role = object
            .get("role")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
            .ok_or_else(|| Error::invalid_input("claims", "no `role`"))?;
        Ok(PgStore {
            inner: Arc::clone(&self.inner),
            user: Some(Arc::new(UserClaims {
                role: role.to_owned(),
                json: claims.to_string(),
            })),
        })
    }

    /// Whether this store acts as a user (user mode).
    pub fn is_user(&self) -> bool {
        self.user.is_some()
    }

    /// Runs `work` in one transaction acting as this store's user: the
    /// same transaction-local `role` and `request.jwt.claims` as every
    /// user-mode call, so row-level security filters the host's own tables
    /// (an adopted `brands`) as it does through PostgREST, and the task's
    /// audit context's request id as `request.headers` (the audit log's
    /// actor is the user either way). Commits when
    /// `work` returns `Ok`, rolls back otherwise. `PermissionDenied` on a
    /// service-mode store: use [`pool`](Self::pool) for the service's own
    /// queries.
    pub async fn user_transaction<R>(
        &self,
        work: impl AsyncFnOnce(&Transaction<'_>) -> Result<R>,
    ) -> Result<R> {
        let what = "a user transaction";
        let user = self.user.as_ref().ok_or_else(|| {
            Error::permission_denied(format!("{what} needs a user-mode store (PgStore::as_user)"))
        })?;
        let mut client = self.connection(what).await?;
        let fail = |e| from_postgres_error(e, what);
        let tx = client.transaction().await.map_err(fail)?;
        tx.query_typed(
            super::call::SET_CLAIMS,
            &[(&user.role, Type::TEXT), (&user.json, Type::TEXT)],
        )
        .await
        .map_err(fail)?;
        if let Some(headers) = super::call::audit_headers() {
            tx.query_typed(super::call::SET_HEADERS, &[(&headers, Type::TEXT)])
                .await
                .map_err(fail)?;
        }
        let result = work(&tx).await?;
        tx.commit().await.map_err(fail)?;
        Ok(result)
    }
}
