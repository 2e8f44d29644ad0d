//! A recorded fake of `systemctl` for tests of the systemd backend on a machine where systemd
//! is not PID 1 (and must not be booted): it reads the unit files cutover wrote, runs their
//! `ExecStart=` as a real process with the unit's environment, working directory, credentials
//! and state directory, answers `is-active` and `show` from that process, stops it with the
//! unit's kill signal and stop timeout, and appends every call to `calls.log`.
//!
//! Environment: `FAKE_SYSTEMCTL_DIR` (its state: pid files, logs, credentials, calls.log) and
//! `FAKE_SYSTEMCTL_UNITS` (the unit directory cutover writes to).

// A test helper program standing in for systemctl: it prints and exits like one.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::exit)]

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(std::env::var("FAKE_SYSTEMCTL_DIR").expect("FAKE_SYSTEMCTL_DIR"));
    let units = PathBuf::from(std::env::var("FAKE_SYSTEMCTL_UNITS").expect("FAKE_SYSTEMCTL_UNITS"));
    std::fs::create_dir_all(&dir).expect("state dir");
    if let Ok(mut log) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("calls.log"))
    {
        let _ = writeln!(log, "{}", args.join(" "));
    }
    let fake = Fake { dir, units };
    let code = match args.first().map(String::as_str) {
        Some("daemon-reload" | "enable" | "disable" | "reset-failed") => 0,
        Some("is-active") => {
            let unit = args.last().cloned().unwrap_or_default();
            if fake.alive(&unit).is_some() { 0 } else { 3 }
        }
        Some("start") => args[1..].iter().map(|u| fake.start(u)).max().unwrap_or(0),
        Some("stop") => args[1..].iter().map(|u| fake.stop(u)).max().unwrap_or(0),
        Some("show") => fake.show(&args[1]),
        other => {
            eprintln!("fake-systemctl: unsupported {other:?}");
            1
        }
    };
    std::process::exit(code);
}

struct Fake {
    dir: PathBuf,
    units: PathBuf,
}

/// systemd's quoting: words split on blanks, `"…"` with C escapes, `$$` and `%%` halved.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        let mut word = String::new();
        if first == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => match chars.next() {
                        Some('n') => word.push('\n'),
                        Some('t') => word.push('\t'),
                        Some(c) => word.push(c),
                        None => {}
                    },
                    c => word.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        out.push(word.replace("$$", "$").replace("%%", "%"));
    }
    out
}

fn unit_keys(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn span(value: &str) -> Duration {
    if let Some(ms) = value.strip_suffix("ms") {
        Duration::from_millis(ms.parse().unwrap_or(0))
    } else {
        Duration::from_secs(value.trim_end_matches('s').parse().unwrap_or(90))
    }
}

fn signal_number(name: &str) -> i32 {
    match name {
        "SIGINT" => libc::SIGINT,
        "SIGQUIT" => libc::SIGQUIT,
        "SIGHUP" => libc::SIGHUP,
        _ => libc::SIGTERM,
    }
}

/// Whether `pid` runs (a zombie does not).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_owned())
        })
        .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))
}

impl Fake {
    fn pid_file(&self, unit: &str) -> PathBuf {
        self.dir.join(format!("{unit}.pid"))
    }

    fn alive(&self, unit: &str) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.pid_file(unit))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        running(pid).then_some(pid)
    }

    fn start(&self, unit: &str) -> i32 {
        if unit.ends_with(".socket") || self.alive(unit).is_some() {
            return 0;
        }
        let Ok(text) = std::fs::read_to_string(self.units.join(unit)) else {
            eprintln!("Unit {unit} not found.");
            return 5;
        };
        let keys = unit_keys(&text);
        let mut argv = Vec::new();
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        env.insert("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into());
        let mut cwd = PathBuf::from("/");
        for (key, value) in &keys {
            match key.as_str() {
                "ExecStart" => argv = words(value),
                "Environment" => {
                    for w in words(value) {
                        if let Some((k, v)) = w.split_once('=') {
                            env.insert(k.into(), v.into());
                        }
                    }
                }
                "WorkingDirectory" => cwd = PathBuf::from(&words(value)[0]),
                "LoadCredential" => {
                    let creds = self.dir.join("credentials").join(unit);
                    let _ = std::fs::create_dir_all(&creds);
                    if let Some((name, path)) = value.split_once(':')
                        && std::fs::copy(path, creds.join(name)).is_err()
                    {
                        eprintln!("{unit}: cannot load credential {name} from {path}");
                        return 1;
                    }
                    env.insert("CREDENTIALS_DIRECTORY".into(), creds.display().to_string());
                }
                "StateDirectory" | "LogsDirectory" => {
                    let base = if key == "StateDirectory" {
                        "var-lib"
                    } else {
                        "var-log"
                    };
                    let d = self.dir.join(base).join(value);
                    let _ = std::fs::create_dir_all(&d);
                    let var = if key == "StateDirectory" {
                        "STATE_DIRECTORY"
                    } else {
                        "LOGS_DIRECTORY"
                    };
                    env.insert(var.into(), d.display().to_string());
                }
                _ => {}
            }
        }
        let Some((program, rest)) = argv.split_first() else {
            eprintln!("{unit}: no ExecStart");
            return 1;
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{unit}.log")));
        let Ok(log) = log else { return 1 };
        let Ok(err) = log.try_clone() else { return 1 };
        let spawned = Command::new(program)
            .args(rest)
            .env_clear()
            .envs(&env)
            .current_dir(&cwd)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0)
            .spawn();
        match spawned {
            Ok(child) => {
                let _ = std::fs::write(self.pid_file(unit), child.id().to_string());
                let _ = std::fs::remove_file(self.dir.join(format!("{unit}.stopped")));
                0
            }
            Err(e) => {
                eprintln!("{unit}: cannot run {program}: {e}");
                1
            }
        }
    }

    fn stop(&self, unit: &str) -> i32 {
        let Some(pid) = self.alive(unit) else {
            let _ = std::fs::remove_file(self.pid_file(unit));
            return 0;
        };
        let keys = unit_keys(&std::fs::read_to_string(self.units.join(unit)).unwrap_or_default());
        let get = |k: &str| {
            keys.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        let signal = signal_number(&get("KillSignal").unwrap_or_default());
        let timeout = span(&get("TimeoutStopSec").unwrap_or_else(|| "90s".into()));
        // SAFETY: kill(2) on the unit's process group.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(-pid, signal);
        }
        let deadline = Instant::now() + timeout;
        let mut result = "success";
        while running(pid) {
            if Instant::now() >= deadline {
                #[allow(unsafe_code)]
                // SAFETY: as above.
                unsafe {
                    libc::kill(-pid, libc::SIGKILL);
                }
                result = "timeout";
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_file(self.pid_file(unit));
        let _ = std::fs::write(self.dir.join(format!("{unit}.stopped")), result);
        0
    }

    fn show(&self, unit: &str) -> i32 {
        let pid = self.alive(unit);
        let died = pid.is_none() && self.pid_file(unit).exists();
        let (active, sub) = match (pid, died) {
            (Some(_), _) => ("active", "running"),
            (None, true) => ("failed", "failed"),
            (None, false) => ("inactive", "dead"),
        };
        let result = if died {
            "exit-code".to_owned()
        } else {
            std::fs::read_to_string(self.dir.join(format!("{unit}.stopped")))
                .unwrap_or_else(|_| "success".into())
        };
        println!("ActiveState={active}");
        println!("SubState={sub}");
        println!("Result={result}");
        println!("MainPID={}", pid.unwrap_or(0));
        println!("NRestarts=0");
        0
    }
}
