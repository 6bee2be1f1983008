//! The shared runtime test suite (tests/suite) on the mio runtime.

mod suite;

use p2p_chat_runtime_mio::MioRuntime as R;

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
