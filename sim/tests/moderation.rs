//! Moderation in private rooms (`--kicks`): owners and admins remove members during the fault
//! phase; after heal every live member holds the same membership, and no removed node holds a
//! key that opens a chat written after its removal by a member that knew of it.

use p2p_chat_sim::{run, Params};

/// 200 nodes, 5 private rooms, 8 removals (half of them bans, half by an admin) under 1% loss.
#[test]
fn removals_converge_and_the_removed_read_nothing_written_after() {
    let p = Params { joins: false, loss: 0.01, rooms: 5, kicks: 8, ..Params::new(200, 1) };
    let r = run(&p, |_, _| {});
    let replay = p.replay();
    let m = r.moderation.as_ref().expect("a run with --kicks reports moderation");
    assert_eq!(m.removals, 8, "{m:?}: replay with {replay}");
    assert!(m.chats_after_removal > 0, "{m:?}: chats were written after removals: replay with {replay}");
    assert_eq!(m.removed_can_read, 0, "{m:?}: replay with {replay}");
    assert!(m.moderation_converged, "{m:?}: replay with {replay}");
    assert_eq!(r.failure(), None, "replay with {replay}");
    assert!(replay.contains("--kicks 8"), "{replay}");
}

/// The same across a partition, the owner and the admin in different halves, with Join chats on:
/// a room's round that gave up a spare peer after the dial round had run left the dial timer due
/// (this seed found it).
#[test]
fn across_a_partition_the_removed_read_nothing_written_after() {
    let p = Params { joins: true, loss: 0.01, partition: true, rooms: 5, kicks: 8, ..Params::new(200, 3) };
    let r = run(&p, |_, _| {});
    let replay = p.replay();
    let m = r.moderation.as_ref().expect("a run with --kicks reports moderation");
    assert!(m.chats_after_removal > 0, "{m:?}: replay with {replay}");
    assert_eq!(m.removed_can_read, 0, "{m:?}: replay with {replay}");
    assert!(m.moderation_converged, "{m:?}: replay with {replay}");
}

/// Rooms bigger than their owners' peer sets: every invitee dials the owner first, and an owner
/// full of members would turn the later ones away for ever, leaving them in rooms of their own
/// (this seed left 116 (chat, node) pairs missing and the membership split).
#[test]
fn members_of_a_room_bigger_than_its_owners_peer_set_all_find_it() {
    let p = Params { messages: 100, loss: 0.01, rooms: 4, kicks: 6, max_peers: 12, ..Params::new(300, 1) };
    let r = run(&p, |_, _| {});
    let replay = p.replay();
    let m = r.moderation.as_ref().expect("a run with --kicks reports moderation");
    assert!(m.moderation_converged, "{m:?}: replay with {replay}");
    assert_eq!(r.room.as_ref().map(|x| x.find_member_pending), Some(0), "replay with {replay}");
    assert_eq!(r.failure(), None, "replay with {replay}");
}

/// Many removals across a partition: a member in the other half from the rekeys misses the keys
/// of the epochs superseded before it could be handed them, and the chats sealed with those
/// (this seed left 3 (chat, node) pairs missing): a member neighbour hands them over on request.
#[test]
fn keys_of_epochs_superseded_across_a_partition_still_reach_every_member() {
    let p = Params { messages: 100, loss: 0.01, partition: true, rooms: 8, kicks: 16, ..Params::new(250, 2) };
    let r = run(&p, |_, _| {});
    let replay = p.replay();
    let m = r.moderation.as_ref().expect("a run with --kicks reports moderation");
    assert_eq!(m.removed_can_read, 0, "{m:?}: replay with {replay}");
    assert!(m.moderation_converged, "{m:?}: replay with {replay}");
    assert_eq!(r.missing, 0, "replay with {replay}");
    assert_eq!(r.failure(), None, "replay with {replay}");
}
