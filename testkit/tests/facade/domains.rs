//! Verified-domain auto-join through the facade, on `MemoryStore` with a
//! `MemoryUserDirectory` and a fake clock: the operator's records, the
//! organization's join setting (owners and admins only), the selector's
//! joinable list and joining, and every refusal: an unconfirmed email,
//! look-alike domains, a subdomain the record does not allow, a disabled
//! domain, joining turned off, another organization's domain.

use std::sync::Arc;

use tenancy::clock::{Clock, FakeClock};
use tenancy::memory::MemoryUserDirectory;
use tenancy::model::domain::{AutoJoin, JoinableOrg};
use tenancy::store::UserDirectory;
use tenancy::{
    ErrorKind, MemoryStore, NewOrganization, OrgId, PlatformOperator, Role, Tenancy, TenantContext,
    UserId,
};
use tenancy_testkit::unique_slug;

use crate::scene::START;

struct World {
    tenancy: Tenancy,
    directory: Arc<MemoryUserDirectory>,
    clock: FakeClock,
    operator: PlatformOperator,
    /// Acme, owned by `owner`, with acme.com recorded and joining off.
    acme: OrgId,
    owner: TenantContext,
}

impl World {
    async fn new() -> World {
        let directory = Arc::new(MemoryUserDirectory::new());
        let clock = FakeClock::at(START);
        let tenancy = Tenancy::builder()
            .store(MemoryStore::new())
            .clock(clock.clone())
            .shared_user_directory(Arc::clone(&directory) as Arc<dyn UserDirectory>)
            .build()
            .unwrap();
        let operator = PlatformOperator::new("domain-tests");
        let owner = UserId::new_v7();
        let acme = org(&tenancy, owner, "Acme").await;
        tenancy
            .operator(&operator)
            .add_domain(acme, "acme.com", false)
            .await
            .unwrap();
        let owner = tenancy.context(owner, acme).await.unwrap();
        World {
            tenancy,
            directory,
            clock,
            operator,
            acme,
            owner,
        }
    }

    /// A new user with `email`, confirmed or not.
    fn user(&self, email: &str, confirmed: bool) -> UserId {
        let user = UserId::new_v7();
        self.directory.insert(user, Some(email), None);
        self.directory.set_email_confirmed(user, confirmed);
        user
    }

    async fn open(&self, auto_join: AutoJoin) {
        self.tenancy
            .set_domain_auto_join(&self.owner, "acme.com", auto_join)
            .await
            .unwrap();
    }

    async fn joinable(&self, user: UserId) -> Vec<(OrgId, Role)> {
        self.tenancy
            .orgs_joinable_by(user)
            .await
            .unwrap()
            .iter()
            .map(|j: &JoinableOrg| (j.organization.id, j.role))
            .collect()
    }

    /// `user` is refused joining Acme with `PermissionDenied` and stays out.
    async fn refused(&self, user: UserId, why: &str) {
        let e = self
            .tenancy
            .join_organization(user, self.acme)
            .await
            .expect_err(why);
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{why}: {e}");
        assert!(self.joinable(user).await.is_empty(), "{why}: joinable");
        let ctx = self.tenancy.context(user, self.acme).await;
        assert_eq!(
            ctx.unwrap_err().kind(),
            ErrorKind::PermissionDenied,
            "{why}: a member"
        );
    }
}

async fn org(t: &Tenancy, owner: UserId, name: &str) -> OrgId {
    let new = NewOrganization::new(name, unique_slug("domains").as_str()).unwrap();
    t.create_organization(owner, new).await.unwrap().id
}

/// The selector lists the organizations a confirmed email may join, with
/// the role the org chose; joining is one call, at the clock's time, and
/// the org leaves the list; joining again changes nothing.
#[tokio::test]
async fn a_confirmed_email_at_the_domain_joins_from_the_selector() {
    let w = World::new().await;
    let ada = w.user("Ada@ACME.com", true);
    assert!(w.joinable(ada).await.is_empty(), "joining starts off");

    w.open(AutoJoin::Viewer).await;
    assert_eq!(w.joinable(ada).await, [(w.acme, Role::Viewer)]);
    w.open(AutoJoin::Member).await;
    let listed = w.tenancy.orgs_joinable_by(ada).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].role, Role::Member);
    assert_eq!(listed[0].domain.as_str(), "acme.com");
    assert_eq!(listed[0].organization.name, "Acme");

    w.clock.advance(std::time::Duration::from_secs(60));
    let joined = w.tenancy.join_organization(ada, w.acme).await.unwrap();
    assert!(joined.joined);
    assert_eq!(joined.membership.role, Role::Member);
    assert_eq!(joined.membership.created_at, w.clock.now());
    assert_eq!(
        w.tenancy.context(ada, w.acme).await.unwrap().role(),
        Role::Member
    );
    assert!(
        w.joinable(ada).await.is_empty(),
        "a member no longer sees it"
    );
    let orgs = w.tenancy.orgs_for_user(ada).await.unwrap();
    assert_eq!(orgs.len(), 1);

    let again = w.tenancy.join_organization(ada, w.acme).await.unwrap();
    assert!(!again.joined);
    assert_eq!(again.membership, joined.membership);
}

/// A member of a higher role who joins "again" keeps their role: joining
/// never changes a membership.
#[tokio::test]
async fn joining_as_an_existing_member_changes_nothing() {
    let w = World::new().await;
    w.open(AutoJoin::Viewer).await;
    let admin = w.user("boss@acme.com", true);
    w.tenancy
        .add_member(&w.owner, admin, Role::Admin)
        .await
        .unwrap();
    let kept = w.tenancy.join_organization(admin, w.acme).await.unwrap();
    assert!(!kept.joined);
    assert_eq!(kept.membership.role, Role::Admin);
    assert_eq!(
        w.tenancy.context(admin, w.acme).await.unwrap().role(),
        Role::Admin
    );
}

/// An unconfirmed email, a user the directory does not know, and a user
/// without any email join nothing and see nothing; confirming the email
/// lets the same user in.
#[tokio::test]
async fn an_unconfirmed_email_is_refused() {
    let w = World::new().await;
    w.open(AutoJoin::Member).await;
    let unconfirmed = w.user("eve@acme.com", false);
    w.refused(unconfirmed, "unconfirmed email").await;
    w.refused(UserId::new_v7(), "unknown to the directory")
        .await;
    let no_email = UserId::new_v7();
    w.directory.insert(no_email, None, Some("No Mail"));
    w.directory.set_email_confirmed(no_email, true);
    w.refused(no_email, "no email").await;

    w.directory.set_email_confirmed(unconfirmed, true);
    assert!(
        w.tenancy
            .join_organization(unconfirmed, w.acme)
            .await
            .unwrap()
            .joined
    );
}

/// Without a user directory nobody's email is known: the list is empty and
/// joining is refused.
#[tokio::test]
async fn without_a_directory_nobody_joins() {
    let t = Tenancy::builder()
        .store(MemoryStore::new())
        .build()
        .unwrap();
    let owner = UserId::new_v7();
    let acme = org(&t, owner, "Acme").await;
    let op = PlatformOperator::new("domain-tests");
    t.operator(&op)
        .add_domain(acme, "acme.com", true)
        .await
        .unwrap();
    let ctx = t.context(owner, acme).await.unwrap();
    t.set_domain_auto_join(&ctx, "acme.com", AutoJoin::Member)
        .await
        .unwrap();
    let user = UserId::new_v7();
    assert!(t.orgs_joinable_by(user).await.unwrap().is_empty());
    assert_eq!(
        t.join_organization(user, acme).await.unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
}

/// Look-alike domains are not the domain: a longer name that ends in it
/// without a dot, and the domain used as a subdomain of another.
#[tokio::test]
async fn look_alike_domains_are_refused() {
    let w = World::new().await;
    w.open(AutoJoin::Member).await;
    for email in [
        "mallory@acme.com.evil.io",
        "mallory@evilacme.com",
        "mallory@acme.co",
        "acme.com@evil.io",
        "mallory@acme.com@evil.io",
    ] {
        let user = w.user(email, true);
        w.refused(user, email).await;
    }
}

/// A subdomain joins only where the operator allowed subdomains; the most
/// specific domain decides, its "off" included.
#[tokio::test]
async fn a_subdomain_joins_only_where_allowed() {
    let w = World::new().await;
    w.open(AutoJoin::Member).await;
    let eu = w.user("eu@eu.acme.com", true);
    w.refused(eu, "subdomain not allowed").await;

    let op = w.tenancy.operator(&w.operator);
    let allowed = op
        .set_domain_subdomains(w.acme, "acme.com", true)
        .await
        .unwrap();
    assert!(allowed.include_subdomains && allowed.enabled);
    assert_eq!(
        allowed.auto_join,
        AutoJoin::Member,
        "the org's choice is kept"
    );
    assert_eq!(w.joinable(eu).await, [(w.acme, Role::Member)]);

    // contractors.acme.com recorded with joining off: it decides for its users.
    op.add_domain(w.acme, "contractors.acme.com", false)
        .await
        .unwrap();
    let contractor = w.user("c@contractors.acme.com", true);
    w.refused(contractor, "the more specific domain is off")
        .await;

    assert!(
        w.tenancy
            .join_organization(eu, w.acme)
            .await
            .unwrap()
            .joined
    );
}

/// A disabled domain matches nothing, whatever the org chose; enabling it
/// again restores it; removing it ends joining (members who joined stay).
#[tokio::test]
async fn a_disabled_or_removed_domain_is_refused() {
    let w = World::new().await;
    w.open(AutoJoin::Member).await;
    let op = w.tenancy.operator(&w.operator);
    let disabled = op
        .set_domain_enabled(w.acme, "acme.com", false)
        .await
        .unwrap();
    assert!(!disabled.enabled);
    let ada = w.user("ada@acme.com", true);
    w.refused(ada, "disabled domain").await;

    op.set_domain_enabled(w.acme, "ACME.com", true)
        .await
        .unwrap();
    assert!(
        w.tenancy
            .join_organization(ada, w.acme)
            .await
            .unwrap()
            .joined
    );

    assert!(op.remove_domain(w.acme, "acme.com").await.unwrap());
    assert!(!op.remove_domain(w.acme, "acme.com").await.unwrap());
    assert!(op.domains(w.acme).await.unwrap().is_empty());
    let bob = w.user("bob@acme.com", true);
    w.refused(bob, "removed domain").await;
    assert_eq!(
        w.tenancy.context(ada, w.acme).await.unwrap().role(),
        Role::Member
    );

    assert_eq!(
        op.set_domain_enabled(w.acme, "acme.com", true)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

/// Owners and admins read and change the join setting; members and viewers
/// are refused and change nothing; an admin of another organization
/// neither sees nor changes this one's domains, even one of the same name.
#[tokio::test]
async fn only_owners_and_admins_change_the_join_setting() {
    let w = World::new().await;
    for role in [Role::Member, Role::Viewer] {
        let user = UserId::new_v7();
        w.tenancy.add_member(&w.owner, user, role).await.unwrap();
        let ctx = w.tenancy.context(user, w.acme).await.unwrap();
        let e = w
            .tenancy
            .set_domain_auto_join(&ctx, "acme.com", AutoJoin::Member)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{role}");
        assert_eq!(
            w.tenancy.domains(&ctx).await.unwrap_err().kind(),
            ErrorKind::PermissionDenied,
            "{role} reads"
        );
    }
    let admin = UserId::new_v7();
    w.tenancy
        .add_member(&w.owner, admin, Role::Admin)
        .await
        .unwrap();
    let admin_ctx = w.tenancy.context(admin, w.acme).await.unwrap();
    let set = w
        .tenancy
        .set_domain_auto_join(&admin_ctx, "acme.com", AutoJoin::Viewer)
        .await
        .unwrap();
    assert_eq!(set.auto_join, AutoJoin::Viewer);
    assert_eq!(set.updated_at, w.clock.now());

    // Another organization's admin, with the same domain name recorded.
    let rival_owner = UserId::new_v7();
    let rival = org(&w.tenancy, rival_owner, "Rival").await;
    let rival_ctx = w.tenancy.context(rival_owner, rival).await.unwrap();
    assert!(w.tenancy.domains(&rival_ctx).await.unwrap().is_empty());
    assert_eq!(
        w.tenancy
            .set_domain_auto_join(&rival_ctx, "acme.com", AutoJoin::Member)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    w.tenancy
        .operator(&w.operator)
        .add_domain(rival, "acme.com", false)
        .await
        .unwrap();
    w.tenancy
        .set_domain_auto_join(&rival_ctx, "acme.com", AutoJoin::Member)
        .await
        .unwrap();
    let ours = w.tenancy.domains(&w.owner).await.unwrap();
    assert_eq!(ours.len(), 1);
    assert_eq!(
        ours[0].auto_join,
        AutoJoin::Viewer,
        "untouched by the rival"
    );

    // Both organizations are joinable now, each with its own role, by name.
    let ada = w.user("ada@acme.com", true);
    assert_eq!(
        w.joinable(ada).await,
        [(w.acme, Role::Viewer), (rival, Role::Member)]
    );
}

/// Bad domain names are `InvalidInput` naming `domain`, for the operator
/// and the organization alike; `auto_join` never parses above member.
#[tokio::test]
async fn domain_input_is_validated() {
    let w = World::new().await;
    let op = w.tenancy.operator(&w.operator);
    let long_label = format!("{}.com", "a".repeat(64));
    let long_name = format!("{}.com", ["abcdefghi"; 26].join("."));
    for bad in [
        "",
        "  ",
        "acme com",
        "ada@acme.com",
        ".acme.com",
        "acme.com.",
        "acme..com",
        "com",
        "10.0.0.1",
        "bücher.example",
        long_label.as_str(),
        long_name.as_str(),
    ] {
        let e = op.add_domain(w.acme, bad, false).await.unwrap_err();
        assert_eq!(
            (e.kind(), e.field()),
            (ErrorKind::InvalidInput, Some("domain")),
            "{bad:?}"
        );
        let e = w
            .tenancy
            .set_domain_auto_join(&w.owner, bad, AutoJoin::Member)
            .await
            .unwrap_err();
        assert_eq!(e.field(), Some("domain"), "{bad:?}");
    }
    assert_eq!(op.domains(w.acme).await.unwrap().len(), 1);
    let stored = op.add_domain(w.acme, "  EU.Acme.COM ", true).await.unwrap();
    assert_eq!(stored.domain.as_str(), "eu.acme.com");
    for bad in ["admin", "owner"] {
        assert_eq!(
            tenancy::model::domain::AutoJoin::parse(bad)
                .unwrap_err()
                .field(),
            Some("auto_join")
        );
    }
    assert_eq!(
        op.add_domain(OrgId::new_v7(), "acme.com", false)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

/// The operator's domain records, the organization's join setting and a
/// join are audit events naming who acted.
#[tokio::test]
async fn domain_changes_and_joins_are_audited() {
    use tenancy::model::audit::{AuditActor, AuditQuery};
    let w = World::new().await;
    w.open(AutoJoin::Member).await;
    let ada = w.user("ada@acme.com", true);
    w.tenancy.join_organization(ada, w.acme).await.unwrap();

    let page = w
        .tenancy
        .audit_log(&w.owner, AuditQuery::new(50).unwrap())
        .await
        .unwrap();
    let seen: Vec<(&str, &AuditActor)> = page
        .events
        .iter()
        .filter(|e| e.action.starts_with("domain") || e.actor.user_id() == Some(ada))
        .map(|e| (e.action.as_str(), &e.actor))
        .collect();
    assert_eq!(
        seen,
        [
            ("member.created", &AuditActor::user(ada)),
            ("domain.updated", &AuditActor::user(w.owner.user())),
            ("domain.created", &AuditActor::operator("domain-tests")),
        ],
        "newest first"
    );
    let opened = &page.events[1];
    assert_eq!(opened.before.as_ref().unwrap()["auto_join"], "off");
    assert_eq!(opened.after.as_ref().unwrap()["auto_join"], "member");
}
