//! The shared runtime test suite (tests/suite) on the smol runtime, and a network mixing both.

#[path = "../../runtime-mio/tests/suite/mod.rs"]
#[macro_use]
mod suite;

use p2p_chat_runtime_smol::SmolRuntime as R;

runtime_suite!(R);

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
