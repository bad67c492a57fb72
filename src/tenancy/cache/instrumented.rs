//! [`Instrumented`]: the store behind the caches, every call in a
//! `tracing` span named by its operation and, with the feature `metrics`,
//! timed and counted (the names are in the `metrics` module).
//!
//! Its methods are inherent, generated from each capability's one list of
//! methods, so the caching store's calls (`self.inner.<method>(…)`) reach
//! them without another boxed future, and a method added to a capability is
//! instrumented without a line here.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tracing::Instrument as _;

use crate::error::Result;
use crate::ids::{FeatureKey, LimitId, OrgId, Slug, UserId};
use crate::limits::{AlertKey, Limit, UsageSnapshot};
use crate::model::{
    Feature, FeatureChange, Membership, OrgMembership, Organization, Role, UsageRecord,
};
use crate::store::{
    AlertStore, Backend, CommitOutcome, CommitRequest, CounterDrift, CounterValue, DynStore,
    FeatureStore, HistoryQuery, LeaseStore, LimitStore, MemberStore, MeteringStore, OrgQuery,
    OrgStore, Principal, RateLimitStore, ReconcileQuery, RecordOutcome, ReleaseRequest,
    ReportStore, ReserveRequest, ReserveResult, UsageQuery, alert_store_methods,
    audit_store_methods, domain_store_methods, feature_store_methods, invitation_store_methods,
    limit_store_methods, member_store_methods, metering_store_methods, org_store_methods,
    plan_store_methods, rate_limit_store_methods,
};

/// The store every facade call goes through, instrumented.
#[derive(Debug)]
pub(super) struct Instrumented {
    inner: Arc<DynStore>,
    /// The limit-decision counters, per metric.
    #[cfg(feature = "metrics")]
    decisions: crate::metrics::LimitDecisions,
}

impl Instrumented {
    pub(super) fn new(inner: Arc<DynStore>) -> Self {
        #[cfg(feature = "metrics")]
        crate::metrics::describe();
        Instrumented {
            inner,
            #[cfg(feature = "metrics")]
            decisions: crate::metrics::LimitDecisions::default(),
        }
    }

    pub(super) fn principal(&self) -> Principal {
        self.inner.principal()
    }

    pub(super) fn rate_limits(&self) -> Option<&dyn RateLimitStore> {
        self.inner.rate_limits()
    }

    pub(super) fn leases(&self) -> Option<&dyn LeaseStore> {
        self.inner.leases()
    }

    pub(super) fn reports(&self) -> Option<&dyn ReportStore> {
        self.inner.reports()
    }

    /// The limit-decision counters.
    #[cfg(feature = "metrics")]
    pub(super) fn decisions(&self) -> &crate::metrics::LimitDecisions {
        &self.decisions
    }
}

/// Records how a call ended on its span.
fn record_outcome<T>(span: &tracing::Span, result: &Result<T>) {
    match result {
        Ok(_) => span.record("outcome", "ok"),
        Err(e) => span
            .record("outcome", "error")
            .record("error_kind", e.kind().as_str()),
    };
}

/// `impl Instrumented { … }`: every method of a capability's list, each
/// calling the inner store in a span named `store.<method>` and, with the
/// feature `metrics`, recording its duration and errors.
macro_rules! instrumented {
    (; $(fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        impl Instrumented {
            $(
                pub(super) async fn $name(&self, $($arg: $ty),*) -> $ret {
                    let span = tracing::debug_span!(
                        target: "tenancy::store",
                        concat!("store.", stringify!($name)),
                        operation = stringify!($name),
                        outcome = tracing::field::Empty,
                        error_kind = tracing::field::Empty,
                    );
                    #[cfg(feature = "metrics")]
                    let started = std::time::Instant::now();
                    // Without a subscriber that wants the span, no wrapper
                    // future and no recording: the common case costs a
                    // check of the callsite's interest.
                    let result = if span.is_disabled() {
                        self.inner.$name($($arg),*).await
                    } else {
                        let result = self.inner.$name($($arg),*).instrument(span.clone()).await;
                        record_outcome(&span, &result);
                        result
                    };
                    #[cfg(feature = "metrics")]
                    {
                        use crate::metrics::{static_key, LABEL_OPERATION, LABEL_OUTCOME, STORE_CALL_DURATION};
                        let error = result.as_ref().err().map(crate::error::Error::kind);
                        let key = match error {
                            None => static_key!(STORE_CALL_DURATION;
                                LABEL_OPERATION => stringify!($name), LABEL_OUTCOME => "ok"),
                            Some(_) => static_key!(STORE_CALL_DURATION;
                                LABEL_OPERATION => stringify!($name), LABEL_OUTCOME => "error"),
                        };
                        crate::metrics::store_call(key, stringify!($name), started.elapsed(), error);
                    }
                    result
                }
            )*
        }
    };
}

org_store_methods!(instrumented! {});
member_store_methods!(instrumented! {});
feature_store_methods!(instrumented! {});
limit_store_methods!(instrumented! {});
metering_store_methods!(instrumented! {});
alert_store_methods!(instrumented! {});
invitation_store_methods!(instrumented! {});
domain_store_methods!(instrumented! {});
audit_store_methods!(instrumented! {});
plan_store_methods!(instrumented! {});
rate_limit_store_methods!(instrumented! {});

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    use super::*;
    use crate::memory::MemoryStore;
    use crate::sync::lock;

    /// Every span opened, with its name and fields as text.
    #[derive(Debug, Default)]
    struct Spans(Mutex<Vec<(&'static str, HashMap<String, String>)>>);

    struct Fields<'a>(&'a mut HashMap<String, String>);

    impl Visit for Fields<'_> {
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.insert(field.name().to_owned(), value.to_owned());
        }

        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0.insert(field.name().to_owned(), format!("{value:?}"));
        }
    }

    impl Subscriber for &'static Spans {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }

        fn new_span(&self, span: &Attributes<'_>) -> Id {
            let mut fields = HashMap::new();
            span.record(&mut Fields(&mut fields));
            let mut spans = lock(&self.0);
            spans.push((span.metadata().name(), fields));
            Id::from_u64(spans.len() as u64)
        }

        fn record(&self, span: &Id, values: &Record<'_>) {
            let mut spans = lock(&self.0);
            let at = usize::try_from(span.into_u64()).unwrap() - 1;
            values.record(&mut Fields(&mut spans[at].1));
        }

        fn record_follows_from(&self, _: &Id, _: &Id) {}

        fn event(&self, _: &Event<'_>) {}

        fn enter(&self, _: &Id) {}

        fn exit(&self, _: &Id) {}
    }

    /// Each call is a span named by its operation, with its outcome and,
    /// for a failure, the error's kind.
    #[tokio::test]
    async fn every_store_call_is_a_span_named_by_its_operation() {
        let spans: &'static Spans = Box::leak(Box::default());
        let _default = tracing::subscriber::set_default(spans);
        let store = Instrumented::new(Arc::new(MemoryStore::new()));
        let missing = OrgId::new_v7();
        assert!(store.organization(missing).await.unwrap().is_none());
        let err = store
            .rename_organization(missing, "Acme")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::NotFound);

        let spans = lock(&spans.0);
        let seen: Vec<_> = spans
            .iter()
            .map(|(name, fields)| {
                let field = |f: &str| fields.get(f).cloned().unwrap_or_default();
                (
                    *name,
                    field("operation"),
                    field("outcome"),
                    field("error_kind"),
                )
            })
            .collect();
        let expected = |name, operation: &str, outcome: &str, kind: &str| {
            (
                name,
                operation.to_owned(),
                outcome.to_owned(),
                kind.to_owned(),
            )
        };
        assert_eq!(
            seen,
            [
                expected("store.organization", "organization", "ok", ""),
                expected(
                    "store.rename_organization",
                    "rename_organization",
                    "error",
                    "not_found"
                ),
            ]
        );
    }
}
