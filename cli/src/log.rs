//! Where log messages (`RUST_LOG`, warnings) go: standard error, or, while the full-screen view
//! owns the terminal, into the view as warning lines, so they neither garble the screen nor
//! vanish.

use std::sync::Mutex;

use crate::display::Printer;
use crate::ui::{Kind, Out};

static VIEW: Mutex<Option<Printer>> = Mutex::new(None);

/// From now on, log lines are shown through `printer`, or on standard error for `None`.
pub fn show_in(printer: Option<Printer>) {
    if let Ok(mut v) = VIEW.lock() {
        *v = printer;
    }
}

/// One log record being written; it is passed on whole when dropped.
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Writer {
        Writer { buf: Vec::new() }
    }
}

impl std::io::Write for Writer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let view = VIEW.lock().ok().and_then(|v| v.clone());
        match view {
            Some(p) => {
                let text = String::from_utf8_lossy(&self.buf);
                for line in text.lines() {
                    p(Out::Line(Kind::Warning, crate::ui::clean(&strip_colors(line)), None));
                }
            }
            None => {
                let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), &self.buf);
            }
        }
    }
}

/// Drops the color codes (`ESC [ ... m`) the log formatter adds on a terminal.
fn strip_colors(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn colors_are_dropped_and_text_kept() {
        assert_eq!(super::strip_colors("\x1b[33m WARN\x1b[0m x: y"), " WARN x: y");
    }
}
