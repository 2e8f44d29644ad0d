//! The `[preflight]` table: the issue's contract parses, typos are errors with line and column,
//! every kind is documented in the catalog and builds with its documented keys.

#![allow(clippy::unwrap_used)] // Helpers in test files unwrap too; a panic fails the test.

use std::collections::BTreeMap;

use manifest_loader::Manifest;
use preflight_checks::{BuildContext, CATALOG, CheckSpec, PreflightConfig, PreflightError};

const CONTRACT: &str = r#"
[service]
name = "mcp-hub"
secrets = { GEMINI_API_KEY = "env:GEMINI_API_KEY" }

[preflight]
ignore = ["memory"]              # ids whose failures become warnings

[[preflight.check]]
kind = "port-free"               # a kind from `cutover-preflight --list`
id = "app-port"                  # optional; defaults to the kind
addr = "127.0.0.1:7000"

[[preflight.check]]
kind = "disk-free"
path = "/opt/mcp-hub"
warn_below = "20GB"              # sizes as "10GB" / "512MiB", or percentages "10%"
fail_below = "10GB"

[[preflight.check]]
kind = "runtime-version"
command = ["bun", "--version"]
require = ">=1.1"

[[preflight.check]]
kind = "dir-writable"
path = "/opt/mcp-hub/backups"

[[preflight.check]]
kind = "file-mode"
path = ".env.production"         # fails when group or others can read it
"#;

#[test]
fn the_issue_contract_parses_and_builds() {
    let m = Manifest::from_str("/srv/app/cutover.toml", CONTRACT).unwrap();
    let config: PreflightConfig = m.table("preflight").unwrap().unwrap();
    assert_eq!(config.ignore, ["memory"]);
    let ids: Vec<String> = config.check.iter().map(CheckSpec::id).collect();
    assert_eq!(
        ids,
        [
            "app-port",
            "disk-free",
            "runtime-version",
            "dir-writable",
            "file-mode"
        ]
    );
    let secrets: BTreeMap<String, String> = m.table("service.secrets").unwrap().unwrap();
    let ctx = BuildContext {
        base_dir: m.dir(),
        secrets,
        ..BuildContext::default()
    };
    let checks = config.build(&ctx).unwrap();
    assert_eq!(checks.len(), 5);
    // Relative paths resolve against the manifest's directory.
    assert_eq!(
        checks[4].description(),
        "/srv/app/.env.production has mode 0600 or stricter"
    );
    assert_eq!(
        checks[1].description(),
        "free space on the filesystem holding /opt/mcp-hub"
    );
}

fn error_of(text: &str) -> String {
    let m = Manifest::from_str("cutover.toml", text).unwrap();
    m.table::<PreflightConfig>("preflight")
        .unwrap_err()
        .to_string()
}

#[test]
fn an_unknown_key_is_an_error_with_position_and_suggestion() {
    let err =
        error_of("[preflight]\n\n[[preflight.check]]\nkind = \"disk-free\"\nwarn_belw = \"1GB\"\n");
    assert!(err.starts_with("cutover.toml:"), "{err}");
    assert!(err.contains("warn_belw"), "{err}");
    assert!(err.contains("did you mean `warn_below`?"), "{err}");
}

#[test]
fn an_unknown_kind_is_an_error() {
    let err = error_of("[[preflight.check]]\nkind = \"disk-fre\"\n");
    assert!(err.contains("disk-fre"), "{err}");
    assert!(err.contains("disk-free"), "{err}");
}

#[test]
fn a_malformed_size_is_an_error_naming_the_value() {
    let err = error_of("[[preflight.check]]\nkind = \"disk-free\"\nfail_below = \"10XB\"\n");
    assert!(err.contains("10XB"), "{err}");
    assert!(err.contains("unknown unit"), "{err}");
    let err = error_of(
        "[[preflight.check]]\nkind = \"runtime-version\"\ncommand = [\"x\"]\nrequire = \"~>1\"\n",
    );
    assert!(
        err.contains("require") || err.contains("~>1") || err.contains("unexpected"),
        "{err}"
    );
}

#[test]
fn semantic_errors_name_the_entry_and_key() {
    let build = |text: &str| {
        let config: PreflightConfig = toml::from_str(text).unwrap();
        config.build(&BuildContext::default()).map(|c| c.len())
    };
    let err = build("[[check]]\nkind = \"tls-cert\"\n").unwrap_err();
    assert!(
        matches!(err, PreflightError::InvalidCheck { index: 0, ref key, .. } if key == "path"),
        "{err}"
    );
    let err = build("[[check]]\nkind = \"memory\"\n[[check]]\nkind = \"memory\"\n").unwrap_err();
    assert!(
        matches!(err, PreflightError::DuplicateId { index: 1, .. }),
        "{err}"
    );
    let err = build("[[check]]\nkind = \"memory\"\nid = \"Mem_1\"\n").unwrap_err();
    assert!(err.to_string().contains("kebab-case"), "{err}");
    let err = build("[[check]]\nkind = \"command\"\ncommand = []\n").unwrap_err();
    assert!(err.to_string().contains("`command`"), "{err}");
    let err = build("[[check]]\nkind = \"port-free\"\naddr = \"7000\"\n").unwrap_err();
    assert!(err.to_string().contains("host:port"), "{err}");
}

/// A minimal valid entry for each kind, as the catalog documents it.
fn minimal(kind: &str) -> String {
    let required: Vec<String> = CATALOG
        .iter()
        .find(|k| k.kind == kind)
        .unwrap()
        .keys
        .iter()
        .filter(|k| k.default == "required")
        .map(|k| match k.ty {
            "[argv]" | "[string]" | "[path]" => format!("{} = [\"x\"]", k.key),
            "host:port" => format!("{} = \"127.0.0.1:1\"", k.key),
            "port" => format!("{} = 7000", k.key),
            _ => format!("{} = \"x\"", k.key),
        })
        .collect();
    let extra = match kind {
        "tls-cert" => "path = \"x.pem\"\n",
        "files-exist" => "all_of = [\"x\"]\n",
        _ => "",
    };
    format!(
        "[[check]]\nkind = \"{kind}\"\n{}\n{extra}",
        required.join("\n")
    )
}

#[test]
fn every_kind_is_documented_and_every_documented_key_is_accepted() {
    assert_eq!(CATALOG.len(), 18);
    for doc in CATALOG {
        let config: PreflightConfig =
            toml::from_str(&minimal(doc.kind)).unwrap_or_else(|e| panic!("{}: {e}", doc.kind));
        assert_eq!(config.check[0].kind(), doc.kind);
        let checks = config
            .build(&BuildContext::default())
            .unwrap_or_else(|e| panic!("{}: {e}", doc.kind));
        assert_eq!(checks[0].kind(), doc.kind);
        assert_eq!(checks[0].id(), doc.kind, "the id defaults to the kind");
        // Every documented key is a key serde accepts (not an unknown field).
        for key in doc.keys {
            let text = format!("[[check]]\nkind = \"{}\"\n{} = 12345\n", doc.kind, key.key);
            let err = toml::from_str::<PreflightConfig>(&text)
                .err()
                .map(|e| e.to_string());
            assert!(
                !err.as_deref().unwrap_or("").contains("unknown field"),
                "{}.{}: {err:?}",
                doc.kind,
                key.key
            );
        }
    }
}
