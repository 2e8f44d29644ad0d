//! Rendering a hardened systemd unit (and an optional `.socket` unit) from a [`ServiceSpec`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::spec::SecretDelivery;
use crate::{NetworkAccess, ProcError, Readiness, RestartPolicy, ServiceSpec};

/// Runtimes that generate code at run time and so cannot live with `MemoryDenyWriteExecute=`.
const JIT_RUNTIMES: &[&str] = &[
    "node", "nodejs", "bun", "deno", "java", "dotnet", "pypy", "pypy3", "luajit", "php",
];

/// Where the host's directories hidden by the unit's own sandbox are, so that no
/// `ReadWritePaths=` entry lands under one of them.
const HOME_PATHS: &[&str] = &["/home", "/root", "/run/user"];
const PRIVATE_TMP_PATHS: &[&str] = &["/tmp", "/var/tmp"];

/// Choices for a rendered unit that are not part of the service itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct UnitOptions {
    /// Directories the service may write (`ReadWritePaths=`), typically the layout's
    /// `shared/` and `logs/`; see [`UnitOptions::for_layout`].
    pub read_write_paths: Vec<PathBuf>,
    /// Where the credential files for `LoadCredential=` live (`DIR/NAME` per secret).
    pub credentials_dir: Option<PathBuf>,
    /// A program supporting the exec shim (`cutover-proc`), used to turn credentials into
    /// environment variables when the spec asks for environment delivery: systemd 252 cannot
    /// do that itself, and a plaintext `EnvironmentFile=` is what this replaces.
    pub exec_shim: Option<PathBuf>,
    /// `MemoryDenyWriteExecute=`; `None` decides from `argv[0]` (off for JIT runtimes such as
    /// node, bun, java).
    pub memory_deny_write_execute: Option<bool>,
    /// A `Description=`; default "NAME (managed by cutover)".
    pub description: Option<String>,
    /// Under `DynamicUser=yes` (no user named), the dynamic user's name (`User=`): units that
    /// name the same one share its uid, so the blue and green slots of one service own the
    /// same state. Default: a user per unit.
    pub dynamic_user_name: Option<String>,
    /// `StateDirectory=`: a directory under `/var/lib` that systemd creates and gives to the
    /// (dynamic) user; the service finds it in `$STATE_DIRECTORY`. Under `DynamicUser=yes` a
    /// root-owned `ReadWritePaths=` is not writable by the service at all.
    pub state_directory: Option<String>,
    /// `LogsDirectory=`: the same under `/var/log` (`$LOGS_DIRECTORY`).
    pub logs_directory: Option<String>,
}

impl UnitOptions {
    /// Options for the release layout under `root`: the service writes `root/shared` and
    /// `root/logs`; credentials live in `root/state/credentials/NAME`.
    pub fn for_layout(root: &Path, name: &str) -> Self {
        Self {
            read_write_paths: vec![root.join("shared"), root.join("logs")],
            credentials_dir: Some(root.join("state").join("credentials").join(name)),
            ..Self::default()
        }
    }
}

/// A rendered `.service` unit and, with a socket, its `.socket` unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderedUnits {
    /// `NAME.service`.
    pub service_name: String,
    /// The service unit's text.
    pub service: String,
    /// `NAME.socket` and its text, when the spec has a socket.
    pub socket: Option<(String, String)>,
}

fn render_err(spec: &ServiceSpec, reason: impl Into<String>) -> ProcError {
    ProcError::Render {
        name: spec.name.clone(),
        reason: reason.into(),
    }
}

/// Quotes one word for `ExecStart=`: C-style escapes inside double quotes, `%` doubled
/// (specifiers) and `$` doubled (variable expansion), so the argument arrives verbatim.
pub(crate) fn quote_exec_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:=@+,-".contains(c));
    let escaped = word.replace('%', "%%").replace('$', "$$");
    if plain {
        return escaped;
    }
    let mut out = String::from("\"");
    for c in escaped.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Quotes an `Environment=` assignment.
fn quote_assignment(key: &str, value: &str) -> String {
    let mut out = String::from("\"");
    for c in format!("{key}={value}").replace('%', "%%").chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A systemd time span: whole seconds as `30s`, else milliseconds.
fn span(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn under_any(path: &Path, roots: &'static [&'static str]) -> Option<&'static str> {
    roots.iter().copied().find(|r| path.starts_with(r))
}

/// Renders the hardened unit(s) for `spec`.
///
/// Hardened by default: `NoNewPrivileges`, `ProtectSystem=strict`, `ProtectHome`,
/// `PrivateTmp`, `PrivateDevices`, `PrivateUsers`, the `ProtectKernel*`/`ProtectControlGroups`/
/// `ProtectClock`/`ProtectHostname`/`ProtectProc` family, `RestrictAddressFamilies`,
/// `RestrictNamespaces`, `RestrictRealtime`, `RestrictSUIDSGID`, `LockPersonality`,
/// `MemoryDenyWriteExecute` (unless a JIT runtime), `SystemCallFilter=@system-service`,
/// an empty `CapabilityBoundingSet`, `UMask=0077`, `DynamicUser=yes` unless a user is named,
/// `IPAddressDeny=any` + `IPAddressAllow=localhost` unless the spec allows egress;
/// `MemoryMax=` (never the deprecated `MemoryLimit=`), start-limit keys in `[Unit]`,
/// `Type=notify` for notify readiness, `LoadCredential=` for secrets.
///
/// `ReadWritePaths=` must not point where the unit itself hides things: a path under
/// `/home`, `/root` or `/run/user` turns `ProtectHome=` to `read-only` (which
/// `ReadWritePaths=` can open up again), and a path under `/tmp` or `/var/tmp`, which
/// `PrivateTmp=yes` replaces with an empty directory, is refused.
///
/// # Errors
/// [`ProcError::Render`] for paths that are not absolute or are hidden, secrets without a
/// credentials directory, environment delivery without an exec shim.
pub fn render_units(spec: &ServiceSpec, options: &UnitOptions) -> Result<RenderedUnits, ProcError> {
    spec.validate()?;
    let program = &spec.argv[0];
    if program.starts_with(['@', '-', ':', '+', '!']) {
        return Err(render_err(
            spec,
            format!("argv[0] `{program}` starts with a character systemd treats as a prefix"),
        ));
    }
    let mut writable = options.read_write_paths.clone();
    writable.sort();
    writable.dedup();
    let mut protect_home = "yes";
    for path in writable.iter().chain(spec.working_directory.iter()) {
        if !path.is_absolute() {
            return Err(render_err(
                spec,
                format!("{} is not an absolute path", path.display()),
            ));
        }
        if let Some(root) = under_any(path, PRIVATE_TMP_PATHS) {
            return Err(render_err(
                spec,
                format!(
                    "{} is under {root}, which PrivateTmp=yes replaces with an empty directory; \
                     put the layout elsewhere",
                    path.display()
                ),
            ));
        }
        if under_any(path, HOME_PATHS).is_some() {
            protect_home = "read-only";
        }
    }
    let name = &spec.name;
    let service_name = format!("{name}.service");
    let socket_name = format!("{name}.socket");
    let mut u = String::new();
    let w = &mut u;
    // Writing to a String cannot fail; the results are ignored below for that reason.
    let _ = writeln!(
        w,
        "# Rendered by cutover (process-control) from the service spec; edit that, not this file."
    );
    let _ = writeln!(w, "[Unit]");
    let description = options
        .description
        .clone()
        .unwrap_or_else(|| format!("{name} (managed by cutover)"));
    let _ = writeln!(w, "Description={}", description.replace('%', "%%"));
    if spec.socket.is_some() {
        let _ = writeln!(w, "Requires={socket_name}");
        let _ = writeln!(w, "After={socket_name} network-online.target");
    } else {
        let _ = writeln!(w, "After=network-online.target");
    }
    let _ = writeln!(w, "Wants=network-online.target");
    let _ = writeln!(
        w,
        "StartLimitIntervalSec={}",
        span(spec.restart.start_limit_interval)
    );
    let _ = writeln!(w, "StartLimitBurst={}", spec.restart.start_limit_burst);
    let _ = writeln!(w);
    let _ = writeln!(w, "[Service]");
    match &spec.readiness {
        Readiness::Notify => {
            let _ = writeln!(w, "Type=notify");
            let _ = writeln!(w, "NotifyAccess=main");
        }
        Readiness::None => {
            let _ = writeln!(w, "Type=exec");
        }
        Readiness::Exec { .. } => {
            let _ = writeln!(
                w,
                "# Readiness is probed by the caller (systemd has no probe hook)."
            );
            let _ = writeln!(w, "Type=exec");
        }
    }
    let env_secrets: Vec<&String> = match spec.secret_delivery {
        SecretDelivery::Environment => spec.secrets.keys().collect(),
        SecretDelivery::Credentials => Vec::new(),
    };
    let mut exec: Vec<String> = Vec::new();
    if !env_secrets.is_empty() {
        let shim = options.exec_shim.as_ref().ok_or_else(|| {
            render_err(
                spec,
                "secrets delivered by environment need an exec shim (cutover-proc) to read \
                 them from $CREDENTIALS_DIRECTORY; set exec_shim or use credentials delivery",
            )
        })?;
        if !shim.is_absolute() {
            return Err(render_err(
                spec,
                format!("the exec shim {} is not an absolute path", shim.display()),
            ));
        }
        if let Some(root) = under_any(shim, PRIVATE_TMP_PATHS) {
            return Err(render_err(
                spec,
                format!(
                    "the exec shim {} is under {root}, which PrivateTmp=yes hides from the \
                     service; install it elsewhere (the deploy pipeline copies it to \
                     <root>/bin/)",
                    shim.display()
                ),
            ));
        }
        exec.push(shim.to_string_lossy().into_owned());
        exec.push(crate::supervised::supervisor::EXEC_SHIM_MODE.into());
        for secret in &env_secrets {
            exec.push("--credential-env".into());
            exec.push((*secret).clone());
        }
        exec.push("--".into());
    }
    exec.extend(spec.argv.iter().cloned());
    let exec_line: Vec<String> = exec.iter().map(|a| quote_exec_word(a)).collect();
    let _ = writeln!(w, "ExecStart={}", exec_line.join(" "));
    if let Some(dir) = &spec.working_directory {
        let _ = writeln!(
            w,
            "WorkingDirectory={}",
            quote_exec_word(&dir.to_string_lossy())
        );
    }
    for (k, v) in &spec.environment {
        let _ = writeln!(w, "Environment={}", quote_assignment(k, v));
    }
    if !spec.secrets.is_empty() {
        let dir = options.credentials_dir.as_ref().ok_or_else(|| {
            render_err(
                spec,
                "secrets need a credentials directory for LoadCredential=",
            )
        })?;
        if !dir.is_absolute() {
            return Err(render_err(
                spec,
                format!("credentials directory {} is not absolute", dir.display()),
            ));
        }
        for secret in spec.secrets.keys() {
            let _ = writeln!(w, "LoadCredential={secret}:{}", dir.join(secret).display());
        }
    }
    match &spec.user {
        Some(user) => {
            let _ = writeln!(w, "User={user}");
        }
        None => {
            let _ = writeln!(w, "DynamicUser=yes");
            if let Some(user) = &options.dynamic_user_name {
                let _ = writeln!(w, "User={user}");
            }
        }
    }
    for (key, dir) in [
        ("StateDirectory", &options.state_directory),
        ("LogsDirectory", &options.logs_directory),
    ] {
        if let Some(dir) = dir {
            let plain = !dir.is_empty()
                && !dir.starts_with('/')
                && dir.split('/').all(|c| {
                    !c.is_empty()
                        && c != "."
                        && c != ".."
                        && c.chars()
                            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
                });
            if !plain {
                return Err(render_err(
                    spec,
                    format!("{key}={dir} must be a relative path of plain names, such as `hub`"),
                ));
            }
            let _ = writeln!(w, "{key}={dir}");
        }
    }
    let restart = match spec.restart.policy {
        RestartPolicy::OnFailure => "on-failure",
        RestartPolicy::Always => "always",
        RestartPolicy::Never => "no",
    };
    let _ = writeln!(w, "Restart={restart}");
    let _ = writeln!(w, "RestartSec={}", span(spec.restart.backoff_initial));
    let _ = writeln!(w, "TimeoutStartSec={}", span(spec.start_timeout));
    let _ = writeln!(w, "TimeoutStopSec={}", span(spec.stop.timeout));
    let _ = writeln!(w, "KillMode=control-group");
    let _ = writeln!(w, "KillSignal={}", spec.stop.signal.as_str());
    let limits = &spec.limits;
    if let Some(n) = limits.nofile {
        let _ = writeln!(w, "LimitNOFILE={n}");
    }
    if let Some(bytes) = limits.memory_max {
        let _ = writeln!(w, "MemoryMax={bytes}");
    }
    if let Some(p) = limits.cpu_quota_percent {
        let _ = writeln!(w, "CPUQuota={p}%");
    }
    if let Some(n) = limits.tasks_max {
        let _ = writeln!(w, "TasksMax={n}");
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "# Sandbox");
    let runtime = Path::new(program)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let mdwe = options
        .memory_deny_write_execute
        .unwrap_or(!JIT_RUNTIMES.contains(&runtime));
    for line in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        &format!("ProtectHome={protect_home}"),
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "PrivateUsers=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "ProtectProc=invisible",
        "ProcSubset=pid",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
    ] {
        let _ = writeln!(w, "{line}");
    }
    if mdwe {
        let _ = writeln!(w, "MemoryDenyWriteExecute=yes");
    } else {
        let _ = writeln!(
            w,
            "# MemoryDenyWriteExecute is off: {runtime} compiles code at run time."
        );
    }
    for line in [
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged @resources",
        "SystemCallErrorNumber=EPERM",
        "SystemCallArchitectures=native",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "UMask=0077",
        "RemoveIPC=yes",
        "DevicePolicy=closed",
    ] {
        let _ = writeln!(w, "{line}");
    }
    match spec.network {
        NetworkAccess::LocalhostOnly => {
            let _ = writeln!(w, "IPAddressDeny=any");
            let _ = writeln!(w, "IPAddressAllow=localhost");
        }
        NetworkAccess::Egress => {
            let _ = writeln!(
                w,
                "# Network egress allowed by the manifest (the service calls external APIs)."
            );
        }
    }
    if !writable.is_empty() {
        let paths: Vec<String> = writable
            .iter()
            .map(|p| quote_exec_word(&p.to_string_lossy()))
            .collect();
        let _ = writeln!(w, "ReadWritePaths={}", paths.join(" "));
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "[Install]");
    let _ = writeln!(w, "WantedBy=multi-user.target");

    let socket = spec.socket.as_ref().map(|s| {
        let text = format!(
            "# Rendered by cutover (process-control) from the service spec; edit that, not this file.\n\
             [Unit]\n\
             Description={name} socket (managed by cutover)\n\
             \n\
             [Socket]\n\
             ListenStream={}\n\
             Service={service_name}\n\
             NoDelay=yes\n\
             \n\
             [Install]\n\
             WantedBy=sockets.target\n",
            s.address
        );
        (socket_name.clone(), text)
    });
    Ok(RenderedUnits {
        service_name,
        service: u,
        socket,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_words_survive_systemd_parsing_rules() {
        let table = [
            ("/usr/bin/hub", "/usr/bin/hub"),
            ("--port=7000", "--port=7000"),
            ("two words", "\"two words\""),
            ("100%", "\"100%%\""),
            ("$HOME", "\"$$HOME\""),
            ("say \"hi\"", "\"say \\\"hi\\\"\""),
            ("back\\slash", "\"back\\\\slash\""),
            ("", "\"\""),
            (";", "\";\""),
        ];
        for (word, expected) in table {
            assert_eq!(quote_exec_word(word), expected, "{word:?}");
        }
    }

    #[test]
    fn paths_under_home_relax_protect_home_and_tmp_is_refused() {
        let spec = ServiceSpec::new("hub", ["/usr/bin/hub"]);
        let mut options = UnitOptions {
            read_write_paths: vec!["/home/mcp/.local/state/mcp-hub".into()],
            ..UnitOptions::default()
        };
        let unit = render_units(&spec, &options).unwrap().service;
        assert!(unit.contains("ProtectHome=read-only\n"), "{unit}");
        assert!(!unit.contains("ProtectHome=yes"));
        options.read_write_paths = vec!["/srv/hub/shared".into()];
        let unit = render_units(&spec, &options).unwrap().service;
        assert!(unit.contains("ProtectHome=yes\n"));
        options.read_write_paths = vec!["/tmp/hub".into()];
        let err = render_units(&spec, &options).unwrap_err().to_string();
        assert!(err.contains("PrivateTmp"), "{err}");
        options.read_write_paths = vec!["relative".into()];
        assert!(render_units(&spec, &options).is_err());
    }

    #[test]
    fn a_shim_under_tmp_is_refused_and_dynamic_slots_share_a_user_and_state_directory() {
        let mut spec = ServiceSpec::new("hub-blue", ["/srv/hub/releases/r1/bin/hub"]);
        spec.secrets
            .insert("API_KEY".into(), "env:K".parse().unwrap());
        let mut options = UnitOptions {
            credentials_dir: Some("/srv/hub/state/credentials/hub-blue".into()),
            exec_shim: Some("/tmp/target/debug/cutover-deploy".into()),
            ..UnitOptions::default()
        };
        let err = render_units(&spec, &options).unwrap_err().to_string();
        assert!(err.contains("PrivateTmp=yes hides"), "{err}");
        options.exec_shim = Some("bin/shim".into());
        let err = render_units(&spec, &options).unwrap_err().to_string();
        assert!(err.contains("not an absolute path"), "{err}");
        options.exec_shim = Some("/srv/hub/bin/cutover-exec-shim".into());
        options.dynamic_user_name = Some("hub".into());
        options.state_directory = Some("hub".into());
        options.logs_directory = Some("hub".into());
        let unit = render_units(&spec, &options).unwrap().service;
        for line in [
            "DynamicUser=yes",
            "User=hub",
            "StateDirectory=hub",
            "LogsDirectory=hub",
        ] {
            assert!(unit.lines().any(|l| l == line), "{line}:\n{unit}");
        }
        assert!(!unit.contains("ReadWritePaths"), "{unit}");
        for bad in ["/var/lib/hub", "../hub", "", "a b"] {
            options.state_directory = Some(bad.into());
            let err = render_units(&spec, &options).unwrap_err().to_string();
            assert!(err.contains("StateDirectory"), "{bad}: {err}");
        }
        // A named user is used as it is; the dynamic name only applies to DynamicUser.
        options.state_directory = None;
        spec.user = Some("mcp".into());
        let unit = render_units(&spec, &options).unwrap().service;
        assert!(
            unit.contains("User=mcp\n") && !unit.contains("DynamicUser"),
            "{unit}"
        );
    }

    #[test]
    fn jit_runtimes_keep_write_execute_memory() {
        let unit = render_units(
            &ServiceSpec::new("hub", ["/usr/local/bin/bun", "cli.js"]),
            &UnitOptions::default(),
        )
        .unwrap()
        .service;
        assert!(!unit.contains("MemoryDenyWriteExecute=yes"));
        let unit = render_units(
            &ServiceSpec::new("hub", ["/usr/bin/hub"]),
            &UnitOptions::default(),
        )
        .unwrap()
        .service;
        assert!(unit.contains("MemoryDenyWriteExecute=yes"));
        assert!(!unit.contains("MemoryLimit="));
    }

    #[test]
    fn secrets_need_a_credentials_dir_and_env_delivery_a_shim() {
        let mut spec = ServiceSpec::new("hub", ["/usr/bin/hub"]);
        spec.secrets
            .insert("API_KEY".into(), "env:K".parse().unwrap());
        let err = render_units(&spec, &UnitOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("exec shim"), "{err}");
        let options = UnitOptions {
            exec_shim: Some("/usr/bin/cutover-proc".into()),
            ..UnitOptions::default()
        };
        let err = render_units(&spec, &options).unwrap_err().to_string();
        assert!(err.contains("credentials directory"), "{err}");
        let options = UnitOptions {
            credentials_dir: Some("/srv/hub/state/credentials/hub".into()),
            ..options
        };
        let unit = render_units(&spec, &options).unwrap().service;
        assert!(unit.contains("LoadCredential=API_KEY:/srv/hub/state/credentials/hub/API_KEY"));
        assert!(unit.contains(
            "ExecStart=/usr/bin/cutover-proc __exec-shim --credential-env API_KEY -- /usr/bin/hub"
        ));
        assert!(!unit.contains("EnvironmentFile"));
    }
}
