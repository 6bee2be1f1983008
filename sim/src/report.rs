//! A run's figures, and how they are shown: a table, one JSON object, an SVG plot.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use serde::Serialize;

use crate::attack::{self, Flood, KindFigures};
use crate::metrics::{ms, quantile_rank, Times, Totals};
use crate::world::{World, T0_MS};
use crate::Params;
use p2p_chat_core::Time;

/// Chats the plot draws, a line each: more only thicken the blur.
const PLOTTED: usize = 200;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub nodes: usize,
    pub messages: usize,
    pub seed: u64,
    pub crypto: &'static str,
    pub repair: bool,
    pub loss: f64,
    pub churn: f64,
    pub crash_at_once: bool,
    pub partition: bool,
    pub link_latency_ms: (u64, u64),
    /// Well-known bootstrap nodes (each node is told of three).
    pub bootstrap: usize,
    pub live_nodes: usize,
    pub crashes: u64,
    pub delivery_ratio: f64,
    pub missing: usize,
    pub duplicates: u64,
    pub forged_delivered: u64,
    pub rmr: f64,
    pub ldh: f64,
    pub ldh_max: u8,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
    pub msgs_per_node: f64,
    pub bytes_per_node: f64,
    /// Established connections a live node has at the end (the overlay's mean degree).
    pub peers_per_node: f64,
    pub full_peer_set_s: Option<f64>,
    pub converged: bool,
    pub converge_s_after_heal: Option<f64>,
    pub events: u64,
    pub wall_s: f64,
    pub events_per_s: f64,
    pub rss_kib: u64,
    pub rss_kib_per_node: f64,
    /// Checks of the swarm's invariants during the run (see `World::check_invariants`), and
    /// what they found broken.
    pub invariant_checks: u64,
    pub invariant_violations: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_violation: Option<String>,
    /// What the attackers did and got (`--attackers`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attack: Option<AttackReport>,
    /// Rooms besides the default one (`--rooms`), and how they did.
    pub rooms: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<RoomReport>,
    /// What the direct messages did (`--dms`), its fields at the top level.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub dm: Option<crate::world::DmReport>,
    /// What moderation did (`--kicks`), its fields at the top level.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub moderation: Option<crate::world::ModerationReport>,
    /// What NAT traversal did (`--nat`), its fields at the top level.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub nat: Option<crate::world::NatReport>,
    /// Hash of everything the run decided, for `--check-determinism`.
    #[serde(skip)]
    pub fingerprint: u64,
    /// The delivery times of the first `PLOTTED` chats delivered anywhere: the plot's curves.
    #[serde(skip)]
    pub curves: Vec<Times>,
    /// When each plotted chat was sent, in ms after the fault phase began.
    #[serde(skip)]
    pub curve_sent_ms: Vec<f64>,
    /// Length of the fault phase in ms: the faults heal at this time on the plot.
    #[serde(skip)]
    pub fault_ms: f64,
}

/// How the rooms did (`--rooms`).
#[derive(Debug, Clone, Serialize)]
pub struct RoomReport {
    /// The lowest delivery ratio of any room (counting its live members only).
    pub room_delivery_min: f64,
    /// Frames and bytes of a room's traffic that reached a node not in it, and deliveries of a
    /// room's chat at a non-member: all must be 0.
    pub room_leak_frames: u64,
    pub room_leak_bytes: u64,
    pub room_leak_deliveries: u64,
    /// Room chat frames received per room chat delivered, minus one, over all rooms, from the
    /// fault phase on.
    pub room_rmr: f64,
    /// Time for a member that joined to have a first member neighbour in the room (timed from
    /// when another member was up), over every join, and over joins of rooms of at most 10.
    pub find_member_ms_p50: f64,
    pub find_member_ms_p99: f64,
    pub find_member_small_ms_p50: f64,
    pub find_member_small_ms_p99: f64,
    /// Joins that never found a member neighbour.
    pub find_member_pending: usize,
}

impl RoomReport {
    fn new(w: &World, live: &[usize], totals: &Totals, at_fault_start: &Totals) -> RoomReport {
        let m = &w.metrics;
        let quantiles = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            let at = |q: f64| quantile_rank(v.len(), q).map_or(0.0, |i| v[i]);
            (at(0.5), at(0.99))
        };
        let all: Vec<f64> = w.rooms.found.iter().map(|(d, _)| d.as_secs_f64() * 1000.0).collect();
        let small: Vec<f64> =
            w.rooms.found.iter().filter(|(_, size)| *size <= 10).map(|(d, _)| d.as_secs_f64() * 1000.0).collect();
        let (p50, p99) = quantiles(all);
        let (s50, s99) = quantiles(small);
        let frames = totals.room_chat_frames_in - at_fault_start.room_chat_frames_in;
        let deliveries = m.room_window_deliveries;
        RoomReport {
            room_delivery_min: m.room_delivery_min(live).unwrap_or(1.0),
            room_leak_frames: totals.foreign_room_frames,
            room_leak_bytes: totals.foreign_room_bytes,
            room_leak_deliveries: m.room_leak_deliveries,
            room_rmr: if deliveries > 0 { frames as f64 / deliveries as f64 - 1.0 } else { 0.0 },
            find_member_ms_p50: p50,
            find_member_ms_p99: p99,
            find_member_small_ms_p50: s50,
            find_member_small_ms_p99: s99,
            find_member_pending: w.rooms.pending(),
        }
    }

    fn rows(&self, rooms: usize) -> Vec<String> {
        vec![
            String::new(),
            format!("  rooms                {rooms}, lowest delivery ratio {:.6}", self.room_delivery_min),
            format!(
                "  room leaks           {} frames, {} bytes, {} deliveries at non-members",
                self.room_leak_frames, self.room_leak_bytes, self.room_leak_deliveries
            ),
            format!("  room RMR             {:.3}", self.room_rmr),
            format!(
                "  first member found   p50 {:.0} ms, p99 {:.0} ms (rooms of 10 or fewer: p50 {:.0} ms, p99 {:.0} ms; {} never)",
                self.find_member_ms_p50,
                self.find_member_ms_p99,
                self.find_member_small_ms_p50,
                self.find_member_small_ms_p99,
                self.find_member_pending
            ),
        ]
    }
}

/// What the attackers measured (see `crate::attack`).
#[derive(Debug, Clone, Serialize)]
pub struct AttackReport {
    pub attackers: usize,
    pub victims_each: usize,
    pub paced_frames_per_s: usize,
    /// Attacker connections that completed the handshake (reconnections included).
    pub connections: u64,
    /// Attacker connections banned by their victims.
    pub bans: u64,
    /// Attacker connections closed by their victims, bans included.
    pub closed_by_victims: u64,
    /// Bytes the attackers sent and received up to the end of their connections' catch-ups
    /// (handshakes included): not counted in the amplification.
    pub catch_up_sent_bytes: u64,
    pub catch_up_received_bytes: u64,
    /// Bytes the attackers sent and received after their catch-ups.
    pub sent_bytes: u64,
    pub received_bytes: u64,
    /// `received_bytes / sent_bytes`.
    pub amplification: f64,
    /// The largest amplification of any one kind of flood.
    pub amplification_max: f64,
    pub kinds: Vec<KindFigures>,
    /// Most bytes a victim wrote to one attacker in answer to one input (one read): what a
    /// crafted read can make a node queue.
    pub answer_per_read_bytes_max: u64,
    /// Most bytes a victim had written to one attacker that had not arrived yet: what its
    /// runtime would hold for a reader that drains at the link's latency.
    pub in_flight_bytes_max: u64,
    /// Over every live node at the end: answers refused or deferred, repeats ignored, bans.
    pub answers_refused: u64,
    pub answers_deferred: u64,
    pub repeats_ignored: u64,
    pub peers_banned: u64,
    /// Records from a victim the attackers' client could not open (0 unless the simulator is
    /// broken).
    pub client_errors: u64,
}

impl AttackReport {
    fn new(p: &Params, w: &World) -> AttackReport {
        let t = &w.tally;
        let ratio = |received: u64, sent: u64| if sent == 0 { 0.0 } else { received as f64 / sent as f64 };
        let kinds_used = p.attack_kinds();
        let kinds: Vec<KindFigures> = Flood::ALL
            .iter()
            .filter(|k| kinds_used.contains(k))
            .map(|&k| {
                let (connections, bans, sent, received) = t.per_kind[k as usize];
                KindFigures {
                    kind: k.name(),
                    attackers: kinds_used.iter().filter(|&&u| u == k).count(),
                    connections,
                    bans,
                    sent_bytes: sent,
                    received_bytes: received,
                    amplification: ratio(received, sent),
                }
            })
            .collect();
        let sent: u64 = kinds.iter().map(|k| k.sent_bytes).sum();
        let received: u64 = kinds.iter().map(|k| k.received_bytes).sum();
        let mut totals = p2p_chat_core::Stats::default();
        for (_, n) in w.live() {
            let s = n.stats();
            totals.answers_refused += s.answers_refused;
            totals.answers_deferred += s.answers_deferred;
            totals.repeats_ignored += s.repeats_ignored;
            totals.peers_banned += s.peers_banned;
        }
        AttackReport {
            attackers: p.attackers,
            victims_each: attack::VICTIMS_EACH.min(p.nodes),
            paced_frames_per_s: attack::PACED_PER_SEC,
            connections: t.connections,
            bans: t.bans,
            closed_by_victims: t.closed_by_victims,
            catch_up_sent_bytes: t.catch_up_sent,
            catch_up_received_bytes: t.catch_up_received,
            sent_bytes: sent,
            received_bytes: received,
            amplification: ratio(received, sent),
            amplification_max: kinds.iter().map(|k| k.amplification).fold(0.0, f64::max),
            kinds,
            answer_per_read_bytes_max: t.answer_per_read_bytes_max,
            in_flight_bytes_max: t.in_flight_bytes_max,
            answers_refused: totals.answers_refused,
            answers_deferred: totals.answers_deferred,
            repeats_ignored: totals.repeats_ignored,
            peers_banned: totals.peers_banned,
            client_errors: t.client_errors,
        }
    }

    fn rows(&self) -> Vec<String> {
        let mut rows = vec![
            String::new(),
            format!(
                "  attackers            {} ({} victims each, {} frames/s after one catch-up)",
                self.attackers, self.victims_each, self.paced_frames_per_s
            ),
            format!(
                "  attacker conns       {} completed, {} closed by victims, {} banned",
                self.connections, self.closed_by_victims, self.bans
            ),
            format!(
                "  amplification        x{:.3} ({} B received / {} B sent after catch-up; worst kind x{:.3})",
                self.amplification, self.received_bytes, self.sent_bytes, self.amplification_max
            ),
        ];
        for k in &self.kinds {
            rows.push(format!(
                "    {:<18} x{:.3}  ({} attackers, {} conns, {} banned, {} B sent, {} B received)",
                k.kind, k.amplification, k.attackers, k.connections, k.bans, k.sent_bytes, k.received_bytes
            ));
        }
        rows.push(format!(
            "  catch-ups            {} B sent, {} B received (handshakes included)",
            self.catch_up_sent_bytes, self.catch_up_received_bytes
        ));
        rows.push(format!(
            "  victims queued       at most {} B for one attacker by one read, {} B in flight to one",
            self.answer_per_read_bytes_max, self.in_flight_bytes_max
        ));
        rows.push(format!(
            "  answers              {} refused, {} deferred, {} repeats ignored, {} peers banned",
            self.answers_refused, self.answers_deferred, self.repeats_ignored, self.peers_banned
        ));
        rows
    }
}

/// The run's fingerprint hash: 64-bit FNV-1a, fixed here rather than `DefaultHasher`,
/// whose algorithm may change between Rust releases (a fingerprint is compared across builds).
struct Fingerprint(u64);

impl Default for Fingerprint {
    fn default() -> Fingerprint {
        Fingerprint(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fingerprint {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Peak resident memory of this process, from /proc (0 where there is none).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

impl Report {
    pub fn new(p: &Params, w: &World, converged_at: Option<Time>, wall: Duration) -> Report {
        let m = &w.metrics;
        let live: Vec<usize> = (0..w.node_count()).filter(|&i| w.is_live(i)).collect();
        let expected = m.expected(&live);
        let missing = m.missing(&live);
        let mut totals = m.retired;
        let mut peers = 0;
        for (_, n) in w.live() {
            totals.add(n.stats());
            peers += n.peer_count();
        }
        let window = Totals { chat_frames_in: totals.chat_frames_in - m.at_fault_start.chat_frames_in, ..totals };
        let rmr =
            if m.window_deliveries > 0 { window.chat_frames_in as f64 / m.window_deliveries as f64 - 1.0 } else { 0.0 };
        // Built while every node is still alive, at the run's peak of memory: the delivery times
        // are read where they are kept, coded, and the latency quantiles found by merging them,
        // not from a sorted copy of them all.
        let mut ldhs = Vec::new();
        let mut all = Vec::new();
        let mut curves = Vec::new();
        let mut curve_sent_ms = Vec::new();
        let fault = Duration::from_secs_f64(p.fault_s);
        let fault_start = Time::from_millis(w.heal_at.as_millis().saturating_sub(fault.as_millis() as u64));
        let mut h = Fingerprint::default();
        for (id, d) in m.deliveries() {
            ldhs.push(d.farthest_hops);
            all.push(d.times);
            if curves.len() < PLOTTED {
                curves.push(d.times.clone());
                let sent = m.sent.get(id).map_or(0.0, |&t| t.since(fault_start).as_secs_f64() * 1000.0);
                curve_sent_ms.push(sent);
            }
            id.hash(&mut h);
            d.hash.hash(&mut h);
        }
        let deliveries: usize = all.iter().map(|t| t.len()).sum();
        let [p50, p99, max] = nth_smallest(&all, [0.5, 0.99, 1.0].map(|q| quantile_rank(deliveries, q)));
        let wall_s = wall.as_secs_f64();
        (w.events, totals.frames_out, totals.bytes_out, missing, m.duplicates).hash(&mut h);
        let rss = rss_kib();
        let attack = (p.attackers > 0).then(|| AttackReport::new(p, w));
        if let Some(a) = &attack {
            (a.connections, a.bans, a.sent_bytes, a.received_bytes).hash(&mut h);
        }
        w.invariants.violations.hash(&mut h);
        let moderation = w.moderation_report();
        if let Some(m) = &moderation {
            (m.removals, m.removals_refused, m.chats_after_removal, m.removed_can_read, m.moderation_converged)
                .hash(&mut h);
        }
        let room = (!w.rooms.is_empty()).then(|| RoomReport::new(w, &live, &totals, &m.at_fault_start));
        if let Some(r) = &room {
            (r.room_leak_frames, r.room_leak_deliveries, w.rooms.found.len()).hash(&mut h);
        }
        Report {
            nodes: p.nodes,
            messages: m.sent.len(),
            seed: p.seed,
            crypto: if p.real_crypto { "ed25519" } else { "cheap (insecure stand-in)" },
            repair: p.repair,
            loss: p.loss,
            churn: p.churn,
            crash_at_once: p.crash_at_once,
            partition: p.partition,
            link_latency_ms: p.latency_ms,
            bootstrap: p.bootstrap.min(p.nodes),
            live_nodes: live.len(),
            crashes: m.crashes,
            delivery_ratio: if expected == 0 { 1.0 } else { (expected - missing) as f64 / expected as f64 },
            missing,
            duplicates: m.duplicates,
            forged_delivered: m.forged_delivered,
            rmr,
            ldh: if ldhs.is_empty() { 0.0 } else { ldhs.iter().map(|&h| h as f64).sum::<f64>() / ldhs.len() as f64 },
            ldh_max: ldhs.iter().copied().max().unwrap_or(0),
            latency_ms_p50: ms(p50),
            latency_ms_p99: ms(p99),
            latency_ms_max: ms(max),
            msgs_per_node: totals.frames_out as f64 / p.nodes as f64,
            bytes_per_node: totals.bytes_out as f64 / p.nodes as f64,
            peers_per_node: peers as f64 / live.len().max(1) as f64,
            full_peer_set_s: m.full_peer_set_at.map(|t| t.since(Time::from_millis(T0_MS)).as_secs_f64()),
            converged: converged_at.is_some(),
            converge_s_after_heal: converged_at.map(|t| t.since(w.heal_at).as_secs_f64()),
            events: w.events,
            wall_s,
            events_per_s: w.events as f64 / wall_s.max(1e-9),
            rss_kib: rss,
            rss_kib_per_node: rss as f64 / p.nodes as f64,
            invariant_checks: w.invariants.checks,
            invariant_violations: w.invariants.violations,
            first_violation: w.invariants.first.clone(),
            attack,
            rooms: p.rooms,
            room,
            dm: w.dm_report(),
            moderation,
            nat: w.nat_report(),
            fingerprint: h.finish(),
            curves,
            curve_sent_ms,
            fault_ms: p.fault_s * 1000.0,
        }
    }

    /// Why the run failed, if it did.
    pub fn failure(&self) -> Option<String> {
        if self.forged_delivered > 0 {
            return Some(format!("{} forged chat deliveries", self.forged_delivered));
        }
        if self.duplicates > 0 {
            return Some(format!("{} chats delivered twice to the same node", self.duplicates));
        }
        if let Some(a) = self.attack.as_ref().filter(|a| a.client_errors > 0) {
            return Some(format!("{} records from victims the attackers could not open", a.client_errors));
        }
        if let Some(first) = &self.first_violation {
            return Some(format!("{} invariant violations, the first {first}", self.invariant_violations));
        }
        if let Some(r) = self.room.as_ref().filter(|r| r.room_leak_frames + r.room_leak_deliveries > 0) {
            return Some(format!(
                "rooms leaked: {} frames and {} deliveries reached non-members",
                r.room_leak_frames, r.room_leak_deliveries
            ));
        }
        if let Some(m) = &self.moderation {
            if m.removed_can_read > 0 {
                return Some(format!(
                    "removed members could open {} chats written after their removal",
                    m.removed_can_read
                ));
            }
            if !m.moderation_converged {
                return Some("the members of a room did not agree on its membership after heal".into());
            }
        }
        if !self.converged {
            return Some(format!("did not converge: {} (chat, node) pairs still missing", self.missing));
        }
        None
    }

    pub fn json(&self, deterministic_checked: bool) -> String {
        let mut v = serde_json::to_value(self).expect("a report is plain data");
        v["deterministic_checked"] = serde_json::Value::Bool(deterministic_checked);
        v.to_string()
    }

    pub fn table(&self, deterministic_checked: bool) -> String {
        let opt = |v: Option<f64>| v.map(|s| format!("{s:.1} s")).unwrap_or_else(|| "never".into());
        let mut rows = vec![
            format!(
                "p2p-chat simulate: {} nodes ({} bootstrap), {} chats, seed {}, {} signatures, {}",
                self.nodes,
                self.bootstrap,
                self.messages,
                self.seed,
                self.crypto,
                if self.repair { "plumtree + repair" } else { "plain push (no repair)" }
            ),
            format!(
                "faults: loss {:.1}%, latency {}..{} ms, churn {:.0}% ({} crashes{}, restarted at heal), partition {}",
                self.loss * 100.0,
                self.link_latency_ms.0,
                self.link_latency_ms.1,
                self.churn * 100.0,
                self.crashes,
                if self.crash_at_once { " at once" } else { "" },
                if self.partition { "yes" } else { "no" }
            ),
            String::new(),
            format!("  delivery ratio       {:.6}", self.delivery_ratio),
            format!("  missing              {}", self.missing),
            format!("  duplicates           {}", self.duplicates),
            format!("  forged delivered     {}", self.forged_delivered),
            format!(
                "  converged            {}",
                match self.converge_s_after_heal {
                    Some(s) => format!("{s:.1} s after healing"),
                    None => "NO".into(),
                }
            ),
            format!("  RMR                  {:.3}", self.rmr),
            format!("  LDH                  {:.1} (max {})", self.ldh, self.ldh_max),
            format!(
                "  latency              p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
                self.latency_ms_p50, self.latency_ms_p99, self.latency_ms_max
            ),
            format!("  sent per node        {:.0} frames, {:.0} bytes", self.msgs_per_node, self.bytes_per_node),
            format!("  peers per node       {:.1}", self.peers_per_node),
            format!("  full peer sets after {}", opt(self.full_peer_set_s)),
            format!(
                "  invariants           {} checks, {} violations{}",
                self.invariant_checks,
                self.invariant_violations,
                self.first_violation.as_ref().map(|f| format!(" (first {f})")).unwrap_or_default()
            ),
            format!("  events               {} ({:.0}/s)", self.events, self.events_per_s),
            format!(
                "  wall                 {:.2} s, peak RSS {} MiB ({:.1} KiB per node)",
                self.wall_s,
                self.rss_kib / 1024,
                self.rss_kib_per_node
            ),
        ];
        if let Some(a) = &self.attack {
            rows.extend(a.rows());
        }
        if let Some(r) = &self.room {
            rows.extend(r.rows(self.rooms));
        }
        if let Some(m) = &self.moderation {
            rows.push(format!(
                "  moderation           {} removals of {} planned ({} refused), membership {}",
                m.removals,
                m.kicks,
                m.removals_refused,
                match (m.moderation_converged, m.moderation_converge_s_after_heal) {
                    (true, Some(s)) => format!("agreed {s:.1} s after healing"),
                    (true, None) => "agreed".into(),
                    (false, _) => "NOT AGREED".into(),
                }
            ));
            rows.push(format!(
                "  removed can read     {} of {} chats written after a removal",
                m.removed_can_read, m.chats_after_removal
            ));
        }
        if deterministic_checked {
            rows.push("  determinism          checked: a second run was identical".into());
        }
        rows.join("\n")
    }

    /// Delivery over time: one faint line per chat, share of nodes that have it against virtual
    /// time since the fault phase began (see `plot`).
    pub fn svg(&self) -> String {
        crate::plot::svg(self)
    }
}

/// The `ranks`-th smallest (from 0) of the times in `lists` together; `None` for a rank beyond
/// them or none. Counts rather than sorts or merges, a few bits at a time from the top: the
/// times by their first `DIGITS[0]` bits, then, among those starting as a rank's answer does, by
/// the next bits, and so on. A pass over the coded times a digit, no copy of them, and count
/// tables of a few thousand entries (32 KB), not the 65,536 of two 16-bit digits, which at a few
/// thousand nodes outweighed the times themselves.
fn nth_smallest<const K: usize>(lists: &[&Times], ranks: [Option<usize>; K]) -> [Option<u32>; K] {
    const DIGITS: [u32; 3] = [12, 10, 10];
    // Per rank: the answer's leading digits found so far, and its rank among the times starting so.
    let mut at: [Option<(u64, usize)>; K] = ranks.map(|r| Some((0, r?)));
    let mut done = 0;
    for bits in DIGITS {
        done += bits;
        let shift = 32 - done;
        // A count table for each prefix a rank is under.
        let mut tables: Vec<(u64, Vec<usize>)> = Vec::new();
        for &(prefix, _) in at.iter().flatten() {
            if !tables.iter().any(|(p, _)| *p == prefix) {
                tables.push((prefix, vec![0; 1 << bits]));
            }
        }
        for t in lists.iter().flat_map(|l| l.unordered()) {
            let t = t as u64;
            if let Some((_, counts)) = tables.iter_mut().find(|(p, _)| *p == t >> (shift + bits)) {
                counts[((t >> shift) & ((1 << bits) - 1)) as usize] += 1;
            }
        }
        for a in &mut at {
            *a = a.and_then(|(prefix, mut rank)| {
                let (_, counts) = tables.iter().find(|(p, _)| *p == prefix)?;
                for (digit, &c) in counts.iter().enumerate() {
                    if rank < c {
                        return Some(((prefix << bits) | digit as u64, rank));
                    }
                    rank -= c;
                }
                None
            });
        }
    }
    at.map(|a| a.map(|(v, _)| v as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nth_smallest_is_the_sorted_rank() {
        let lists: [&[u32]; 3] = [&[5, 5, 70_000, 9, 1 << 20], &[], &[0, 65_535, 65_536, 65_536, 3, u32::MAX]];
        let times: Vec<Times> = lists
            .iter()
            .map(|l| {
                let mut t = Times::default();
                l.iter().for_each(|&v| t.push(v));
                t
            })
            .collect();
        let mut sorted: Vec<u32> = lists.concat();
        sorted.sort_unstable();
        let refs: Vec<&Times> = times.iter().collect();
        for (rank, &v) in sorted.iter().enumerate() {
            assert_eq!(nth_smallest(&refs, [Some(rank), None]), [Some(v), None]);
        }
        assert_eq!(nth_smallest(&refs, [Some(sorted.len())]), [None]);
        assert_eq!(nth_smallest(&[], [quantile_rank(0, 0.5)]), [None]);
    }
}
