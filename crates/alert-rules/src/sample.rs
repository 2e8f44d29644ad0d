//! What a metric source returns: a value, "no data" or an error, kept distinct.

use serde::{Deserialize, Serialize};

/// A metric's value: a number, or a string state such as a circuit breaker's `"open"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// A number (JSON booleans become 1 and 0).
    Number(f64),
    /// A string state.
    Text(String),
}

impl Value {
    /// The number, when this is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            Value::Text(_) => None,
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Number(n) => {
                // Whole numbers print without a fraction; others keep what they need, no more.
                if n.fract() == 0.0 && n.abs() < 1e15 {
                    write!(f, "{n:.0}")
                } else {
                    let s = format!("{n:.4}");
                    f.write_str(s.trim_end_matches('0').trim_end_matches('.'))
                }
            }
            Value::Text(s) => f.write_str(s),
        }
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Value::Number(n)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_owned())
    }
}

/// One observation of a rule's metric.
///
/// The three cases are kept apart because they mean different things to an operator and rules
/// handle them separately (`no_data` and `error` policies): the endpoint answered but the field
/// is missing, or the endpoint could not be read at all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum Sample {
    /// The metric's value.
    Value(Value),
    /// The source answered but holds no value for this metric (field missing, no series).
    NoData(String),
    /// The source could not be read (connection refused, timeout, bad status, command failed).
    Error(String),
}

impl Sample {
    /// A numeric sample.
    pub fn number(n: f64) -> Self {
        Sample::Value(Value::Number(n))
    }

    /// A string sample.
    pub fn text(s: impl Into<String>) -> Self {
        Sample::Value(Value::Text(s.into()))
    }

    /// A no-data sample with a reason.
    pub fn no_data(reason: impl Into<String>) -> Self {
        Sample::NoData(reason.into())
    }

    /// An error sample with a reason.
    pub fn error(reason: impl Into<String>) -> Self {
        Sample::Error(reason.into())
    }

    /// Multiplies a numeric value by `scale` (fraction to percent); other samples are unchanged.
    pub fn scaled(self, scale: Option<f64>) -> Self {
        match (self, scale) {
            (Sample::Value(Value::Number(n)), Some(s)) => Sample::Value(Value::Number(n * s)),
            (other, _) => other,
        }
    }
}

/// Turns a JSON scalar into a sample: numbers and strings are values, booleans 1/0, null is no
/// data, and arrays or objects are errors (the pointer names a container, not a metric).
pub fn sample_from_json(value: &serde_json::Value, what: &str) -> Sample {
    match value {
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(f) => Sample::number(f),
            None => Sample::error(format!("{what} is a number that does not fit a float")),
        },
        serde_json::Value::String(s) => Sample::text(s.clone()),
        serde_json::Value::Bool(b) => Sample::number(if *b { 1.0 } else { 0.0 }),
        serde_json::Value::Null => Sample::no_data(format!("{what} is null")),
        serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
            Sample::error(format!("{what} is not a scalar (an array or object)"))
        }
    }
}

/// Turns text output (a command's stdout) into a sample: empty is no data, a number is a
/// number, anything else is a string state.
pub fn sample_from_text(text: &str) -> Sample {
    let t = text.trim();
    if t.is_empty() {
        return Sample::no_data("empty output");
    }
    match t.parse::<f64>() {
        Ok(n) => Sample::number(n),
        Err(_) => Sample::text(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_compact() {
        assert_eq!(Value::Number(2000.0).to_string(), "2000");
        assert_eq!(Value::Number(0.95).to_string(), "0.95");
        assert_eq!(Value::Number(1.0 / 3.0).to_string(), "0.3333");
        assert_eq!(Value::from("open").to_string(), "open");
    }

    #[test]
    fn json_scalars_map_to_samples() {
        use serde_json::json;
        assert_eq!(sample_from_json(&json!(0.5), "x"), Sample::number(0.5));
        assert_eq!(sample_from_json(&json!("open"), "x"), Sample::text("open"));
        assert_eq!(sample_from_json(&json!(true), "x"), Sample::number(1.0));
        assert!(matches!(
            sample_from_json(&json!(null), "x"),
            Sample::NoData(_)
        ));
        assert!(matches!(
            sample_from_json(&json!({}), "x"),
            Sample::Error(_)
        ));
    }

    #[test]
    fn text_output_maps_to_samples() {
        assert_eq!(sample_from_text(" 42\n"), Sample::number(42.0));
        assert_eq!(sample_from_text("half-open\n"), Sample::text("half-open"));
        assert!(matches!(sample_from_text("  \n"), Sample::NoData(_)));
    }

    #[test]
    fn scale_only_touches_numbers() {
        assert_eq!(
            Sample::number(0.5).scaled(Some(100.0)),
            Sample::number(50.0)
        );
        assert_eq!(
            Sample::text("open").scaled(Some(100.0)),
            Sample::text("open")
        );
    }
}
