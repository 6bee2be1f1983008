//! Transparent huge pages for the simulator's heap.
//!
//! A large simulation holds gigabytes of small per-node allocations and every event lands on a
//! random node, so much of its time went to TLB misses; with 2 MiB pages instead of 4 KiB ones
//! far fewer. glibc's malloc asks the kernel for them only when its `glibc.malloc.hugetlb=1`
//! tunable is set, and tunables are read once, at startup: so `simulate` executes itself again,
//! once, with it set. Elsewhere (another libc, another system) this does nothing. A profiler that
//! follows only the process it started (valgrind, for one) needs `GLIBC_TUNABLES` set to
//! something, `glibc.malloc.hugetlb=0` say, or it sees only the first, short-lived process.
//!
//! The same pass raises `glibc.malloc.mmap_threshold` to its largest, 32 MiB. Below it, glibc
//! gives each block of more than 128 KiB (and later, as it adapts, of more than the largest freed
//! so far) a mapping of its own, grown by `mremap` and unmapped when freed. The simulator's event
//! queue buckets (`Queue::push_bucket`) grew and emptied all run long, 13,000 `mremap`s at 30,000
//! nodes, and each time their new pages were faulted in and zeroed, 4 KiB at a time, outside the
//! huge-page heap. At 100,000 nodes that was 400,000-435,000 page faults and 3.2-4.7 s of system
//! time; with the threshold raised, 1,800-2,800 faults and 1.5-2.8 s (five pairs; user time
//! within their noise, 6% less on average), for 1.3-2.2% more peak RSS.
//! Since the queue holds its buckets in fixed chunks of 6 KiB, it makes no such blocks (5 `mremap`s
//! at 30,000 nodes without the raise, against 13,225 before); the raise stays for the rest of the
//! simulator's large tables, which grow once.

/// Replaces the process with itself under these tunables, unless the environment already
/// sets glibc tunables (a second pass, or a user's own choice). Returns only if it did not.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn reexec_with_huge_pages() {
    use std::os::unix::process::CommandExt;

    const TUNABLES: &str = "GLIBC_TUNABLES";
    if std::env::var_os(TUNABLES).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let mut args = std::env::args_os();
    let mut cmd = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        cmd.arg0(arg0);
    }
    let err = cmd.args(args).env(TUNABLES, "glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=33554432").exec();
    tracing::debug!("running without huge pages: could not execute again: {err}");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn reexec_with_huge_pages() {}
