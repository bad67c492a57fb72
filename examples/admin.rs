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
//! cargo run --example admin --features supabase -- make-operator <user-id|email> [KEY]
//! cargo run --example admin --features supabase -- revoke-operator <user-id|email> [KEY]
//! cargo run --example admin --features supabase -- operator-sql <email> [KEY]
//! ```
//!
//! `<org>` is an organization id or slug.
//!
//! # The operator
//!
//! For a console configured with
//! `OperatorPolicy::app_metadata_flag("tenancy_operator")`, the operator
//! is a user whose `app_metadata.tenancy_operator` is `true`. Only the
//! back end can set `app_metadata`:
//!
//! - `make-operator` sets it, and `revoke-operator` removes it, through
//!   Supabase Auth's admin API (`PUT {SUPABASE_URL}/auth/v1/admin/users/{id}`)
//!   with the service-role key: it needs `SUPABASE_URL` (the project URL,
//!   not `SUPABASE_REST_URL`: Auth lives beside PostgREST) and
//!   `SUPABASE_SERVICE_ROLE_KEY`. An email is looked up first among the
//!   project's users.
//! - `operator-sql` needs nothing: it prints the SQL that does the same,
//!   to run as the `postgres` role (the dashboard's SQL editor, or `psql`
//!   with the database's connection string), for a project without the
//!   Auth API or a user known only by email.
//!
//! Either way the flag is in the access tokens issued afterwards: the user
//! signs in again (or their client refreshes the session) to act as the
//! operator, and a revoked operator keeps the flag until their current
//! token expires (an hour by default). `KEY` defaults to
//! `tenancy_operator`.

use std::process::ExitCode;
use tenancy::store::{MemberStore, OrgStore};

use serde_json::{Value, json};
use tenancy::supabase::{ENV_SERVICE_ROLE_KEY, ENV_URL, SupabaseStore};
use tenancy::{
    Error, ErrorKind, MAX_ORG_PAGE, Membership, NewLimit, NewOrganization, OrgId, Organization,
    PlatformOperator, Role, Tenancy, UserId,
};

const USAGE: &str = "usage: admin <orgs [SEARCH] | create-org NAME SLUG OWNER | members ORG | \
add-member ORG USER ROLE | features ORG | enable ORG KEY | disable ORG KEY | limits ORG | \
set-limit ORG LIMIT_TYPE VALUE [soft] | usage ORG | make-operator USER [KEY] | \
revoke-operator USER [KEY] | operator-sql EMAIL [KEY]>";

/// The `app_metadata` key of `OperatorPolicy::app_metadata_flag` unless
/// another is given.
pub const OPERATOR_KEY: &str = "tenancy_operator";

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
    // The operator's commands need no store.
    match args[0].as_str() {
        "operator-sql" => {
            let email = arg(args, 1, "EMAIL")?;
            let key = args.get(2).map_or(OPERATOR_KEY, String::as_str);
            println!("-- as the postgres role: makes {email} the operator");
            println!("{}", operator_sql(email, key, true)?);
            println!("-- and to revoke it:");
            println!("-- {}", operator_sql(email, key, false)?);
            println!("-- The user signs in again to get a token with (or without) the flag.");
            return Ok(());
        }
        cmd @ ("make-operator" | "revoke-operator") => {
            let user = arg(args, 1, "USER")?;
            let key = args.get(2).map_or(OPERATOR_KEY, String::as_str);
            return set_operator_flag(user, key, cmd == "make-operator").await;
        }
        _ => {}
    }
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

/// Checks an `app_metadata` key: letters, digits, `_`, `-` and `.`, so that
/// it can stand in JSON and SQL text as it is.
fn operator_key(key: &str) -> tenancy::Result<&str> {
    let ok = !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if ok {
        Ok(key)
    } else {
        Err(Error::invalid_input(
            "command",
            format!("KEY {key:?} must be letters, digits, '_', '-' or '.'"),
        ))
    }
}

/// The SQL that sets (`grant`) or removes the operator flag `key` in the
/// `raw_app_meta_data` of the user with `email`, keeping its other keys
/// (Supabase Auth's `provider` and `providers`). For the `postgres` role.
pub fn operator_sql(email: &str, key: &str, grant: bool) -> tenancy::Result<String> {
    let key = operator_key(key)?;
    let email = email.trim();
    if email.is_empty() {
        return Err(Error::invalid_input("command", "EMAIL is empty"));
    }
    let email = email.replace('\'', "''");
    Ok(if grant {
        format!(
            "update auth.users set raw_app_meta_data = coalesce(raw_app_meta_data, '{{}}'::jsonb) || '{{\"{key}\": true}}' where email = '{email}';"
        )
    } else {
        format!(
            "update auth.users set raw_app_meta_data = raw_app_meta_data - '{key}' where email = '{email}';"
        )
    })
}

/// A required, non-empty environment variable; `Config` naming it and
/// what it is for otherwise.
fn required_env(name: &str, for_what: &str) -> tenancy::Result<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::config(format!("{name} is not set: {for_what}")))
}

/// A call to Supabase Auth's admin API that failed: the HTTP status says
/// how, the body (Auth's own message) is for the operator's terminal.
async fn auth_failure(what: &str, response: reqwest::Response) -> Error {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let kind = match status.as_u16() {
        401 | 403 => ErrorKind::Config,
        404 => ErrorKind::NotFound,
        500.. => ErrorKind::Unavailable,
        _ => ErrorKind::Unexpected,
    };
    Error::new(
        kind,
        format!("{what}: Supabase Auth answered {status}: {body}"),
    )
}

/// Sets (`on`) or removes the flag `key` in the `app_metadata` of `user`
/// (an id, or an email looked up first) through Supabase Auth's admin API,
/// which merges the keys it is given and deletes those given as `null`.
async fn set_operator_flag(user: &str, key: &str, on: bool) -> tenancy::Result<()> {
    let key = operator_key(key)?;
    let needs = "the operator's flag is set through Supabase Auth's admin API \
                 (or print the SQL with `operator-sql EMAIL`)";
    let url = required_env(ENV_URL, needs)?;
    let service_key = required_env(ENV_SERVICE_ROLE_KEY, needs)?;
    let admin = format!("{}/auth/v1/admin/users", url.trim_end_matches('/'));
    let http = reqwest::Client::new();
    let call = |request: reqwest::RequestBuilder| {
        request
            .header("apikey", &service_key)
            .bearer_auth(&service_key)
            .send()
    };
    let unreachable = |e: reqwest::Error| {
        Error::new(ErrorKind::Unavailable, "cannot reach Supabase Auth").with_source(e)
    };
    let id = match UserId::parse(user) {
        Ok(id) => id,
        Err(_) => {
            // `filter` matches emails by substring: keep the exact one.
            let response = call(
                http.get(&admin)
                    .query(&[("filter", user), ("per_page", "1000")]),
            )
            .await
            .map_err(unreachable)?;
            if !response.status().is_success() {
                return Err(auth_failure("looking the user up", response).await);
            }
            let found: Value = response.json().await.map_err(unreachable)?;
            found["users"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|u| {
                    u["email"]
                        .as_str()
                        .is_some_and(|e| e.eq_ignore_ascii_case(user.trim()))
                })
                .and_then(|u| u["id"].as_str())
                .map(UserId::parse)
                .transpose()?
                .ok_or_else(|| Error::not_found(format!("no user with email {user:?}")))?
        }
    };
    let value = if on { Value::Bool(true) } else { Value::Null };
    let body = json!({ "app_metadata": { key: value } });
    let response = call(http.put(format!("{admin}/{id}")).json(&body))
        .await
        .map_err(unreachable)?;
    if !response.status().is_success() {
        return Err(auth_failure("updating the user", response).await);
    }
    let updated: Value = response.json().await.map_err(unreachable)?;
    println!(
        "app_metadata of {id} ({}) is now {}",
        updated["email"].as_str().unwrap_or("no email"),
        updated["app_metadata"]
    );
    if on {
        println!("They are the operator once they sign in again (a new access token).");
    } else {
        println!("Tokens already issued keep the flag until they expire (an hour by default).");
    }
    Ok(())
}
