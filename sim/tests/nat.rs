//! NAT in the simulator: most nodes behind NAT, a third of them symmetric, under loss. Each node
//! must find out which it is, every node behind NAT must hold a relay reservation and have peers,
//! every chat must reach every node, and no relay may carry more circuits than it allows. Two
//! nodes behind cone NATs that meet through a relay punch a direct connection; nodes behind
//! symmetric NATs never do, and stay relayed.

use p2p_chat_sim::{run, Params};

#[test]
fn nodes_behind_nat_find_out_reserve_relays_and_get_every_chat() {
    for seed in [1, 2] {
        let p = Params { joins: false, messages: 30, loss: 0.01, nat: 0.7, ..Params::new(600, seed) };
        let r = run(&p, |_, _| {});
        let replay = p.replay();
        assert!(r.failure().is_none(), "seed {seed}: {:?}: replay with {replay}", r.failure());
        assert_eq!(r.delivery_ratio, 1.0, "seed {seed}: replay with {replay}");
        let nat = r.nat.as_ref().expect("a NAT report");
        assert!(
            (nat.found_behind_nat_share - nat.nat_share).abs() < 1e-9,
            "seed {seed}: {} found themselves behind NAT, {} are: replay with {replay}",
            nat.found_behind_nat_share,
            nat.nat_share
        );
        assert!((nat.reachable_share + nat.nat_share - 1.0).abs() < 1e-9, "seed {seed}: replay with {replay}");
        assert_eq!(nat.reserved_share, 1.0, "seed {seed}: replay with {replay}");
        assert_eq!(nat.nat_isolated, 0, "seed {seed}: replay with {replay}");
        assert!(nat.nat_first_peer_s_max <= 10.0, "seed {seed}: replay with {replay}");
        assert!(nat.relay_circuits_max <= nat.relay_circuits_limit, "seed {seed}: replay with {replay}");
        assert!(nat.paths_relayed > 0.0, "seed {seed}: no connection went through a relay: replay with {replay}");
        assert!(nat.paths_punched > 0.0, "seed {seed}: no connection was punched: replay with {replay}");
        assert!(
            nat.punch_successes > 0 && nat.punch_successes < nat.punch_attempts,
            "seed {seed}: {} of {} punches succeeded, with a third of the NATs symmetric: replay with {replay}",
            nat.punch_successes,
            nat.punch_attempts
        );
    }
}

#[test]
fn behind_symmetric_nats_nothing_is_punched_and_every_chat_arrives_through_relays() {
    let p = Params { joins: false, messages: 20, nat: 0.7, symmetric_share: 1.0, ..Params::new(300, 3) };
    let r = run(&p, |_, _| {});
    let replay = p.replay();
    assert!(r.failure().is_none(), "{:?}: replay with {replay}", r.failure());
    assert_eq!(r.delivery_ratio, 1.0, "replay with {replay}");
    let nat = r.nat.as_ref().expect("a NAT report");
    assert!(nat.punch_attempts > 0, "circuits between nodes behind NAT try to punch: replay with {replay}");
    assert_eq!((nat.punch_successes, nat.paths_punched), (0, 0.0), "replay with {replay}");
    assert!(nat.paths_relayed > 0.0, "replay with {replay}");
}

#[test]
fn nodes_behind_routers_that_map_ports_become_reachable_through_the_mapping() {
    let p = Params { joins: false, messages: 20, nat: 0.7, upnp_share: 0.5, ..Params::new(300, 4) };
    let r = run(&p, |_, _| {});
    let replay = p.replay();
    assert!(r.failure().is_none(), "{:?}: replay with {replay}", r.failure());
    assert_eq!(r.delivery_ratio, 1.0, "replay with {replay}");
    let nat = r.nat.as_ref().expect("a NAT report");
    assert!(nat.upnp_share > 0.3, "replay with {replay}");
    assert_eq!(nat.mapped_share, 1.0, "every node behind a mapping router claims the mapping: replay with {replay}");
    let expected = (1.0 - nat.nat_share) + nat.nat_share * nat.upnp_share;
    assert!((nat.reachable_share - expected).abs() < 1e-9, "replay with {replay}");
    assert_eq!(nat.nat_isolated, 0, "replay with {replay}");
}
