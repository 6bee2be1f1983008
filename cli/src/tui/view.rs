//! Drawing one frame: the scrollback pane, the status bar, the input line.
//!
//! ```text
//! [10:02:11] bob#5cf79897: hi
//! ...                                   <- scrollback (PageUp/PageDown, wheel)
//! ─── 3 new below · End to jump ───     <- only while scrolled up and lines arrived
//!  rooms: everyone · [#dev] · #team (2)  <- only once in a room besides "everyone"
//!  alice#3d785535 │ 2 peers │ room: #dev │ listening on 0.0.0.0:8080 │ 5/4,096 B
//!                      (with "│ bob#5cf79897 is typing…" after the room while bob types to us)
//! > hello wor█                          <- input, wraps, grows up to a third of the screen
//! ```

use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::input::Input;
use super::scrollback::{Row, Scrollback};
use super::wrap::{cursor_at, wrap};
use crate::ui::Kind;

/// What the status bar shows, refreshed from the node about twice a second.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// `name#1234abcd`.
    pub me: String,
    pub peers: usize,
    /// Where typed lines go: `#name`, "everyone" for the default room, `@name#id` for a
    /// direct-message conversation.
    pub room: String,
    /// Whether others can reach this node: "reachable ADDR" once a peer has dialed in,
    /// "listening ADDR" before, "outgoing only" when not listening.
    pub reach: String,
    /// Every room, the default room first, then the direct-message conversations; a line above
    /// the bar lists them when there are several.
    pub rooms: Vec<RoomTab>,
    /// `name#id` of each peer typing to this node now.
    pub typing: Vec<String>,
}

/// A room in the room line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomTab {
    pub name: String,
    pub unread: usize,
    pub current: bool,
}

const PROMPT: &str = "> ";

fn kind_style(kind: Kind) -> Style {
    match kind {
        Kind::Chat | Kind::Info => Style::default(),
        Kind::Own => Style::default().add_modifier(Modifier::BOLD),
        Kind::Joined => Style::default().fg(Color::Green),
        Kind::Left => Style::default().fg(Color::Yellow),
        Kind::Network => Style::default().fg(Color::Blue),
        Kind::Warning => Style::default().fg(Color::Red),
        Kind::Missed => Style::default().add_modifier(Modifier::DIM),
    }
}

/// Thousands separated by commas: 4096 -> "4,096".
pub fn thousands(n: usize) -> String {
    let digits: Vec<char> = n.to_string().chars().collect();
    digits.rchunks(3).rev().map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join(",")
}

/// The byte count of the line under the cursor against the chat limit, and whether it is over.
fn counter(input: &Input) -> (String, bool) {
    let text = input.text();
    let start = text[..input.cursor()].rfind('\n').map_or(0, |i| i + 1);
    let end = text[input.cursor()..].find('\n').map_or(text.len(), |i| input.cursor() + i);
    let bytes = end - start;
    let max = p2p_chat_core::chat::MAX_TEXT_BYTES;
    let lines = text.split('\n').filter(|l| !l.trim().is_empty()).count();
    let mut s = format!("{}/{} B", thousands(bytes), thousands(max));
    if bytes > max {
        s += &format!(" (sent as {} chats)", super::split_chat(&text[start..end]).len());
    }
    if lines > 1 {
        s += &format!(" · {lines} lines");
    }
    (s, bytes > max)
}

pub fn draw(f: &mut Frame, scroll: &mut Scrollback, input: &Input, status: &Status) {
    let area = f.area();
    let cols = area.width as usize;
    let text_cols = cols.saturating_sub(PROMPT.len()).max(2);
    let input_rows = wrap(input.text(), text_cols);
    let (cur_row, cur_col) = cursor_at(input.text(), input.cursor(), text_cols);
    let rows_needed = input_rows.len().max(cur_row + 1);
    let input_h = rows_needed.min((area.height as usize / 3).max(1)) as u16;
    let tabs_h = u16::from(status.rooms.len() > 1);
    let [pane, tabs, bar, edit] = Layout::vertical([
        Constraint::Min(0),
        Constraint::Length(tabs_h),
        Constraint::Length(1),
        Constraint::Length(input_h),
    ])
    .areas(area);

    draw_pane(f, pane, scroll);
    if tabs_h > 0 {
        f.render_widget(Paragraph::new(room_line(&status.rooms)), tabs);
    }

    let peers = if status.peers == 1 { "1 peer".to_owned() } else { format!("{} peers", status.peers) };
    let typing = match &status.typing[..] {
        [] => String::new(),
        [one] => format!(" │ {one} is typing…"),
        many => format!(" │ {} are typing…", many.join(", ")),
    };
    // Who is typing comes before the address, which a narrow screen cuts first.
    let left = format!(" {} │ {peers} │ room: {}{typing} │ {}", status.me, status.room, status.reach);
    let (count, over) = counter(input);
    let right = format!(" {count} ");
    let bar_style = Style::default().add_modifier(Modifier::REVERSED);
    // The count stays in view on a narrow screen; the left part is cut instead.
    let [bar_left, bar_right] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(super::wrap::width(&right) as u16)]).areas(bar);
    f.render_widget(Paragraph::new(Line::from(left)).style(bar_style), bar_left);
    let count_style = if over { bar_style.fg(Color::Red) } else { bar_style };
    f.render_widget(Paragraph::new(Line::from(right)).style(count_style), bar_right);

    // Keep the cursor's row in view when the input is taller than its area.
    let first = (cur_row + 1).saturating_sub(input_h as usize);
    let lines: Vec<Line> = input_rows
        .into_iter()
        .enumerate()
        .skip(first)
        .take(input_h as usize)
        .map(|(i, row)| Line::from(vec![Span::raw(if i == 0 { PROMPT } else { "  " }), Span::raw(row)]))
        .collect();
    f.render_widget(Paragraph::new(lines), edit);
    f.set_cursor_position(Position::new(edit.x + (PROMPT.len() + cur_col) as u16, edit.y + (cur_row - first) as u16));
}

/// ` rooms: everyone · [#dev] · #team (2)`: the current room bracketed and bold, a room with
/// unread chats with their count, in yellow.
fn room_line(rooms: &[RoomTab]) -> Line<'static> {
    let mut spans = vec![Span::styled(" rooms: ", Style::default().add_modifier(Modifier::DIM))];
    for (i, r) in rooms.iter().enumerate() {
        if i > 0 {
            spans.push(Span::raw(" · "));
        }
        let (text, style) = match (r.current, r.unread) {
            (true, _) => (format!("[{}]", r.name), Style::default().add_modifier(Modifier::BOLD)),
            (false, 0) => (r.name.clone(), Style::default()),
            (false, n) => (format!("{} ({n})", r.name), Style::default().fg(Color::Yellow)),
        };
        spans.push(Span::styled(text, style));
    }
    spans.push(Span::styled("  Ctrl-N/Ctrl-P switch", Style::default().add_modifier(Modifier::DIM)));
    Line::from(spans)
}

/// Sender colors, as line mode's: bright, readable on dark and light backgrounds.
const PALETTE: [Color; crate::ui::PALETTE_SIZE] =
    [Color::LightRed, Color::LightGreen, Color::LightYellow, Color::LightBlue, Color::LightMagenta, Color::LightCyan];

/// A row in its kind's style, with the sender's `name#id` in the sender's color.
fn styled_row(row: Row) -> Line<'static> {
    let base = kind_style(row.kind);
    match row.who {
        Some(w) if row.text.get(w.at.clone()).is_some() => {
            let (before, rest) = row.text.split_at(w.at.start);
            let (name, after) = rest.split_at(w.at.len());
            Line::from(vec![
                Span::styled(before.to_owned(), base),
                Span::styled(name.to_owned(), base.fg(PALETTE[w.slot % PALETTE.len()])),
                Span::styled(after.to_owned(), base),
            ])
        }
        _ => Line::styled(row.text, base),
    }
}

fn draw_pane(f: &mut Frame, pane: Rect, scroll: &mut Scrollback) {
    if pane.height == 0 {
        return;
    }
    let rows = scroll.visible(pane.width as usize, pane.height as usize);
    // Bottom-aligned: a short scrollback sits just above the status bar, as in a chat.
    let pad = pane.height as usize - rows.len();
    let mut lines: Vec<Line> = std::iter::repeat_n(Line::from(""), pad).collect();
    lines.extend(rows.into_iter().map(styled_row));
    if scroll.scrolled() {
        let marker = match scroll.unseen() {
            0 => "─── scrolled up · End or PageDown to return ───".to_owned(),
            n => format!("─── {n} new below · End or PageDown to read ───"),
        };
        if let Some(last) = lines.last_mut() {
            *last = Line::styled(marker, Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD));
        }
    }
    f.render_widget(Paragraph::new(lines), pane);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    /// The screen as text; the cell after a wide character (which it covers) is left out.
    fn rows(term: &Terminal<TestBackend>) -> Vec<String> {
        let buf = term.backend().buffer();
        (0..buf.area.height)
            .map(|y| {
                let mut row = String::new();
                let mut x = 0;
                while x < buf.area.width {
                    let sym = buf[(x, y)].symbol();
                    row += sym;
                    x += super::super::wrap::width(sym).max(1) as u16;
                }
                row.trim_end().to_owned()
            })
            .collect()
    }

    #[test]
    fn a_frame_has_the_pane_the_bar_and_the_input() {
        let mut term = Terminal::new(TestBackend::new(40, 6)).unwrap();
        let mut scroll = Scrollback::default();
        for i in 0..6 {
            scroll.push(Kind::Chat, format!("line {i}"), None);
        }
        let mut input = Input::default();
        input.insert("héllo 漢字");
        let status = Status {
            me: "al#1234abcd".into(),
            peers: 1,
            room: "everyone".into(),
            reach: "outgoing only".into(),
            rooms: vec![RoomTab { name: "everyone".into(), unread: 0, current: true }],
            typing: Vec::new(),
        };
        term.draw(|f| draw(f, &mut scroll, &input, &status)).unwrap();
        let r = rows(&term);
        assert_eq!(&r[..4], ["line 2", "line 3", "line 4", "line 5"]);
        assert!(r[4].starts_with(" al#1234abcd │ 1 peer") && r[4].ends_with("13/4,096 B"), "{r:?}");
        assert_eq!(r[5], "> héllo 漢字");

        scroll.scroll_up(2);
        scroll.push(Kind::Chat, "arrived".into(), None);
        term.draw(|f| draw(f, &mut scroll, &input, &status)).unwrap();
        let r = rows(&term);
        assert_eq!(&r[..3], ["line 0", "line 1", "line 2"], "the view holds still");
        assert!(r[3].contains("1 new below"), "{r:?}");
    }

    #[test]
    fn a_room_line_shows_when_there_are_rooms() {
        let mut term = Terminal::new(TestBackend::new(90, 4)).unwrap();
        let mut scroll = Scrollback::default();
        scroll.push(Kind::Chat, "[10:00:00] #dev bo#00000000: hi".into(), None);
        let tab = |name: &str, unread, current| RoomTab { name: name.into(), unread, current };
        let status = Status {
            me: "al#1234abcd".into(),
            peers: 1,
            room: "#dev".into(),
            reach: "outgoing only".into(),
            rooms: vec![
                tab("everyone", 0, false),
                tab("#dev", 0, true),
                tab("#team", 2, false),
                tab("@bo#00000000", 1, false),
            ],
            typing: vec!["bo#00000000".into()],
        };
        term.draw(|f| draw(f, &mut scroll, &Input::default(), &status)).unwrap();
        let r = rows(&term);
        assert_eq!(r[0], "[10:00:00] #dev bo#00000000: hi");
        assert!(r[1].starts_with(" rooms: everyone · [#dev] · #team (2) · @bo#00000000 (1)"), "{r:?}");
        assert!(r[2].contains("room: #dev │ bo#00000000 is typing…"), "{r:?}");
    }

    #[test]
    fn counts_read_like_the_documents() {
        assert_eq!(thousands(4096), "4,096");
        assert_eq!(thousands(12), "12");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
