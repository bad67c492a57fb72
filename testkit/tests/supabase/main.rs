//! Live tests of `SupabaseStore` against a private PostgreSQL cluster and
//! the PostgREST stand-in: the whole store-contract suite on the service
//! client, user-client isolation, scoped tables, and error mapping.
//!
//! Without PostgreSQL or the stand-in the tests print a SKIPPED line and
//! pass, unless `TENANCY_REQUIRE_LIVE` is set.

mod audit;
mod domains;
mod errors;
mod invitations;
mod isolation;
mod leases;
mod plans;
mod policy;
mod propagation;
mod python;
mod rate_limits;
mod reports;
#[path = "../common/responses.rs"]
mod responses;
mod scoped;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tenancy::store::DynStore;
use tenancy::supabase::{ApiError, SupabaseStore};
use tenancy::{NewOrganization, Organization, Tenancy, TenantContext, UserId};
use tenancy_testkit::postgrest::Server;
use tenancy_testkit::unique_slug;

fn server() -> Option<&'static Server> {
    Server::shared()
}

fn service_store(server: &Server) -> SupabaseStore {
    SupabaseStore::builder()
        .rest_url(server.url())
        .service_role_key(server.service_key())
        .anon_key(server.anon_key())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("service store")
}

/// The contract factory: a fresh client (its own connection pool, on this
/// test's runtime) per test.
async fn supabase_store() -> Option<Arc<DynStore>> {
    let server = tokio::task::spawn_blocking(server).await.expect("start")?;
    Some(Arc::new(service_store(server)))
}

tenancy::store_contract_tests!(supabase_store);

/// Two orgs, each with its own owner, created through the service client.
struct TwoOrgs {
    service: SupabaseStore,
    tenancy: Tenancy,
    alice: UserId,
    bob: UserId,
    acme: Organization,
    globex: Organization,
}

async fn two_orgs() -> Option<(&'static Server, TwoOrgs)> {
    let server = tokio::task::spawn_blocking(server).await.expect("start")?;
    let service = service_store(server);
    let tenancy = Tenancy::builder()
        .store(service.clone())
        .build()
        .expect("tenancy");
    let (alice, bob) = (UserId::new_v7(), UserId::new_v7());
    let acme = tenancy
        .create_organization(
            alice,
            NewOrganization::new("Acme", &unique_slug("acme")).unwrap(),
        )
        .await
        .expect("acme");
    let globex = tenancy
        .create_organization(
            bob,
            NewOrganization::new("Globex", &unique_slug("globex")).unwrap(),
        )
        .await
        .expect("globex");
    let t = TwoOrgs {
        service,
        tenancy,
        alice,
        bob,
        acme,
        globex,
    };
    Some((server, t))
}

impl TwoOrgs {
    async fn ctx(&self, user: UserId, org: &Organization) -> TenantContext {
        self.tenancy.context(user, org.id).await.expect("context")
    }
}

fn user_client(server: &Server, service: &SupabaseStore, user: UserId) -> SupabaseStore {
    service
        .user_client(&server.user_token(user.as_uuid()))
        .expect("user client")
}

fn api(err: &tenancy::Error) -> &ApiError {
    std::error::Error::source(err)
        .and_then(|s| s.downcast_ref::<ApiError>())
        .unwrap_or_else(|| panic!("no ApiError source in {err:?}"))
}

#[derive(Debug, Deserialize, PartialEq)]
struct Brand {
    id: i64,
    name: String,
    organization_id: String,
}
