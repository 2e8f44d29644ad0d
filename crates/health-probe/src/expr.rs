//! Assertions on a JSON body, written as small expressions: a JSON pointer, an operator and,
//! for most operators, a JSON value.
//!
//! The syntax, used both in `cutover.toml` (`expect_json = ['/state == "ready"']`) and on the
//! command line (`--expect-json '/state=="ready"'`):
//!
//! | expression                     | holds when the value at the pointer …              |
//! |--------------------------------|----------------------------------------------------|
//! | `/state == "ready"`            | equals the JSON value (numbers compare by value)   |
//! | `/state != "error"`            | is present and differs from the JSON value         |
//! | `/state in ["ready", "idle"]`  | equals one of the values in the JSON array         |
//! | `/rate < 0.5` (`<=`, `>`, `>=`)| is a number and the comparison holds               |
//! | `/llmCacheSize exists`         | is present (any value, `null` included)            |
//! | `/error absent`                | is not present                                     |
//! | `/tools nonempty`              | is an array with at least one element              |
//! | `/version =~ "^4\\."`          | is a string matching the regex (quoted as JSON, or |
//! |                                | bare: `/version =~ ^4\.`)                          |
//!
//! The pointer is an RFC 6901 JSON pointer (`""` is the whole document, `/a/0/b` walks objects
//! and arrays, `~1` stands for `/` and `~0` for `~`). It ends at the first space or at the first
//! of `= ! < >`, so a pointer cannot contain those characters. Values are JSON literals: strings
//! are quoted (`"ready"`), while `true`, `false`, `null` and numbers are bare.

use std::fmt;

use serde_json::Value;

use crate::error::ProbeError;

/// A number comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `<`
    Less,
    /// `<=`
    LessOrEqual,
    /// `>`
    Greater,
    /// `>=`
    GreaterOrEqual,
}

impl Comparison {
    fn symbol(self) -> &'static str {
        match self {
            Comparison::Less => "<",
            Comparison::LessOrEqual => "<=",
            Comparison::Greater => ">",
            Comparison::GreaterOrEqual => ">=",
        }
    }

    fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Comparison::Less => left < right,
            Comparison::LessOrEqual => left <= right,
            Comparison::Greater => left > right,
            Comparison::GreaterOrEqual => left >= right,
        }
    }
}

/// What an assertion checks about the value at its pointer.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum JsonCheck {
    /// `== VALUE`
    Equals(Value),
    /// `!= VALUE`
    NotEquals(Value),
    /// `in [V1, V2, …]`
    OneOf(Vec<Value>),
    /// `< N`, `<= N`, `> N`, `>= N`
    Compare(Comparison, f64),
    /// `exists`
    Exists,
    /// `absent`
    Absent,
    /// `nonempty`: an array with at least one element.
    NonEmpty,
    /// `=~ REGEX`: a string matching the regex.
    Matches(regex::Regex),
}

/// One parsed assertion, such as `/state == "ready"`.
#[derive(Debug, Clone)]
pub struct JsonAssertion {
    /// The JSON pointer (`""` for the whole document).
    pub pointer: String,
    /// What is checked there.
    pub check: JsonCheck,
}

impl PartialEq for JsonAssertion {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl std::str::FromStr for JsonAssertion {
    type Err = ProbeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse(text).map_err(|message| ProbeError::InvalidAssertion {
            expression: text.to_owned(),
            message,
        })
    }
}

impl TryFrom<String> for JsonAssertion {
    type Error = ProbeError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<JsonAssertion> for String {
    fn from(assertion: JsonAssertion) -> Self {
        assertion.to_string()
    }
}

impl serde::Serialize for JsonAssertion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for JsonAssertion {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for JsonAssertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.pointer;
        match &self.check {
            JsonCheck::Equals(v) => write!(f, "{p} == {v}"),
            JsonCheck::NotEquals(v) => write!(f, "{p} != {v}"),
            JsonCheck::OneOf(vs) => write!(f, "{p} in {}", Value::Array(vs.clone())),
            JsonCheck::Compare(op, n) => write!(f, "{p} {} {n}", op.symbol()),
            JsonCheck::Exists => write!(f, "{p} exists"),
            JsonCheck::Absent => write!(f, "{p} absent"),
            JsonCheck::NonEmpty => write!(f, "{p} nonempty"),
            JsonCheck::Matches(re) => write!(f, "{p} =~ {}", Value::String(re.as_str().to_owned())),
        }
    }
}

/// Builds a check from the text after an operator.
type OperandParser = fn(&str) -> Result<JsonCheck, String>;

fn parse(text: &str) -> Result<JsonAssertion, String> {
    let text = text.trim();
    let end = text
        .find(|c: char| c.is_whitespace() || "=!<>".contains(c))
        .unwrap_or(text.len());
    let (pointer, rest) = text.split_at(end);
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return Err(format!(
            "the JSON pointer must start with `/` (got `{pointer}`)"
        ));
    }
    let rest = rest.trim_start();
    let operators: [(&str, OperandParser); 11] = [
        ("==", |v| json_value(v).map(JsonCheck::Equals)),
        ("!=", |v| json_value(v).map(JsonCheck::NotEquals)),
        ("=~", regex_operand),
        ("<=", |v| {
            number(v).map(|n| JsonCheck::Compare(Comparison::LessOrEqual, n))
        }),
        (">=", |v| {
            number(v).map(|n| JsonCheck::Compare(Comparison::GreaterOrEqual, n))
        }),
        ("<", |v| {
            number(v).map(|n| JsonCheck::Compare(Comparison::Less, n))
        }),
        (">", |v| {
            number(v).map(|n| JsonCheck::Compare(Comparison::Greater, n))
        }),
        ("in ", one_of),
        ("exists", |v| no_operand(v, JsonCheck::Exists)),
        ("absent", |v| no_operand(v, JsonCheck::Absent)),
        ("nonempty", |v| no_operand(v, JsonCheck::NonEmpty)),
    ];
    for (symbol, build) in operators {
        if let Some(operand) = rest.strip_prefix(symbol) {
            let check = build(operand.trim())?;
            return Ok(JsonAssertion {
                pointer: pointer.to_owned(),
                check,
            });
        }
    }
    Err(format!(
        "expected an operator after `{pointer}`: one of ==, !=, <, <=, >, >=, in, exists, absent, nonempty, =~ (got `{rest}`)"
    ))
}

fn json_value(operand: &str) -> Result<Value, String> {
    serde_json::from_str(operand).map_err(|_| {
        format!(
            "`{operand}` is not a JSON value; quote strings, as in \"{}\"",
            operand.trim_matches('"')
        )
    })
}

fn number(operand: &str) -> Result<f64, String> {
    operand
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite())
        .ok_or_else(|| format!("`{operand}` is not a number"))
}

fn one_of(operand: &str) -> Result<JsonCheck, String> {
    match json_value(operand)? {
        Value::Array(values) if !values.is_empty() => Ok(JsonCheck::OneOf(values)),
        _ => Err(format!(
            "`in` takes a non-empty JSON array, as in [\"ready\", \"idle\"] (got `{operand}`)"
        )),
    }
}

fn regex_operand(operand: &str) -> Result<JsonCheck, String> {
    let pattern = if operand.starts_with('"') {
        serde_json::from_str::<String>(operand)
            .map_err(|e| format!("the quoted regex is not a JSON string: {e}"))?
    } else {
        operand.to_owned()
    };
    regex::Regex::new(&pattern)
        .map(JsonCheck::Matches)
        .map_err(|e| format!("invalid regex: {e}"))
}

fn no_operand(operand: &str, check: JsonCheck) -> Result<JsonCheck, String> {
    if operand.is_empty() {
        Ok(check)
    } else {
        Err(format!("unexpected text after the operator: `{operand}`"))
    }
}

/// A short rendering of a JSON value for reasons (long values are cut at 80 characters).
pub(crate) fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 80 {
        format!("{}…", text.chars().take(80).collect::<String>())
    } else {
        text
    }
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) if a.is_number() && b.is_number() => x == y,
        _ => a == b,
    }
}

impl JsonAssertion {
    /// Checks the assertion against a document: `Ok(())` when it holds, else the reason, such as
    /// `/state expected "ready", got "starting"`.
    pub fn evaluate(&self, document: &Value) -> Result<(), String> {
        let p = if self.pointer.is_empty() {
            "(document)"
        } else {
            self.pointer.as_str()
        };
        let found = document.pointer(&self.pointer);
        let missing = || format!("{p} is missing (expected `{self}`)");
        match (&self.check, found) {
            (JsonCheck::Absent, None) => Ok(()),
            (JsonCheck::Absent, Some(v)) => Err(format!("{p} expected absent, got {}", short(v))),
            (_, None) => Err(missing()),
            (JsonCheck::Exists, Some(_)) => Ok(()),
            (JsonCheck::Equals(want), Some(got)) => {
                if same_value(want, got) {
                    Ok(())
                } else {
                    Err(format!("{p} expected {}, got {}", short(want), short(got)))
                }
            }
            (JsonCheck::NotEquals(unwanted), Some(got)) => {
                if same_value(unwanted, got) {
                    Err(format!(
                        "{p} expected anything but {}, got it",
                        short(unwanted)
                    ))
                } else {
                    Ok(())
                }
            }
            (JsonCheck::OneOf(options), Some(got)) => {
                if options.iter().any(|o| same_value(o, got)) {
                    Ok(())
                } else {
                    Err(format!(
                        "{p} expected one of {}, got {}",
                        short(&Value::Array(options.clone())),
                        short(got)
                    ))
                }
            }
            (JsonCheck::Compare(op, limit), Some(got)) => match got.as_f64() {
                Some(n) if op.holds(n, *limit) => Ok(()),
                Some(_) => Err(format!(
                    "{p} expected {} {limit}, got {}",
                    op.symbol(),
                    short(got)
                )),
                None => Err(format!(
                    "{p} expected a number {} {limit}, got {}",
                    op.symbol(),
                    short(got)
                )),
            },
            (JsonCheck::NonEmpty, Some(got)) => match got {
                Value::Array(items) if !items.is_empty() => Ok(()),
                _ => Err(format!(
                    "{p} expected a non-empty array, got {}",
                    short(got)
                )),
            },
            (JsonCheck::Matches(re), Some(got)) => match got {
                Value::String(s) if re.is_match(s) => Ok(()),
                Value::String(_) => Err(format!(
                    "{p} expected to match /{}/, got {}",
                    re.as_str(),
                    short(got)
                )),
                _ => Err(format!(
                    "{p} expected a string matching /{}/, got {}",
                    re.as_str(),
                    short(got)
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({"status": "ok", "state": "ready", "count": 3, "rate": 0.25, "tools": [{"name": "a"}],
               "empty": [], "version": "4.3.0", "nothing": null, "a/b": 1})
    }

    fn check(expr: &str) -> Result<(), String> {
        expr.parse::<JsonAssertion>().unwrap().evaluate(&doc())
    }

    #[test]
    fn every_kind_passes_on_a_matching_document() {
        for expr in [
            r#"/state == "ready""#,
            r#"/state=="ready""#,
            "/count == 3.0",
            r#"/state != "starting""#,
            r#"/state in ["ready", "idle"]"#,
            "/count < 4",
            "/count <= 3",
            "/rate > 0.2",
            "/rate >= 0.25",
            "/nothing exists",
            "/missing absent",
            "/tools nonempty",
            r#"/version =~ "^4\\.3""#,
            r"/version =~ ^4\.\d",
            "/a~1b == 1",
            "/tools/0/name exists",
        ] {
            assert_eq!(check(expr), Ok(()), "{expr}");
        }
    }

    #[test]
    fn every_kind_fails_with_a_reason() {
        for (expr, reason) in [
            (
                r#"/state == "starting""#,
                r#"/state expected "starting", got "ready""#,
            ),
            (
                r#"/state != "ready""#,
                r#"/state expected anything but "ready", got it"#,
            ),
            (
                r#"/state in ["a", "b"]"#,
                r#"/state expected one of ["a","b"], got "ready""#,
            ),
            ("/count < 3", "/count expected < 3, got 3"),
            ("/count <= 2", "/count expected <= 2, got 3"),
            ("/rate > 0.5", "/rate expected > 0.5, got 0.25"),
            ("/rate >= 1", "/rate expected >= 1, got 0.25"),
            ("/state > 1", r#"/state expected a number > 1, got "ready""#),
            (
                "/missing exists",
                "/missing is missing (expected `/missing exists`)",
            ),
            ("/state absent", r#"/state expected absent, got "ready""#),
            (
                "/empty nonempty",
                "/empty expected a non-empty array, got []",
            ),
            (
                "/state nonempty",
                r#"/state expected a non-empty array, got "ready""#,
            ),
            (
                r#"/version =~ "^5""#,
                r#"/version expected to match /^5/, got "4.3.0""#,
            ),
            (
                "/count =~ 3",
                "/count expected a string matching /3/, got 3",
            ),
            (
                r#"/missing == "x""#,
                r#"/missing is missing (expected `/missing == "x"`)"#,
            ),
        ] {
            assert_eq!(check(expr), Err(reason.to_owned()), "{expr}");
        }
    }

    #[test]
    fn malformed_expressions_are_rejected_with_a_hint() {
        for (expr, hint) in [
            ("state == 1", "must start with `/`"),
            ("/state == ready", "quote strings"),
            ("/state", "expected an operator"),
            ("/count < many", "not a number"),
            ("/state in []", "non-empty JSON array"),
            ("/v =~ (", "invalid regex"),
            ("/v exists now", "unexpected text"),
        ] {
            let err = expr.parse::<JsonAssertion>().unwrap_err().to_string();
            assert!(err.contains(hint), "{expr}: {err}");
        }
    }

    #[test]
    fn display_round_trips() {
        for expr in [
            r#"/state == "ready""#,
            "/n <= 2",
            "/a exists",
            r#"/s in ["a",1]"#,
            r#"/v =~ "^4\\.""#,
        ] {
            let parsed: JsonAssertion = expr.parse().unwrap();
            assert_eq!(parsed.to_string().parse::<JsonAssertion>().unwrap(), parsed);
        }
    }
}
