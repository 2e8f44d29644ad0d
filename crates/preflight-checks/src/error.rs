//! The one error type of this crate: what can be wrong with a pre-flight configuration.
//!
//! Running checks never returns an error: a check that cannot evaluate is a `fail` with the
//! reason, so that a deploy gate never mistakes "could not look" for "looked and found it fine".

/// A pre-flight configuration that cannot be turned into checks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PreflightError {
    /// A `[[preflight.check]]` entry is invalid in a way its types could not express.
    #[error("preflight.check[{index}] (`{id}`): `{key}` {message}")]
    InvalidCheck {
        /// 0-based position in `[[preflight.check]]`.
        index: usize,
        /// The check's id.
        id: String,
        /// The offending key.
        key: String,
        /// What is wrong, a fragment that reads after the key.
        message: String,
    },
    /// Two checks have the same id.
    #[error(
        "preflight.check[{index}]: id `{id}` is already used by another check; give one of them an explicit `id`"
    )]
    DuplicateId {
        /// 0-based position of the second check with the id.
        index: usize,
        /// The id.
        id: String,
    },
    /// An id on the ignore list or in `--only` names no check of this run.
    #[error("{list}: no check has the id `{id}`{hint}; ids in this run: {known}")]
    UnknownId {
        /// Where the id was given (`ignore`, `--only`, ...).
        list: String,
        /// The unknown id.
        id: String,
        /// A suggestion (`"; did you mean `memory`?"`) or empty.
        hint: String,
        /// The ids of the run, comma-separated.
        known: String,
    },
    /// A size or threshold string could not be parsed.
    #[error("invalid {what} `{input}`: {reason}")]
    Parse {
        /// What was being parsed ("size", "threshold", "file mode").
        what: &'static str,
        /// The text given.
        input: String,
        /// Why it is not acceptable.
        reason: String,
    },
}
