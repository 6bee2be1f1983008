//! Cutting text into screen rows by display width: CJK and most emoji take two columns, combining
//! marks none. Text is cut between graphemes, so an emoji with a skin-tone modifier or a letter
//! with its accent is never split across rows.
//!
//! Right-to-left text is laid out cell by cell in the order it was written, like any other text;
//! the characters that would make a terminal reorder or override direction for the rest of the
//! row (bidi embeddings, overrides and isolates) are shown as U+FFFD (see `ui::clean`), so a chat
//! cannot push text into another column or row.

use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

/// Display width of one grapheme, at most two columns. Zero-width ones (a lone joiner) take no
/// cell, as the screen buffer draws them.
pub fn grapheme_width(g: &str) -> usize {
    g.width().min(2)
}

/// Display width of a string, counted grapheme by grapheme as `wrap` lays it out.
pub fn width(s: &str) -> usize {
    s.graphemes(true).map(grapheme_width).sum()
}

/// Whether a grapheme is an emoji sequence (joiner, skin-tone modifier, variation selector,
/// flag) whose width terminals disagree on.
pub fn is_composed(g: &str) -> bool {
    g.chars().nth(1).is_some()
        && g.chars()
            .any(|c| matches!(c, '\u{200d}' | '\u{fe0f}' | '\u{1f3fb}'..='\u{1f3ff}' | '\u{1f1e6}'..='\u{1f1ff}'))
}

/// Rows of at most `cols` columns. An empty string is one empty row; a `\n` starts a new row.
pub fn wrap(text: &str, cols: usize) -> Vec<String> {
    let cols = cols.max(2);
    let mut rows = Vec::new();
    for line in text.split('\n') {
        let mut row = String::new();
        let mut used = 0;
        for g in line.graphemes(true) {
            let w = grapheme_width(g);
            if used + w > cols {
                rows.push(std::mem::take(&mut row));
                used = 0;
            }
            row.push_str(g);
            used += w;
        }
        rows.push(row);
    }
    rows
}

/// Rows of at most `cols` columns, broken after a space where a row would otherwise cut a word
/// (a word longer than a row is cut anyway). For reading; the input line uses `wrap`, so that
/// its cursor moves predictably.
pub fn wrap_words(text: &str, cols: usize) -> Vec<String> {
    let cols = cols.max(2);
    let mut rows = Vec::new();
    for line in text.split('\n') {
        let mut row = String::new();
        let mut used = 0;
        // Byte offset in `row` just after its last space, and the columns used up to there.
        let mut brk: Option<(usize, usize)> = None;
        for g in line.graphemes(true) {
            let w = grapheme_width(g);
            if used + w > cols {
                match brk {
                    Some((at, used_at)) if at < row.len() => {
                        let rest = row.split_off(at);
                        rows.push(std::mem::replace(&mut row, rest));
                        used -= used_at;
                    }
                    _ => {
                        rows.push(std::mem::take(&mut row));
                        used = 0;
                    }
                }
                brk = None;
            }
            row.push_str(g);
            used += w;
            if g == " " {
                brk = Some((row.len(), used));
            }
        }
        rows.push(row);
    }
    rows
}

/// Where `cursor` (a byte offset into `text`) lands when `text` is laid out as by `wrap`:
/// (row, column). A cursor at the very end of a full row moves to the start of the next.
pub fn cursor_at(text: &str, cursor: usize, cols: usize) -> (usize, usize) {
    let cols = cols.max(2);
    let (mut row, mut col) = (0, 0);
    for (i, g) in text.grapheme_indices(true) {
        if i >= cursor {
            break;
        }
        if g == "\n" {
            row += 1;
            col = 0;
            continue;
        }
        let w = grapheme_width(g);
        if col + w > cols {
            row += 1;
            col = 0;
        }
        col += w;
    }
    if col >= cols {
        row += 1;
        col = 0;
    }
    (row, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_characters_wrap_whole() {
        assert_eq!(wrap("漢字漢字漢", 4), ["漢字", "漢字", "漢"]);
        assert_eq!(wrap("ab漢", 3), ["ab", "漢"]);
        assert_eq!(wrap("👍🏽👍🏽", 3), ["👍🏽", "👍🏽"]);
        assert_eq!(width("👍🏽é"), 3);
    }

    #[test]
    fn words_stay_whole_where_they_fit() {
        assert_eq!(wrap_words("hello big world", 10), ["hello big ", "world"]);
        assert_eq!(wrap_words("abcdefghijkl xy", 5), ["abcde", "fghij", "kl xy"]);
        assert_eq!(wrap_words("漢字 漢字漢字", 6), ["漢字 ", "漢字漢", "字"]);
    }

    #[test]
    fn newlines_and_empty_text_are_rows() {
        assert_eq!(wrap("", 10), [""]);
        assert_eq!(wrap("a\n\nb", 10), ["a", "", "b"]);
    }

    #[test]
    fn the_cursor_follows_the_wrapping() {
        assert_eq!(cursor_at("abcd", 4, 4), (1, 0));
        assert_eq!(cursor_at("abcdef", 5, 4), (1, 1));
        assert_eq!(cursor_at("ab\ncd", 3, 10), (1, 0));
        assert_eq!(cursor_at("a漢", 1, 2), (0, 1));
        assert_eq!(cursor_at("a漢", 4, 2), (2, 0));
    }
}
