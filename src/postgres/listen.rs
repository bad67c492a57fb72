//! The `LISTEN` connection: entitlement changes pushed by the database as
//! they commit, on one direct (or session-mode) connection per store.
//!
//! The SQL side (`migrations/20261206001200_tenancy_plans.sql`) notifies
//! [`CHANNEL`] in the transaction of every change to an assignment or an
//! override, with the organization's id as the payload, or `*` when more
//! than one organization changed (or a table was truncated). A new catalog
//! version changes no organization's view and notifies nothing.
//! Notifications are delivered at commit, so a change is announced only
//! once it is visible.
//!
//! The connection is opened by the first
//! [`watch_entitlements`](crate::store::PlanStore::watch_entitlements), on
//! that caller's tokio runtime, and lives until the last clone of the store
//! is dropped. When it fails (the server restarted, the network dropped,
//! the heartbeat went unanswered) it is opened again with backoff, and every
//! (re)connection announces [`EntitlementChange::All`]: notifications sent
//! while nobody listened are lost, so everything cached may be stale.

use std::sync::Mutex;
use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBuilder};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, Connection, Notification};

use super::Connector;
use super::call::from_postgres_error;
use crate::error::{Error, ErrorKind, Result};
use crate::ids::OrgId;
use crate::model::plan::EntitlementChange;
use crate::store::EntitlementWatch;

/// The channel the SQL functions notify.
pub(super) const CHANNEL: &str = "tenancy_entitlements";

/// How many changes a watcher may fall behind before it sees
/// [`EntitlementChange::All`] instead.
const CAPACITY: usize = 1024;

/// How often an idle connection is checked with a round trip, so a
/// connection that died silently is noticed and replaced.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// The first and the longest wait before opening the connection again.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The `LISTEN` connection's settings, its subscribers, and its task.
pub(super) struct Listener {
    config: tokio_postgres::Config,
    connector: Connector,
    /// How long connecting, `LISTEN` and each heartbeat may take.
    timeout: Duration,
    changes: broadcast::Sender<EntitlementChange>,
    /// The task holding the connection, once started.
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Listener {
    pub(super) fn new(
        mut config: tokio_postgres::Config,
        connector: Connector,
        timeout: Duration,
    ) -> Self {
        if config.get_application_name().is_none() {
            config.application_name("tenancy entitlements listener");
        }
        config.connect_timeout(timeout);
        Listener {
            config,
            connector,
            timeout,
            changes: broadcast::channel(CAPACITY).0,
            task: Mutex::new(None),
        }
    }

    /// A new subscriber, starting the connection's task on the current
    /// tokio runtime when it is not running. `None` outside a tokio
    /// runtime: the caller polls instead.
    pub(super) fn watch(&self) -> Option<EntitlementWatch> {
        let mut task = crate::sync::lock(&self.task);
        // Finished: its runtime shut down (a test's), or it never started.
        if task.as_ref().is_none_or(JoinHandle::is_finished) {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                tracing::warn!(
                    "PgStore's listen connection needs a tokio runtime; entitlement changes \
                     will be polled"
                );
                return None;
            };
            let session = Session {
                config: self.config.clone(),
                connector: self.connector.clone(),
                timeout: self.timeout,
                changes: self.changes.clone(),
            };
            *task = Some(runtime.spawn(session.run()));
        }
        Some(EntitlementWatch::new(self.changes.subscribe()))
    }
}

impl Drop for Listener {
    /// Closes the connection: its task ends, and with it every watcher's
    /// stream.
    fn drop(&mut self) {
        if let Some(task) = crate::sync::lock(&self.task).take() {
            task.abort();
        }
    }
}

/// What the connection's task owns.
struct Session {
    config: tokio_postgres::Config,
    connector: Connector,
    timeout: Duration,
    changes: broadcast::Sender<EntitlementChange>,
}

impl Session {
    /// Listens for good: each connection until it fails, then the next
    /// after a backoff that restarts once a connection was established.
    async fn run(self) {
        let backoff = || {
            ExponentialBuilder::default()
                .with_min_delay(MIN_BACKOFF)
                .with_max_delay(MAX_BACKOFF)
                .with_jitter()
                .without_max_times()
                .build()
        };
        let mut delays = backoff();
        loop {
            let (established, error) = self.listen_once().await;
            if established {
                delays = backoff();
                tracing::warn!(error = %error, "entitlement listen connection lost; reconnecting");
            } else {
                tracing::warn!(error = %error, "cannot open the entitlement listen connection; retrying");
            }
            tokio::time::sleep(delays.next().unwrap_or(MAX_BACKOFF)).await;
        }
    }

    /// One connection: opens it, listens, announces `All`, then forwards
    /// every notification until the connection fails. Returns whether it
    /// was established, and why it ended.
    async fn listen_once(&self) -> (bool, Error) {
        let what = "listening for entitlement changes";
        let (client, mut notes, driver) = match self.connect(what).await {
            Ok(opened) => opened,
            Err(e) => return (false, e),
        };
        let statement = format!("listen {CHANNEL}");
        let listen = client.batch_execute(&statement);
        match tokio::time::timeout(self.timeout, listen).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return (false, from_postgres_error(e, what)),
            Err(_) => return (false, no_answer(what, self.timeout)),
        }
        // Whatever changed before this connection listened went unheard.
        let _ = self.changes.send(EntitlementChange::All);
        let mut heartbeat =
            tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
        loop {
            tokio::select! {
                note = notes.recv() => match note {
                    Some(note) if note.channel() == CHANNEL => {
                        // No subscriber at the moment: nothing to tell.
                        let _ = self.changes.send(change(note.payload()));
                    }
                    Some(_) => {}
                    None => {
                        let error = match driver.await {
                            Ok(Err(e)) => from_postgres_error(e, what),
                            _ => Error::new(ErrorKind::Unavailable, format!("{what}: the connection closed")),
                        };
                        return (true, error);
                    }
                },
                _ = heartbeat.tick() => {
                    match tokio::time::timeout(self.timeout, client.batch_execute("select 1")).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return (true, from_postgres_error(e, what)),
                        Err(_) => return (true, no_answer(what, self.timeout)),
                    }
                }
            }
        }
    }

    /// The client, the notifications its connection receives, and the task
    /// driving the connection (it ends when the client is dropped).
    async fn connect(
        &self,
        what: &str,
    ) -> Result<(
        Client,
        mpsc::UnboundedReceiver<Notification>,
        JoinHandle<std::result::Result<(), tokio_postgres::Error>>,
    )> {
        let (sender, notes) = mpsc::unbounded_channel();
        let opened = match &self.connector {
            Connector::Plain => {
                let connect = self.config.connect(tokio_postgres::NoTls);
                tokio::time::timeout(self.timeout, connect)
                    .await
                    .map(|r| r.map(|(client, conn)| (client, tokio::spawn(drive(conn, sender)))))
            }
            Connector::Rustls(tls) => {
                let connect = self.config.connect(tls.clone());
                tokio::time::timeout(self.timeout, connect)
                    .await
                    .map(|r| r.map(|(client, conn)| (client, tokio::spawn(drive(conn, sender)))))
            }
        };
        match opened {
            Ok(Ok((client, driver))) => Ok((client, notes, driver)),
            Ok(Err(e)) => Err(Error::new(
                ErrorKind::Unavailable,
                format!("{what}: cannot connect"),
            )
            .with_source(e)),
            Err(_) => Err(no_answer(what, self.timeout)),
        }
    }
}

/// Polls the connection, handing its notifications over, until it fails
/// or its client is dropped.
async fn drive<S, T>(
    mut connection: Connection<S, T>,
    notes: mpsc::UnboundedSender<Notification>,
) -> std::result::Result<(), tokio_postgres::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notification(note))) => {
                if notes.send(note).is_err() {
                    return Ok(());
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e),
            None => return Ok(()),
        }
    }
}

fn no_answer(what: &str, timeout: Duration) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!("{what}: no answer within {} ms", timeout.as_millis()),
    )
}

/// A notification's payload as a change: an organization's id, or `*`
/// (and, to be safe, anything unreadable) for all.
fn change(payload: &str) -> EntitlementChange {
    match payload.trim() {
        "*" => EntitlementChange::All,
        org => OrgId::parse(org)
            .map(EntitlementChange::Org)
            .unwrap_or(EntitlementChange::All),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_names_one_organization_or_all() {
        let org = OrgId::new_v7();
        assert_eq!(change(&org.to_string()), EntitlementChange::Org(org));
        assert_eq!(change("*"), EntitlementChange::All);
        assert_eq!(change(""), EntitlementChange::All);
        assert_eq!(change("not an id"), EntitlementChange::All);
    }
}
