//! `--help` of every binary and each of its subcommands, against the committed snapshots in
//! `tests/it/snapshots/help/<binary>.txt`: the CLI contract (flags, subcommands, defaults, exit
//! codes in the text) changes only when a snapshot changes with it, in the same commit.
//!
//! The binaries are the directories of `bins/`; the subcommands are those each `--help` lists.
//! `UPDATE_SNAPSHOTS=1 cargo nextest run -p cutover-tests help` rewrites the snapshots.

use std::path::{Path, PathBuf};
use std::process::Command;

use cutover_tests::workspace_bin;

/// `BIN ARGS… --help` as a user sees it in a 100-column terminal without colours.
fn help(bin: &Path, args: &[&str]) -> String {
    let out = Command::new(bin)
        .args(args)
        .arg("--help")
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        .env_remove("RUST_LOG")
        .output()
        .unwrap_or_else(|e| panic!("{} runs: {e}", bin.display()));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{} {args:?} --help: {}",
        bin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

/// The subcommands a `--help` lists under `Commands:` (`help` itself excepted).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim_end() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // A command's name is indented by two spaces; wrapped descriptions are indented more.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// The binaries of the workspace: one per directory of `bins/`.
fn binaries() -> Vec<String> {
    let bins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bins");
    let mut names: Vec<String> = std::fs::read_dir(&bins)
        .unwrap_or_else(|e| panic!("{}: {e}", bins.display()))
        .map(|e| e.expect("bins/ can be listed"))
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every `--help` of `name`, each under the command line that printed it.
fn transcript(name: &str) -> String {
    let bin = workspace_bin(name);
    let top = help(&bin, &[]);
    let mut text = format!("$ {name} --help\n{top}");
    for sub in subcommands(&top) {
        text.push_str(&format!("\n$ {name} {sub} --help\n{}", help(&bin, &[&sub])));
    }
    text
}

fn snapshot_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/snapshots/help")
        .join(format!("{name}.txt"))
}

#[test]
fn every_binarys_help_matches_its_snapshot() {
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1");
    let names = binaries();
    assert!(names.len() >= 10, "bins/ lists every binary: {names:?}");
    let mut changed = Vec::new();
    for name in &names {
        let actual = transcript(name);
        let path = snapshot_path(name);
        if update {
            std::fs::create_dir_all(path.parent().expect("a snapshot has a directory"))
                .expect("the snapshot directory can be made");
            std::fs::write(&path, &actual).expect("the snapshot can be written");
            continue;
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_SNAPSHOTS=1 writes it)", path.display()));
        if expected != actual {
            let first = expected
                .lines()
                .zip(actual.lines())
                .position(|(e, a)| e != a)
                .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
            changed.push(format!(
                "{name}: differs from {} at line {}:\n  expected: {:?}\n  actual:   {:?}",
                path.display(),
                first + 1,
                expected.lines().nth(first).unwrap_or("<end>"),
                actual.lines().nth(first).unwrap_or("<end>"),
            ));
        }
    }
    // Every snapshot belongs to a binary that still exists.
    let dir = snapshot_path("x").with_file_name("");
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            let stem = file.trim_end_matches(".txt");
            assert!(
                names.iter().any(|n| n == stem),
                "{file}: a snapshot of no binary in bins/"
            );
        }
    }
    assert!(
        changed.is_empty(),
        "--help changed (if on purpose, UPDATE_SNAPSHOTS=1 and commit the snapshots):\n{}",
        changed.join("\n")
    );
}

#[test]
fn subcommands_are_read_from_the_commands_section() {
    let help = "Usage: x <COMMAND>\n\nCommands:\n  start   Start it\n          wrapped text\n  stop    Stop it\n  help    Print this message\n\nOptions:\n  -h, --help\n";
    assert_eq!(subcommands(help), ["start", "stop"]);
    assert!(subcommands("Usage: x [OPTIONS]\n\nOptions:\n  -h, --help\n").is_empty());
}
