//! The sans-IO part: batch sizes and the failure budget.

use serde::{Deserialize, Serialize};

/// One entry of `[fleet] batches`: a count of hosts, or a percentage of the hosts that remain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "CountOrPercent", into = "CountOrPercent")]
pub enum BatchSize {
    /// This many hosts (at least 1).
    Count(usize),
    /// This percentage (1..=100) of the hosts not yet in a batch, rounded up.
    Percent(u8),
}

/// How many failed hosts a rollout tolerates: `max_fail` as a count or a percentage of all hosts.
///
/// The rollout stops when the failures **exceed** the budget: with `max_fail = 1`, one failed
/// host is tolerated and the second stops it; with `max_fail = 0` (the default), the first does.
/// A percentage is of the fleet's size, rounded down (`"25%"` of 4 hosts is 1, of 3 hosts is 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "CountOrPercent", into = "CountOrPercent")]
pub enum FailBudget {
    /// This many failed hosts are tolerated.
    Count(usize),
    /// This percentage (0..=100) of the fleet, rounded down, is tolerated.
    Percent(u8),
}

impl Default for FailBudget {
    fn default() -> Self {
        FailBudget::Count(0)
    }
}

/// The TOML shape of both: an integer or a string such as `"25%"`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum CountOrPercent {
    /// A count.
    Count(u64),
    /// A percentage, written `"N%"`.
    Text(String),
}

fn parse_percent(text: &str, max: u8) -> Result<u8, String> {
    let digits = text
        .trim()
        .strip_suffix('%')
        .ok_or_else(|| format!("{text:?} is neither a count nor a percentage such as \"25%\""))?;
    let n: u8 = digits
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: the percentage must be a whole number from 0 to {max}"))?;
    if n > max {
        return Err(format!("{text:?}: the percentage must be at most {max}%"));
    }
    Ok(n)
}

impl TryFrom<CountOrPercent> for BatchSize {
    type Error = String;
    fn try_from(v: CountOrPercent) -> Result<Self, String> {
        match v {
            CountOrPercent::Count(0) => Err("a batch of 0 hosts would never end".to_owned()),
            CountOrPercent::Count(n) => {
                Ok(BatchSize::Count(usize::try_from(n).unwrap_or(usize::MAX)))
            }
            CountOrPercent::Text(t) => match parse_percent(&t, 100)? {
                0 => Err(format!("{t:?}: a batch of 0% would never end")),
                p => Ok(BatchSize::Percent(p)),
            },
        }
    }
}

impl From<BatchSize> for CountOrPercent {
    fn from(v: BatchSize) -> Self {
        match v {
            BatchSize::Count(n) => CountOrPercent::Count(n as u64),
            BatchSize::Percent(p) => CountOrPercent::Text(format!("{p}%")),
        }
    }
}

impl TryFrom<CountOrPercent> for FailBudget {
    type Error = String;
    fn try_from(v: CountOrPercent) -> Result<Self, String> {
        match v {
            CountOrPercent::Count(n) => {
                Ok(FailBudget::Count(usize::try_from(n).unwrap_or(usize::MAX)))
            }
            CountOrPercent::Text(t) => Ok(FailBudget::Percent(parse_percent(&t, 100)?)),
        }
    }
}

impl From<FailBudget> for CountOrPercent {
    fn from(v: FailBudget) -> Self {
        match v {
            FailBudget::Count(n) => CountOrPercent::Count(n as u64),
            FailBudget::Percent(p) => CountOrPercent::Text(format!("{p}%")),
        }
    }
}

impl FailBudget {
    /// How many failed hosts a fleet of `total` tolerates.
    pub fn allowed(self, total: usize) -> usize {
        match self {
            FailBudget::Count(n) => n,
            FailBudget::Percent(p) => total * usize::from(p) / 100,
        }
    }

    /// Whether `failures` failed hosts out of `total` stop the rollout (they exceed the budget).
    pub fn exceeded(self, failures: usize, total: usize) -> bool {
        failures > self.allowed(total)
    }
}

/// The sizes of the batches that `total` hosts are rolled out in.
///
/// Each entry takes its count, or its percentage (rounded up, at least one host) of the hosts
/// not yet in a batch; when the entries are used up and hosts remain, the last entry repeats.
/// An empty list is one batch of everything. The sizes always add up to `total`.
pub fn batch_sizes(total: usize, batches: &[BatchSize]) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut remaining = total;
    let mut i = 0;
    while remaining > 0 {
        let spec = batches
            .get(i)
            .or(batches.last())
            .copied()
            .unwrap_or(BatchSize::Percent(100));
        let n = match spec {
            BatchSize::Count(n) => n,
            BatchSize::Percent(p) => (remaining * usize::from(p)).div_ceil(100),
        }
        .clamp(1, remaining);
        sizes.push(n);
        remaining -= n;
        i += 1;
    }
    sizes
}

/// The hosts split into batches of [`batch_sizes`], in order.
pub fn plan_batches(hosts: &[String], batches: &[BatchSize]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut at = 0;
    for n in batch_sizes(hosts.len(), batches) {
        out.push(hosts[at..at + n].to_vec());
        at += n;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str) -> Vec<BatchSize> {
        #[derive(Deserialize)]
        struct T {
            b: Vec<BatchSize>,
        }
        toml::from_str::<T>(&format!("b = {v}"))
            .map(|t| t.b)
            .unwrap_or_default()
    }

    #[test]
    fn counts_and_percentages_of_the_remaining_hosts() {
        assert_eq!(batch_sizes(4, &parse("[1, 1, 2]")), vec![1, 1, 2]);
        assert_eq!(
            batch_sizes(8, &parse(r#"[1, "25%", "100%"]"#)),
            vec![1, 2, 5]
        );
        assert_eq!(batch_sizes(10, &parse(r#"["50%"]"#)), vec![5, 3, 1, 1]);
        assert_eq!(batch_sizes(3, &parse("[5]")), vec![3]);
        assert_eq!(batch_sizes(5, &parse("[2]")), vec![2, 2, 1]);
        assert_eq!(batch_sizes(4, &[]), vec![4]);
        assert_eq!(batch_sizes(0, &parse("[1]")), Vec::<usize>::new());
        // A percentage of a small remainder still takes one host.
        assert_eq!(batch_sizes(2, &parse(r#"[1, "1%"]"#)), vec![1, 1]);
    }

    #[test]
    fn bad_entries_are_refused_with_the_value() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct T {
            b: Vec<BatchSize>,
        }
        for bad in ["[0]", r#"["0%"]"#, r#"["150%"]"#, r#"["half"]"#] {
            let err = toml::from_str::<T>(&format!("b = {bad}"))
                .err()
                .map(|e| e.to_string());
            assert!(err.is_some(), "{bad} accepted");
        }
    }

    #[test]
    fn the_budget_stops_when_failures_exceed_it_not_when_they_reach_it() {
        let one = FailBudget::Count(1);
        assert!(!one.exceeded(0, 4));
        assert!(!one.exceeded(1, 4), "reaching the budget does not stop");
        assert!(one.exceeded(2, 4), "exceeding it does");
        let zero = FailBudget::default();
        assert!(!zero.exceeded(0, 4));
        assert!(zero.exceeded(1, 4));
        let quarter = FailBudget::Percent(25);
        assert_eq!(quarter.allowed(4), 1);
        assert!(!quarter.exceeded(1, 4));
        assert!(quarter.exceeded(2, 4));
        assert_eq!(quarter.allowed(3), 0, "rounded down");
        assert!(quarter.exceeded(1, 3));
        assert!(!FailBudget::Percent(100).exceeded(4, 4));
    }

    proptest::proptest! {
        #[test]
        fn batches_cover_every_host_once(total in 0usize..200, spec in proptest::collection::vec(1usize..120, 0..5)) {
            let specs: Vec<BatchSize> = spec.iter().map(|&n| if n > 100 { BatchSize::Count(n - 100) } else { BatchSize::Percent(n as u8) }).collect();
            let sizes = batch_sizes(total, &specs);
            proptest::prop_assert_eq!(sizes.iter().sum::<usize>(), total);
            proptest::prop_assert!(sizes.iter().all(|&n| n >= 1));
        }
    }
}
