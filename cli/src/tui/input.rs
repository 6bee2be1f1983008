//! The input line: text being typed, its cursor, and the history of sent lines.
//!
//! The text may hold newlines (a paste of several lines); Enter hands back every line, and each
//! becomes its own chat (see `take_lines`). The cursor is a byte offset that always sits on a
//! grapheme boundary, so one Left or Backspace moves over a whole emoji or accented letter.

use unicode_segmentation::UnicodeSegmentation;

/// Sent lines kept for Up/Down; the oldest go first.
pub const HISTORY_MAX: usize = 500;

#[derive(Default)]
pub struct Input {
    text: String,
    /// Byte offset into `text`, on a grapheme boundary.
    cursor: usize,
    history: Vec<String>,
    /// Which history entry is shown while browsing with Up/Down; `None`: the line being typed.
    browsing: Option<usize>,
    /// The line being typed when browsing started, given back by Down past the newest entry.
    draft: String,
}

impl Input {
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn cursor(&self) -> usize {
        self.cursor
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Inserts typed or pasted text at the cursor. Carriage returns (`\r\n` or a lone `\r`, as
    /// terminals send pasted line ends) become `\n`; other control characters but tab are dropped,
    /// tab becomes a space.
    pub fn insert(&mut self, s: &str) {
        let s = s.replace("\r\n", "\n").replace('\r', "\n");
        let clean: String = s
            .chars()
            .filter(|c| *c == '\n' || *c == '\t' || !c.is_control())
            .map(|c| if c == '\t' { ' ' } else { c })
            .collect();
        self.text.insert_str(self.cursor, &clean);
        self.cursor += clean.len();
        self.browsing = None;
    }

    pub fn backspace(&mut self) {
        if let Some(prev) = self.prev_boundary() {
            self.text.replace_range(prev..self.cursor, "");
            self.cursor = prev;
        }
    }

    pub fn delete(&mut self) {
        if let Some(next) = self.next_boundary() {
            self.text.replace_range(self.cursor..next, "");
        }
    }

    pub fn left(&mut self) {
        if let Some(p) = self.prev_boundary() {
            self.cursor = p;
        }
    }

    pub fn right(&mut self) {
        if let Some(n) = self.next_boundary() {
            self.cursor = n;
        }
    }

    pub fn home(&mut self) {
        self.cursor = self.text[..self.cursor].rfind('\n').map_or(0, |i| i + 1);
    }

    pub fn end(&mut self) {
        self.cursor = self.text[self.cursor..].find('\n').map_or(self.text.len(), |i| self.cursor + i);
    }

    /// Ctrl-W: deletes the word before the cursor and the spaces after it.
    pub fn delete_word(&mut self) {
        let before = &self.text[..self.cursor];
        let trimmed = before.trim_end_matches(' ');
        let start = trimmed.rfind([' ', '\n']).map_or(0, |i| i + 1);
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
    }

    /// Ctrl-U: deletes from the start of the line to the cursor.
    pub fn kill_to_start(&mut self) {
        let end = self.cursor;
        self.home();
        self.text.replace_range(self.cursor..end, "");
    }

    /// Ctrl-K: deletes from the cursor to the end of the line.
    pub fn kill_to_end(&mut self) {
        let start = self.cursor;
        self.end();
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
    }

    /// Ctrl-C on a typed line: forgets it.
    pub fn clear(&mut self) {
        self.text.clear();
        self.cursor = 0;
        self.browsing = None;
    }

    /// Enter: the typed text as lines, in order, and an empty input. Lines holding only spaces
    /// are left out (they are not chats); every other line is returned exactly as typed.
    pub fn take_lines(&mut self) -> Vec<String> {
        let text = std::mem::take(&mut self.text);
        self.cursor = 0;
        self.browsing = None;
        if !text.trim().is_empty() {
            if self.history.last() != Some(&text) {
                self.history.push(text.clone());
            }
            if self.history.len() > HISTORY_MAX {
                self.history.remove(0);
            }
        }
        text.split('\n').filter(|l| !l.trim().is_empty()).map(str::to_owned).collect()
    }

    /// Up: the previous sent line.
    pub fn history_up(&mut self) {
        let i = match self.browsing {
            None if self.history.is_empty() => return,
            None => {
                self.draft = self.text.clone();
                self.history.len() - 1
            }
            Some(0) => return,
            Some(i) => i - 1,
        };
        self.show(Some(i));
    }

    /// Down: the next sent line, then the line that was being typed.
    pub fn history_down(&mut self) {
        match self.browsing {
            None => {}
            Some(i) if i + 1 < self.history.len() => self.show(Some(i + 1)),
            Some(_) => self.show(None),
        }
    }

    fn show(&mut self, entry: Option<usize>) {
        self.text = match entry {
            Some(i) => self.history[i].clone(),
            None => std::mem::take(&mut self.draft),
        };
        self.cursor = self.text.len();
        self.browsing = entry;
    }

    fn prev_boundary(&self) -> Option<usize> {
        self.text[..self.cursor].grapheme_indices(true).next_back().map(|(i, _)| i)
    }

    fn next_boundary(&self) -> Option<usize> {
        self.text[self.cursor..].graphemes(true).next().map(|g| self.cursor + g.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paste_of_several_lines_gives_every_line_back_in_order() {
        let mut i = Input::default();
        i.insert("one\r\ntwo\rthree\n\n  \nfour");
        assert_eq!(i.take_lines(), ["one", "two", "three", "four"]);
        assert!(i.is_empty());
    }

    #[test]
    fn editing_moves_over_whole_graphemes() {
        let mut i = Input::default();
        i.insert("a👍🏽é漢");
        i.left();
        i.left();
        i.backspace();
        assert_eq!(i.text(), "aé漢");
        i.home();
        i.delete();
        assert_eq!(i.text(), "é漢");
        i.end();
        i.insert("!");
        assert_eq!(i.text(), "é漢!");
    }

    #[test]
    fn history_browses_and_gives_back_the_draft() {
        let mut i = Input::default();
        i.insert("first");
        i.take_lines();
        i.insert("second");
        i.take_lines();
        i.insert("dra");
        i.history_up();
        assert_eq!(i.text(), "second");
        i.history_up();
        i.history_up();
        assert_eq!(i.text(), "first");
        i.history_down();
        i.history_down();
        assert_eq!(i.text(), "dra");
    }

    #[test]
    fn word_and_line_kills() {
        let mut i = Input::default();
        i.insert("hello big world  ");
        i.delete_word();
        assert_eq!(i.text(), "hello big ");
        i.left();
        i.left();
        i.kill_to_end();
        assert_eq!(i.text(), "hello bi");
        i.kill_to_start();
        assert_eq!(i.text(), "");
    }
}
