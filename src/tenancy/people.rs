//! Who people are: members with their names and emails, from the
//! [`UserDirectory`](crate::store::UserDirectory) the builder was given.

use std::collections::{HashMap, HashSet};

use super::Tenancy;
use crate::error::Result;
use crate::ids::UserId;
use crate::model::{Action, Membership, TenantContext, UserProfile};
use crate::store::{MAX_PROFILE_IDS, MemberStore};

impl Tenancy {
    /// The active organization's members, by user id, each with their
    /// profile. Any member may call it (as [`members`](Self::members)).
    ///
    /// A profile carries an email and a name where the
    /// [user directory](crate::TenancyBuilder::user_directory) knows them;
    /// without a directory, or for a user it does not know, only the id.
    ///
    /// ```
    /// use tenancy::memory::MemoryUserDirectory;
    /// use tenancy::{MemoryStore, NewOrganization, Tenancy, UserId};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenancy::Result<()> {
    /// let ada = UserId::new_v7();
    /// let directory = MemoryUserDirectory::new();
    /// directory.insert(ada, Some("ada@example.com"), Some("Ada Lovelace"));
    /// let tenancy = Tenancy::builder().store(MemoryStore::new()).user_directory(directory).build()?;
    ///
    /// let org = tenancy.create_organization(ada, NewOrganization::new("Acme", "acme")?).await?;
    /// let ctx = tenancy.context(ada, org.id).await?;
    /// let members = tenancy.member_profiles(&ctx).await?;
    /// assert_eq!(members[0].1.name.as_deref(), Some("Ada Lovelace"));
    /// # Ok(()) }
    /// ```
    pub async fn member_profiles(
        &self,
        ctx: &TenantContext,
    ) -> Result<Vec<(Membership, UserProfile)>> {
        ctx.require(Action::ViewMembers)?;
        let members = self.inner.store.members(ctx.org()).await?;
        let ids: Vec<UserId> = members.iter().map(|m| m.user_id).collect();
        let mut found = self.lookup(&ids).await?;
        Ok(members
            .into_iter()
            .map(|m| {
                let profile = found
                    .remove(&m.user_id)
                    .unwrap_or_else(|| UserProfile::new(m.user_id));
                (m, profile)
            })
            .collect())
    }

    /// The profiles of `users`, in the order given, for a page that names
    /// people (top users, an activity list). Only current members of the
    /// active organization are looked up: anyone else (a removed member
    /// whose usage remains, a stranger) gets a profile with the id alone,
    /// so no member learns the email of someone they share no
    /// organization with. Any member may call it.
    pub async fn profiles(
        &self,
        ctx: &TenantContext,
        users: &[UserId],
    ) -> Result<Vec<UserProfile>> {
        ctx.require(Action::ViewMembers)?;
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let members: HashSet<UserId> = self
            .inner
            .store
            .members(ctx.org())
            .await?
            .into_iter()
            .map(|m| m.user_id)
            .collect();
        let mut wanted: Vec<UserId> = users
            .iter()
            .copied()
            .filter(|u| members.contains(u))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let found = self.lookup(&wanted).await?;
        Ok(users
            .iter()
            .map(|u| {
                found
                    .get(u)
                    .cloned()
                    .unwrap_or_else(|| UserProfile::new(*u))
            })
            .collect())
    }

    /// What the directory answers for `users` (at most one call per
    /// [`MAX_PROFILE_IDS`]), by id; nothing without a directory. An answer
    /// about a user not asked for is dropped.
    async fn lookup(&self, users: &[UserId]) -> Result<HashMap<UserId, UserProfile>> {
        let mut found = HashMap::new();
        let Some(directory) = &self.inner.directory else {
            return Ok(found);
        };
        let asked: HashSet<UserId> = users.iter().copied().collect();
        for chunk in users.chunks(MAX_PROFILE_IDS) {
            for profile in directory.profiles(chunk).await? {
                if asked.contains(&profile.user_id) {
                    found.insert(profile.user_id, profile);
                }
            }
        }
        Ok(found)
    }

    /// `user`'s email if they confirmed it, from the directory: what
    /// invitations and verified domains match. `None` without a directory,
    /// for a user it does not know, or an unconfirmed email.
    pub(super) async fn confirmed_email(&self, user: UserId) -> Result<Option<String>> {
        let Some(directory) = &self.inner.directory else {
            return Ok(None);
        };
        let profiles = directory.profiles(&[user]).await?;
        Ok(profiles
            .into_iter()
            .find(|p| p.user_id == user)
            .and_then(|p| p.confirmed_email().map(str::to_owned)))
    }
}
