//! Allocator settings for tensor work.
//!
//! A training step allocates and frees hundreds of tensors of a few megabytes each.
//! glibc's malloc serves such sizes with fresh `mmap`s and unmaps them on `free`, so every
//! op pays for the kernel to fault in and zero its output's pages again: a fifth of a LoRA
//! DPO step was spent there (perf, 2-core Xeon). Serving them from the heap and not
//! trimming it keeps freed memory for the next op; peak memory is unchanged.

/// Tune the process's allocator for tensor work. Call once, first thing in `main`; a
/// no-op where the C library is not glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets two of glibc's allocation thresholds; it is called at
    // start-up, before other threads allocate.
    unsafe {
        // 32 MiB is the largest mmap threshold glibc accepts on 64-bit targets.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// Give the memory the allocator keeps (see [`keep_freed_memory`]) back to the system:
/// between phases, when a phase's tensors are gone and the next phase would otherwise
/// start from the last one's high-water mark. A no-op where the C library is not glibc.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only returns free heap pages to the kernel; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}
