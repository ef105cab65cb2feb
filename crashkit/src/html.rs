//! `torture report --html`: a merged report as one self-contained HTML page (no scripts,
//! no external files), for people who would rather look than read.
//!
//! The page holds the totals, the mode x kill table with cycles/s, findings by kind, and
//! an SVG grid of where kills landed in the log: one row per record type, one column per
//! region of a record (length, type and checksum of the frame header, payload, exactly at a
//! boundary, past the end of what the workload writes), each cell shaded by its count.

use std::fmt::Write as _;

use crate::merge::Merged;

/// The regions of a record, in the order a record's bytes come (the columns).
const REGIONS: [&str; 5] = ["header", "checksum", "payload", "boundary", "past-end"];

/// Escapes text for HTML element content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The kill-site grid: `coverage` keys are `region/RecordType` (see
/// [`crate::coverage`]); sites whose region is not one of [`REGIONS`] get a column of
/// their own at the end.
fn kill_site_svg(merged: &Merged) -> String {
    let coverage = &merged.summary.coverage;
    let mut regions: Vec<String> = REGIONS.iter().map(|r| r.to_string()).collect();
    let mut types: Vec<String> = Vec::new();
    for key in coverage.keys() {
        let (region, record_type) = key.split_once('/').unwrap_or((key.as_str(), "?"));
        if !regions.iter().any(|r| r == region) {
            regions.push(region.to_string());
        }
        if !types.iter().any(|t| t == record_type) {
            types.push(record_type.to_string());
        }
    }
    types.sort();
    let max = coverage.values().copied().max().unwrap_or(0).max(1);
    let (label_w, cell_w, cell_h, head_h) = (130, 90, 28, 30);
    let width = label_w + cell_w * regions.len();
    let height = head_h + cell_h * types.len().max(1);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="where kills landed">"#
    );
    for (col, region) in regions.iter().enumerate() {
        let x = label_w + col * cell_w + cell_w / 2;
        let _ = write!(
            svg,
            r#"<text x="{x}" y="20" text-anchor="middle" font-size="12">{}</text>"#,
            esc(region)
        );
    }
    for (row, record_type) in types.iter().enumerate() {
        let y = head_h + row * cell_h;
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end" font-size="12">{}</text>"#,
            label_w - 8,
            y + cell_h / 2 + 4,
            esc(record_type)
        );
        for (col, region) in regions.iter().enumerate() {
            let key = format!("{region}/{record_type}");
            let n = coverage.get(&key).copied().unwrap_or(0);
            // Darker for more kills; an empty cell stays white, so gaps stand out.
            let shade = if n == 0 {
                255
            } else {
                215 - (175 * n / max) as u32
            };
            let x = label_w + col * cell_w;
            let _ = write!(
                svg,
                r##"<rect x="{x}" y="{y}" width="{}" height="{}" fill="rgb({shade},{shade},255)" stroke="#999"><title>{}: {n} kills</title></rect>"##,
                cell_w - 2,
                cell_h - 2,
                esc(&key)
            );
            if n > 0 {
                let _ = write!(
                    svg,
                    r##"<text x="{}" y="{}" text-anchor="middle" font-size="11" fill="{}">{n}</text>"##,
                    x + cell_w / 2,
                    y + cell_h / 2 + 4,
                    if shade < 130 { "#fff" } else { "#000" }
                );
            }
        }
    }
    svg.push_str("</svg>");
    svg
}

/// The whole page.
pub fn render(merged: &Merged) -> String {
    let s = &merged.summary;
    let mut page = String::new();
    page.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>torture report</title><style>\
         body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
         th{background:#eee}td:first-child{text-align:left}\
         .bad{color:#b00;font-weight:bold}</style></head><body>\n",
    );
    let _ = writeln!(page, "<h1>torture report</h1>");
    let _ = writeln!(
        page,
        "<p>{} runs merged{}; base seeds {}.</p>",
        merged.runs,
        if merged.incomplete_runs > 0 {
            format!(
                ", <span class=\"bad\">{} without a summary</span>",
                merged.incomplete_runs
            )
        } else {
            String::new()
        },
        esc(&s.base_seed)
    );
    let _ = writeln!(
        page,
        "<p>{} cycles in {:.1} s ({:.1} cycles/s): {} clean, <span class=\"{}\">{} findings</span>. \
         {} crash states checked ({:.1}/s), {} with damage in the middle of unsynced bytes.</p>",
        s.cycles,
        s.elapsed_s,
        s.cycles_per_s,
        s.clean,
        if s.findings > 0 { "bad" } else { "" },
        s.findings,
        s.crash_states,
        s.crash_states_per_s,
        s.crash_states_damaged_in_middle
    );
    if !s.findings_by_kind.is_empty() {
        page.push_str("<h2>Findings by kind</h2><table><tr><th>kind</th><th>findings</th></tr>");
        for (kind, n) in &s.findings_by_kind {
            let _ = write!(
                page,
                "<tr><td>{}</td><td class=\"bad\">{n}</td></tr>",
                esc(kind)
            );
        }
        page.push_str("</table>\n");
    }
    page.push_str(
        "<h2>Mode x kill</h2><table><tr><th>mode/kill</th><th>cycles</th><th>clean</th>\
         <th>findings</th><th>killed</th><th>power-loss</th><th>recovery-crash</th>\
         <th>corrupt</th><th>io-errors</th><th>threaded</th><th>cycles/s</th></tr>",
    );
    for (key, c) in &s.per_mode_kill {
        let per_s = merged
            .cycles_per_s_by_mode_kill
            .get(key)
            .copied()
            .unwrap_or(0.0);
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td{}>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{per_s:.1}</td></tr>",
            esc(key),
            c.cycles,
            c.clean,
            if c.findings > 0 { " class=\"bad\"" } else { "" },
            c.findings,
            c.killed,
            c.power_loss,
            c.recovery_crash,
            c.corrupt,
            c.io_errors,
            c.multi_threaded,
        );
    }
    page.push_str("</table>\n");
    page.push_str(
        "<h2>Where kills landed</h2><p>Rows: the record a kill fell in (or ended at); \
         columns: where in that record. A white cell is a place no kill reached.</p>\n",
    );
    page.push_str(&kill_site_svg(merged));
    page.push_str("\n</body></html>\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
