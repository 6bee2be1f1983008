//! `p2p-chat bench`: the real program measures a short run on both runtimes and reports it as JSON.

#[allow(dead_code)]
mod common;

use common::run;

#[test]
fn bench_json_reports_every_figure_for_both_runtimes() {
    let out = run(&["bench", "--chats", "1000", "--rate-secs", "0.5", "--idle", "8", "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed:\n{stdout}\n{stderr}");
    let reports: Vec<serde_json::Value> =
        stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let runtimes: Vec<&str> = reports.iter().map(|r| r["runtime"].as_str().unwrap()).collect();
    assert_eq!(runtimes, ["mio", "smol"]);
    for r in &reports {
        let num = |k: &str| r[k].as_f64().unwrap_or_else(|| panic!("no number {k:?} in {r}"));
        assert_eq!(num("delivered"), 1000.0, "{r}");
        assert_eq!(num("rate_delivered"), num("rate_chats"), "{r}");
        assert!(r["chain_ok"].as_bool().unwrap(), "the receiver saw a peer other than the relay: {r}");
        assert_eq!(num("relay_chats_refused"), 0.0, "{r}");
        for k in ["chats_per_s", "verify_per_s", "verify_batch_per_s", "sign_per_s", "latency_us_p50"] {
            assert!(num(k) > 0.0, "{k} not positive: {r}");
        }
        assert!(num("latency_us_p99") >= num("latency_us_p50"), "{r}");
        let ratio = num("chats_per_s") / num("verify_per_s");
        assert!((num("ratio") - ratio).abs() < 1e-6 * ratio.max(1.0), "{r}");
        let per_conn = num("rss_kib_per_conn");
        assert!((0.0..10_000.0).contains(&per_conn), "{r}");
    }
}
