//! The writer's run and its crash points: the traced run itself ([`run_writer_child`]),
//! every file's history rebuilt by undoing the traced operations from the final files
//! backwards ([`FileHistory`]), the crash points (operation boundaries and bytes inside
//! writes, [`Point`]), the files at a point, and the trace and ledger as they were at a
//! point ([`trace_prefix`], [`ledger_of`]).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::case::Case;
use crate::checker::Base;
use crate::child::{child_args, Role};
use crate::cycle::ChildCommand;
use crate::oracle::{self, Ledger, State};
use crate::protocol::Event;
use crate::trace::{DataOp, Trace};
use crate::workload::{RecordSpan, Workload};
use crate::wrong_engine::WrongEngine;

use super::{io_err, SweepError};

/// One file (inode) of the writer's database directory across the run.
#[derive(Debug)]
pub(super) struct FileHistory {
    /// Its path relative to the database directory when opened, and after each completed
    /// rename: `(line the rename completed on, new path)`.
    path_at_open: PathBuf,
    renames: Vec<(usize, PathBuf)>,
    open_line: usize,
    /// Indexes into `trace.ops` of its writes, size changes and allocations, in effect
    /// order (the order they ended in).
    ops: Vec<usize>,
    /// `ended[k]`: the line `ops[k]` ended on (`usize::MAX`: never).
    ended: Vec<usize>,
    /// The content before any operation, and after each.
    initial: Vec<u8>,
    after: Vec<Vec<u8>>,
}

impl FileHistory {
    pub(super) fn path_at(&self, lines: usize) -> &Path {
        self.renames
            .iter()
            .rev()
            .find(|(line, _)| *line < lines)
            .map_or(&self.path_at_open, |(_, p)| p)
    }

    /// The content once the first `lines` lines happened (an unfinished operation not at
    /// all).
    pub(super) fn content_at(&self, lines: usize) -> &[u8] {
        match self.ended.partition_point(|e| *e < lines) {
            0 => &self.initial,
            k => &self.after[k - 1],
        }
    }
}

/// The writer's run, ready to be swept.
pub(super) struct Run {
    pub(super) case: Case,
    pub(super) workload: Workload,
    pub(super) trace: Trace,
    pub(super) trace_text: String,
    pub(super) db_dir: PathBuf,
    pub(super) files: Vec<FileHistory>,
    /// Whether line `i` is a mirrored event.
    pub(super) is_event: Vec<bool>,
    pub(super) points: Vec<Point>,
    pub(super) boundary_points: usize,
    /// The whole run's ledger, its first versions and prefix states (one writer: every
    /// point's ledger is a prefix of it).
    pub(super) full_ledger: Ledger,
    pub(super) firsts: Vec<u64>,
    pub(super) states: Vec<State>,
    pub(super) written: Vec<RecordSpan>,
}

/// A crash point: the first `lines` trace lines happened; `in_flight`: the write whose
/// begin line is the last of them had its first `bytes` bytes reach the page cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Point {
    pub(super) lines: usize,
    pub(super) in_flight: Option<(usize, u64)>,
}

/// The undone operation `op` on `content` (its state right after `op`).
fn undo(op: &crate::trace::FileOp, content: &mut Vec<u8>) {
    let Some((from, to)) = op.touched_range() else {
        return; // a sync changes no bytes
    };
    // The old size back (undoing a size change), then the old bytes of the touched range
    // inside it: `op.old`'s bytes, zeros after them.
    let size_before = op.size_before_bytes as usize;
    content.resize(size_before, 0);
    let (from, to) = (from as usize, (to as usize).min(size_before));
    if to > from {
        let old = &op.old[..op.old.len().min(to - from)];
        content[from..from + old.len()].copy_from_slice(old);
        content[from + old.len()..to].fill(0);
    }
}

pub(super) fn rel(db_dir: &Path, path: &Path) -> Option<PathBuf> {
    path.strip_prefix(db_dir).ok().map(Path::to_path_buf)
}

impl Run {
    pub(super) fn load(case: Case, db_dir: &Path, trace_text: String) -> Result<Run, SweepError> {
        let trace = Trace::parse(&trace_text);
        let bad = |detail: String| SweepError::BadTrace { detail };
        if trace.bad_lines > 0 {
            return Err(bad(format!("{} lines do not parse", trace.bad_lines)));
        }
        let n_lines = trace_text.lines().count();
        let mut is_event = vec![false; n_lines];
        for (line, _) in &trace.events {
            is_event[*line] = true;
        }
        // Files (inodes): a file opened without being created at the path a live file has
        // is that file.
        let mut files: Vec<FileHistory> = Vec::new();
        let mut fid_file: std::collections::BTreeMap<u32, usize> = Default::default();
        for f in &trace.files {
            let Some(path) = rel(db_dir, &f.path) else {
                continue;
            };
            let existing = files
                .iter()
                .position(|h| !f.created && h.path_at(f.line) == path);
            let idx = existing.unwrap_or_else(|| {
                files.push(FileHistory {
                    path_at_open: path,
                    renames: Vec::new(),
                    open_line: f.line,
                    ops: Vec::new(),
                    ended: Vec::new(),
                    initial: Vec::new(),
                    after: Vec::new(),
                });
                files.len() - 1
            });
            fid_file.insert(f.fid, idx);
        }
        for d in trace.dir_ops.iter().filter(|d| d.verb == "rename") {
            let (Some(done), Some(to)) = (d.done_line, &d.to) else {
                continue;
            };
            let (Some(from), Some(to)) = (rel(db_dir, &d.path), rel(db_dir, to)) else {
                continue;
            };
            if let Some(h) = files
                .iter_mut()
                .find(|h| h.open_line < d.begin_line && h.path_at(d.begin_line) == from)
            {
                h.renames.push((done, to));
            }
        }
        for (i, op) in trace.ops.iter().enumerate() {
            if op.skipped || matches!(op.op, DataOp::Sync | DataOp::SyncDir) {
                continue;
            }
            if op.failed || op.ended_line.is_none() {
                return Err(bad(format!(
                    "operation on line {} failed or never ended in a run that completed",
                    op.begin_line
                )));
            }
            if let Some(h) = fid_file.get(&op.fid) {
                files[*h].ops.push(i);
            }
        }
        for h in &mut files {
            h.ops
                .sort_by_key(|i| (trace.ops[*i].ended_line, trace.ops[*i].begin_line));
            h.ended = h
                .ops
                .iter()
                .map(|i| trace.ops[*i].ended_line.unwrap_or(usize::MAX))
                .collect();
            let final_path = db_dir.join(h.path_at(usize::MAX));
            let mut content = std::fs::read(&final_path)
                .map_err(io_err(format!("reading {}", final_path.display())))?;
            let mut after = vec![Vec::new(); h.ops.len()];
            for k in (0..h.ops.len()).rev() {
                after[k] = content.clone();
                undo(&trace.ops[h.ops[k]], &mut content);
            }
            let len_at_open = trace
                .files
                .iter()
                .find(|f| f.line == h.open_line)
                .map_or(0, |f| f.len_at_open_bytes);
            if content.len() as u64 != len_at_open {
                return Err(bad(format!(
                    "undoing every operation on {} gives {} bytes, it had {len_at_open} when opened",
                    h.path_at_open.display(),
                    content.len()
                )));
            }
            h.initial = content;
            h.after = after;
        }
        // Points: boundaries not directly followed by an event, then the bytes of a write
        // whose begin line ends the prefix.
        let mut points = Vec::new();
        let mut boundary_points = 0;
        let write_begun_on: std::collections::BTreeMap<usize, usize> = trace
            .ops
            .iter()
            .enumerate()
            .filter(|(_, o)| matches!(o.op, DataOp::Write { .. }) && fid_file.contains_key(&o.fid))
            .map(|(i, o)| (o.begin_line, i))
            .collect();
        for lines in 0..=n_lines {
            if is_event.get(lines).is_none_or(|e| !e) {
                points.push(Point {
                    lines,
                    in_flight: None,
                });
                boundary_points += 1;
            }
            if let Some(op) = lines.checked_sub(1).and_then(|l| write_begun_on.get(&l)) {
                if let DataOp::Write { len_bytes, .. } = trace.ops[*op].op {
                    for b in 1..len_bytes {
                        points.push(Point {
                            lines,
                            in_flight: Some((*op, b)),
                        });
                    }
                }
            }
        }
        let workload = Workload::for_case(&case);
        let full_ledger = ledger_of(&trace, usize::MAX)?;
        let base = Base::empty();
        let firsts = oracle::first_versions(&workload, &full_ledger, base.next_version);
        let states = oracle::prefix_states(&workload, &full_ledger, &base.state, &firsts);
        let final_wal = files
            .iter()
            .find(|h| h.path_at(usize::MAX) == Path::new(engine::WAL_FILE_NAME))
            .map(|h| h.content_at(usize::MAX).to_vec())
            .unwrap_or_default();
        let layout = workload.record_layout();
        let written =
            crate::workload::spans_in_image(&final_wal, engine::wal::HEADER_LEN as u64, &layout);
        Ok(Run {
            case,
            workload,
            trace,
            trace_text,
            db_dir: db_dir.to_path_buf(),
            files,
            is_event,
            points,
            boundary_points,
            full_ledger,
            firsts,
            states,
            written,
        })
    }

    /// The files at `point` (relative path, page-cache content).
    pub(super) fn files_at(&self, point: Point) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        for h in self.files.iter().filter(|h| h.open_line < point.lines) {
            let mut content = h.content_at(point.lines).to_vec();
            if let Some((op, bytes)) = point.in_flight {
                if let Some(k) = h.ops.iter().position(|i| *i == op) {
                    if let DataOp::Write { offset_bytes, .. } = self.trace.ops[op].op {
                        let (from, to) = (offset_bytes as usize, (offset_bytes + bytes) as usize);
                        if content.len() < to {
                            content.resize(to, 0);
                        }
                        content[from..to].copy_from_slice(&h.after[k][from..to]);
                    }
                }
            }
            out.push((h.path_at(point.lines).to_path_buf(), content));
        }
        out
    }

    pub(super) fn describe_point(&self, point: Point) -> String {
        let line = |i: usize| {
            let text = self.trace_text.lines().nth(i).unwrap_or("");
            let mut short: String = text.chars().take(80).collect();
            if short.len() < text.len() {
                short.push_str("...");
            }
            short
        };
        let mut s = match point.lines {
            0 => "before the first traced operation".to_string(),
            n => format!("after trace line {} `{}`", n - 1, line(n - 1)),
        };
        if let Some((op, bytes)) = point.in_flight {
            if let DataOp::Write {
                offset_bytes,
                len_bytes,
            } = self.trace.ops[op].op
            {
                let name = self
                    .trace
                    .files
                    .iter()
                    .find(|f| f.fid == self.trace.ops[op].fid)
                    .and_then(|f| f.path.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                s.push_str(&format!(
                    ", inside that write: {bytes} of its {len_bytes} bytes at {name} offset {offset_bytes} reached the page cache"
                ));
            }
        }
        if let Some(next) = self.trace_text.lines().nth(point.lines) {
            let _ = next;
            s.push_str(&format!("; next: `{}`", line(point.lines)));
        }
        s
    }
}

/// The ledger of the events mirrored on the first `lines` lines.
pub(super) fn ledger_of(trace: &Trace, lines: usize) -> Result<Ledger, SweepError> {
    let mut ledger = Ledger::default();
    for (line, text) in trace.events.iter().take_while(|(l, _)| *l < lines) {
        let event = Event::parse(text).map_err(|e| SweepError::BadTrace {
            detail: format!("line {line}: {e}"),
        })?;
        ledger.record(event);
    }
    Ok(ledger)
}

/// Runs the writer child of `case` in `db_dir` to the end (its trace next to it).
pub(super) fn run_writer(
    child: &ChildCommand,
    case: &Case,
    db_dir: &Path,
    wrong: Option<WrongEngine>,
) -> Result<Ledger, SweepError> {
    run_writer_child(child, case, db_dir, wrong, true)
}

/// Runs the writer child of `case` in `db_dir` (its trace next to it) and returns its
/// ledger; with `must_finish`, a writer that did not run its workload to a clean end is
/// an error (otherwise a planned self-kill is how it ends).
pub(crate) fn run_writer_child(
    child: &ChildCommand,
    case: &Case,
    db_dir: &Path,
    wrong: Option<WrongEngine>,
    must_finish: bool,
) -> Result<Ledger, SweepError> {
    let stderr_path = db_dir.with_extension("stderr");
    let stderr = std::fs::File::create(&stderr_path)
        .map_err(io_err(format!("creating {}", stderr_path.display())))?;
    let mut cmd = Command::new(&child.program);
    cmd.args(&child.args_prefix)
        .args(child_args(Role::Writer, db_dir, case));
    if let Some(w) = wrong.filter(|w| w.acts_in_writer()) {
        cmd.arg("--wrong")
            .arg(serde_json::to_string(&w).expect("a wrong engine serializes"));
    }
    let mut process = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .process_group(0)
        .spawn()
        .map_err(|e| SweepError::Writer {
            detail: format!("cannot start {}: {e}", child.program.display()),
        })?;
    let mut ledger = Ledger::default();
    if let Some(stdout) = process.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line.map_err(io_err("reading the writer's events"))?;
            let event = Event::parse(&line).map_err(|e| SweepError::Writer {
                detail: e.to_string(),
            })?;
            ledger.record(event);
        }
    }
    let status = process.wait().map_err(io_err("waiting for the writer"))?;
    if must_finish && (!status.success() || !ledger.done) {
        let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        return Err(SweepError::Writer {
            detail: format!(
                "exited with {status} ({}); close error: {}; stderr: {}",
                if ledger.done { "done" } else { "not done" },
                ledger.close_error.as_deref().unwrap_or("none"),
                stderr.trim()
            ),
        });
    }
    Ok(ledger)
}

/// The trace as it was once its first `lines` lines were written.
pub(super) fn trace_prefix(trace: &Trace, lines: usize) -> Trace {
    let cut = |l: Option<usize>| l.filter(|l| *l < lines);
    Trace {
        files: trace
            .files
            .iter()
            .filter(|f| f.line < lines)
            .cloned()
            .collect(),
        ops: trace
            .ops
            .iter()
            .filter(|o| o.begin_line < lines)
            .map(|o| {
                let ended = cut(o.ended_line);
                crate::trace::FileOp {
                    done_line: cut(o.done_line),
                    ended_line: ended,
                    failed: o.failed && ended.is_some(),
                    skipped: o.skipped && ended.is_some(),
                    ..o.clone()
                }
            })
            .collect(),
        dir_ops: trace
            .dir_ops
            .iter()
            .filter(|d| d.begin_line < lines)
            .map(|d| crate::trace::DirOp {
                done_line: cut(d.done_line),
                failed: d.failed && d.done_line.is_none_or(|l| l < lines),
                ..d.clone()
            })
            .collect(),
        events: trace
            .events
            .iter()
            .filter(|(l, _)| *l < lines)
            .cloned()
            .collect(),
        bad_lines: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Undoing a traced write, allocation and truncation gives back the content before
    /// each.
    #[test]
    fn undoing_operations_restores_what_they_overwrote() {
        let trace = Trace::parse(
            "open 1 1 1 0 /d/wal.log\nw 2 1 0 4 0 -\ndone 2\nal 3 1 4 8 4 -\ndone 3\n\
             w 4 1 2 4 12 0304\ndone 4\nsl 5 1 6 12 0000\ndone 5\n",
        );
        let mut content = vec![1u8, 2, 9, 9, 9, 9];
        let mut seen = vec![content.clone()];
        for op in trace.ops.iter().rev() {
            undo(op, &mut content);
            seen.push(content.clone());
        }
        assert_eq!(
            seen[1],
            vec![1, 2, 9, 9, 9, 9, 0, 0, 0, 0, 0, 0],
            "cut bytes come back"
        );
        assert_eq!(seen[2], vec![1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(seen[3], vec![1, 2, 3, 4], "the allocation undone");
        assert_eq!(seen[4], Vec::<u8>::new());
    }
}
