//! `cargo xtask deploy | rollback | status | down`: the bundled demo service deployed locally
//! through every phase by the built `cutover-deploy` binary (blue-green behind a private
//! nginx), under `target/cutover-demo/`.
//!
//! The first deploy writes `target/cutover-demo/cutover.toml` from `xtask/demo/cutover.toml`
//! with free loopback ports; later runs keep it, so the demo keeps its address.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

fn demo_dir(root: &Path) -> PathBuf {
    root.join("target").join("cutover-demo")
}

fn manifest_path(root: &Path) -> PathBuf {
    demo_dir(root).join("cutover.toml")
}

fn ensure_manifest(root: &Path) -> Result<PathBuf, String> {
    let path = manifest_path(root);
    if path.exists() {
        return Ok(path);
    }
    let template = root.join("xtask").join("demo").join("cutover.toml");
    let text = std::fs::read_to_string(&template)
        .map_err(|e| format!("cannot read {}: {e}", template.display()))?;
    // Four distinct ports; the listeners are dropped before nginx and the hub bind them.
    let mut ports = Vec::new();
    let holders: Vec<TcpListener> = (0..4)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot find free ports: {e}"))?;
    for h in &holders {
        ports.push(h.local_addr().map_err(|e| e.to_string())?.port());
    }
    drop(holders);
    let demo = demo_dir(root);
    let text = text
        .replace("@SOURCE@", &root.display().to_string())
        .replace("@ROOT@", &demo.join("root").display().to_string())
        .replace("@PORT_BLUE@", &ports[0].to_string())
        .replace("@PORT_GREEN@", &ports[1].to_string())
        .replace("@PORT_HTTP@", &ports[2].to_string())
        .replace("@PORT_CONTROL@", &ports[3].to_string());
    std::fs::create_dir_all(&demo).map_err(|e| format!("cannot create {}: {e}", demo.display()))?;
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!("xtask: wrote {} (ports {ports:?})", path.display());
    Ok(path)
}

fn build(root: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(&cargo)
        // The same build as `cargo xtask test`'s, so one reuses the other's artifacts (a
        // `-p` build resolves features differently and rebuilds every dependency).
        .args(["build", "--workspace", "--bins", "--locked"])
        .current_dir(root)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building cutover-deploy and the demo hub failed ({status})"
        ));
    }
    Ok(root.join("target").join("debug").join("cutover-deploy"))
}

fn cutover_deploy(root: &Path, args: &[&str]) -> Result<i32, String> {
    let bin = build(root)?;
    let manifest = ensure_manifest(root)?;
    eprintln!(
        "xtask: $ cutover-deploy --manifest {} {}",
        manifest.display(),
        args.join(" ")
    );
    let status = Command::new(&bin)
        .arg("--manifest")
        .arg(&manifest)
        .args(args)
        .current_dir(root)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    Ok(status.code().unwrap_or(1))
}

fn listen_http(root: &Path) -> Option<String> {
    let text = std::fs::read_to_string(manifest_path(root)).ok()?;
    let line = text.lines().find(|l| l.starts_with("listen_http"))?;
    let start = line.find('"')? + 1;
    let end = line[start..].find('"')? + start;
    Some(line[start..end].to_owned())
}

/// `--demo-env KEY=VALUE` (or `--demo-env=KEY=VALUE`) becomes cutover-deploy's
/// `--set-env KEY=VALUE`: extra environment for the release being deployed, so that anyone can
/// watch a bad release (`CUTOVER_DEMO_HEALTH_STATE=starting`) be rolled back by itself.
fn demo_env_to_set_env(extra: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut args = extra.iter();
    while let Some(arg) = args.next() {
        if arg == "--demo-env" {
            let pair = args
                .next()
                .ok_or("--demo-env needs KEY=VALUE (CUTOVER_DEMO_HEALTH_STATE=starting)")?;
            out.extend(["--set-env".to_owned(), pair.clone()]);
        } else if let Some(pair) = arg.strip_prefix("--demo-env=") {
            out.extend(["--set-env".to_owned(), pair.to_owned()]);
        } else {
            out.push(arg.clone());
        }
    }
    Ok(out)
}

/// `cargo xtask deploy|rollback|status|down`.
pub(crate) fn run(root: &Path, task: &str, extra: &[String]) -> Result<(), String> {
    let extra = if task == "deploy" {
        demo_env_to_set_env(extra)?
    } else {
        extra.to_vec()
    };
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let code = match task {
        "deploy" => cutover_deploy(root, &[&["deploy"][..], &extra].concat())?,
        "rollback" => cutover_deploy(root, &[&["rollback"][..], &extra].concat())?,
        "status" => cutover_deploy(root, &[&["status"][..], &extra].concat())?,
        "down" => cutover_deploy(root, &[&["down"][..], &extra].concat())?,
        other => return Err(format!("unknown deploy task `{other}`")),
    };
    if task == "deploy"
        && code == 0
        && let Some(addr) = listen_http(root)
    {
        println!("xtask: the demo hub serves at http://{addr}/api/health (through nginx)");
    }
    match code {
        0 => Ok(()),
        code => Err(format!("cutover-deploy {task} exited with {code}")),
    }
}
