//! Sizing the compute thread pool.
//!
//! candle's CPU kernels run on rayon's global pool and size their gemm calls from
//! `RAYON_NUM_THREADS`; both must agree or matmuls oversubscribe the machine. Measured on
//! 2-core machines: two threads on a loaded machine are slower than one.

use std::sync::OnceLock;

static CHOSEN: OnceLock<usize> = OnceLock::new();

/// Cores not already busy: available parallelism minus the 1-minute load average
/// (rounded), at least 1.
pub fn free_cores() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|l| l.parse::<f64>().ok()))
        .unwrap_or(0.0);
    cores.saturating_sub(load.round() as usize).clamp(1, cores)
}

/// Fix the number of compute threads for this process (`None`: the free cores). Only the
/// first call decides; later calls return the number already in force.
pub fn set_threads(requested: Option<usize>) -> usize {
    *CHOSEN.get_or_init(|| {
        let n = requested.filter(|&n| n > 0).unwrap_or_else(free_cores);
        // SAFETY: called before the engine starts any thread (the first call wins, and the
        // engine calls it before loading a model); candle reads this variable per matmul.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
        if let Err(e) = rayon::ThreadPoolBuilder::new().num_threads(n).build_global() {
            tracing::debug!("rayon's pool was already built: {e}");
        }
        tracing::info!(threads = n, "compute threads");
        n
    })
}

/// The thread count in force (setting the default if none was chosen yet).
pub fn threads() -> usize {
    set_threads(None)
}
