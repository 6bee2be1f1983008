//! The scrollback: every line shown this run, newest at the bottom, and where the user is reading.
//!
//! While the user reads older lines, new ones do not move the view: they are counted, and the
//! view shows "N new" until the user is back at the bottom.

use std::collections::VecDeque;

use super::wrap::wrap_words as wrap;
use crate::ui::Kind;

/// Lines kept; older ones are dropped (`/history` reads the store or the node's memory instead).
pub const MAX_LINES: usize = 10_000;

#[derive(Default)]
pub struct Scrollback {
    lines: VecDeque<(Kind, String)>,
    /// Screen rows between the bottom of the view and the newest row; 0: following new lines.
    offset_rows: usize,
    /// Lines that arrived while scrolled up.
    unseen: usize,
    /// Width the offset was counted at.
    cols: usize,
}

impl Scrollback {
    pub fn push(&mut self, kind: Kind, text: String) {
        if self.offset_rows > 0 {
            self.offset_rows += wrap(&text, self.cols).len();
            self.unseen += 1;
        }
        self.lines.push_back((kind, text));
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
    pub fn visible(&mut self, cols: usize, height: usize) -> Vec<(Kind, String)> {
        self.cols = cols;
        let want = self.offset_rows + height;
        let mut rows: Vec<(Kind, String)> = Vec::with_capacity(want);
        for (kind, text) in self.lines.iter().rev() {
            for row in wrap(text, cols).into_iter().rev() {
                rows.push((*kind, row));
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
        let mut shown: Vec<(Kind, String)> = rows.drain(self.offset_rows..end).collect();
        shown.reverse();
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(rows: &[(Kind, String)]) -> Vec<&str> {
        rows.iter().map(|(_, t)| t.as_str()).collect()
    }

    #[test]
    fn new_lines_do_not_move_a_scrolled_view() {
        let mut s = Scrollback::default();
        for i in 0..10 {
            s.push(Kind::Info, format!("line {i}"));
        }
        assert_eq!(texts(&s.visible(20, 3)), ["line 7", "line 8", "line 9"]);
        s.scroll_up(3);
        assert_eq!(texts(&s.visible(20, 3)), ["line 4", "line 5", "line 6"]);
        s.push(Kind::Chat, "new one".into());
        s.push(Kind::Chat, "new two".into());
        assert_eq!(texts(&s.visible(20, 3)), ["line 4", "line 5", "line 6"]);
        assert_eq!(s.unseen(), 2);
        s.jump_to_newest();
        assert_eq!(texts(&s.visible(20, 3)), ["line 9", "new one", "new two"]);
        assert_eq!(s.unseen(), 0);
    }

    #[test]
    fn scrolling_stops_at_the_oldest_row() {
        let mut s = Scrollback::default();
        s.push(Kind::Info, "abcdef".into());
        s.scroll_up(100);
        assert_eq!(texts(&s.visible(4, 1)), ["abcd"]);
        assert_eq!(texts(&s.visible(4, 5)), ["abcd", "ef"]);
    }
}
