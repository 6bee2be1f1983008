//! Moderation on the in-memory network of `net`: a removed member reads nothing said after its
//! removal although it stays connected, a ban refuses the old invite, a member away during a
//! removal gets the new key on return, a redaction leaves every member, a member's forged or
//! unauthorised operations change nothing; and the membership rule gives one state whatever
//! order, partition or loss the operations went through.

mod net;

use std::collections::BTreeMap;
use std::time::Duration;

use net::{Mallory, Net};
use p2p_chat_core::random::Rng;
use p2p_chat_core::rooms::{Invite, JoinProof, MemberLog, Op, RoomKeys};
use p2p_chat_core::wire::{self, Message};
use p2p_chat_core::{
    Action, Body, Chat, ChatId, Command, Ed25519Keys, Event, Keys, Node, Origin, PeerId, PublicKey, RoomId, Signature,
};
use quickcheck::{Arbitrary, Gen, QuickCheck};

fn with_dm(i: usize, node: Node) -> Node {
    node.with_dm(Box::new(p2p_chat_core::dm::StandInCrypto::new(&mut Rng::new(1000 + i as u64))))
}

fn id_of(net: &Net, i: usize) -> PeerId {
    net.nodes[i].as_ref().unwrap().peer_id()
}

/// Node 0 owns a private room `#team`; nodes 1 and 2 joined it with invites from node 0.
fn team(n: usize, seed: u64) -> (Net, RoomId, String) {
    let mut net = Net::new_with(n, seed, Net::star_config, with_dm);
    net.run_for(Duration::from_secs(3));
    net.command(0, Command::CreateRoom { name: "team".into(), addrs: vec![net::addr(0)], valid_for: HOUR });
    let code = net.last_invite(0);
    let invite = Invite::from_code(&code, &Ed25519Keys::from_seed(9), net.now).unwrap();
    let room = RoomKeys::with_owner(&invite.secret, Some(&invite.owner)).id;
    for i in 1..n.min(3) {
        net.command(i, Command::JoinInvite(code.clone()));
    }
    net.run_for(Duration::from_secs(5));
    (net, room, code)
}

const HOUR: Duration = Duration::from_secs(3600);

fn say(net: &mut Net, i: usize, room: RoomId, text: &str) -> Option<ChatId> {
    let before = net.delivered[i].len();
    net.command(i, Command::Say { room, text: text.into() });
    net.delivered[i][before..].iter().find_map(|e| match e {
        Event::Chat(d) if d.origin == Origin::Local => Some(d.chat.id),
        _ => None,
    })
}

fn shown(net: &Net, i: usize, id: ChatId) -> bool {
    net.delivered[i].iter().any(|e| matches!(e, Event::Chat(d) if d.chat.id == id))
}

fn refusals(net: &Net, i: usize) -> Vec<String> {
    net.delivered[i]
        .iter()
        .filter_map(|e| match e {
            Event::Refused(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn members(net: &Net, i: usize, room: RoomId) -> Vec<PublicKey> {
    net.nodes[i].as_ref().unwrap().members(&room).into_iter().filter(|m| m.role.is_some()).map(|m| m.key).collect()
}

#[test]
fn a_removed_member_reads_nothing_said_after_and_an_old_invite_does_not_bring_it_back() {
    let (mut net, room, code) = team(3, 5);
    assert_eq!(members(&net, 2, room).len(), 3, "everyone joined: {:?}", members(&net, 2, room));
    let before = say(&mut net, 1, room, "before").unwrap();
    net.run_for(Duration::from_secs(2));
    assert!(shown(&net, 2, before));
    let b = id_of(&net, 2);
    net.command(2, Command::Moderate { room, action: Action::Kick(id_of(&net, 1)) });
    assert!(refusals(&net, 2).iter().any(|r| r.contains("only the owner or an admin")), "{:?}", refusals(&net, 2));
    net.command(0, Command::Moderate { room, action: Action::Kick(b) });
    net.run_for(Duration::from_secs(5));
    // B is told, and stays connected to the others.
    let told = net.delivered[2]
        .iter()
        .any(|e| matches!(e, Event::Membership(c) if c.applied && matches!(c.op, Op::Remove(k) if k.peer_id() == b)));
    assert!(told, "the removed member sees its removal");
    assert!(net.nodes[2].as_ref().unwrap().peer_count() > 0);
    for i in 0..3 {
        assert_eq!(members(&net, i, room).len(), 2, "node {i} agrees on the membership");
    }
    let after = say(&mut net, 1, room, "after the removal").expect("A holds the new key");
    net.run_for(Duration::from_secs(3));
    assert!(shown(&net, 0, after), "the owner reads it");
    assert!(!shown(&net, 2, after), "the removed member never does");
    assert_eq!(say(&mut net, 2, room, "still here?"), None);
    assert!(refusals(&net, 2).iter().any(|r| r.contains("you were removed")));
    // Banned, the old invite is refused.
    net.command(0, Command::Moderate { room, action: Action::Ban(b) });
    net.run_for(Duration::from_secs(3));
    net.command(2, Command::JoinInvite(code));
    assert!(refusals(&net, 2).iter().any(|r| r.contains("banned")), "{:?}", refusals(&net, 2));
    let later = say(&mut net, 0, room, "after the ban").unwrap();
    net.run_for(Duration::from_secs(3));
    assert!(shown(&net, 1, later) && !shown(&net, 2, later));
}

#[test]
fn a_member_away_during_a_removal_gets_the_new_key_when_it_returns() {
    let (mut net, room, _) = team(4, 8);
    let code = {
        net.command(0, Command::Invite { room, addrs: vec![net::addr(0)], valid_for: HOUR });
        net.last_invite(0)
    };
    net.command(3, Command::JoinInvite(code));
    net.run_for(Duration::from_secs(5));
    assert_eq!(members(&net, 0, room).len(), 4);
    let away = net.pause(1);
    net.command(0, Command::Moderate { room, action: Action::Kick(id_of(&net, 2)) });
    net.run_for(Duration::from_secs(10));
    net.resume(1, away);
    net.run_for(Duration::from_secs(40));
    assert_eq!(members(&net, 1, room).len(), 3, "it learned of the removal");
    let id = say(&mut net, 1, room, "back, with the new key").expect("the new key came");
    net.run_for(Duration::from_secs(3));
    assert!(shown(&net, 3, id) && !shown(&net, 2, id));
}

#[test]
fn a_redacted_chat_leaves_every_member() {
    let (mut net, room, _) = team(3, 11);
    let id = say(&mut net, 1, room, "oops").unwrap();
    net.run_for(Duration::from_secs(2));
    net.command(1, Command::Moderate { room, action: Action::Redact(id) });
    net.run_for(Duration::from_secs(3));
    for i in 0..3 {
        let gone = net.delivered[i].iter().any(|e| matches!(e, Event::Redacted { chat, .. } if *chat == id));
        assert!(gone, "node {i} was told");
        let held = net.nodes[i].as_ref().unwrap().recent_chats().any(|c| c.id == id);
        assert!(!held);
    }
    // Nobody else's chat can be redacted by a plain member.
    let other = say(&mut net, 0, room, "mine").unwrap();
    net.run_for(Duration::from_secs(2));
    net.command(2, Command::Moderate { room, action: Action::Redact(other) });
    assert!(refusals(&net, 2).iter().any(|r| r.contains("only its author")));
}

/// A member that completed the real handshake and proved it is in the room sends operations it
/// had no right to, forged ones, and one for another room: nothing changes, and the forgeries cost.
#[test]
fn forged_unauthorised_and_misdirected_operations_change_nothing() {
    let (mut net, room, code) = team(3, 13);
    let invite = Invite::from_code(&code, &Ed25519Keys::from_seed(9), net.now).unwrap();
    let now = net.now;
    let owner = net.nodes[0].as_ref().unwrap().public_key();
    let a = net.nodes[1].as_ref().unwrap().public_key();
    let node = net.nodes[0].as_mut().unwrap();
    let mut m = Mallory::connect(node, 99, "10.9.9.9:5000".parse().unwrap(), now);
    let keys = RoomKeys::with_owner(&invite.secret, Some(&invite.owner));
    m.send(node, now, &wire::encode(&Message::Subscribe { tag: keys.tag(&m.client.binding(), true), public: None }));
    let mk = Ed25519Keys::from_seed(99);
    let mut n = 0u8;
    let mut op = |keys: &Ed25519Keys, room: RoomId, op: Op| {
        n += 1;
        Chat::in_room(keys, ChatId::new_v7(now.as_millis(), &[n; 10]), room, "mallory", Body::Op(op))
    };
    let score = |node: &Node| node.peers().iter().find(|p| p.addr.ip().to_string() == "10.9.9.9").map(|p| p.score);
    let before = score(node).unwrap();
    let mut forged = op(&mk, room, Op::Ban(a));
    forged.author = owner;
    let mut fake_invite = invite.proof();
    fake_invite.issued_ms += 1;
    let chats = [
        op(&mk, room, Op::Remove(a)),              // not an admin
        op(&mk, room, Op::Grant(mk.public_key())), // only the owner grants
        forged,                                    // signed by another key
        op(&mk, RoomId([9; 16]), Op::Remove(a)),   // another room
        op(&mk, room, Op::Join(fake_invite)),      // an invite altered
        op(&mk, room, Op::Join(JoinProof { inviter: mk.public_key(), ..invite.proof() })),
    ];
    for chat in chats {
        m.send(node, now, &wire::encode(&Message::Chat { ttl: 5, hops: 1, chat: chat.into() }));
    }
    // A genuine operation replayed (here, B's own join) is a duplicate: nothing changes.
    let joins: Vec<_> =
        node.recent_chats_in(&room).into_iter().filter(|c| matches!(c.body, Body::Op(Op::Join(_)))).collect();
    assert_eq!(joins.len(), 2);
    for chat in joins {
        m.send(node, now, &wire::encode(&Message::Chat { ttl: 5, hops: 1, chat }));
    }
    while node.poll_output().is_some() {}
    let after = score(node).unwrap();
    assert!(after <= before - 55, "three forgeries cost {before} -> {after}");
    let s = node.members(&room);
    assert_eq!(s.iter().filter(|m| m.role.is_some()).count(), 3, "{s:?}");
    assert!(s.iter().all(|m| m.key != mk.public_key() && !m.banned));
}

// ---- the rule, alone: one state whatever the order, the partition or the loss ----

#[derive(Clone, Debug)]
struct Ops(Vec<(u64, u8, Op)>);

/// Four identities (0 the owner) and every kind of operation among them, at random times.
impl Arbitrary for Ops {
    fn arbitrary(g: &mut Gen) -> Ops {
        let k = |n: u8| PublicKey([n; 32]);
        let n = usize::arbitrary(g) % 40;
        let ops = (0..n)
            .map(|i| {
                let who = k(u8::arbitrary(g) % 4);
                let op = match u8::arbitrary(g) % 8 {
                    0 | 1 => Op::Join(JoinProof {
                        addrs: vec![],
                        issued_ms: u64::arbitrary(g) % 100,
                        expires_ms: u64::MAX,
                        inviter: k(u8::arbitrary(g) % 4),
                        signature: Signature([0; 64]),
                    }),
                    2 => Op::Remove(who),
                    3 => Op::Ban(who),
                    4 => Op::Unban(who),
                    5 => Op::Grant(who),
                    6 => Op::Revoke(who),
                    _ => Op::Rekey { check: [i as u8; 32], seen: [0; 32] },
                };
                (u64::arbitrary(g) % 100, u8::arbitrary(g) % 4, op)
            })
            .collect();
        Ops(ops)
    }
}

fn id(at: u64, i: usize) -> ChatId {
    ChatId::new_v7(at, &[i as u8; 10])
}

fn fold(ops: &[(ChatId, PublicKey, Op)]) -> MemberLog {
    let mut log = MemberLog::new(PublicKey([0; 32]));
    for (id, a, op) in ops {
        let _ = log.insert(*id, *a, op.clone());
    }
    log
}

/// Three replicas: each gets a random part of the operations in a random order (a partition with
/// loss), then everything again in another order (the heal and the repair). Each state in the
/// partition is the rule applied to what that replica holds, and after the heal all three agree.
#[test]
fn every_order_partition_and_loss_ends_in_one_membership() {
    fn prop(ops: Ops, seed: u64) -> bool {
        let mut rng = Rng::new(seed);
        let all: Vec<(ChatId, PublicKey, Op)> =
            ops.0.iter().enumerate().map(|(i, (at, a, op))| (id(*at, i), PublicKey([*a; 32]), op.clone())).collect();
        let mut sorted = all.clone();
        sorted.sort_by_key(|(id, _, _)| *id);
        let reference = fold(&sorted);
        let mut states = Vec::new();
        for _ in 0..3 {
            let mut order = all.clone();
            shuffle(&mut order, &mut rng);
            let part: Vec<_> = order.iter().filter(|_| rng.below(3) > 0).cloned().collect();
            let mut log = fold(&part);
            let mut held: BTreeMap<ChatId, _> = part.iter().map(|o| (o.0, o.clone())).collect();
            let held_sorted: Vec<_> = std::mem::take(&mut held).into_values().collect();
            if fold(&held_sorted).state() != log.state() {
                eprintln!("seed {seed}: the partitioned state depends on arrival order");
                return false;
            }
            shuffle(&mut order, &mut rng);
            for (id, a, op) in order {
                let _ = log.insert(id, a, op);
            }
            states.push(log.state().clone());
        }
        let ok = states.iter().all(|s| s == reference.state());
        if !ok {
            eprintln!("seed {seed}: replicas disagree after the heal");
        }
        ok
    }
    QuickCheck::new().tests(300).quickcheck(prop as fn(Ops, u64) -> bool);
}

fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.below(i + 1));
    }
}

/// Six members, two of them admins, split in two. On one side A2 removes C; then, on the other,
/// the owner removes B (who is on A2's side) and takes admin from A2; then A2 bans M. After the
/// heal every member holds one membership: B and C out, A2's ban ignored (it was no admin by then),
/// and the room rekeyed once more, since the owner's key went to C, whom the other side removed.
/// No chat said after that can be opened with any key B or C was ever handed.
#[test]
fn moderation_in_a_partition_converges_after_the_heal_and_the_removed_read_nothing_later() {
    let mut net = Net::new_with(6, 21, Net::star_config, with_dm);
    net.run_for(Duration::from_secs(3));
    net.command(0, Command::CreateRoom { name: "team".into(), addrs: vec![net::addr(0)], valid_for: HOUR });
    let code = net.last_invite(0);
    let invite = Invite::from_code(&code, &Ed25519Keys::from_seed(9), net.now).unwrap();
    let room = RoomKeys::with_owner(&invite.secret, Some(&invite.owner)).id;
    for i in 1..6 {
        net.command(i, Command::JoinInvite(code.clone()));
    }
    net.run_for(Duration::from_secs(5));
    let (a1, a2, m, b, c) = (1, 2, 3, 4, 5);
    for admin in [a1, a2] {
        net.command(0, Command::Moderate { room, action: Action::Op(id_of(&net, admin)) });
    }
    net.run_for(Duration::from_secs(3));
    assert_eq!(members(&net, c, room).len(), 6);

    net.partition(|i| u8::from([a2, b, c].contains(&i)));
    net.run_for(Duration::from_secs(1));
    net.command(a2, Command::Moderate { room, action: Action::Kick(id_of(&net, c)) });
    net.run_for(Duration::from_secs(2));
    net.command(0, Command::Moderate { room, action: Action::Kick(id_of(&net, b)) });
    net.command(0, Command::Moderate { room, action: Action::Deop(id_of(&net, a2)) });
    net.run_for(Duration::from_secs(2));
    net.command(a2, Command::Moderate { room, action: Action::Ban(id_of(&net, m)) });
    net.run_for(Duration::from_secs(5));
    // Each side's newest key went to a member the other side removed.
    let c_held = held_room_infos(&net, c).last().map_or(0, |i| i.epochs.len());
    assert!(c_held == 0, "C was removed on its own side: it got no key there");
    net.heal();
    net.run_for(Duration::from_secs(90));

    let keys = |i: usize| net.nodes[i].as_ref().unwrap().public_key();
    let expected: Vec<PublicKey> = {
        let mut v = vec![keys(0), keys(a1), keys(a2), keys(m)];
        v.sort();
        v
    };
    for i in 0..6 {
        let mut got = members(&net, i, room);
        got.sort();
        assert_eq!(got, expected, "node {i} ends in the same membership");
    }
    let rekeys = net.delivered[0]
        .iter()
        .filter(|e| matches!(e, Event::Membership(c) if c.applied && matches!(c.op, Op::Rekey { .. })))
        .count();
    assert!(rekeys >= 3, "each side rekeyed, then the owner once more: {rekeys}");
    let c_keys = held_room_infos(&net, c).last().map_or(0, |i| i.epochs.len());
    assert!(c_keys >= 1, "C was handed the owner's key from the other side: the reason for the last rekey");
    let roles = net.nodes[m].as_ref().unwrap().members(&room);
    assert!(roles.iter().all(|e| !e.banned || e.key == keys(b) || e.key == keys(c)), "{roles:?}");

    let mut said = Vec::new();
    for i in [0, a1, a2, m] {
        said.push(say(&mut net, i, room, &format!("after the heal, from {i}")).expect("every member has the key"));
    }
    net.run_for(Duration::from_secs(5));
    for &id in &said {
        for i in [0, a1, a2, m] {
            assert!(shown(&net, i, id), "member {i} reads {id}");
        }
        for out in [b, c] {
            assert!(!shown(&net, out, id), "removed node {out} never shows {id}");
            // Directly: none of the keys the removed node was ever handed opens it.
            let chat = net.nodes[0].as_ref().unwrap().recent_chats_in(&room).into_iter().find(|c| c.id == id).unwrap();
            for info in held_room_infos(&net, out) {
                let Body::Sealed(s) = &chat.body else { unreachable!() };
                let epoch = RoomKeys::sealed_epoch(s).unwrap();
                assert!(info.keys_for(epoch).and_then(|k| chat.open(&k)).is_none(), "node {out} can open {id}");
            }
        }
    }
}

/// Every version of room info node `i` was told of (joined, or a key came).
fn held_room_infos(net: &Net, i: usize) -> Vec<p2p_chat_core::RoomInfo> {
    net.delivered[i]
        .iter()
        .filter_map(|e| match e {
            Event::RoomJoined(info) | Event::RoomUpdated(info) => Some(info.clone()),
            _ => None,
        })
        .collect()
}

/// The room's log outlives the retention window of its chats: a member that joins after the
/// owner's operations aged out of sync still gets them from its member neighbours, so it judges
/// a later removal by an admin made long ago as everyone else does.
#[test]
fn a_member_that_joins_after_the_window_still_gets_the_start_of_the_log() {
    let short = |i: usize| p2p_chat_core::Config { retention: Duration::from_secs(60), ..Net::star_config(i) };
    let mut net = Net::new_with(4, 31, short, with_dm);
    net.run_for(Duration::from_secs(3));
    net.command(0, Command::CreateRoom { name: "team".into(), addrs: vec![net::addr(0)], valid_for: HOUR });
    let code = net.last_invite(0);
    let invite = Invite::from_code(&code, &Ed25519Keys::from_seed(9), net.now).unwrap();
    let room = RoomKeys::with_owner(&invite.secret, Some(&invite.owner)).id;
    for i in [1, 2] {
        net.command(i, Command::JoinInvite(code.clone()));
    }
    net.run_for(Duration::from_secs(3));
    net.command(0, Command::Moderate { room, action: Action::Op(id_of(&net, 1)) });
    net.run_for(Duration::from_secs(120));
    // Long after the grant, node 3 joins, and admin 1 removes node 2.
    net.command(0, Command::Invite { room, addrs: vec![net::addr(0)], valid_for: HOUR });
    net.command(3, Command::JoinInvite(net.last_invite(0)));
    net.run_for(Duration::from_secs(5));
    net.command(1, Command::Moderate { room, action: Action::Kick(id_of(&net, 2)) });
    net.run_for(Duration::from_secs(5));
    let expected = members(&net, 0, room);
    assert_eq!(expected.len(), 3, "{expected:?}");
    assert_eq!(members(&net, 3, room), expected, "the newcomer agrees: it knows node 1 is an admin");
    let id = say(&mut net, 3, room, "the newcomer has the key").expect("handed by its inviter");
    net.run_for(Duration::from_secs(2));
    assert!(shown(&net, 1, id) && !shown(&net, 2, id));
}
