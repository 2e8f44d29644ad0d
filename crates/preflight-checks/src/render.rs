//! The human-readable table of a [`Report`]: id, status, time, message, remedy. Pure rendering
//! into a `String`; the binary decides where it goes.

use std::fmt::Write;

use crate::{CheckStatus, Report};

/// How a table is rendered.
#[derive(Debug, Clone, Copy, Default)]
pub struct TableStyle {
    /// ANSI colours on the status column.
    pub colours: bool,
    /// Show durations (tests and snapshots turn them off).
    pub durations: bool,
}

fn paint(status: CheckStatus, text: &str, colours: bool) -> String {
    if !colours {
        return text.to_owned();
    }
    let code = match status {
        CheckStatus::Pass => "32",
        CheckStatus::Warn => "33",
        CheckStatus::Fail => "31",
        CheckStatus::Skip => "2",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

impl Report {
    /// Renders the table: one row per check (`ID  STATUS  TIME  MESSAGE`), its remedy on the
    /// line below when there is one, then a summary line.
    pub fn render_table(&self, style: TableStyle) -> String {
        let id_width = self
            .checks
            .iter()
            .map(|c| c.id.len())
            .max()
            .unwrap_or(2)
            .max(2);
        let mut out = String::new();
        let time_head = if style.durations { "     TIME  " } else { "" };
        let _ = writeln!(out, "{:<id_width$}  STATUS  {time_head}MESSAGE", "ID");
        for c in &self.checks {
            let status = paint(
                c.status,
                &format!("{:<6}", c.status.as_str()),
                style.colours,
            );
            let time = if style.durations {
                format!("{:>7.1}ms  ", c.duration.as_secs_f64() * 1000.0)
            } else {
                String::new()
            };
            let _ = writeln!(out, "{:<id_width$}  {status}  {time}{}", c.id, c.message);
            if let Some(remedy) = &c.remedy {
                let pad = id_width + 2 + 6 + 2 + if style.durations { 11 } else { 0 };
                let _ = writeln!(out, "{:pad$}remedy: {remedy}", "");
            }
        }
        let count = |s: CheckStatus| self.checks.iter().filter(|c| c.status == s).count();
        let _ = write!(
            out,
            "\n{}: {} passed, {} warned, {} failed, {} skipped",
            self.status.as_str(),
            count(CheckStatus::Pass),
            count(CheckStatus::Warn),
            count(CheckStatus::Fail),
            count(CheckStatus::Skip),
        );
        if style.durations {
            let _ = write!(out, " in {:.1}ms", self.duration.as_secs_f64() * 1000.0);
        }
        out.push('\n');
        let ignored: Vec<&str> = self.ignored().collect();
        if !ignored.is_empty() {
            let _ = writeln!(
                out,
                "ignored failures (reported as warnings): {}",
                ignored.join(", ")
            );
        }
        out
    }
}
