//! Timeline history files (`access/transam/timeline.c`): `0000000N.history`, one
//! line per ancestor, `parentTLI<TAB>X/X<TAB>reason`, ancestors first.

use crate::lsn::{Lsn, TimeLineId};

/// One ancestor timeline: it ran until `switchpoint`, where `tli + 1..` forked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The ancestor timeline.
    pub tli: TimeLineId,
    /// The first LSN that is no longer on `tli` (`TimeLineHistoryEntry.end`).
    pub switchpoint: Lsn,
    /// The free-text reason (may be empty).
    pub reason: String,
}

/// The parsed history of one timeline: its ancestors, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineHistory {
    /// The timeline this history belongs to.
    pub tli: TimeLineId,
    /// Its ancestors, oldest first, each with the point where it ended.
    pub ancestors: Vec<HistoryEntry>,
}

/// A history file that `readTimeLineHistory` would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// A line does not start with a timeline id.
    #[error("syntax error in history file: {line}")]
    NoTimeline {
        /// The offending line.
        line: String,
    },
    /// A line has a timeline id but no switch point.
    #[error("syntax error in history file: {line}")]
    NoSwitchpoint {
        /// The offending line.
        line: String,
    },
    /// Timeline ids are not increasing, or not below the file's own timeline.
    #[error("invalid data in history file: {line}")]
    NotIncreasing {
        /// The offending line.
        line: String,
    },
}

impl HistoryError {
    /// PostgreSQL's errhint for this error.
    pub fn hint(&self) -> &'static str {
        match self {
            HistoryError::NoTimeline { .. } => "Expected a numeric timeline ID.",
            HistoryError::NoSwitchpoint { .. } => {
                "Expected a write-ahead log switchpoint location."
            }
            HistoryError::NotIncreasing { .. } => "Timeline IDs must be in increasing sequence.",
        }
    }
}

impl TimelineHistory {
    /// The history of timeline 1, which has no file and no ancestors.
    pub fn first() -> Self {
        TimelineHistory { tli: TimeLineId(1), ancestors: Vec::new() }
    }

    /// Parses the contents of `tli`'s history file as `readTimeLineHistory` does.
    ///
    /// # Errors
    /// A [`HistoryError`] for a line PostgreSQL would reject.
    pub fn parse(tli: TimeLineId, content: &[u8]) -> Result<Self, HistoryError> {
        let text = String::from_utf8_lossy(content);
        let mut ancestors: Vec<HistoryEntry> = Vec::new();
        for raw in text.lines() {
            let line = raw.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let entry = parse_line(line)?;
            let prev = ancestors.last().map(|e| e.tli);
            if prev.is_some_and(|p| entry.tli <= p) || entry.tli >= tli {
                return Err(HistoryError::NotIncreasing { line: raw.to_string() });
            }
            ancestors.push(entry);
        }
        Ok(TimelineHistory { tli, ancestors })
    }

    /// The timeline that contains `lsn` in this history (`tliOfPointInHistory`).
    pub fn tli_of_point(&self, lsn: Lsn) -> TimeLineId {
        self.ancestors.iter().find(|e| lsn < e.switchpoint).map_or(self.tli, |e| e.tli)
    }

    /// Where `tli` ended in this history, and the timeline that followed it
    /// (`tliSwitchPoint`). `None` if `tli` is this history's own (unended) timeline
    /// or not in it at all.
    pub fn switch_point(&self, tli: TimeLineId) -> Option<(Lsn, TimeLineId)> {
        let i = self.ancestors.iter().position(|e| e.tli == tli)?;
        let next = self.ancestors.get(i + 1).map_or(self.tli, |e| e.tli);
        Some((self.ancestors[i].switchpoint, next))
    }

    /// Whether `tli` is this timeline or one of its ancestors (`tliInHistory`).
    pub fn contains(&self, tli: TimeLineId) -> bool {
        tli == self.tli || self.ancestors.iter().any(|e| e.tli == tli)
    }

    /// The file contents a new child timeline writes (`writeTimeLineHistory`): the
    /// parent's file (if it has one) followed by one new line for the fork.
    pub fn child_file(
        parent_content: Option<&[u8]>,
        parent: TimeLineId,
        switchpoint: Lsn,
        reason: &str,
    ) -> Vec<u8> {
        let mut out = parent_content.map(<[u8]>::to_vec).unwrap_or_default();
        if parent_content.is_some() {
            out.push(b'\n');
        }
        out.extend_from_slice(format!("{}\t{}\t{}\n", parent.0, switchpoint, reason).as_bytes());
        out
    }
}

fn parse_line(line: &str) -> Result<HistoryEntry, HistoryError> {
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    let tli: u32 =
        line[..digits].parse().map_err(|_| HistoryError::NoTimeline { line: line.to_string() })?;
    let rest = line[digits..].strip_prefix('\t');
    let mut fields = rest.map(|r| r.splitn(2, '\t'));
    let lsn = fields.as_mut().and_then(Iterator::next).and_then(|s| s.parse::<Lsn>().ok());
    let reason = fields.as_mut().and_then(Iterator::next).unwrap_or("").to_string();
    let switchpoint = lsn.ok_or_else(|| HistoryError::NoSwitchpoint { line: line.to_string() })?;
    Ok(HistoryEntry { tli: TimeLineId(tli), switchpoint, reason })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_real_history_file() {
        let h =
            TimelineHistory::parse(TimeLineId(2), b"1\t0/4052B50\tno recovery target specified\n")
                .unwrap();
        assert_eq!(h.ancestors.len(), 1);
        assert_eq!(h.ancestors[0].switchpoint, Lsn(0x0405_2B50));
        assert_eq!(h.tli_of_point(Lsn(0x0405_2B4F)), TimeLineId(1));
        assert_eq!(h.tli_of_point(Lsn(0x0405_2B50)), TimeLineId(2));
        assert_eq!(h.switch_point(TimeLineId(1)), Some((Lsn(0x0405_2B50), TimeLineId(2))));
        assert_eq!(h.switch_point(TimeLineId(2)), None);
        assert!(h.contains(TimeLineId(1)) && !h.contains(TimeLineId(3)));
    }

    #[test]
    fn child_file_matches_postgres_layout() {
        let f2 = TimelineHistory::child_file(
            None,
            TimeLineId(1),
            Lsn(0x100),
            "no recovery target specified",
        );
        assert_eq!(f2, b"1\t0/100\tno recovery target specified\n");
        let f3 = TimelineHistory::child_file(Some(&f2), TimeLineId(2), Lsn(0x200), "r");
        assert_eq!(f3, b"1\t0/100\tno recovery target specified\n\n2\t0/200\tr\n");
        let h = TimelineHistory::parse(TimeLineId(3), &f3).unwrap();
        assert_eq!(h.switch_point(TimeLineId(1)), Some((Lsn(0x100), TimeLineId(2))));
        assert_eq!(h.tli_of_point(Lsn(0x150)), TimeLineId(2));
    }

    #[test]
    fn rejects_what_postgres_rejects() {
        assert!(matches!(
            TimelineHistory::parse(TimeLineId(3), b"x\n"),
            Err(HistoryError::NoTimeline { .. })
        ));
        assert!(matches!(
            TimelineHistory::parse(TimeLineId(3), b"1\n"),
            Err(HistoryError::NoSwitchpoint { .. })
        ));
        assert!(matches!(
            TimelineHistory::parse(TimeLineId(3), b"2\t0/1\tx\n1\t0/2\ty\n"),
            Err(HistoryError::NotIncreasing { .. })
        ));
        assert!(TimelineHistory::parse(TimeLineId(3), b"# comment\n\n  1\t0/1\n").is_ok());
    }

    proptest! {
        #[test]
        fn written_histories_parse_back(points in proptest::collection::vec(any::<u64>(), 1..6)) {
            let mut content: Option<Vec<u8>> = None;
            for (i, p) in points.iter().enumerate() {
                content = Some(TimelineHistory::child_file(content.as_deref(), TimeLineId(i as u32 + 1), Lsn(*p), "reason"));
            }
            let tli = TimeLineId(points.len() as u32 + 1);
            let h = TimelineHistory::parse(tli, content.as_deref().unwrap()).unwrap();
            prop_assert_eq!(h.ancestors.iter().map(|e| e.switchpoint.0).collect::<Vec<_>>(), points);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = TimelineHistory::parse(TimeLineId(5), &bytes);
        }
    }
}
