//! Table-driven engine tests in the manner of `promtool test rules`: a synthetic series in,
//! the expected state and transitions at each evaluation out.
//!
//! Series notation, one token per evaluation (one per `interval`): a number, a word (string
//! state), `_` for no data, `!` for an error. State notation: `i` inactive, `p:w` pending
//! warning, `f:c` firing critical, `r:w` resolved (was warning), `u` unknown. Transition
//! notation: `-` for none, else kinds joined by `+`.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::time::Duration;

use alert_rules::{AlertState, Engine, EngineState, Policy, Rule, Sample, Severity};
use jiff::Timestamp;

struct Case {
    name: &'static str,
    rule: Rule,
    interval: Duration,
    series: &'static str,
    states: &'static str,
    transitions: &'static str,
}

fn min(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

fn rule(warn: Option<&str>, crit: Option<&str>) -> Rule {
    let mut r = Rule::new("r");
    if let Some(w) = warn {
        r = r.warn(w).unwrap();
    }
    if let Some(c) = crit {
        r = r.crit(c).unwrap();
    }
    r
}

fn sample(token: &str) -> Sample {
    match token {
        "_" => Sample::no_data("field missing"),
        "!" => Sample::error("connection refused"),
        t => t
            .parse::<f64>()
            .map_or_else(|_| Sample::text(t), Sample::number),
    }
}

fn show_state(s: &alert_rules::RuleStatus) -> String {
    let sev = |s: Option<Severity>| match s {
        Some(Severity::Warning) => ":w",
        Some(Severity::Critical) => ":c",
        None => "",
    };
    match s.state {
        AlertState::Inactive => "i".into(),
        AlertState::Unknown => "u".into(),
        AlertState::Pending => format!("p{}", sev(s.severity)),
        AlertState::Firing => format!("f{}", sev(s.severity)),
        AlertState::Resolved => format!("r{}", sev(s.severity)),
    }
}

fn t0() -> Timestamp {
    "2025-06-01T00:00:00Z".parse().unwrap()
}

/// Runs a case, optionally persisting and reloading the state (through JSON) between every
/// evaluation, as one-shot `check` runs from cron do.
fn run(case: &Case, persist: bool) -> (Vec<String>, Vec<String>) {
    let mut state = EngineState::default();
    let mut engine = Engine::new(vec![case.rule.clone()], EngineState::default());
    let (mut states, mut transitions) = (Vec::new(), Vec::new());
    for (i, token) in case.series.split_whitespace().enumerate() {
        if persist {
            engine = Engine::new(vec![case.rule.clone()], state.clone());
        }
        let now = t0() + case.interval * u32::try_from(i).unwrap();
        let samples = [("r".to_owned(), sample(token))].into();
        let ev = engine.evaluate(now, &samples);
        states.push(show_state(&ev.statuses[0]));
        let kinds: Vec<&str> = ev.transitions.iter().map(|t| t.kind.as_str()).collect();
        transitions.push(if kinds.is_empty() {
            "-".into()
        } else {
            kinds.join("+")
        });
        if persist {
            let json = serde_json::to_string(engine.state()).unwrap();
            state = serde_json::from_str(&json).unwrap();
        }
    }
    (states, transitions)
}

fn cases() -> Vec<Case> {
    let w10 = || rule(Some("> 10"), None);
    let wc = || rule(Some("> 10"), Some("> 20"));
    vec![
        Case {
            name: "for: pending until the condition held for 2m, then firing, then resolved",
            rule: w10().for_duration(min(2)),
            interval: min(1),
            series: "5 15 15 15 5 5",
            states: "i p:w p:w f:w r:w i",
            transitions: "- pending - firing resolved -",
        },
        Case {
            name: "for = 0 fires at the first evaluation",
            rule: w10(),
            interval: min(1),
            series: "15 5",
            states: "f:w r:w",
            transitions: "firing resolved",
        },
        Case {
            name: "keep_firing_for holds a firing alert after the condition stops",
            rule: w10().keep_firing_for(min(2)),
            interval: min(1),
            series: "15 5 5 5 5",
            states: "f:w f:w f:w r:w i",
            transitions: "firing - - resolved -",
        },
        Case {
            name: "keep_firing_for restarts when the condition returns",
            rule: w10().keep_firing_for(min(2)),
            interval: min(1),
            series: "15 5 15 5 5 5",
            states: "f:w f:w f:w f:w f:w r:w",
            transitions: "firing - - - - resolved",
        },
        Case {
            name: "flapping shorter than for never fires",
            rule: w10().for_duration(min(2)),
            interval: min(1),
            series: "15 5 15 5 15 15",
            states: "p:w i p:w i p:w p:w",
            transitions: "pending cleared pending cleared pending -",
        },
        Case {
            name: "escalation and de-escalation between warning and critical",
            rule: wc(),
            interval: min(1),
            series: "15 25 15 5",
            states: "f:w f:c f:w r:w",
            transitions: "firing escalated de-escalated resolved",
        },
        Case {
            name: "each severity waits for its own for",
            rule: wc().for_duration(min(1)),
            interval: min(1),
            series: "15 25 25 25 15 5",
            states: "p:w f:w f:c f:c f:w r:w",
            transitions: "pending firing escalated - de-escalated resolved",
        },
        Case {
            name: "critical straight from inactive",
            rule: wc(),
            interval: min(1),
            series: "5 30 5",
            states: "i f:c r:c",
            transitions: "- firing resolved",
        },
        Case {
            name: "no_data = ok resolves",
            rule: w10().policies(Policy::Ok, Policy::Unknown),
            interval: min(1),
            series: "15 _ _ 15",
            states: "f:w r:w i f:w",
            transitions: "firing resolved - firing",
        },
        Case {
            name: "no_data = alerting fires at the worst configured severity",
            rule: wc().policies(Policy::Alerting, Policy::Unknown),
            interval: min(1),
            series: "5 _ 5",
            states: "i f:c r:c",
            transitions: "- firing resolved",
        },
        Case {
            name: "no_data = keep-last changes nothing",
            rule: w10().policies(Policy::KeepLast, Policy::Unknown),
            interval: min(1),
            series: "15 _ _ 5 _",
            states: "f:w f:w f:w r:w i",
            transitions: "firing - - resolved -",
        },
        Case {
            name: "keep-last does not promote a pending alert, the pending clock keeps running",
            rule: w10()
                .for_duration(min(2))
                .policies(Policy::KeepLast, Policy::KeepLast),
            interval: min(1),
            series: "15 _ _ 15",
            states: "p:w p:w p:w f:w",
            transitions: "pending - - firing",
        },
        Case {
            name: "unknown is reported, then the alert carries on",
            rule: w10(),
            interval: min(1),
            series: "15 _ ! 15 5",
            states: "f:w u u f:w r:w",
            transitions: "firing unknown - known resolved",
        },
        Case {
            name: "no data and error are handled apart",
            rule: w10().policies(Policy::Ok, Policy::Alerting),
            interval: min(1),
            series: "5 _ ! _",
            states: "i i f:w r:w",
            transitions: "- - firing resolved",
        },
        Case {
            name: "a text value against a number threshold follows the error policy",
            rule: w10().policies(Policy::Ok, Policy::Alerting),
            interval: min(1),
            series: "5 open 5",
            states: "i f:w r:w",
            transitions: "- firing resolved",
        },
        Case {
            name: "string states",
            rule: rule(Some("== \"half-open\""), Some("== \"open\"")),
            interval: min(1),
            series: "closed half-open open closed",
            states: "i f:w f:c r:c",
            transitions: "- firing escalated resolved",
        },
        Case {
            name: "repeat_interval reminds while firing",
            rule: {
                let mut r = w10();
                r.repeat_interval = Some(min(2));
                r
            },
            interval: min(1),
            series: "15 15 15 15 15 5",
            states: "f:w f:w f:w f:w f:w r:w",
            transitions: "firing - repeat - repeat resolved",
        },
        Case {
            name: "delta judges growth over the window, after a warm-up",
            rule: {
                let mut r = rule(Some("> 100"), None);
                r.delta = Some(min(3));
                r
            },
            interval: min(1),
            series: "1000 1050 1200 1200 1200 1200 1200",
            states: "i i f:w f:w f:w r:w i",
            transitions: "- - firing - - resolved -",
        },
    ]
}

#[test]
fn synthetic_timelines() {
    for case in cases() {
        let (states, transitions) = run(&case, false);
        assert_eq!(states.join(" "), case.states, "states: {}", case.name);
        assert_eq!(
            transitions.join(" "),
            case.transitions,
            "transitions: {}",
            case.name
        );
    }
}

#[test]
fn persisting_between_every_evaluation_changes_nothing() {
    for case in cases() {
        assert_eq!(run(&case, true), run(&case, false), "{}", case.name);
    }
}

#[test]
fn stale_state_does_not_fire_on_old_evidence() {
    let rule = rule(Some("> 10"), None).for_duration(min(2));
    let mut engine = Engine::new(vec![rule], EngineState::default());
    let samples = [("r".to_owned(), Sample::number(15.0))].into();
    let ev = engine.evaluate(t0(), &samples);
    assert_eq!(ev.statuses[0].state, AlertState::Pending);
    // Two hours later (cron stopped in between): the pending clock restarts.
    let ev = engine.evaluate(t0() + min(120), &samples);
    assert_eq!(ev.statuses[0].state, AlertState::Pending);
    let ev = engine.evaluate(t0() + min(122), &samples);
    assert_eq!(ev.statuses[0].state, AlertState::Firing);
}

#[test]
fn a_clock_that_goes_backwards_does_not_fire_early() {
    let rule = rule(Some("> 10"), None).for_duration(min(2));
    let mut engine = Engine::new(vec![rule], EngineState::default());
    let samples = [("r".to_owned(), Sample::number(15.0))].into();
    engine.evaluate(t0(), &samples);
    let ev = engine.evaluate(t0() - min(10), &samples);
    assert_eq!(ev.statuses[0].state, AlertState::Pending);
}

#[test]
fn a_rule_without_a_sample_is_an_error_sample() {
    let mut engine = Engine::new(vec![rule(Some("> 10"), None)], EngineState::default());
    let ev = engine.evaluate(t0(), &Default::default());
    assert_eq!(ev.statuses[0].state, AlertState::Unknown);
    assert!(
        ev.statuses[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("not sampled")
    );
}

#[test]
fn transitions_carry_labels_value_and_description() {
    let mut r = rule(Some("> 2000"), Some("> 5000"));
    r.labels.insert("team".into(), "hub".into());
    r.description = Some("p95 is {{ $value }} ms".into());
    let mut engine = Engine::new(vec![r], EngineState::default());
    let ev = engine.evaluate(t0(), &[("r".to_owned(), Sample::number(2500.0))].into());
    let t = &ev.transitions[0];
    assert_eq!(t.labels["severity"], "warning");
    assert_eq!(t.labels["team"], "hub");
    assert_eq!(t.description.as_deref(), Some("p95 is 2500 ms"));
    assert_eq!(ev.statuses[0].since, Some(t0()));
    assert_eq!(
        alert_rules::render_line(t),
        "2025-06-01T00:00:00Z FIRING r severity=warning value=2500 p95 is 2500 ms"
    );
}

#[test]
fn state_of_removed_rules_is_dropped() {
    let mut engine = Engine::new(vec![rule(Some("> 10"), None)], EngineState::default());
    engine.evaluate(t0(), &[("r".to_owned(), Sample::number(15.0))].into());
    let state = engine.state().clone();
    let other = Engine::new(vec![Rule::new("other").warn("> 1").unwrap()], state);
    assert!(other.state().rules.is_empty());
}
