//! Holds that travel: the API reserves and seals a hold into a signed
//! token, a queue carries it, a worker opens it and commits (or releases)
//! once, however often it is delivered or retried. Forged, altered,
//! truncated and expired tokens are refused and record nothing; random
//! input never panics. One scenario runs live on `PgStore` (skipped
//! without PostgreSQL).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde::{Deserialize, Serialize};
use tenancy::postgres::PgStore;
use tenancy::{
    CommitOutcome, ErrorKind, HoldToken, NewLimit, NewOrganization, PlatformOperator, Reservation,
    Role, Tenancy, TenantContext, UsageEvent, UserId,
};
use tokio::sync::mpsc;

use crate::scene::{RESERVATION_TTL, Scene, at_once, dec, kind, monthly, scene};

const SECRET: &str = "the hold secret: 32 bytes or more, shared by API and workers";
const OTHER_SECRET: &str = "another secret, also 32 bytes or more, of another deployment";

/// Another instance on the scene's store and clock (the API, or a worker),
/// with these hold secrets: the first signs, the others are still accepted.
fn instance(s: &Scene, secrets: &[(&str, &str)]) -> Tenancy {
    let (first, rest) = secrets.split_first().expect("a secret");
    let mut builder = Tenancy::builder()
        .shared_store(Arc::clone(&s.store))
        .clock(s.clock.clone())
        .reservation_ttl(RESERVATION_TTL)
        .hold_secret(first.0, first.1);
    for (key_id, secret) in rest {
        builder = builder.previous_hold_secret(*key_id, secret);
    }
    builder.build().expect("valid configuration")
}

/// `ctx` reserves `amount` tokens through `api` and seals the hold.
async fn sealed(api: &Tenancy, ctx: &TenantContext, amount: i64) -> (Reservation, HoldToken) {
    let hold = api
        .reserve(ctx, "tokens", dec(amount))
        .await
        .expect("reserve")
        .granted()
        .expect("fits");
    let token = api.seal(&hold).expect("seal");
    (hold, token)
}

/// A job as the API puts it on a queue.
#[derive(Debug, Serialize, Deserialize)]
struct Job {
    prompt: String,
    hold: HoldToken,
}

/// A worker: takes jobs off the queue, opens each hold, "calls the model"
/// (45 tokens) and commits. Its first commit of each job is retried, as
/// after a lost response. Returns every commit's outcome.
async fn work(worker: Tenancy, mut queue: mpsc::Receiver<String>) -> Vec<CommitOutcome> {
    let mut outcomes = Vec::new();
    while let Some(message) = queue.recv().await {
        let job: Job = serde_json::from_str(&message).expect("a job");
        let hold = worker.open(&job.hold).expect("a genuine token");
        let event = UsageEvent::new(hold.org())
            .ai_call("anthropic", "claude", "summarize")
            .tokens(30, 0, 15);
        for _ in 0..2 {
            let outcome = worker.commit_event(&hold, event.clone()).await;
            outcomes.push(outcome.expect("commit"));
        }
    }
    outcomes
}

/// The API seals a hold into a job on a queue that delivers at least once
/// (the same message twice, as after a worker crashed before its ack); the
/// worker opens it and commits, retrying each commit. The usage is counted
/// once and the hold is dropped once.
#[tokio::test]
async fn a_hold_handed_over_a_queue_is_committed_once_even_when_the_worker_retries() {
    let s = scene().await;
    let member = s.member(Role::Member).await;
    s.limit(monthly("tokens", 100)).await;
    let api = instance(&s, &[("k1", SECRET)]);
    let worker = instance(&s, &[("k1", SECRET)]);

    let (hold, token) = sealed(&api, &member, 60).await;
    assert_eq!(worker.open(&token).unwrap(), hold, "the same reservation");
    let d = s.check(&member, "tokens", 50).await;
    assert_eq!((d.allowed, d.reserved), (false, dec(60)), "it holds");

    let (queue, jobs) = mpsc::channel(8);
    let job = serde_json::to_string(&Job {
        prompt: "Summarize this brief".into(),
        hold: token,
    })
    .unwrap();
    queue.send(job.clone()).await.unwrap();
    queue.send(job).await.unwrap();
    drop(queue);
    let outcomes = tokio::spawn(work(worker, jobs)).await.unwrap();

    assert_eq!(outcomes.len(), 4);
    assert_eq!(outcomes.iter().filter(|o| o.recorded).count(), 1);
    assert_eq!(outcomes.iter().filter(|o| o.released_hold).count(), 1);
    assert!(outcomes[0].recorded && outcomes[0].released_hold);
    let d = s.check(&member, "tokens", 0).await;
    assert_eq!((d.used, d.reserved), (dec(45), dec(0)));
}

/// Two workers that receive the same token at the same time (on two
/// threads) commit it once between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_racing_on_one_token_commit_it_once() {
    let s = scene().await;
    s.limit(monthly("tokens", 1_000)).await;
    let api = instance(&s, &[("k1", SECRET)]);
    for round in 0..16 {
        let (_, token) = sealed(&api, &s.owner_ctx, 10).await;
        let commit = |worker: Tenancy, token: HoldToken| async move {
            let hold = worker.open(&token).expect("open");
            worker.commit(&hold, dec(7)).await.expect("commit")
        };
        let (a, b) = at_once(
            commit(instance(&s, &[("k1", SECRET)]), token.clone()),
            commit(instance(&s, &[("k1", SECRET)]), token),
        )
        .await;
        assert_eq!(
            u8::from(a.recorded) + u8::from(b.recorded),
            1,
            "round {round}: {a:?} {b:?}"
        );
        let d = s.check(&s.owner_ctx, "tokens", 0).await;
        assert_eq!((d.used, d.reserved), (dec(7 * (round + 1)), dec(0)));
    }
}

/// A worker whose model call failed releases the hold through the token:
/// once, recording nothing; a later commit of it is `NotFound`.
#[tokio::test]
async fn a_worker_releases_a_hold_through_its_token() {
    let s = scene().await;
    s.limit(monthly("tokens", 100)).await;
    let api = instance(&s, &[("k1", SECRET)]);
    let worker = instance(&s, &[("k1", SECRET)]);
    let (_, token) = sealed(&api, &s.owner_ctx, 80).await;
    let hold = worker.open(&token).unwrap();
    assert!(worker.release(&hold).await.unwrap());
    assert!(!worker.release(&worker.open(&token).unwrap()).await.unwrap());
    assert_eq!(
        kind(worker.commit(&hold, dec(80)).await),
        ErrorKind::NotFound
    );
    let d = s.check(&s.owner_ctx, "tokens", 0).await;
    assert_eq!((d.used, d.reserved), (dec(0), dec(0)));
}

/// The refusal every bad token gets.
fn refused(worker: &Tenancy, token: &str) -> String {
    match worker.open(&HoldToken::from(token)) {
        Ok(hold) => panic!("{token:?} opened as {hold:?}"),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
            assert!(!e.is_retryable());
            assert!(e.message().starts_with("hold token refused: "), "{e}");
            e.message().to_owned()
        }
    }
}

/// Any changed byte, any truncation, another secret, another key id, a
/// payload altered to raise the estimate or change the organization: all
/// refused. Nothing is recorded and the hold is untouched, so the genuine
/// token still commits afterwards.
#[tokio::test]
async fn forged_or_altered_tokens_are_refused_and_record_nothing() {
    let s = scene().await;
    s.limit(monthly("tokens", 100)).await;
    let api = instance(&s, &[("k1", SECRET)]);
    let worker = instance(&s, &[("k1", SECRET)]);
    let (_, token) = sealed(&api, &s.owner_ctx, 60).await;
    let text = token.as_str();
    assert!(text.starts_with("hold-v1.k1."), "{text}");

    // Every byte changed, one at a time, to another URL-safe character.
    for (i, original) in text.bytes().enumerate() {
        let replacement = if original == b'A' { b'B' } else { b'A' };
        let mut altered = text.as_bytes().to_vec();
        altered[i] = replacement;
        refused(&worker, std::str::from_utf8(&altered).unwrap());
    }
    // Every truncation, and a byte more.
    for end in 0..text.len() {
        refused(&worker, &text[..end]);
    }
    refused(&worker, &format!("{text}A"));

    // A payload changed to hold more, or for another organization, with
    // the signature kept.
    let [version, key_id, payload, signature]: [&str; 4] =
        text.split('.').collect::<Vec<_>>().try_into().unwrap();
    let mut json: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(json["decision"]["requested"], "60");
    json["decision"]["requested"] = "6".into();
    json["org"] = serde_json::to_value(tenancy::OrgId::new_v7()).unwrap();
    let altered = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&json).unwrap());
    let why = refused(
        &worker,
        &format!("{version}.{key_id}.{altered}.{signature}"),
    );
    assert!(why.contains("signature"), "{why}");

    // The same token signed with another secret under the same key id, and
    // under a key id the worker does not have.
    let forger = instance(&s, &[("k1", OTHER_SECRET)]);
    let forged = forger.seal(&worker.open(&token).unwrap()).unwrap();
    assert!(refused(&worker, forged.as_str()).contains("signature"));
    let stranger = instance(&s, &[("k9", OTHER_SECRET)]);
    let foreign = stranger.seal(&worker.open(&token).unwrap()).unwrap();
    assert!(refused(&worker, foreign.as_str()).contains("key id \"k9\""));
    // Another format version, and junk.
    refused(&worker, &text.replacen("hold-v1", "hold-v2", 1));
    refused(&worker, "");
    refused(&worker, "....");

    let d = s.check(&s.owner_ctx, "tokens", 0).await;
    assert_eq!((d.used, d.reserved), (dec(0), dec(60)), "nothing recorded");
    let hold = worker.open(&token).unwrap();
    assert!(worker.commit(&hold, dec(50)).await.unwrap().recorded);
    assert_eq!(s.used(&s.owner_ctx, "tokens").await, dec(50));
}

/// A token opens until its hold has been expired for
/// `EXPIRED_HOLD_RETENTION`, as long as a commit of it would be recognised;
/// from then on it is refused and records nothing.
#[tokio::test]
async fn an_expired_token_is_refused() {
    let s = scene().await;
    let api = instance(&s, &[("k1", SECRET)]);
    let (hold, token) = sealed(&api, &s.owner_ctx, 40).await;
    let retention = tenancy::EXPIRED_HOLD_RETENTION.to_std().unwrap();
    s.clock
        .advance(RESERVATION_TTL + retention - Duration::from_secs(1));
    assert_eq!(api.open(&token).unwrap(), hold, "a second before the end");
    s.clock.advance(Duration::from_secs(1));
    let why = refused(&api, token.as_str());
    assert!(why.contains("expired"), "{why}");
    assert!(
        s.tenancy
            .usage_summary(&s.owner_ctx)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Rotation: a worker that has the new secret and still accepts the old
/// opens tokens signed with either; once the old one is dropped, its tokens
/// are refused.
#[tokio::test]
async fn secrets_rotate_by_key_id() {
    let s = scene().await;
    let old_api = instance(&s, &[("2026-02", SECRET)]);
    let new_api = instance(&s, &[("2026-03", OTHER_SECRET), ("2026-02", SECRET)]);
    let (old_hold, old) = sealed(&old_api, &s.owner_ctx, 1).await;
    let (new_hold, new) = sealed(&new_api, &s.owner_ctx, 1).await;
    assert!(new.as_str().starts_with("hold-v1.2026-03."));
    let rotating = instance(&s, &[("2026-03", OTHER_SECRET), ("2026-02", SECRET)]);
    assert_eq!(rotating.open(&old).unwrap(), old_hold);
    assert_eq!(rotating.open(&new).unwrap(), new_hold);
    assert_eq!(old_api.open(&old).unwrap(), old_hold);
    refused(&old_api, new.as_str());
    let rotated = instance(&s, &[("2026-03", OTHER_SECRET)]);
    assert_eq!(rotated.open(&new).unwrap(), new_hold);
    refused(&rotated, old.as_str());
}

/// Without a secret, sealing and opening are `Config` errors; a short
/// secret or a bad key id is refused by `build`, naming the setting and
/// never the secret; `Debug` shows key ids only.
#[tokio::test]
async fn secrets_are_configured_and_never_shown() {
    let s = scene().await;
    let (hold, token) = sealed(&instance(&s, &[("k1", SECRET)]), &s.owner_ctx, 1).await;
    assert_eq!(kind(s.tenancy.seal(&hold)), ErrorKind::Config);
    assert_eq!(kind(s.tenancy.open(&token)), ErrorKind::Config);

    let build = |key_id: &str, secret: &str| {
        Tenancy::builder()
            .shared_store(Arc::clone(&s.store))
            .hold_secret(key_id, secret)
            .build()
    };
    let short = "31 bytes: too short for a key!!";
    assert_eq!(short.len(), 31);
    let err = build("k1", short).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("hold_secret") && err.message().contains("31 bytes"));
    assert!(!err.to_string().contains(short));
    assert!(build("k1", &short.replace(':', "::")).is_ok(), "32 bytes");
    assert_eq!(kind(build("k.1", SECRET)), ErrorKind::Config);
    let err = Tenancy::builder()
        .shared_store(Arc::clone(&s.store))
        .hold_secret("k1", SECRET)
        .previous_hold_secret("k0", "short")
        .build()
        .unwrap_err();
    assert!(err.message().contains("previous_hold_secret"), "{err}");

    // The arguments swapped: the secret is in the key id's place. Neither
    // the error nor the builder's `Debug` shows it, be it too long for a
    // key id or shaped like one (32 hex digits).
    for secret in [SECRET, "0123456789abcdef0123456789abcdef"] {
        let builder = Tenancy::builder()
            .shared_store(Arc::clone(&s.store))
            .hold_secret(secret, "k1");
        assert!(!format!("{builder:?}").contains(&secret[..16]));
        let err = builder.build().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.message().contains("hold_secret"), "{err}");
        assert!(!format!("{err} {err:?}").contains(&secret[..16]), "{err}");
    }

    let worker = instance(&s, &[("k1", SECRET), ("k0", OTHER_SECRET)]);
    let shown = format!("{worker:?}");
    assert!(shown.contains("k1") && shown.contains("k0"), "{shown}");
    assert!(!shown.contains(SECRET) && !shown.contains(OTHER_SECRET));
    assert_eq!(
        format!("{token:?}"),
        format!("HoldToken(k1, {} bytes)", token.as_str().len())
    );
}

/// Random input never panics and is always refused: arbitrary bytes,
/// strings shaped like tokens, and a genuine token with random bytes
/// changed, cut or added.
#[test]
fn random_tokens_never_panic_and_are_refused() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (worker, genuine) = runtime.block_on(async {
        let s = scene().await;
        let worker = instance(&s, &[("k1", SECRET)]);
        let (_, token) = sealed(&worker, &s.owner_ctx, 5).await;
        (worker, token.into_string())
    });
    let refuses = |token: String| -> Result<(), TestCaseError> {
        let result = worker.open(&HoldToken::from(token.clone()));
        prop_assert_eq!(
            result.map_err(|e| e.kind()).err(),
            Some(ErrorKind::PermissionDenied),
            "{:?}",
            token
        );
        Ok(())
    };
    let mut runner = TestRunner::new(Config {
        cases: 2_000,
        ..Config::default()
    });
    runner
        .run(&prop::collection::vec(any::<u8>(), 0..2_048), |bytes| {
            refuses(String::from_utf8_lossy(&bytes).into_owned())
        })
        .unwrap();
    runner
        .run(
            &"(hold-v[0-9]|[a-z-]{0,8})\\.[A-Za-z0-9_.-]{0,40}\\.[A-Za-z0-9_=+/-]{0,400}\\.[A-Za-z0-9_=+/-]{0,60}",
            refuses,
        )
        .unwrap();
    let len = genuine.len();
    runner
        .run(
            &(
                prop::collection::vec((0..len, any::<u8>()), 1..4),
                0..=len,
                "[ -~]{0,3}",
            ),
            |(changes, keep, suffix)| {
                let mut bytes = genuine.clone().into_bytes();
                for (at, byte) in changes {
                    bytes[at] = byte;
                }
                bytes.truncate(keep);
                bytes.extend_from_slice(suffix.as_bytes());
                let token = String::from_utf8_lossy(&bytes).into_owned();
                prop_assume!(token != genuine);
                refuses(token)
            },
        )
        .unwrap();
}

/// Live on `PgStore`: an API instance and a worker instance, each with its
/// own pool, share the database and the secret; the worker commits a
/// sealed hold once although it commits twice, and a forged token changes
/// nothing in the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_travelling_hold_commits_once_on_pg_store() {
    let Some(cluster) = tenancy_testkit::pg::shared_with_fixtures().await else {
        return;
    };
    let on_pg = |secret: &str| {
        let store = PgStore::builder()
            .url(cluster.url(tenancy_testkit::pg::DATABASE))
            .pool_size(2)
            .build()
            .expect("a PgStore");
        Tenancy::builder()
            .store(store)
            .hold_secret("k1", secret)
            .build()
            .expect("valid configuration")
    };
    let (api, worker) = (on_pg(SECRET), on_pg(SECRET));
    let db = cluster.superuser().await;
    let alice = UserId::from(tenancy_testkit::pg::create_user(&db).await);
    let new = NewOrganization::new("Acme", &tenancy_testkit::unique_slug("holds")).unwrap();
    let org = api.create_organization(alice, new).await.unwrap().id;
    let limit = NewLimit::from_limit_type("monthly_tokens", dec(100)).unwrap();
    api.operator(&PlatformOperator::new("hold-tokens"))
        .set_limit(org, limit)
        .await
        .unwrap();
    let ctx = api.context(alice, org).await.unwrap();

    let (_, token) = sealed(&api, &ctx, 70).await;
    refused(&worker, &token.as_str().replacen(".ey", ".ez", 1));
    let forged = on_pg(OTHER_SECRET)
        .seal(&worker.open(&token).unwrap())
        .unwrap();
    refused(&worker, forged.as_str());
    let d = api.check_limit(&ctx, "tokens", dec(0)).await.unwrap();
    assert_eq!((d.used, d.reserved), (dec(0), dec(70)));

    let hold = worker.open(&token).unwrap();
    let first = worker.commit(&hold, dec(65)).await.unwrap();
    let retry = worker
        .commit(&worker.open(&token).unwrap(), dec(65))
        .await
        .unwrap();
    assert!(first.recorded && first.released_hold, "{first:?}");
    assert!(!retry.recorded && !retry.released_hold, "{retry:?}");
    let d = api.check_limit(&ctx, "tokens", dec(0)).await.unwrap();
    assert_eq!((d.used, d.reserved), (dec(65), dec(0)));
}
