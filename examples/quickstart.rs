//! The main job of `tenancy` on the embedded store, with no setup:
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! Two organizations, members with roles, names and emails, an org switch,
//! a feature-gated action allowed and denied, a role-denied admin action,
//! an invitation created and accepted, a usage limit enforced with a
//! reservation, and an organization on a free plan hitting its limit,
//! upgraded to pro, and allowed.

use rust_decimal_macros::dec;
use tenancy::alerts::MemoryAlertSink;
use tenancy::limits::LimitScope;
use tenancy::memory::MemoryUserDirectory;
use tenancy::model::invitation::{MemoryInvitationSender, NewInvitation};
use tenancy::model::plan::{Entitlement, EntitlementSource, NewPlanVersion};
use tenancy::{
    Action, FeatureKey, MemoryStore, MetricKey, NewLimit, NewOrganization, Period, PlanKey,
    PlatformOperator, ReserveOutcome, Role, Tenancy, TenantContext, UsageEvent, UserId,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> tenancy::Result<()> {
    let alerts = std::sync::Arc::new(MemoryAlertSink::new());
    let alice = UserId::new_v7();
    let bob = UserId::new_v7();
    let carol = UserId::new_v7();
    let dave = UserId::new_v7();
    // Who they are, as the host's sign-up knows them (on Supabase, the
    // SQL store reads auth.users instead).
    let directory = MemoryUserDirectory::new();
    directory.insert(alice, Some("alice@acme.example"), Some("Alice"));
    directory.insert(bob, Some("bob@acme.example"), Some("Bob"));
    directory.insert(carol, Some("carol@globex.example"), Some("Carol"));
    // Dave signed up and confirmed his email: an invitation to it is his.
    directory.insert(dave, Some("dave@acme.example"), Some("Dave"));
    directory.set_email_confirmed(dave, true);
    // Delivering invitations is the host's business (an email service);
    // this one keeps them, to show what was sent.
    let outbox = std::sync::Arc::new(MemoryInvitationSender::new());
    let tenancy = Tenancy::builder()
        .store(MemoryStore::new())
        .user_directory(directory)
        .shared_alert_sink(alerts.clone())
        .shared_invitation_sender(outbox.clone())
        .invitation_accept_url("https://app.example/invite")
        .build()?;
    let operator = PlatformOperator::new("quickstart");

    section("Organizations and members");
    let acme = tenancy
        .create_organization(alice, NewOrganization::new("Acme Ads", "acme-ads")?)
        .await?;
    let globex = tenancy
        .create_organization(
            carol,
            NewOrganization::new("Globex", "globex")?.timezone("Asia/Tokyo")?,
        )
        .await?;
    println!("alice created {} ({})", acme.name, acme.slug);
    println!(
        "carol created {} ({}, {})",
        globex.name, globex.slug, globex.timezone
    );

    let alice_at_acme = tenancy.context(alice, acme.id).await?;
    tenancy
        .add_member(&alice_at_acme, bob, Role::Member)
        .await?;
    let carol_at_globex = tenancy.context(carol, globex.id).await?;
    tenancy
        .add_member(&carol_at_globex, bob, Role::Viewer)
        .await?;
    for (m, person) in tenancy.member_profiles(&alice_at_acme).await? {
        let name = person.name.as_deref().unwrap_or("?");
        let email = person.email.as_deref().unwrap_or("?");
        println!(
            "  {} member: {name:<6} {email:<20} role: {}",
            acme.slug, m.role
        );
    }

    section("Bob's org selector and an org switch");
    for entry in tenancy.orgs_for_user(bob).await? {
        println!("  {:<10} as {}", entry.organization.slug, entry.role);
    }
    let bob_ctx = tenancy.default_context(bob).await?.expect("bob has orgs");
    describe(&bob_ctx, "default");
    let bob_at_globex = tenancy.switch_org(&bob_ctx, globex.id).await?;
    describe(&bob_at_globex, "switched");
    let stranger = tenancy.context(alice, globex.id).await;
    println!("  alice asks for a Globex context: {}", outcome(&stranger));

    section("Feature access");
    let render = |ctx: &TenantContext, allowed: bool| {
        let org = &ctx.organization().slug;
        if allowed {
            println!("  {org}: veo_avatars is on  -> rendering avatar video");
        } else {
            println!("  {org}: veo_avatars is off -> 403, upgrade to use avatars");
        }
    };
    let enabled = tenancy
        .operator(&operator)
        .enable_feature(acme.id, "veo_avatars")
        .await?;
    println!(
        "  the operator ({}) turns {} on for {}",
        operator.name(),
        enabled.key,
        acme.slug
    );
    render(
        &bob_ctx,
        tenancy.has_feature(&bob_ctx, "veo_avatars").await?,
    );
    render(
        &bob_at_globex,
        tenancy.has_feature(&bob_at_globex, "veo_avatars").await?,
    );

    section("Roles");
    let attempt = tenancy
        .add_member(&bob_ctx, UserId::new_v7(), Role::Viewer)
        .await;
    println!(
        "  bob (member) adds a viewer to acme-ads: {}",
        outcome(&attempt)
    );
    let attempt = tenancy.change_role(&bob_ctx, bob, Role::Admin).await;
    println!(
        "  bob promotes himself to admin:         {}",
        outcome(&attempt)
    );
    println!(
        "  can bob write data? {}; delete the org? {}",
        bob_ctx.can(Action::WriteData),
        bob_ctx.can(Action::DeleteOrganization)
    );

    section("Invitations");
    let invite = tenancy
        .create_invitation(
            &alice_at_acme,
            NewInvitation::email("Dave@acme.example", Role::Viewer),
        )
        .await?;
    let (sent, url) = &outbox.sent()[0];
    println!(
        "  alice invites {} as {}; sent: {}…",
        sent.email.as_deref().unwrap_or("?"),
        sent.role,
        &url[..url.len() - 56]
    );
    println!(
        "  expires {}; the store keeps only the token's SHA-256",
        invite.invitation.expires_at.format("%Y-%m-%d %H:%M UTC")
    );
    let token = invite.token.expose();
    let wrong = tenancy.accept_invitation(carol, token).await;
    println!("  carol tries dave's link:  {}", outcome(&wrong));
    let joined = tenancy.accept_invitation(dave, token).await?;
    println!(
        "  dave accepts:             joined {} as {}",
        joined.organization.slug, joined.role
    );
    let again = tenancy.accept_invitation(dave, token).await;
    println!("  the link a second time:   {}", outcome(&again));
    let attempt = tenancy
        .create_invitation(&bob_ctx, NewInvitation::link(Role::Viewer, 5))
        .await;
    println!("  bob (member) makes a link: {}", outcome(&attempt));

    section("Usage limits");
    tenancy
        .operator(&operator)
        .set_limit(
            acme.id,
            NewLimit::from_limit_type("monthly_tokens", dec!(10000))?,
        )
        .await?;
    tenancy
        .service()
        .record_usage(
            UsageEvent::new(acme.id)
                .user(alice)
                .ai_call("openai", "gpt-4o", "ad_copy")
                .tokens(6000, 500, 1500)
                .cost_usd(dec!(0.0345)),
        )
        .await?;
    let decision = tenancy.check_limit(&bob_ctx, "tokens", dec!(1500)).await?;
    println!(
        "  used {} of {:?} tokens; 1500 more allowed: {} ({:?})",
        decision.used,
        decision.limit.unwrap_or_default(),
        decision.allowed,
        decision.level
    );
    match tenancy.reserve(&bob_ctx, "tokens", dec!(1500)).await? {
        ReserveOutcome::Granted(hold) => {
            println!("  reserved 1500 tokens for a generation; it used 1200");
            tenancy.commit(&hold, dec!(1200)).await?;
        }
        ReserveOutcome::Denied(d) => println!("  denied: {d:?}"),
    }
    match tenancy.reserve(&bob_ctx, "tokens", dec!(1500)).await? {
        ReserveOutcome::Granted(_) => println!("  unexpected: granted"),
        ReserveOutcome::Denied(d) => println!(
            "  next 1500 denied: {} left, resets at {}",
            d.remaining.unwrap_or_default(),
            d.resets_at.map(|t| t.to_rfc3339()).unwrap_or_default()
        ),
    }
    // Alerts are checked and delivered off the write path; wait for them.
    tenancy.flush_alerts().await;
    for alert in alerts.alerts() {
        println!(
            "  alert: {} reached {}% of its {} {} limit",
            alert.key.metric, alert.key.threshold_percent, alert.key.period.period, alert.key.scope
        );
    }
    for line in tenancy.usage_summary(&bob_ctx).await? {
        let scope = match line.scope {
            LimitScope::Organization => "org-wide",
            LimitScope::User(_) => "bob",
        };
        println!(
            "  summary: {:<9} {:<7} {scope:<8} used {:>6} limit {:>7} ({}%)",
            line.metric.as_str(),
            line.period.as_str(),
            line.used,
            line.limit
                .map(|l| l.to_string())
                .unwrap_or_else(|| "-".into()),
            line.percent
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
        );
    }

    section("Plans");
    let ops = tenancy.operator(&operator);
    let monthly_tokens = |n| NewLimit::from_limit_type("monthly_tokens", n);
    let free = ops
        .create_plan_version(
            NewPlanVersion::new(PlanKey::parse("free")?, "Free")?
                .limit(monthly_tokens(dec!(2000))?)?,
        )
        .await?;
    let pro = ops
        .create_plan_version(
            NewPlanVersion::new(PlanKey::parse("pro")?, "Pro")?
                .feature(FeatureKey::parse("veo_avatars")?, true)?
                .limit(monthly_tokens(dec!(100000))?)?,
        )
        .await?;
    println!(
        "  the catalog: {} v{} (2000 tokens a month), {} v{} (100000, avatars)",
        free.name, free.plan.version, pro.name, pro.plan.version
    );
    ops.assign_plan(globex.id, free.plan.clone()).await?;
    tenancy
        .service()
        .record_usage(UsageEvent::new(globex.id).user(carol).tokens(1500, 0, 500))
        .await?;
    let plan_line = async |ctx: &TenantContext| -> tenancy::Result<()> {
        let decision = tenancy.check_limit(ctx, "tokens", dec!(800)).await?;
        let plan = tenancy.plan(ctx).await?.expect("on a plan").plan;
        let why = tenancy
            .explain(
                ctx,
                Entitlement::Limit {
                    metric: MetricKey::TOKENS,
                    period: Period::Monthly,
                },
            )
            .await?;
        let source = match why.source {
            Some(EntitlementSource::Plan { plan }) => {
                format!("plan {} v{}", plan.key, plan.version)
            }
            Some(EntitlementSource::Override { .. }) => "an override".into(),
            None => "no limit".into(),
        };
        println!(
            "  {} on {}: used {} of {} tokens (from {source}); 800 more: {}",
            ctx.organization().slug,
            plan.key,
            decision.used,
            decision.limit.unwrap_or_default(),
            if decision.allowed {
                "allowed"
            } else {
                "denied"
            },
        );
        Ok(())
    };
    plan_line(&carol_at_globex).await?;
    render(
        &carol_at_globex,
        tenancy.has_feature(&carol_at_globex, "veo_avatars").await?,
    );
    ops.assign_plan(globex.id, pro.plan.clone()).await?;
    println!("  the operator upgrades globex to pro; the next call:");
    plan_line(&carol_at_globex).await?;
    render(
        &carol_at_globex,
        tenancy.has_feature(&carol_at_globex, "veo_avatars").await?,
    );
    Ok(())
}

fn section(title: &str) {
    println!("\n== {title}");
}

fn describe(ctx: &TenantContext, label: &str) {
    println!(
        "  {label}: bob acts in {} as {}",
        ctx.organization().slug,
        ctx.role()
    );
}

fn outcome<T>(result: &tenancy::Result<T>) -> String {
    match result {
        Ok(_) => "allowed".into(),
        Err(e) => format!("refused ({})", e.kind()),
    }
}
