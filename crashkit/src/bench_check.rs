//! `torture bench --check`: judge a bench run's figures against their targets.
//!
//! The bench (`bench/`) prints its targets beside the figures (`... 1.25x (target >= 1.3x)`)
//! but does not return them, so this module reads them back from the bench's output: from
//! the human table, where the target stands on the same line as its figure, or from the
//! `--json` summary object, whose fields carry no target and are judged against
//! [`JSON_TARGETS`] (which mirrors the table's lines).

use std::fmt;

/// One figure judged against its target.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetCheck {
    /// What was measured, as the bench's table names it.
    pub label: String,
    pub measured: f64,
    /// The figure must be at least this.
    pub target_min: f64,
}

impl TargetCheck {
    pub fn met(&self) -> bool {
        self.measured >= self.target_min
    }
}

impl fmt::Display for TargetCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {:.2}x, target >= {}x: {}",
            self.label,
            self.measured,
            self.target_min,
            if self.met() { "met" } else { "MISSED" }
        )
    }
}

/// The `--json` summary fields that have a target, with the table's label and the target
/// the table prints beside them (`bench/report.rs`).
pub const JSON_TARGETS: [(&str, &str, f64); 6] = [
    (
        "naive_to_fresh_open_ratio",
        "naive log replay / open, fresh processes",
        2.0,
    ),
    (
        "async_1t_to_naive_ratio",
        "async 1 thread / naive write loop",
        1.0,
    ),
    (
        "strict_1t_to_plain_ratio",
        "strict 1 thread / plain loop",
        1.3,
    ),
    (
        "strict_append_1t_to_plain_ratio",
        "strict-append 1 thread / plain loop",
        1.3,
    ),
    (
        "strict_group_commit_ratio",
        "strict group commit / 1 thread",
        5.0,
    ),
    (
        "strict_append_group_commit_ratio",
        "strict-append group commit / 1 thread",
        5.0,
    ),
];

/// Reads every target line of a bench's output, table or JSON Lines (told apart by the
/// first non-empty line). Errors name a line that looks like a target but does not parse,
/// or JSON that does not.
pub fn checks_from_output(output: &str) -> Result<Vec<TargetCheck>, String> {
    let first = output.lines().find(|l| !l.trim().is_empty());
    if first.is_some_and(|l| l.trim_start().starts_with('{')) {
        checks_from_json_lines(output)
    } else {
        checks_from_table(output)
    }
}

/// Lines of the form `<label>: <figure>x (target >= <min>x)`.
pub fn checks_from_table(table: &str) -> Result<Vec<TargetCheck>, String> {
    const MARK: &str = "x (target >= ";
    let mut checks = Vec::new();
    for line in table.lines() {
        let Some(at) = line.find(MARK) else { continue };
        let bad = || format!("cannot read the target line {line:?}");
        let (head, tail) = (&line[..at], &line[at + MARK.len()..]);
        let (label, measured) = head.rsplit_once(": ").ok_or_else(bad)?;
        let target = tail.strip_suffix("x)").ok_or_else(bad)?;
        checks.push(TargetCheck {
            label: label.trim().to_string(),
            measured: measured.trim().parse().map_err(|_| bad())?,
            target_min: target.trim().parse().map_err(|_| bad())?,
        });
    }
    Ok(checks)
}

/// The `summary` object's ratios against [`JSON_TARGETS`]. A ratio the run did not
/// measure (`null`) is not judged.
pub fn checks_from_json_lines(lines: &str) -> Result<Vec<TargetCheck>, String> {
    let mut checks = Vec::new();
    for line in lines.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("not JSON ({e}): {line:?}"))?;
        if value["type"] != "summary" {
            continue;
        }
        for (field, label, target_min) in JSON_TARGETS {
            if let Some(measured) = value[field].as_f64() {
                checks.push(TargetCheck {
                    label: label.to_string(),
                    measured,
                    target_min,
                });
            }
        }
    }
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
commit throughput (txn/s)
plain pwrite(64 B, appending) + fdatasync loop: 1000/s
strict 1 thread / plain loop: 1.25x (target >= 1.3x)
strict 8 threads / 1 thread: 6.10x (target >= 5x)
strict-append 1 thread / plain loop: 1.31x (target >= 1.3x)
";

    #[test]
    fn table_targets_are_read_and_judged() {
        let checks = checks_from_output(TABLE).unwrap();
        assert_eq!(checks.len(), 3);
        assert_eq!(checks[0].label, "strict 1 thread / plain loop");
        assert_eq!(checks[0].measured, 1.25);
        assert_eq!(checks[0].target_min, 1.3);
        assert!(!checks[0].met(), "1.25x misses 1.3x");
        assert!(checks[1].met());
        assert_eq!(checks[1].target_min, 5.0);
        assert!(checks[2].met());
        assert!(checks[0].to_string().ends_with("MISSED"));
        assert!(checks_from_table("x (target >= many)").is_err());
        assert!(checks_from_table("no targets here\n").unwrap().is_empty());
    }

    #[test]
    fn json_summary_ratios_are_judged_against_the_table_targets() {
        let lines = r#"{"type":"begin","quick":true}
{"type":"commit","mode":"strict","threads":1}
{"type":"summary","strict_1t_to_plain_ratio":1.4,"strict_append_1t_to_plain_ratio":1.2,"strict_group_commit_ratio":null,"strict_append_group_commit_ratio":5.5}
"#;
        let checks = checks_from_output(lines).unwrap();
        let judged: Vec<(&str, bool)> =
            checks.iter().map(|c| (c.label.as_str(), c.met())).collect();
        assert_eq!(
            judged,
            vec![
                ("strict 1 thread / plain loop", true),
                ("strict-append 1 thread / plain loop", false),
                ("strict-append group commit / 1 thread", true),
            ]
        );
        assert!(checks_from_json_lines("{not json").is_err());
    }
}
