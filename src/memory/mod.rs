//! The embedded store: everything in process memory behind one lock.
//!
//! For examples, tests, and single-process apps. Every method takes the
//! lock once, so each is atomic and concurrent reservations never
//! overshoot. Nothing is persisted.

mod alerts;
mod audit;
mod directory;
mod domains;
mod features;
mod invitations;
mod leases;
mod limits;
mod members;
mod metering;
mod orgs;
mod plans;
mod rate_limits;
mod reports;
mod tenant;

use std::sync::{Mutex, MutexGuard};

use crate::error::{Error, ErrorKind};
use crate::store::{Backend, LeaseStore, Principal, RateLimitStore, ReportStore};
use tenant::State;

pub use directory::MemoryUserDirectory;

/// The embedded, in-memory [`Store`](crate::store::Store).
///
/// ```
/// use tenancy::{MemoryStore, Tenancy};
/// let tenancy = Tenancy::builder().store(MemoryStore::new()).build()?;
/// # Ok::<(), tenancy::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }
}

fn already_exists(message: String) -> Error {
    Error::new(ErrorKind::AlreadyExists, message)
}

impl Backend for MemoryStore {
    fn principal(&self) -> Principal {
        Principal::Service
    }

    fn rate_limits(&self) -> Option<&dyn RateLimitStore> {
        Some(self)
    }

    fn leases(&self) -> Option<&dyn LeaseStore> {
        Some(self)
    }

    fn reports(&self) -> Option<&dyn ReportStore> {
        Some(self)
    }
}
