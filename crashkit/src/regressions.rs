//! The regression list: failing cases saved by `torture repro --save-regression`, one JSON
//! object per line, replayed by the test suite so a fixed bug stays fixed.

use std::io::{self, BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::case::Case;
use crate::finding::FindingKind;

/// One saved case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Regression {
    pub case: Case,
    /// What it found when saved (for humans; a replay must now be clean).
    pub found: String,
}

/// Appends a case to the list at `path` (created if missing).
pub fn append(path: &Path, case: &Case, kind: FindingKind) -> io::Result<()> {
    let line = serde_json::to_string(&Regression {
        case: *case,
        found: kind.name().to_string(),
    })
    .map_err(io::Error::other)?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(f, "{line}")
}

/// Reads a list; blank lines and lines starting with `#` are skipped.
pub fn load(path: &Path) -> io::Result<Vec<Regression>> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for (i, line) in io::BufReader::new(f).lines().enumerate() {
        let line = line?;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let r = serde_json::from_str(trimmed).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}:{}: {e}", path.display(), i + 1),
            )
        })?;
        out.push(r);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::{KillKind, ModeName};

    #[test]
    fn appended_cases_load_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("regressions.txt");
        let mut case = Case::new(0xabc, ModeName::Batched, KillKind::Watch);
        case.power_loss = true;
        case.limits.txns_max = Some(3);
        append(&path, &case, FindingKind::Hole).unwrap();
        append(
            &path,
            &Case::new(1, ModeName::Strict, KillKind::Offset),
            FindingKind::LostAckedTxn,
        )
        .unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded[0].case, case);
        assert_eq!(loaded[0].found, "hole");
        assert!(load(&dir.path().join("missing")).unwrap().is_empty());
    }
}
