//! Reading the audit log, and naming who acts in the changes the facade
//! makes.
//!
//! Every write of the facade runs in an [`AuditContext`] naming its actor:
//! the user of the [`TenantContext`] (or the creator of a new
//! organization), or the [`Operator`]'s name. The host adds a request id
//! with [`Tenancy::with_request_id`]. The stores write the events with
//! the changes; see [`AuditStore`](crate::store::AuditStore).

use std::collections::HashMap;
use std::future::Future;

use super::{Operator, Tenancy};
use crate::error::{Error, Result};
use crate::ids::UserId;
use crate::model::audit::{
    AuditActor, AuditContext, AuditEvent, AuditPage, AuditQuery, MAX_AUDIT_PAGE, RequestId,
};
use crate::model::{Action, TenantContext, UserProfile};
use crate::store::{AuditStore, MAX_PROFILE_IDS};

impl Tenancy {
    /// Runs `future` with `request_id` as the request id of every audit
    /// event the changes inside it write (the facade's, and those of a
    /// `SupabaseStore`'s raw builders).
    /// Wrap a request's handler in it, with your tracing or request id.
    ///
    /// Task-local: a task spawned inside does not inherit it.
    ///
    /// ```
    /// use tenancy::model::audit::{AuditQuery, RequestId};
    /// use tenancy::{MemoryStore, NewOrganization, Tenancy, UserId};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenancy::Result<()> {
    /// let tenancy = Tenancy::builder().store(MemoryStore::new()).build()?;
    /// let alice = UserId::new_v7();
    /// let request = RequestId::parse("req-7f3a")?;
    /// let org = Tenancy::with_request_id(request, async {
    ///     tenancy.create_organization(alice, NewOrganization::new("Acme", "acme")?).await
    /// })
    /// .await?;
    ///
    /// let ctx = tenancy.context(alice, org.id).await?;
    /// let page = tenancy.audit_log(&ctx, AuditQuery::new(10)?).await?;
    /// assert_eq!(page.events[0].request_id.as_deref(), Some("req-7f3a"));
    /// # Ok(()) }
    /// ```
    pub async fn with_request_id<F: Future>(request_id: RequestId, future: F) -> F::Output {
        let mut context = AuditContext::current();
        context.request_id = Some(request_id);
        context.scope(future).await
    }

    /// Runs `future` (store calls making one change) with `actor` as the
    /// actor of its audit events, the current request id, and the time
    /// read now.
    pub(crate) async fn audited<F: Future>(&self, actor: AuditActor, future: F) -> F::Output {
        let mut context = AuditContext::current();
        context.actor = Some(actor);
        context.at = Some(self.now());
        context.scope(future).await
    }

    /// A page of the active organization's audit log, newest first: the
    /// events `query` admits (its `org` is set to the context's). Owners and
    /// admins only: `PermissionDenied` for members and viewers.
    ///
    /// Follow [`AuditPage::next`] with [`AuditQuery::after`] for the next
    /// page; pages do not overlap, and events written meanwhile do not
    /// shift them (they are newer than the first page).
    ///
    /// ```
    /// use tenancy::model::audit::{AuditActor, AuditQuery};
    /// use tenancy::{MemoryStore, NewOrganization, Role, Tenancy, UserId};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenancy::Result<()> {
    /// let tenancy = Tenancy::builder().store(MemoryStore::new()).build()?;
    /// let (alice, bob) = (UserId::new_v7(), UserId::new_v7());
    /// let org = tenancy.create_organization(alice, NewOrganization::new("Acme", "acme")?).await?;
    /// let ctx = tenancy.context(alice, org.id).await?;
    /// tenancy.add_member(&ctx, bob, Role::Member).await?;
    /// tenancy.change_role(&ctx, bob, Role::Admin).await?;
    ///
    /// let page = tenancy.audit_log(&ctx, AuditQuery::new(1)?.action("member")?).await?;
    /// let newest = &page.events[0];
    /// assert_eq!(newest.action, "member.updated");
    /// assert_eq!(newest.actor, AuditActor::user(alice));
    /// assert_eq!(newest.before.as_ref().unwrap()["role"], "member");
    /// assert_eq!(newest.after.as_ref().unwrap()["role"], "admin");
    ///
    /// let older = tenancy.audit_log(&ctx, AuditQuery::new(10)?.action("member")?
    ///     .after(page.next.unwrap())).await?;
    /// assert_eq!(older.events[0].action, "member.created");
    /// # Ok(()) }
    /// ```
    pub async fn audit_log(&self, ctx: &TenantContext, query: AuditQuery) -> Result<AuditPage> {
        ctx.require(Action::ViewAuditLog)?;
        self.audit_page(query.org(ctx.org())).await
    }

    /// One page of `query`: the store asked for one event more than the
    /// page holds, to know whether another follows.
    async fn audit_page(&self, mut query: AuditQuery) -> Result<AuditPage> {
        let limit = query.limit;
        if limit == 0 || limit > MAX_AUDIT_PAGE {
            return Err(Error::invalid_input(
                "limit",
                format_args!("{limit} is not between 1 and {MAX_AUDIT_PAGE} events a page"),
            ));
        }
        query.limit = limit + 1;
        let mut events: Vec<AuditEvent> = self.inner.store.audit_log(&query).await?;
        let next = if events.len() > limit {
            events.truncate(limit);
            events.last().map(AuditEvent::cursor)
        } else {
            None
        };
        Ok(AuditPage::new(events, next))
    }
}

impl Operator<'_> {
    /// A page of the audit log of one organization (`query.org`) or of all
    /// of them (`None`), newest first; see [`Tenancy::audit_log`]. The
    /// events of a deleted organization stay readable here.
    ///
    /// ```
    /// use tenancy::model::audit::{AuditActor, AuditQuery};
    /// use tenancy::{MemoryStore, NewOrganization, PlatformOperator, Tenancy, UserId};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenancy::Result<()> {
    /// let tenancy = Tenancy::builder().store(MemoryStore::new()).build()?;
    /// let org = tenancy.create_organization(UserId::new_v7(), NewOrganization::new("Acme", "acme")?).await?;
    /// let support = PlatformOperator::new("support");
    /// tenancy.operator(&support).enable_feature(org.id, "sso").await?;
    ///
    /// let page = tenancy.operator(&support)
    ///     .audit_log(AuditQuery::new(10)?.actor(AuditActor::operator("support")))
    ///     .await?;
    /// assert_eq!(page.events.len(), 1);
    /// assert_eq!(page.events[0].action, "feature.created");
    /// assert_eq!(page.events[0].target.as_deref(), Some("sso"));
    /// # Ok(()) }
    /// ```
    pub async fn audit_log(&self, query: AuditQuery) -> Result<AuditPage> {
        tracing::debug!(operator = self.operator.name(), org = ?query.org, "audit log read");
        self.tenancy.audit_page(query).await
    }

    /// The profiles of `users` (the actors and targets of an audit page),
    /// in the order given, from the user directory: the operator may learn
    /// anyone's. A user the directory does not know, or every user without
    /// a directory, gets a profile with the id alone.
    pub async fn profiles(&self, users: &[UserId]) -> Result<Vec<UserProfile>> {
        let mut found: HashMap<UserId, UserProfile> = HashMap::new();
        if let Some(directory) = &self.tenancy.inner.directory {
            let mut wanted: Vec<UserId> = users.to_vec();
            wanted.sort_unstable();
            wanted.dedup();
            for chunk in wanted.chunks(MAX_PROFILE_IDS) {
                for profile in directory.profiles(chunk).await? {
                    found.insert(profile.user_id, profile);
                }
            }
        }
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

    /// Runs `future` with this operator as the actor of its audit events.
    pub(super) async fn audited<F: Future>(&self, future: F) -> F::Output {
        self.tenancy
            .audited(AuditActor::operator(self.operator.name()), future)
            .await
    }
}
