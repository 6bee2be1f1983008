//! The full-screen view, driven in a real terminal (tmux): what the screen shows, and what a peer
//! in line mode (`--plain`) receives.

#[allow(dead_code)]
mod common;

use common::tmux::{self, Tmux};
use common::Proc;

/// Bob in line mode, and Alice full-screen connected to him. `None` where tmux is missing.
fn alice_and_bob(test: &str, cols: u16, rows: u16) -> Option<(Tmux, Proc, String)> {
    if !tmux::available() {
        eprintln!("skipping {test}: tmux is not installed (.ci/run installs it)");
        return None;
    }
    let mut bob = Proc::start("bob", &["listen", "-p", "0", "-u", "bob", "--plain"]);
    let port = bob.port();
    let alice = Tmux::start(test, &["connect", "-a", &format!("127.0.0.1:{port}"), "-u", "alice"], cols, rows);
    alice.wait_for("connected to bob#");
    let line = bob.wait_for("connected to alice#");
    let who = line.split("connected to ").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    // Each has announced itself, so a leave is announced too.
    bob.wait_for(&format!("*** {who} joined"));
    alice.wait_for("*** bob#");
    alice.wait_for("1 peer");
    Some((alice, bob, who))
}

/// What Bob shows for a chat of Alice's.
fn from(alice: &str, text: &str) -> String {
    format!("{alice}: {text}")
}

#[test]
fn keys_arriving_in_one_burst_are_all_handled() {
    let Some((t, mut bob, alice)) = alice_and_bob("burst", 80, 24) else { return };
    // One tmux command: the keys reach the program together, in one read.
    t.keys(&["/id", "Enter", "burst one", "Enter", "burst two", "Enter"]);
    let screen = t.wait_for("burst two");
    assert!(screen.contains("peer id    "), "{screen}");
    assert!(screen.contains(&from(&alice, "burst one")), "{screen}");
    bob.wait_for(&from(&alice, "burst one"));
    bob.wait_for(&from(&alice, "burst two"));
    let screen = t.wait_for(&from(&alice, "burst two"));
    assert!(screen.trim_end().ends_with("\n>"), "nothing left in the input line: {screen}");
    // Each sender's name#id in its own color, as in line mode.
    let colored = t.screen_with_colors();
    let colored_names = colored
        .match_indices(&alice)
        .filter(|(i, _)| {
            // What follows the last escape before the name is exactly a foreground color code.
            colored[..*i].rsplit("\x1b[").next().is_some_and(|code| code.starts_with("38;5;") && code.ends_with('m'))
        })
        .count();
    assert!(colored_names >= 2, "{colored:?}");
}

#[test]
fn a_bracketed_multi_line_paste_waits_for_enter_then_sends_each_line() {
    let Some((mut t, mut bob, alice)) = alice_and_bob("bracketed", 80, 24) else { return };
    t.paste("line one\nline two\n\nline three", true);
    let screen = t.wait_for("  line three");
    assert!(screen.contains("> line one\n  line two\n"), "{screen}");
    assert!(screen.contains("3 lines"), "{screen}");
    assert_eq!(bob.count("line one"), 0, "nothing is sent before Enter");
    t.keys(&["Enter"]);
    for l in ["line one", "line two", "line three"] {
        bob.wait_for(&from(&alice, l));
    }
    let screen = t.wait_for(&from(&alice, "line three"));
    assert!(screen.contains(&from(&alice, "line one")), "{screen}");
    let order: Vec<usize> = ["line one", "line two", "line three"]
        .iter()
        .map(|l| bob.seen.iter().position(|s| s.contains(&from(&alice, l))).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "in the order pasted: {order:?}");
}

#[test]
fn a_plain_multi_line_paste_sends_every_line() {
    let Some((mut t, mut bob, alice)) = alice_and_bob("plainpaste", 80, 24) else { return };
    // Without the paste markers, a terminal delivers each line end as Enter.
    t.paste("pasted one\npasted two\npasted three\n", false);
    for l in ["pasted one", "pasted two", "pasted three"] {
        bob.wait_for(&from(&alice, l));
    }
    let screen = t.wait_for(&from(&alice, "pasted three"));
    assert!(screen.contains(&from(&alice, "pasted two")), "{screen}");
}

#[test]
fn a_chat_arriving_while_a_line_is_half_typed_leaves_it_alone() {
    let Some((t, mut bob, alice)) = alice_and_bob("halftyped", 80, 24) else { return };
    t.type_text("half typ");
    t.wait_for("> half typ");
    bob.say("incoming while typing");
    let screen = t.wait_for("bob#");
    let screen = if screen.contains("incoming while typing") { screen } else { t.wait_for("incoming while typing") };
    assert!(screen.trim_end().ends_with("> half typ"), "{screen}");
    t.type_text("ed");
    t.keys(&["Enter"]);
    bob.wait_for(&from(&alice, "half typed"));
    assert_eq!(bob.count("half typ"), 1, "sent once, whole");
}

#[test]
fn new_chats_do_not_move_a_view_scrolled_back() {
    let Some((t, mut bob, _alice)) = alice_and_bob("scroll", 80, 16) else { return };
    t.keys(&["/help", "Enter"]);
    t.wait_for("Ctrl-D");
    t.keys(&["PageUp"]);
    t.wait_for("scrolled up");
    bob.say("said while alice reads");
    t.wait_for("1 new below");
    assert!(!t.screen().contains("said while alice reads"));
    t.keys(&["End"]);
    let screen = t.wait_for("said while alice reads");
    assert!(!screen.contains("new below"), "{screen}");
}

/// SGR mouse reports, as a terminal sends them for the wheel at column 10, row 5.
const WHEEL_UP: &str = "\x1b[<64;10;5M";
const WHEEL_DOWN: &str = "\x1b[<65;10;5M";

#[test]
fn the_mouse_wheel_scrolls() {
    let Some((mut t, mut bob, _alice)) = alice_and_bob("wheel", 80, 16) else { return };
    t.keys(&["/help", "Enter"]);
    t.wait_for("Ctrl-D");
    t.paste(&WHEEL_UP.repeat(2), false);
    t.wait_for("scrolled up");
    bob.say("said while alice scrolls");
    t.wait_for("1 new below");
    // Two steps back, and one more for the row that arrived meanwhile.
    t.paste(&WHEEL_DOWN.repeat(3), false);
    let screen = t.wait_for("said while alice scrolls");
    assert!(!screen.contains("new below") && !screen.contains("scrolled up"), "{screen}");
}

#[test]
fn ctrl_c_clears_the_typed_line_and_twice_leaves() {
    let Some((t, mut bob, alice)) = alice_and_bob("ctrlc", 80, 24) else { return };
    t.type_text("never to be sent");
    t.wait_for("> never to be sent");
    t.keys(&["C-c"]);
    t.wait_screen("an empty input line", |s| s.trim_end().ends_with('>') && !s.contains("never to be"));
    t.type_text("sent instead");
    t.keys(&["Enter"]);
    bob.wait_for(&from(&alice, "sent instead"));
    assert_eq!(bob.count("never to be sent"), 0);
    assert!(!t.exited());
    t.keys(&["C-c"]);
    t.wait_for("Ctrl-C again");
    t.keys(&["C-c"]);
    t.wait_exit();
    bob.wait_for(&format!("*** {alice} left"));
}

#[test]
fn ctrl_d_on_an_empty_line_leaves() {
    let Some((t, mut bob, alice)) = alice_and_bob("ctrld", 80, 24) else { return };
    t.keys(&["C-d"]);
    t.wait_exit();
    bob.wait_for(&format!("*** {alice} left"));
}

#[test]
fn closing_the_terminal_still_announces_the_leave() {
    let Some((t, mut bob, alice)) = alice_and_bob("hangup", 80, 24) else { return };
    t.hang_up();
    bob.wait_for(&format!("*** {alice} left"));
}

/// SIGTERM while the view holds the terminal: the terminal is given back in its usual mode.
#[test]
fn a_terminated_view_gives_the_terminal_back() {
    if !tmux::available() {
        eprintln!("skipping: tmux is not installed (.ci/run installs it)");
        return;
    }
    let dir = common::temp_dir("stty");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("stty");
    let bin = env!("CARGO_BIN_EXE_p2p-chat");
    let script = format!("'{bin}' listen -p 0 -u alice; stty -a > '{}'; sleep 60", out.display());
    let t = Tmux::start_shell("stty", &script, 80, 24);
    t.wait_for(" alice#");
    let shell = t.pane_pid();
    let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).unwrap();
    let chat: i32 = children.split_whitespace().next().expect("p2p-chat runs under the shell").parse().unwrap();
    unsafe { libc::kill(chat, libc::SIGTERM) };
    let end = std::time::Instant::now() + common::DEADLINE;
    let modes = loop {
        match std::fs::read_to_string(&out) {
            Ok(m) if m.contains("icanon") => break m,
            _ => assert!(std::time::Instant::now() < end, "no stty output; screen:\n{}", t.screen()),
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let words: Vec<&str> = modes.split_whitespace().collect();
    assert!(words.contains(&"icanon") && words.contains(&"echo"), "raw mode left on: {modes}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_resize_lays_the_screen_out_again() {
    let Some((t, mut bob, alice)) = alice_and_bob("resize", 80, 24) else { return };
    t.resize(40, 12);
    let long = "word ".repeat(16).trim_end().to_owned(); // 79 bytes
    t.type_text(&long);
    t.keys(&["Enter"]);
    bob.wait_for(&from(&alice, &long));
    let screen = t.wait_for("alice#");
    assert!(screen.lines().all(|l| l.chars().count() <= 40), "{screen}");
    assert!(screen.lines().count() <= 12, "{screen}");
    assert!(screen.contains("room: everyone") || screen.contains(" alice#"), "status bar: {screen}");
    t.resize(120, 30);
    // The chat, wrapped on 40 columns, fits one row of 120 again.
    let screen = t.wait_screen("the chat on one row", |s| s.lines().any(|l| l.ends_with(&from(&alice, &long))));
    assert!(screen.contains("room: everyone"), "{screen}");
}

#[test]
fn a_line_over_the_limit_is_sent_whole_as_several_chats() {
    // Tall and wide enough to hold the note and both chats (26 rows) on one screen.
    let Some((mut t, mut bob, alice)) = alice_and_bob("long", 200, 50) else { return };
    let line = "0123456789".repeat(500);
    t.paste(&line, true);
    t.wait_for("5,000/4,096 B");
    t.keys(&["Enter"]);
    t.wait_for("that line is 5,000 bytes");
    let first = bob.wait_for(&from(&alice, "0123"));
    let mut got = first.split(&format!("{alice}: ")).nth(1).unwrap().to_owned();
    assert_eq!(got.len(), 4096, "the first chat is as long as a chat can be");
    let second = bob.wait_for(&from(&alice, "6789012345"));
    got += second.split(&format!("{alice}: ")).nth(1).unwrap();
    assert_eq!(got, line, "every byte arrives, in order");
}

#[test]
fn emoji_and_right_to_left_text_keep_the_layout() {
    let Some((t, mut bob, alice)) = alice_and_bob("emoji", 60, 20) else { return };
    let text = "emoji 👍🏽 👨‍👩‍👧 漢字 שלום עולם end";
    t.type_text(text);
    t.keys(&["Enter"]);
    bob.wait_for(&from(&alice, text));
    let screen = t.wait_for("漢字");
    assert!(screen.contains("end"), "{screen}");
    bob.say("reply after the emoji");
    let screen = t.wait_for("reply after the emoji");
    let rows: Vec<&str> = screen.lines().collect();
    let status = rows.iter().rev().find(|l| l.contains("room: everyone")).unwrap_or_else(|| panic!("{screen}"));
    assert!(status.contains("1 peer"), "{screen}");
    assert!(screen.trim_end().ends_with("\n>"), "a clean input line: {screen}");
}

#[test]
fn a_paste_of_hundreds_of_lines_arrives_whole_and_in_order() {
    let Some((mut t, mut bob, alice)) = alice_and_bob("bigpaste", 80, 24) else { return };
    let lines: Vec<String> = (1..=300).map(|i| format!("pasted line {i:03} of 300")).collect();
    t.paste(&lines.join("\n"), true);
    t.wait_for("300 lines");
    t.keys(&["Enter"]);
    bob.wait_for(&from(&alice, "pasted line 300 of 300"));
    let got: Vec<&String> = bob.seen.iter().filter(|l| l.contains(": pasted line ")).collect();
    assert_eq!(got.len(), 300, "every line, once");
    for (l, want) in got.iter().zip(&lines) {
        assert!(l.ends_with(&from(&alice, want)), "in order: {l} / {want}");
    }
    t.wait_for(&from(&alice, "pasted line 300 of 300"));
}

#[test]
fn editing_keys_and_history_work_on_the_real_terminal() {
    let Some((t, mut bob, alice)) = alice_and_bob("editing", 80, 24) else { return };
    t.type_text("helo wrld");
    t.keys(&["Left", "Left", "Left", "o", "Home", "Right", "Right", "Right", "l", "Enter"]);
    bob.wait_for(&from(&alice, "hello world"));
    t.keys(&["Up"]);
    t.wait_screen("the sent line back in the input", |s| s.trim_end().ends_with("> hello world"));
    t.keys(&["C-w", "there", "Enter"]);
    bob.wait_for(&from(&alice, "hello there"));
}

#[test]
fn the_room_line_lists_rooms_with_unread_counts_and_ctrl_n_p_switch() {
    let Some((t, mut bob, alice)) = alice_and_bob("rooms", 80, 24) else { return };
    bob.say("/join #dev");
    bob.wait_for("--- current room: #dev");
    t.type_text("/join #dev");
    t.keys(&["Enter"]);
    let screen = t.wait_for(" rooms: everyone · [#dev]");
    assert!(screen.contains("room: #dev │"), "the bar names the current room: {screen}");
    t.type_text("hello dev");
    t.keys(&["Enter"]);
    bob.wait_for(&format!("#dev {}", from(&alice, "hello dev")));
    // Back to everyone: bob's chats in #dev count as unread there, and are read on return.
    t.keys(&["C-p"]);
    t.wait_for("room: everyone │");
    bob.say("unread one");
    bob.say("unread two");
    t.wait_for("#dev (2)");
    t.keys(&["C-n"]);
    let screen = t.wait_for(" rooms: everyone · [#dev]");
    assert!(!screen.contains("#dev (2)"), "{screen}");
}

/// The `name#1234abcd` after "you are " on a full-screen startup screen.
fn who_on(screen: &str) -> String {
    screen.split("you are ").nth(1).unwrap().split_whitespace().next().unwrap().to_owned()
}

#[test]
fn a_conversation_joins_the_room_line_with_its_unread_count_and_typing_shows_on_the_other_side() {
    if !tmux::available() {
        eprintln!("skipping: tmux is not installed (.ci/run installs it)");
        return;
    }
    let bob = Tmux::start("dm-bob", &["listen", "-p", "0", "-u", "bob"], 120, 24);
    let screen = bob.wait_for("listening on");
    let bob_who = who_on(&screen);
    let port = screen.split("listening on ").nth(1).unwrap().split(';').next().unwrap().rsplit(':').next().unwrap();
    let alice = Tmux::start("dm-alice", &["connect", "-a", &format!("127.0.0.1:{port}"), "-u", "alice"], 120, 24);
    let alice_who = who_on(&alice.wait_for("you are "));
    alice.wait_for(&format!("connected to {bob_who}"));
    bob.wait_for(&format!("connected to {alice_who}"));

    alice.type_text(&format!("/msg {bob_who} are you there?"));
    alice.keys(&["Enter"]);
    bob.wait_for(&format!("[dm] {alice_who}: are you there?"));
    let screen = bob.wait_for(&format!("@{alice_who} (1)"));
    assert!(screen.contains(" rooms: [everyone] · "), "the conversation beside the rooms: {screen}");

    // Ctrl-N: the conversation after the default room; it is read, and lines go there.
    bob.keys(&["C-n"]);
    let screen = bob.wait_for(&format!("room: @{alice_who}"));
    assert!(screen.contains(&format!("[@{alice_who}]")), "{screen}");
    bob.type_text("yes, here");
    alice.wait_for(&format!("{bob_who} is typing…"));
    bob.keys(&["Enter"]);
    alice.wait_for(&format!("[dm] {bob_who}: yes, here"));
    alice.wait_screen("the typing notice gone", |s| !s.contains("is typing"));
    bob.wait_for(&format!("[dm to {alice_who}] yes, here"));
    // `/history` in a conversation shows it.
    bob.type_text("/history");
    bob.keys(&["Enter"]);
    bob.wait_for(&format!("direct message(s) with {alice_who}"));
}
