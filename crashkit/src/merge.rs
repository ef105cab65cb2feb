//! `torture report`: one summary from the JSON Lines of several `torture run --json` runs
//! (shards of one campaign, nightly runs, CI matrix cells).
//!
//! Reads the `summary` object each run prints last and adds them up: cycles, clean,
//! findings, every column of the mode x kill table, kill sites and findings by kind. A
//! `begin` without a `summary` after it is a run that never finished (a harness failure,
//! or killed): it is counted as incomplete, because its cycles cannot be added.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use crate::campaign::{ComboCounts, Summary};

/// The merged summary of several runs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Merged {
    /// Runs whose summary was read.
    pub runs: u64,
    /// Runs that began but printed no summary.
    pub incomplete_runs: u64,
    /// The totals, in the shape of one run's summary; `elapsed_s` is the sum of the runs'
    /// wall-clock times and `cycles_per_s` is cycles over that sum.
    pub summary: Summary,
    /// Per `mode/kill`: its cycles over the summed wall-clock time of the runs that ran
    /// it. Cycles of all combinations share each run's workers, so this is the rate at
    /// which that combination was covered, not its rate when run alone.
    pub cycles_per_s_by_mode_kill: BTreeMap<String, f64>,
    /// Per `mode/kill`: the summed wall-clock seconds of the runs that ran it.
    #[serde(skip)]
    elapsed_s_by_mode_kill: BTreeMap<String, f64>,
}

/// Why JSON Lines could not be merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeError {
    pub source_name: String,
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for MergeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.source_name, self.line, self.reason)
    }
}

impl std::error::Error for MergeError {}

fn count(object: &Value, field: &str) -> u64 {
    object[field].as_u64().unwrap_or(0)
}

fn add_combo(into: &mut ComboCounts, c: &Value) {
    into.cycles += count(c, "cycles");
    into.clean += count(c, "clean");
    into.findings += count(c, "findings");
    into.killed += count(c, "killed");
    into.power_loss += count(c, "power_loss");
    into.recovery_crash += count(c, "recovery_crash");
    into.corrupt += count(c, "corrupt");
    into.io_errors += count(c, "io_errors");
    into.multi_threaded += count(c, "multi_threaded");
    into.generations += count(c, "generations");
}

impl Merged {
    /// Adds the runs in one JSON Lines text (`source_name` names it in errors). Lines of
    /// other types (`finding`, ...) are skipped: their counts are in the summary.
    pub fn add_json_lines(&mut self, source_name: &str, text: &str) -> Result<(), MergeError> {
        let mut open_begin = false;
        for (idx, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let error = |reason: String| MergeError {
                source_name: source_name.to_string(),
                line: idx + 1,
                reason,
            };
            let object: Value = serde_json::from_str(line)
                .map_err(|e| error(format!("not a JSON object ({e})")))?;
            match object["type"].as_str() {
                Some("begin") => {
                    self.incomplete_runs += u64::from(open_begin);
                    open_begin = true;
                }
                Some("summary") => {
                    if !object["per_mode_kill"].is_object() {
                        return Err(error(
                            "a summary without per_mode_kill: not the output of `torture run --json`"
                                .to_string(),
                        ));
                    }
                    open_begin = false;
                    self.add_summary(&object);
                }
                Some(_) => {}
                None => return Err(error("an object without a `type`".to_string())),
            }
        }
        self.incomplete_runs += u64::from(open_begin);
        Ok(())
    }

    fn add_summary(&mut self, run: &Value) {
        self.runs += 1;
        let s = &mut self.summary;
        s.cycles += count(run, "cycles");
        s.clean += count(run, "clean");
        s.findings += count(run, "findings");
        s.crash_states += count(run, "crash_states");
        s.crash_states_damaged_in_middle += count(run, "crash_states_damaged_in_middle");
        let elapsed_s = run["elapsed_s"].as_f64().unwrap_or(0.0);
        s.elapsed_s += elapsed_s;
        s.interrupted |= run["interrupted"].as_bool().unwrap_or(false);
        let seed = run["base_seed"].as_str().unwrap_or("?");
        s.base_seed = if s.base_seed.is_empty() {
            seed.to_string()
        } else {
            format!("{}, {seed}", s.base_seed)
        };
        if let Some(combos) = run["per_mode_kill"].as_object() {
            for (key, c) in combos {
                add_combo(s.per_mode_kill.entry(key.clone()).or_default(), c);
                *self.elapsed_s_by_mode_kill.entry(key.clone()).or_default() += elapsed_s;
            }
        }
        for (table, field) in [
            (&mut s.coverage, "coverage"),
            (&mut s.findings_by_kind, "findings_by_kind"),
        ] {
            if let Some(entries) = run[field].as_object() {
                for (key, n) in entries {
                    *table.entry(key.clone()).or_default() += n.as_u64().unwrap_or(0);
                }
            }
        }
        s.cycles_per_s = rate(s.cycles, s.elapsed_s);
        s.crash_states_per_s = rate(s.crash_states, s.elapsed_s);
    }

    /// Computes the rates per combination; call after the last `add_json_lines`.
    pub fn finish(mut self) -> Merged {
        self.cycles_per_s_by_mode_kill = self
            .elapsed_s_by_mode_kill
            .iter()
            .map(|(key, seconds)| {
                let cycles = self.summary.per_mode_kill.get(key).map_or(0, |c| c.cycles);
                (key.clone(), rate(cycles, *seconds))
            })
            .collect();
        self
    }
}

fn rate(cycles: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        cycles as f64 / seconds
    } else {
        0.0
    }
}

/// The runs line, one run's summary format for the totals, then cycles/s per combination.
impl fmt::Display for Merged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} runs merged{} (base seeds {})",
            self.runs,
            if self.incomplete_runs > 0 {
                format!(", {} without a summary (not counted)", self.incomplete_runs)
            } else {
                String::new()
            },
            self.summary.base_seed
        )?;
        write!(f, "{}", self.summary)?;
        writeln!(
            f,
            "cycles/s per mode/kill (over the runs' summed wall-clock time):"
        )?;
        for (key, per_s) in &self.cycles_per_s_by_mode_kill {
            writeln!(f, "  {key:<20} {per_s:>9.1}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN_A: &str = r#"{"type":"begin","base_seed":"0x01"}
{"type":"finding","kind":"hole"}
{"type":"summary","base_seed":"0x01","cycles":10,"clean":9,"findings":1,"crash_states":7,"crash_states_damaged_in_middle":2,"elapsed_s":2.0,"cycles_per_s":5.0,"per_mode_kill":{"strict/offset":{"cycles":6,"clean":5,"findings":1,"killed":6,"power_loss":1,"recovery_crash":0,"corrupt":0,"io_errors":0,"multi_threaded":2,"generations":9},"async/time":{"cycles":4,"clean":4,"findings":0,"killed":3,"power_loss":0,"recovery_crash":1,"corrupt":1,"io_errors":0,"multi_threaded":1,"generations":4}},"coverage":{"payload/Write":5},"findings_by_kind":{"hole":1},"interrupted":false}
"#;
    const RUN_B: &str = r#"{"type":"begin","base_seed":"0x02"}
{"type":"summary","base_seed":"0x02","cycles":4,"clean":4,"findings":0,"crash_states":2,"elapsed_s":2.0,"cycles_per_s":2.0,"per_mode_kill":{"strict/offset":{"cycles":4,"clean":4,"findings":0,"killed":4,"power_loss":0,"recovery_crash":0,"corrupt":0,"io_errors":0,"multi_threaded":0,"generations":4}},"coverage":{"payload/Write":1,"boundary/CommitTxn":3},"findings_by_kind":{},"interrupted":true}
{"type":"begin","base_seed":"0x03"}
"#;

    #[test]
    fn runs_add_up_per_mode_and_kill() {
        let mut merged = Merged::default();
        merged.add_json_lines("a.jsonl", RUN_A).unwrap();
        merged.add_json_lines("b.jsonl", RUN_B).unwrap();
        let merged = merged.finish();
        assert_eq!(merged.runs, 2);
        assert_eq!(merged.incomplete_runs, 1, "0x03 began and never summarised");
        let s = &merged.summary;
        assert_eq!((s.cycles, s.clean, s.findings), (14, 13, 1));
        assert_eq!(s.elapsed_s, 4.0);
        assert_eq!(s.cycles_per_s, 3.5);
        assert!(s.interrupted);
        let strict = &s.per_mode_kill["strict/offset"];
        assert_eq!(
            (strict.cycles, strict.killed, strict.generations),
            (10, 10, 13)
        );
        assert_eq!(strict.multi_threaded, 2);
        assert_eq!(s.per_mode_kill["async/time"].corrupt, 1);
        assert_eq!(s.coverage["payload/Write"], 6);
        assert_eq!(s.crash_states, 9, "crash states add up");
        assert_eq!(s.crash_states_damaged_in_middle, 2);
        assert_eq!(s.coverage["boundary/CommitTxn"], 3);
        assert_eq!(s.findings_by_kind["hole"], 1);
        // strict/offset: 10 cycles over both runs' 4 s; async/time: 4 over run A's 2 s.
        assert_eq!(merged.cycles_per_s_by_mode_kill["strict/offset"], 2.5);
        assert_eq!(merged.cycles_per_s_by_mode_kill["async/time"], 2.0);
        let text = merged.to_string();
        assert!(
            text.starts_with("2 runs merged, 1 without a summary"),
            "{text}"
        );
        assert!(text.contains("14 cycles in 4.0s"), "{text}");
    }

    #[test]
    fn lines_that_are_not_run_output_are_errors_with_their_place() {
        let mut merged = Merged::default();
        let err = merged
            .add_json_lines("x", "{\"type\":\"begin\"}\nnot json\n")
            .unwrap_err();
        assert_eq!((err.source_name.as_str(), err.line), ("x", 2));
        let err = merged.add_json_lines("y", "{\"cycles\":3}\n").unwrap_err();
        assert!(err.reason.contains("type"), "{err}");
        let bench_summary = "{\"type\":\"summary\",\"strict_1t_to_plain_ratio\":1.2}\n";
        assert!(merged.add_json_lines("z", bench_summary).is_err());
    }
}
