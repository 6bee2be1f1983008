//! A flash crowd through one bootstrap node: everyone arrives within a second and knows a single
//! address. The bootstrap node can only hand each newcomer on (a referral to a sample of those who
//! came before, and a handshake slot for as long as the handshake lasts); the crowd must find its
//! peers among itself.

use p2p_chat_sim::{run, Params};

/// 2,000 nodes within one virtual second through one bootstrap node, seeds 1-3: every chat
/// reaches every node, every node has its third peer early, and the overlay the referrals build is
/// neither redundant (RMR) nor strung out (LDH). The bootstrap node serves the crowd at the rate
/// its handshake slots finish handshakes (about 7,000 a second with its 2,048 slots and this
/// simulator's latencies), so the 2,000 are through it within the second; with 64 slots it
/// serves about 280 a second, and the last node would wait seven.
#[test]
fn a_flash_crowd_through_one_bootstrap_node_converges() {
    for seed in [1, 2, 3] {
        let p = Params {
            joins: false,
            messages: 20,
            bootstrap: 1,
            join_s: 1.0,
            settle_s: 5.0,
            fault_s: 5.0,
            ..Params::new(2000, seed)
        };
        let r = run(&p, |_, _| {});
        let replay = p.replay();
        assert!(r.failure().is_none(), "seed {seed}: {:?}: replay with {replay}", r.failure());
        assert_eq!(r.delivery_ratio, 1.0, "seed {seed}: replay with {replay}");
        let full = r.full_peer_set_s;
        assert!(full.is_some_and(|t| t <= 6.0), "seed {seed}: full peer sets at {full:?} s: replay with {replay}");
        assert!(r.rmr <= 0.5, "seed {seed}: RMR {}: replay with {replay}", r.rmr);
        assert!(r.ldh <= 20.0, "seed {seed}: LDH {}: replay with {replay}", r.ldh);
        assert!(r.latency_ms_p99 < 3000.0, "seed {seed}: p99 {} ms: replay with {replay}", r.latency_ms_p99);
    }
}
