//! What a step cost the process: CPU time and peak memory, from `getrusage`.

/// CPU time and peak resident memory of this process so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// User + system CPU seconds of all threads.
    pub cpu_seconds: f64,
    /// Peak resident set size (the kernel's VmHWM), in bytes.
    pub peak_rss_bytes: u64,
}

impl Usage {
    /// The process's usage now; zeros where the platform cannot tell.
    pub fn now() -> Usage {
        // SAFETY: getrusage writes into the zeroed struct we own and reads nothing else.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
        if rc != 0 {
            return Usage::default();
        }
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Usage {
            cpu_seconds: secs(ru.ru_utime) + secs(ru.ru_stime),
            // Linux reports ru_maxrss in KiB.
            peak_rss_bytes: (ru.ru_maxrss.max(0) as u64) * 1024,
        }
    }

    /// CPU seconds spent since `earlier`.
    pub fn cpu_since(&self, earlier: &Usage) -> f64 {
        (self.cpu_seconds - earlier.cpu_seconds).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_grows_with_work_and_memory_is_reported() {
        let before = Usage::now();
        let mut x = 0u64;
        for i in 0..30_000_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = Usage::now();
        assert!(after.cpu_since(&before) > 0.0, "{before:?} {after:?}");
        assert!(after.peak_rss_bytes > 1 << 20, "{after:?}");
    }
}
