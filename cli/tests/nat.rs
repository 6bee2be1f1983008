//! Real processes behind real NATs: an "internet" namespace holding a reachable node, and two home
//! networks, each a router namespace that masquerades (nftables) for a client namespace behind
//! it. The routers forward between each other through the internet namespace, so only NAT keeps
//! the clients from dialing each other.
//!
//! Symmetric NAT (`masquerade fully-random`: every connection leaves from a random port): each
//! client learns from a dial-back that it is behind NAT, reserves at the reachable node, and the
//! two clients connect through it as a relay, one on each runtime.
//!
//! Cone-like NAT (`masquerade`: a connection keeps its source port when the port is free), with
//! routers that drop unsolicited inbound packets as home routers do: the two clients meet through
//! the relay, then punch a hole (both dial from their listening ports at once, a TCP simultaneous
//! open) and move to the direct connection, one on each runtime.
//!
//! Port mapping: each router also runs miniupnpd (UPnP IGD, Debian's `miniupnpd-nftables`), and
//! the client behind it, with default flags, maps its port, is dialed back through the mapping,
//! and takes an inbound connection from the internet namespace there; the mapping is gone once it
//! quits. With `--no-port-mapping` the router maps nothing and the client stays behind NAT.
//! miniupnpd refuses to map anything for a router whose outside address is private or reserved
//! (10.93.K.2 included), so these routers' outside addresses are 100.193.K.2: addresses of these
//! namespaces only, which have no route out of the machine.
//!
//! Needs root (see `common::netns`): in CI as root it must run, elsewhere it skips loudly.

#[allow(dead_code)]
mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::netns::{cannot_run, sh};
use common::Proc;

/// The namespaces of one test, removed on drop.
struct Homes {
    names: Vec<String>,
}

impl Drop for Homes {
    fn drop(&mut self) {
        for n in &self.names {
            sh(&["ip", "netns", "delete", n]);
        }
    }
}

impl Homes {
    fn ns(&self, x: &str) -> &str {
        let i = ["i", "r1", "c1", "r2", "c2"].iter().position(|n| *n == x).expect("a namespace of the test");
        &self.names[i]
    }

    /// Internet `i` (10.93.K.1 towards home K), routers `rK` (10.93.K.2 outside, 192.168.6K.1
    /// inside) masquerading with `masquerade` (an nftables statement), clients `cK` (192.168.6K.2).
    /// `firewall`: the routers drop packets from outside that open no known connection, as home
    /// routers do (without it a router answers them with a reset, which also kills the SYN a
    /// hole punch sends first: between namespaces the other SYN cannot leave its NAT within the
    /// microseconds the first takes to arrive).
    fn setup(tag: &str, masquerade: &str, firewall: bool) -> Option<Homes> {
        Homes::setup_at(tag, masquerade, firewall, "10.93")
    }

    /// `setup` with the internet's addresses in `wan.K.0/24` instead of 10.93.K.0/24.
    fn setup_at(tag: &str, masquerade: &str, firewall: bool, wan: &str) -> Option<Homes> {
        let homes = Homes { names: ["i", "r1", "c1", "r2", "c2"].iter().map(|x| format!("p2pn{tag}{x}")).collect() };
        for name in &homes.names {
            if !sh(&["ip", "netns", "add", name]) {
                cannot_run(&format!("cannot create network namespace {name} (needs root and ip netns)"));
                return None;
            }
            sh(&["ip", "-n", name, "link", "set", "lo", "up"]);
        }
        let inet = homes.ns("i").to_owned();
        let forward = |ns: &str| sh(&["ip", "netns", "exec", ns, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);
        let mut ok = forward(&inet);
        for k in 1..=2 {
            let (r, c) = (homes.ns(&format!("r{k}")).to_owned(), homes.ns(&format!("c{k}")).to_owned());
            let (h, wan_i, wan_r) = (format!("h{k}"), format!("{wan}.{k}.1/24"), format!("{wan}.{k}.2/24"));
            let (lan_r, lan_c, gw) =
                (format!("192.168.6{k}.1/24"), format!("192.168.6{k}.2/24"), format!("192.168.6{k}.1"));
            let up = format!("{wan}.{k}.1");
            let nft = |rule: &str| sh(&["ip", "netns", "exec", &r, "nft", rule]);
            ok = ok
                && sh(&["ip", "link", "add", "wan", "netns", &r, "type", "veth", "peer", "name", &h, "netns", &inet])
                && sh(&["ip", "-n", &inet, "addr", "add", &wan_i, "dev", &h])
                && sh(&["ip", "-n", &r, "addr", "add", &wan_r, "dev", "wan"])
                && sh(&["ip", "-n", &inet, "link", "set", &h, "up"])
                && sh(&["ip", "-n", &r, "link", "set", "wan", "up"])
                && sh(&["ip", "link", "add", "lan", "netns", &r, "type", "veth", "peer", "name", "eth0", "netns", &c])
                && sh(&["ip", "-n", &r, "addr", "add", &lan_r, "dev", "lan"])
                && sh(&["ip", "-n", &c, "addr", "add", &lan_c, "dev", "eth0"])
                && sh(&["ip", "-n", &r, "link", "set", "lan", "up"])
                && sh(&["ip", "-n", &c, "link", "set", "eth0", "up"])
                && sh(&["ip", "-n", &c, "route", "add", "default", "via", &gw])
                && sh(&["ip", "-n", &r, "route", "add", "default", "via", &up])
                && forward(&r)
                && nft("add table ip nat")
                && nft("add chain ip nat post { type nat hook postrouting priority 100; }")
                && nft(&format!("add rule ip nat post oifname \"wan\" {masquerade}"))
                && (!firewall
                    || nft("add table ip filter")
                        && nft("add chain ip filter input { type filter hook input priority 0; policy accept; }")
                        && nft("add rule ip filter input iifname \"wan\" ct state new drop"));
        }
        if !ok {
            cannot_run("cannot build the routers (veth links, forwarding, or nftables NAT)");
            return None;
        }
        Some(homes)
    }
}

fn client(name: &str, netns: &str, boot: &str, rt: &str) -> Proc {
    Proc::start_in(name, Some(netns), &["listen", "-p", "0", "-u", name, "--bootstrap", boot, "--runtime", rt])
}

#[test]
fn behind_symmetric_nats_two_clients_chat_through_a_relay() {
    let tag = format!("{}", std::process::id() % 100_000);
    let Some(homes) = Homes::setup(&tag, "masquerade fully-random", false) else { return };
    let started = Instant::now();
    let mut relay = Proc::start_in("relay", Some(homes.ns("i")), &["listen", "-p", "0", "-u", "relay"]);
    let port = relay.port();
    let mut alice = client("alice", homes.ns("c1"), &format!("10.93.1.1:{port}"), "mio");
    let mut bob = client("bob", homes.ns("c2"), &format!("10.93.2.1:{port}"), "smol");
    for c in [&mut alice, &mut bob] {
        c.wait_for("--- reachability: behind NAT");
    }
    relay.wait_for("--- reachability: reachable at 10.93.");
    alice.wait_for("connected to bob#");
    bob.wait_for("connected to alice#");
    let connected = started.elapsed();

    alice.say("/peers");
    let line = alice.wait_for("relayed via relay#");
    assert!(line.contains("bob#"), "bob is the relayed peer: {line}");
    bob.say("/peers");
    let line = bob.wait_for("relayed via relay#");
    assert!(line.contains("alice#"), "alice is the relayed peer: {line}");
    alice.say("hello from behind one NAT");
    bob.say("hello from behind the other");
    bob.wait_for(": hello from behind one NAT");
    alice.wait_for(": hello from behind the other");
    // Nothing claims a direct connection between the two clients.
    for (who, other) in [(&mut alice, "bob#"), (&mut bob, "alice#")] {
        let direct = who.seen.iter().filter(|l| l.contains(other) && l.contains(" direct")).count();
        assert_eq!(direct, 0, "{} claims a direct connection to {other}", who.name);
    }
    eprintln!("symmetric NAT: both clients behind NAT and connected through the relay {connected:?} after start");
    for p in [alice, bob, relay] {
        p.quit();
    }
}

/// A relay allowing one circuit (`--relay-limit 1`) and three clients behind symmetric NATs (two
/// behind one router), who want a circuit for each pair: the relay carries one, refuses the others
/// with a clear reason, counts them, is not asked again at once, and keeps serving its own chats,
/// which reach every client.
#[test]
fn a_relay_at_its_limit_refuses_new_circuits_clearly_and_keeps_serving_its_own_chats() {
    let tag = format!("{}", std::process::id() % 100_000 + 3);
    let Some(homes) = Homes::setup(&tag, "masquerade fully-random", false) else { return };
    let mut relay =
        Proc::start_in("relay", Some(homes.ns("i")), &["listen", "-p", "0", "-u", "relay", "--relay-limit", "1"]);
    let port = relay.port();
    let mut alice = client("alice", homes.ns("c1"), &format!("10.93.1.1:{port}"), "mio");
    let mut carol = client("carol", homes.ns("c1"), &format!("10.93.1.1:{port}"), "smol");
    let mut bob = client("bob", homes.ns("c2"), &format!("10.93.2.1:{port}"), "mio");
    let refused = "refused a circuit to";
    let end = Instant::now() + common::DEADLINE;
    loop {
        let seen: usize = [&mut alice, &mut bob, &mut carol].iter_mut().map(|c| c.count(refused)).sum();
        if seen > 0 {
            break;
        }
        assert!(Instant::now() < end, "no client was refused a circuit by a relay allowing one");
        std::thread::sleep(Duration::from_millis(200));
    }
    for c in [&mut alice, &mut bob, &mut carol] {
        if let Some(l) = c.seen.iter().find(|l| l.contains(refused)) {
            assert!(l.contains("the relay is at its limit"), "{}: the reason is given: {l}", c.name);
        }
    }
    relay.say("/stats");
    let line = relay.wait_for("circuits refused");
    let n: u64 = line.split(" circuits refused").next().and_then(|h| h.rsplit(' ').next()).unwrap().parse().unwrap();
    // Each of the six (client, peer) pairs that wanted a circuit asks again a minute after a
    // refusal, not at every round.
    assert!((1..=12).contains(&n), "the relay counts what it refused, and is not asked again at once: {line}");
    relay.say("the relay still speaks");
    for c in [&mut alice, &mut bob, &mut carol] {
        c.wait_for(": the relay still speaks");
    }
    alice.say("and so does alice");
    bob.wait_for(": and so does alice");
    carol.wait_for(": and so does alice");
    for p in [alice, bob, carol, relay] {
        p.quit();
    }
}

#[test]
fn a_relay_killed_is_replaced_by_another_and_no_chat_is_lost() {
    let tag = format!("{}", std::process::id() % 100_000 + 1);
    let Some(homes) = Homes::setup(&tag, "masquerade fully-random", false) else { return };
    let mut relays: Vec<Proc> = ["relay1", "relay2"]
        .iter()
        .map(|n| Proc::start_in(n, Some(homes.ns("i")), &["listen", "-p", "0", "-u", n]))
        .collect();
    let ports: Vec<u16> = relays.iter_mut().map(|r| r.port()).collect();
    let client = |name: &str, k: usize, rt: &str| {
        let (b1, b2) = (format!("10.93.{k}.1:{}", ports[0]), format!("10.93.{k}.1:{}", ports[1]));
        Proc::start_in(
            name,
            Some(homes.ns(&format!("c{k}"))),
            &["listen", "-p", "0", "-u", name, "--bootstrap", &b1, "--bootstrap", &b2, "--runtime", rt],
        )
    };
    let mut alice = client("alice", 1, "smol");
    let mut bob = client("bob", 2, "mio");
    alice.wait_for("connected to bob#");
    alice.say("/peers");
    let line = alice.wait_for("relayed via relay");
    let carrying = if line.contains("relayed via relay1#") { 0 } else { 1 };
    alice.say("before the relay dies");
    bob.wait_for(": before the relay dies");

    // kill -9: no goodbye; the circuit goes with it, and the other relay takes over.
    let dead = Instant::now();
    let mut gone = relays.remove(carrying);
    let _ = gone.child.kill();
    common::wait_exit(&mut gone.child);
    alice.wait_for("disconnected from bob#");
    bob.say("while the relay is down");
    let survivor = if carrying == 0 { "relay2#" } else { "relay1#" };
    let reconnected = loop {
        alice.say("/peers");
        std::thread::sleep(std::time::Duration::from_millis(500));
        if alice.count(&format!("relayed via {survivor}")) > 0 {
            break dead.elapsed();
        }
        assert!(dead.elapsed() < common::DEADLINE, "alice did not reach bob through {survivor}");
    };
    alice.wait_for(": while the relay is down");
    alice.say("after the relay died");
    bob.wait_for(": after the relay died");
    for (p, text) in [(&mut alice, "while the relay is down"), (&mut bob, "before the relay dies")] {
        assert_eq!(p.count(&format!(": {text}")), 1, "{} showed {text:?} other than once", p.name);
    }
    eprintln!("relay killed: alice and bob connected again through {survivor} {reconnected:?} later");
    for p in [alice, bob] {
        p.quit();
    }
}

#[test]
fn behind_cone_nats_two_clients_punch_a_hole_and_chat_directly() {
    let tag = format!("{}", std::process::id() % 100_000 + 2);
    let Some(homes) = Homes::setup(&tag, "masquerade", true) else { return };
    let started = Instant::now();
    let mut relay = Proc::start_in("relay", Some(homes.ns("i")), &["listen", "-p", "0", "-u", "relay"]);
    let port = relay.port();
    let mut alice = client("alice", homes.ns("c1"), &format!("10.93.1.1:{port}"), "mio");
    let mut bob = client("bob", homes.ns("c2"), &format!("10.93.2.1:{port}"), "smol");
    for c in [&mut alice, &mut bob] {
        c.wait_for("--- reachability: behind NAT");
    }
    alice.wait_for("connected to bob#");
    bob.wait_for("connected to alice#");
    let relayed = started.elapsed();

    // The punch replaces the circuit: each side shows the other as hole-punched.
    for (who, other) in [(&mut alice, "bob#"), (&mut bob, "alice#")] {
        let line = loop {
            who.say("/peers");
            std::thread::sleep(std::time::Duration::from_millis(300));
            who.count(""); // takes in what it printed
            if let Some(l) = who.seen.iter().find(|l| l.contains("direct (hole-punched)")) {
                break l.clone();
            }
            assert!(started.elapsed() < common::DEADLINE, "{} shows no hole-punched connection", who.name);
        };
        assert!(line.contains(other), "{other} is the hole-punched peer: {line}");
    }
    let punched = started.elapsed();
    alice.say("hello through a hole in one NAT");
    bob.say("hello through a hole in the other");
    bob.wait_for(": hello through a hole in one NAT");
    alice.wait_for(": hello through a hole in the other");
    for who in [&mut alice, &mut bob] {
        who.say("/stats");
        let line = who.wait_for("hole punches");
        assert!(!line.contains(" 0 succeeded"), "{}: {line}", who.name);
    }
    eprintln!("cone NAT: relayed {relayed:?} after start, hole-punched {punched:?} after start");
    for p in [alice, bob, relay] {
        p.quit();
    }
}

/// miniupnpd in router `rK`, with its own files in a temporary directory; stopped on drop.
struct Upnpd {
    child: Child,
    dir: PathBuf,
    router: String,
}

impl Drop for Upnpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Upnpd {
    /// Starts it in router `k` of `homes`: outside interface `wan`, serving the home network on
    /// `lan`, allowed to map ports of 1024 and above for its client only. Its nftables chains
    /// (miniupnpd adds rules, never chains) are made first, in a table of its own.
    fn start(homes: &Homes, k: u8) -> Option<Upnpd> {
        let router = homes.ns(&format!("r{k}")).to_owned();
        let chains = "table inet upnp {
            chain forward { type filter hook forward priority 0; policy accept; jump miniupnpd; }
            chain miniupnpd { }
            chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }
            chain postrouting { type nat hook postrouting priority 100; policy accept; jump postrouting_miniupnpd; }
            chain prerouting_miniupnpd { }
            chain postrouting_miniupnpd { }
        }";
        let dir = common::temp_dir(&format!("upnpd-{router}"));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let rules = dir.join("chains.nft");
        std::fs::write(&rules, chains).expect("written");
        if !sh(&["ip", "netns", "exec", &router, "nft", "-f", rules.to_str().unwrap()]) {
            cannot_run("cannot make miniupnpd's nftables chains in the router");
            return None;
        }
        let conf = format!(
            "ext_ifname=wan\nlistening_ip=lan\nhttp_port=0\nenable_upnp=yes\nenable_natpmp=no\nsecure_mode=yes\n\
             system_uptime=yes\nuuid=3f8a8c5e-6a4c-4f5e-9a59-0d1e2c3b4a5{k}\nlease_file={leases}\n\
             upnp_table_name=upnp\nupnp_nat_table_name=upnp\nupnp_forward_chain=miniupnpd\n\
             upnp_nat_chain=prerouting_miniupnpd\nupnp_nat_postrouting_chain=postrouting_miniupnpd\n\
             allow 1024-65535 192.168.6{k}.2/32 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n",
            leases = dir.join("upnp.leases").display(),
        );
        let conf_path = dir.join("miniupnpd.conf");
        std::fs::write(&conf_path, conf).expect("written");
        let log = std::fs::File::create(dir.join("miniupnpd.log")).expect("a log file");
        let pid = dir.join("miniupnpd.pid");
        let spawned = Command::new("ip")
            .args(["netns", "exec", &router, "miniupnpd", "-d", "-f", conf_path.to_str().unwrap()])
            .args(["-P", pid.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a log file"))
            .stderr(log)
            .spawn();
        let Ok(child) = spawned else {
            cannot_run("cannot start miniupnpd (install miniupnpd-nftables)");
            return None;
        };
        let mut d = Upnpd { child, dir, router };
        // Up once it listens for searches; gone at once if it refused its configuration.
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let log = d.log();
            if log.contains("HTTP listening on port") {
                return Some(d);
            }
            if d.child.try_wait().ok().flatten().is_some() || Instant::now() > end {
                cannot_run(&format!("miniupnpd did not start in {}:\n{log}", d.router));
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("miniupnpd.log")).unwrap_or_default()
    }

    /// The ports the router forwards now (its DNAT rules).
    fn forwarded(&self) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.router, "nft", "list", "chain", "inet", "upnp", "prerouting_miniupnpd"])
            .output()
            .expect("nft runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

#[test]
fn behind_routers_with_upnp_clients_map_their_ports_and_take_inbound_connections() {
    let tag = format!("{}", std::process::id() % 100_000 + 3);
    let Some(homes) = Homes::setup_at(&tag, "masquerade", true, "100.193") else { return };
    let Some(upnpd) = [1, 2].into_iter().map(|k| Upnpd::start(&homes, k)).collect::<Option<Vec<_>>>() else {
        return;
    };
    let started = Instant::now();
    let mut boot = Proc::start_in("boot", Some(homes.ns("i")), &["listen", "-p", "0", "-u", "boot"]);
    let port = boot.port();
    let mut alice = client("alice", homes.ns("c1"), &format!("100.193.1.1:{port}"), "mio");
    let mut bob = client("bob", homes.ns("c2"), &format!("100.193.2.1:{port}"), "smol");
    let mut mapped = Vec::new();
    for (c, k) in [(&mut alice, 1), (&mut bob, 2)] {
        let line = c.wait_for("--- reachability: reachable at");
        let listen = c.port();
        assert!(line.ends_with(&format!("reachable at 100.193.{k}.2:{listen} (port mapping)")), "{line}");
        assert!(upnpd[k - 1].forwarded().contains(&format!("dport {listen} dnat ip to 192.168.6{k}.2:{listen}")));
        mapped.push(format!("100.193.{k}.2:{listen}"));
    }
    let reachable = started.elapsed();

    // A node of the internet dials each client at its mapped address.
    let mut carol = Proc::start_in("carol", Some(homes.ns("i")), &["connect", "-a", &mapped[0], "-u", "carol"]);
    carol.wait_for("connected to alice#");
    let line = alice.wait_for("connected to carol#");
    assert!(line.contains("inbound"), "{line}");
    let mut dave = Proc::start_in("dave", Some(homes.ns("i")), &["connect", "-a", &mapped[1], "-u", "dave"]);
    dave.wait_for("connected to bob#");
    let line = bob.wait_for("connected to dave#");
    assert!(line.contains("inbound"), "{line}");
    carol.say("hello through the mapped port");
    alice.wait_for(": hello through the mapped port");
    for who in [&mut alice, &mut bob] {
        who.say("/id");
        who.wait_for("(port mapping)");
        who.say("/stats");
        let line = who.wait_for("port mapping ");
        assert!(line.contains("1 granted, 1 reached by a dial-back"), "{}: {line}", who.name);
    }
    // Quitting removes the mapping at the router.
    for (p, k) in [(alice, 0), (bob, 1)] {
        p.quit();
        assert!(!upnpd[k].forwarded().contains("dnat"), "still forwarded:\n{}", upnpd[k].forwarded());
    }
    eprintln!("port mapping: both clients reachable through their routers' mappings {reachable:?} after start");
    for p in [carol, dave, boot] {
        p.quit();
    }
}

#[test]
fn with_no_port_mapping_the_router_maps_nothing() {
    let tag = format!("{}", std::process::id() % 100_000 + 4);
    let Some(homes) = Homes::setup_at(&tag, "masquerade", true, "100.193") else { return };
    let Some(upnpd) = Upnpd::start(&homes, 1) else { return };
    let mut boot = Proc::start_in("boot", Some(homes.ns("i")), &["listen", "-p", "0", "-u", "boot"]);
    let port = boot.port();
    let boot_addr = format!("100.193.1.1:{port}");
    let args = ["listen", "-p", "0", "-u", "alice", "--bootstrap", &boot_addr, "--no-port-mapping"];
    let mut alice = Proc::start_in("alice", Some(homes.ns("c1")), &args);
    alice.wait_for("--- reachability: behind NAT");
    alice.say("/stats");
    let line = alice.wait_for("port mapping ");
    assert!(line.contains(" 0 asked of the router"), "{line}");
    assert!(!upnpd.forwarded().contains("dnat"), "forwarded:\n{}", upnpd.forwarded());
    assert_eq!(alice.count("(port mapping)"), 0);
    for p in [alice, boot] {
        p.quit();
    }
}
