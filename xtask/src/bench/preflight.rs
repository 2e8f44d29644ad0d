//! Every local pre-flight check on a generated repository.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Every local pre-flight check (no command, no build) on a generated repository.
pub(super) fn preflight(
    _root: &Path,
    release: &Path,
    plan: &Plan,
    details: &mut String,
    raw: &mut Raw,
) -> Result<Vec<Row>, String> {
    let dir = TempDir::new("preflight")?;
    let repo = dir.path.as_path();
    let w = |rel: &str, text: &[u8]| -> Result<(), String> {
        let p = repo.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))
    };
    w("dist/cli.js", &vec![b'x'; 200 * 1024])?;
    w("mcp-servers.json", b"{}\n")?;
    w(".gitignore", b".env.production\nbackups/\n")?;
    w(".env.production", b"NODE_ENV=production\n")?;
    chmod(&repo.join(".env.production"), "600")?;
    chmod(&repo.join("dist/cli.js"), "755")?;
    let tls = if output("sh", &["-c", "command -v openssl"]).is_ok() {
        run_quiet(
            Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-days",
                    "365",
                    "-subj",
                    "/CN=localhost",
                    "-keyout",
                    "key.pem",
                    "-out",
                    "cert.pem",
                ])
                .current_dir(repo),
        )?;
        "\n[[preflight.check]]\nkind = \"tls-cert\"\npath = \"cert.pem\"\nname = \"localhost\"\n"
    } else {
        ""
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("cannot find a free port: {e}"))?
        .port();
    let manifest = format!(
        r#"[service]
name = "bench"
secrets = {{ API_KEY = "env:CUTOVER_BENCH_API_KEY" }}

[[preflight.check]]
kind = "git-clean"

[[preflight.check]]
kind = "artifact"
path = "dist/cli.js"
executable = true
min_bytes = "100KB"
max_bytes = "10MB"

[[preflight.check]]
kind = "files-exist"
any_of = ["mcp-servers.json", "config/mcp-servers.json"]

[[preflight.check]]
kind = "secrets"

[[preflight.check]]
kind = "disk-free"
warn_below = "1%"
fail_below = "0%"

[[preflight.check]]
kind = "memory"
warn_below = "0%"

[[preflight.check]]
kind = "runtime-version"
command = ["git", "--version"]

[[preflight.check]]
kind = "port-free"
addr = "127.0.0.1:{port}"

[[preflight.check]]
kind = "dir-writable"
path = "backups"

[[preflight.check]]
kind = "file-mode"
path = ".env.production"

[[preflight.check]]
kind = "not-tracked"
paths = [".env.production", "backups/"]

[[preflight.check]]
kind = "cpu-count"
warn_below = 1

[[preflight.check]]
kind = "open-files-limit"
warn_below = 64
fail_below = 16

[[preflight.check]]
kind = "inodes-free"
{tls}"#
    );
    w("cutover.toml", manifest.as_bytes())?;
    for args in [
        &["init", "-q"][..],
        &["add", "-A"],
        &[
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@localhost",
            "commit",
            "-q",
            "-m",
            "bench",
        ],
    ] {
        run_quiet(Command::new("git").args(args).current_dir(repo))?;
    }
    let cmd = || {
        let mut c = Command::new(release.join("cutover-preflight"));
        c.args(["--json"])
            .current_dir(repo)
            .env("CUTOVER_BENCH_API_KEY", "not-a-real-secret");
        c
    };
    // One run to show what was checked (and that everything passed).
    let first = cmd()
        .output()
        .map_err(|e| format!("cannot run cutover-preflight: {e}"))?;
    let report = String::from_utf8_lossy(&first.stdout);
    let doc = serde_json::from_str::<serde_json::Value>(&report)
        .map_err(|e| format!("cutover-preflight printed no JSON: {e}"))?;
    let status = doc
        .pointer("/status")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("?")
        .to_owned();
    let checks: Vec<String> = doc
        .pointer("/checks")
        .and_then(serde_json::Value::as_array)
        .map(|a| {
            a.iter()
                .map(|c| {
                    format!(
                        "{} ({})",
                        c.pointer("/id")
                            .and_then(serde_json::Value::as_str)
                            .unwrap_or("?"),
                        c.pointer("/outcome")
                            .or_else(|| c.pointer("/status"))
                            .and_then(serde_json::Value::as_str)
                            .unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if status != "ok" {
        return Err(format!(
            "the generated repository does not pass pre-flight ({status}): {}",
            checks.join(", ")
        ));
    }
    let mut times = Vec::new();
    for _ in 0..plan.process_runs {
        times.push(time(&mut cmd())?);
    }
    let ms: Vec<f64> = times.iter().map(|s| s * 1000.0).collect();
    raw.insert("preflight".to_owned(), serde_json::json!({"wall_ms": ms}));
    let m = median(&ms);
    let _ = writeln!(
        details,
        "### Pre-flight\n\n`cutover-preflight --json` in a generated git repository whose \
         manifest lists every local check kind ({} checks: {}), with no `command` or `build` \
         check; {} runs, whole process, wall time (ms): {}.\n",
        checks.len(),
        checks.join(", "),
        plan.process_runs,
        join(&ms, 1)
    );
    Ok(vec![Row {
        goal: format!(
            "all local pre-flight checks ({}) ≤ 100 ms wall",
            checks.len()
        ),
        measured: format!(
            "{m:.1} ms{}",
            fail_words(m <= 100.0, || format!(
                "the local pre-flight checks took {m:.0} ms, above 100 ms"
            ))
        ),
        runs: plan.process_runs.to_string(),
        spread: format!("{} ms", spread(&ms, 1)),
        verdict: pass(m <= 100.0),
    }])
}
