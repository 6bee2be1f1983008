//! Direct messages on real `p2p-chat` processes over 127.0.0.1: delivered and read while both
//! sides are online, and held by a mailbox (the third node, M) while the recipient is away, then
//! delivered once after both restart, on both runtimes. M relays and holds them but never shows or
//! stores the text. A mailbox killed with SIGKILL after taking a message does not lose it.

#[allow(dead_code)]
mod common;

use common::{disk_holds, temp_dir, Proc};

fn db(dir: &std::path::Path, who: &str) -> String {
    dir.join(who).to_str().unwrap().to_owned()
}

/// `p2p-chat listen` on a free port with `args`, on `runtime`.
fn node(name: &str, runtime: &str, args: &[&str]) -> Proc {
    let mut all = vec!["listen", "-p", "0", "--runtime", runtime];
    all.extend_from_slice(args);
    Proc::start(name, &all)
}

#[test]
fn a_direct_message_reaches_an_offline_recipient_through_a_mailbox() {
    offline_through_a_mailbox("mio");
}

#[test]
fn a_direct_message_reaches_an_offline_recipient_through_a_mailbox_on_smol() {
    offline_through_a_mailbox("smol");
}

fn offline_through_a_mailbox(rt: &str) {
    let dir = temp_dir(&format!("dm-offline-{rt}"));
    let (m_db, a_db, b_db) = (db(&dir, "m"), db(&dir, "a"), db(&dir, "b"));
    let mut m = node("m", rt, &["-u", "mallory", "--db-path", &m_db]);
    let m_addr = m.addr();
    let mut b = node("b", rt, &["-u", "bob", "--bootstrap", &m_addr, "--db-path", &b_db]);
    let bob = b.who();
    let mut a = node("a", rt, &["-u", "alice", "--bootstrap", &m_addr, "--db-path", &a_db]);
    let alice = a.who();
    b.wait_for("connected to");
    a.wait_for("connected to");
    // Each learns the other's name from a chat.
    b.say("hello from bob");
    a.wait_for(&format!("{bob}: hello from bob"));
    a.say("hello from alice");
    b.wait_for(&format!("{alice}: hello from alice"));

    // Online: delivered, then read (shown on B's screen).
    a.say(&format!("/msg {bob} first words, online"));
    a.wait_for(&format!("[dm to {bob}] first words, online"));
    b.wait_for(&format!("[dm] {alice}: first words, online"));
    a.wait_for(&format!("--- dm to {bob} delivered"));
    a.wait_for(&format!("--- dm to {bob} read"));

    // B goes; A writes to it, and goes too.
    b.quit();
    a.say(&format!("/msg {bob} second words, offline"));
    a.wait_for(&format!("[dm to {bob}] second words, offline"));
    a.wait_for(&format!("--- dm to {bob} stored"));
    a.quit();

    // B comes back: the message is shown once.
    let mut b = node("b2", rt, &["-u", "bob", "--bootstrap", &m_addr, "--db-path", &b_db]);
    b.wait_for(&format!("[dm] {alice}: second words, offline"));
    // A comes back: its message was delivered (and read).
    let mut a = node("a2", rt, &["-u", "alice", "--bootstrap", &m_addr, "--db-path", &a_db]);
    a.wait_for(&format!("--- dm to {bob} delivered"));
    a.say("/dms");
    a.wait_for(&format!("{bob}  2 message(s), 0 unread"));
    b.say(&format!("/dms {alice}"));
    b.wait_for(&format!("[dm] {alice}: second words, offline"));
    // The conversation is open now: a plain line answers in it.
    b.wait_for(&format!("--- current conversation: {alice}"));
    b.say("a plain answer");
    b.wait_for(&format!("[dm to {alice}] a plain answer"));
    a.wait_for(&format!("[dm] {bob}: a plain answer"));
    b.say("/dms");
    b.wait_for(&format!("{alice}  3 message(s), 0 unread"));
    let b_seen = b.quit();
    assert_eq!(
        b_seen.iter().filter(|l| l.contains("] [dm] ") && l.contains("second words")).count(),
        2,
        "shown once, and once by /dms: {b_seen:#?}"
    );
    a.quit();
    let m_seen = m.quit();
    for text in ["first words", "second words"] {
        assert!(!m_seen.iter().any(|l| l.contains(text)), "not on M's screen: {m_seen:#?}");
        assert!(!disk_holds(std::path::Path::new(&m_db), text), "not in M's files");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Two mailboxes, M1 and M2, hold Bob's mail; M1 is killed with SIGKILL once Alice's message is
/// stored, while Bob is away, and Alice (who keeps nothing on disk) quits. Bob comes back through
/// M2 and is shown the message once: M2 is the only node left that holds it.
#[test]
fn a_mailbox_killed_after_taking_a_message_does_not_lose_it() {
    let dir = temp_dir("dm-kill-mailbox");
    let b_db = db(&dir, "b");
    let mut m1 = node("m1", "mio", &["-u", "m1"]);
    let m1_addr = m1.addr();
    let mut m2 = node("m2", "mio", &["-u", "m2", "--bootstrap", &m1_addr]);
    let m2_addr = m2.addr();
    let mut b = node("b", "mio", &["-u", "bob", "--bootstrap", &m1_addr, "--bootstrap", &m2_addr, "--db-path", &b_db]);
    let bob = b.who();
    let mut a = node("a", "mio", &["-u", "alice", "--bootstrap", &m1_addr, "--bootstrap", &m2_addr]);
    let alice = a.who();
    b.say("hello from bob");
    a.wait_for(&format!("{bob}: hello from bob"));
    a.say("hello from alice");
    b.wait_for(&format!("{alice}: hello from alice"));
    a.say(&format!("/msg {bob} while you are here"));
    b.wait_for(&format!("[dm] {alice}: while you are here"));
    a.wait_for(&format!("--- dm to {bob} read"));

    b.quit();
    a.say(&format!("/msg {bob} kept through a crash"));
    a.wait_for(&format!("--- dm to {bob} stored"));
    m1.child.kill().expect("SIGKILL");
    m1.child.wait().unwrap();

    a.quit();

    let mut b = node("b2", "mio", &["-u", "bob", "--bootstrap", &m2_addr, "--db-path", &b_db]);
    b.wait_for(&format!("[dm] {alice}: kept through a crash"));
    let b_seen = b.quit();
    assert_eq!(b_seen.iter().filter(|l| l.contains("kept through a crash")).count(), 1, "once: {b_seen:#?}");
    m2.quit();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A mailbox flooded by one sender keeps serving others: Alice writes 300 messages to Bob while
/// he is away, far past what one sender may leave in a mailbox (250) and past the rate of
/// deposits a connection may make; Carol's one message to Bob is still stored, and Bob, back, is
/// shown it.
#[test]
fn a_mailbox_flooded_by_one_sender_keeps_serving_others() {
    let dir = temp_dir("dm-flood");
    let b_db = db(&dir, "b");
    let mut m = node("m", "mio", &["-u", "m"]);
    let m_addr = m.addr();
    let mut b = node("b", "mio", &["-u", "bob", "--bootstrap", &m_addr, "--db-path", &b_db]);
    let bob = b.who();
    let mut a = node("a", "mio", &["-u", "alice", "--bootstrap", &m_addr]);
    let mut c = node("c", "mio", &["-u", "carol", "--bootstrap", &m_addr]);
    let carol = c.who();
    b.say("hello from bob");
    a.wait_for(&format!("{bob}: hello from bob"));
    c.wait_for(&format!("{bob}: hello from bob"));
    b.quit();
    for k in 0..300 {
        a.say(&format!("/msg {bob} flood {k}"));
    }
    a.wait_for(&format!("[dm to {bob}] flood 299"));
    c.say(&format!("/msg {bob} from carol, among the flood"));
    c.wait_for(&format!("--- dm to {bob} stored"));
    let mut b = node("b2", "mio", &["-u", "bob", "--bootstrap", &m_addr, "--db-path", &b_db]);
    // Bob has not seen Carol's name in this run: she is shown by her id alone.
    let carol_id = carol.split('#').nth(1).expect("name#id");
    b.wait_for(&format!("#{carol_id}: from carol, among the flood"));
    let seen = b.quit();
    let flood = seen.iter().filter(|l| l.contains("] [dm] ") && l.contains(": flood ")).count();
    assert!(flood <= 250, "one sender left {flood} messages in the mailbox, over its quota");
    for p in [a, c, m] {
        p.quit();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
