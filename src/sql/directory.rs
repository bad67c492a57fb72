//! The user directory over SQL: `tenancy_user_profiles` reads
//! `auth.users` and shows each caller only whom it may see.

use serde::Serialize;

use super::{Idempotent, Sql, SqlTransport};
use crate::error::{Error, Result};
use crate::ids::UserId;
use crate::model::UserProfile;
use crate::store::MAX_PROFILE_IDS;

/// Arguments of `tenancy_user_profiles`.
#[derive(Debug, Serialize)]
struct ProfilesArgs<'a> {
    user_ids: &'a [UserId],
}

impl<T: SqlTransport + ?Sized> Sql<'_, T> {
    pub(crate) async fn profiles(&self, users: &[UserId]) -> Result<Vec<UserProfile>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        if users.len() > MAX_PROFILE_IDS {
            return Err(Error::invalid_input(
                "users",
                format!("{} ids; at most {MAX_PROFILE_IDS} a call", users.len()),
            ));
        }
        self.rpc(
            "tenancy_user_profiles",
            "reading user profiles",
            Idempotent::Yes,
            &ProfilesArgs { user_ids: users },
        )
        .await
    }
}
