//! Rooms on the in-memory network of `net`: a room's chats reach its members and nothing of them
//! reaches anyone else; private rooms open only with their invite; members find each other through
//! non-members; a peer that lies about its rooms gets nothing.

mod net;

use std::time::Duration;

use net::{Mallory, Net};
use p2p_chat_core::rooms::RoomKeys;
use p2p_chat_core::wire::{self, Message, RoomMessage};
use p2p_chat_core::{ChatId, Command, Event, Origin, RoomId};
use quickcheck::{QuickCheck, TestResult};

fn public(name: &str) -> RoomId {
    RoomKeys::new(&RoomKeys::public_secret(name)).id
}

/// Sends `text` to `room` from node `i`; returns the chat's id.
fn say(net: &mut Net, i: usize, room: RoomId, text: &str) -> ChatId {
    let before = net.delivered[i].len();
    net.command(i, Command::Say { room, text: text.into() });
    net.delivered[i][before..]
        .iter()
        .find_map(|e| match e {
            Event::Chat(d) if d.origin == Origin::Local => Some(d.chat.id),
            _ => None,
        })
        .expect("a chat said in a room one is in is delivered locally at once")
}

/// How often node `i` delivered chat `id`, and the text it showed.
fn got(net: &Net, i: usize, id: ChatId) -> (usize, Option<String>) {
    let mut n = 0;
    let mut text = None;
    for e in &net.delivered[i] {
        if let Event::Chat(d) = e {
            if d.chat.id == id {
                n += 1;
                text = d.text().map(str::to_owned);
            }
        }
    }
    (n, text)
}

fn stats(net: &Net, i: usize) -> p2p_chat_core::Stats {
    net.nodes[i].as_ref().unwrap().stats().clone()
}

#[test]
fn a_rooms_chats_reach_its_members_and_nothing_of_them_anyone_else() {
    let mut net = Net::new(16, 7, Net::star_config);
    net.run_for(Duration::from_secs(5));
    let dev = public("#dev");
    let members = [3, 7, 9, 12, 15];
    for &m in &members {
        net.command(m, Command::JoinPublic("#dev".into()));
    }
    // Members find each other through the bootstrap node and others not in the room.
    net.run_for(Duration::from_secs(10));
    for &m in &members {
        let rooms = net.nodes[m].as_ref().unwrap().rooms();
        assert_eq!(rooms.len(), 1);
        assert!(rooms[0].neighbours >= 1, "member {m} found no member: {rooms:?}");
    }
    let ids: Vec<ChatId> = members.iter().map(|&m| say(&mut net, m, dev, &format!("secret of {m}"))).collect();
    net.run_for(Duration::from_secs(3));
    for i in 0..16 {
        for (id, from) in ids.iter().zip(members) {
            let (n, text) = got(&net, i, *id);
            if members.contains(&i) {
                assert_eq!(n, 1, "member {i} delivered {from}'s chat {n} times");
                assert_eq!(text, Some(format!("secret of {from}")));
            } else {
                assert_eq!(n, 0, "non-member {i} delivered a room chat");
            }
        }
        let s = stats(&net, i);
        assert_eq!(s.foreign_room_frames, 0, "node {i} was sent room traffic");
        if !members.contains(&i) {
            assert_eq!(s.room_frames_in, 0, "non-member {i}");
        }
    }
    // The default room still reaches everyone.
    net.command(0, Command::Chat("to all".into()));
    net.run_for(Duration::from_secs(2));
    let all = (0..16).filter(|&i| net.chats_at(i).len() > 16).count();
    assert_eq!(all, 16, "the default room reached every node");
}

#[test]
fn a_private_room_opens_only_with_its_invite_and_a_name_gives_another_room() {
    let mut net = Net::new(6, 11, Net::star_config);
    net.run_for(Duration::from_secs(5));
    net.command(
        1,
        Command::CreateRoom { name: "#team".into(), addrs: vec![net::addr(1)], valid_for: Duration::from_secs(3600) },
    );
    let code = net.last_invite(1);
    let private = net.nodes[1].as_ref().unwrap().rooms()[0].id;
    assert_ne!(private, public("#team"));
    net.command(2, Command::JoinInvite(code.clone()));
    net.command(3, Command::JoinPublic("#team".into()));
    net.run_for(Duration::from_secs(6));
    assert_eq!(net.nodes[2].as_ref().unwrap().rooms()[0].id, private);
    assert_eq!(net.nodes[3].as_ref().unwrap().rooms()[0].id, public("#team"));
    let secret = say(&mut net, 1, private, "the plan");
    let decoy = say(&mut net, 3, public("#team"), "public team chat");
    net.run_for(Duration::from_secs(3));
    assert_eq!(got(&net, 2, secret), (1, Some("the plan".into())));
    for i in [0, 3, 4, 5] {
        assert_eq!(got(&net, i, secret).0, 0, "node {i} without the invite got the private chat");
    }
    for i in [0, 1, 2, 4, 5] {
        assert_eq!(got(&net, i, decoy).0, 0, "node {i} not in the public #team got its chat");
    }
    // A damaged code is refused with a reason, and joins nothing.
    net.command(4, Command::JoinInvite(code[..code.len() - 3].into()));
    assert!(matches!(net.delivered[4].last(), Some(Event::Refused(r)) if r.contains("damaged")));
    assert!(net.nodes[4].as_ref().unwrap().rooms().is_empty());
    // Leaving stops delivery.
    net.command(2, Command::Part(private));
    net.run_for(Duration::from_secs(1));
    let after = say(&mut net, 1, private, "after you left");
    net.run_for(Duration::from_secs(3));
    assert_eq!(got(&net, 2, after).0, 0);
    assert_eq!(stats(&net, 2).foreign_room_frames, 0, "the members were told, and sent nothing more");
}

#[test]
fn a_member_that_was_away_catches_up_in_its_room() {
    let mut net = Net::new(8, 5, Net::star_config);
    net.run_for(Duration::from_secs(5));
    let room = public("#ops");
    for m in [2, 4, 6] {
        net.command(m, Command::JoinPublic("ops".into()));
    }
    net.run_for(Duration::from_secs(8));
    let away = net.pause(6);
    let ids: Vec<ChatId> = (0..5).map(|k| say(&mut net, 2 + 2 * (k % 2), room, &format!("while away {k}"))).collect();
    net.run_for(Duration::from_secs(10));
    net.resume(6, away);
    net.run_for(Duration::from_secs(40));
    for id in &ids {
        assert_eq!(got(&net, 6, *id).0, 1, "the member back from away caught up");
        for i in [0, 1, 3, 5, 7] {
            assert_eq!(got(&net, i, *id).0, 0);
        }
    }
}

#[test]
fn a_peer_that_lies_about_its_rooms_gets_nothing_and_loses_score() {
    let mut net = Net::new(3, 3, Net::star_config);
    net.run_for(Duration::from_secs(3));
    let dev = public("#dev");
    net.command(0, Command::JoinPublic("dev".into()));
    net.command(1, Command::JoinPublic("dev".into()));
    net.run_for(Duration::from_secs(3));
    let id = say(&mut net, 0, dev, "members only");
    net.run_for(Duration::from_secs(1));
    let now = net.now;
    let node = net.nodes[0].as_mut().unwrap();
    let mut m = Mallory::connect(node, 99, "10.9.9.9:5000".parse().unwrap(), now);
    let score = |node: &p2p_chat_core::Node| {
        node.peers().iter().find(|p| p.addr.ip().to_string() == "10.9.9.9").map(|p| p.score)
    };
    let before = score(node).unwrap();
    // It knows the room's id (public rooms name it), but not the name: its tag cannot prove it.
    m.send(node, now, &wire::encode(&Message::Subscribe { tag: [7; 32], public: Some(dev) }));
    // Asking for the chat by id, and syncing the room, gets nothing.
    m.send(node, now, &wire::encode(&Message::Room { room: dev, msg: RoomMessage::IWant { ids: vec![id] } }));
    let mut leaked = Vec::new();
    while let Some(o) = node.poll_output() {
        if let p2p_chat_core::Output::Transmit { conn, bytes } = o {
            if conn == m.conn {
                leaked.extend(m.open(&bytes));
            }
        }
    }
    assert!(score(node).unwrap_or(i32::MIN) < before, "the false claim cost score");
    assert!(
        leaked.iter().all(|msg| !matches!(msg, Message::Room { .. } | Message::Reply { .. } | Message::Chat { .. })),
        "room traffic reached a non-member: {leaked:?}"
    );
    assert_eq!(node.stats().foreign_room_frames, 1);
}

/// Any memberships, with frame loss and a member away for a while: every member of every room
/// delivers every chat of its rooms exactly once, and no node delivers a chat of a room it is not
/// in, nor is sent any frame of one.
#[test]
fn rooms_converge_and_never_leak_under_loss_and_absence() {
    fn prop(seed: u64, members: Vec<(u8, bool, bool)>, loss: u8) -> TestResult {
        let n = 10;
        if members.len() < n {
            return TestResult::discard();
        }
        let mut net = Net::new(n, seed, Net::star_config);
        net.frame_loss = f64::from(loss % 4) / 100.0;
        net.run_for(Duration::from_secs(4));
        let rooms = [public("a"), public("b")];
        let in_room = |i: usize, r: usize| if r == 0 { members[i].1 } else { members[i].2 };
        for i in 0..n {
            for (r, name) in ["a", "b"].iter().enumerate() {
                if in_room(i, r) {
                    net.command(i, Command::JoinPublic((*name).into()));
                }
            }
        }
        net.run_for(Duration::from_secs(10));
        let away = (0..n).find(|&i| members[i].0.is_multiple_of(3) && i != 0);
        let paused = away.map(|i| (i, net.pause(i)));
        let mut said = Vec::new();
        for (i, m) in members.iter().enumerate().take(n) {
            for (r, room) in rooms.iter().enumerate() {
                if in_room(i, r) && Some(i) != away && m.0.is_multiple_of(2) {
                    said.push((r, say(&mut net, i, *room, "x")));
                }
            }
        }
        net.run_for(Duration::from_secs(5));
        if let Some((i, p)) = paused {
            net.resume(i, p);
        }
        net.run_for(Duration::from_secs(60));
        for i in 0..n {
            for &(r, id) in &said {
                let want = usize::from(in_room(i, r));
                let (count, _) = got(&net, i, id);
                if count != want {
                    eprintln!("seed {seed}: node {i} delivered a chat of room {r} {count} times, want {want}");
                    return TestResult::failed();
                }
            }
            if stats(&net, i).foreign_room_frames != 0 {
                eprintln!("seed {seed}: node {i} was sent traffic of a room it is not in");
                return TestResult::failed();
            }
        }
        TestResult::passed()
    }
    QuickCheck::new().tests(12).quickcheck(prop as fn(u64, Vec<(u8, bool, bool)>, u8) -> TestResult);
}
