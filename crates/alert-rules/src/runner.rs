//! The I/O around the pure engine: sample every rule's source concurrently, hand the samples
//! to the engine, deliver the transitions. Binaries (and embedders) call these; the engine
//! itself stays free of clocks and sockets.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;

use crate::config::AlertRuleConfig;
use crate::engine::{AlertState, Evaluation, Transition, TransitionKind};
use crate::error::AlertError;
use crate::notify::{AlertmanagerNotifier, AnyNotifier, Notifier};
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
    join_failures(&mut tasks, &mut failures).await;
    failures
}

/// Adds `labels` to every transition's labels, the rule's own winning on a clash: what the
/// caller knows of the deployment (`service`, `release`) reaches every notifier.
pub fn label_transitions(transitions: &mut [Transition], labels: &BTreeMap<String, String>) {
    for t in transitions {
        for (k, v) in labels {
            t.labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

/// Delivers one evaluation at `now`: its transitions (labelled with `labels`, see
/// [`label_transitions`]) to every webhook and command as [`deliver`] does, and to each
/// Alertmanager one POST with what changed plus every alert still firing, re-sent with a
/// fresh `endsAt` so that Alertmanager keeps it active between evaluations. Returns the
/// failures.
#[tracing::instrument(skip_all, fields(transitions = evaluation.transitions.len()))]
pub async fn deliver_evaluation(
    now: Timestamp,
    evaluation: &Evaluation,
    rules: &[AlertRuleConfig],
    shared: &[AnyNotifier],
    labels: &BTreeMap<String, String>,
) -> Vec<AlertError> {
    let mut transitions = evaluation.transitions.clone();
    label_transitions(&mut transitions, labels);

    // Each distinct Alertmanager, with the rules it hears about (None: every rule).
    let mut managers: Vec<(AlertmanagerNotifier, Option<Vec<String>>)> = Vec::new();
    let mut add = |am: &AlertmanagerNotifier, rule: Option<&str>| {
        match managers.iter_mut().find(|(m, _)| m == am) {
            Some((_, covered)) => match rule {
                // A shared manager covers every rule.
                None => *covered = None,
                Some(r) => {
                    if let Some(names) = covered {
                        names.push(r.to_owned());
                    }
                }
            },
            None => managers.push((am.clone(), rule.map(|r| vec![r.to_owned()]))),
        }
    };
    let mut others = Vec::new();
    for n in shared {
        match n {
            AnyNotifier::Alertmanager(am) => add(am, None),
            other => others.push(other.clone()),
        }
    }
    for r in rules {
        for n in &r.notify {
            if let AnyNotifier::Alertmanager(am) = n.build() {
                add(&am, Some(&r.rule.name));
            }
        }
    }

    let per_transition: Vec<AlertRuleConfig> = rules
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.notify
                .retain(|n| !matches!(n, crate::notify::NotifierConfig::Alertmanager(_)));
            r
        })
        .collect();
    let mut failures = deliver(&transitions, &per_transition, &others).await;

    let mut tasks = tokio::task::JoinSet::new();
    for (am, names) in managers {
        let covers = |rule: &str| names.as_ref().is_none_or(|n| n.iter().any(|x| x == rule));
        let mut alerts = Vec::new();
        let mut sent_firing = Vec::new();
        for t in transitions.iter().filter(|t| covers(&t.rule)) {
            if matches!(
                t.kind,
                TransitionKind::Firing
                    | TransitionKind::Repeat
                    | TransitionKind::Escalated
                    | TransitionKind::DeEscalated
            ) {
                sent_firing.push(t.rule.clone());
            }
            alerts.extend(am.alerts_for(t));
        }
        for status in evaluation.statuses.iter().filter(|s| {
            s.state == AlertState::Firing && covers(&s.name) && !sent_firing.contains(&s.name)
        }) {
            let mut own = rules
                .iter()
                .find(|r| r.rule.name == status.name)
                .map(|r| r.rule.labels.clone())
                .unwrap_or_default();
            for (k, v) in labels {
                own.entry(k.clone()).or_insert_with(|| v.clone());
            }
            alerts.push(am.alert(
                &status.name,
                status.severity,
                &own,
                status.description.as_deref(),
                status.value.as_ref().map(ToString::to_string),
                status.since,
                now,
                true,
            ));
        }
        tasks.spawn(async move { am.post(&alerts).await });
    }
    join_failures(&mut tasks, &mut failures).await;
    failures
}

/// Waits for every delivery task, keeping what failed (a task that panicked included).
async fn join_failures(
    tasks: &mut tokio::task::JoinSet<Result<(), AlertError>>,
    failures: &mut Vec<AlertError>,
) {
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
}
