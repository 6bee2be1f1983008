//! Rooms on real `p2p-chat` processes over 127.0.0.1: a room's chats reach its members and no one
//! else (not their screen, not their database, not their room traffic counters), private rooms
//! open only with an invite code, and rooms, keys and history survive a restart and `kill -9`.

#[allow(dead_code)]
mod common;

use common::{disk_holds, temp_dir, wait_exit, Proc};

/// A and B in `#dev`, C not: A's chat in `#dev` reaches B, and C holds nothing of it.
fn a_public_room_reaches_its_members_only(runtime: &str) {
    let dir = temp_dir(&format!("rooms-public-{runtime}"));
    let mut a = Proc::start("a", &["listen", "-p", "0", "-u", "alice", "--runtime", runtime]);
    let alice = a.who();
    let a_addr = a.addr();
    // B joins with the flag, as a script would; A with the command.
    let mut b = Proc::start("b", &["listen", "-p", "0", "-u", "bob", "--bootstrap", &a_addr, "--join", "dev"]);
    let bob = b.who();
    let mut c = Proc::start(
        "c",
        &["listen", "-p", "0", "-u", "carol", "--bootstrap", &a_addr, "--db-path", dir.to_str().unwrap()],
    );
    b.wait_for("--- you are in #dev (public)");
    b.wait_for("--- current room: #dev");
    a.wait_for(&format!("connected to {bob}"));
    c.wait_for(&format!("connected to {alice}"));
    a.say("/join #dev");
    a.wait_for("--- you are in #dev (public)");
    a.wait_for("--- current room: #dev");

    a.say("words for dev only");
    b.wait_for(&format!("#dev {alice}: words for dev only"));
    b.say("bob answers in dev");
    a.wait_for(&format!("#dev {bob}: bob answers in dev"));
    // Back in the default room: a barrier everyone waits for, sent after the room's chats.
    a.say("/room -");
    a.wait_for("--- current room: everyone");
    a.say("marker for everyone");
    c.wait_for(&format!("] {alice}: marker for everyone"));
    b.wait_for(&format!("] {alice}: marker for everyone"));

    a.say("/rooms");
    let row = a.wait_for("#dev ");
    assert!(row.contains("public"), "{row}");
    assert_eq!(c.count("dev only"), 0, "not on C's screen");
    assert_eq!(c.count("answers in dev"), 0, "not on C's screen");
    c.say("/stats");
    c.wait_for("room frames in / out 0 / 0");
    c.wait_for("foreign room frames 0");
    b.say("/stats");
    let line = b.wait_for("room frames in / out");
    assert_ne!(line, "room frames in / out 0 / 0", "B has the room's traffic");
    c.quit();
    assert!(disk_holds(&dir, "marker for everyone"), "C's database holds the default room's chats");
    assert!(!disk_holds(&dir, "words for dev only"), "never in C's database");
    assert!(!disk_holds(&dir, "bob answers in dev"), "never in C's database");
    b.quit();
    a.quit();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_public_room_reaches_its_members_only_on_mio() {
    a_public_room_reaches_its_members_only("mio");
}

#[test]
fn a_public_room_reaches_its_members_only_with_a_smol_sender() {
    a_public_room_reaches_its_members_only("smol");
}

/// A creates `#team` and gives B the invite; C, connected to both, cannot read it, and its own
/// `/join #team` is another room. B restarts and is still a member, with its history.
#[test]
fn a_private_room_opens_only_with_its_invite_and_survives_a_restart() {
    let dir = temp_dir("rooms-private");
    let db = dir.to_str().unwrap();
    let mut a = Proc::start("a", &["listen", "-p", "0", "-u", "alice"]);
    let alice = a.who();
    let a_addr = a.addr();
    let b_args = ["listen", "-p", "0", "-u", "bob", "--runtime", "smol", "--db-path", db, "--bootstrap", &a_addr];
    let mut b = Proc::start("b", &b_args);
    let bob = b.who();
    let b_addr = b.addr();
    let mut c = Proc::start("c", &["listen", "-p", "0", "-u", "carol", "--bootstrap", &a_addr, "--bootstrap", &b_addr]);
    let carol = c.who();
    a.wait_for(&format!("connected to {bob}"));
    a.wait_for(&format!("connected to {carol}"));
    b.wait_for(&format!("connected to {carol}"));

    a.say("/create #team");
    a.wait_for("--- you are in #team (private)");
    let line = a.wait_for("--- invite code for #team: ");
    let code = line.rsplit(' ').next().unwrap().to_owned();
    assert!(code.starts_with("p2pchat-invite2:"), "{line}");
    a.say("/invite");
    b.say(&format!("/join {code}"));
    b.wait_for("--- you are in #team (private)");
    b.wait_for("--- current room: #team");
    a.say("team secret one");
    b.wait_for(&format!("#team {alice}: team secret one"));

    // The name alone gives C the public room called #team: another room.
    c.say("/join #team");
    c.wait_for("--- you are in #team (public)");
    c.say("carol in the public team");
    a.say("team secret two");
    b.wait_for(&format!("#team {alice}: team secret two"));
    a.say("/room -");
    a.say("marker after the secrets");
    c.wait_for(&format!("] {alice}: marker after the secrets"));
    b.wait_for(&format!("] {alice}: marker after the secrets"));
    assert_eq!(c.count("team secret"), 0, "C reads nothing of the private room");
    assert_eq!(a.count("carol in the public team"), 0, "the public #team is not A's room");
    assert_eq!(b.count("carol in the public team"), 0, "the public #team is not B's room");
    c.say("/invite");
    c.wait_for("!!! #team is public: anyone can /join #team");
    assert_eq!(a.count("--- invite code for #team: "), 2, "/invite gave A a fresh code");

    // B restarts: still in the room, its history opened from the sealed chats on disk.
    b.quit();
    assert!(!disk_holds(&dir, "team secret"), "a room's text is on disk only sealed");
    let mut b = Proc::start("b2", &b_args);
    b.wait_for("--- you are in #team (private)");
    b.wait_for(&format!("connected to {alice}"));
    b.say("/room #team");
    b.wait_for("--- current room: #team");
    b.say("/history");
    b.wait_for("last 2 chat(s) in #team:");
    b.wait_for(&format!("#team {alice}: team secret one"));
    b.wait_for(&format!("#team {alice}: team secret two"));
    a.say("/room #team");
    a.say("team secret three");
    b.wait_for(&format!("#team {alice}: team secret three"));
    b.say("bob is back");
    a.wait_for(&format!("#team {bob}: bob is back"));
    assert_eq!(c.count("team secret"), 0);
    b.quit();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// B is killed (`kill -9`) while in `#ops`, misses a chat, and on restart catches up in the room;
/// what it had shown before the kill is in its history.
#[test]
fn a_room_catches_up_after_a_member_was_killed() {
    let dir = temp_dir("rooms-catch-up");
    let db = dir.to_str().unwrap();
    let mut a = Proc::start("a", &["listen", "-p", "0", "-u", "alice", "--runtime", "smol", "--join", "ops"]);
    let alice = a.who();
    let a_addr = a.addr();
    let b_args = ["listen", "-p", "0", "-u", "bob", "--db-path", db, "--bootstrap", &a_addr, "--join", "#ops"];
    let mut b = Proc::start("b", &b_args);
    b.wait_for("--- current room: #ops");
    a.say("ops before the crash");
    b.wait_for(&format!("#ops {alice}: ops before the crash"));
    let _ = b.child.kill();
    wait_exit(&mut b.child);
    drop(b);

    a.say("ops while bob is away");
    a.wait_for(&format!("#ops {alice}: ops while bob is away"));
    // Said well before the restart (more than the 2 s a sender's clock may lag), so that B marks
    // it missed, however it arrives.
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    let mut b = Proc::start("b2", &b_args);
    b.wait_for(&format!("connected to {alice}"));
    let line = b.wait_for("ops while bob is away");
    assert!(line.contains(&format!("#ops {alice}: ")) && line.contains("(while you were away)"), "{line}");
    b.say("/history 5");
    b.wait_for("last 2 chat(s) in #ops:");
    let before = b.wait_for("ops before the crash");
    assert!(before.contains("#ops"), "{before}");
    b.quit();
    a.quit();
    std::fs::remove_dir_all(&dir).unwrap();
}
