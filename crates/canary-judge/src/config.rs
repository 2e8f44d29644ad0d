//! The judge's settings, the `[deploy.canary]` keys that are about statistics.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::JudgeError;

/// How the judge weighs the evidence. Every field has a default, so an empty table is valid.
///
/// ```toml
/// alpha = 0.05
/// failure_rate_tolerance = 0.005
/// latency_quantile = 0.95
/// latency_tolerance = 0.10
/// min_requests = 100
/// max_step_time = "15m"
/// inconclusive = "rollback"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct JudgeConfig {
    /// The chance of rolling back a canary that is no worse than the baseline (within the
    /// tolerances), and of promoting a step of one that is worse, however often the judge is
    /// asked. Between 0 and 0.5.
    pub alpha: f64,
    /// How much higher the canary's failure rate may be than the baseline's, as an absolute
    /// difference of rates (0.005 is half a percentage point).
    pub failure_rate_tolerance: f64,
    /// The latency quantile compared (0.95 is p95).
    pub latency_quantile: f64,
    /// How much higher the canary's latency quantile may be, relative to the baseline's (0.10
    /// is 10 %).
    pub latency_tolerance: f64,
    /// Requests each slot must have served (in the whole canary for a rollback, in the current
    /// step for a promotion) before the judge decides anything.
    pub min_requests: u64,
    /// How long a step may run without a decision before the verdict is `inconclusive`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub max_step_time: Duration,
    /// What an inconclusive step leads to (applied by the caller with
    /// [`Decision::resolve`](crate::Decision::resolve)).
    pub inconclusive: InconclusivePolicy,
}

impl Default for JudgeConfig {
    fn default() -> Self {
        Self {
            alpha: 0.05,
            failure_rate_tolerance: 0.005,
            latency_quantile: 0.95,
            latency_tolerance: 0.10,
            min_requests: 100,
            max_step_time: Duration::from_secs(15 * 60),
            inconclusive: InconclusivePolicy::default(),
        }
    }
}

impl JudgeConfig {
    /// Checks every setting's range; the error names the first key that is out of range.
    pub fn validate(&self) -> Result<(), JudgeError> {
        let invalid = |key, value: String, expected| {
            Err(JudgeError::InvalidConfig {
                key,
                value,
                expected,
            })
        };
        if !(self.alpha > 0.0 && self.alpha <= 0.5) {
            return invalid(
                "alpha",
                self.alpha.to_string(),
                "a significance level above 0 and at most 0.5, such as 0.05",
            );
        }
        if !(self.failure_rate_tolerance >= 0.0 && self.failure_rate_tolerance < 1.0) {
            return invalid(
                "failure_rate_tolerance",
                self.failure_rate_tolerance.to_string(),
                "an absolute difference of failure rates, at least 0 and below 1, such as 0.005",
            );
        }
        if !(self.latency_quantile > 0.0 && self.latency_quantile < 1.0) {
            return invalid(
                "latency_quantile",
                self.latency_quantile.to_string(),
                "a quantile strictly between 0 and 1, such as 0.95",
            );
        }
        if !(self.latency_tolerance >= 0.0 && self.latency_tolerance <= 10.0) {
            return invalid(
                "latency_tolerance",
                self.latency_tolerance.to_string(),
                "a relative increase between 0 and 10, such as 0.10 for 10 %",
            );
        }
        if self.max_step_time.is_zero() {
            return invalid(
                "max_step_time",
                humantime::format_duration(self.max_step_time).to_string(),
                "a duration above zero, such as \"15m\"",
            );
        }
        Ok(())
    }
}

/// What to do when a step ends without evidence either way.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum InconclusivePolicy {
    /// Roll back: a release is promoted on evidence, not for lack of it.
    #[default]
    Rollback,
    /// Promote the step anyway.
    Promote,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_table_gives_the_defaults() {
        let config: JudgeConfig = toml::from_str("").unwrap();
        assert_eq!(config, JudgeConfig::default());
        config.validate().unwrap();
    }

    #[test]
    fn every_key_parses() {
        let config: JudgeConfig = toml::from_str(
            r#"
            alpha = 0.01
            failure_rate_tolerance = 0.002
            latency_quantile = 0.99
            latency_tolerance = 0.2
            min_requests = 500
            max_step_time = "5m 30s"
            inconclusive = "promote"
            "#,
        )
        .unwrap();
        assert_eq!(config.alpha, 0.01);
        assert_eq!(config.failure_rate_tolerance, 0.002);
        assert_eq!(config.latency_quantile, 0.99);
        assert_eq!(config.latency_tolerance, 0.2);
        assert_eq!(config.min_requests, 500);
        assert_eq!(config.max_step_time, Duration::from_secs(330));
        assert_eq!(config.inconclusive, InconclusivePolicy::Promote);
        config.validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_refused() {
        let error = toml::from_str::<JudgeConfig>("tolerance = 0.01").unwrap_err();
        assert!(
            error.to_string().contains("unknown field `tolerance`"),
            "{error}"
        );
    }

    /// Each bad value is refused with the key, the value and what would do.
    #[test]
    fn bad_values_are_refused_with_a_clear_error() {
        type Spoil = fn(&mut JudgeConfig);
        let cases: [(&str, Spoil); 9] = [
            ("alpha", |c| c.alpha = 0.0),
            ("alpha", |c| c.alpha = 0.7),
            ("alpha", |c| c.alpha = f64::NAN),
            ("failure_rate_tolerance", |c| {
                c.failure_rate_tolerance = -0.01
            }),
            ("failure_rate_tolerance", |c| c.failure_rate_tolerance = 1.0),
            ("latency_quantile", |c| c.latency_quantile = 1.0),
            ("latency_quantile", |c| c.latency_quantile = 0.0),
            ("latency_tolerance", |c| c.latency_tolerance = -0.1),
            ("max_step_time", |c| c.max_step_time = Duration::ZERO),
        ];
        for (key, spoil) in cases {
            let mut config = JudgeConfig::default();
            spoil(&mut config);
            let error = config.validate().unwrap_err();
            assert!(
                matches!(&error, JudgeError::InvalidConfig { key: k, .. } if *k == key),
                "{key}: {error}"
            );
        }
        let config = JudgeConfig {
            alpha: 1.5,
            ..JudgeConfig::default()
        };
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "invalid canary setting `alpha` = 1.5: a significance level above 0 and at most \
             0.5, such as 0.05"
        );
    }

    #[test]
    fn the_schema_names_every_key() {
        let schema = serde_json::to_value(schemars::schema_for!(JudgeConfig)).unwrap();
        let properties = schema["properties"].as_object().unwrap();
        for key in [
            "alpha",
            "failure_rate_tolerance",
            "latency_quantile",
            "latency_tolerance",
            "min_requests",
            "max_step_time",
            "inconclusive",
        ] {
            assert!(properties.contains_key(key), "{key}");
        }
    }
}
