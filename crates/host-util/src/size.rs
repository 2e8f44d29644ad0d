//! Sizes as written in cutover.toml: an integer (bytes) or a string with a decimal (`kB`, `MB`,
//! `GB`, `TB`, `PB`) or binary (`KiB`, `MiB`, `GiB`, `TiB`, `PiB`) unit, case-insensitive,
//! `B` optional, a space allowed (`"10GB"`, `"512 MiB"`, `"1.5KiB"`, `"42"`). Every byte-valued
//! key of the manifest reads its value with [`parse_size`] (through the `serde` helpers with
//! the `config` feature), so they all take the same forms.

use std::fmt;

/// Why a text is not a size. Shows the text and the reason:
/// `invalid size "10XB": unknown unit; …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeError {
    /// The text given.
    pub input: String,
    /// Why it is not a size.
    pub reason: &'static str,
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid size {:?}: {}", self.input, self.reason)
    }
}

impl std::error::Error for SizeError {}

/// The number of bytes `input` stands for (see the module docs for the forms).
///
/// # Errors
/// [`SizeError`]: no number, a malformed number, an unknown unit, or more than `u64::MAX`.
pub fn parse_size(input: &str) -> Result<u64, SizeError> {
    let err = |reason: &'static str| SizeError {
        input: input.to_owned(),
        reason,
    };
    let text = input.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(err("expected a number such as 10GB or 512MiB"));
    }
    let value: f64 = number.parse().map_err(|_| err("the number is malformed"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "p" | "pb" => 1_000_000_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        "pi" | "pib" => 1 << 50,
        _ => {
            return Err(err(
                "unknown unit; use B, kB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024)",
            ));
        }
    };
    let bytes = value * multiplier as f64;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(err("too large"));
    }
    Ok(bytes.round() as u64)
}

/// `serde` helpers for `u64` fields that hold bytes:
/// `#[serde(deserialize_with = "host_util::size::serde::bytes")]`, or
/// `host_util::size::serde::option_bytes` for an `Option<u64>`, and
/// `#[schemars(schema_with = "host_util::size::serde::schema")]`. Values serialize as the
/// plain integer.
#[cfg(feature = "config")]
pub mod serde {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(
        untagged,
        expecting = "an integer or a string such as \"10GB\" or \"512MiB\""
    )]
    enum IntegerOrText {
        Integer(u64),
        Text(String),
    }

    /// A size: an integer or a string such as `"10GB"`.
    ///
    /// # Errors
    /// The value is neither, or a string that [`parse_size`](super::parse_size) refuses.
    pub fn bytes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        match IntegerOrText::deserialize(deserializer)? {
            IntegerOrText::Integer(n) => Ok(n),
            IntegerOrText::Text(s) => super::parse_size(&s).map_err(serde::de::Error::custom),
        }
    }

    /// An optional size (`None` when the key is absent; give the field `#[serde(default)]`).
    ///
    /// # Errors
    /// As [`bytes`].
    pub fn option_bytes<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<u64>, D::Error> {
        // `null` (how an absent value is written back, in JSON state files) is `None`.
        match Option::<IntegerOrText>::deserialize(deserializer)? {
            None => Ok(None),
            Some(IntegerOrText::Integer(n)) => Ok(Some(n)),
            Some(IntegerOrText::Text(s)) => super::parse_size(&s)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }

    /// The JSON Schema of a size: an integer or a string.
    pub fn schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Bytes: an integer or a string such as \"10GB\" (powers of 1000) or \"512MiB\" (powers of 1024).",
            "type": ["integer", "string"]
        })
    }

    /// The JSON Schema of an optional size.
    pub fn option_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Bytes: an integer or a string such as \"10GB\" (powers of 1000) or \"512MiB\" (powers of 1024).",
            "type": ["integer", "string", "null"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_decimal_and_binary_units_and_plain_integers() {
        for (text, bytes) in [
            ("10GB", 10_000_000_000),
            ("512MiB", 512 << 20),
            ("512 MiB", 512 << 20),
            ("1.5 KiB", 1536),
            ("100kb", 100_000),
            ("42", 42),
            ("7B", 7),
            ("2TiB", 2 << 40),
            ("3g", 3_000_000_000),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn malformed_sizes_are_refused_with_the_text_and_a_reason() {
        for (bad, reason) in [
            ("", "expected a number"),
            ("GB", "expected a number"),
            ("10XB", "unknown unit"),
            ("1..2GB", "malformed"),
            ("-5GB", "expected a number"),
            ("99999999999PiB", "too large"),
        ] {
            let err = parse_size(bad).unwrap_err();
            assert!(err.reason.contains(reason), "{bad}: {err}");
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }
}
