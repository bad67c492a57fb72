//! [`UserDirectory`]: who users are, for pages that show people.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::ids::UserId;
use crate::model::UserProfile;

/// The most user ids one [`UserDirectory::profiles`] call takes: the SQL
/// function refuses more (`22023`), and the facade asks in chunks of this
/// size.
pub const MAX_PROFILE_IDS: usize = 1000;

/// Resolves user ids to display data (email, name): an optional
/// capability, handed to [`TenancyBuilder::user_directory`](crate::TenancyBuilder::user_directory).
///
/// The SQL stores implement it over `auth.users`
/// (`public.tenancy_user_profiles`); with [`MemoryStore`](crate::MemoryStore)
/// the host supplies one, such as a filled
/// [`MemoryUserDirectory`](crate::memory::MemoryUserDirectory).
///
/// The contract:
///
/// - answers at most one profile per id asked for, in any order; an id it
///   does not know, or whose data the caller may not learn, is left out
///   (never an error that would tell a stranger the user exists);
/// - takes at most [`MAX_PROFILE_IDS`] ids (more: `InvalidInput`);
/// - reads only: it never creates or changes users.
///
/// What a caller may learn is the backend's business: the SQL function
/// shows a user JWT only the users it shares an organization with, and the
/// service role everyone. The facade asks only about members of the
/// caller's organization.
#[async_trait]
pub trait UserDirectory: Debug + Send + Sync + 'static {
    /// The profiles of `users` the directory knows and may show.
    async fn profiles(&self, users: &[UserId]) -> Result<Vec<UserProfile>>;
}

#[async_trait]
impl<T: UserDirectory + ?Sized> UserDirectory for Arc<T> {
    async fn profiles(&self, users: &[UserId]) -> Result<Vec<UserProfile>> {
        (**self).profiles(users).await
    }
}

#[async_trait]
impl<T: UserDirectory + ?Sized> UserDirectory for Box<T> {
    async fn profiles(&self, users: &[UserId]) -> Result<Vec<UserProfile>> {
        (**self).profiles(users).await
    }
}
