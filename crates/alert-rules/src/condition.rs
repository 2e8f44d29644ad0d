//! Threshold conditions as written in the manifest: `< 0.95`, `> 2000`, `== "open"`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::AlertError;
use crate::sample::Value;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Op {
    /// The operator as written (`<`, `>=`, …), which is also PromQL's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }
}

/// The right-hand side of a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Threshold {
    /// A number.
    Number(f64),
    /// A quoted string state, compared with `==` or `!=` only.
    Text(String),
}

/// A condition on a metric's value; it "holds" when the alert should be active.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The operator.
    pub op: Op,
    /// The value compared against.
    pub threshold: Threshold,
}

/// Why a value could not be judged by a condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch(pub String);

impl Condition {
    /// Whether the condition holds for `value`; a type mismatch (text against a number
    /// threshold) cannot be judged and is reported as such.
    pub fn holds(&self, value: &Value) -> Result<bool, Mismatch> {
        match (&self.threshold, value) {
            (Threshold::Number(t), Value::Number(v)) => Ok(match self.op {
                Op::Lt => v < t,
                Op::Le => v <= t,
                Op::Gt => v > t,
                Op::Ge => v >= t,
                Op::Eq => v == t,
                Op::Ne => v != t,
            }),
            (Threshold::Text(t), Value::Text(v)) => Ok(match self.op {
                Op::Eq => v == t,
                Op::Ne => v != t,
                // Parsing refuses ordering operators on strings.
                _ => false,
            }),
            (Threshold::Number(_), Value::Text(v)) => Err(Mismatch(format!(
                "value `{v}` is not a number, but the condition `{self}` needs one"
            ))),
            (Threshold::Text(_), Value::Number(v)) => Err(Mismatch(format!(
                "value {v} is a number, but the condition `{self}` compares a string"
            ))),
        }
    }

    /// Whether the threshold is a string (such conditions cannot become PromQL).
    pub fn is_text(&self) -> bool {
        matches!(self.threshold, Threshold::Text(_))
    }
}

impl FromStr for Condition {
    type Err = AlertError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |message: &str| AlertError::InvalidCondition {
            text: text.to_owned(),
            message: message.to_owned(),
        };
        let t = text.trim();
        // Two-character operators first, so that `<=` is not read as `<` followed by `=`.
        let ops = [
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<", Op::Lt),
            (">", Op::Gt),
        ];
        let (op, rest) = ops
            .iter()
            .find_map(|(s, op)| t.strip_prefix(s).map(|rest| (*op, rest.trim())))
            .ok_or_else(|| {
                bad("expected an operator (<, <=, >, >=, ==, !=) then a number or a quoted string")
            })?;
        if rest.is_empty() {
            return Err(bad("the operator has nothing to compare against"));
        }
        let threshold = if let Some(inner) = rest.strip_prefix('"') {
            let s = inner
                .strip_suffix('"')
                .ok_or_else(|| bad("unterminated string"))?;
            if !matches!(op, Op::Eq | Op::Ne) {
                return Err(bad("strings compare only with == or !="));
            }
            Threshold::Text(s.to_owned())
        } else {
            let n: f64 = rest.parse().map_err(|_| {
                bad("the threshold is neither a number nor a quoted string (write == \"open\" for a state)")
            })?;
            if n.is_nan() {
                return Err(bad("NaN never compares true; use a number"));
            }
            Threshold::Number(n)
        };
        Ok(Condition { op, threshold })
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.threshold {
            Threshold::Number(n) => write!(f, "{} {}", self.op.as_str(), Value::Number(*n)),
            Threshold::Text(s) => write!(f, "{} \"{}\"", self.op.as_str(), s),
        }
    }
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Condition {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_judges_numbers() {
        let table: &[(&str, f64, bool)] = &[
            ("< 95", 94.9, true),
            ("< 95", 95.0, false),
            ("<= 95", 95.0, true),
            ("> 2000", 2000.5, true),
            ("> 2000", 2000.0, false),
            (">=2000", 2000.0, true),
            ("== 0", 0.0, true),
            ("!= 0", 0.0, false),
            ("> 1e3", 1001.0, true),
            ("< -1", -2.0, true),
        ];
        for (text, value, want) in table {
            assert_eq!(
                c(text).holds(&Value::Number(*value)),
                Ok(*want),
                "{text} on {value}"
            );
        }
    }

    #[test]
    fn nan_values_never_hold() {
        assert_eq!(c("> 0").holds(&Value::Number(f64::NAN)), Ok(false));
        assert_eq!(c("< 0").holds(&Value::Number(f64::NAN)), Ok(false));
    }

    #[test]
    fn parses_and_judges_strings() {
        assert_eq!(c("== \"open\"").holds(&Value::from("open")), Ok(true));
        assert_eq!(c("== \"open\"").holds(&Value::from("half-open")), Ok(false));
        assert_eq!(c("!= \"closed\"").holds(&Value::from("open")), Ok(true));
        assert!(c("== \"open\"").holds(&Value::Number(1.0)).is_err());
        assert!(c("> 1").holds(&Value::from("open")).is_err());
    }

    #[test]
    fn rejects_nonsense_with_a_reason() {
        for bad in [
            "95",
            "< ",
            "<< 3",
            "> \"open\"",
            "== open",
            "== \"open",
            "> NaN",
            "",
        ] {
            let err = bad.parse::<Condition>().unwrap_err();
            assert!(
                matches!(err, AlertError::InvalidCondition { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn displays_as_written() {
        assert_eq!(c("<0.95").to_string(), "< 0.95");
        assert_eq!(c("==  \"open\"").to_string(), "== \"open\"");
    }
}
