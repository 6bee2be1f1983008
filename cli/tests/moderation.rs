//! Moderation on real `p2p-chat` processes over 127.0.0.1: an owner removes a member, who sees it,
//! stays connected and never again reads the room (not on its screen, not in its database); a ban
//! refuses the member's old invite; a redaction leaves every member's `/history` and database;
//! blocks hide an identity and survive a restart; a second key using a name is marked.

#[allow(dead_code)]
mod common;

use common::{disk_holds, temp_dir, Proc};

/// O owns `#team`, A and B joined it. O removes B: B sees it and stays connected, and what A says
/// next never reaches B. O bans B, whose old invite is then refused. A redacts its first chat:
/// gone from O's and B's `/history` and databases.
fn removal_ban_and_redaction(o_runtime: &str, b_runtime: &str) {
    let dir = temp_dir(&format!("moderation-{o_runtime}-{b_runtime}"));
    let (o_dir, b_dir) = (dir.join("o"), dir.join("b"));
    let mut o = Proc::start(
        "o",
        &["listen", "-p", "0", "-u", "olga", "--runtime", o_runtime, "--db-path", o_dir.to_str().unwrap()],
    );
    let olga = o.who();
    let o_addr = o.addr();
    let mut a = Proc::start("a", &["listen", "-p", "0", "-u", "alice", "--bootstrap", &o_addr]);
    let alice = a.who();
    let a_addr = a.addr();
    let b_db = b_dir.to_str().unwrap();
    let b_args = [
        "listen",
        "-p",
        "0",
        "-u",
        "bob",
        "--runtime",
        b_runtime,
        "--db-path",
        b_db,
        "--bootstrap",
        &o_addr,
        "--bootstrap",
        &a_addr,
    ];
    let mut b = Proc::start("b", &b_args);
    let bob = b.who();
    o.wait_for(&format!("connected to {alice}"));
    o.wait_for(&format!("connected to {bob}"));
    a.wait_for(&format!("connected to {bob}"));

    o.say("/create #team");
    let line = o.wait_for("--- invite code for #team: ");
    let code = line.rsplit(' ').next().unwrap().to_owned();
    a.say(&format!("/join {code}"));
    a.wait_for("--- current room: #team");
    b.say(&format!("/join {code}"));
    b.wait_for("--- current room: #team");
    o.wait_for(&format!("#team *** {bob} joined with an invite"));
    a.wait_for(&format!("#team *** {bob} joined with an invite"));
    a.say("early words from alice");
    b.wait_for(&format!("#team {alice}: early words from alice"));
    o.wait_for(&format!("#team {alice}: early words from alice"));

    // Only the owner or an admin removes.
    a.say(&format!("/kick {bob}"));
    a.wait_for("!!! only the owner or an admin can remove, ban or unban members");
    o.say(&format!("/kick {bob}"));
    b.wait_for(&format!("#team *** {bob} was removed by {olga}"));
    a.wait_for(&format!("#team *** {bob} was removed by {olga}"));
    a.wait_for(&format!("#team *** the room's key was changed by {olga}"));
    a.wait_for("--- #team: the room's new key reached you");
    a.say("secret after the removal");
    o.wait_for(&format!("#team {alice}: secret after the removal"));
    b.say("/members");
    b.say("/peers");
    b.wait_for(&alice);
    b.say("still talking?");
    b.wait_for("!!! chat not sent: you were removed from #team");

    // Banned: the invite from before the ban does not bring B back.
    o.say(&format!("/ban {bob}"));
    b.wait_for(&format!("#team *** {bob} was banned by {olga}"));
    b.say(&format!("/join {code}"));
    b.wait_for("!!! cannot join: you are banned from #team");

    // A redacts its first chat: the second-last in its history.
    a.say("/redact 2");
    o.wait_for(&format!("#team *** a chat by {alice} was redacted by {alice}"));
    b.wait_for(&format!("#team *** a chat by {alice} was redacted by {alice}"));
    o.say("/history");
    o.wait_for("last 1 chat(s) in #team:");
    b.say("/history");
    b.wait_for("no history yet in #team");
    for p in [&mut o, &mut b] {
        p.say("/room -");
        p.wait_for("--- current room: everyone");
    }
    // The history lines come right after their heading: none is the redacted chat.
    assert_eq!(o.count("early words from alice"), 1, "shown once, when it came, not by /history");
    assert_eq!(b.count("early words from alice"), 1);
    assert_eq!(b.count("secret after the removal"), 0, "never on B's screen");
    b.quit();
    o.quit();
    a.quit();
    assert!(!disk_holds(&b_dir, "secret after the removal"), "never in B's database");
    assert!(!disk_holds(&b_dir, "early words") && !disk_holds(&o_dir, "early words"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn removal_ban_and_redaction_on_mio() {
    removal_ban_and_redaction("mio", "mio");
}

#[test]
fn removal_ban_and_redaction_with_a_smol_member() {
    removal_ban_and_redaction("mio", "smol");
}

/// A blocks B: B's chats and direct messages are no longer shown at A, and still are not after A
/// restarts. C, another key called bob, is marked on A's screen, and `/whois bob` lists both.
#[test]
fn blocks_hold_across_a_restart_and_a_second_key_for_a_name_is_marked() {
    let dir = temp_dir("moderation-blocks");
    let a_args = ["listen", "-p", "0", "-u", "alice", "--db-path", dir.to_str().unwrap()];
    let mut a = Proc::start("a", &a_args);
    let a_addr = a.addr();
    let mut b = Proc::start("b", &["listen", "-p", "0", "-u", "bob", "--bootstrap", &a_addr]);
    let bob = b.who();
    let mut c = Proc::start("c", &["listen", "-p", "0", "-u", "bob", "--bootstrap", &a_addr]);
    let other_bob = c.who();
    a.wait_for(&format!("connected to {bob}"));
    a.wait_for(&format!("connected to {other_bob}"));
    b.say("hello from the first bob");
    a.wait_for(&format!("{bob}: hello from the first bob"));
    c.say("hello from the second bob");
    let line = a.wait_for(&format!("{other_bob}: hello from the second bob"));
    assert!(line.contains("(not the first bob: /whois)"), "{line}");
    a.say("/whois bob");
    a.wait_for("2 key(s) use the name bob:");
    a.wait_for(&format!("{bob}  "));

    a.say(&format!("/block {bob}"));
    a.wait_for(&format!("--- blocked (their chats and direct messages are not shown): {bob}"));
    b.say("you cannot see this");
    let alice = a.who();
    b.say(&format!("/msg {alice} nor this"));
    c.say("marker after the blocked chat");
    a.wait_for("marker after the blocked chat");
    a.quit();
    let mut a = Proc::start("a2", &a_args);
    // B's direct message, refused unopened, is retried: it is still refused after the restart.
    a.wait_for(&format!("connected to {bob}"));
    a.say("/blocks");
    a.wait_for(&format!("--- blocked (their chats and direct messages are not shown): {bob}"));
    b.say("still blocked after the restart");
    c.say("second marker");
    a.wait_for("second marker");
    let seen = a.quit();
    assert!(!seen.iter().any(|l| l.contains("still blocked") || l.contains("nor this")), "{seen:?}");
    c.quit();
    b.quit();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A is away (stopped, its database kept) while O removes B; back, A learns of the removal, gets
/// the room's new key and writes with it, and B still reads nothing.
#[test]
fn a_member_away_during_a_removal_gets_the_new_key_when_it_returns() {
    let dir = temp_dir("moderation-away");
    let mut o = Proc::start("o", &["listen", "-p", "0", "-u", "olga"]);
    let olga = o.who();
    let o_addr = o.addr();
    let a_args = ["listen", "-p", "0", "-u", "alice", "--db-path", dir.to_str().unwrap(), "--bootstrap", &o_addr];
    let mut a = Proc::start("a", &a_args);
    let alice = a.who();
    let mut b = Proc::start("b", &["listen", "-p", "0", "-u", "bob", "--bootstrap", &o_addr]);
    let bob = b.who();
    o.wait_for(&format!("connected to {alice}"));
    o.wait_for(&format!("connected to {bob}"));
    o.say("/create #team");
    let line = o.wait_for("--- invite code for #team: ");
    let code = line.rsplit(' ').next().unwrap().to_owned();
    a.say(&format!("/join {code}"));
    b.say(&format!("/join {code}"));
    o.wait_for(&format!("#team *** {alice} joined with an invite"));
    o.wait_for(&format!("#team *** {bob} joined with an invite"));
    a.wait_for(&format!("#team *** {bob} joined with an invite"));
    a.quit();

    o.say(&format!("/kick {bob}"));
    b.wait_for(&format!("#team *** {bob} was removed by {olga}"));
    let mut a = Proc::start("a2", &a_args);
    a.wait_for(&format!("#team *** {bob} was removed by {olga}"));
    a.wait_for("--- #team: the room's new key reached you");
    a.say("/room #team");
    a.wait_for("--- current room: #team");
    a.say("back with the new key");
    o.wait_for(&format!("#team {alice}: back with the new key"));
    o.say("/room -");
    o.say("marker for everyone");
    b.wait_for("marker for everyone");
    assert_eq!(b.count("back with the new key"), 0);
    a.quit();
    b.quit();
    o.quit();
    std::fs::remove_dir_all(&dir).unwrap();
}
