//! A worker that respects limits: the API accepts a job and a worker calls
//! the model.
//!
//! ```text
//! cargo run --example worker --features hold-tokens
//! ```
//!
//! The API reserves the estimate (so a job that would pass the limit is
//! refused with a 429 before it is queued), seals the hold into a signed
//! token and puts it in the job. The worker opens the token, calls the
//! model, and commits what the call used, or releases the hold if the call
//! failed. The queue here is a tokio channel standing in for a real one
//! (SQS, pgmq, Redis); it delivers one job twice, as real queues sometimes
//! do, and the usage still counts once.
//!
//! The API and the worker are two `Tenancy` instances on one store with
//! the same hold secret, as two processes on one Supabase database would
//! be. Set `TENANCY_HOLD_SECRET` (32 bytes or more, e.g.
//! `openssl rand -hex 32`) to use your own.

use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde::{Deserialize, Serialize};
use tenancy::{
    HoldToken, MemoryStore, NewLimit, NewOrganization, PlatformOperator, ReserveOutcome, Tenancy,
    TenantContext, UsageEvent, UserId,
};
use tokio::sync::mpsc;

/// A job as the API enqueues it: the work, and the hold that pays for it.
#[derive(Debug, Serialize, Deserialize)]
struct Job {
    prompt: String,
    /// The tokens the API reserved, sealed.
    hold: HoldToken,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> tenancy::Result<()> {
    let secret = std::env::var("TENANCY_HOLD_SECRET")
        .unwrap_or_else(|_| "demo only: use 32 random bytes from your secret store".into());
    let store = std::sync::Arc::new(MemoryStore::new());
    let instance = || {
        Tenancy::builder()
            .shared_store(store.clone())
            .hold_secret("2026-03", &secret)
            .build()
    };
    let (api, worker) = (instance()?, instance()?);

    // An organization with a monthly limit of 1 000 tokens.
    let alice = UserId::new_v7();
    let acme = api
        .create_organization(alice, NewOrganization::new("Acme", "acme")?)
        .await?;
    api.operator(&PlatformOperator::new("worker-example"))
        .set_limit(
            acme.id,
            NewLimit::from_limit_type("monthly_tokens", dec!(1000))?,
        )
        .await?;
    let ctx = api.context(alice, acme.id).await?;

    // The API side: each request reserves before it is accepted. The
    // holds count against the limit while the jobs wait in the queue.
    let (queue, jobs) = mpsc::channel::<String>(16);
    for (prompt, estimate) in [
        ("Write three headlines for the spring sale", dec!(400)),
        ("Translate the landing page into German", dec!(500)),
        ("Summarize last quarter's campaign reports", dec!(300)),
    ] {
        match accept(&api, &ctx, prompt, estimate).await? {
            Some(message) => {
                queue
                    .send(message.clone())
                    .await
                    .expect("the worker is running");
                if prompt.starts_with("Write") {
                    // At-least-once delivery: the same job again.
                    queue.send(message).await.expect("the worker is running");
                }
                println!("API: accepted {prompt:?}, holding {estimate} tokens");
            }
            None => println!("API: 429 for {prompt:?}: {estimate} tokens would pass the limit"),
        }
    }
    drop(queue);

    // The worker side, usually another process.
    work(worker, jobs).await?;

    let d = api.check_limit(&ctx, "tokens", Decimal::ZERO).await?;
    println!(
        "used {} of {} tokens this month, {} still held",
        d.used,
        d.limit.unwrap_or_default(),
        d.reserved
    );
    assert_eq!((d.used, d.reserved), (dec!(370), Decimal::ZERO));
    Ok(())
}

/// The API's handler: reserves `estimate` tokens for the job, and returns
/// the message to enqueue, or `None` when the limit refuses it (answer 429
/// with `Retry-After` from the decision).
async fn accept(
    api: &Tenancy,
    ctx: &TenantContext,
    prompt: &str,
    estimate: Decimal,
) -> tenancy::Result<Option<String>> {
    let hold = match api.reserve(ctx, "tokens", estimate).await? {
        ReserveOutcome::Granted(hold) => hold,
        ReserveOutcome::Denied(_) => return Ok(None),
    };
    let job = Job {
        prompt: prompt.into(),
        hold: api.seal(&hold)?,
    };
    // If enqueueing failed, the API would release the hold here.
    Ok(Some(serde_json::to_string(&job).expect("a job serializes")))
}

/// The worker: opens each job's hold, calls the model, commits what it
/// used (or releases the hold if the call failed). A redelivered job
/// commits again, harmlessly: the usage counts once.
async fn work(worker: Tenancy, mut jobs: mpsc::Receiver<String>) -> tenancy::Result<()> {
    while let Some(message) = jobs.recv().await {
        let job: Job = serde_json::from_str(&message).expect("a job");
        // A forged, altered or long-expired token is refused here
        // (PermissionDenied): drop the message, do not retry it.
        let hold = match worker.open(&job.hold) {
            Ok(hold) => hold,
            Err(e) => {
                eprintln!("worker: dropping a job: {e}");
                continue;
            }
        };
        match call_model(&job.prompt).await {
            Ok((input, output)) => {
                let event = UsageEvent::new(hold.org())
                    .ai_call("anthropic", "claude-sonnet", "campaign_copy")
                    .tokens(input, 0, output);
                let outcome = worker.commit_event(&hold, event).await?;
                println!(
                    "worker: {:?}: {} tokens {}",
                    job.prompt,
                    input + output,
                    if outcome.recorded {
                        "recorded"
                    } else {
                        "already recorded (a redelivery)"
                    }
                );
            }
            Err(why) => {
                worker.release(&hold).await?;
                println!("worker: {:?} failed ({why}); hold released", job.prompt);
            }
        }
    }
    Ok(())
}

/// A stand-in for the model: tokens in and out, or a failure.
async fn call_model(prompt: &str) -> Result<(u64, u64), &'static str> {
    tokio::task::yield_now().await;
    if prompt.starts_with("Translate") {
        return Err("the provider answered 529 overloaded");
    }
    Ok((120, 250))
}
