//! Notifiers: who hears about transitions. A line writer (the binary points it at stdout), a
//! JSON webhook (with retries and a Slack-compatible `text` body), a command, and
//! Alertmanager's v2 API ([`AlertmanagerNotifier`]).

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use http::HeaderValue;
use serde::{Deserialize, Serialize, Serializer};

use crate::engine::Transition;
use crate::error::AlertError;
use crate::http as client;
use crate::secret::{RawSecret, SecretText};

pub mod alertmanager;

pub use alertmanager::{AlertmanagerNotifier, AmAlert, DEFAULT_RESEND_MARGIN};

/// Something that hears about transitions.
pub trait Notifier {
    /// A short name for logs and errors (`webhook https://hooks.slack.com`).
    fn describe(&self) -> String;
    /// Delivers one transition.
    fn notify(
        &self,
        transition: &Transition,
    ) -> impl Future<Output = Result<(), AlertError>> + Send;
}

/// One human-readable line for a transition:
/// `2025-01-01T00:00:00Z FIRING latency-p95 severity=critical value=5200 p95 is 5200 ms`.
pub fn render_line(t: &Transition) -> String {
    let mut line = format!("{} {} {}", t.at, t.kind.as_str().to_uppercase(), t.rule);
    if let Some(s) = t.severity {
        line.push_str(&format!(" severity={s}"));
    }
    if let Some(p) = t.previous_severity {
        line.push_str(&format!(" previous={p}"));
    }
    if let Some(v) = &t.value {
        line.push_str(&format!(" value={v}"));
    }
    if let Some(d) = t.description.as_ref().or(t.reason.as_ref()) {
        line.push(' ');
        line.push_str(d);
    }
    line
}

/// Writes [`render_line`] lines to a writer (a file, a buffer, or stdout in a binary).
#[derive(Debug)]
pub struct LineNotifier<W> {
    out: Mutex<W>,
}

impl<W: Write + Send> LineNotifier<W> {
    /// Lines go to `out`.
    pub fn new(out: W) -> Self {
        LineNotifier {
            out: Mutex::new(out),
        }
    }

    /// Gives the writer back.
    pub fn into_inner(self) -> W {
        match self.out.into_inner() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

impl<W: Write + Send> Notifier for LineNotifier<W> {
    fn describe(&self) -> String {
        "line".to_owned()
    }

    async fn notify(&self, transition: &Transition) -> Result<(), AlertError> {
        let line = render_line(transition);
        let mut out = match self.out.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|e| AlertError::NotifyFailed {
                notifier: "line".into(),
                attempts: 1,
                message: e.to_string(),
            })
    }
}

/// A URL that may carry a secret (Slack webhooks do): only scheme, host and port are ever
/// shown.
///
/// Written as the URL itself, or as a secret-refs reference with an optional literal prefix,
/// `webhook = { secret = "env:SLACK_WEBHOOK_URL" }` or `{ secret = "file:/run/hook-path",
/// prefix = "https://hooks.slack.com/services/" }`, resolved when sending. `${VAR}` inside the
/// URL is still filled from the environment when sending; that form is deprecated.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(UrlText);

#[derive(Clone, PartialEq, Eq)]
enum UrlText {
    /// The URL as written; `${VAR}` in it is filled from the environment (deprecated).
    Plain(String),
    /// `{ secret = "env:VAR", prefix = "https://…" }`.
    Secret(SecretText),
}

/// A notifier URL as written: the URL, or a secret reference with a prefix.
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "a URL, or { secret = \"env:NAME\", prefix = \"https://…\" } (a secret reference and the text before its value)"
)]
enum RawUrl {
    Plain(String),
    Secret(RawSecret),
}

impl RawUrl {
    fn parse(self, key: &str) -> Result<SecretUrl, String> {
        Ok(SecretUrl(match self {
            RawUrl::Plain(url) => UrlText::Plain(url),
            RawUrl::Secret(s) => UrlText::Secret(s.parse(key)?),
        }))
    }
}

impl<'de> Deserialize<'de> for SecretUrl {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        RawUrl::deserialize(deserializer)?
            .parse("url")
            .map_err(serde::de::Error::custom)
    }
}

impl SecretUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        SecretUrl(UrlText::Plain(url.into()))
    }

    /// A URL that is `prefix` followed by the value of the secret reference.
    pub fn secret(secret: secret_refs::SecretRef, prefix: impl Into<String>) -> Self {
        SecretUrl(UrlText::Secret(SecretText::new(secret, prefix)))
    }

    /// The URL when it is written out whole (no reference, no `${VAR}`), to check at load.
    fn written(&self) -> Option<&str> {
        match &self.0 {
            UrlText::Plain(url) if !url.contains("${") => Some(url),
            UrlText::Plain(_) | UrlText::Secret(_) => None,
        }
    }

    async fn resolve(&self) -> Result<String, String> {
        match &self.0 {
            UrlText::Plain(url) => crate::secret::expand_env(url, "a webhook URL"),
            UrlText::Secret(s) => s.resolve().await,
        }
    }

    fn shown(&self) -> String {
        match &self.0 {
            UrlText::Plain(url) if url.starts_with("${") => "(from the environment)".to_owned(),
            UrlText::Plain(url) => client::redacted_target(url),
            UrlText::Secret(s) if s.prefix().contains("://") => client::redacted_target(s.prefix()),
            UrlText::Secret(s) => format!("(from {})", s.reference()),
        }
    }
}

/// A notifier's URL at load: the reference parsed, a URL written out whole checked, and a
/// warning when it uses the deprecated `${VAR}` form.
fn notifier_url(key: &str, raw: RawUrl) -> Result<SecretUrl, String> {
    let url = raw.parse(key)?;
    if let Some(written) = url.written() {
        client::check_url(written)?;
    }
    if let UrlText::Plain(text) = &url.0 {
        crate::secret::warn_if_template(key, text, |var| {
            format!(
                "`{key} = {{ secret = \"env:{var}\", prefix = \"…\" }}` (the URL, or its part before the secret, as the prefix)"
            )
        });
    }
    Ok(url)
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretUrl({})", self.shown())
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.shown())
    }
}

/// The body a webhook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// The transition as JSON, plus a `text` line.
    #[default]
    Json,
    /// `{"text": "…"}`, which Slack (and Mattermost, Rocket.Chat) incoming webhooks accept.
    Slack,
}

/// POSTs each transition to a URL, retrying on connection failures, 429 and 5xx answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookNotifier {
    /// Where to POST.
    pub url: SecretUrl,
    /// The body's shape.
    pub format: WebhookFormat,
    /// The timeout of each attempt.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub retries: u32,
    /// The pause before the first retry; it doubles for each further one.
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
}

impl WebhookNotifier {
    /// A JSON webhook with a 5 s timeout, 3 retries and a 500 ms backoff.
    pub fn new(url: impl Into<String>) -> Self {
        WebhookNotifier {
            url: SecretUrl::new(url),
            format: WebhookFormat::Json,
            timeout: Duration::from_secs(5),
            retries: 3,
            backoff: Duration::from_millis(500),
        }
    }

    fn body(&self, t: &Transition) -> Result<Vec<u8>, serde_json::Error> {
        match self.format {
            WebhookFormat::Slack => {
                serde_json::to_vec(&serde_json::json!({ "text": render_line(t) }))
            }
            WebhookFormat::Json => {
                let mut value = serde_json::to_value(t)?;
                if let Some(map) = value.as_object_mut() {
                    map.insert("text".into(), render_line(t).into());
                }
                serde_json::to_vec(&value)
            }
        }
    }
}

impl Notifier for WebhookNotifier {
    fn describe(&self) -> String {
        format!("webhook {}", self.url.shown())
    }

    #[tracing::instrument(skip_all, fields(target = %self.url.shown(), rule = %transition.rule))]
    async fn notify(&self, transition: &Transition) -> Result<(), AlertError> {
        let give_up = |attempts: u32, message: String| AlertError::NotifyFailed {
            notifier: self.describe(),
            attempts,
            message,
        };
        let url = self.url.resolve().await.map_err(|m| give_up(0, m))?;
        let body = self
            .body(transition)
            .map_err(|e| give_up(0, e.to_string()))?;
        post_json(
            &self.describe(),
            &url,
            body,
            self.timeout,
            self.retries,
            self.backoff,
        )
        .await
    }
}

/// POSTs a JSON body, retrying connection failures, 429 and 5xx answers `retries` times with
/// a doubling `backoff`; `notifier` names it in the error.
pub(crate) async fn post_json(
    notifier: &str,
    url: &str,
    body: Vec<u8>,
    timeout: Duration,
    retries: u32,
    backoff: Duration,
) -> Result<(), AlertError> {
    let mut pause = backoff;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let out = client::Outgoing {
            method: http::Method::POST,
            url,
            headers: vec![(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body: Some(body.clone()),
            timeout,
            ca_file: None,
        };
        let (retryable, message) = match client::send(out).await {
            Ok(r) if (200..300).contains(&r.status) => return Ok(()),
            Ok(r) => {
                let text = String::from_utf8_lossy(&r.body);
                let text = text.trim();
                let detail = if text.is_empty() || text.len() > 300 {
                    String::new()
                } else {
                    format!(": {text}")
                };
                (
                    r.status == 429 || r.status >= 500,
                    format!("HTTP {}{detail}", r.status),
                )
            }
            Err(f) => (true, f.message),
        };
        if !retryable || attempt > retries {
            return Err(AlertError::NotifyFailed {
                notifier: notifier.to_owned(),
                attempts: attempt,
                message,
            });
        }
        tracing::warn!(%notifier, attempt, %message, "notification failed; retrying");
        tokio::time::sleep(pause).await;
        pause = pause.saturating_mul(2);
    }
}

/// Runs a command for each transition: the transition as JSON on stdin and `CUTOVER_ALERT_*`
/// variables (`RULE`, `KIND`, `SEVERITY`, `VALUE`, `DESCRIPTION`) in its environment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandNotifier {
    /// The program and its arguments (no shell).
    pub argv: Vec<String>,
    /// How long it may run before it and its process group are killed.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Notifier for CommandNotifier {
    fn describe(&self) -> String {
        format!("command {}", self.argv.first().map_or("", String::as_str))
    }

    #[tracing::instrument(skip_all, fields(program = %self.describe(), rule = %transition.rule))]
    async fn notify(&self, transition: &Transition) -> Result<(), AlertError> {
        let program = self.argv.first().cloned().unwrap_or_default();
        let fail = |message: String| AlertError::Command {
            command: program.clone(),
            message,
        };
        let Some((prog, args)) = self.argv.split_first() else {
            return Err(fail("the command is empty".into()));
        };
        let json = serde_json::to_vec(transition).map_err(|e| fail(e.to_string()))?;
        let mut command = tokio::process::Command::new(prog);
        command
            .args(args)
            .env("CUTOVER_ALERT_RULE", &transition.rule)
            .env("CUTOVER_ALERT_KIND", transition.kind.as_str())
            .env(
                "CUTOVER_ALERT_SEVERITY",
                transition.severity.map_or("", |s| s.as_str()),
            )
            .env(
                "CUTOVER_ALERT_VALUE",
                transition
                    .value
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            )
            .env(
                "CUTOVER_ALERT_DESCRIPTION",
                transition.description.as_deref().unwrap_or(""),
            );
        let done =
            host_util::process::run_async(&mut command, self.timeout, Some(&json), 64 * 1024)
                .await
                .map_err(|e| fail(format!("cannot start: {e}")))?;
        match done.status {
            _ if done.timed_out => Err(fail(format!(
                "did not finish within {}",
                humantime::format_duration(self.timeout)
            ))),
            Some(status) if status.success() => Ok(()),
            Some(status) => {
                let last = host_util::process::last_line(&done.stderr);
                Err(fail(format!(
                    "exited with {status}{}{last}",
                    if last.is_empty() { "" } else { ": " }
                )))
            }
            None => Err(fail("could not be waited for".to_owned())),
        }
    }
}

/// A notifier as configured in `[[alert]]`'s `notify = [...]` or built by a binary from flags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawNotifier", into = "NotifierSummary")]
pub enum NotifierConfig {
    /// A webhook.
    Webhook(WebhookNotifier),
    /// A command.
    Command(CommandNotifier),
    /// An Alertmanager.
    Alertmanager(AlertmanagerNotifier),
}

impl NotifierConfig {
    /// The notifier itself.
    pub fn build(&self) -> AnyNotifier {
        match self {
            NotifierConfig::Webhook(w) => AnyNotifier::Webhook(w.clone()),
            NotifierConfig::Command(c) => AnyNotifier::Command(c.clone()),
            NotifierConfig::Alertmanager(a) => AnyNotifier::Alertmanager(a.clone()),
        }
    }
}

/// What a notifier looks like when configuration is listed: secrets stay hidden.
#[derive(Serialize)]
struct NotifierSummary {
    kind: &'static str,
    target: String,
}

impl From<NotifierConfig> for NotifierSummary {
    fn from(n: NotifierConfig) -> Self {
        match n {
            NotifierConfig::Webhook(w) => NotifierSummary {
                kind: "webhook",
                target: w.url.shown(),
            },
            NotifierConfig::Command(c) => NotifierSummary {
                kind: "command",
                target: c.argv.first().cloned().unwrap_or_default(),
            },
            NotifierConfig::Alertmanager(a) => NotifierSummary {
                kind: "alertmanager",
                target: a.url.shown(),
            },
        }
    }
}

/// `{ webhook = URL, format = "json"|"slack", timeout, retries }`, `{ command = [argv],
/// timeout }` or `{ alertmanager = URL, timeout, retries, resend_margin, generator_url }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotifier {
    webhook: Option<RawUrl>,
    command: Option<Vec<String>>,
    alertmanager: Option<RawUrl>,
    format: Option<WebhookFormat>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    retries: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    resend_margin: Option<Duration>,
    generator_url: Option<String>,
}

impl TryFrom<RawNotifier> for NotifierConfig {
    type Error = String;

    fn try_from(raw: RawNotifier) -> Result<Self, Self::Error> {
        if raw.alertmanager.is_none()
            && (raw.resend_margin.is_some() || raw.generator_url.is_some())
        {
            return Err("`resend_margin` and `generator_url` apply to alertmanager only".into());
        }
        match (raw.webhook, raw.command, raw.alertmanager) {
            (None, None, Some(url)) => {
                let url = notifier_url("alertmanager", url)?;
                if raw.format.is_some() {
                    return Err("`format` applies to webhooks only".into());
                }
                let mut a = AlertmanagerNotifier::new(String::new());
                a.url = url;
                a.timeout = raw.timeout.unwrap_or(a.timeout);
                a.retries = raw.retries.unwrap_or(a.retries);
                a.resend_margin = raw.resend_margin.unwrap_or(a.resend_margin);
                if a.resend_margin < Duration::from_secs(1) {
                    return Err("`resend_margin` is at least 1s (for example \"15m\")".into());
                }
                if let Some(g) = &raw.generator_url {
                    client::check_url(g)?;
                }
                a.generator_url = raw.generator_url;
                Ok(NotifierConfig::Alertmanager(a))
            }
            (Some(url), None, None) => {
                let url = notifier_url("webhook", url)?;
                let mut w = WebhookNotifier::new(String::new());
                w.url = url;
                w.format = raw.format.unwrap_or_default();
                w.timeout = raw.timeout.unwrap_or(w.timeout);
                w.retries = raw.retries.unwrap_or(w.retries);
                Ok(NotifierConfig::Webhook(w))
            }
            (None, Some(argv), None) => {
                if argv.first().is_none_or(String::is_empty) {
                    return Err("a command notifier needs an argv list".into());
                }
                if raw.format.is_some() || raw.retries.is_some() {
                    return Err("`format` and `retries` apply to webhooks only".into());
                }
                Ok(NotifierConfig::Command(CommandNotifier {
                    argv,
                    timeout: raw.timeout.unwrap_or(Duration::from_secs(10)),
                }))
            }
            _ => Err(
                "a notifier is one of { webhook = \"https://…\" }, { command = [\"…\"] } or { alertmanager = \"http://127.0.0.1:9093\" }".into(),
            ),
        }
    }
}

/// Any of the configurable notifiers, behind one type.
#[derive(Debug, Clone)]
pub enum AnyNotifier {
    /// A webhook.
    Webhook(WebhookNotifier),
    /// A command.
    Command(CommandNotifier),
    /// An Alertmanager.
    Alertmanager(AlertmanagerNotifier),
}

impl Notifier for AnyNotifier {
    fn describe(&self) -> String {
        match self {
            AnyNotifier::Webhook(w) => w.describe(),
            AnyNotifier::Command(c) => c.describe(),
            AnyNotifier::Alertmanager(a) => a.describe(),
        }
    }

    async fn notify(&self, transition: &Transition) -> Result<(), AlertError> {
        match self {
            AnyNotifier::Webhook(w) => w.notify(transition).await,
            AnyNotifier::Command(c) => c.notify(transition).await,
            AnyNotifier::Alertmanager(a) => a.notify(transition).await,
        }
    }
}
