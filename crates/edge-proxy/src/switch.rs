//! Moving traffic between upstreams: the [`TrafficSwitch`] trait and its nginx implementation.
//!
//! A switch with [`NginxSwitch`]:
//! 1. asks the new upstream directly for its health path (2xx, and the expected release id when
//!    one is given); if it is not healthy nothing is touched and traffic stays;
//! 2. keeps the live include as `upstream.conf.prev` and writes the new one atomically;
//! 3. runs `nginx -t`, then `nginx -s reload` (graceful: old workers finish in-flight requests);
//! 4. polls the health path through nginx's control listener until the `X-Cutover-Upstream`
//!    header names the new upstream (and the release id matches) and every worker from before
//!    the reload has stopped accepting, within the switch timeout.
//!
//! If step 3 or 4 fails, the previous include is put back (tested and reloaded when nginx had
//! already been reloaded) and the error says why and what state is live.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::EdgeError;
use crate::fsutil::{read, write_atomic};
use crate::http;
use crate::layout::Layout;
use crate::nginx::Nginx;
use crate::render::UPSTREAM_HEADER;
use crate::routes::{
    Routes, UpstreamGroup, WeightedSplit, clear_markers_except, set_marker, set_split_marker,
};

/// Where traffic should go, and how to recognise it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchTarget {
    /// The upstream address.
    pub upstream: SocketAddr,
    /// The release id the upstream's health answer must name, when known.
    pub expect_release: Option<String>,
    /// A `backup` server nginx falls back to while the upstream fails (the warm standby).
    pub backup: Option<SocketAddr>,
}

/// What a confirmed switch did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwitchReport {
    /// The upstream before.
    pub from: Option<SocketAddr>,
    /// The upstream now serving.
    pub to: SocketAddr,
    /// The release id seen through the proxy, if the health answer names one.
    pub release: Option<String>,
    /// Wall time from the first check to confirmation.
    #[serde(with = "millis")]
    pub elapsed: Duration,
    /// Probes through the proxy until confirmation.
    pub confirm_probes: u32,
}

mod millis {
    pub(super) fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u128(d.as_millis())
    }
}

/// Moves traffic between upstreams; implemented for nginx, and by fakes in tests.
pub trait TrafficSwitch {
    /// The upstream serving now, if one is configured.
    fn current(&self) -> impl Future<Output = Result<Option<SocketAddr>, EdgeError>> + Send;

    /// Moves traffic to `target` and returns once it is confirmed serving; on failure traffic
    /// stays on (or is put back to) the previous upstream.
    fn switch(
        &self,
        target: &SwitchTarget,
    ) -> impl Future<Output = Result<SwitchReport, EdgeError>> + Send;
}

/// The nginx implementation of [`TrafficSwitch`].
#[derive(Debug, Clone)]
pub struct NginxSwitch {
    nginx: Nginx,
    layout: Layout,
    control: SocketAddr,
    health_path: String,
    release_field: String,
    timeout: Duration,
}

/// The limit on one probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

impl NginxSwitch {
    /// A switch for the instance under `layout`, confirming through `control` + `health_path`.
    pub fn new(
        nginx: Nginx,
        layout: Layout,
        control: SocketAddr,
        health_path: String,
        release_field: String,
        timeout: Duration,
    ) -> Self {
        Self {
            nginx,
            layout,
            control,
            health_path,
            release_field,
            timeout,
        }
    }

    /// The switch for an instance started earlier, from its state file.
    ///
    /// # Errors
    /// As [`crate::InstanceState::load`].
    pub fn from_state(nginx: Nginx, layout: Layout) -> Result<Self, EdgeError> {
        let state = crate::InstanceState::load(&layout)?;
        Ok(Self::new(
            nginx,
            layout,
            state.control,
            state.health_path,
            state.release_field,
            Duration::from_millis(state.switch_timeout_ms),
        ))
    }

    /// Which upstream nginx itself serves now, asked through its control listener (not the
    /// include file, which a killed switch can leave ahead of what nginx loaded): one request
    /// to the health path, answered with the upstream in [`UPSTREAM_HEADER`].
    ///
    /// # Errors
    /// [`EdgeError::UpstreamUnhealthy`] naming the control address when nginx does not answer.
    pub async fn served_by(&self) -> Result<Option<SocketAddr>, EdgeError> {
        let answer = http::get(self.control, &self.health_path, PROBE_TIMEOUT)
            .await
            .map_err(|reason| EdgeError::UpstreamUnhealthy {
                upstream: self.control,
                reason: format!("the control listener does not answer: {reason}"),
            })?;
        Ok(answer
            .header(UPSTREAM_HEADER)
            .and_then(|v| v.rsplit([',', ' ']).next())
            .and_then(|a| a.parse::<SocketAddr>().ok()))
    }

    /// Checks `target` directly (not through nginx): 2xx on the health path and the release.
    async fn precheck(&self, target: &SwitchTarget) -> Result<(), EdgeError> {
        let refuse = |reason: String| EdgeError::UpstreamUnhealthy {
            upstream: target.upstream,
            reason,
        };
        let answer = http::get(target.upstream, &self.health_path, PROBE_TIMEOUT)
            .await
            .map_err(refuse)?;
        if !(200..300).contains(&answer.status) {
            return Err(refuse(format!(
                "{} answered {}",
                self.health_path, answer.status
            )));
        }
        if let Some(expected) = &target.expect_release {
            let seen = answer.json_text(&self.release_field);
            if seen.as_deref() != Some(expected.as_str()) {
                return Err(refuse(format!(
                    "{} names release {seen:?} at {}, expected {expected:?}",
                    self.health_path, self.release_field
                )));
            }
        }
        Ok(())
    }

    /// Polls through nginx until the new upstream answers; the number of probes on success.
    ///
    /// A new worker answering is not enough: until the old workers get the master's QUIT they
    /// still accept connections with the old upstream. So confirmation also waits until every
    /// worker that existed before the reload has exited or is "shutting down" (it has closed its
    /// listening sockets by then and only finishes in-flight requests).
    async fn confirm(
        &self,
        target: &SwitchTarget,
        old_workers: &[(i32, u64)],
    ) -> Result<(u32, Option<String>), String> {
        let deadline = Instant::now() + self.timeout;
        let mut probes = 0;
        loop {
            probes += 1;
            let last = match http::get(self.control, &self.health_path, PROBE_TIMEOUT).await {
                Ok(answer) => {
                    // With a retry nginx lists every upstream tried; the last one answered.
                    let served_by = answer
                        .header(UPSTREAM_HEADER)
                        .and_then(|v| v.rsplit([',', ' ']).next())
                        .and_then(|a| a.parse::<SocketAddr>().ok());
                    let release = answer.json_text(&self.release_field);
                    let release_ok = target
                        .expect_release
                        .as_ref()
                        .is_none_or(|e| release.as_deref() == Some(e.as_str()));
                    let accepting: Vec<i32> = old_workers
                        .iter()
                        .filter(|(pid, start)| still_accepting(*pid, *start))
                        .map(|(pid, _)| *pid)
                        .collect();
                    if served_by == Some(target.upstream)
                        && (200..300).contains(&answer.status)
                        && release_ok
                        && accepting.is_empty()
                    {
                        return Ok((probes, release));
                    }
                    format!(
                        "last probe: status {}, served by {served_by:?}, release {release:?}; \
                         old workers still accepting: {accepting:?}",
                        answer.status
                    )
                }
                Err(e) => format!("last probe: {e}"),
            };
            if Instant::now() >= deadline {
                return Err(format!("not confirmed within {:?}; {last}", self.timeout));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The groups of the include, when there is one.
    fn routes(&self) -> Result<Option<Routes>, EdgeError> {
        let path = self.layout.upstream_file();
        if !path.exists() {
            return Ok(None);
        }
        Ok(Some(Routes::parse(&read(&path)?)))
    }

    /// Puts `previous` back as the live include (and its route file); reloads when nginx had
    /// been reloaded.
    async fn restore(&self, previous: Option<&str>, route: Option<&str>, reloaded: bool) -> String {
        let path = self.layout.upstream_file();
        let Some(previous) = previous else {
            let _ = std::fs::remove_file(&path);
            return "there was no previous upstream; the include was removed".to_owned();
        };
        if let Err(e) = write_atomic(&path, previous.as_bytes(), 0o644) {
            return format!("putting the previous upstream back failed too: {e}");
        }
        let routes = Routes::parse(previous);
        let route_text = route
            .map(str::to_owned)
            .unwrap_or_else(|| routes.render_route(&self.layout.route_dir()));
        if let Err(e) = write_atomic(&self.layout.route_file(), route_text.as_bytes(), 0o644) {
            return format!("putting the previous route back failed too: {e}");
        }
        let prev_addr = routes.default_group().map_or_else(
            || "the previous upstream".to_owned(),
            |g| g.upstream.to_string(),
        );
        if !reloaded {
            return format!("{prev_addr} still serving (nginx was not reloaded)");
        }
        if let Err(e) = self.nginx.test(&self.layout).await {
            return format!("the previous include does not test either: {e}");
        }
        match self.nginx.reload(&self.layout).await {
            Ok(()) => format!("{prev_addr} put back and nginx reloaded"),
            Err(e) => format!("{prev_addr} written back but reload failed: {e}"),
        }
    }
}

impl NginxSwitch {
    /// The weighted split routed now, when a canary split is.
    ///
    /// # Errors
    /// [`EdgeError::Io`] when the include cannot be read.
    pub fn current_split(&self) -> Result<Option<WeightedSplit>, EdgeError> {
        Ok(self
            .routes()?
            .and_then(|r| r.routed_split(&self.layout.route_dir())))
    }

    /// Splits traffic by weight: `split.canary_percent` of it to the canary, the rest to the
    /// baseline. The canary is checked directly first (2xx on the health path, and the
    /// release when given); nothing changes when it is not healthy. A split nginx knows (every
    /// step of a canary whose nginx was started with its steps) is one marker file: no
    /// reload, no connection closed. An unknown one is added to the include, tested and
    /// loaded with one graceful reload, then marked. Confirmed by a 2xx through the control
    /// listener from one of the two slots. `also` are the other splits the caller will need
    /// (a canary's other steps) and `sticky` what they hash: when either is new to nginx, all
    /// go into the include with that one reload, so the later steps need none.
    ///
    /// # Errors
    /// [`EdgeError::UpstreamUnhealthy`] for an unhealthy canary, [`EdgeError::SwitchFailed`]
    /// when nginx refuses the include or does not confirm (traffic then stays as it was).
    #[tracing::instrument(skip_all, fields(canary = %split.canary, percent = split.canary_percent))]
    pub async fn split(
        &self,
        split: &WeightedSplit,
        also: &[WeightedSplit],
        sticky: &crate::routes::StickyKey,
        expect_release: Option<&str>,
    ) -> Result<(), EdgeError> {
        let target = SwitchTarget {
            upstream: split.canary,
            expect_release: expect_release.map(str::to_owned),
            backup: None,
        };
        self.precheck(&target).await?;
        let failed = |reason: String, rollback: String| EdgeError::SwitchFailed {
            upstream: split.canary,
            reason,
            rollback,
        };
        let routes = self.routes()?.unwrap_or_default();
        // After a reload, the workers from before it still accept connections (and route them
        // without the split) until the master tells them to stop: confirmation waits for that.
        let mut old_workers = Vec::new();
        if !routes.has_split(split)
            || routes.sticky != *sticky
            || !self.layout.route_file().exists()
        {
            let mut splits = vec![*split];
            splits.extend_from_slice(also);
            let next = routes.clone().with_splits(&splits, sticky.clone());
            let path = self.layout.upstream_file();
            let previous = read(&path).ok();
            let previous_route = read(&self.layout.route_file()).ok();
            write_atomic(&path, next.render_upstreams().as_bytes(), 0o644)?;
            write_atomic(
                &self.layout.route_file(),
                next.render_route(&self.layout.route_dir()).as_bytes(),
                0o644,
            )?;
            old_workers = workers_of(read_pid(&self.layout.pid_file()));
            let reloaded = match self.nginx.test(&self.layout).await {
                Ok(_) => self.nginx.reload(&self.layout).await,
                Err(e) => Err(e),
            };
            if let Err(e) = reloaded {
                let rollback = self
                    .restore(previous.as_deref(), previous_route.as_deref(), false)
                    .await;
                return Err(failed(e.to_string(), rollback));
            }
        }
        set_split_marker(&self.layout, split)?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let last = match http::get(self.control, &self.health_path, PROBE_TIMEOUT).await {
                Ok(answer) => {
                    let served_by = answer
                        .header(UPSTREAM_HEADER)
                        .and_then(|v| v.rsplit([',', ' ']).next())
                        .and_then(|a| a.parse::<SocketAddr>().ok());
                    let accepting: Vec<i32> = old_workers
                        .iter()
                        .filter(|(pid, start)| still_accepting(*pid, *start))
                        .map(|(pid, _)| *pid)
                        .collect();
                    if (200..300).contains(&answer.status)
                        && served_by.is_some_and(|a| a == split.canary || a == split.baseline)
                        && accepting.is_empty()
                    {
                        return Ok(());
                    }
                    format!(
                        "status {}, served by {served_by:?}; old workers still accepting: {accepting:?}",
                        answer.status
                    )
                }
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(failed(
                    format!(
                        "the split was not confirmed within {:?}: {last}",
                        self.timeout
                    ),
                    "the split's marker stays; switch to one upstream to end it".to_owned(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The report of a confirmed switch.
fn report(
    from: Option<SocketAddr>,
    target: &SwitchTarget,
    started: Instant,
    (confirm_probes, release): (u32, Option<String>),
    how: &str,
) -> SwitchReport {
    tracing::info!(?from, to = %target.upstream, confirm_probes, how, "switch confirmed");
    SwitchReport {
        from,
        to: target.upstream,
        release,
        elapsed: started.elapsed(),
        confirm_probes,
    }
}

fn read_pid(path: &std::path::Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The children of `master` (its workers), as pid plus start time.
fn workers_of(master: Option<i32>) -> Vec<(i32, u64)> {
    let Some(master) = master else {
        return Vec::new();
    };
    host_util::ProcStat::all()
        .into_iter()
        .filter(|s| i32::try_from(s.ppid).is_ok_and(|ppid| ppid == master))
        .filter_map(|s| Some((i32::try_from(s.pid).ok()?, s.start_time)))
        .collect()
}

/// Whether an old worker (same pid and start time) still runs without shutting down.
fn still_accepting(pid: i32, start: u64) -> bool {
    if crate::nginx::process_start_time(pid) != Some(start) {
        return false;
    }
    let title = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    !String::from_utf8_lossy(&title).contains("shutting down")
}

impl TrafficSwitch for NginxSwitch {
    async fn current(&self) -> Result<Option<SocketAddr>, EdgeError> {
        Ok(self
            .routes()?
            .and_then(|r| r.routed(&self.layout.route_dir()))
            .map(|g| g.upstream))
    }

    #[tracing::instrument(skip_all, fields(upstream = %target.upstream, prefix = %self.layout.prefix().display()))]
    async fn switch(&self, target: &SwitchTarget) -> Result<SwitchReport, EdgeError> {
        let started = Instant::now();
        self.precheck(target).await?;
        let group = UpstreamGroup::new(target.upstream, target.backup);
        let routes = self.routes()?;
        let routed = routes
            .as_ref()
            .and_then(|r| r.routed(&self.layout.route_dir()));
        let from = routed.map(|g| g.upstream);
        let failed = |reason: String, rollback: String| EdgeError::SwitchFailed {
            upstream: target.upstream,
            reason,
            rollback,
        };
        // A group nginx knows: one marker file, no reload, no connection closed.
        if let (Some(routes), Some(routed)) = (&routes, routed)
            && routes.groups.contains(&group)
            && self.layout.route_file().exists()
        {
            set_marker(&self.layout, &group)?;
            return match self.confirm(target, &[]).await {
                Ok(confirmed) => Ok(report(from, target, started, confirmed, "no reload")),
                Err(reason) => {
                    let rollback = match set_marker(&self.layout, &routed) {
                        Ok(()) => format!("{} routed again", routed.upstream),
                        Err(e) => format!("routing back to {} failed too: {e}", routed.upstream),
                    };
                    Err(failed(reason, rollback))
                }
            };
        }
        // A new group: added to the include (the routed one kept), then one reload.
        let known: Vec<UpstreamGroup> = routed
            .into_iter()
            .chain(routes.iter().flat_map(|r| r.groups.iter().copied()))
            .collect();
        // The canary splits nginx knows stay known.
        let next = match &routes {
            Some(r) => Routes::with_default(group, &known).with_splits(&r.splits, r.sticky.clone()),
            None => Routes::with_default(group, &known),
        };
        let path = self.layout.upstream_file();
        let previous = if path.exists() {
            Some(read(&path)?)
        } else {
            None
        };
        let previous_route = read(&self.layout.route_file()).ok();
        if let Some(previous) = &previous {
            write_atomic(
                &self.layout.previous_upstream_file(),
                previous.as_bytes(),
                0o644,
            )?;
        }
        if let Some(previous) = &previous_route {
            write_atomic(
                &self.layout.previous_route_file(),
                previous.as_bytes(),
                0o644,
            )?;
        }
        write_atomic(&path, next.render_upstreams().as_bytes(), 0o644)?;
        write_atomic(
            &self.layout.route_file(),
            next.render_route(&self.layout.route_dir()).as_bytes(),
            0o644,
        )?;
        // The new group is the default; until the reload, the routed group stays marked.
        if let Err(e) = self.nginx.test(&self.layout).await {
            let rollback = self
                .restore(previous.as_deref(), previous_route.as_deref(), false)
                .await;
            return Err(failed(e.to_string(), rollback));
        }
        let old_workers = workers_of(read_pid(&self.layout.pid_file()));
        clear_markers_except(&self.layout, None)?;
        if let Err(e) = self.nginx.reload(&self.layout).await {
            let rollback = self
                .restore(previous.as_deref(), previous_route.as_deref(), false)
                .await;
            return Err(failed(e.to_string(), rollback));
        }
        match self.confirm(target, &old_workers).await {
            Ok(confirmed) => Ok(report(from, target, started, confirmed, "reloaded")),
            Err(reason) => {
                let rollback = self
                    .restore(previous.as_deref(), previous_route.as_deref(), true)
                    .await;
                Err(failed(reason, rollback))
            }
        }
    }
}

impl<T: TrafficSwitch + Sync> TrafficSwitch for &T {
    fn current(&self) -> impl Future<Output = Result<Option<SocketAddr>, EdgeError>> + Send {
        (**self).current()
    }
    fn switch(
        &self,
        target: &SwitchTarget,
    ) -> impl Future<Output = Result<SwitchReport, EdgeError>> + Send {
        (**self).switch(target)
    }
}
