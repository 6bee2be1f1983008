//! The real `p2p-chat` program, as processes talking over 127.0.0.1.

#[allow(dead_code)]
mod common;

use std::time::Duration;

use common::{run, temp_dir, wait_exit, Proc};

#[test]
fn two_nodes_chat_both_ways_and_answer_commands() {
    let mut a = Proc::start("alice", &["listen", "-p", "0", "-u", "alice"]);
    let port = a.port().to_string();
    let alice = a.who();
    let mut b = Proc::start("bob", &["connect", "-a", &format!("127.0.0.1:{port}"), "-u", "bob"]);
    let bob = b.who();
    a.wait_for(&format!("connected to {bob}"));
    b.wait_for(&format!("connected to {alice}"));
    // Each announces itself (a signed Join chat) at its first tick with a peer.
    a.wait_for(&format!("*** {bob} joined"));
    b.wait_for(&format!("*** {alice} joined"));
    a.say("hello bob");
    b.say("hello alice");
    b.wait_for(&format!("{alice}: hello bob"));
    a.wait_for(&format!("{bob}: hello alice"));
    a.say("/peers");
    a.wait_for("1 peer(s):");
    let row = a.wait_for(&bob);
    assert!(row.contains("127.0.0.1:") && row.contains("inbound"), "{row}");
    a.say("/stats");
    a.wait_for("chats sent         2");
    a.wait_for("chats received     2");
    a.say("/id");
    let id = a.wait_for("peer id    ");
    assert_eq!(id.split_whitespace().last().unwrap().len(), 64);
    a.wait_for("public key ");
    a.say("/history 2");
    a.wait_for("last 2 chat(s):");
    a.say("/frobnicate");
    a.wait_for("unknown command /frobnicate; type /help");
    a.say("/help");
    a.wait_for("/history [N]");
    // A barrier rather than a pause: a later chat on the same connection arrives after any
    // duplicate of the earlier one would have.
    a.say("marker after hello");
    b.wait_for(&format!("{alice}: marker after hello"));
    assert_eq!(b.count("hello bob"), 1, "shown exactly once");
    let out = b.quit();
    assert!(!out.iter().any(|l| l.contains("panicked")));
    a.wait_for(&format!("*** {bob} left"));
    a.quit();
}

/// The original description's bootstrap network: C knows only A, and finds B through A.
fn bootstrap_network(b_runtime: &str) {
    let mut boot = Proc::start("boot", &["listen", "-p", "0", "-u", "boot"]);
    let boot_addr = format!("127.0.0.1:{}", boot.port());
    let mut a = Proc::start("a", &["listen", "-p", "0", "-u", "blessing", "--bootstrap", &boot_addr]);
    let a_addr = format!("127.0.0.1:{}", a.port());
    let mut b =
        Proc::start("b", &["listen", "-p", "0", "-u", "bob", "--bootstrap", &boot_addr, "--runtime", b_runtime]);
    let bob = b.who();
    let mut c = Proc::start("c", &["connect", "-a", &a_addr, "-u", "carol"]);
    let carol = c.who();
    // Carol learns Bob's address from Alice (peer exchange) and connects to him.
    c.wait_for(&format!("connected to {bob}"));
    let mut nodes = [boot, a, b, c];
    for (i, n) in nodes.iter_mut().enumerate() {
        n.say(&format!("chat number {i}"));
    }
    for n in nodes.iter_mut() {
        for i in 0..4 {
            n.wait_for(&format!(": chat number {i}"));
        }
    }
    // A barrier rather than a pause: a later chat from each node, waited for everywhere. A
    // duplicate of an earlier chat would have been relayed along with it, ahead of these.
    for (i, n) in nodes.iter_mut().enumerate() {
        n.say(&format!("marker {i}"));
    }
    for n in nodes.iter_mut() {
        for i in 0..4 {
            n.wait_for(&format!(": marker {i}"));
        }
    }
    for n in nodes.iter_mut() {
        for i in 0..4 {
            assert_eq!(n.count(&format!(": chat number {i}")), 1, "{} saw chat {i} more than once", n.name);
        }
    }
    assert!(nodes[1].count(&carol) >= 1);
}

#[test]
fn bootstrap_and_peer_exchange_on_mio() {
    bootstrap_network("mio");
}

#[test]
fn bootstrap_and_peer_exchange_with_a_smol_node() {
    bootstrap_network("smol");
}

#[test]
fn history_survives_restart_and_kill_9() {
    let dir = temp_dir("persist");
    let db = dir.to_str().unwrap();
    let mut peer = Proc::start("peer", &["listen", "-p", "0", "-u", "peer"]);
    let peer_addr = format!("127.0.0.1:{}", peer.port());
    let mut a = Proc::start(
        "a",
        &["listen", "-p", "0", "-u", "keeper", "--persist", "--db-path", db, "--bootstrap", &peer_addr],
    );
    let keeper = a.who();
    a.wait_for("connected to peer#");
    peer.say("first words");
    a.wait_for("first words");
    a.say("a reply");
    peer.wait_for("a reply");
    // Killed without warning, right after showing a chat.
    peer.say("last words before the crash");
    a.wait_for("last words before the crash");
    let _ = a.child.kill();
    wait_exit(&mut a.child);
    drop(a);

    // Restarted without --bootstrap: it redials the peer it knew, and the history is intact.
    let mut a = Proc::start("a2", &["listen", "-p", "0", "-u", "keeper", "--persist", "--db-path", db]);
    assert_eq!(a.who(), keeper, "same identity from the key file");
    a.wait_for("connected to peer#");
    a.say("/history 10");
    a.wait_for("first words");
    a.wait_for("a reply");
    a.wait_for("last words before the crash");
    a.quit();
    drop(peer);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_input_is_one_clear_error_line() {
    let bad_flag = run(&["listen", "--fanout", "zero"]);
    assert_eq!(bad_flag.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_flag.stderr).contains("invalid value 'zero' for '--fanout"));

    let holder = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = holder.local_addr().unwrap().port().to_string();
    let in_use = run(&["listen", "-p", &port]);
    assert_eq!(in_use.status.code(), Some(1));
    let err = String::from_utf8_lossy(&in_use.stderr);
    assert!(err.starts_with("error: cannot listen on 0.0.0.0:") && err.contains("in use"), "{err}");

    let dir = temp_dir("corrupt");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("identity.key"), "not a key").unwrap();
    let out = run(&["listen", "-p", "0", "--persist", "--db-path", dir.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("identity file") && err.contains("not replaced"), "{err}");
    assert_eq!(std::fs::read_to_string(dir.join("identity.key")).unwrap(), "not a key");

    std::fs::remove_file(dir.join("identity.key")).unwrap();
    std::fs::write(dir.join("history.redb"), vec![0xa5; 4096]).unwrap();
    let out = run(&["listen", "-p", "0", "--persist", "--db-path", dir.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("history.redb"), "{err}");
    for o in [&bad_flag, &in_use, &out] {
        assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
    }
    std::fs::remove_dir_all(&dir).unwrap();

    let unresolvable = run(&["connect", "-a", "no-such-host.invalid:1"]);
    assert_eq!(unresolvable.status.code(), Some(1));
    let err = String::from_utf8_lossy(&unresolvable.stderr);
    assert!(err.contains("cannot resolve host \"no-such-host.invalid\""), "{err}");
    let malformed = run(&["connect", "-a", "no-port-here"]);
    assert!(String::from_utf8_lossy(&malformed.stderr).contains("expected host:port"));

    // An OS error is said once, not once per layer that wraps it.
    let err = String::from_utf8_lossy(&in_use.stderr);
    assert_eq!(err.matches("os error").count(), 1, "{err}");

    let bad_name = run(&["listen", "-p", "0", "-u", "alice#3d785535"]);
    assert_eq!(bad_name.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_name.stderr).contains("must not contain '#'"));
    let long_name = run(&["listen", "-p", "0", "-u", &"n".repeat(65)]);
    assert!(String::from_utf8_lossy(&long_name.stderr).contains("1 to 64 bytes long (this one is 65 bytes)"));
}

/// Two nodes on one `--db-path` (which implies `--persist`): the second is told why it cannot
/// start, once.
#[test]
fn a_database_in_use_names_the_other_program() {
    let dir = temp_dir("in-use");
    let db = dir.to_str().unwrap();
    let mut first = Proc::start("first", &["listen", "-p", "0", "--db-path", db]);
    first.wait_for("history: ");
    let second = run(&["listen", "-p", "0", "--db-path", db]);
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(err.contains("another p2p-chat is using") && err.contains(db), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    first.quit();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Ctrl-C in line mode (SIGINT), or SIGTERM, still announces the leave and exits cleanly.
#[test]
fn a_signal_leaves_as_quit_does() {
    let mut a = Proc::start("a", &["listen", "-p", "0", "-u", "stayer"]);
    let port = a.port().to_string();
    for (name, signal, code) in [("interrupted", libc::SIGINT, 0), ("terminated", libc::SIGTERM, 128 + libc::SIGTERM)] {
        let mut b = Proc::start(name, &["connect", "-a", &format!("127.0.0.1:{port}"), "-u", name]);
        let who = b.who();
        a.wait_for(&format!("*** {who} joined"));
        unsafe { libc::kill(b.child.id() as i32, signal) };
        let status = wait_exit(&mut b.child);
        assert_eq!(status.code(), Some(code), "{name}");
        a.wait_for(&format!("*** {who} left"));
    }
    a.quit();
}

/// Two keys under one name are pointed out, with both ids.
#[test]
fn two_keys_using_one_name_are_pointed_out() {
    let mut a = Proc::start("a", &["listen", "-p", "0", "-u", "alice"]);
    let port = a.port();
    let me = a.who();
    let mut b = Proc::start("b", &["connect", "-a", &format!("127.0.0.1:{port}"), "-u", "alice"]);
    let other = b.who();
    let line = a.wait_for("2 keys use the name alice");
    assert!(line.contains(&me) && line.contains(&other), "{line}");
    b.wait_for("2 keys use the name alice");
    b.quit();
    a.quit();
}

/// `--bind 127.0.0.1` listens on the loopback interface only.
#[test]
fn bind_chooses_the_listening_address() {
    let mut a = Proc::start("a", &["listen", "-p", "0", "--bind", "127.0.0.1"]);
    let line = a.wait_for("listening on");
    assert!(line.contains("listening on 127.0.0.1:"), "{line}");
    a.quit();
}

/// A chat written with no peer connected is said to be queued, and goes out when one connects.
#[test]
fn a_chat_with_no_peer_is_queued_then_sent() {
    let mut a = Proc::start("a", &["listen", "-p", "0", "-u", "alone"]);
    let port = a.port();
    a.say("anyone there?");
    a.wait_for("queued, it goes out when a peer connects");
    // Older than the 2 s a live chat may be behind our clock and still count as news.
    std::thread::sleep(Duration::from_millis(2_500));
    let mut b = Proc::start("b", &["connect", "-a", &format!("127.0.0.1:{port}"), "-u", "late"]);
    a.wait_for("queued while alone go out now");
    let line = b.wait_for("anyone there?");
    assert!(line.contains("(earlier in this room)"), "said before b ever ran: {line}");
    b.quit();
    a.quit();
}

#[test]
fn an_unreachable_peer_is_retried_with_backoff() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut a = Proc::start("a", &["connect", "-a", &format!("127.0.0.1:{port}")]);
    let line = a.wait_for("could not reach");
    assert!(line.contains("retrying in the background"), "{line}");
    // The tries go on (0.5 s, 1 s, 2 s apart), listed by /peers, and are not said again.
    let end = std::time::Instant::now() + common::DEADLINE;
    let tries = |l: &String| -> u32 {
        l.split("failed tries").next().and_then(|h| h.rsplit(' ').nth(1)).and_then(|n| n.parse().ok()).unwrap_or(0)
    };
    loop {
        a.say("/peers");
        std::thread::sleep(Duration::from_millis(300));
        a.count("");
        if a.seen.iter().any(|l| l.contains("unreachable 127.0.0.1:") && tries(l) >= 3) {
            break;
        }
        assert!(std::time::Instant::now() < end, "no third try listed:\n{}", a.seen.join("\n"));
    }
    assert_eq!(a.count("could not reach"), 1, "said once:\n{}", a.seen.join("\n"));
    // A node appears on that port: the next try reaches it, and that is said once too.
    let mut b = Proc::start("b", &["listen", "-p", &port.to_string(), "-u", "back"]);
    a.wait_for(&format!("--- 127.0.0.1:{port} is reachable again"));
    b.wait_for("connected to");
    a.quit();
}

/// `simulate | head`: the reader goes away before the report is written. That is no reason to
/// panic or to fail the run.
#[test]
fn a_closed_stdout_is_not_a_crash() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_p2p-chat"))
        .args(["simulate", "--nodes", "20", "--messages", "2", "--seed", "1"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("exits");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("panicked"), "{:?}: {err}", out.status);
}

#[test]
fn simulate_reports_a_converged_run_as_json() {
    let out = run(&["simulate", "--nodes", "60", "--messages", "10", "--seed", "7", "--json", "--check-determinism"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for key in [
        "\"nodes\":60",
        "\"messages\":10",
        "\"seed\":7",
        "\"delivery_ratio\":1.0",
        "\"missing\":0",
        "\"rmr\"",
        "\"ldh\"",
        "\"latency_ms_p50\"",
        "\"latency_ms_p99\"",
        "\"events\"",
        "\"wall_s\"",
    ] {
        assert!(text.contains(key), "{key} missing from {text}");
    }
}

/// `--plot` draws one curve a chat: the share of nodes holding it against virtual time.
#[test]
fn simulate_plots_delivery_over_time() {
    let dir = temp_dir("plot");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("delivery.svg");
    // An earlier, longer file is replaced whole, with nothing of it left at the end.
    std::fs::write(&path, "x".repeat(1 << 20)).unwrap();
    let out = run(&["simulate", "--nodes", "40", "--messages", "6", "--seed", "5", "--plot", path.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("plot written to"), "{text}");
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
    assert_eq!(svg.matches("<polyline").count(), 6, "one curve a chat: {svg}");
    // Every curve climbs to every other node: 39 deliveries, the last at 100% of the 40.
    for line in svg.lines().filter(|l| l.starts_with("<polyline")) {
        let points = line.split("points=\"").nth(1).unwrap().trim_end_matches("\"/>");
        assert_eq!(points.split(' ').count(), 39, "{line}");
        let last_y: f64 = points.rsplit(' ').next().unwrap().split(',').nth(1).unwrap().parse().unwrap();
        assert!((last_y - 50.0).abs() < 0.01, "the curve ends at 100%: {line}");
    }
    assert!(svg.contains("faults: none") && !svg.contains(">heal<"), "a clean run says so: {svg}");
    assert!(svg.contains("virtual time since the fault phase began (s)") && svg.contains("one chat (6 of 6 drawn)"));

    // A faulty run names its faults, shades the fault phase and marks the heal.
    let out = run(&[
        "simulate",
        "--nodes",
        "40",
        "--messages",
        "6",
        "--seed",
        "5",
        "--loss",
        "0.05",
        "--partition",
        "--plot",
        path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.contains("faults: loss 5%, partition"), "{svg}");
    assert!(svg.contains(">heal<") && svg.contains(">fault phase<"), "{svg}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A plot that cannot be written fails before the run, not after it.
#[test]
fn simulate_refuses_an_unwritable_plot_at_once() {
    let dir = temp_dir("noplot");
    let path = dir.join("missing-dir").join("delivery.svg");
    let out = run(&["simulate", "--nodes", "40", "--messages", "6", "--seed", "5", "--plot", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot write the plot to") && err.contains("missing-dir"), "{err}");
    assert!(out.stdout.is_empty(), "no report for a run that was not made: {}", String::from_utf8_lossy(&out.stdout));
}
