//! Sizes (`"10GB"`, `"512MiB"`, `1048576`), thresholds (a size or `"10%"`) and file modes
//! (`"0600"`) as written in cutover.toml, parsed while the manifest is read so that a typo is
//! reported with its line and column.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::PreflightError;

/// A number of bytes, written as an integer or a string with a decimal (`kB`, `MB`, `GB`, `TB`)
/// or binary (`KiB`, `MiB`, `GiB`, `TiB`) unit; units are case-insensitive, `B` optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Size(pub u64);

impl Size {
    /// The number of bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for Size {
    type Err = PreflightError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        // The one size syntax of the manifest (issue 17), shared with every byte-valued key.
        host_util::size::parse_size(input)
            .map(Size)
            .map_err(|e| PreflightError::Parse {
                what: "size",
                input: input.to_owned(),
                reason: e.reason.to_owned(),
            })
    }
}

impl fmt::Display for Size {
    /// Human-readable with a binary unit and one decimal (`"1.5 GiB"`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        let mut value = self.0 as f64;
        let mut unit = 0;
        while value >= 1024.0 && unit < UNITS.len() - 1 {
            value /= 1024.0;
            unit += 1;
        }
        if unit == 0 {
            write!(f, "{} B", self.0)
        } else {
            write!(f, "{value:.1} {}", UNITS[unit])
        }
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match NumberOrString::deserialize(deserializer)? {
            NumberOrString::Number(n) => Ok(Size(n)),
            NumberOrString::String(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A threshold: an absolute amount (bytes for sizes, a count for inodes) or a percentage of the
/// total (`"10%"`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// An absolute amount.
    Absolute(u64),
    /// A percentage of the total, 0 to 100.
    Percent(f64),
}

impl Level {
    /// Whether `available` out of `total` is below this level.
    pub fn is_below(self, available: u64, total: u64) -> bool {
        match self {
            Level::Absolute(n) => available < n,
            Level::Percent(p) => total > 0 && (available as f64) * 100.0 < p * total as f64,
        }
    }

    /// How the level reads in a message, with sizes rendered when `bytes` is true.
    pub fn describe(self, bytes: bool) -> String {
        match self {
            Level::Absolute(n) if bytes => Size(n).to_string(),
            Level::Absolute(n) => n.to_string(),
            Level::Percent(p) => format!("{p}%"),
        }
    }
}

impl FromStr for Level {
    type Err = PreflightError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        match input.trim().strip_suffix('%') {
            Some(number) => {
                let p: f64 = number.trim().parse().map_err(|_| PreflightError::Parse {
                    what: "threshold",
                    input: input.to_owned(),
                    reason: "the percentage is malformed".to_owned(),
                })?;
                if !(0.0..=100.0).contains(&p) {
                    return Err(PreflightError::Parse {
                        what: "threshold",
                        input: input.to_owned(),
                        reason: "a percentage must be between 0% and 100%".to_owned(),
                    });
                }
                Ok(Level::Percent(p))
            }
            None => input.parse::<Size>().map(|s| Level::Absolute(s.0)),
        }
    }
}

impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match NumberOrString::deserialize(deserializer)? {
            NumberOrString::Number(n) => Ok(Level::Absolute(n)),
            NumberOrString::String(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Permission bits, written as an octal string (`"0600"`, `"640"`) or an integer (`0o600`
/// written in TOML as `0o600`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct FileMode(pub u32);

impl FromStr for FileMode {
    type Err = PreflightError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let digits = input.trim().trim_start_matches("0o");
        let mode = u32::from_str_radix(digits, 8).map_err(|_| PreflightError::Parse {
            what: "file mode",
            input: input.to_owned(),
            reason: "expected octal digits such as \"0600\"".to_owned(),
        })?;
        if mode > 0o7777 {
            return Err(PreflightError::Parse {
                what: "file mode",
                input: input.to_owned(),
                reason: "a mode has at most four octal digits".to_owned(),
            });
        }
        Ok(FileMode(mode))
    }
}

impl fmt::Display for FileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match NumberOrString::deserialize(deserializer)? {
            NumberOrString::Number(n) => u32::try_from(n)
                .ok()
                .filter(|m| *m <= 0o7777)
                .map(FileMode)
                .ok_or_else(|| serde::de::Error::custom("a file mode is at most 0o7777")),
            NumberOrString::String(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A schema for the values that [`NumberOrString`] reads.
fn number_or_string_schema(description: &str) -> schemars::Schema {
    schemars::json_schema!({
        "description": description,
        "type": ["integer", "string"]
    })
}

impl schemars::JsonSchema for Size {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Size".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        number_or_string_schema("Bytes: an integer or a string such as \"10GB\" or \"512 MiB\".")
    }
}

impl schemars::JsonSchema for Level {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Level".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        number_or_string_schema(
            "An amount (an integer, or a size such as \"10GB\") or a percentage such as \"10%\".",
        )
    }
}

impl schemars::JsonSchema for FileMode {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FileMode".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        number_or_string_schema("Permission bits: an octal string such as \"0600\" or an integer.")
    }
}

#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "an integer or a string such as \"10GB\" or \"10%\""
)]
enum NumberOrString {
    Number(u64),
    String(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_decimal_and_binary_units() {
        for (text, bytes) in [
            ("10GB", 10_000_000_000),
            ("512MiB", 512 << 20),
            ("1.5 KiB", 1536),
            ("100kb", 100_000),
            ("42", 42),
            ("7B", 7),
            ("2TiB", 2 << 40),
        ] {
            assert_eq!(text.parse::<Size>().unwrap(), Size(bytes), "{text}");
        }
        for bad in ["", "GB", "10XB", "1..2GB", "-5GB"] {
            assert!(bad.parse::<Size>().is_err(), "{bad}");
        }
    }

    #[test]
    fn levels_are_sizes_or_percentages() {
        assert_eq!("10%".parse::<Level>().unwrap(), Level::Percent(10.0));
        assert_eq!("1GiB".parse::<Level>().unwrap(), Level::Absolute(1 << 30));
        assert!("150%".parse::<Level>().is_err());
        assert!(Level::Percent(10.0).is_below(9, 100));
        assert!(!Level::Percent(10.0).is_below(10, 100));
        assert!(Level::Absolute(10).is_below(9, 0));
        assert!(
            !Level::Percent(10.0).is_below(0, 0),
            "no total means no percentage"
        );
    }

    #[test]
    fn modes_are_octal() {
        assert_eq!("0600".parse::<FileMode>().unwrap(), FileMode(0o600));
        assert_eq!("640".parse::<FileMode>().unwrap(), FileMode(0o640));
        assert!("0900".parse::<FileMode>().is_err());
        assert_eq!(FileMode(0o600).to_string(), "0600");
    }

    #[test]
    fn sizes_display_with_binary_units() {
        assert_eq!(Size(512).to_string(), "512 B");
        assert_eq!(Size(1536).to_string(), "1.5 KiB");
        assert_eq!(Size(10 << 30).to_string(), "10.0 GiB");
    }
}
