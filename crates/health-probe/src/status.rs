//! The set of HTTP status codes a probe accepts: exact codes (`200`), classes (`"2xx"`) and
//! ranges (`"200-299"`). The default is every 2xx, so a 500 — or a redirect that was not
//! followed — is a failure.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ProbeError;

/// One accepted status pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusPattern {
    /// Exactly this code.
    Exact(u16),
    /// Every code of the class (`2` for 2xx).
    Class(u8),
    /// An inclusive range.
    Range(u16, u16),
}

impl StatusPattern {
    fn matches(self, code: u16) -> bool {
        match self {
            StatusPattern::Exact(c) => c == code,
            StatusPattern::Class(class) => code / 100 == u16::from(class),
            StatusPattern::Range(lo, hi) => (lo..=hi).contains(&code),
        }
    }
}

impl fmt::Display for StatusPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusPattern::Exact(c) => write!(f, "{c}"),
            StatusPattern::Class(c) => write!(f, "{c}xx"),
            StatusPattern::Range(lo, hi) => write!(f, "{lo}-{hi}"),
        }
    }
}

impl std::str::FromStr for StatusPattern {
    type Err = ProbeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let bad = || ProbeError::InvalidStatus {
            text: text.to_owned(),
        };
        let code = |s: &str| {
            s.trim()
                .parse::<u16>()
                .ok()
                .filter(|c| (100..=599).contains(c))
        };
        if let Some(class) = text.strip_suffix("xx").or_else(|| text.strip_suffix("XX")) {
            return class
                .parse::<u8>()
                .ok()
                .filter(|c| (1..=5).contains(c))
                .map(StatusPattern::Class)
                .ok_or_else(bad);
        }
        if let Some((lo, hi)) = text.split_once('-') {
            return match (code(lo), code(hi)) {
                (Some(lo), Some(hi)) if lo <= hi => Ok(StatusPattern::Range(lo, hi)),
                _ => Err(bad()),
            };
        }
        code(text).map(StatusPattern::Exact).ok_or_else(bad)
    }
}

/// The accepted status codes; default `2xx`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSet(Vec<StatusPattern>);

impl Default for StatusSet {
    fn default() -> Self {
        StatusSet(vec![StatusPattern::Class(2)])
    }
}

impl StatusSet {
    /// A set of the given patterns (an empty list means the default, 2xx).
    pub fn new(patterns: Vec<StatusPattern>) -> Self {
        if patterns.is_empty() {
            Self::default()
        } else {
            StatusSet(patterns)
        }
    }

    /// Whether `code` is accepted.
    pub fn accepts(&self, code: u16) -> bool {
        self.0.iter().any(|p| p.matches(code))
    }
}

impl fmt::Display for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

impl std::str::FromStr for StatusSet {
    type Err = ProbeError;

    /// Parses a comma-separated list such as `200,204` or `2xx,301`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let patterns = text
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        Ok(StatusSet::new(patterns))
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OnePattern {
    Code(u16),
    Text(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PatternList {
    One(OnePattern),
    Many(Vec<OnePattern>),
}

impl<'de> Deserialize<'de> for StatusSet {
    /// Accepts `200`, `"2xx"`, `"200,204"` or a list of those (`[200, "3xx"]`).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let list = match PatternList::deserialize(deserializer)? {
            PatternList::One(one) => vec![one],
            PatternList::Many(many) => many,
        };
        let mut patterns = Vec::new();
        for item in list {
            let text = match item {
                OnePattern::Code(c) => c.to_string(),
                OnePattern::Text(t) => t,
            };
            let set: StatusSet = text.parse().map_err(serde::de::Error::custom)?;
            patterns.extend(set.0);
        }
        Ok(StatusSet::new(patterns))
    }
}

impl Serialize for StatusSet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_2xx_and_rejects_500_and_redirects() {
        let set = StatusSet::default();
        assert!(set.accepts(200) && set.accepts(204) && set.accepts(299));
        assert!(!set.accepts(500) && !set.accepts(302) && !set.accepts(404));
    }

    #[test]
    fn lists_classes_and_ranges_parse() {
        let set: StatusSet = "200,204, 3xx,401-403".parse().unwrap();
        for ok in [200, 204, 301, 399, 401, 403] {
            assert!(set.accepts(ok), "{ok}");
        }
        for bad in [201, 400, 404, 500] {
            assert!(!set.accepts(bad), "{bad}");
        }
        assert_eq!(set.to_string(), "200,204,3xx,401-403");
    }

    #[test]
    fn nonsense_is_rejected() {
        for bad in ["abc", "6xx", "99", "300-200", "2xxx"] {
            assert!(bad.parse::<StatusSet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn deserialises_numbers_strings_and_lists() {
        #[derive(Deserialize)]
        struct T {
            s: StatusSet,
        }
        let one: T = toml::from_str("s = 204").unwrap();
        assert!(one.s.accepts(204) && !one.s.accepts(200));
        let many: T = toml::from_str("s = [200, \"3xx\"]").unwrap();
        assert!(many.s.accepts(200) && many.s.accepts(302));
    }
}
