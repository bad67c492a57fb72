//! `LeaseStore` over SQL.

use super::{Sql, SqlTransport};

impl<T: SqlTransport + ?Sized> Sql<'_, T> {}
