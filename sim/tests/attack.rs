//! Attacker peers in the simulator (`simulate --attackers`): real-handshake clients flooding
//! honest nodes with every kind of request, paced just under the control rate, for the fault
//! phase. After their catch-ups they get back at most twice what they send, and every honest
//! chat still reaches every node exactly once.

use p2p_chat_sim::{run, Params};

/// Five attackers: one of each kind of flood, whatever the seed's offset.
fn five_floods() -> Params {
    Params { attackers: 5, real_crypto: true, messages: 20, fault_s: 12.0, ..Params::new(30, 24) }
}

#[test]
fn floods_are_not_amplified_and_every_honest_chat_arrives() {
    let p = five_floods();
    let r = run(&p, |_, _| {});
    let a = r.attack.as_ref().expect("an attack report");
    eprintln!("{}", r.table(false));
    assert!(r.failure().is_none(), "{:?}: replay with {}", r.failure(), p.replay());
    assert_eq!(r.missing, 0);
    assert_eq!(r.delivery_ratio, 1.0);
    assert_eq!(a.kinds.len(), 5, "every kind of flood ran");
    assert!(a.connections >= 15, "each attacker connected to its three victims: {}", a.connections);
    assert_eq!(a.client_errors, 0);
    for k in &a.kinds {
        assert!(k.sent_bytes > 0, "{} never flooded", k.kind);
        assert!(k.amplification <= 2.0, "{} amplified x{:.3}: replay with {}", k.kind, k.amplification, p.replay());
    }
}

/// A `PeerRequest` is answered at most once every 4 s per connection: an address list is a dozen
/// times the request, and the credit, sized for a catch-up, would pay for thousands.
#[test]
fn peer_request_floods_are_not_amplified() {
    let p = five_floods();
    let r = run(&p, |_, _| {});
    let a = r.attack.as_ref().expect("an attack report");
    let k = a.kinds.iter().find(|k| k.kind == "peer-request").expect("a peer-request flood");
    assert!(k.amplification <= 2.0, "peer-request amplified x{:.3}: replay with {}", k.amplification, p.replay());
}

/// The same seed replays the same attack.
#[test]
fn an_attack_replays_from_its_seed() {
    let p = Params { attackers: 2, real_crypto: true, messages: 5, fault_s: 4.0, ..Params::new(12, 3) };
    let (x, y) = (run(&p, |_, _| {}), run(&p, |_, _| {}));
    assert_eq!(x.fingerprint, y.fingerprint);
    let (ax, ay) = (x.attack.unwrap(), y.attack.unwrap());
    assert_eq!((ax.sent_bytes, ax.received_bytes, ax.bans), (ay.sent_bytes, ay.received_bytes, ay.bans));
}
