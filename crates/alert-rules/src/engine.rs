//! The pure rule engine: `evaluate(now, samples) -> transitions`, with no clock and no I/O.
//!
//! # Theory of operation
//!
//! Each rule has up to two *tracks*, one per severity, and each track follows Prometheus'
//! alerting semantics exactly as `promtool test rules` checks them:
//!
//! * condition holds, track inactive → **pending** (`active_at = now`); with `for = 0` it fires
//!   at once;
//! * pending and `now - active_at >= for` → **firing**;
//! * condition stops holding while pending → inactive (never notified);
//! * condition stops holding while firing → keeps firing until `keep_firing_for` has passed
//!   since the first evaluation without it, then **resolved** → inactive.
//!
//! The rule reports its worst track (critical over warning, firing over pending), so a value
//! that crosses the critical threshold *escalates* a firing warning and falling back
//! *de-escalates* it. That is also how the export looks to Prometheus: one alert per severity
//! with the same name.
//!
//! A sample that is "no data" or an error follows the rule's policy: `alerting` (every
//! condition holds), `ok` (none holds), `keep-last` (no state changes) or
//! `unknown` (like `keep-last`, and the rule reports `unknown`).
//!
//! The state is plain data ([`EngineState`], serde) so that one-shot runs from cron honour
//! `for` across invocations. A state older than [`EngineOptions::stale_after`] does not count
//! as continuous observation: pending timers restart rather than fire on stale evidence.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::rule::{Policy, Rule, Severity};
use crate::sample::{Sample, Value};

/// The version written into persisted state; other versions are ignored, not misread.
pub const STATE_VERSION: u32 = 1;

/// Where one severity's alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The condition does not hold.
    #[default]
    Inactive,
    /// The condition holds, for less than `for`.
    Pending,
    /// The alert fires.
    Firing,
}

/// One severity's alert state (Prometheus' per-alert fields).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Track {
    /// Where it stands.
    pub phase: Phase,
    /// When the condition started holding (pending or firing).
    pub active_at: Option<Timestamp>,
    /// When it started firing.
    pub fired_at: Option<Timestamp>,
    /// The first evaluation, while firing, at which the condition no longer held.
    pub keep_firing_since: Option<Timestamp>,
}

/// What a rule reports: its state and, when active, the severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Nothing holds.
    #[default]
    Inactive,
    /// A condition holds for less than `for`.
    Pending,
    /// The alert fires.
    Firing,
    /// Fired until this evaluation, when it stopped (reported once, then inactive).
    Resolved,
    /// Could not be evaluated (no data or error under the `unknown` policy).
    Unknown,
}

impl AlertState {
    /// The lower-case name used in JSON and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
            AlertState::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for AlertState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything the engine remembers about one rule between evaluations.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RuleState {
    /// The warning track.
    pub warning: Track,
    /// The critical track.
    pub critical: Track,
    /// The state reported by the last evaluation that could be evaluated.
    pub reported: AlertState,
    /// Its severity.
    pub severity: Option<Severity>,
    /// Whether the last evaluation was `unknown`.
    pub unknown: bool,
    /// Since when the reported state (and severity) has been what it is.
    pub since: Option<Timestamp>,
    /// The last judged value.
    pub value: Option<Value>,
    /// When the last notification-worthy transition or reminder was emitted.
    pub last_notified: Option<Timestamp>,
    /// When this rule was last evaluated.
    pub last_eval: Option<Timestamp>,
    /// Numeric samples inside the `delta` window, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<(Timestamp, f64)>,
}

impl RuleState {
    fn track_mut(&mut self, severity: Severity) -> &mut Track {
        match severity {
            Severity::Warning => &mut self.warning,
            Severity::Critical => &mut self.critical,
        }
    }

    fn track(&self, severity: Severity) -> &Track {
        match severity {
            Severity::Warning => &self.warning,
            Severity::Critical => &self.critical,
        }
    }
}

/// The engine's whole memory, keyed by rule name; serialised to the state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineState {
    /// [`STATE_VERSION`].
    pub version: u32,
    /// Per-rule state.
    pub rules: BTreeMap<String, RuleState>,
}

impl Default for EngineState {
    fn default() -> Self {
        EngineState {
            version: STATE_VERSION,
            rules: BTreeMap::new(),
        }
    }
}

/// Engine settings that are not per rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineOptions {
    /// A rule not evaluated for longer than this starts afresh (pending timers restart, the
    /// `delta` window empties) instead of trusting old evidence. Default one hour.
    pub stale_after: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            stale_after: Duration::from_secs(3600),
        }
    }
}

/// What changed for a rule at one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransitionKind {
    /// A condition started holding; the alert waits for `for`.
    Pending,
    /// A pending alert went back to inactive before firing.
    Cleared,
    /// The alert fires.
    Firing,
    /// A firing warning became critical.
    Escalated,
    /// A firing critical alert fell back to warning.
    DeEscalated,
    /// The alert stopped firing.
    Resolved,
    /// Still firing: the reminder configured by `repeat_interval`.
    Repeat,
    /// The rule could not be evaluated (no data or error under the `unknown` policy).
    Unknown,
    /// The rule can be evaluated again after being unknown.
    Known,
}

impl TransitionKind {
    /// Whether notifiers should hear about it (pending and cleared are internal).
    pub fn notifies(self) -> bool {
        !matches!(self, TransitionKind::Pending | TransitionKind::Cleared)
    }

    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            TransitionKind::Pending => "pending",
            TransitionKind::Cleared => "cleared",
            TransitionKind::Firing => "firing",
            TransitionKind::Escalated => "escalated",
            TransitionKind::DeEscalated => "de-escalated",
            TransitionKind::Resolved => "resolved",
            TransitionKind::Repeat => "repeat",
            TransitionKind::Unknown => "unknown",
            TransitionKind::Known => "known",
        }
    }
}

/// One change, ready for notifiers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// The rule's name.
    pub rule: String,
    /// What happened.
    pub kind: TransitionKind,
    /// The severity after the change (for resolved: the one that was firing).
    pub severity: Option<Severity>,
    /// The severity before the change, for escalation and de-escalation.
    pub previous_severity: Option<Severity>,
    /// The judged value, when there was one.
    pub value: Option<Value>,
    /// Why the rule is unknown (no data or error), for `unknown`.
    pub reason: Option<String>,
    /// When (the evaluation's `now`).
    pub at: Timestamp,
    /// The rule's labels plus `severity`.
    pub labels: BTreeMap<String, String>,
    /// The rendered description.
    pub description: Option<String>,
}

/// A rule's standing after an evaluation, for reports and `--json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleStatus {
    /// The rule's name.
    pub name: String,
    /// Its state.
    pub state: AlertState,
    /// Its severity while pending, firing or just resolved.
    pub severity: Option<Severity>,
    /// The judged value (for `delta` rules, the change over the window).
    pub value: Option<Value>,
    /// Since when the state has been what it is.
    pub since: Option<Timestamp>,
    /// Why it is unknown, or what the last sample said when it was not a value.
    pub reason: Option<String>,
    /// The rendered description.
    pub description: Option<String>,
}

/// The result of one evaluation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Evaluation {
    /// What changed, in rule order.
    pub transitions: Vec<Transition>,
    /// Every rule's standing, in rule order.
    pub statuses: Vec<RuleStatus>,
}

/// The rule engine: rules plus their state. Pure: the caller supplies `now` and the samples.
///
/// ```
/// use alert_rules::{Engine, Rule, Sample, AlertState};
/// use std::time::Duration;
///
/// let rule = Rule::new("latency-p95").warn("> 2000")?.for_duration(Duration::from_secs(60));
/// let mut engine = Engine::new(vec![rule], Default::default());
/// let t0: jiff::Timestamp = "2025-01-01T00:00:00Z".parse()?;
/// let slow = |ms: f64| [("latency-p95".to_owned(), Sample::number(ms))].into();
///
/// let first = engine.evaluate(t0, &slow(2500.0));
/// assert_eq!(first.statuses[0].state, AlertState::Pending);
/// let later = engine.evaluate(t0 + Duration::from_secs(60), &slow(2600.0));
/// assert_eq!(later.statuses[0].state, AlertState::Firing);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Engine {
    rules: Vec<Rule>,
    state: EngineState,
    options: EngineOptions,
}

impl Engine {
    /// An engine over `rules`, continuing from `state` (use `Default::default()` for none).
    /// State for rules that no longer exist is dropped.
    pub fn new(rules: Vec<Rule>, state: EngineState) -> Self {
        Self::with_options(rules, state, EngineOptions::default())
    }

    /// Like [`Engine::new`] with explicit options.
    pub fn with_options(rules: Vec<Rule>, mut state: EngineState, options: EngineOptions) -> Self {
        if state.version != STATE_VERSION {
            state = EngineState::default();
        }
        state
            .rules
            .retain(|name, _| rules.iter().any(|r| &r.name == name));
        Engine {
            rules,
            state,
            options,
        }
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The current state, to persist.
    pub fn state(&self) -> &EngineState {
        &self.state
    }

    /// Evaluates every rule against its sample at `now`. A rule missing from `samples` counts
    /// as an error sample ("not sampled").
    pub fn evaluate(&mut self, now: Timestamp, samples: &BTreeMap<String, Sample>) -> Evaluation {
        let _span =
            tracing::debug_span!("alert_evaluate", rules = self.rules.len(), %now).entered();
        let mut evaluation = Evaluation::default();
        for rule in &self.rules {
            let sample = samples
                .get(&rule.name)
                .cloned()
                .unwrap_or_else(|| Sample::error("not sampled"));
            let state = self.state.rules.entry(rule.name.clone()).or_default();
            let (transitions, status) = evaluate_rule(rule, state, now, sample, self.options);
            evaluation.transitions.extend(transitions);
            evaluation.statuses.push(status);
        }
        evaluation
    }
}

/// What the sample asks of the tracks.
enum Input {
    /// These severities' conditions hold; the others do not.
    Holds(Vec<Severity>),
    /// Leave the tracks as they are.
    Hold,
}

/// Evaluates one rule; the heart of the engine, exposed for callers that keep their own state.
pub fn evaluate_rule(
    rule: &Rule,
    state: &mut RuleState,
    now: Timestamp,
    sample: Sample,
    options: EngineOptions,
) -> (Vec<Transition>, RuleStatus) {
    // Old evidence does not count as continuous observation.
    if let Some(last) = state.last_eval
        && elapsed(now, last) > options.stale_after
    {
        for severity in [Severity::Warning, Severity::Critical] {
            let track = state.track_mut(severity);
            if track.phase == Phase::Pending {
                *track = Track::default();
            }
        }
        state.history.clear();
    }
    state.last_eval = Some(now);

    let (input, value, reason, unknown) = judge(rule, state, now, sample);
    if let Some(v) = &value {
        state.value = Some(v.clone());
    }

    if let Input::Holds(holding) = &input {
        for (severity, _) in rule.conditions() {
            step_track(
                rule,
                state.track_mut(severity),
                holding.contains(&severity),
                now,
            );
        }
    }

    let (new_state, new_severity) = reported(rule, state);
    let mut transitions = Vec::new();
    let mut push =
        |kind: TransitionKind, severity: Option<Severity>, previous: Option<Severity>| {
            transitions.push(make_transition(
                rule,
                kind,
                severity,
                previous,
                value.clone(),
                reason.clone(),
                now,
            ));
        };

    if unknown && !state.unknown {
        push(TransitionKind::Unknown, state.severity, None);
    }
    if !unknown {
        if state.unknown {
            push(TransitionKind::Known, new_severity, None);
        }
        let old = (state.reported, state.severity);
        match (old, (new_state, new_severity)) {
            (a, b) if a == b => {}
            ((AlertState::Firing, Some(from)), (AlertState::Firing, Some(to))) => {
                let kind = if to > from {
                    TransitionKind::Escalated
                } else {
                    TransitionKind::DeEscalated
                };
                push(kind, Some(to), Some(from));
            }
            ((AlertState::Firing, from), _) => push(TransitionKind::Resolved, from, None),
            (_, (AlertState::Firing, to)) => push(TransitionKind::Firing, to, None),
            ((AlertState::Pending, from), (AlertState::Inactive, _)) => {
                push(TransitionKind::Cleared, from, None)
            }
            (_, (AlertState::Pending, to)) => push(TransitionKind::Pending, to, None),
            _ => {}
        }
    }
    let changed =
        state.unknown != unknown || (state.reported, state.severity) != (new_state, new_severity);
    let resolved_now =
        !unknown && state.reported == AlertState::Firing && new_state != AlertState::Firing;
    let resolved_severity = state.severity;

    // A reminder, when nothing else was said about a firing alert for `repeat_interval`.
    let said_something = transitions.iter().any(|t| t.kind.notifies());
    if !said_something
        && !unknown
        && new_state == AlertState::Firing
        && let Some(every) = rule.repeat_interval
        && state
            .last_notified
            .is_none_or(|at| elapsed(now, at) >= every)
    {
        transitions.push(make_transition(
            rule,
            TransitionKind::Repeat,
            new_severity,
            None,
            value.clone(),
            None,
            now,
        ));
    }
    if transitions.iter().any(|t| t.kind.notifies()) {
        state.last_notified = Some(now);
    }

    if changed {
        state.since = Some(now);
    }
    state.unknown = unknown;
    if !unknown {
        state.reported = new_state;
        state.severity = new_severity;
    }

    let (shown_state, shown_severity) = if unknown {
        (AlertState::Unknown, state.severity)
    } else if resolved_now {
        (AlertState::Resolved, resolved_severity)
    } else {
        (new_state, new_severity)
    };
    let shown_value = value.or_else(|| state.value.clone());
    let status = RuleStatus {
        name: rule.name.clone(),
        state: shown_state,
        severity: shown_severity,
        description: rule.render_description(shown_value.as_ref(), shown_severity),
        value: shown_value,
        since: state.since,
        reason,
    };
    (transitions, status)
}

/// Turns a sample into what the tracks should do, plus the judged value, a reason and whether
/// the rule is unknown this time.
fn judge(
    rule: &Rule,
    state: &mut RuleState,
    now: Timestamp,
    sample: Sample,
) -> (Input, Option<Value>, Option<String>, bool) {
    let (policy, reason) = match sample {
        Sample::Value(value) => {
            let value = match (rule.delta, &value) {
                (Some(window), Value::Number(n)) => match windowed_delta(state, now, *n, window) {
                    Some(d) => Value::Number(d),
                    // Warm-up: one sample in the window says nothing about change yet.
                    None => {
                        return (
                            Input::Holds(Vec::new()),
                            None,
                            Some("collecting the delta window".into()),
                            false,
                        );
                    }
                },
                _ => value,
            };
            let mut holding = Vec::new();
            let mut mismatch = None;
            for (severity, condition) in rule.conditions() {
                match condition.holds(&value) {
                    Ok(true) => holding.push(severity),
                    Ok(false) => {}
                    Err(m) => mismatch = Some(m.0),
                }
            }
            match mismatch {
                None => return (Input::Holds(holding), Some(value), None, false),
                Some(m) => (rule.error, m),
            }
        }
        Sample::NoData(reason) => (rule.no_data, format!("no data: {reason}")),
        Sample::Error(reason) => (rule.error, format!("error: {reason}")),
    };
    match policy {
        Policy::Alerting => (
            Input::Holds(rule.conditions().map(|(s, _)| s).collect()),
            None,
            Some(reason),
            false,
        ),
        Policy::Ok => (Input::Holds(Vec::new()), None, Some(reason), false),
        Policy::KeepLast => (Input::Hold, None, Some(reason), false),
        Policy::Unknown => (Input::Hold, None, Some(reason), true),
    }
}

/// Records `value` and returns newest minus oldest inside the window, or `None` while the
/// window holds a single sample.
fn windowed_delta(
    state: &mut RuleState,
    now: Timestamp,
    value: f64,
    window: Duration,
) -> Option<f64> {
    state
        .history
        .retain(|(at, _)| *at <= now && elapsed(now, *at) <= window);
    state.history.push((now, value));
    match state.history.as_slice() {
        [(_, oldest), .., _] => Some(value - oldest),
        _ => None,
    }
}

/// Prometheus' per-alert state machine for one severity.
fn step_track(rule: &Rule, track: &mut Track, holds: bool, now: Timestamp) {
    if holds {
        track.keep_firing_since = None;
        match track.phase {
            Phase::Inactive => {
                track.active_at = Some(now);
                track.phase = Phase::Pending;
                if rule.for_duration.is_zero() {
                    track.phase = Phase::Firing;
                    track.fired_at = Some(now);
                }
            }
            Phase::Pending => {
                let since = track.active_at.unwrap_or(now);
                if elapsed(now, since) >= rule.for_duration {
                    track.phase = Phase::Firing;
                    track.fired_at = Some(now);
                }
            }
            Phase::Firing => {}
        }
        return;
    }
    match track.phase {
        Phase::Inactive => {}
        Phase::Pending => *track = Track::default(),
        Phase::Firing => {
            if !rule.keep_firing_for.is_zero() {
                let since = *track.keep_firing_since.get_or_insert(now);
                if elapsed(now, since) < rule.keep_firing_for {
                    return;
                }
            }
            *track = Track::default();
        }
    }
}

/// The rule's overall standing: its worst track.
fn reported(rule: &Rule, state: &RuleState) -> (AlertState, Option<Severity>) {
    let severities: Vec<Severity> = rule.conditions().map(|(s, _)| s).collect();
    for phase in [Phase::Firing, Phase::Pending] {
        // `conditions()` lists critical first, so the first match is the worst.
        if let Some(s) = severities.iter().find(|s| state.track(**s).phase == phase) {
            let alert = if phase == Phase::Firing {
                AlertState::Firing
            } else {
                AlertState::Pending
            };
            return (alert, Some(*s));
        }
    }
    (AlertState::Inactive, None)
}

fn make_transition(
    rule: &Rule,
    kind: TransitionKind,
    severity: Option<Severity>,
    previous_severity: Option<Severity>,
    value: Option<Value>,
    reason: Option<String>,
    at: Timestamp,
) -> Transition {
    let mut labels = rule.labels.clone();
    if let Some(s) = severity {
        labels.insert("severity".into(), s.as_str().into());
    }
    Transition {
        rule: rule.name.clone(),
        kind,
        severity,
        previous_severity,
        description: rule.render_description(value.as_ref(), severity),
        value,
        reason,
        at,
        labels,
    }
}

/// `now - since`, zero when the clock went backwards.
fn elapsed(now: Timestamp, since: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(since)).unwrap_or(Duration::ZERO)
}
