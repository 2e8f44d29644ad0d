//! Documentation of every check kind and its keys, as `cutover-preflight --list` prints it.
//! A test keeps it in step with [`CheckSpec`](crate::CheckSpec).

use serde::Serialize;

/// One key of a check kind.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct KeyDoc {
    /// The key as written in `[[preflight.check]]`.
    pub key: &'static str,
    /// Its type (`"path"`, `"size or %"`, `"[argv]"`, ...).
    #[serde(rename = "type")]
    pub ty: &'static str,
    /// Its default, or `"required"`.
    pub default: &'static str,
    /// What it does.
    pub doc: &'static str,
}

/// One check kind.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct KindDoc {
    /// The kind, as written in `kind = "..."`.
    pub kind: &'static str,
    /// What it checks.
    pub summary: &'static str,
    /// Its own keys (besides [`COMMON_KEYS`]).
    pub keys: &'static [KeyDoc],
}

const fn key(
    key: &'static str,
    ty: &'static str,
    default: &'static str,
    doc: &'static str,
) -> KeyDoc {
    KeyDoc {
        key,
        ty,
        default,
        doc,
    }
}

/// Keys every kind accepts.
pub const COMMON_KEYS: &[KeyDoc] = &[
    key(
        "id",
        "kebab-case string",
        "the kind",
        "the id used by `ignore` and `--only`; unique per run",
    ),
    key(
        "timeout",
        "duration",
        "\"10s\" (command, build: \"30m\")",
        "a check still running then fails",
    ),
];

const LEVELS_BYTES: &str = "sizes as \"10GB\" (powers of 1000), \"512MiB\" (powers of 1024) or bytes; or a percentage \"10%\" of the total; \"0%\" disables";

/// Every kind, in the order `--list` shows them.
pub const CATALOG: &[KindDoc] = &[
    KindDoc {
        kind: "git-clean",
        summary: "no tracked file is modified, staged or deleted (names up to 10 dirty paths)",
        keys: &[
            key(
                "path",
                "path",
                "the manifest's directory",
                "the git work tree",
            ),
            key(
                "untracked",
                "bool",
                "false",
                "untracked (not ignored) files count as dirty too",
            ),
        ],
    },
    KindDoc {
        kind: "command",
        summary: "a command (the test suite) exits 0; the tail of its output is quoted on failure",
        keys: &[
            key(
                "command",
                "[argv]",
                "required",
                "the program and its arguments, no shell (write [\"sh\", \"-c\", \"...\"] for one)",
            ),
            key(
                "dir",
                "path",
                "the manifest's directory",
                "working directory",
            ),
            key("env", "table", "{}", "extra environment variables"),
        ],
    },
    KindDoc {
        kind: "build",
        summary: "the build command exits 0 (like `command`; builds and commands run one at a time)",
        keys: &[
            key(
                "command",
                "[argv]",
                "required",
                "the build, such as [\"bun\", \"run\", \"build\"]",
            ),
            key(
                "dir",
                "path",
                "the manifest's directory",
                "working directory",
            ),
            key("env", "table", "{}", "extra environment variables"),
        ],
    },
    KindDoc {
        kind: "artifact",
        summary: "the build output exists, is a regular file, optionally executable, with a size within bounds",
        keys: &[
            key("path", "path", "required", "the file"),
            key("executable", "bool", "false", "require an execute bit"),
            key(
                "min_bytes",
                "size",
                "none",
                "smallest acceptable size, such as \"100KB\"",
            ),
            key(
                "max_bytes",
                "size",
                "none",
                "largest acceptable size, such as \"10MB\"",
            ),
        ],
    },
    KindDoc {
        kind: "files-exist",
        summary: "every path of all_of exists, and at least one of any_of",
        keys: &[
            key("all_of", "[path]", "[]", "paths that must all exist"),
            key("any_of", "[path]", "[]", "paths of which one must exist"),
        ],
    },
    KindDoc {
        kind: "secrets",
        summary: "every reference in [service].secrets resolves to a non-empty value (values are never shown)",
        keys: &[],
    },
    KindDoc {
        kind: "disk-free",
        summary: "free space on the filesystem holding a path (its nearest existing parent)",
        keys: &[
            key(
                "path",
                "path",
                "the manifest's directory",
                "a path on the filesystem to measure",
            ),
            key("warn_below", "size or %", "\"10%\"", LEVELS_BYTES),
            key("fail_below", "size or %", "\"1GB\"", LEVELS_BYTES),
        ],
    },
    KindDoc {
        kind: "memory",
        summary: "available memory (MemAvailable: free plus reclaimable)",
        keys: &[
            key("warn_below", "size or %", "\"2GB\"", LEVELS_BYTES),
            key("fail_below", "size or %", "none", LEVELS_BYTES),
        ],
    },
    KindDoc {
        kind: "runtime-version",
        summary: "a command's version output satisfies a semver requirement; a missing program fails clearly",
        keys: &[
            key(
                "command",
                "[argv]",
                "required",
                "prints the version, such as [\"bun\", \"--version\"]",
            ),
            key(
                "require",
                "semver requirement",
                "any version",
                "such as \">=1.1, <2\"",
            ),
        ],
    },
    KindDoc {
        kind: "port-free",
        summary: "the address the service will bind can be bound; names the holding process when visible",
        keys: &[key(
            "addr",
            "host:port",
            "required",
            "such as \"127.0.0.1:7000\"",
        )],
    },
    KindDoc {
        kind: "exposure",
        summary: "the running service on a port listens on loopback only (not around the proxy); reads its sockets through /proc",
        keys: &[key(
            "port",
            "port",
            "required",
            "the service's port, such as 7000",
        )],
    },
    KindDoc {
        kind: "dir-writable",
        summary: "a directory exists (created when allowed) and a probe file can be written, fsynced and removed",
        keys: &[
            key("path", "path", "required", "the directory"),
            key(
                "create",
                "bool",
                "true",
                "create the directory when missing",
            ),
        ],
    },
    KindDoc {
        kind: "file-mode",
        summary: "a file (env file, private key) allows no more than max_mode (by default group and others get nothing)",
        keys: &[
            key("path", "path", "required", "the file"),
            key(
                "max_mode",
                "octal string",
                "\"0600\"",
                "the most permissive mode allowed",
            ),
            key(
                "required",
                "bool",
                "true",
                "a missing file fails (false: skips)",
            ),
        ],
    },
    KindDoc {
        kind: "not-tracked",
        summary: "paths that must never be committed are not tracked by git and are covered by .gitignore",
        keys: &[
            key(
                "paths",
                "[string]",
                "required",
                "paths relative to the repository, such as \".env.production\", \"backups/\"",
            ),
            key("repo", "path", "the manifest's directory", "the repository"),
        ],
    },
    KindDoc {
        kind: "tls-cert",
        summary: "a certificate (PEM file or live host:port) is valid now, for the name, not expiring soon, and (live, or with verify/ca) chains to a trusted CA",
        keys: &[
            key(
                "path",
                "path",
                "one of path/addr",
                "a PEM file; its first certificate is judged",
            ),
            key(
                "addr",
                "host:port",
                "one of path/addr",
                "a live TLS endpoint",
            ),
            key(
                "name",
                "string",
                "the host of addr; none for a file",
                "DNS name or IP the certificate must cover",
            ),
            key(
                "warn_days",
                "integer",
                "30",
                "warn when it expires within this many days",
            ),
            key(
                "fail_days",
                "integer",
                "7",
                "fail when it expires within this many days",
            ),
            key(
                "ca",
                "path",
                "the Mozilla roots plus SSL_CERT_FILE",
                "PEM file of the CA certificates to trust; implies verify",
            ),
            key(
                "verify",
                "bool",
                "true for addr or with ca, false for path",
                "fail when the chain does not lead to a trusted CA (a file's later certificates are its intermediates)",
            ),
        ],
    },
    KindDoc {
        kind: "cpu-count",
        summary: "CPUs usable by this process (affinity and cgroup quota included)",
        keys: &[
            key("warn_below", "integer", "2", "warn with fewer CPUs"),
            key("fail_below", "integer", "none", "fail with fewer CPUs"),
        ],
    },
    KindDoc {
        kind: "open-files-limit",
        summary: "the soft open-files limit (RLIMIT_NOFILE)",
        keys: &[
            key("warn_below", "integer", "1024", "warn below this limit"),
            key("fail_below", "integer", "256", "fail below this limit"),
        ],
    },
    KindDoc {
        kind: "inodes-free",
        summary: "free inodes on the filesystem holding a path (skips on filesystems without inode counts)",
        keys: &[
            key(
                "path",
                "path",
                "the manifest's directory",
                "a path on the filesystem to measure",
            ),
            key(
                "warn_below",
                "count or %",
                "\"10%\"",
                "a count or a percentage of all inodes",
            ),
            key(
                "fail_below",
                "count or %",
                "\"5%\"",
                "a count or a percentage of all inodes",
            ),
        ],
    },
];

/// The documentation of `kind`, if it is a kind.
pub fn kind_doc(kind: &str) -> Option<&'static KindDoc> {
    CATALOG.iter().find(|k| k.kind == kind)
}
