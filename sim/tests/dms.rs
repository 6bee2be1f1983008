//! Direct messages when nodes are full: a sender or a recipient at `max_peers` must still reach the
//! mailboxes it needs. With 12 peers at most, a few hundred nodes fill up the way the
//! well-connected do at 10,000 with 50; a full node that only waited for a free slot lost a sixth
//! of its messages here (0.815 delivered).

use p2p_chat_sim::{run, Params};

/// 200 messages under 30% churn and 1% loss, half to nodes that crash and come back: every one
/// arrives, exactly once.
#[test]
fn full_nodes_still_deliver_every_direct_message_once() {
    let p = Params { joins: false, loss: 0.01, churn: 0.3, max_peers: 12, dms: 200, ..Params::new(300, 1) };
    let r = run(&p, |_, _| {});
    let replay = p.replay();
    let dm = r.dm.as_ref().expect("a run with --dms reports them");
    assert_eq!(dm.dm_skipped, 0, "replay with {replay}");
    assert_eq!(dm.dm_delivery_ratio, 1.0, "{dm:?}: replay with {replay}");
    assert_eq!(dm.dm_duplicates, 0, "replay with {replay}");
    assert_eq!(r.delivery_ratio, 1.0, "replay with {replay}");
}
