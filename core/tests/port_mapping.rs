//! Port mapping in the in-memory network of real nodes: a node behind a router that maps ports
//! asks for a mapping as it starts, is dialed back through it before it claims it, takes inbound
//! connections there, renews it at half its lease and removes it as it leaves. Without a router,
//! or with one that cannot help, it stops asking.

mod net;

use std::time::Duration;

use net::{addr, Net, Router};
use p2p_chat_core::nat::mapping::{MapRequest, LEASE};
use p2p_chat_core::nat::Reachability;
use p2p_chat_core::{Command, Config, Direction, Event};

fn reachability(net: &Net, i: usize) -> Option<Reachability> {
    net.delivered[i].iter().rev().find_map(|e| match e {
        Event::Reachability(r) => Some(*r),
        _ => None,
    })
}

fn maps(net: &Net, i: usize) -> usize {
    net.map_requests[i].iter().filter(|(_, r)| matches!(r, MapRequest::Map { .. })).count()
}

/// Node 0 is reachable. Nodes 1 and 2 are behind NAT, 1 with a router that maps ports (`r1`),
/// 2 with one that does not. Node 3 knows only node 1's address.
fn homes(r1: Router) -> Net {
    let config = |i: usize| Config {
        username: format!("n{i}"),
        bootstrap: match i {
            0 => vec![],
            3 => vec![addr(1)],
            _ => vec![addr(0)],
        },
        ..Config::default()
    };
    let mut net = Net::new(4, 11, config);
    net.behind_nat = vec![false, true, true, false];
    net.routers = vec![Router::NoUpnp, r1, Router::NoUpnp, Router::NoUpnp];
    net
}

#[test]
fn a_mapped_port_is_verified_by_a_dial_back_then_takes_inbound_connections() {
    let mut net = homes(Router::Maps);
    net.run_for(Duration::from_secs(20));
    assert_eq!(net.map_requests[1][0].1, MapRequest::Map { internal: 7000, external: 7000, lease: LEASE });
    assert_eq!(reachability(&net, 1), Some(Reachability::Mapped(addr(1))));
    assert_eq!(reachability(&net, 2), Some(Reachability::BehindNat));
    let n1 = net.nodes[1].as_ref().unwrap();
    assert_eq!(n1.port_mapping(), Some(addr(1)));
    let s = n1.stats();
    assert_eq!((s.port_map_attempts, s.port_map_successes, s.port_map_verified), (1, 1, 1));
    // Node 3 dialed in through the mapping.
    let n3 = net.nodes[3].as_ref().unwrap().peer_id();
    assert!(n1.peers().iter().any(|p| p.peer == n3 && p.direction == Direction::Inbound));
    assert_eq!(Reachability::Mapped(addr(1)).to_string(), "reachable at 10.0.0.1:7000 (port mapping)");
}

#[test]
fn a_mapping_is_renewed_at_half_its_lease_and_removed_on_leaving() {
    let mut net = homes(Router::Maps);
    net.run_for(LEASE + Duration::from_secs(60));
    let at: Vec<Duration> = net.map_requests[1].iter().map(|(t, _)| t.since(net.map_requests[1][0].0)).collect();
    assert_eq!(maps(&net, 1), 3, "asked at start, renewed twice: {at:?}");
    // Each renewal comes half a lease after the answer before it (a few ms after the ask).
    for pair in at.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= LEASE / 2 && gap < LEASE / 2 + Duration::from_secs(1), "{at:?}");
    }
    assert_eq!(reachability(&net, 1), Some(Reachability::Mapped(addr(1))));
    net.command(1, Command::Leave);
    assert_eq!(net.map_requests[1].last().map(|(_, r)| *r), Some(MapRequest::Unmap { external: 7000 }));
    net.run_for(Duration::from_secs(5));
    assert_eq!(maps(&net, 1), 3, "nothing asked after leaving");
}

#[test]
fn without_a_router_that_maps_a_node_asks_once_and_says_nothing() {
    let mut net = homes(Router::NoUpnp);
    net.run_for(Duration::from_secs(3600));
    for i in 0..4 {
        assert_eq!(maps(&net, i), 1, "node {i}");
        let s = net.nodes[i].as_ref().unwrap().stats();
        assert_eq!((s.port_map_attempts, s.port_map_successes), (1, 0));
    }
    assert!(!net.delivered[1].iter().any(|e| matches!(e, Event::Warning(w) if w.contains("port mapping"))));
    assert_eq!(reachability(&net, 1), Some(Reachability::BehindNat));
}

#[test]
fn a_mapping_nobody_can_reach_is_removed_and_not_asked_again() {
    let mut net = homes(Router::MapsUselessly);
    // Two dial-back rounds (one prober each: node 0) say unreachable.
    net.run_for(Duration::from_secs(1300));
    let reqs: Vec<MapRequest> = net.map_requests[1].iter().map(|(_, r)| *r).collect();
    assert_eq!(
        reqs,
        vec![MapRequest::Map { internal: 7000, external: 7000, lease: LEASE }, MapRequest::Unmap { external: 7000 }]
    );
    assert_eq!(reachability(&net, 1), Some(Reachability::BehindNat));
    assert_eq!(net.nodes[1].as_ref().unwrap().port_mapping(), None);
    assert!(net.delivered[1].iter().any(|e| matches!(e, Event::Warning(w) if w.contains("port mapping"))));
    net.run_for(LEASE);
    assert_eq!(maps(&net, 1), 1);
}

#[test]
fn with_mapping_off_nothing_is_asked() {
    let config = |i: usize| {
        let mut c = Net::star_config(i);
        c.nat.port_mapping = false;
        c
    };
    let mut net = Net::new(2, 3, config);
    net.routers = vec![Router::Maps, Router::Maps];
    net.run_for(Duration::from_secs(60));
    assert!(net.map_requests.iter().all(Vec::is_empty));
}
