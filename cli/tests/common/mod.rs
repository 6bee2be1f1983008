//! Running real `p2p-chat` processes for the tests: start, feed lines, wait for output.

pub mod netns;
pub mod tmux;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

pub const DEADLINE: Duration = Duration::from_secs(30);

pub struct Proc {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    pub seen: Vec<String>,
    pub name: String,
}

impl Proc {
    pub fn start(name: &str, args: &[&str]) -> Proc {
        Proc::start_in(name, None, args)
    }

    /// Starts `p2p-chat` inside a network namespace (`ip netns exec`), or directly for `None`.
    pub fn start_in(name: &str, netns: Option<&str>, args: &[&str]) -> Proc {
        let bin = env!("CARGO_BIN_EXE_p2p-chat");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, bin]);
                c
            }
            None => Command::new(bin),
        };
        let mut child = cmd
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("p2p-chat starts");
        let (tx, lines) = channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let tx2 = tx.clone();
        std::thread::spawn(move || BufReader::new(out).lines().map_while(Result::ok).for_each(|l| drop(tx.send(l))));
        std::thread::spawn(move || {
            BufReader::new(err).lines().map_while(Result::ok).for_each(|l| drop(tx2.send(format!("stderr: {l}"))))
        });
        let stdin = child.stdin.take();
        Proc { child, stdin, lines, seen: Vec::new(), name: name.into() }
    }

    /// The first line containing `needle`, waiting for it if need be.
    pub fn wait_for(&mut self, needle: &str) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let end = Instant::now() + DEADLINE;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("{}: no line with {needle:?} in time; output:\n{}", self.name, self.seen.join("\n"));
    }

    /// After the process has exited: takes in all it printed, up to the end of its output.
    pub fn drain(&mut self) {
        let end = Instant::now() + DEADLINE;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => return, // disconnected: both output pipes are closed
            }
        }
    }

    pub fn count(&mut self, needle: &str) -> usize {
        self.seen.extend(self.lines.try_iter());
        self.seen.iter().filter(|l| l.contains(needle)).count()
    }

    pub fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// The port from the startup line.
    /// The address to dial this node at: 127.0.0.1 and its listening port.
    pub fn addr(&mut self) -> String {
        format!("127.0.0.1:{}", self.port())
    }

    pub fn port(&mut self) -> u16 {
        let l = self.wait_for("listening on");
        let tail = l.split("listening on ").nth(1).unwrap();
        let addr = tail.split(';').next().unwrap();
        addr.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// The `name#1234abcd` handle from the startup line.
    pub fn who(&mut self) -> String {
        let l = self.wait_for("you are ");
        l.split("you are ").nth(1).unwrap().split_whitespace().next().unwrap().to_owned()
    }

    /// Closes stdin (end of input quits) and waits for a clean exit.
    pub fn quit(mut self) -> Vec<String> {
        drop(self.stdin.take());
        let status = wait_exit(&mut self.child);
        self.seen.extend(self.lines.try_iter());
        assert!(status.success(), "{} exited with {status}:\n{}", self.name, self.seen.join("\n"));
        std::mem::take(&mut self.seen)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < end, "process did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("p2p-chat-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

pub fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_p2p-chat")).args(args).stdin(Stdio::null()).output().expect("runs")
}

/// Whether some file in a node's `--db-path` directory holds `text` in its bytes; the history
/// database must be among them.
pub fn disk_holds(dir: &std::path::Path, text: &str) -> bool {
    assert!(dir.join("history.redb").exists(), "no database in {}", dir.display());
    std::fs::read_dir(dir).expect("the directory exists").flatten().any(|f| {
        let bytes = std::fs::read(f.path()).unwrap_or_default();
        bytes.windows(text.len()).any(|w| w == text.as_bytes())
    })
}
