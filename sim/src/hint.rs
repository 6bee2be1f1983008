//! Cache hints: the simulator holds 100,000 nodes, each cold in cache when its next event comes,
//! and knows which memory its next events will read (see `World::prefetch`). Asking for it a few
//! events early lets the loads overlap the work in between. A hint changes no state and no result,
//! and may do nothing at all. The core names its regions (feature `prefetch`); the instruction is
//! issued here, so the core stays free of `unsafe`.

/// Starts loading the cache lines of the `len` bytes from `p`, if the target has a hint for it.
/// Reads nothing a program can see and never faults: any address will do, valid or not.
#[inline]
pub fn lines(p: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let hint = |off: usize| {
            // SAFETY: `_mm_prefetch` needs SSE, which every x86_64 processor has, and it reads
            // nothing a program can see and never faults, whatever the address (so
            // `wrapping_add`: nothing here claims the range is valid).
            unsafe {
                core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.wrapping_add(off).cast())
            }
        };
        let mut off = 0;
        while off < len {
            hint(off);
            off += 64;
        }
        // A range that does not start on a line can end in the line after the last one hinted
        // above. Hinting its last byte costs less than finding where lines start, and nothing
        // when that line was hinted already.
        if len > 0 {
            hint(len - 1);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, len);
}

/// Hints the whole of `v`.
#[inline]
pub fn value<T: ?Sized>(v: &T) {
    lines((v as *const T).cast(), size_of_val(v));
}
