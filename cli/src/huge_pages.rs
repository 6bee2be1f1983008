//! Transparent huge pages for the simulator's heap.
//!
//! A large simulation holds gigabytes of small per-node allocations and every event lands on a
//! random node, so much of its time goes to TLB misses; with 2 MiB pages instead of 4 KiB ones
//! far fewer. glibc's malloc asks the kernel for them only when its `glibc.malloc.hugetlb=1`
//! tunable is set, and tunables are read once, at startup: so `simulate` executes itself again,
//! once, with it set. Elsewhere (another libc, another system) this does nothing. A profiler that
//! follows only the process it started (valgrind, for one) needs `GLIBC_TUNABLES` set to
//! something, `glibc.malloc.hugetlb=0` say, or it sees only the first, short-lived process.
//!
//! The same pass raises `glibc.malloc.mmap_threshold` to its largest, 32 MiB. Below it, glibc
//! gives each block of more than 128 KiB (and later, as it adapts, of more than the largest freed
//! so far) a mapping of its own, grown by `mremap`, faulted in 4 KiB at a time outside the
//! huge-page heap and unmapped when freed. The simulator's large tables would pay that as they
//! grow; with the threshold raised they stay in the heap. Measured figures: docs/SIMULATION.md.

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
