//! A small command-line tool for the platform operator: organizations,
//! members, features, limits, and a usage-vs-limits table.
//!
//! Uses the service client from `SUPABASE_URL` (or `SUPABASE_REST_URL`,
//! the REST base of a self-hosted PostgREST) and
//! `SUPABASE_SERVICE_ROLE_KEY`.
//!
//! ```sh
//! cargo run --example admin --features supabase -- orgs [SEARCH]
//! cargo run --example admin --features supabase -- create-org "Acme" acme <owner-user-id>
//! cargo run --example admin --features supabase -- members <org>
//! cargo run --example admin --features supabase -- add-member <org> <user-id> member
//! cargo run --example admin --features supabase -- features <org>
//! cargo run --example admin --features supabase -- enable <org> veo_avatars
//! cargo run --example admin --features supabase -- disable <org> veo_avatars
//! cargo run --example admin --features supabase -- limits <org>
//! cargo run --example admin --features supabase -- set-limit <org> monthly_tokens 1000000 [soft]
//! cargo run --example admin --features supabase -- usage <org>
//! ```
//!
//! `<org>` is an organization id or slug.

use std::process::ExitCode;
use tenancy::store::{MemberStore, OrgStore};

use tenancy::supabase::SupabaseStore;
use tenancy::{
    Error, ErrorKind, MAX_ORG_PAGE, Membership, NewLimit, NewOrganization, OrgId, Organization,
    PlatformOperator, Role, Tenancy, UserId,
};

const USAGE: &str = "usage: admin <orgs [SEARCH] | create-org NAME SLUG OWNER | members ORG | \
add-member ORG USER ROLE | features ORG | enable ORG KEY | disable ORG KEY | limits ORG | \
set-limit ORG LIMIT_TYPE VALUE [soft] | usage ORG>";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        // A missing or malformed variable, named by
        // `SupabaseStore::from_env`.
        Err(e) if e.kind() == ErrorKind::Config => {
            eprintln!("admin: {}", e.message());
            ExitCode::from(2)
        }
        Err(e) if e.kind() == ErrorKind::InvalidInput && e.field() == Some("command") => {
            let message = e.message();
            let message = message.strip_prefix("command: ").unwrap_or(message);
            eprintln!("admin: {message}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("admin: {e}");
            ExitCode::FAILURE
        }
    }
}

fn arg<'a>(args: &'a [String], i: usize, name: &str) -> tenancy::Result<&'a str> {
    args.get(i)
        .map(String::as_str)
        .ok_or_else(|| Error::invalid_input("command", format!("missing {name}")))
}

async fn find_org(store: &SupabaseStore, key: &str) -> tenancy::Result<Organization> {
    let found = match OrgId::parse(key) {
        Ok(id) => store.organization(id).await?,
        Err(_) => {
            store
                .organization_by_slug(&tenancy::Slug::parse(key)?)
                .await?
        }
    };
    found.ok_or_else(|| Error::not_found(format!("no organization {key:?}")))
}

async fn run(args: &[String]) -> tenancy::Result<()> {
    let store = SupabaseStore::from_env()?;
    let tenancy = Tenancy::builder().store(store.clone()).build()?;
    let operator = PlatformOperator::new("admin-cli");
    let op = tenancy.operator(&operator);
    match args[0].as_str() {
        "orgs" => {
            let search = args.get(1).map(String::as_str);
            println!("{:<36}  {:<24}  {:<16}  name", "id", "slug", "timezone");
            // By name, a page at a time.
            for offset in (0..).step_by(MAX_ORG_PAGE) {
                let page = op.organizations(search, MAX_ORG_PAGE, offset).await?;
                for o in &page {
                    println!(
                        "{:<36}  {:<24}  {:<16}  {}",
                        o.id.to_string(),
                        o.slug.as_str(),
                        o.timezone.name(),
                        o.name
                    );
                }
                if page.len() < MAX_ORG_PAGE {
                    break;
                }
            }
        }
        "create-org" => {
            let owner = UserId::parse(arg(args, 3, "OWNER")?)?;
            let new = NewOrganization::new(arg(args, 1, "NAME")?, arg(args, 2, "SLUG")?)?;
            let org = tenancy.create_organization(owner, new).await?;
            println!("created {} ({})", org.slug.as_str(), org.id);
        }
        "members" => {
            let org = find_org(&store, arg(args, 1, "ORG")?).await?;
            for m in store.members(org.id).await? {
                println!(
                    "{}  {:<7}  since {}",
                    m.user_id,
                    m.role.as_str(),
                    m.created_at
                );
            }
        }
        "add-member" => {
            let org = find_org(&store, arg(args, 1, "ORG")?).await?;
            let membership = Membership {
                user_id: UserId::parse(arg(args, 2, "USER")?)?,
                organization_id: org.id,
                role: Role::parse(arg(args, 3, "ROLE")?)?,
                created_at: chrono::Utc::now(),
            };
            store.add_member(&membership).await?;
            println!(
                "added {} as {}",
                membership.user_id,
                membership.role.as_str()
            );
        }
        "features" => {
            let org = find_org(&store, arg(args, 1, "ORG")?).await?;
            for f in op.features(org.id).await? {
                let state = if f.enabled { "on " } else { "off" };
                println!("{state}  {:<32}  {}", f.key.as_str(), f.config);
            }
        }
        cmd @ ("enable" | "disable") => {
            let org = find_org(&store, arg(args, 1, "ORG")?).await?;
            let key = arg(args, 2, "KEY")?;
            let feature = if cmd == "enable" {
                op.enable_feature(org.id, key).await?
            } else {
                op.disable_feature(org.id, key).await?
            };
            let state = if feature.enabled { "on" } else { "off" };
            println!("{key}: {state} for {}", org.slug.as_str());
        }
        "limits" => {
            let org = find_org(&store, arg(args, 1, "ORG")?).await?;
            for l in op.limits(org.id).await? {
                println!(
                    "{}  {:<8}  {:<20}  {:>16}  {}",
                    l.id,
                    l.period.as_str(),
                    l.metric.as_str(),
                    l.value,
                    l.scope
                );
            }
        }
        "set-limit" => {
            let org = find_org(&store, arg(args, 1, "ORG")?).await?;
            let value = arg(args, 3, "VALUE")?
                .parse()
                .map_err(|_| Error::invalid_input("command", "VALUE must be a number"))?;
            let mut new = NewLimit::from_limit_type(arg(args, 2, "LIMIT_TYPE")?, value)?;
            if args.get(4).is_some_and(|m| m == "soft") {
                new = new.soft();
            }
            let limit = op.set_limit(org.id, new).await?;
            println!(
                "limit {} set: {} {}",
                limit.id,
                limit.value,
                limit.mode.as_str()
            );
        }
        "usage" => {
            let org = find_org(&store, arg(args, 1, "ORG")?).await?;
            let lines = op.usage_summary(org.id).await?;
            println!(
                "{:<20}  {:<8}  {:<10}  {:>16}  {:>16}  {:>16}  {:>7}",
                "metric", "period", "scope", "used", "reserved", "limit", "%"
            );
            let dash = || "-".to_owned();
            for line in &lines {
                let scope = match line.scope.user() {
                    // The last digits: a UUIDv7 starts with its timestamp.
                    Some(user) => {
                        let id = user.to_string();
                        id[id.len() - 8..].to_owned()
                    }
                    None => "org-wide".to_owned(),
                };
                println!(
                    "{:<20}  {:<8}  {:<10}  {:>16}  {:>16}  {:>16}  {:>7}",
                    line.metric.as_str(),
                    line.period.as_str(),
                    scope,
                    line.used,
                    line.reserved,
                    line.limit.map_or_else(dash, |l| l.to_string()),
                    line.percent.map_or_else(dash, |p| p.to_string()),
                );
            }
        }
        other => {
            return Err(Error::invalid_input(
                "command",
                format!("unknown command {other:?}"),
            ));
        }
    }
    Ok(())
}
