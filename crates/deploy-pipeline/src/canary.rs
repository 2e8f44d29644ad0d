//! The `canary` strategy: the new release starts in the idle slot, nginx splits traffic by
//! weight across both slots in steps (`[deploy.canary] steps`, default 5, 25, 50, 100 %), and
//! canary-judge's anytime-valid sequential tests decide from the edge signals whether each
//! step is promoted or the canary rolled back.
//!
//! Both releases serve the same traffic at the same time, so the judge compares the canary
//! with the baseline (the live release) on the same requests of the same window: every line
//! nginx appends to its JSON access log from the first split on is read once
//! ([`edge_signals::LogFollower`]), attributed to a slot by its upstream address, and fed to
//! the judge (a request, failed when 5xx; its request time as a latency sample; 429s and 499s
//! are neither, as in edge-signals). The judge is asked after every poll
//! (`poll_interval`); asking often costs nothing statistically.
//!
//! * **Rollback** (judge says worse, the canary process stops, or a step stays inconclusive
//!   under the default policy): the switch fails with the judge's reason; the pipeline's
//!   rollback moves all traffic to the baseline in one switch (a marker file: no reload) and
//!   stops the canary slot. `cutover-deploy` exits 2 with the reason.
//! * **Promote a step**: the next weight; the promotion evidence starts afresh, the rollback
//!   evidence keeps accumulating (one test over the whole canary).
//! * **100 %**: the last step is the blue-green switch (the baseline kept as the warm standby
//!   and nginx backup, as blue-green does), then validate, the stability window and commit.
//!   At 100 % there is no baseline traffic left to compare with, so the judge has no say there.
//!
//! Progress (step, weights, the judge's latest evidence and reason) is written to
//! `deploy-state.json`'s `canary` section after every poll, for `status` and the monitor; every
//! decision goes into the audit record with its numbers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use canary_judge::{Decision, InconclusivePolicy, Judge, JudgeConfig, Slot as JudgeSlot, Verdict};
use live_deployment::CanaryProgress;
use process_control::ProcessManager;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::manifest::StrategyKind;
use crate::operation::Deployer;
use crate::phase::Slot;
use crate::strategy::{BlueGreen, Strategy};

/// `[deploy.canary]`: the steps, stickiness and how the judge weighs the evidence. Every key
/// has a default.
///
/// ```toml
/// [deploy.canary]
/// steps = [5, 25, 50, 100]
/// alpha = 0.05
/// failure_rate_tolerance = 0.005
/// latency_quantile = 0.95
/// latency_tolerance = 0.10
/// min_requests = 100
/// max_step_time = "15m"
/// inconclusive = "rollback"
/// sticky_cookie = "session"
/// poll_interval = "1s"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CanaryConfig {
    /// The canary's share of traffic at each step, in percent, strictly increasing and ending
    /// at 100 (the full switch).
    pub steps: Vec<u8>,
    /// The chance of rolling back a canary no worse than the baseline (within the tolerances)
    /// and of promoting a step of one that is worse, however often the judge looks.
    pub alpha: f64,
    /// How much higher the canary's failure rate may be, as an absolute difference of rates
    /// (0.005 is half a percentage point).
    pub failure_rate_tolerance: f64,
    /// The latency quantile compared (0.95 is p95).
    pub latency_quantile: f64,
    /// How much higher the canary's latency quantile may be, relative to the baseline's
    /// (0.10 is 10 %).
    pub latency_tolerance: f64,
    /// Requests each slot must have served before the judge decides anything.
    pub min_requests: u64,
    /// How long a step may run without a decision; then `inconclusive` applies.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub max_step_time: Duration,
    /// What a step without a decision after `max_step_time` leads to: `rollback` (default)
    /// or `promote`.
    pub inconclusive: InconclusivePolicy,
    /// A cookie whose value keeps a client on one release (nginx `split_clients` hashes it);
    /// requests without it are split independently.
    pub sticky_cookie: Option<String>,
    /// A request header whose value keeps a client on one release (used when
    /// `sticky_cookie` is not set).
    pub sticky_header: Option<String>,
    /// How often the edge log is read and the judge asked (default 1s).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub poll_interval: Duration,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        let judge = JudgeConfig::default();
        Self {
            steps: vec![5, 25, 50, 100],
            alpha: judge.alpha,
            failure_rate_tolerance: judge.failure_rate_tolerance,
            latency_quantile: judge.latency_quantile,
            latency_tolerance: judge.latency_tolerance,
            min_requests: judge.min_requests,
            max_step_time: judge.max_step_time,
            inconclusive: judge.inconclusive,
            sticky_cookie: None,
            sticky_header: None,
            poll_interval: Duration::from_secs(1),
        }
    }
}

impl CanaryConfig {
    /// The judge's part of the table.
    pub fn judge(&self) -> JudgeConfig {
        JudgeConfig {
            alpha: self.alpha,
            failure_rate_tolerance: self.failure_rate_tolerance,
            latency_quantile: self.latency_quantile,
            latency_tolerance: self.latency_tolerance,
            min_requests: self.min_requests,
            max_step_time: self.max_step_time,
            inconclusive: self.inconclusive,
        }
    }

    /// What nginx's splits hash to keep a client on one release.
    pub fn sticky(&self) -> edge_proxy::StickyKey {
        match (&self.sticky_cookie, &self.sticky_header) {
            (Some(cookie), _) => edge_proxy::StickyKey::Cookie(cookie.clone()),
            (None, Some(header)) => edge_proxy::StickyKey::Header(header.clone()),
            (None, None) => edge_proxy::StickyKey::None,
        }
    }

    /// The steps below 100 %: the weighted splits nginx needs.
    pub fn split_steps(&self) -> impl Iterator<Item = u8> + '_ {
        self.steps.iter().copied().filter(|p| *p < 100)
    }

    /// Checks the table: the key and why, for the manifest's error.
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        if let Err(e) = self.judge().validate() {
            let key = match &e {
                canary_judge::JudgeError::InvalidConfig { key, .. } => key.to_string(),
                _ => "alpha".to_owned(),
            };
            return Err((format!("deploy.canary.{key}"), e.to_string()));
        }
        let steps = &self.steps;
        let increasing = steps.windows(2).all(|w| w[0] < w[1]);
        if steps.is_empty()
            || !increasing
            || steps.first().is_some_and(|p| *p == 0)
            || steps.last() != Some(&100)
        {
            return Err((
                "deploy.canary.steps".to_owned(),
                format!(
                    "{steps:?}: give the canary's share in percent at each step, strictly increasing from at least 1 and ending at 100, such as [5, 25, 50, 100]"
                ),
            ));
        }
        if self.poll_interval.is_zero() {
            return Err((
                "deploy.canary.poll_interval".to_owned(),
                "a zero interval would read the log without pause: give a duration such as \"1s\""
                    .to_owned(),
            ));
        }
        for (key, value) in [
            ("sticky_cookie", &self.sticky_cookie),
            ("sticky_header", &self.sticky_header),
        ] {
            if let Some(name) = value
                && (name.is_empty()
                    || !name.chars().all(|c| {
                        c.is_ascii_alphanumeric()
                            || c == '_'
                            || (c == '-' && key == "sticky_header")
                    }))
            {
                return Err((
                    format!("deploy.canary.{key}"),
                    format!(
                        "{name:?}: use letters, digits and '_'{} (nginx reads it as a variable)",
                        if key == "sticky_header" {
                            " and '-'"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// One decision of the judge, as the audit log records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryDecision {
    /// The step (1-based).
    pub step: u32,
    /// The canary's share of traffic in that step, in percent.
    pub canary_percent: u8,
    /// `promote-step` or `rollback` (after the inconclusive policy was applied), or `stopped`
    /// when the canary's process stopped.
    pub verdict: String,
    /// Why, with the numbers.
    pub reason: String,
    /// How long the step had run, in milliseconds.
    pub step_ms: u64,
    /// The judge's evidence (counts, rates, e-values, latency bounds).
    pub evidence: serde_json::Value,
}

/// Per-slot observations from the edge log, fed to the judge.
struct EdgeFeed {
    follower: edge_signals::LogFollower,
    baseline: SocketAddr,
    canary: SocketAddr,
    samples: [Vec<f64>; 2],
}

impl EdgeFeed {
    /// A feed of what nginx logs from now on.
    fn new(log: PathBuf, baseline: SocketAddr, canary: SocketAddr) -> Result<Self, String> {
        let mut follower = edge_signals::LogFollower::new(log, edge_signals::StartAt::End);
        // The first poll only finds the end: everything after it is the canary's window.
        follower
            .poll(&mut |_| {})
            .map_err(|e| format!("cannot read the edge log: {e}"))?;
        Ok(Self {
            follower,
            baseline,
            canary,
            samples: [Vec::new(), Vec::new()],
        })
    }

    /// Reads what was appended and feeds it to `judge`; returns the lines read.
    fn poll(&mut self, judge: &mut Judge) -> Result<u64, String> {
        let mut counts = [(0u64, 0u64); 2];
        let (baseline, canary) = (self.baseline, self.canary);
        let samples = &mut self.samples;
        let stats = self
            .follower
            .poll(&mut |raw| {
                let Some(line) = edge_signals::parse_line(raw) else {
                    return;
                };
                // With a retry nginx lists every upstream tried; the last one answered.
                let Some(addr) = line
                    .upstream_addr
                    .as_deref()
                    .and_then(|a| a.rsplit([',', ' ']).next())
                    .and_then(|a| a.parse::<SocketAddr>().ok())
                else {
                    return;
                };
                let i = if addr == baseline {
                    0
                } else if addr == canary {
                    1
                } else {
                    return;
                };
                // Rate-limited and abandoned requests say nothing about the release.
                if line.status == 429 || line.status == 499 {
                    return;
                }
                counts[i].0 += 1;
                counts[i].1 += u64::from(line.status >= 500);
                samples[i].push(f64::from(line.request_ms));
            })
            .map_err(|e| format!("cannot read the edge log: {e}"))?;
        for (i, slot) in [JudgeSlot::Baseline, JudgeSlot::Canary]
            .into_iter()
            .enumerate()
        {
            judge
                .observe_requests(slot, counts[i].0, counts[i].1)
                .map_err(|e| e.to_string())?;
            judge
                .observe_latencies(slot, &samples[i])
                .map_err(|e| e.to_string())?;
            samples[i].clear();
        }
        Ok(stats.lines)
    }
}

/// Split traffic by weight, promote step by step on the judge's evidence.
pub(crate) struct Canary;

impl Strategy for Canary {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Canary
    }

    fn slots(&self) -> &'static [Slot] {
        &[Slot::Blue, Slot::Green]
    }

    fn next_slot(&self, live: Option<Slot>) -> Slot {
        BlueGreen.next_slot(live)
    }

    fn keeps_standby(&self, d: &Deployer) -> bool {
        BlueGreen.keeps_standby(d)
    }

    fn switch(
        &self,
        d: &Deployer,
        id: &str,
        to: Slot,
        from: Option<Slot>,
    ) -> Result<String, String> {
        let baseline = d.current().filter(|c| c != id);
        let (Some(from), Some(baseline)) = (from.filter(|f| *f != to), baseline) else {
            // Nothing live to compare with (the first deploy): a blue-green switch.
            return BlueGreen
                .switch(d, id, to, from)
                .map(|s| format!("{s} (no live release to judge against: switched at once)"));
        };
        if !d.env.traffic.is_running() {
            return BlueGreen
                .switch(d, id, to, Some(from))
                .map(|s| format!("{s} (the proxy was not running: switched at once)"));
        }
        if !d.deploying.load(std::sync::atomic::Ordering::SeqCst) {
            return BlueGreen.switch(d, id, to, Some(from)).map(|s| {
                format!("{s} (a rollback to a good release is not judged: switched at once)")
            });
        }
        d.clear_standby().map_err(|e| e.to_string())?;
        d.ensure_running(id, to, false)?;
        d.check_exposure(id, to)?;
        let judged = d.run_canary(id, &baseline, to, from)?;
        // 100 %: the blue-green switch, without restarting the canary that has been serving.
        let upstream = d.addr(to);
        let backup = d.keeps_standby().then(|| d.addr(from));
        d.env
            .traffic
            .switch_with_backup(upstream, backup, d.release_check(id))?;
        d.layout.set_current(id).map_err(|e| e.to_string())?;
        let streams = backup.and_then(|_| d.end_standby_streams(&baseline, from));
        let detail = format!(
            "{id} in slot {to}; all traffic moved to {upstream} from slot {from}{}",
            streams.map(|s| format!("; {s}")).unwrap_or_default()
        );
        d.canary_progress(|p| {
            p.canary_percent = 100;
            p.state = "promoted".to_owned();
        });
        Ok(format!("{judged}; {detail}"))
    }

    fn restore(
        &self,
        d: &Deployer,
        previous: &str,
        from: Slot,
        failed_slot: Slot,
    ) -> Result<Vec<String>, String> {
        let mut done = Vec::new();
        // All traffic back to the baseline in one switch, whatever split is routed: a group
        // nginx knows, so one marker and no reload.
        if d.env.traffic.is_running() && d.env.traffic.splitting() {
            d.env
                .traffic
                .switch(d.addr(from), d.release_check(previous))?;
            done.push(format!("all traffic back on {}", d.addr(from)));
        }
        done.extend(BlueGreen.restore(d, previous, from, failed_slot)?);
        d.canary_progress(|p| {
            // The canary failed (the judge, or a later phase such as validate): whatever it
            // reached, it serves nothing now.
            if p.release != previous {
                p.state = "rolled-back".to_owned();
                p.canary_percent = 0;
            }
        });
        Ok(done)
    }

    fn traffic_on(&self, d: &Deployer, slot: Slot) -> bool {
        BlueGreen.traffic_on(d, slot)
    }

    fn ensure_traffic(&self, d: &Deployer, slot: Slot, release: &str) -> Result<(), String> {
        BlueGreen.ensure_traffic(d, slot, release)
    }

    fn describe_switch(&self, d: &Deployer, id: &str, service: &str, slot: Slot) -> String {
        if d.current().is_none() {
            return format!(
                "{} (nothing live to judge a canary against: switched at once)",
                BlueGreen.describe_switch(d, id, service, slot)
            );
        }
        let c = &d.manifest.deploy.canary;
        let steps: Vec<String> = c.steps.iter().map(|p| format!("{p} %")).collect();
        format!(
            "start {service} on port {}, wait until ready; split traffic to it in steps of {} \
             (nginx split_clients on {}, a marker file per step, no reload), each step judged \
             on the edge signals against the live release at alpha {} (failure rate within \
             {} pp, p{} latency within {} %; at most {} per step, then {}); at 100 % switch \
             the nginx upstream to {} and point current at {id}",
            d.port(slot),
            steps.join(", "),
            match c.sticky() {
                edge_proxy::StickyKey::Cookie(n) => format!("cookie {n}"),
                edge_proxy::StickyKey::Header(n) => format!("header {n}"),
                edge_proxy::StickyKey::None => "each request".to_owned(),
            },
            c.alpha,
            c.failure_rate_tolerance * 100.0,
            (c.latency_quantile * 100.0).round(),
            (c.latency_tolerance * 100.0).round(),
            humantime::format_duration(c.max_step_time),
            match c.inconclusive {
                InconclusivePolicy::Rollback => "roll back",
                InconclusivePolicy::Promote => "promote",
            },
            d.addr(slot)
        )
    }
}

impl Deployer {
    /// Runs every step below 100 % on the judge's evidence: Ok with a summary once the last
    /// one is promoted, Err with the judge's reason on a rollback.
    fn run_canary(&self, id: &str, baseline: &str, to: Slot, from: Slot) -> Result<String, String> {
        let config = &self.manifest.deploy.canary;
        let mut judge = Judge::new(config.judge()).map_err(|e| e.to_string())?;
        let log = self
            .env
            .traffic
            .edge_log()
            .ok_or("the canary needs the edge log, and this traffic switch keeps none")?;
        let (base_addr, canary_addr) = (self.addr(from), self.addr(to));
        let mut feed = EdgeFeed::new(log, base_addr, canary_addr)?;
        let steps: Vec<u8> = config.split_steps().collect();
        let service = to.service_name(&self.manifest.service.name);
        let mut summary = Vec::new();
        self.save_canary(Some(CanaryProgress {
            release: id.to_owned(),
            baseline: baseline.to_owned(),
            canary_slot: to,
            baseline_slot: from,
            step: 1,
            steps: config.steps.clone(),
            canary_percent: 0,
            state: "running".to_owned(),
            verdict: "continue".to_owned(),
            reason: "starting".to_owned(),
            evidence: serde_json::Value::Null,
            updated: self.now(),
        }));
        for (i, percent) in steps.iter().copied().enumerate() {
            if i > 0 {
                judge.next_step();
            }
            self.env
                .traffic
                .split(base_addr, canary_addr, percent, self.release_check(id))
                .map_err(|e| format!("cannot split traffic {percent} % to {id}: {e}"))?;
            tracing::info!(release = id, step = i + 1, percent, "canary step");
            let started = self.env.clock.monotonic();
            loop {
                self.env.clock.sleep(config.poll_interval);
                feed.poll(&mut judge)?;
                let elapsed = self.env.clock.monotonic().saturating_sub(started);
                let running = self
                    .env
                    .procs
                    .status(&service)
                    .is_ok_and(|s| s.state == process_control::ServiceState::Running);
                let decision = judge.decide(elapsed).resolve(config.inconclusive);
                self.canary_progress(|p| {
                    p.step = judge.step();
                    p.canary_percent = percent;
                    p.verdict = decision.verdict.to_string();
                    p.reason = decision.reason.clone();
                    p.evidence = serde_json::to_value(&decision.evidence).unwrap_or_default();
                });
                if !running {
                    let reason = format!(
                        "rollback in step {}: {service} stopped running while it served {percent} % of the traffic",
                        judge.step()
                    );
                    self.record_decision(&decision, percent, elapsed, "stopped", &reason);
                    return Err(reason);
                }
                match decision.verdict {
                    Verdict::Continue | Verdict::Inconclusive => continue,
                    Verdict::PromoteStep => {
                        self.record_decision(
                            &decision,
                            percent,
                            elapsed,
                            "promote-step",
                            &decision.reason,
                        );
                        summary.push(format!(
                            "step {} ({percent} %) promoted after {:.1}s",
                            judge.step(),
                            elapsed.as_secs_f64()
                        ));
                        break;
                    }
                    Verdict::Rollback => {
                        self.record_decision(
                            &decision,
                            percent,
                            elapsed,
                            "rollback",
                            &decision.reason,
                        );
                        self.canary_progress(|p| p.state = "rolled-back".to_owned());
                        return Err(format!("canary {}", decision.reason));
                    }
                }
            }
        }
        Ok(format!("canary judged: {}", summary.join(", ")))
    }

    fn record_decision(
        &self,
        decision: &Decision,
        percent: u8,
        elapsed: Duration,
        verdict: &str,
        reason: &str,
    ) {
        tracing::info!(verdict, percent, reason, "canary decision");
        let record = CanaryDecision {
            step: decision.evidence.step,
            canary_percent: percent,
            verdict: verdict.to_owned(),
            reason: reason.to_owned(),
            step_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            evidence: serde_json::to_value(&decision.evidence).unwrap_or_default(),
        };
        if let Ok(mut decisions) = self.canary_decisions.lock() {
            decisions.push(record);
        }
    }

    /// Updates the `canary` section of the deploy state (best effort: progress for people,
    /// never a reason to fail the deploy).
    pub(crate) fn canary_progress(&self, update: impl FnOnce(&mut CanaryProgress)) {
        let Ok(mut state) = self.layout.load_state() else {
            return;
        };
        if let Some(progress) = state.canary.as_mut() {
            update(progress);
            progress.updated = self.now();
            if let Err(e) = self.layout.save_state(&state) {
                tracing::warn!(%e, "cannot record the canary's progress");
            }
        }
    }

    fn save_canary(&self, progress: Option<CanaryProgress>) {
        let Ok(mut state) = self.layout.load_state() else {
            return;
        };
        state.canary = progress;
        if let Err(e) = self.layout.save_state(&state) {
            tracing::warn!(%e, "cannot record the canary's progress");
        }
    }

    /// The decisions recorded since the last call (for the audit record).
    pub(crate) fn take_canary_decisions(&self) -> Vec<CanaryDecision> {
        self.canary_decisions
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_table_gives_the_defaults_and_bad_steps_are_refused() {
        let config: CanaryConfig = toml::from_str("").unwrap();
        assert_eq!(config, CanaryConfig::default());
        assert_eq!(config.steps, [5, 25, 50, 100]);
        assert_eq!(config.judge(), JudgeConfig::default());
        config.validate().unwrap();
        for steps in [
            vec![],
            vec![5, 25],
            vec![25, 5, 100],
            vec![0, 100],
            vec![5, 5, 100],
        ] {
            let bad = CanaryConfig {
                steps: steps.clone(),
                ..CanaryConfig::default()
            };
            let (key, reason) = bad.validate().unwrap_err();
            assert_eq!(key, "deploy.canary.steps", "{steps:?}");
            assert!(reason.contains("ending at 100"), "{reason}");
        }
        let bad = CanaryConfig {
            alpha: 0.9,
            ..CanaryConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "deploy.canary.alpha");
        let bad = CanaryConfig {
            sticky_cookie: Some("a b".into()),
            ..CanaryConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "deploy.canary.sticky_cookie");
        let header = CanaryConfig {
            sticky_header: Some("X-Session-Id".into()),
            ..CanaryConfig::default()
        };
        header.validate().unwrap();
        assert_eq!(
            header.sticky(),
            edge_proxy::StickyKey::Header("X-Session-Id".into())
        );
    }

    fn manifest(service: &str, deploy: &str) -> String {
        format!(
            r#"
[service]
name = "hub"
start = ["{{release}}/bin/hub", "--port", "{{port}}"]
port = 7000
{service}
[layout]
root = "/srv/hub"
[proxy]
kind = "nginx"
listen_http = ["127.0.0.1:8080"]
control_listen = "127.0.0.1:8081"
[deploy]
strategy = "canary"
{deploy}
"#
        )
    }

    /// A canary manifest is checked at load: exit 78 naming the key and what would do.
    #[test]
    fn a_canary_manifest_is_checked_at_load() {
        use crate::DeployManifest;
        let path = "/srv/hub/cutover.toml";
        let ok = DeployManifest::from_str(path, &manifest("standby_port = 7001", "")).unwrap();
        assert_eq!(ok.strategy(), StrategyKind::Canary);
        assert_eq!(ok.deploy.canary, CanaryConfig::default());
        for (service, deploy, key, says) in [
            (
                "standby_port = 7001",
                "[deploy.canary]\nsteps = [50, 10]",
                "deploy.canary.steps",
                "ending at 100",
            ),
            (
                "standby_port = 7001",
                "[deploy.canary]\nalpha = 0",
                "deploy.canary.alpha",
                "significance level",
            ),
            (
                "standby_port = 7001",
                "[deploy.canary]\nstep = [5, 100]",
                "step",
                "unknown",
            ),
            ("", "", "service.standby_port", "canary needs a second port"),
        ] {
            let error = DeployManifest::from_str(path, &manifest(service, deploy)).unwrap_err();
            assert_eq!(error.exit_code(), 78, "{error}");
            let text = error.to_string();
            assert!(text.contains(key) && text.contains(says), "{key}: {text}");
        }
    }

    #[test]
    fn every_key_parses() {
        let config: CanaryConfig = toml::from_str(
            r#"
            steps = [10, 100]
            alpha = 0.01
            failure_rate_tolerance = 0.01
            latency_quantile = 0.99
            latency_tolerance = 0.2
            min_requests = 50
            max_step_time = "20s"
            inconclusive = "promote"
            sticky_cookie = "session"
            poll_interval = "250ms"
            "#,
        )
        .unwrap();
        config.validate().unwrap();
        assert_eq!(config.split_steps().collect::<Vec<_>>(), [10]);
        assert_eq!(
            config.sticky(),
            edge_proxy::StickyKey::Cookie("session".into())
        );
        assert_eq!(config.judge().inconclusive, InconclusivePolicy::Promote);
        assert_eq!(config.poll_interval, Duration::from_millis(250));
        assert!(toml::from_str::<CanaryConfig>("step = [5]").is_err());
    }
}
