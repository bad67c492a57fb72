//! [`MemoryUserDirectory`]: display data the host fills in.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::ids::UserId;
use crate::model::UserProfile;
use crate::store::{MAX_PROFILE_IDS, UserDirectory};

/// A [`UserDirectory`] in process memory, filled by the host: for
/// [`MemoryStore`](crate::MemoryStore), examples and tests, or a host whose
/// users live elsewhere and are copied in.
///
/// It answers every profile it holds: the facade asks it only about
/// members of the caller's organization.
///
/// ```
/// use tenancy::memory::MemoryUserDirectory;
/// use tenancy::store::UserDirectory;
/// use tenancy::UserId;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenancy::Result<()> {
/// let (ada, bob) = (UserId::new_v7(), UserId::new_v7());
/// let directory = MemoryUserDirectory::new();
/// directory.insert(ada, Some("ada@example.com"), Some("Ada Lovelace"));
/// let found = directory.profiles(&[ada, bob]).await?;
/// assert_eq!(found.len(), 1);
/// assert_eq!(found[0].name.as_deref(), Some("Ada Lovelace"));
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct MemoryUserDirectory {
    users: Mutex<HashMap<UserId, UserProfile>>,
}

impl MemoryUserDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        MemoryUserDirectory::default()
    }

    /// Sets `user`'s email and name (a blank one is none), replacing what
    /// was there.
    pub fn insert(&self, user: UserId, email: Option<&str>, name: Option<&str>) {
        let mut profile = UserProfile::new(user);
        if let Some(email) = email {
            profile = profile.with_email(email);
        }
        if let Some(name) = name {
            profile = profile.with_name(name);
        }
        crate::sync::lock(&self.users).insert(user, profile);
    }

    /// Marks `user`'s email confirmed (or not); false for a user the
    /// directory does not hold.
    pub fn set_email_confirmed(&self, user: UserId, confirmed: bool) -> bool {
        match crate::sync::lock(&self.users).get_mut(&user) {
            Some(profile) => {
                profile.email_confirmed = confirmed;
                true
            }
            None => false,
        }
    }

    /// What the directory holds for `user`.
    pub fn get(&self, user: UserId) -> Option<UserProfile> {
        crate::sync::lock(&self.users).get(&user).cloned()
    }

    /// Forgets `user`; whether it was there.
    pub fn remove(&self, user: UserId) -> bool {
        crate::sync::lock(&self.users).remove(&user).is_some()
    }
}

#[async_trait]
impl UserDirectory for MemoryUserDirectory {
    async fn profiles(&self, users: &[UserId]) -> Result<Vec<UserProfile>> {
        if users.len() > MAX_PROFILE_IDS {
            return Err(Error::invalid_input(
                "users",
                format!("{} ids; at most {MAX_PROFILE_IDS} a call", users.len()),
            ));
        }
        let known = crate::sync::lock(&self.users);
        let mut seen = std::collections::HashSet::new();
        Ok(users
            .iter()
            .filter(|u| seen.insert(**u))
            .filter_map(|u| known.get(u).cloned())
            .collect())
    }
}
