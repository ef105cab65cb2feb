//! The child-to-parent protocol: one text line per event, written with a single `write(2)`
//! before the child moves on, so a SIGKILL can never lose an event the child acted upon.
//!
//! ```text
//! attempt <idx>
//! ack <idx> <txn_id> <first_version> <end_version> <end_offset_bytes> <durable 0|1>
//! error <idx> <message>
//! synced <offset_bytes>
//! sync-failed
//! flush-error <idx> <message>
//! open-error <message>
//! opened
//! done
//! close-error <message>
//! ```

use std::fmt;

/// One event reported by a child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The child is about to commit workload transaction `idx`.
    Attempt { idx: usize },
    /// `commit` of transaction `idx` returned `Ok`.
    Ack {
        idx: usize,
        txn_id: u64,
        versions: std::ops::Range<u64>,
        end_offset_bytes: u64,
        durable: bool,
    },
    /// `commit` of transaction `idx` returned an error.
    Error { idx: usize, message: String },
    /// An fdatasync covering the first `offset_bytes` of the WAL completed.
    Synced { offset_bytes: u64 },
    /// An fdatasync failed; written before the error reaches the engine, so any commit
    /// attempted after this line must not be acknowledged.
    SyncFailed,
    /// `flush` after transaction `idx` failed.
    FlushError { idx: usize, message: String },
    /// Opening the database failed.
    OpenError { message: String },
    /// Opening (recovering) the database succeeded.
    Opened,
    /// The workload ran to its end and `close` succeeded.
    Done,
    /// The workload ran to its end and `close` failed.
    CloseError { message: String },
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Attempt { idx } => write!(f, "attempt {idx}"),
            Event::Ack {
                idx,
                txn_id,
                versions,
                end_offset_bytes,
                durable,
            } => write!(
                f,
                "ack {idx} {txn_id} {} {} {end_offset_bytes} {}",
                versions.start,
                versions.end,
                u8::from(*durable)
            ),
            Event::Error { idx, message } => write!(f, "error {idx} {}", one_line(message)),
            Event::Synced { offset_bytes } => write!(f, "synced {offset_bytes}"),
            Event::SyncFailed => write!(f, "sync-failed"),
            Event::FlushError { idx, message } => {
                write!(f, "flush-error {idx} {}", one_line(message))
            }
            Event::OpenError { message } => write!(f, "open-error {}", one_line(message)),
            Event::Opened => write!(f, "opened"),
            Event::Done => write!(f, "done"),
            Event::CloseError { message } => write!(f, "close-error {}", one_line(message)),
        }
    }
}

/// A line the parent could not parse: a protocol bug, reported as a harness failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unparseable child protocol line {:?}", self.line)
    }
}

impl std::error::Error for ParseError {}

impl Event {
    pub fn parse(line: &str) -> Result<Event, ParseError> {
        let err = || ParseError {
            line: line.to_string(),
        };
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        let nums = |n: usize| -> Result<Vec<u64>, ParseError> {
            let v: Vec<u64> = rest
                .split(' ')
                .map(|s| s.parse::<u64>())
                .collect::<Result<_, _>>()
                .map_err(|_| err())?;
            if v.len() == n {
                Ok(v)
            } else {
                Err(err())
            }
        };
        let idx_msg = || -> Result<(usize, String), ParseError> {
            let (idx, msg) = rest.split_once(' ').unwrap_or((rest, ""));
            Ok((idx.parse().map_err(|_| err())?, msg.to_string()))
        };
        Ok(match word {
            "attempt" => Event::Attempt {
                idx: nums(1)?[0] as usize,
            },
            "ack" => {
                let v = nums(6)?;
                if v[5] > 1 || v[2] > v[3] {
                    return Err(err());
                }
                Event::Ack {
                    idx: v[0] as usize,
                    txn_id: v[1],
                    versions: v[2]..v[3],
                    end_offset_bytes: v[4],
                    durable: v[5] == 1,
                }
            }
            "error" => {
                let (idx, message) = idx_msg()?;
                Event::Error { idx, message }
            }
            "synced" => Event::Synced {
                offset_bytes: nums(1)?[0],
            },
            "flush-error" => {
                let (idx, message) = idx_msg()?;
                Event::FlushError { idx, message }
            }
            "open-error" => Event::OpenError {
                message: rest.to_string(),
            },
            "opened" if rest.is_empty() => Event::Opened,
            "sync-failed" if rest.is_empty() => Event::SyncFailed,
            "done" if rest.is_empty() => Event::Done,
            "close-error" => Event::CloseError {
                message: rest.to_string(),
            },
            _ => return Err(err()),
        })
    }
}

/// Writes events to a file descriptor, one `write(2)` per line (lines stay far below
/// PIPE_BUF, so lines from the flusher thread and the main thread never interleave).
#[derive(Debug)]
pub struct EventWriter {
    fd: i32,
    /// The writer's I/O trace, when it traces: every event sent is mirrored there too
    /// (see [`crate::trace`], `ev` lines).
    mirror: std::sync::OnceLock<std::sync::Arc<crate::trace::TraceLog>>,
}

impl EventWriter {
    pub fn new(fd: i32) -> EventWriter {
        EventWriter {
            fd,
            mirror: std::sync::OnceLock::new(),
        }
    }

    /// From now on, mirrors every event sent into `trace` after sending it (the first
    /// call wins).
    pub fn mirror_to(&self, trace: std::sync::Arc<crate::trace::TraceLog>) {
        let _ = self.mirror.set(trace);
    }

    /// Sends one event. A failed write means the parent is gone: the child has nobody to
    /// report to, so it exits at once rather than run on unobserved.
    pub fn send(&self, event: &Event) {
        let mut line = event.to_string();
        line.truncate(3500);
        let mirrored = self.mirror.get().map(|t| (t, line.clone()));
        line.push('\n');
        let mut bytes = line.as_bytes();
        while !bytes.is_empty() {
            // SAFETY: `bytes` is a valid buffer of `bytes.len()` bytes for the call.
            let n = unsafe { libc::write(self.fd, bytes.as_ptr().cast(), bytes.len()) };
            if n < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                std::process::exit(101);
            }
            bytes = &bytes[n as usize..];
        }
        if let Some((trace, line)) = mirrored {
            trace.event(&line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_round_trips_through_its_line() {
        let events = [
            Event::Attempt { idx: 3 },
            Event::Ack {
                idx: 3,
                txn_id: 9,
                versions: 10..14,
                end_offset_bytes: 4096,
                durable: true,
            },
            Event::Error {
                idx: 4,
                message: "fsync failed\nbadly".into(),
            },
            Event::Synced { offset_bytes: 77 },
            Event::SyncFailed,
            Event::FlushError {
                idx: 1,
                message: "x".into(),
            },
            Event::OpenError {
                message: "locked".into(),
            },
            Event::Opened,
            Event::Done,
            Event::CloseError {
                message: "poisoned".into(),
            },
        ];
        for e in events {
            let parsed = Event::parse(&e.to_string()).unwrap();
            match (&e, &parsed) {
                (Event::Error { message, .. }, Event::Error { message: m2, .. }) => {
                    assert_eq!(m2, &message.replace('\n', " "))
                }
                _ => assert_eq!(parsed, e),
            }
        }
        assert!(Event::parse("ack 1 2 3").is_err());
        assert!(
            Event::parse("ack 1 2 5 3 9 0").is_err(),
            "versions must not run backwards"
        );
        assert!(Event::parse("bogus").is_err());
    }
}
