//! Taking one evaluation: read `/api/health` and `/api/stats`, measure the process, sample and
//! evaluate the alert rules. Rules that read the same statistics document are fed from the one
//! read the screen shows, so the numbers and the markers beside them come from one snapshot.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use alert_rules::{AlertRuleConfig, Engine, EngineState, Sample, Source};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use crate::snapshot::{self, AlertView, Health, ProcessView, Reach, Snapshot, Stats};

/// Bodies larger than this are refused: a health or stats document is far smaller.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Which process to measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProcessTarget {
    /// A pid, for one-off use.
    Pid(u32),
    /// A file holding `PID` or `PID START_TIME` (clock ticks since boot, field 22 of
    /// `/proc/PID/stat`); with a start time, a reused pid is reported, not measured.
    PidFile(PathBuf),
}

/// Everything an evaluation needs, kept across evaluations (alert timers, CPU counters).
#[derive(Debug)]
pub(crate) struct Collector {
    target: String,
    health_url: String,
    stats_url: String,
    timeout: Duration,
    rules: Vec<AlertRuleConfig>,
    engine: Engine,
    process: Option<ProcessWatch>,
}

impl Collector {
    /// A collector for the service at `target` (`http://127.0.0.1:7000`).
    pub(crate) fn new(
        target: &str,
        timeout: Duration,
        rules: Vec<AlertRuleConfig>,
        process: Option<ProcessTarget>,
    ) -> Collector {
        let base = target.trim_end_matches('/').to_owned();
        let engine = Engine::new(
            rules.iter().map(|r| r.rule.clone()).collect(),
            EngineState::default(),
        );
        Collector {
            health_url: format!("{base}/api/health"),
            stats_url: format!("{base}/api/stats"),
            target: base,
            timeout,
            rules,
            engine,
            process: process.map(ProcessWatch::new),
        }
    }

    /// Takes one evaluation.
    #[tracing::instrument(skip_all, fields(target = %self.target))]
    pub(crate) async fn collect(&mut self) -> Snapshot {
        let at = jiff::Timestamp::now();
        let started = Instant::now();
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

        // Rules on the statistics document read the copy fetched above; the rest sample
        // their own sources, all at once.
        let (shared, own): (Vec<&AlertRuleConfig>, Vec<&AlertRuleConfig>) =
            self.rules.iter().partition(|r| match &r.source {
                Source::Http(s) => s.url == self.stats_url && s.header.is_none(),
                _ => false,
            });
        let own: Vec<AlertRuleConfig> = own.into_iter().cloned().collect();
        let process_future = async {
            match self.process.as_mut() {
                Some(p) => Some(p.sample().await),
                None => None,
            }
        };
        let (mut samples, process) = tokio::join!(alert_rules::sample_all(&own), process_future);
        for rule in shared {
            if let Source::Http(s) = &rule.source {
                samples.insert(rule.rule.name.clone(), sample_from(&stats_doc, s));
            }
        }
        let evaluation = self.engine.evaluate(at, &samples);
        let alerts: Vec<AlertView> = evaluation
            .statuses
            .iter()
            .map(AlertView::from_status)
            .collect();
        let (status, reasons) = snapshot::verdict(&health, &stats, process.as_ref(), &alerts);
        Snapshot {
            status,
            target: self.target.clone(),
            at,
            took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            health,
            stats,
            process,
            alerts,
            reasons,
        }
    }
}

/// A rule's sample from an already fetched document, with the JSON source's own meaning: an
/// unreadable document is an error, a missing field is no data.
fn sample_from(
    document: &Result<serde_json::Value, FetchError>,
    source: &alert_rules::sources::JsonSource,
) -> Sample {
    match document {
        Err(e) => Sample::error(e.to_string()),
        Ok(doc) => match doc.pointer(&source.pointer) {
            Some(field) => {
                alert_rules::sample::sample_from_json(field, &format!("field {}", source.pointer))
                    .scaled(source.scale)
            }
            None => Sample::no_data(format!("the answer has no field {}", source.pointer)),
        },
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

/// GETs a JSON document over plain HTTP/1.1 on a fresh connection, within `timeout`.
pub(crate) async fn get_json(
    url: &str,
    timeout: Duration,
) -> Result<serde_json::Value, FetchError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| FetchError::BadAnswer(format!("`{url}` is not a URL: {e}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(FetchError::BadAnswer(format!(
            "`{url}`: only http:// targets are supported (put the monitor beside the service, behind the proxy)"
        )));
    }
    let host = uri
        .host()
        .unwrap_or("127.0.0.1")
        .trim_matches(['[', ']'])
        .to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let authority = uri
        .authority()
        .map_or_else(|| host.clone(), ToString::to_string);
    let path = uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), ToString::to_string);
    let work = async {
        let stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| FetchError::Unreachable(format!("{authority}: {e}")))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| FetchError::Unreachable(format!("{authority}: {e}")))?;
        tokio::spawn(connection);
        let request = http::Request::get(path.as_str())
            .header(http::header::HOST, authority.as_str())
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| FetchError::BadAnswer(format!("{url}: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| FetchError::Unreachable(format!("{authority}: {e}")))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| FetchError::BadAnswer(format!("{url}: reading the body: {e}")))?
            .to_bytes();
        if !status.is_success() {
            return Err(FetchError::BadAnswer(format!(
                "{url} answered HTTP {}",
                status.as_u16()
            )));
        }
        serde_json::from_slice(&body)
            .map_err(|e| FetchError::BadAnswer(format!("{url}: the answer is not JSON: {e}")))
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

    fn describe(&self) -> String {
        match &self.target {
            ProcessTarget::Pid(_) => "--pid".to_owned(),
            ProcessTarget::PidFile(path) => path.display().to_string(),
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
            match start_time(pid).await {
                Some(actual) if actual == expected => {}
                Some(_) => {
                    return Err((
                        format!(
                            "pid {pid} from {} now belongs to another process",
                            file.display()
                        ),
                        cutover_cli::Status::Fail,
                    ));
                }
                None => {
                    return Err((
                        format!("process {pid} is not running"),
                        cutover_cli::Status::Fail,
                    ));
                }
            }
        }
        Ok(pid)
    }
}

/// Field 22 of `/proc/PID/stat`: the start time in clock ticks since boot.
async fn start_time(pid: u32) -> Option<u64> {
    let stat = tokio::fs::read_to_string(format!("/proc/{pid}/stat"))
        .await
        .ok()?;
    let (_, after_name) = stat.rsplit_once(')')?;
    // After the name come fields 3, 4, …: field 22 is the 20th of them.
    after_name.split_whitespace().nth(19)?.parse().ok()
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
    }
}
