//! The full-screen chat view, used when standard input and output are a terminal (`--plain`
//! turns it off): a scrollback pane, a status bar and an input line that nothing overwrites.
//!
//! Keys: Enter sends; Left/Right/Home/End, Backspace/Delete, Ctrl-A/E/U/K/W edit; Up/Down walk
//! the sent lines; PageUp/PageDown and the mouse wheel scroll, Ctrl-End (or End on an empty
//! line) jumps back to the newest line; Ctrl-C clears the typed line, and on an empty line a
//! second Ctrl-C leaves, as do Ctrl-D on an empty line and `/quit`. Ctrl-N and Ctrl-P (or
//! Alt-Right and Alt-Left) make the next or previous room current; once the node is in a room
//! besides the default one or in a direct-message conversation, a line above the status bar lists
//! the rooms, then the conversations (`@name#id`), with their unread counts. With a conversation
//! current, typed lines go to that peer as direct messages, `/history` shows the conversation,
//! typing there tells the peer (see `session::dm`), and the bar says who is typing to this node.
//!
//! A paste is taken whole (bracketed paste when the terminal offers it, else as fast keys): its
//! lines stay in the input line until Enter, and Enter sends each line as its own chat, in order.
//! A line over the 4,096-byte chat limit is sent as several chats, cut between characters.
//!
//! Every key the terminal sends is read and handled, however many arrive in one read: the input
//! is read here, on this thread, and never through a second reader.

mod input;
mod scrollback;
mod view;
pub mod wrap;

use std::io::Stdout;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossterm::event::{
    self, DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture, Event, KeyCode,
    KeyEvent, KeyEventKind, KeyModifiers, MouseEventKind,
};
use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

use crate::ui::{Kind, Out};
use input::Input;
use scrollback::Scrollback;
pub use view::{RoomTab, Status};

/// How long to wait for a key before looking for new lines from the node again.
const TICK: Duration = Duration::from_millis(25);
/// How often the status bar asks the node for its peers.
const STATUS_EVERY: Duration = Duration::from_millis(500);
/// Rows one mouse-wheel step scrolls.
const WHEEL_ROWS: usize = 3;

/// Whether the view holds the terminal, so that `restore` does nothing in line mode.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Restores the terminal however the view ends, panics included.
struct Guard;

impl Guard {
    fn enter() -> Result<Guard> {
        terminal::enable_raw_mode().context("cannot set up the terminal")?;
        ACTIVE.store(true, Ordering::SeqCst);
        let guard = Guard;
        crossterm::execute!(std::io::stdout(), EnterAlternateScreen, EnableBracketedPaste, EnableMouseCapture)
            .context("cannot set up the terminal")?;
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        Ok(guard)
    }
}

/// Gives the terminal back as it was: main screen, cooked mode, no mouse or paste reporting.
/// Does nothing unless the view holds the terminal.
pub fn restore() {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return;
    }
    let _ = crossterm::execute!(std::io::stdout(), DisableMouseCapture, DisableBracketedPaste, LeaveAlternateScreen);
    let _ = terminal::disable_raw_mode();
}

impl Drop for Guard {
    fn drop(&mut self) {
        restore();
    }
}

/// What the view asks of the session.
pub trait Session {
    /// Handles one line as typed (a chat or a /command); `false` means leave.
    fn line(&mut self, line: &str) -> bool;
    /// Sends one piece of a cut line as a chat, whatever it starts with.
    fn chat(&mut self, text: &str);
    /// Makes the room or conversation `step` places away in the room line current.
    fn step_room(&mut self, step: isize);
    /// A key typed into the input line (for typing notices in a conversation).
    fn typed(&mut self);
    /// Called about every `TICK`: lets the session say a stopped typing.
    fn tick(&mut self);
    fn status(&self) -> Status;
}

struct App {
    scroll: Scrollback,
    input: Input,
    status: Status,
    /// The last key was a Ctrl-C: another one on an empty line leaves.
    ctrl_c: bool,
    quit: bool,
}

/// Runs the view until the user leaves. `out` carries every line the session shows.
pub fn run(session: &mut dyn Session, out: &Receiver<Out>) -> Result<()> {
    let _guard = Guard::enter()?;
    let mut term: Terminal<CrosstermBackend<Stdout>> =
        Terminal::new(CrosstermBackend::new(std::io::stdout())).context("cannot set up the terminal")?;
    let mut app = App {
        scroll: Scrollback::default(),
        input: Input::default(),
        status: session.status(),
        ctrl_c: false,
        quit: false,
    };
    let mut status_at = Instant::now();
    let mut dirty = true;
    // Terminals disagree on how wide a composed emoji is (tmux gives a skin-tone modifier cells of
    // its own), so a frame holding one leaves cells the screen model cannot know about: the next
    // frame is drawn whole.
    let mut repaint = false;
    while !app.quit {
        session.tick();
        let mut network = false;
        for o in out.try_iter() {
            match o {
                Out::Line(kind, text, who) => {
                    network |= kind == Kind::Network;
                    app.scroll.push(kind, text, who);
                }
                Out::Clear => app.scroll.clear(),
            }
            dirty = true;
        }
        // A peer came or went, a line may have added to a room's unread count, a key may have
        // switched rooms: the bar says so at once.
        if network || dirty || status_at.elapsed() >= STATUS_EVERY {
            status_at = Instant::now();
            let s = session.status();
            dirty |= s != app.status;
            app.status = s;
        }
        if dirty {
            if repaint {
                term.clear().context("drawing the screen")?;
            }
            let frame =
                term.draw(|f| view::draw(f, &mut app.scroll, &app.input, &app.status)).context("drawing the screen")?;
            repaint = frame.buffer.content.iter().any(|c| wrap::is_composed(c.symbol()));
            dirty = false;
        }
        if event::poll(TICK).context("reading the terminal")? {
            // Everything that has arrived, before drawing again.
            loop {
                handle(&mut app, session, event::read().context("reading the terminal")?);
                dirty = true;
                if app.quit || !event::poll(Duration::ZERO).context("reading the terminal")? {
                    break;
                }
            }
        }
    }
    Ok(())
}

fn handle(app: &mut App, session: &mut dyn Session, ev: Event) {
    match ev {
        Event::Key(k) if k.kind != KeyEventKind::Release => key(app, session, k),
        Event::Paste(text) => {
            app.ctrl_c = false;
            app.input.insert(&text);
            typed(app, session);
        }
        Event::Mouse(m) => match m.kind {
            MouseEventKind::ScrollUp => app.scroll.scroll_up(WHEEL_ROWS),
            MouseEventKind::ScrollDown => app.scroll.scroll_down(WHEEL_ROWS),
            _ => {}
        },
        _ => {} // resize: the next draw fits the new size
    }
}

fn key(app: &mut App, session: &mut dyn Session, k: KeyEvent) {
    let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
    let alt = k.modifiers.contains(KeyModifiers::ALT);
    let was_ctrl_c = std::mem::replace(&mut app.ctrl_c, false);
    let page = terminal::size().map_or(10, |(_, h)| (h as usize).saturating_sub(3).max(1));
    let i = &mut app.input;
    match k.code {
        KeyCode::Char('c') if ctrl => {
            if !i.is_empty() {
                i.clear();
                app.ctrl_c = true;
            } else if was_ctrl_c {
                app.quit = true;
            } else {
                app.ctrl_c = true;
                app.scroll.push(Kind::Info, "(Ctrl-C again, Ctrl-D or /quit to leave)".into(), None);
            }
        }
        KeyCode::Char('d') if ctrl => {
            if i.is_empty() {
                app.quit = true;
            } else {
                i.delete();
            }
        }
        KeyCode::Enter => send(app, session),
        KeyCode::Char('j' | 'm') if ctrl => send(app, session),
        KeyCode::Char('n') if ctrl => session.step_room(1),
        KeyCode::Char('p') if ctrl => session.step_room(-1),
        KeyCode::Right if alt => session.step_room(1),
        KeyCode::Left if alt => session.step_room(-1),
        KeyCode::Char('a') if ctrl => i.home(),
        KeyCode::Char('e') if ctrl => i.end(),
        KeyCode::Char('u') if ctrl => i.kill_to_start(),
        KeyCode::Char('k') if ctrl => i.kill_to_end(),
        KeyCode::Char('w') if ctrl => i.delete_word(),
        KeyCode::Char('h') if ctrl => i.backspace(),
        KeyCode::Char('l') if ctrl => {} // every key redraws
        KeyCode::Char(c) if !ctrl => {
            i.insert(c.encode_utf8(&mut [0; 4]));
            typed(app, session);
        }
        KeyCode::Tab => i.insert(" "),
        KeyCode::Backspace => i.backspace(),
        KeyCode::Delete => i.delete(),
        KeyCode::Left => i.left(),
        KeyCode::Right => i.right(),
        KeyCode::Home => i.home(),
        KeyCode::End if ctrl || i.is_empty() => app.scroll.jump_to_newest(),
        KeyCode::End => i.end(),
        KeyCode::Up => i.history_up(),
        KeyCode::Down => i.history_down(),
        KeyCode::PageUp => app.scroll.scroll_up(page),
        KeyCode::PageDown => app.scroll.scroll_down(page),
        _ => {}
    }
}

/// Text was typed: a typing notice, unless it is a command being typed.
fn typed(app: &App, session: &mut dyn Session) {
    if !app.input.text().starts_with('/') {
        session.typed();
    }
}

/// Enter: every line of the input, in order, each as its own chat or command.
fn send(app: &mut App, session: &mut dyn Session) {
    app.scroll.jump_to_newest();
    for line in app.input.take_lines() {
        let parts = split_chat(&line);
        if parts.len() > 1 {
            app.scroll.push(
                Kind::Info,
                format!(
                    "(that line is {} bytes; a chat holds at most {}: sent as {} chats)",
                    view::thousands(line.len()),
                    view::thousands(p2p_chat_core::chat::MAX_TEXT_BYTES),
                    parts.len()
                ),
                None,
            );
            parts.into_iter().for_each(|p| session.chat(p));
        } else if !session.line(&line) {
            app.quit = true;
            return;
        }
    }
}

/// A chat line cut into pieces of at most the chat limit, between characters. Commands are not
/// cut.
pub(crate) fn split_chat(line: &str) -> Vec<&str> {
    let max = p2p_chat_core::chat::MAX_TEXT_BYTES;
    if line.starts_with('/') || line.len() <= max {
        return vec![line];
    }
    let mut parts = Vec::new();
    let mut rest = line;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        parts.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    parts.push(rest);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_line_is_cut_between_characters_and_nothing_is_lost() {
        let line = "é".repeat(2_500); // 5,000 bytes
        let parts = split_chat(&line);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.len() <= p2p_chat_core::chat::MAX_TEXT_BYTES));
        assert_eq!(parts.concat(), line);
        assert_eq!(split_chat("short"), ["short"]);
    }
}
