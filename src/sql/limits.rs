//! Limits over SQL.

use super::args::{Deleted, LIMIT_COLUMNS, LimitIdArgs, LimitRow, OrgArg, PutLimitArgs};
use super::{Idempotent, Sql, SqlTransport, org_missing};
use crate::error::{Error, Result};
use crate::ids::{LimitId, OrgId};
use crate::limits::Limit;

impl<T: SqlTransport + ?Sized> Sql<'_, T> {
    pub(crate) async fn limits(&self, org: OrgId) -> Result<Vec<Limit>> {
        self.rpc(
            "tenancy_limits",
            "reading limits",
            Idempotent::Yes,
            &OrgArg { org_id: org },
        )
        .await
    }

    pub(crate) async fn put_limit(&self, limit: &Limit) -> Result<Limit> {
        let args = PutLimitArgs {
            limit_id: limit.id,
            org_id: limit.org,
            metric: &limit.metric,
            period: limit.period,
            limit_value: limit.value,
            mode: limit.mode,
            user_id: limit.scope.user(),
            created_at: limit.created_at,
            expires_at: limit.expires_at,
        };
        let rows: Vec<LimitRow> = self
            .rpc_rows(
                "tenancy_put_limit",
                Some(LIMIT_COLUMNS),
                "setting a limit",
                Idempotent::Yes,
                &args,
            )
            .await
            .map_err(org_missing(limit.org))?;
        rows.into_iter()
            .next()
            .map(Limit::from)
            .ok_or_else(|| Error::unexpected("tenancy_put_limit returned no row"))
    }

    pub(crate) async fn delete_limit(&self, org: OrgId, id: LimitId) -> Result<bool> {
        let args = LimitIdArgs {
            org_id: org,
            limit_id: id,
        };
        let deleted: Deleted = self
            .rpc(
                "tenancy_delete_limit",
                "deleting a limit",
                Idempotent::No,
                &args,
            )
            .await?;
        Ok(deleted.deleted)
    }
}
