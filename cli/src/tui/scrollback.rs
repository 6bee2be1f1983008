//! The scrollback: every line shown this run, newest at the bottom, and where the user is reading.
//!
//! While the user reads older lines, new ones do not move the view: they are counted, and the
//! view shows "N new" until the user is back at the bottom.

use std::collections::VecDeque;

use super::wrap::wrap_words as wrap;
use crate::ui::{Kind, Who};

/// Lines kept; older ones are dropped (`/history` reads the store or the node's memory instead).
pub const MAX_LINES: usize = 10_000;

/// One screen row of a line: its text, and the part of it that names the sender, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub kind: Kind,
    pub text: String,
    /// Byte range within `text`, and the sender's color slot.
    pub who: Option<Who>,
}

#[derive(Default)]
pub struct Scrollback {
    lines: VecDeque<(Kind, String, Option<Who>)>,
    /// Screen rows between the bottom of the view and the newest row; 0: following new lines.
    offset_rows: usize,
    /// Lines that arrived while scrolled up.
    unseen: usize,
    /// Width the offset was counted at.
    cols: usize,
}

impl Scrollback {
    pub fn push(&mut self, kind: Kind, text: String, who: Option<Who>) {
        if self.offset_rows > 0 {
            self.offset_rows += wrap(&text, self.cols).len();
            self.unseen += 1;
        }
        self.lines.push_back((kind, text, who));
        if self.lines.len() > MAX_LINES {
            self.lines.pop_front();
        }
    }

    pub fn clear(&mut self) {
        *self = Scrollback { cols: self.cols, ..Scrollback::default() };
    }

    pub fn unseen(&self) -> usize {
        self.unseen
    }

    pub fn scrolled(&self) -> bool {
        self.offset_rows > 0
    }

    pub fn scroll_up(&mut self, rows: usize) {
        self.offset_rows += rows;
    }

    pub fn scroll_down(&mut self, rows: usize) {
        self.offset_rows = self.offset_rows.saturating_sub(rows);
        if self.offset_rows == 0 {
            self.unseen = 0;
        }
    }

    pub fn jump_to_newest(&mut self) {
        self.scroll_down(usize::MAX);
    }

    /// The rows to show in a pane of `cols` x `height`, top first, after clamping the scroll
    /// position to the oldest row.
    pub fn visible(&mut self, cols: usize, height: usize) -> Vec<Row> {
        self.cols = cols;
        let want = self.offset_rows + height;
        let mut rows: Vec<Row> = Vec::with_capacity(want);
        for (kind, text, who) in self.lines.iter().rev() {
            for row in rows_of(*kind, text, who.as_ref(), cols).into_iter().rev() {
                rows.push(row);
            }
            if rows.len() >= want {
                break;
            }
        }
        let max_offset = rows.len().saturating_sub(height);
        if self.offset_rows > max_offset {
            self.offset_rows = max_offset;
            if max_offset == 0 {
                self.unseen = 0;
            }
        }
        let end = (self.offset_rows + height).min(rows.len());
        let mut shown: Vec<Row> = rows.drain(self.offset_rows..end).collect();
        shown.reverse();
        shown
    }
}

/// A line's rows, each with the part of the sender's name that falls in it. Rows are consecutive
/// slices of the line when it has no newline (chat, join and connection lines never do); a line
/// with newlines (a table) carries no sender.
fn rows_of(kind: Kind, text: &str, who: Option<&Who>, cols: usize) -> Vec<Row> {
    let who = who.filter(|_| !text.contains('\n'));
    let mut start = 0;
    wrap(text, cols)
        .into_iter()
        .map(|row| {
            let end = start + row.len();
            let part = who.and_then(|w| {
                let (a, b) = (w.at.start.max(start), w.at.end.min(end));
                (a < b).then(|| Who { at: a - start..b - start, slot: w.slot })
            });
            start = end;
            Row { kind, text: row, who: part }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(rows: &[Row]) -> Vec<&str> {
        rows.iter().map(|r| r.text.as_str()).collect()
    }

    #[test]
    fn the_senders_name_is_found_in_the_rows_it_falls_in() {
        let who = Who { at: 4..12, slot: 3 };
        let rows = rows_of(Kind::Chat, "[1] bob#1234: hi there", Some(&who), 8);
        assert_eq!(rows[0].text, "[1] ");
        assert_eq!(rows[0].who, None);
        assert_eq!(rows[1].text, "bob#1234");
        assert_eq!(rows[1].who, Some(Who { at: 0..8, slot: 3 }));
        assert!(rows[2..].iter().all(|r| r.who.is_none()));
    }

    #[test]
    fn new_lines_do_not_move_a_scrolled_view() {
        let mut s = Scrollback::default();
        for i in 0..10 {
            s.push(Kind::Info, format!("line {i}"), None);
        }
        assert_eq!(texts(&s.visible(20, 3)), ["line 7", "line 8", "line 9"]);
        s.scroll_up(3);
        assert_eq!(texts(&s.visible(20, 3)), ["line 4", "line 5", "line 6"]);
        s.push(Kind::Chat, "new one".into(), None);
        s.push(Kind::Chat, "new two".into(), None);
        assert_eq!(texts(&s.visible(20, 3)), ["line 4", "line 5", "line 6"]);
        assert_eq!(s.unseen(), 2);
        s.jump_to_newest();
        assert_eq!(texts(&s.visible(20, 3)), ["line 9", "new one", "new two"]);
        assert_eq!(s.unseen(), 0);
    }

    #[test]
    fn scrolling_stops_at_the_oldest_row() {
        let mut s = Scrollback::default();
        s.push(Kind::Info, "abcdef".into(), None);
        s.scroll_up(100);
        assert_eq!(texts(&s.visible(4, 1)), ["abcd"]);
        assert_eq!(texts(&s.visible(4, 5)), ["abcd", "ef"]);
    }
}
