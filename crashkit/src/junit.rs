//! The JUnit XML report of a matrix run (`torture matrix --junit FILE`), for CI systems
//! that show test results: one `<testcase>` per cell, a `<failure>` per finding whose text
//! is the whole finding (its reproduce line included), an `<error>` for a harness failure
//! and `<skipped>` for a cell the run never reached.

use std::fmt::Write;

use crate::matrix_run::{CellStatus, MatrixOutcome};

/// Escapes text for XML content and attribute values. Characters XML 1.0 cannot carry at
/// all (control characters other than tab, newline and carriage return) become `?`.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// The report as an XML document.
pub fn report(outcome: &MatrixOutcome, suite_name: &str) -> String {
    let count = |s: CellStatus| outcome.cells.iter().filter(|c| c.status == s).count();
    let failures = count(CellStatus::Red);
    let errors = count(CellStatus::HarnessError);
    let skipped = count(CellStatus::NotRun);
    let time: f64 = outcome.cells.iter().map(|c| c.summary.elapsed_s).sum();
    let mut x = String::new();
    // `write!` into a String cannot fail.
    let _ = writeln!(x, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        x,
        r#"<testsuites name="{}" tests="{}" failures="{failures}" errors="{errors}" skipped="{skipped}" time="{time:.3}">"#,
        escape(suite_name),
        outcome.cells.len()
    );
    let _ = writeln!(
        x,
        r#"  <testsuite name="{}" tests="{}" failures="{failures}" errors="{errors}" skipped="{skipped}" time="{time:.3}">"#,
        escape(suite_name),
        outcome.cells.len()
    );
    let _ = writeln!(
        x,
        r#"    <properties><property name="base_seed" value="{:#018x}"/></properties>"#,
        outcome.base_seed
    );
    for c in &outcome.cells {
        let _ = writeln!(
            x,
            r#"    <testcase classname="matrix.{}.{}" name="{}" time="{:.3}">"#,
            c.cell.mode,
            escape(&c.cell.fault_name),
            escape(&c.cell.name),
            c.summary.elapsed_s
        );
        match c.status {
            CellStatus::Clean | CellStatus::Red => {}
            CellStatus::HarnessError => {
                let message = c.error.as_deref().unwrap_or("harness failure");
                let _ = writeln!(
                    x,
                    r#"      <error type="harness-failure" message="{}">{}</error>"#,
                    escape(message),
                    escape(&format!("{message}\nrerun the cell: {}", c.repro))
                );
            }
            CellStatus::NotRun => {
                let _ = writeln!(
                    x,
                    r#"      <skipped message="the run stopped before this cell"/>"#
                );
            }
        }
        for finding in &c.findings {
            let kind = finding.violation.kind.name();
            let _ = writeln!(
                x,
                r#"      <failure type="{kind}" message="{}">{}</failure>"#,
                escape(&format!("{kind}: {}", finding.violation.detail)),
                escape(&format!("{finding}\nrerun the cell: {}", c.repro))
            );
        }
        if c.status == CellStatus::Red && c.findings.is_empty() {
            // The campaign counted findings this run did not keep (cannot happen through
            // run_cells); the test case must still fail.
            let _ = writeln!(
                x,
                r#"      <failure type="finding" message="{} findings">rerun the cell: {}</failure>"#,
                c.summary.findings,
                escape(&c.repro)
            );
        }
        let _ = writeln!(
            x,
            "      <system-out>{}</system-out>",
            escape(&format!(
                "seed {:#018x}, budget {}, {} cycles ({:.1} cycles/s), {} findings\nrerun: {}",
                c.seed,
                c.budget,
                c.summary.cycles,
                c.summary.cycles_per_s,
                c.summary.findings,
                c.repro
            ))
        );
        let _ = writeln!(x, "    </testcase>");
    }
    let _ = writeln!(x, "  </testsuite>");
    let _ = writeln!(x, "</testsuites>");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_keeps_text_and_drops_what_xml_cannot_carry() {
        assert_eq!(
            escape(r#"a<b>&"c"'d'"#),
            "a&lt;b&gt;&amp;&quot;c&quot;&apos;d&apos;"
        );
        assert_eq!(escape("line\nnext\ttab"), "line\nnext\ttab");
        assert_eq!(escape("nul\u{0}bell\u{7}"), "nul?bell?");
        assert_eq!(escape("ünïcode"), "ünïcode");
    }
}
