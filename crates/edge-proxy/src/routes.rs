//! Switching without a reload. A reload makes nginx's old workers close their idle keep-alive
//! connections, and a client that sent a request on one at that moment gets a read error (wrk
//! counted 2-3 per deploy over 4 HTTPS connections). So every upstream a switch may need is an
//! `upstream` group in the include (the live release alone, or with the standby as its backup
//! server), every location proxies to `$cutover_route`, and which group that is, is decided per
//! request by which marker file exists under `conf/route/` (an `if (-f …)` per group in
//! `route.conf`, a `stat` each). A switch between groups nginx already knows creates one marker
//! and removes the other: no reload, no connection closed. Only a group nginx does not know yet
//! (a new address) is added with a reload.
//!
//! A canary splits traffic by weight the same way: each weighted split ([`WeightedSplit`]:
//! baseline, canary, the canary's percent) is a `split_clients` block in the include that
//! picks one of the two slots' groups per request, and has its own marker. Every split a
//! canary's steps need is rendered when nginx starts, so a weight step is one marker too: no
//! reload. `split_clients` hashes a sticky key ([`StickyKey`]): the configured cookie or
//! header when the request has it (so a session stays on one release), else `$request_id`
//! (an independent draw per request). The canary's share is the *first* part of the hash
//! space, so raising its weight only moves baseline clients to the canary, never back.

use std::net::SocketAddr;
use std::path::Path;

use crate::EdgeError;
use crate::layout::Layout;

/// The nginx variable every location proxies to.
pub const ROUTE_VARIABLE: &str = "$cutover_route";
/// How many groups the include keeps (the live one always among them).
const MAX_GROUPS: usize = 6;

/// One upstream group: the live server and, optionally, the warm standby as its backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamGroup {
    /// The server traffic goes to.
    pub upstream: SocketAddr,
    /// The backup server (the warm standby), used only while `upstream` fails.
    pub backup: Option<SocketAddr>,
}

impl UpstreamGroup {
    /// A group for `upstream`, with `backup` unless it is the same address.
    pub fn new(upstream: SocketAddr, backup: Option<SocketAddr>) -> Self {
        Self {
            upstream,
            backup: backup.filter(|b| *b != upstream),
        }
    }

    /// The nginx name of the group, from its addresses.
    pub fn name(&self) -> String {
        match &self.backup {
            Some(b) => format!("cutover_{}_b_{}", slug(&self.upstream), slug(b)),
            None => format!("cutover_{}", slug(&self.upstream)),
        }
    }

    fn render(&self, w: &mut String) {
        // With a standby behind it, a failed live upstream is tried again after 5 s rather than
        // 30 s, so traffic returns to the live release soon after its supervisor restarted it.
        let fail_timeout = if self.backup.is_some() { "5s" } else { "30s" };
        w.push_str(&format!("upstream {} {{\n", self.name()));
        w.push_str(&format!(
            "    server {} max_fails=3 fail_timeout={fail_timeout};\n",
            self.upstream
        ));
        if let Some(b) = self.backup {
            w.push_str(&format!("    server {b} backup;\n"));
        }
        w.push_str("    keepalive 32;\n    keepalive_requests 1000;\n");
        w.push_str(
            "    # Shorter than the service's own idle timeout, so nginx closes idle connections first.\n",
        );
        w.push_str("    keepalive_timeout 30s;\n}\n");
    }
}

/// What a weighted split hashes to keep a client on one release.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StickyKey {
    /// No stickiness: each request is an independent draw (`$request_id`).
    #[default]
    None,
    /// A cookie's value (`$cookie_<name>`), `$request_id` when the request has none.
    Cookie(String),
    /// A request header's value (`$http_<name>`), `$request_id` when the request has none.
    Header(String),
}

impl StickyKey {
    /// The nginx variable holding the raw key, when there is one.
    fn variable(&self) -> Option<String> {
        let norm = |n: &str| {
            n.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '_'
                    }
                })
                .collect::<String>()
        };
        match self {
            Self::None => None,
            // nginx keeps a cookie's name as written in `$cookie_NAME`; only `-` cannot be
            // spelled in a variable name, and cookie names with one are refused at load.
            Self::Cookie(name) => Some(format!("$cookie_{name}")),
            Self::Header(name) => Some(format!("$http_{}", norm(name))),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::None => "none".to_owned(),
            Self::Cookie(name) => format!("cookie {name}"),
            Self::Header(name) => format!("header {name}"),
        }
    }

    fn parse(text: &str) -> Self {
        match text.split_once(' ') {
            Some(("cookie", name)) => Self::Cookie(name.to_owned()),
            Some(("header", name)) => Self::Header(name.to_owned()),
            _ => Self::None,
        }
    }
}

/// The nginx variable a split hashes.
const STICKY_VARIABLE: &str = "$cutover_sticky_key";

/// A weighted split of traffic between two slots' groups (no backup servers: each release's
/// own failures must reach the judge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightedSplit {
    /// The live release's address.
    pub baseline: SocketAddr,
    /// The canary's address.
    pub canary: SocketAddr,
    /// The canary's share in percent, 1 to 99.
    pub canary_percent: u8,
}

impl WeightedSplit {
    /// The name of its variable and of its marker.
    ///
    /// Short on purpose: nginx keeps variable names in a hash whose buckets are 64 bytes by
    /// default, so the two addresses are named by a hash (FNV-1a) rather than spelled out.
    pub fn name(&self) -> String {
        let mut hash: u32 = 0x811c_9dc5;
        for byte in format!("{}|{}", self.baseline, self.canary).bytes() {
            hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
        }
        format!("cutover_split_{hash:08x}_{}", self.canary_percent)
    }

    fn render(&self, w: &mut String) {
        let canary = UpstreamGroup::new(self.canary, None).name();
        let baseline = UpstreamGroup::new(self.baseline, None).name();
        w.push_str(&format!(
            "# split {} {} {}\nsplit_clients \"{STICKY_VARIABLE}\" ${} {{\n    {}% {canary};\n    * {baseline};\n}}\n",
            self.baseline,
            self.canary,
            self.canary_percent,
            self.name(),
            self.canary_percent,
        ));
    }
}

fn slug(a: &SocketAddr) -> String {
    a.to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The groups of the include, the default (live when no marker exists) first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Routes {
    /// Every group nginx knows; the first is the default.
    pub groups: Vec<UpstreamGroup>,
    /// Every weighted split nginx knows (a canary's steps), each with its own marker.
    pub splits: Vec<WeightedSplit>,
    /// What the splits hash.
    pub sticky: StickyKey,
}

impl Routes {
    /// Routes whose default is `live`, keeping `known` (up to the limit) so that switches to
    /// them need no reload.
    pub fn with_default(live: UpstreamGroup, known: &[UpstreamGroup]) -> Self {
        let mut groups = vec![live];
        for g in known {
            if !groups.contains(g) && groups.len() < MAX_GROUPS {
                groups.push(*g);
            }
        }
        Self {
            groups,
            ..Self::default()
        }
    }

    /// These routes with `splits` too (and the single groups of their two addresses, which
    /// they route to), hashing `sticky`.
    pub fn with_splits(mut self, splits: &[WeightedSplit], sticky: StickyKey) -> Self {
        for split in splits {
            for addr in [split.baseline, split.canary] {
                let group = UpstreamGroup::new(addr, None);
                if !self.groups.contains(&group) {
                    self.groups.push(group);
                }
            }
            if !self.splits.contains(split) {
                self.splits.push(*split);
            }
        }
        self.sticky = sticky;
        self
    }

    /// Whether nginx knows `split` (a step to it needs no reload).
    pub fn has_split(&self, split: &WeightedSplit) -> bool {
        self.splits.contains(split)
            && [split.baseline, split.canary]
                .iter()
                .all(|a| self.groups.contains(&UpstreamGroup::new(*a, None)))
    }

    /// The default group.
    pub fn default_group(&self) -> Option<UpstreamGroup> {
        self.groups.first().copied()
    }

    /// The upstream include: one `upstream` block per group.
    pub fn render_upstreams(&self) -> String {
        let mut w = String::from(
            "# Managed by cutover: every upstream group a switch may route to. The routed one is\n\
             # chosen per request by route.conf (a marker file under conf/route/); the first is\n\
             # the default. The previous include is kept in upstream.conf.prev.\n",
        );
        for g in &self.groups {
            g.render(&mut w);
        }
        if !self.splits.is_empty() {
            w.push_str(&format!(
                "# Weighted splits (canary steps): the sticky key, then one split_clients each.\n# sticky {}\n",
                self.sticky.describe()
            ));
            match self.sticky.variable() {
                Some(variable) => w.push_str(&format!(
                    "map {variable} {STICKY_VARIABLE} {{\n    \"\" $request_id;\n    default {variable};\n}}\n"
                )),
                None => w.push_str(&format!(
                    "map $request_id {STICKY_VARIABLE} {{\n    default $request_id;\n}}\n"
                )),
            }
            for split in &self.splits {
                split.render(&mut w);
            }
        }
        w
    }

    /// `route.conf`, included in every server block: `$cutover_route` is the default group,
    /// or the group whose marker exists under `route_dir`.
    pub fn render_route(&self, route_dir: &Path) -> String {
        let mut w =
            String::from("# Managed by cutover: which upstream group serves, per request.\n");
        if let Some(d) = self.default_group() {
            w.push_str(&format!("set {ROUTE_VARIABLE} {};\n", d.name()));
        }
        for g in self.groups.iter().skip(1).chain(self.groups.first()) {
            w.push_str(&format!(
                "if (-f {}) {{ set {ROUTE_VARIABLE} {}; }}\n",
                route_dir.join(g.name()).display(),
                g.name()
            ));
        }
        // A split's marker comes last: while one exists it decides (a switch to a group
        // removes it).
        for split in &self.splits {
            w.push_str(&format!(
                "if (-f {}) {{ set {ROUTE_VARIABLE} ${}; }}\n",
                route_dir.join(split.name()).display(),
                split.name()
            ));
        }
        w
    }

    /// Reads the groups back out of an upstream include.
    pub fn parse(text: &str) -> Self {
        let mut groups = Vec::new();
        let mut splits = Vec::new();
        let mut sticky = StickyKey::None;
        let mut current: Option<(Option<SocketAddr>, Option<SocketAddr>)> = None;
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("# sticky ") {
                sticky = StickyKey::parse(rest);
            } else if let Some(rest) = line.strip_prefix("# split ") {
                let parts: Vec<&str> = rest.split(' ').collect();
                if let [baseline, canary, percent] = parts[..]
                    && let (Ok(baseline), Ok(canary), Ok(canary_percent)) =
                        (baseline.parse(), canary.parse(), percent.parse())
                {
                    splits.push(WeightedSplit {
                        baseline,
                        canary,
                        canary_percent,
                    });
                }
            } else if line.starts_with("upstream ") {
                current = Some((None, None));
            } else if line == "}" {
                if let Some((Some(up), backup)) = current.take() {
                    groups.push(UpstreamGroup::new(up, backup));
                }
            } else if let Some(rest) = line.strip_prefix("server ")
                && let Some(c) = current.as_mut()
            {
                let addr = rest.split([' ', ';']).next().and_then(|a| a.parse().ok());
                if rest.contains(" backup") {
                    c.1 = addr;
                } else {
                    c.0 = addr;
                }
            }
        }
        Self {
            groups,
            splits,
            sticky,
        }
    }

    /// The weighted split routed now, when a split's marker exists.
    pub fn routed_split(&self, route_dir: &Path) -> Option<WeightedSplit> {
        self.splits
            .iter()
            .rfind(|s| route_dir.join(s.name()).exists())
            .copied()
    }

    /// The group routed now: the one whose marker exists (the last in `route.conf`'s order
    /// when several do), else the default.
    pub fn routed(&self, route_dir: &Path) -> Option<UpstreamGroup> {
        self.groups
            .iter()
            .skip(1)
            .chain(self.groups.first())
            .rfind(|g| route_dir.join(g.name()).exists())
            .copied()
            .or_else(|| self.default_group())
    }
}

/// Routes traffic to the weighted `split` by its marker, created first, every other marker
/// removed after (the split's marker is last in `route.conf`, so it decides at once).
///
/// # Errors
/// [`EdgeError::Io`] when a marker cannot be written or removed.
pub fn set_split_marker(layout: &Layout, split: &WeightedSplit) -> Result<(), EdgeError> {
    let dir = layout.route_dir();
    std::fs::create_dir_all(&dir).map_err(|e| EdgeError::io("create directory", &dir, e))?;
    let marker = dir.join(split.name());
    std::fs::write(&marker, b"").map_err(|e| EdgeError::io("write", &marker, e))?;
    clear_markers_except(layout, Some(&split.name()))
}

/// Routes traffic to `group` by its marker: the marker is created first, the others removed
/// after, so that at every instant one group serves.
///
/// # Errors
/// [`EdgeError::Io`] when a marker cannot be written or removed.
pub fn set_marker(layout: &Layout, group: &UpstreamGroup) -> Result<(), EdgeError> {
    let dir = layout.route_dir();
    std::fs::create_dir_all(&dir).map_err(|e| EdgeError::io("create directory", &dir, e))?;
    let marker = dir.join(group.name());
    std::fs::write(&marker, b"").map_err(|e| EdgeError::io("write", &marker, e))?;
    clear_markers_except(layout, Some(&group.name()))
}

/// Removes every marker but `keep`.
///
/// # Errors
/// [`EdgeError::Io`] when the directory cannot be read or a marker removed.
pub fn clear_markers_except(layout: &Layout, keep: Option<&str>) -> Result<(), EdgeError> {
    let dir = layout.route_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        if keep.is_some_and(|k| entry.file_name().to_str() == Some(k)) {
            continue;
        }
        let path = entry.path();
        std::fs::remove_file(&path).map_err(|e| EdgeError::io("remove", &path, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_round_trip_render_split_clients_and_their_marker_decides() {
        let (a, b): (SocketAddr, SocketAddr) = (
            "127.0.0.1:7000".parse().unwrap(),
            "127.0.0.1:7001".parse().unwrap(),
        );
        let splits: Vec<WeightedSplit> = [5, 25]
            .map(|canary_percent| WeightedSplit {
                baseline: a,
                canary: b,
                canary_percent,
            })
            .to_vec();
        let routes = Routes::with_default(UpstreamGroup::new(a, None), &[])
            .with_splits(&splits, StickyKey::Cookie("session".into()));
        assert_eq!(
            routes.groups,
            [UpstreamGroup::new(a, None), UpstreamGroup::new(b, None)]
        );
        assert!(routes.has_split(&splits[1]));
        assert!(splits[1].name().len() < 32, "{}", splits[1].name());
        let reversed = WeightedSplit {
            baseline: b,
            canary: a,
            canary_percent: 25,
        };
        assert_ne!(reversed.name(), splits[1].name());
        let text = routes.render_upstreams();
        assert!(
            text.contains("map $cookie_session $cutover_sticky_key {\n    \"\" $request_id;"),
            "{text}"
        );
        assert!(
            text.contains(
                &format!("split_clients \"$cutover_sticky_key\" ${} {{\n    25% cutover_127_0_0_1_7001;\n    * cutover_127_0_0_1_7000;\n}}", splits[1].name())
            ),
            "{text}"
        );
        assert_eq!(Routes::parse(&text), routes);
        let header = Routes::with_default(UpstreamGroup::new(a, None), &[])
            .with_splits(&splits, StickyKey::Header("X-Session-Id".into()));
        assert!(
            header
                .render_upstreams()
                .contains("map $http_x_session_id ")
        );
        assert_eq!(Routes::parse(&header.render_upstreams()), header);

        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::new(tmp.path());
        let dir = layout.route_dir();
        set_split_marker(&layout, &splits[0]).unwrap();
        assert_eq!(routes.routed_split(&dir), Some(splits[0]));
        set_split_marker(&layout, &splits[1]).unwrap();
        assert_eq!(routes.routed_split(&dir), Some(splits[1]));
        // Back to one group in one marker: the split is gone.
        set_marker(&layout, &UpstreamGroup::new(a, None)).unwrap();
        assert_eq!(routes.routed_split(&dir), None);
        let route = routes.render_route(&dir);
        assert!(
            route.trim_end().ends_with(&format!(
                "if (-f {}) {{ set $cutover_route ${}; }}",
                dir.join(splits[1].name()).display(),
                splits[1].name()
            )),
            "{route}"
        );
    }

    #[test]
    fn groups_round_trip_and_the_marker_decides_the_route() {
        let (a, b): (SocketAddr, SocketAddr) = (
            "127.0.0.1:7000".parse().unwrap(),
            "127.0.0.1:7001".parse().unwrap(),
        );
        let ga = UpstreamGroup::new(a, None);
        let gb = UpstreamGroup::new(b, Some(a));
        assert_eq!(UpstreamGroup::new(a, Some(a)).backup, None);
        let routes = Routes::with_default(ga, &[gb, ga]);
        assert_eq!(routes.groups, [ga, gb]);
        let parsed = Routes::parse(&routes.render_upstreams());
        assert_eq!(parsed, routes);
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::new(tmp.path());
        let dir = layout.route_dir();
        assert_eq!(routes.routed(&dir), Some(ga));
        set_marker(&layout, &gb).unwrap();
        assert_eq!(routes.routed(&dir), Some(gb));
        set_marker(&layout, &ga).unwrap();
        assert_eq!(routes.routed(&dir), Some(ga));
        let route = routes.render_route(&dir);
        assert!(
            route.contains(&format!("set $cutover_route {};", ga.name())),
            "{route}"
        );
        assert!(
            route.contains(&format!(
                "if (-f {}) {{ set $cutover_route {}; }}",
                dir.join(gb.name()).display(),
                gb.name()
            )),
            "{route}"
        );
    }
}
