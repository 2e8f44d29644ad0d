//! Where samples come from. Each kind is a module; [`Source`] is the configured choice.

pub mod command;
pub mod edge;
pub mod host;
pub mod json;
pub mod process;
pub mod prometheus;

use serde::Serialize;

use crate::sample::Sample;

pub use command::CommandSource;
pub use edge::{EdgeMetric, EdgeSource};
pub use host::{HostFact, HostSource};
pub use json::{JsonSource, SecretHeader};
pub use process::{ProcessField, ProcessSource, ProcessTarget};
pub use prometheus::{Aggregate, PrometheusSource};

/// Anything that yields one sample per call. Implementations never fail as a `Result`: a
/// source that cannot be read yields [`Sample::Error`], and one that has no value yields
/// [`Sample::NoData`], because the rule, not the source, decides what those mean.
pub trait MetricSource {
    /// Takes one sample.
    fn sample(&self) -> impl Future<Output = Sample> + Send;
}

impl<T: MetricSource + Sync> MetricSource for &T {
    fn sample(&self) -> impl Future<Output = Sample> + Send {
        (**self).sample()
    }
}

impl<T: MetricSource + Sync + Send> MetricSource for Box<T> {
    fn sample(&self) -> impl Future<Output = Sample> + Send {
        (**self).sample()
    }
}

/// A configured source: one of the kinds this crate ships.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// A JSON endpoint and pointer.
    Http(JsonSource),
    /// A series on a Prometheus `/metrics` page.
    Prometheus(PrometheusSource),
    /// A command's output.
    Command(CommandSource),
    /// A process's resource use.
    Process(ProcessSource),
    /// A host fact.
    Host(HostSource),
    /// A signal of the proxy's access log over a window.
    Edge(EdgeSource),
}

impl Source {
    /// A short description for listings (`GET http://127.0.0.1:7000 /latency_ms/p95`), never
    /// showing URL paths' secrets or header values.
    pub fn describe(&self) -> String {
        match self {
            Source::Http(s) => format!("json {} {}", s.url_for_display(), s.pointer),
            Source::Prometheus(s) => {
                format!(
                    "prometheus {} {}",
                    if crate::http::is_relative(&s.url) {
                        crate::http::display_url(&s.url)
                    } else {
                        crate::http::redacted_target(&s.url)
                    },
                    prometheus::selector(&s.metric, &s.labels)
                )
            }
            Source::Command(s) => format!("command {}", s.argv.first().map_or("", String::as_str)),
            Source::Process(s) => match (&s.target.pid, &s.target.pid_file) {
                (Some(pid), _) => format!("process pid {pid} {}", snake(&s.field)),
                (None, Some(f)) => format!("process {} {}", f.display(), snake(&s.field)),
                (None, None) => "process ?".to_owned(),
            },
            Source::Host(s) => format!("host {} {}", snake(&s.fact), s.path.display()),
            Source::Edge(s) => format!(
                "edge {} {} over {}",
                s.location.as_deref().unwrap_or("(all)"),
                s.metric.as_str(),
                humantime::format_duration(s.window)
            ),
        }
    }

    /// Whether the source's URL is written against the service's base URL (`/api/stats`,
    /// `{url}/api/stats`) and so needs [`Self::resolve_base_url`] before it can be sampled.
    pub fn needs_base_url(&self) -> bool {
        match self {
            Source::Http(s) => crate::http::is_relative(&s.url),
            Source::Prometheus(s) => crate::http::is_relative(&s.url),
            _ => false,
        }
    }

    /// Joins a URL written against the service's base URL to `base` (`https://127.0.0.1:8443`),
    /// trusting `ca_file` besides the built-in roots for it (the deployment proxy's own
    /// self-signed certificate). Absolute URLs and other kinds are left alone, so a template
    /// can be resolved again when the base changes.
    pub fn resolve_base_url(&mut self, base: &str, ca_file: Option<&std::path::Path>) {
        let (url, ca) = match self {
            Source::Http(s) => (&mut s.url, &mut s.ca_file),
            Source::Prometheus(s) => (&mut s.url, &mut s.ca_file),
            _ => return,
        };
        if crate::http::is_relative(url) {
            *url = crate::http::join_base(url, base);
            *ca = ca_file.map(std::path::Path::to_path_buf);
        }
    }

    /// Whether this is an edge source that does not know its log yet (see
    /// [`Self::resolve_edge_log`]).
    pub fn needs_edge_log(&self) -> bool {
        matches!(self, Source::Edge(s) if s.log.is_none())
    }

    /// Points an edge source without a log at the proxy under `proxy_dir` (its
    /// `logs/access.json`); other sources, and edge sources with a log, are left alone.
    pub fn resolve_edge_log(&mut self, proxy_dir: &std::path::Path) {
        if let Source::Edge(s) = self
            && s.log.is_none()
        {
            s.log = Some(proxy_dir.join("logs").join("access.json"));
        }
    }

    /// Resolves relative file paths (pid files, edge logs) against `base`, usually the
    /// manifest's folder.
    pub fn resolve_paths(&mut self, base: &std::path::Path) {
        if let Source::Edge(e) = self
            && let Some(log) = &e.log
            && log.is_relative()
        {
            e.log = Some(base.join(log));
        }
        if let Source::Process(p) = self
            && let Some(file) = &p.target.pid_file
            && file.is_relative()
        {
            p.target.pid_file = Some(base.join(file));
        }
    }
}

/// The serde (snake_case) name of a unit enum variant.
fn snake<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl JsonSource {
    /// The URL for listings: scheme, host, port and path (no query string, which may carry a
    /// token).
    pub fn url_for_display(&self) -> String {
        crate::http::display_url(&self.url)
    }
}

impl MetricSource for Source {
    async fn sample(&self) -> Sample {
        match self {
            Source::Http(s) => s.sample().await,
            Source::Prometheus(s) => s.sample().await,
            Source::Command(s) => s.sample().await,
            Source::Process(s) => s.sample().await,
            Source::Host(s) => s.sample().await,
            Source::Edge(s) => s.sample().await,
        }
    }
}

macro_rules! impl_metric_source {
    ($($t:ty),*) => {$(
        impl MetricSource for $t {
            fn sample(&self) -> impl Future<Output = Sample> + Send {
                <$t>::sample(self)
            }
        }
    )*};
}
impl_metric_source!(
    JsonSource,
    PrometheusSource,
    CommandSource,
    ProcessSource,
    HostSource,
    EdgeSource
);
