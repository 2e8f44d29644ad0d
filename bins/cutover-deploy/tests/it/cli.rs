//! Snapshots of the interfaces people and scripts depend on, so that they cannot change by
//! accident: the JSON Schema of `cutover.toml` (also committed as docs/cutover.schema.json)
//! and `cutover-deploy --help` with each subcommand's help.
//!
//! After an intended change: `cargo insta review` (or `INSTA_UPDATE=always cargo test -p
//! cutover-deploy --test cli`), and `cutover-deploy schema > docs/cutover.schema.json`.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use cutover_tests::workspace_bin;

#[test]
fn the_manifest_schema_is_unchanged_and_matches_the_docs() {
    let schema = deploy_pipeline::json_schema();
    insta::assert_snapshot!("cutover.schema.json", schema);
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/cutover.schema.json");
    let committed = std::fs::read_to_string(&docs).unwrap();
    assert_eq!(
        committed.trim_end(),
        schema,
        "docs/cutover.schema.json is stale: run `cutover-deploy schema > docs/cutover.schema.json`"
    );
}

#[test]
fn the_schema_command_prints_the_schema() {
    let out = Command::new(workspace_bin("cutover-deploy"))
        .arg("schema")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim_end(),
        deploy_pipeline::json_schema()
    );
}

fn help(args: &[&str]) -> String {
    let out = Command::new(workspace_bin("cutover-deploy"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("COLUMNS")
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn help_is_unchanged() {
    insta::assert_snapshot!("help", help(&["--help"]));
    for sub in ["deploy", "rollback", "status", "recover", "plan"] {
        insta::assert_snapshot!(format!("help-{sub}"), help(&[sub, "--help"]));
    }
}
