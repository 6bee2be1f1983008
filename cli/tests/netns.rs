//! Real processes across network namespaces: two groups of nodes whose only link is a bridge node,
//! over veth links with `tc netem` loss and delay (or, where the kernel lacks netem, nftables dropping
//! 10% of packets at random). The bridge is killed, both sides keep chatting, the bridge comes back,
//! and every node must end with every chat, none twice.
//!
//! Needs root (network namespaces). In CI (`CI=true`) as root it must run: anything missing fails
//! it. Elsewhere, where it cannot run, it says why and passes.

#[allow(dead_code)]
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::netns::{cannot_run, sh};
use common::{temp_dir, wait_exit, Proc};

/// Namespaces and links made for one test, removed on drop.
struct Netns {
    names: Vec<String>,
}

impl Netns {
    /// nsA <-> nsX <-> nsB; X does not forward, so A and B cannot reach each other.
    fn setup(tag: &str) -> Option<Netns> {
        let n = |x: &str| format!("p2pc{tag}{x}");
        let ns = Netns { names: vec![n("a"), n("b"), n("x")] };
        for name in &ns.names {
            if !sh(&["ip", "netns", "add", name]) {
                cannot_run(&format!("cannot create network namespace {name} (needs root and ip netns)"));
                return None;
            }
            sh(&["ip", "-n", name, "link", "set", "lo", "up"]);
        }
        let (a, b, x) = (&ns.names[0], &ns.names[1], &ns.names[2]);
        let links =
            [(a, "10.91.1.1/24", "10.91.1.2/24", "va", "vxa"), (b, "10.91.2.1/24", "10.91.2.2/24", "vb", "vxb")];
        for (side, side_ip, x_ip, side_if, x_if) in links {
            let ok =
                sh(&["ip", "link", "add", side_if, "netns", side, "type", "veth", "peer", "name", x_if, "netns", x])
                    && sh(&["ip", "-n", side, "addr", "add", side_ip, "dev", side_if])
                    && sh(&["ip", "-n", x, "addr", "add", x_ip, "dev", x_if])
                    && sh(&["ip", "-n", side, "link", "set", side_if, "up"])
                    && sh(&["ip", "-n", x, "link", "set", x_if, "up"]);
            if !ok {
                cannot_run(&format!("cannot set up veth links in {side}"));
                return None;
            }
            // Real loss and delay on both directions of each link; TCP recovers from it. Some
            // kernels lack the netem qdisc: then nftables drops 10% of the packets leaving each end
            // at random (loss without delay), and failing that the links are clean; the test says
            // which.
            let netem = ["root", "netem", "delay", "20ms", "5ms", "loss", "3%"];
            let netem_ok =
                sh(&[&["ip", "netns", "exec", side, "tc", "qdisc", "add", "dev", side_if][..], &netem].concat())
                    && sh(&[&["ip", "netns", "exec", x, "tc", "qdisc", "add", "dev", x_if][..], &netem].concat());
            if netem_ok {
                eprintln!("links: tc netem, 20 ms +- 5 ms delay and 3% loss each way");
            } else if random_drop(side, side_if) && random_drop(x, x_if) {
                eprintln!("links: tc netem unavailable; nftables drops 10% of packets each way (no added delay)");
            } else {
                eprintln!("note: neither tc netem nor nftables works here; the links have no added loss or delay");
            }
        }
        Some(ns)
    }
}

/// Drops 10% of the packets leaving `ns` through `dev`, at random.
fn random_drop(ns: &str, dev: &str) -> bool {
    let nft = |rule: &str| sh(&["ip", "netns", "exec", ns, "nft", rule]);
    nft("add table inet p2pc_loss")
        && nft("add chain inet p2pc_loss out { type filter hook output priority 0; policy accept; }")
        && nft(&format!("add rule inet p2pc_loss out oifname \"{dev}\" numgen random mod 100 < 10 counter drop"))
}

/// Packets the random-drop rules of `ns` dropped so far (0 where they are not in use).
fn dropped(ns: &str) -> u64 {
    let out = Command::new("ip").args(["netns", "exec", ns, "nft", "list", "table", "inet", "p2pc_loss"]).output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    text.split("packets ").skip(1).filter_map(|t| t.split_whitespace().next()?.parse::<u64>().ok()).sum()
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.names {
            sh(&["ip", "netns", "delete", n]);
        }
    }
}

#[test]
fn two_sides_of_a_stopped_bridge_converge_when_it_returns() {
    let tag = format!("{}", std::process::id() % 100_000);
    let Some(ns) = Netns::setup(&tag) else { return };
    let (nsa, nsb, nsx) = (ns.names[0].as_str(), ns.names[1].as_str(), ns.names[2].as_str());
    let dir = temp_dir("bridge");
    let db = dir.to_str().unwrap().to_owned();
    let mut x =
        Proc::start_in("bridge", Some(nsx), &["listen", "-p", "0", "-u", "bridge", "--persist", "--db-path", &db]);
    let port = x.port().to_string();
    let via_a = format!("10.91.1.2:{port}");
    let via_b = format!("10.91.2.2:{port}");
    let side = |name: &str, netns: &str, boot: &str, rt: &str| {
        Proc::start_in(name, Some(netns), &["listen", "-p", "0", "-u", name, "--bootstrap", boot, "--runtime", rt])
    };
    let mut nodes = vec![
        side("a1", nsa, &via_a, "mio"),
        side("a2", nsa, &via_a, "smol"),
        side("b1", nsb, &via_b, "smol"),
        side("b2", nsb, &via_b, "mio"),
    ];
    for n in nodes.iter_mut() {
        n.wait_for("connected to bridge#");
    }
    nodes[0].say("across the bridge from a1");
    nodes[2].say("across the bridge from b1");
    for n in nodes.iter_mut().chain(std::iter::once(&mut x)) {
        n.wait_for(": across the bridge from a1");
        n.wait_for(": across the bridge from b1");
    }

    // The bridge goes away; each side goes on talking.
    let _ = x.child.kill();
    wait_exit(&mut x.child);
    drop(x);
    for n in nodes.iter_mut() {
        n.wait_for("disconnected from bridge#");
    }
    nodes[1].say("while apart from a2");
    nodes[3].say("while apart from b2");
    nodes[0].wait_for(": while apart from a2");
    nodes[2].wait_for(": while apart from b2");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(nodes[0].count(": while apart from b2"), 0, "the sides are really apart");

    // The bridge returns on the same address with its history; the sides heal through it.
    let healed = Instant::now();
    let mut x =
        Proc::start_in("bridge2", Some(nsx), &["listen", "-p", &port, "-u", "bridge", "--persist", "--db-path", &db]);
    for n in nodes.iter_mut().chain(std::iter::once(&mut x)) {
        n.wait_for(": while apart from a2");
        n.wait_for(": while apart from b2");
    }
    let lost: u64 = ns.names.iter().map(|n| dropped(n)).sum();
    eprintln!(
        "5 nodes in 3 namespaces: converged {:?} after the bridge returned; {lost} packets dropped on the links",
        healed.elapsed()
    );
    // A barrier rather than a pause: a later chat, waited for everywhere, behind which any
    // duplicate of the earlier ones would have been relayed.
    nodes[0].say("marker after healing");
    for n in nodes.iter_mut().chain(std::iter::once(&mut x)) {
        n.wait_for(": marker after healing");
    }
    for n in nodes.iter_mut() {
        for text in
            ["across the bridge from a1", "across the bridge from b1", "while apart from a2", "while apart from b2"]
        {
            assert_eq!(n.count(&format!(": {text}")), 1, "{} showed {text:?} more than once", n.name);
        }
    }
    for n in nodes {
        n.quit();
    }
    drop(x);
    let _ = std::fs::remove_dir_all(&dir);
}
