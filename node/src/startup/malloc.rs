//! glibc malloc's settings around redo, which builds the whole recovered state in memory
//! from two threads.
//!
//! Measured (`perf` of a node redoing 465 MB of WAL): a third of redo's CPU time was the
//! kernel's, and 13% of it `mprotect`: glibc grows a thread's arena `M_TOP_PAD` (128 kB) at
//! a time, each step an `mprotect` that takes the address space's lock for writing against
//! the other thread's page faults. A 64 MB pad during redo makes that 500 times rarer
//! (start after the crash 0.96 s -> 0.69 s, system CPU 0.8 s -> 0.47 s).
//!
//! Setting any of these turns off glibc's dynamic mmap threshold, so the threshold and
//! the trim threshold are set where that adjustment ends up for large buffers (32 MB, and
//! twice that), and the pad goes back to glibc's default after redo.

/// glibc's `DEFAULT_TOP_PAD`.
const DEFAULT_TOP_PAD: i32 = 128 * 1024;
/// The pad while redo runs.
const REDO_TOP_PAD: i32 = 64 << 20;
/// glibc's `DEFAULT_MMAP_THRESHOLD_MAX` on 64-bit: where the dynamic threshold stops.
const MMAP_THRESHOLD: i32 = 32 << 20;

/// Grows malloc's arenas in large steps until the returned guard is dropped.
pub(super) fn for_redo() -> RedoMalloc {
    glibc::set(glibc::MMAP_THRESHOLD, MMAP_THRESHOLD);
    glibc::set(glibc::TRIM_THRESHOLD, 2 * MMAP_THRESHOLD);
    glibc::set(glibc::TOP_PAD, REDO_TOP_PAD);
    RedoMalloc(())
}

/// While alive, malloc grows its arenas 64 MB at a time.
pub(super) struct RedoMalloc(());

impl Drop for RedoMalloc {
    fn drop(&mut self) {
        glibc::set(glibc::TOP_PAD, DEFAULT_TOP_PAD);
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    pub use libc::M_TRIM_THRESHOLD as TRIM_THRESHOLD;
    pub use libc::{M_MMAP_THRESHOLD as MMAP_THRESHOLD, M_TOP_PAD as TOP_PAD};

    /// `mallopt(param, value)`.
    pub fn set(param: i32, value: i32) {
        // SAFETY: mallopt only changes malloc's tuning parameters, under malloc's lock.
        unsafe { libc::mallopt(param, value) };
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod glibc {
    pub const MMAP_THRESHOLD: i32 = 0;
    pub const TRIM_THRESHOLD: i32 = 0;
    pub const TOP_PAD: i32 = 0;

    /// Another libc: nothing to set.
    pub fn set(_param: i32, _value: i32) {}
}
