//! The I/O around the pure engine: sample every rule's source concurrently, hand the samples
//! to the engine, deliver the transitions. Binaries (and embedders) call these; the engine
//! itself stays free of clocks and sockets.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::AlertRuleConfig;
use crate::engine::Transition;
use crate::error::AlertError;
use crate::notify::{AnyNotifier, Notifier};
use crate::sample::Sample;
use crate::sources::{MetricSource, Source};

/// Samples every rule's source at once and returns the samples by rule name. Each source
/// bounds its own time (HTTP and command timeouts), so this returns within the longest one.
#[tracing::instrument(skip_all, fields(rules = rules.len()))]
pub async fn sample_all(rules: &[AlertRuleConfig]) -> BTreeMap<String, Sample> {
    let mut tasks = tokio::task::JoinSet::new();
    for entry in rules {
        let name = entry.rule.name.clone();
        let source: Arc<Source> = Arc::new(entry.source.clone());
        tasks.spawn(async move { (name, source.sample().await) });
    }
    let mut samples = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((name, sample)) => {
                tracing::debug!(rule = %name, ?sample, "sampled");
                samples.insert(name, sample);
            }
            // A panicking source task leaves its rule unsampled; the engine reports it as an
            // error sample ("not sampled") rather than losing the whole pass.
            Err(e) => tracing::error!(error = %e, "a source task failed"),
        }
    }
    samples
}

/// Delivers each notification-worthy transition to the rule's own notifiers and to `shared`
/// ones, all at once; returns the failures (delivery problems never stop evaluation).
#[tracing::instrument(skip_all, fields(transitions = transitions.len()))]
pub async fn deliver(
    transitions: &[Transition],
    rules: &[AlertRuleConfig],
    shared: &[AnyNotifier],
) -> Vec<AlertError> {
    let mut tasks = tokio::task::JoinSet::new();
    for t in transitions.iter().filter(|t| t.kind.notifies()) {
        let own = rules
            .iter()
            .filter(|r| r.rule.name == t.rule)
            .flat_map(|r| r.notify.iter().map(|n| n.build()));
        for notifier in own.chain(shared.iter().cloned()) {
            let t = t.clone();
            tasks.spawn(async move { notifier.notify(&t).await });
        }
    }
    let mut failures = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(e) => failures.push(AlertError::NotifyFailed {
                notifier: "(task)".into(),
                attempts: 1,
                message: e.to_string(),
            }),
        }
    }
    failures
}
