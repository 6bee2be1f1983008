//! The real `p2p-chat` in a real terminal: a detached tmux server of its own, keys and pastes sent
//! through tmux, the screen read back with `capture-pane`.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Instant;

use super::DEADLINE;

pub struct Tmux {
    socket: String,
    dir: PathBuf,
    pastes: usize,
}

/// Whether tmux can be run here (`.ci/run` installs it).
pub fn available() -> bool {
    Command::new("tmux").arg("-V").output().is_ok_and(|o| o.status.success())
}

impl Tmux {
    /// A shell command in a `cols` x `rows` terminal.
    pub fn start_shell(name: &str, script: &str, cols: u16, rows: u16) -> Tmux {
        Tmux::start_cmd(name, &["sh".to_owned(), "-c".to_owned(), script.to_owned()], cols, rows)
    }

    /// The process id of the program the pane started.
    pub fn pane_pid(&self) -> u32 {
        self.ok(&["display-message", "-p", "-t", "main", "#{pane_pid}"]).trim().parse().expect("a pid")
    }

    /// `p2p-chat ARGS` full-screen in a `cols` x `rows` terminal.
    pub fn start(name: &str, args: &[&str], cols: u16, rows: u16) -> Tmux {
        let mut cmd = vec![env!("CARGO_BIN_EXE_p2p-chat").to_owned()];
        cmd.extend(args.iter().map(|a| a.to_string()));
        Tmux::start_cmd(name, &cmd, cols, rows)
    }

    fn start_cmd(name: &str, cmd: &[String], cols: u16, rows: u16) -> Tmux {
        let socket = format!("p2p-chat-test-{}-{name}", std::process::id());
        let dir = super::temp_dir(&format!("tmux-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let t = Tmux { socket, dir, pastes: 0 };
        let (cols, rows) = (cols.to_string(), rows.to_string());
        let mut new = vec!["-f", "/dev/null", "new-session", "-d", "-s", "main", "-x", &cols, "-y", &rows];
        new.extend(cmd.iter().map(String::as_str));
        // The pane stays after the program ends, so its exit can be seen and its last screen read.
        new.extend([";", "set-option", "-t", "main", "remain-on-exit", "on"]);
        t.ok(&new);
        t
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().expect("tmux runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types text as keys.
    pub fn type_text(&self, text: &str) {
        self.ok(&["send-keys", "-t", "main", "-l", text]);
    }

    /// Presses keys by tmux name: `Enter`, `C-c`, `PageUp`...
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "main"];
        args.extend(keys);
        self.ok(&args);
    }

    /// Writes `text` to the program in one write, as a terminal delivers a paste: newlines become
    /// carriage returns, and with `bracketed` the text is wrapped in the bracketed-paste markers
    /// (the program asked for them).
    pub fn paste(&mut self, text: &str, bracketed: bool) {
        self.pastes += 1;
        let file = self.dir.join(format!("paste-{}", self.pastes));
        std::fs::write(&file, text).unwrap();
        let buffer = format!("b{}", self.pastes);
        self.ok(&["load-buffer", "-b", &buffer, file.to_str().unwrap()]);
        let mut args = vec!["paste-buffer", "-d", "-b", &buffer, "-t", "main"];
        if bracketed {
            args.push("-p");
        }
        self.ok(&args);
    }

    /// Closes the terminal: the program gets SIGHUP.
    pub fn hang_up(&self) {
        self.ok(&["kill-pane", "-t", "main"]);
    }

    pub fn resize(&self, cols: u16, rows: u16) {
        self.ok(&["resize-window", "-t", "main", "-x", &cols.to_string(), "-y", &rows.to_string()]);
    }

    /// The screen as text, one row a line (trailing spaces dropped by tmux).
    pub fn screen(&self) -> String {
        self.ok(&["capture-pane", "-p", "-t", "main"])
    }

    /// The screen with its color escape sequences.
    pub fn screen_with_colors(&self) -> String {
        self.ok(&["capture-pane", "-e", "-p", "-t", "main"])
    }

    /// Waits until the screen satisfies `ok`, and returns it.
    pub fn wait_screen(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(Instant::now() < end, "screen never showed {what}; it shows:\n{s}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    pub fn wait_for(&self, needle: &str) -> String {
        self.wait_screen(needle, |s| s.contains(needle))
    }

    /// Whether the program has ended.
    pub fn exited(&self) -> bool {
        self.ok(&["display-message", "-p", "-t", "main", "#{pane_dead}"]).trim() == "1"
    }

    pub fn wait_exit(&self) {
        let end = Instant::now() + DEADLINE;
        while !self.exited() {
            assert!(Instant::now() < end, "p2p-chat did not leave; screen:\n{}", self.screen());
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
