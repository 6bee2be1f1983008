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
