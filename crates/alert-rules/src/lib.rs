//! Alert rules with Prometheus-grade semantics over the metrics a service really exposes.
//!
//! The tooling cutover replaces read fields its service never returned, compared percentages
//! with fractions and never read its own alert configuration, so it was always critical while
//! its monitor was always green. This crate is built so that cannot happen quietly:
//!
//! * **Sources** ([`sources`]) read a JSON endpoint through a JSON pointer (with a scale and
//!   an optional secret header), one series of a Prometheus `/metrics` page (parsed properly),
//!   a command's output, a process's memory and CPU (by pid file or pid), or a host fact
//!   (disk free, memory available, load), or a signal of the proxy's access log over a window
//!   (`edge`: success rate, p50/p95/p99, requests/s, 5xx and 429 counts, read by
//!   `edge-signals`; an empty window is no data). A JSON or Prometheus URL may be written against the
//!   service's base URL (`/api/stats`, `{url}/api/stats`), which the caller joins with
//!   [`Source::resolve_base_url`] (the live deployment, in `cutover-alerts`), trusting the
//!   deployment proxy's own certificate when it has one. Every sample is a value, *no data*
//!   (the endpoint answered, the field is missing) or an *error* (the endpoint is down), kept
//!   distinct.
//! * **Rules** ([`Rule`], configured as cutover.toml's `[[alert]]` entries, [`AlertRuleConfig`])
//!   have warning and critical conditions (`< 95`, `> 2000`, `== "open"`), `for`,
//!   `keep_firing_for`, no-data and error policies (`alerting`, `ok`, `keep-last`, `unknown`),
//!   `delta` windows for growth, labels and a description template.
//! * **The engine** ([`Engine`]) is pure: `evaluate(now, samples) -> transitions` over
//!   inactive → pending → firing → resolved, with escalation and de-escalation between
//!   warning and critical. Its state is plain data that [`save_state`] writes atomically, so
//!   one-shot runs from cron honour `for` across invocations.
//! * **Notifiers** ([`notify`]): a line writer, a JSON webhook (timeout, retries, Slack `text`),
//!   a command; on transitions and, while firing, every `repeat_interval`. And Alertmanager
//!   (`notify = { alertmanager = "http://127.0.0.1:9093" }`, its v2 API): firing alerts with
//!   `endsAt` a margin ahead, re-sent at every evaluation while firing
//!   ([`deliver_evaluation`]), resolved ones with `endsAt` = now.
//! * **Export** ([`export_prometheus`]): rules on Prometheus metrics become an alerting-rules
//!   file that `promtool check rules` accepts.
//! * **Defaults** ([`default_rules`]): the replaced tooling's thresholds pointed at the demo
//!   service's real fields, or at the edge when a proxy is in front; [`default_candidates`]
//!   with [`select_served`] keep only the rules whose routes the service serves (each route
//!   asked once; absent ones are left out and said so, never unknown for ever).
//!
//! ```
//! use alert_rules::{AlertRuleConfig, AlertState, Engine, Sample};
//!
//! let entry: AlertRuleConfig = toml::from_str(r#"
//!     name = "circuit-breaker"
//!     source = { http = "http://127.0.0.1:7000/api/stats", pointer = "/circuit_breaker" }
//!     warn = '== "half-open"'
//!     crit = '== "open"'
//! "#)?;
//! let mut engine = Engine::new(vec![entry.rule], Default::default());
//! let now = jiff::Timestamp::UNIX_EPOCH;
//! let samples = [("circuit-breaker".to_owned(), Sample::text("open"))].into();
//! let evaluation = engine.evaluate(now, &samples);
//! assert_eq!(evaluation.statuses[0].state, AlertState::Firing);
//! assert_eq!(evaluation.transitions[0].kind, alert_rules::TransitionKind::Firing);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Sampling a real service is async ([`sample_all`]); everything else is plain functions.

pub mod condition;
pub mod config;
pub mod defaults;
pub mod engine;
pub mod error;
pub mod export;
mod http;
pub mod notify;
pub mod rule;
pub mod runner;
pub mod sample;
mod secret;
pub mod served;
pub mod sources;
pub mod state;

pub use condition::{Condition, Op, Threshold};
pub use config::{AlertRuleConfig, validate_rules};
pub use defaults::{SignalsFrom, default_candidates, default_rules, default_rules_from};
pub use engine::{
    AlertState, Engine, EngineOptions, EngineState, Evaluation, RuleState, RuleStatus, Transition,
    TransitionKind, evaluate_rule,
};
pub use error::AlertError;
pub use export::{Export, export_prometheus, write_export};
pub use notify::{
    AlertmanagerNotifier, AnyNotifier, CommandNotifier, LineNotifier, Notifier, NotifierConfig,
    WebhookFormat, WebhookNotifier, render_line,
};
pub use rule::{Policy, Rule, Severity};
pub use runner::{deliver, deliver_evaluation, label_transitions, sample_all};
pub use sample::{Sample, Value};
pub use served::{NotServed, Selection, select_served};
pub use sources::{MetricSource, Source};
pub use state::{load_state, save_state};
