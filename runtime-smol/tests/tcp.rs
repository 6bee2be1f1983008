//! The shared runtime test suite (tests/suite) on the smol runtime.

#[path = "../../runtime-mio/tests/suite/mod.rs"]
mod suite;

use p2p_chat_runtime_smol::SmolRuntime as R;

#[test]
fn two_nodes_chat_both_ways_exactly_once() {
    suite::two_nodes_chat_both_ways_exactly_once::<R>();
}

#[test]
fn a_chain_delivers_end_to_end_and_shutdown_is_seen() {
    suite::a_chain_delivers_end_to_end_and_shutdown_is_seen::<R>();
}

#[test]
fn a_peer_sending_garbage_is_dropped_while_honest_peers_go_on() {
    suite::a_peer_sending_garbage_is_dropped_while_honest_peers_go_on::<R>();
}

#[test]
fn listening_on_a_used_port_is_a_clear_error() {
    suite::listening_on_a_used_port_is_a_clear_error::<R>();
}

#[test]
fn peers_snapshot_follows_promptly() {
    suite::peers_snapshot_follows_promptly::<R>();
}

#[test]
fn smol_and_mio_nodes_share_one_network() {
    use p2p_chat_core::{Command, Event, Origin};
    use p2p_chat_runtime_mio::MioRuntime;
    use suite::{is_chat, TestNode};
    let mut m = TestNode::start_on::<MioRuntime>(41, "mio-a", true, vec![]);
    let mut s = TestNode::start_on::<R>(42, "smol-b", true, vec![m.addr()]);
    let mut m2 = TestNode::start_on::<MioRuntime>(43, "mio-c", false, vec![s.addr()]);
    m2.wait_for("c up", |e| matches!(e, Event::PeerUp(_)));
    m.wait_for("a up", |e| matches!(e, Event::PeerUp(_)));
    m.handle.command(Command::Chat("from mio".into()));
    s.handle.command(Command::Chat("from smol".into()));
    s.wait_for("mio chat at smol", is_chat("from mio", Origin::Live));
    m2.wait_for("mio chat across smol", is_chat("from mio", Origin::Live));
    m.wait_for("smol chat at mio", is_chat("from smol", Origin::Live));
    m2.wait_for("smol chat at mio-c", is_chat("from smol", Origin::Live));
}

#[test]
fn a_node_under_attack_still_serves_honest_peers() {
    suite::a_node_under_attack_still_serves_honest_peers::<R>();
}

#[test]
fn requests_are_not_amplified() {
    suite::attack::requests_are_not_amplified::<R>();
}

#[test]
fn one_read_cannot_make_the_node_build_more_than_its_cap() {
    suite::attack::one_read_cannot_make_the_node_build_more_than_its_cap::<R>();
}

#[test]
fn peers_that_never_read_hold_little() {
    suite::attack::peers_that_never_read_hold_little::<R>();
}
