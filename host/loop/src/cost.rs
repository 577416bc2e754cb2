//! What a phase cost: its wall time and the peak resident memory of the process while it
//! ran, recorded with its file in the phase index and per iteration in `metrics.jsonl`.
//!
//! The peak is the kernel's high-water mark (`VmHWM` of `/proc/self/status`), reset when
//! a phase starts by writing `5` to `/proc/self/clear_refs` (Linux 4.0+), so each phase
//! reports its own peak, allocator retention included. Elsewhere only the time is known.
//! A side effect: a tool that reads the process's peak when it exits (`/usr/bin/time -v`)
//! sees the peak since the last phase began; the run's peak is the largest phase peak.

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// The cost of one phase, as far as the process that computed it saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    pub seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<f64>,
}

/// Measures one phase from [`Meter::start`] to [`Meter::stop`].
pub struct Meter {
    started: Instant,
}

impl Meter {
    /// Start measuring: the time, and the memory high-water mark from now on.
    pub fn start() -> Meter {
        // Resetting may be refused (another OS, a locked-down /proc): the peak then covers
        // the process's whole life so far, which is still an upper bound.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        Meter { started: Instant::now() }
    }

    pub fn stop(self) -> Cost {
        Cost { seconds: self.started.elapsed().as_secs_f64(), peak_rss_mib: peak_rss_mib() }
    }
}

/// The process's peak resident memory in MiB, where the OS says.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn a_phase_sees_its_own_peak() {
        let before = Meter::start();
        let big = vec![1u8; 256 << 20];
        std::hint::black_box(&big);
        drop(big);
        let with = before.stop().peak_rss_mib.unwrap();
        let after = Meter::start().stop().peak_rss_mib.unwrap();
        assert!(with >= 256.0, "the 256 MiB buffer is in the first peak: {with}");
        assert!(after < with - 128.0, "the reset forgets it: {after} after {with}");
    }
}
