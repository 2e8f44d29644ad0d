//! Taking one evaluation: look at the deployment (what is live, in which slot, under which
//! pid), read what was appended to the proxy's edge log (when the deployment has a proxy),
//! read `/api/health` and `/api/stats` at the target, measure the process, sample and
//! evaluate the alert rules. Rules that read the same statistics document, or the same edge
//! window, are fed from the one read the screen shows, so the numbers and the markers beside
//! them come from one snapshot (and the edge log is read once per evaluation, not per rule).
//!
//! With a proxy in front, the default rules take success rate and latency from the edge
//! ([`alert_rules::SignalsFrom::Edge`], as `cutover-alerts` does); the default rules that read
//! `/api/stats` are left out while the service does not serve it (a bad answer), so a service
//! that exposes nothing is judged by what its users get, not `unknown` for ever.
//!
//! The target and the process are resolved again at every evaluation: `--target` and
//! `--pid`/`--pid-file` when given, else the live slot of the manifest's deployment, else
//! [`DEFAULT_TARGET`] and no process. So after a deploy to the other slot the next evaluation
//! reads the new live slot and measures its process.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alert_rules::{AlertRuleConfig, Engine, EngineState, Sample, Source};
use live_deployment::Deployment;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use crate::deployment::{self, Reading};
use crate::edge::{self as edge_view, EdgeView, EdgeWatch};
use crate::snapshot::{self, AlertView, Health, ProcessView, Reach, Snapshot, Stats};

/// Bodies larger than this are refused: a health or stats document is far smaller.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The target without `--target` and without a deployment in the manifest.
pub(crate) const DEFAULT_TARGET: &str = "http://127.0.0.1:7000";

/// Which process to measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProcessTarget {
    /// A pid, for one-off use.
    Pid(u32),
    /// A file holding `PID` or `PID START_TIME` (clock ticks since boot, field 22 of
    /// `/proc/PID/stat`); with a start time, a reused pid is reported, not measured.
    PidFile(PathBuf),
    /// The live slot's process, as its process manager reports it: with its start time, a
    /// reused pid is reported, not measured.
    Live {
        /// The pid.
        pid: u32,
        /// Its start time in clock ticks since boot.
        start_time: Option<u64>,
        /// The slot's process-manager service name (`hub`, `hub-blue`, …).
        name: String,
    },
}

/// The alert rules: the manifest's, or the default rules against the current target (built
/// again when the target moves to another slot).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RuleSet {
    /// `[[alert]]` entries: their sources name their own URLs.
    Configured(Vec<AlertRuleConfig>),
    /// [`alert_rules::default_rules`] against the resolved target.
    Defaults,
}

/// What a collector is told once: the flags and the deployment.
#[derive(Debug)]
pub(crate) struct Setup {
    /// `--target`, when given explicitly: it wins over the deployment.
    pub(crate) target: Option<String>,
    /// How long each HTTP read may take.
    pub(crate) timeout: Duration,
    /// The alert rules.
    pub(crate) rules: RuleSet,
    /// `--pid` or `--pid-file`, when given: it wins over the live slot's process.
    pub(crate) process: Option<ProcessTarget>,
    /// The manifest's deployment, when it describes one (it has a `[service]` table).
    pub(crate) deployment: Option<Deployment>,
}

/// Everything an evaluation needs, kept across evaluations (alert timers, CPU counters).
#[derive(Debug)]
pub(crate) struct Collector {
    explicit_target: Option<String>,
    explicit_process: bool,
    deployment: Option<Arc<Deployment>>,
    defaults: bool,
    /// The base URL read now; `None` when nothing is deployed.
    target: Option<String>,
    health_url: String,
    stats_url: String,
    timeout: Duration,
    rules: Vec<AlertRuleConfig>,
    /// The manifest's `[[alert]]` entries as written: sources written against the service
    /// (`/api/stats`, `{url}/…`) are joined to the target at each retarget.
    configured: Vec<AlertRuleConfig>,
    engine: Engine,
    process: Option<ProcessWatch>,
    /// The proxy's edge log, when the deployment has a proxy (taken out while it is read).
    edge: Option<EdgeWatch>,
    /// Where the default rules take success rate and latency from.
    signals_from: alert_rules::SignalsFrom,
    /// The proxy's directory, to point edge sources at.
    proxy_dir: Option<PathBuf>,
}

impl Collector {
    /// A collector; the target is resolved at each evaluation.
    pub(crate) fn new(setup: Setup) -> Collector {
        let (defaults, rules) = match setup.rules {
            RuleSet::Configured(rules) => (false, rules),
            RuleSet::Defaults => (true, Vec::new()),
        };
        let proxy_dir = setup
            .deployment
            .as_ref()
            .filter(|d| d.proxy().is_some())
            .map(|d| d.proxy_dir().to_path_buf());
        let mut rules = rules;
        if let Some(dir) = &proxy_dir {
            for r in &mut rules {
                r.source.resolve_edge_log(dir);
            }
        }
        let engine = Engine::new(
            rules.iter().map(|r| r.rule.clone()).collect(),
            EngineState::default(),
        );
        Collector {
            edge: proxy_dir.as_deref().map(EdgeWatch::new),
            signals_from: if proxy_dir.is_some() {
                alert_rules::SignalsFrom::Edge
            } else {
                alert_rules::SignalsFrom::Service
            },
            proxy_dir,
            explicit_target: setup.target.map(|t| base_url(&t)),
            explicit_process: setup.process.is_some(),
            deployment: setup.deployment.map(Arc::new),
            defaults,
            target: None,
            health_url: String::new(),
            stats_url: String::new(),
            timeout: setup.timeout,
            configured: rules.clone(),
            rules,
            engine,
            process: setup.process.map(ProcessWatch::new),
        }
    }

    /// The target this evaluation reads: `--target`, else the live slot's own base URL
    /// (`None` when nothing is deployed), else [`DEFAULT_TARGET`].
    fn resolve_target(&self, reading: Option<&Reading>) -> Option<String> {
        match (&self.explicit_target, reading) {
            (Some(target), _) => Some(target.clone()),
            (None, Some(reading)) => reading.target().map(|t| base_url(&t)),
            (None, None) => Some(DEFAULT_TARGET.to_owned()),
        }
    }

    /// Points the reads (and the default rules) at `target`. Default rules whose source did
    /// not change (the host's disk) keep their state; the others start afresh, since they now
    /// watch another process.
    fn retarget(&mut self, target: Option<String>) {
        if target == self.target {
            return;
        }
        if let Some(base) = &target {
            tracing::info!(url = %base, "monitoring target");
            self.health_url = format!("{base}/api/health");
            self.stats_url = format!("{base}/api/stats");
            if self.defaults {
                match alert_rules::default_rules_from(base, self.signals_from) {
                    Ok(mut rules) => {
                        if let Some(dir) = &self.proxy_dir {
                            for r in &mut rules {
                                r.source.resolve_edge_log(dir);
                            }
                        }
                        let mut state = self.engine.state().clone();
                        state.rules.retain(|name, _| {
                            let source = |rules: &[AlertRuleConfig]| {
                                rules
                                    .iter()
                                    .find(|r| &r.rule.name == name)
                                    .map(|r| r.source.clone())
                            };
                            source(&rules).is_some() && source(&rules) == source(&self.rules)
                        });
                        self.engine =
                            Engine::new(rules.iter().map(|r| r.rule.clone()).collect(), state);
                        self.rules = rules;
                    }
                    Err(e) => tracing::error!("the default rules do not build: {e}"),
                }
            } else if self.configured.iter().any(|r| r.source.needs_base_url()) {
                // The same rules, pointed at the new target: their state carries over.
                self.rules = self
                    .configured
                    .iter()
                    .cloned()
                    .map(|mut r| {
                        if r.source.needs_base_url() {
                            r.source.resolve_base_url(base, None);
                        }
                        r
                    })
                    .collect();
            }
        }
        self.target = target;
    }

    /// Measures the live slot's process unless `--pid` or `--pid-file` named one, or
    /// `--target` names something other than the live slot.
    fn follow_process(&mut self, reading: Option<&Reading>) {
        if self.explicit_process {
            return;
        }
        let live_target = reading.and_then(Reading::target).map(|t| base_url(&t));
        let wanted = match &self.explicit_target {
            Some(target) if Some(target) != live_target.as_ref() => None,
            _ => reading.and_then(Reading::process_target),
        };
        match (wanted, self.process.as_mut()) {
            (Some(target), Some(watch)) => watch.retarget(target),
            (Some(target), None) => self.process = Some(ProcessWatch::new(target)),
            (None, _) => self.process = None,
        }
    }

    /// Looks at the deployment, off the async threads (state files, the process manager,
    /// the logs).
    async fn read_deployment(&self) -> Option<Reading> {
        let deployment = Arc::clone(self.deployment.as_ref()?);
        let task = Arc::clone(&deployment);
        Some(
            match tokio::task::spawn_blocking(move || deployment::read(&task)).await {
                Ok(reading) => reading,
                Err(e) => Reading::failed(
                    &deployment,
                    format!("reading the deployment failed: {e}"),
                    None,
                    Vec::new(),
                ),
            },
        )
    }

    /// Takes one evaluation.
    #[tracing::instrument(skip_all)]
    pub(crate) async fn collect(&mut self) -> Snapshot {
        let at = jiff::Timestamp::now();
        let started = Instant::now();
        let reading = self.read_deployment().await;
        let target = self.resolve_target(reading.as_ref());
        self.retarget(target);
        self.follow_process(reading.as_ref());
        let (edge, window) = self.read_edge(reading.as_ref(), at).await;
        let mut not_served = Vec::new();
        let (health, stats, process, alerts) = match &self.target {
            Some(_) => self.read_target(at, window.as_ref(), &mut not_served).await,
            None => {
                // Nothing is deployed (or the deployment cannot be read): there is nothing to
                // read, and that is not a connection error.
                let why = reading
                    .as_ref()
                    .map_or_else(String::new, Reading::no_target_reason);
                let process = match self.process.as_mut() {
                    Some(p) => Some(p.sample().await),
                    None => None,
                };
                (
                    Health::unread(Reach::NoTarget, why.clone()),
                    Stats::unread(Reach::NoTarget, why),
                    process,
                    Vec::new(),
                )
            }
        };
        let (status, reasons) =
            snapshot::verdict(&health, &stats, edge.as_ref(), process.as_ref(), &alerts);
        Snapshot {
            edge,
            not_served,
            status,
            target: self.target.clone(),
            at,
            took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            deployment: reading.map(|r| r.view),
            health,
            stats,
            process,
            alerts,
            reasons,
        }
    }

    /// Reads what the edge log gained since the last evaluation, off the async threads, with
    /// upstreams named after the deployment's slots.
    async fn read_edge(
        &mut self,
        reading: Option<&Reading>,
        at: jiff::Timestamp,
    ) -> (Option<EdgeView>, Option<edge_signals::WindowReport>) {
        let Some(mut watch) = self.edge.take() else {
            return (None, None);
        };
        let slots = reading
            .and_then(|r| r.live.as_ref())
            .map(edge_view::slot_names);
        let log = watch.log().to_path_buf();
        match tokio::task::spawn_blocking(move || {
            let read = watch.poll(slots, at);
            (watch, read)
        })
        .await
        {
            Ok((watch, (view, report))) => {
                self.edge = Some(watch);
                (Some(view), report)
            }
            Err(e) => {
                // The watch is lost with its task: start again from the window next time.
                self.edge = self.proxy_dir.as_deref().map(EdgeWatch::new);
                let mut view = edge_view::view_of(
                    &log,
                    &edge_signals::EdgeSignals::new(edge_signals::SignalOptions::default())
                        .window(at),
                    &[],
                );
                view.reach = crate::edge::EdgeReach::Error;
                view.error = Some(format!("reading the edge log failed: {e}"));
                (Some(view), None)
            }
        }
    }

    /// Reads the target, measures the process and evaluates the rules; default rules on a
    /// statistics route the service does not serve go to `not_served` (with an edge only).
    async fn read_target(
        &mut self,
        at: jiff::Timestamp,
        window: Option<&edge_signals::WindowReport>,
        not_served: &mut Vec<String>,
    ) -> (Health, Stats, Option<ProcessView>, Vec<AlertView>) {
        let (health_doc, stats_doc) = tokio::join!(
            get_json(&self.health_url, self.timeout),
            get_json(&self.stats_url, self.timeout)
        );
        let health = match &health_doc {
            Ok(doc) => Health::from_document(doc),
            Err(e) => Health::unread(e.reach(), e.to_string()),
        };
        let stats = match &stats_doc {
            Ok(doc) => Stats::from_document(doc),
            Err(e) => Stats::unread(e.reach(), e.to_string()),
        };

        // Rules on the statistics document read the copy fetched above, edge rules on the
        // monitor's window read that window; the rest sample their own sources, all at once.
        let edge_log = self.edge.as_ref().map(|e| e.log().to_path_buf());
        let (shared, own): (Vec<&AlertRuleConfig>, Vec<&AlertRuleConfig>) =
            self.rules.iter().partition(|r| match &r.source {
                Source::Http(s) => s.url == self.stats_url && s.header.is_none(),
                Source::Edge(s) => {
                    window.is_some()
                        && edge_log
                            .as_deref()
                            .is_some_and(|log| edge_view::shares_window(s, log))
                }
                _ => false,
            });
        let unserved = self.defaults
            && self.edge.is_some()
            && matches!(stats_doc, Err(FetchError::BadAnswer(_)));
        let own: Vec<AlertRuleConfig> = own.into_iter().cloned().collect();
        let process_future = async {
            match self.process.as_mut() {
                Some(p) => Some(p.sample().await),
                None => None,
            }
        };
        let (mut samples, process) = tokio::join!(alert_rules::sample_all(&own), process_future);
        for rule in shared {
            match &rule.source {
                Source::Http(_) if unserved => not_served.push(rule.rule.name.clone()),
                Source::Http(s) => {
                    samples.insert(rule.rule.name.clone(), sample_from(&stats_doc, s));
                }
                Source::Edge(s) => {
                    if let Some(w) = window {
                        samples.insert(rule.rule.name.clone(), edge_view::sample_edge(w, s));
                    }
                }
                _ => {}
            }
        }
        let evaluation = self.engine.evaluate(at, &samples);
        let alerts: Vec<AlertView> = evaluation
            .statuses
            .iter()
            .filter(|s| !not_served.contains(&s.name))
            .map(|status| {
                let mut view = AlertView::from_status(status);
                view.from_edge = self
                    .rules
                    .iter()
                    .any(|r| r.rule.name == status.name && matches!(r.source, Source::Edge(_)));
                view
            })
            .collect();
        (health, stats, process, alerts)
    }
}

/// `http://host:port` without a trailing `/`.
fn base_url(target: &str) -> String {
    target.trim_end_matches('/').to_owned()
}

/// A rule's sample from an already fetched document, with the JSON source's own meaning: an
/// unreadable document is an error, a missing field is no data.
fn sample_from(
    document: &Result<serde_json::Value, FetchError>,
    source: &alert_rules::sources::JsonSource,
) -> Sample {
    match document {
        Err(e) => Sample::error(e.to_string()),
        Ok(doc) => source.sample_document(doc),
    }
}

/// Why a document could not be read.
#[derive(Debug)]
pub(crate) enum FetchError {
    /// Nothing answered.
    Unreachable(String),
    /// Something answered, not with a 2xx JSON document.
    BadAnswer(String),
}

impl FetchError {
    fn reach(&self) -> Reach {
        match self {
            FetchError::Unreachable(_) => Reach::Unreachable,
            FetchError::BadAnswer(_) => Reach::BadAnswer,
        }
    }
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Unreachable(m) | FetchError::BadAnswer(m) => f.write_str(m),
        }
    }
}

/// A URL for messages: scheme, host, port and path, without credentials, query or fragment
/// (a stats URL may carry a token in either).
pub(crate) fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "(invalid URL)".to_owned(),
    }
}

/// A reqwest error with its causes, for a message, without the URL.
fn describe(error: reqwest::Error) -> String {
    cutover_cli::error_chain(&error.without_url())
}

/// GETs a JSON document over plain HTTP/1.1 on a fresh connection, within `timeout`.
pub(crate) async fn get_json(
    url: &str,
    timeout: Duration,
) -> Result<serde_json::Value, FetchError> {
    let shown = redacted(url);
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| FetchError::BadAnswer(format!("`{shown}` is not a URL: {e}")))?;
    if parsed.scheme() != "http" {
        return Err(FetchError::BadAnswer(format!(
            "`{shown}`: only http:// targets are supported (put the monitor beside the service, behind the proxy)"
        )));
    }
    let authority = match (parsed.host_str(), parsed.port_or_known_default()) {
        (Some(host), Some(port)) if host.contains(':') => format!("[{host}]:{port}"),
        (Some(host), Some(port)) => format!("{host}:{port}"),
        _ => shown.clone(),
    };
    let work = async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .no_proxy()
            .http1_only()
            .build()
            .map_err(|e| FetchError::BadAnswer(format!("{shown}: {}", describe(e))))?;
        let mut response = client
            .get(parsed)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| FetchError::Unreachable(format!("{authority}: {}", describe(e))))?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            FetchError::BadAnswer(format!("{shown}: reading the body: {}", describe(e)))
        })? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(FetchError::BadAnswer(format!(
                    "{shown}: reading the body: longer than {MAX_BODY_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(FetchError::BadAnswer(format!(
                "{shown} answered HTTP {}",
                status.as_u16()
            )));
        }
        serde_json::from_slice(&body)
            .map_err(|e| FetchError::BadAnswer(format!("{shown}: the answer is not JSON: {e}")))
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Unreachable(format!(
            "{authority}: no answer within {}",
            humantime::format_duration(timeout)
        ))),
    }
}

/// Measures one process across evaluations: CPU use is the share of one core since the
/// previous evaluation (sysinfo), memory is the resident set.
#[derive(Debug)]
pub(crate) struct ProcessWatch {
    target: ProcessTarget,
    system: Option<System>,
    last_pid: Option<u32>,
}

impl ProcessWatch {
    fn new(target: ProcessTarget) -> ProcessWatch {
        ProcessWatch {
            target,
            system: None,
            last_pid: None,
        }
    }

    /// Measures `target` from now on (the live slot moved, or its process restarted).
    fn retarget(&mut self, target: ProcessTarget) {
        if target != self.target {
            self.target = target;
            self.last_pid = None;
        }
    }

    fn describe(&self) -> String {
        match &self.target {
            ProcessTarget::Pid(_) => "--pid".to_owned(),
            ProcessTarget::PidFile(path) => path.display().to_string(),
            ProcessTarget::Live { name, .. } => format!("the live slot {name}"),
        }
    }

    async fn sample(&mut self) -> ProcessView {
        let source = self.describe();
        let unread = |pid, error: String, marker| ProcessView {
            source: source.clone(),
            pid,
            rss_bytes: None,
            cpu_percent: None,
            error: Some(error),
            marker,
        };
        let pid = match self.resolve_pid().await {
            Ok(pid) => pid,
            Err((error, marker)) => return unread(None, error, marker),
        };
        let system = match &mut self.system {
            Some(s) => s,
            None => match System::new() {
                Ok(s) => self.system.insert(s),
                Err(e) => {
                    return unread(
                        Some(pid),
                        format!("cannot read process information: {e}"),
                        cutover_cli::Status::Unknown,
                    );
                }
            },
        };
        let refresh = |system: &mut System| {
            system.refresh_processes_specifics(
                ProcessesToUpdate::Some(&[Pid::from_u32(pid)]),
                true,
                ProcessRefreshKind::nothing().with_cpu().with_memory(),
            )
        };
        refresh(system);
        if self.last_pid != Some(pid) {
            // CPU use is a difference: the first look at a process needs a second one.
            tokio::time::sleep(
                sysinfo::MINIMUM_CPU_UPDATE_INTERVAL.max(Duration::from_millis(250)),
            )
            .await;
            refresh(system);
        }
        match system.process(Pid::from_u32(pid)) {
            Some(p) => {
                self.last_pid = Some(pid);
                ProcessView {
                    source,
                    pid: Some(pid),
                    rss_bytes: Some(p.memory()),
                    cpu_percent: Some(f64::from(p.cpu_usage())),
                    error: None,
                    marker: cutover_cli::Status::Ok,
                }
            }
            None => {
                self.last_pid = None;
                unread(
                    Some(pid),
                    format!("process {pid} is not running"),
                    cutover_cli::Status::Fail,
                )
            }
        }
    }

    /// The pid to measure; a pid file naming a reused pid or a gone process fails, an
    /// unreadable one is unknown.
    async fn resolve_pid(&self) -> Result<u32, (String, cutover_cli::Status)> {
        let file = match &self.target {
            ProcessTarget::Pid(pid) => return Ok(*pid),
            ProcessTarget::Live {
                pid,
                start_time,
                name,
            } => {
                if let Some(expected) = start_time {
                    same_process(*pid, *expected, &format!("the live slot {name}")).await?;
                }
                return Ok(*pid);
            }
            ProcessTarget::PidFile(file) => file,
        };
        let text = tokio::fs::read_to_string(file).await.map_err(|e| {
            (
                format!("cannot read pid file {}: {e}", file.display()),
                cutover_cli::Status::Unknown,
            )
        })?;
        let mut words = text.split_whitespace();
        let pid: u32 = words.next().and_then(|w| w.parse().ok()).ok_or_else(|| {
            (
                format!("pid file {} does not start with a pid", file.display()),
                cutover_cli::Status::Unknown,
            )
        })?;
        if let Some(expected) = words.next().and_then(|w| w.parse::<u64>().ok()) {
            same_process(pid, expected, &file.display().to_string()).await?;
        }
        Ok(pid)
    }
}

/// Checks that `pid` (named by `from`) is still the process that started at `expected`: a
/// reused pid or a gone process fails.
async fn same_process(
    pid: u32,
    expected: u64,
    from: &str,
) -> Result<(), (String, cutover_cli::Status)> {
    match start_time(pid).await {
        Some(actual) if actual == expected => Ok(()),
        Some(_) => Err((
            format!("pid {pid} from {from} now belongs to another process"),
            cutover_cli::Status::Fail,
        )),
        None => Err((
            format!("process {pid} is not running"),
            cutover_cli::Status::Fail,
        )),
    }
}

/// Field 22 of `/proc/PID/stat`: the start time in clock ticks since boot.
async fn start_time(pid: u32) -> Option<u64> {
    let text = tokio::fs::read_to_string(format!("/proc/{pid}/stat"))
        .await
        .ok()?;
    host_util::ProcStat::parse(pid, &text).map(|s| s.start_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dead_address_is_unreachable() {
        // Port 9 (discard) on loopback: nothing listens there in a test environment; if
        // something did, it would not speak HTTP JSON either.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = get_json(&format!("http://{addr}/api/health"), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Unreachable(_)), "{err}");
    }

    #[tokio::test]
    async fn errors_show_no_query_string_or_credentials() {
        assert_eq!(
            redacted("http://user:pw@127.0.0.1:7000/api/stats?token=sEcReT#frag"),
            "http://127.0.0.1:7000/api/stats"
        );
        // A server that answers 500 and one that answers something that is not JSON.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let answers: [&[u8]; 2] = [
                b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nnot",
            ];
            for answer in answers {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await;
                let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, answer).await;
            }
        });
        let url = format!("http://user:pw@{addr}/api/stats?token=sEcReT");
        for expected in ["answered HTTP 500", "not JSON"] {
            let err = get_json(&url, Duration::from_secs(5)).await.unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, FetchError::BadAnswer(_)), "{text}");
            assert!(text.contains(expected), "{text}");
            assert!(text.contains(&format!("http://{addr}/api/stats")), "{text}");
            assert!(!text.contains("sEcReT") && !text.contains("pw"), "{text}");
        }
        // Unreachable: the message names host and port only.
        let err = get_json("https://127.0.0.1:1/x?token=sEcReT", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(!err.to_string().contains("sEcReT"), "{err}");
    }

    #[tokio::test]
    async fn https_is_refused_with_a_reason() {
        let err = get_json("https://127.0.0.1:1/api/health", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("only http://"), "{err}");
    }

    #[tokio::test]
    async fn this_process_is_measured_and_a_gone_one_fails() {
        let mut watch = ProcessWatch::new(ProcessTarget::Pid(std::process::id()));
        let view = watch.sample().await;
        assert_eq!(view.marker, cutover_cli::Status::Ok, "{view:?}");
        assert!(view.rss_bytes.unwrap() > 1024 * 1024);
        assert!(view.cpu_percent.unwrap() >= 0.0);

        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let view = ProcessWatch::new(ProcessTarget::Pid(pid)).sample().await;
        assert_eq!(view.marker, cutover_cli::Status::Fail, "{view:?}");
        assert!(view.error.unwrap().contains("not running"));
    }

    #[tokio::test]
    async fn pid_files_are_checked_against_the_start_time() {
        let dir = cutover_tests::temp_dir();
        let file = dir.path().join("svc.pid");
        let pid = std::process::id();
        let start = start_time(pid).await.unwrap();
        let mut watch = ProcessWatch::new(ProcessTarget::PidFile(file.clone()));

        std::fs::write(&file, format!("{pid} {start}\n")).unwrap();
        assert_eq!(watch.sample().await.marker, cutover_cli::Status::Ok);
        std::fs::write(&file, format!("{pid} {}\n", start + 1)).unwrap();
        let view = watch.sample().await;
        assert_eq!(view.marker, cutover_cli::Status::Fail);
        assert!(view.error.unwrap().contains("another process"));
        std::fs::remove_file(&file).unwrap();
        let view = watch.sample().await;
        assert_eq!(view.marker, cutover_cli::Status::Unknown);
        assert!(view.error.unwrap().contains("pid file"));
    }

    #[tokio::test]
    async fn the_live_slot_is_measured_by_pid_and_start_time() {
        let pid = std::process::id();
        let start = start_time(pid).await.unwrap();
        let live = crate::deployment::tests::live_state(Some(pid), Some(start));
        let target = crate::deployment::process_target(&live).unwrap();
        let mut watch = ProcessWatch::new(target);
        let view = watch.sample().await;
        assert_eq!(view.marker, cutover_cli::Status::Ok, "{view:?}");
        assert_eq!(view.pid, Some(pid));
        assert_eq!(view.source, "the live slot hub-green");

        // The pid now belongs to another process: reported, not measured.
        let reused = crate::deployment::tests::live_state(Some(pid), Some(start + 1));
        watch.retarget(crate::deployment::process_target(&reused).unwrap());
        let view = watch.sample().await;
        assert_eq!(view.marker, cutover_cli::Status::Fail, "{view:?}");
        assert!(
            view.error
                .unwrap()
                .contains("now belongs to another process")
        );
    }

    #[tokio::test]
    async fn the_target_follows_the_live_slot_and_the_defaults_follow_the_target() {
        let mut collector = Collector::new(Setup {
            target: None,
            timeout: Duration::from_secs(1),
            rules: RuleSet::Defaults,
            process: None,
            deployment: None,
        });
        // Without a deployment: the old default.
        assert_eq!(
            collector.resolve_target(None).as_deref(),
            Some(DEFAULT_TARGET)
        );
        collector.retarget(Some("http://127.0.0.1:7101".into()));
        let urls = |c: &Collector| -> Vec<String> {
            c.rules
                .iter()
                .filter_map(|r| match &r.source {
                    Source::Http(s) => Some(s.url.clone()),
                    _ => None,
                })
                .collect()
        };
        assert!(!collector.rules.is_empty());
        assert!(
            urls(&collector)
                .iter()
                .all(|u| u == "http://127.0.0.1:7101/api/stats")
        );
        assert_eq!(collector.stats_url, "http://127.0.0.1:7101/api/stats");
        collector.retarget(Some("http://127.0.0.1:7100".into()));
        assert!(
            urls(&collector)
                .iter()
                .all(|u| u == "http://127.0.0.1:7100/api/stats")
        );

        // An explicit --target wins over the live slot.
        let explicit = Collector::new(Setup {
            target: Some("http://127.0.0.1:9000/".into()),
            timeout: Duration::from_secs(1),
            rules: RuleSet::Defaults,
            process: None,
            deployment: None,
        });
        assert_eq!(
            explicit.resolve_target(None).as_deref(),
            Some("http://127.0.0.1:9000")
        );
    }

    #[test]
    fn shared_documents_keep_the_json_source_meaning() {
        let rules = alert_rules::default_rules("http://127.0.0.1:9").unwrap();
        let Source::Http(p95) = &rules[1].source else {
            panic!()
        };
        let doc = Ok(serde_json::json!({"latency_ms": {"p95": 12.5}}));
        assert_eq!(sample_from(&doc, p95), Sample::number(12.5));
        let doc = Ok(serde_json::json!({}));
        assert!(matches!(sample_from(&doc, p95), Sample::NoData(_)));
        let doc = Err(FetchError::Unreachable("refused".into()));
        assert!(matches!(sample_from(&doc, p95), Sample::Error(_)));
        // A ratio over too few lookups is no data here too (one miss after a deploy's probe).
        let cache = rules
            .iter()
            .find_map(|r| match &r.source {
                Source::Http(s) if r.rule.name == "cache-hit-rate" => Some(s),
                _ => None,
            })
            .expect("a cache rule");
        let doc = Ok(serde_json::json!({"cache_hit_rate": 0.0, "cache_lookups": 1}));
        assert!(matches!(sample_from(&doc, cache), Sample::NoData(_)));
        let doc = Ok(serde_json::json!({"cache_hit_rate": 0.5, "cache_lookups": 40}));
        assert_eq!(sample_from(&doc, cache), Sample::number(50.0));
    }
}
