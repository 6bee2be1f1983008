//! Direct messages on real `p2p-chat` processes over 127.0.0.1: delivered and read while both
//! sides are online, and held by a mailbox (the third node, M) while the recipient is away, then
//! delivered once after both restart. M relays and holds them but never shows or stores the text.

#[allow(dead_code)]
mod common;

use common::{temp_dir, Proc};

/// Whether some file under `dir` holds `text` in its bytes.
fn disk_holds(dir: &std::path::Path, text: &str) -> bool {
    std::fs::read_dir(dir).expect("the directory exists").flatten().any(|f| {
        let bytes = std::fs::read(f.path()).unwrap_or_default();
        bytes.windows(text.len()).any(|w| w == text.as_bytes())
    })
}

fn addr(p: &mut Proc) -> String {
    format!("127.0.0.1:{}", p.port())
}

fn db(dir: &std::path::Path, who: &str) -> String {
    dir.join(who).to_str().unwrap().to_owned()
}

#[test]
fn a_direct_message_reaches_an_offline_recipient_through_a_mailbox() {
    let dir = temp_dir("dm-offline");
    let (m_db, a_db, b_db) = (db(&dir, "m"), db(&dir, "a"), db(&dir, "b"));
    let mut m = Proc::start("m", &["listen", "-p", "0", "-u", "mallory", "--db-path", &m_db]);
    let m_addr = addr(&mut m);
    let mut b = Proc::start("b", &["listen", "-p", "0", "-u", "bob", "--bootstrap", &m_addr, "--db-path", &b_db]);
    let bob = b.who();
    let mut a = Proc::start("a", &["listen", "-p", "0", "-u", "alice", "--bootstrap", &m_addr, "--db-path", &a_db]);
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
    let mut b = Proc::start("b2", &["listen", "-p", "0", "-u", "bob", "--bootstrap", &m_addr, "--db-path", &b_db]);
    b.wait_for(&format!("[dm] {alice}: second words, offline"));
    // A comes back: its message was delivered (and read).
    let mut a = Proc::start("a2", &["listen", "-p", "0", "-u", "alice", "--bootstrap", &m_addr, "--db-path", &a_db]);
    a.wait_for(&format!("--- dm to {bob} delivered"));
    a.say("/dms");
    a.wait_for(&format!("{bob}  2 message(s), 0 unread"));
    b.say(&format!("/dms {alice}"));
    b.wait_for(&format!("[dm] {alice}: second words, offline"));
    b.say("/dms");
    b.wait_for(&format!("{alice}  2 message(s), 0 unread"));
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
