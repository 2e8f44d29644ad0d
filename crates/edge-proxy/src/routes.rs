//! Switching without a reload. A reload makes nginx's old workers close their idle keep-alive
//! connections, and a client that sent a request on one at that moment gets a read error (wrk
//! counted 2-3 per deploy over 4 HTTPS connections). So every upstream a switch may need is an
//! `upstream` group in the include (the live release alone, or with the standby as its backup
//! server), every location proxies to `$cutover_route`, and which group that is, is decided per
//! request by which marker file exists under `conf/route/` (an `if (-f …)` per group in
//! `route.conf`, a `stat` each). A switch between groups nginx already knows creates one marker
//! and removes the other: no reload, no connection closed. Only a group nginx does not know yet
//! (a new address) is added with a reload.

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
        let slug = |a: &SocketAddr| {
            a.to_string()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect::<String>()
        };
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

/// The groups of the include, the default (live when no marker exists) first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    /// Every group nginx knows; the first is the default.
    pub groups: Vec<UpstreamGroup>,
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
        Self { groups }
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
        w
    }

    /// Reads the groups back out of an upstream include.
    pub fn parse(text: &str) -> Self {
        let mut groups = Vec::new();
        let mut current: Option<(Option<SocketAddr>, Option<SocketAddr>)> = None;
        for line in text.lines().map(str::trim) {
            if line.starts_with("upstream ") {
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
        Self { groups }
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
