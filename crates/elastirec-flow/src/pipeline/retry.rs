//! Running one step under its run record: each attempt is recorded (state, rows, CPU time,
//! peak memory), and transient failures are retried up to `[run] max_attempts`, waiting an
//! exponential backoff with full jitter between attempts.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::Utc;

use elastirec_core::manifest::{RunRecord, StepState};
use elastirec_core::rng::SplitMix64;
use elastirec_core::{Night, failpoint};

use super::{Outcome, Progress, Step, error_chain, new_step_record};
use crate::resources::Usage;
use crate::{Error, Pipeline, Result, StopFlag};

/// The waits between the attempts of one step: exponential backoff with "full jitter" (the
/// retry after `n` earlier retries waits a uniform random time in
/// `[0, min(cap, base · 2^n)]`), so runners that failed together do not retry together.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    base: Duration,
    cap: Duration,
    retries: u32,
    rng: SplitMix64,
}

impl Backoff {
    /// Waits drawn from `rng` (a fixed seed gives the same waits every time).
    pub(crate) fn new(base: Duration, cap: Duration, rng: SplitMix64) -> Self {
        Backoff {
            base,
            cap,
            retries: 0,
            rng,
        }
    }

    /// Waits drawn from a generator seeded by the clock (and a counter, so two steps that start
    /// in the same nanosecond still draw differently).
    pub(crate) fn seeded_by_time(base: Duration, cap: Duration) -> Self {
        static STREAM: AtomicU64 = AtomicU64::new(0);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let seed = now ^ (u64::from(std::process::id()) << 32);
        let stream = STREAM.fetch_add(1, Ordering::Relaxed);
        Backoff::new(base, cap, SplitMix64::stream(seed, stream))
    }

    /// The longest the next wait can be: `min(cap, base · 2^retries)`.
    pub(crate) fn ceiling(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.retries);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The wait before the next attempt (whole milliseconds, the unit of the settings).
    pub(crate) fn next_wait(&mut self) -> Duration {
        let ceiling_ms = u64::try_from(self.ceiling().as_millis()).unwrap_or(u64::MAX);
        self.retries = self.retries.saturating_add(1);
        Duration::from_millis(self.rng.below(ceiling_ms.saturating_add(1)))
    }
}

/// Sleeps for `wait` unless `stop` is raised first; returns whether the whole wait passed.
pub(crate) async fn wait_unless_stopped(wait: Duration, stop: &StopFlag) -> bool {
    tokio::select! {
        () = tokio::time::sleep(wait) => stop.reason().is_none(),
        () = stop.raised() => false,
    }
}

impl Pipeline {
    /// Runs one step under the run record of `night`: marks it running, retries transient
    /// failures after a jittered exponential backoff, then records it succeeded (or skipped, or
    /// held) or failed, with its CPU time and the process's peak memory. A stop request (SIGTERM,
    /// a lost lease) ends a backoff wait at once and stops the night instead of retrying
    /// ([`Error::Interrupted`]: the night stays pending and the next run retries the step).
    pub(crate) async fn recorded<T, F, Fut>(
        &self,
        night: Night,
        step: Step,
        record: &mut RunRecord,
        work: F,
        describe: impl Fn(&T) -> Outcome,
    ) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let first_attempt = record.step(step.name()).map_or(1, |s| s.attempt + 1);
        let run = &self.config.run;
        let mut attempt = first_attempt;
        let mut backoff = Backoff::seeded_by_time(
            Duration::from_millis(run.backoff_initial_ms),
            Duration::from_millis(run.backoff_max_ms),
        );
        loop {
            let mut step_record = new_step_record(step, attempt);
            self.ledger.update_step(record, step_record.clone()).await?;
            (self.progress)(&Progress::StepStarted {
                night,
                step,
                attempt,
            });
            failpoint::hit(&format!("{step}.before"));
            let usage = Usage::now();
            // A runner that lost the lake's lease does not start a step (see StopFlag::fence_on).
            let result = match self.stop.fence_on(&self.lake).await {
                Ok(_) => work().await,
                Err(e) => Err(e),
            };
            if result.is_ok() {
                failpoint::hit(&format!("{step}.done"));
            }
            let after = Usage::now();
            step_record.ended_at = Some(Utc::now());
            step_record.cpu_seconds = Some(after.cpu_since(&usage));
            step_record.peak_memory_bytes = Some(after.peak_rss_bytes);
            match &result {
                Ok(value) => {
                    let o = describe(value);
                    step_record.state = o.state;
                    step_record.rows_in = o.rows_in;
                    step_record.rows_out = o.rows_out;
                    step_record.bytes_out = o.bytes_out;
                    step_record.outcome = Some(o.message);
                    step_record.job = o.job;
                }
                Err(e) => {
                    step_record.state = StepState::Failed;
                    step_record.outcome = Some(error_chain(e));
                    step_record.error_kind = Some(e.kind().as_str().into());
                    step_record.job = e.job().cloned();
                }
            }
            self.ledger.update_step(record, step_record.clone()).await?;
            (self.progress)(&Progress::StepFinished {
                night,
                record: Box::new(step_record.clone()),
            });
            match result {
                Ok(value) => return Ok(value),
                Err(e)
                    if e.kind() == elastirec_core::ErrorKind::Transient
                        && attempt + 1 - first_attempt < run.max_attempts =>
                {
                    if let Some(reason) = self.stop.reason() {
                        return Err(Error::Interrupted {
                            night,
                            step,
                            reason,
                        });
                    }
                    let wait = backoff.next_wait();
                    (self.progress)(&Progress::StepRetry {
                        night,
                        step,
                        attempt: attempt + 1,
                        wait,
                        error: error_chain(&e),
                    });
                    tracing::warn!(%night, %step, attempt, error = %error_chain(&e), ?wait, "transient failure; retrying");
                    if !wait_unless_stopped(wait, &self.stop).await {
                        let reason = self.stop.reason().unwrap_or_default();
                        tracing::warn!(%night, %step, %reason, "stopped while waiting to retry");
                        return Err(Error::Interrupted {
                            night,
                            step,
                            reason,
                        });
                    }
                    attempt += 1;
                }
                Err(e) => {
                    return Err(Error::Step {
                        night,
                        step,
                        source: Box::new(e),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn full_jitter_waits_stay_under_the_doubling_ceiling_and_vary() {
        let (base, cap) = (ms(100), ms(1_000));
        for seed in 0..50 {
            let mut b = Backoff::new(base, cap, SplitMix64::new(seed));
            let waits: Vec<Duration> = (0..8).map(|_| b.next_wait()).collect();
            let ceilings = [100, 200, 400, 800, 1_000, 1_000, 1_000, 1_000];
            for (wait, ceiling) in waits.iter().zip(ceilings) {
                assert!(*wait <= ms(ceiling), "seed {seed}: {waits:?}");
            }
            assert!(waits.windows(2).any(|w| w[0] != w[1]), "{waits:?}");
        }
        // Many draws of one retry cover the range: not all equal, spread from 0 to the ceiling.
        let draws: Vec<Duration> = (0..1_000)
            .map(|seed| Backoff::new(base, cap, SplitMix64::new(seed)).next_wait())
            .collect();
        assert!(draws.iter().all(|w| *w <= base));
        assert!(draws.iter().any(|w| *w < ms(10)), "some near 0");
        assert!(draws.iter().any(|w| *w > ms(90)), "some near the ceiling");
        let mean = draws.iter().map(Duration::as_secs_f64).sum::<f64>() / draws.len() as f64;
        assert!(
            (mean - 0.05).abs() < 0.005,
            "mean {mean} s, expected about 0.05 s"
        );
    }

    #[test]
    fn a_seed_gives_the_same_waits_and_the_clock_seeds_differ() {
        let waits = |b: &mut Backoff| (0..6).map(|_| b.next_wait()).collect::<Vec<_>>();
        let new = || Backoff::new(ms(1_000), ms(60_000), SplitMix64::new(42));
        assert_eq!(waits(&mut new()), waits(&mut new()));
        let timed = || Backoff::seeded_by_time(ms(1_000), ms(60_000));
        assert_ne!(waits(&mut timed()), waits(&mut timed()));
    }

    #[test]
    fn edge_settings() {
        // No base wait: retries at once.
        let mut b = Backoff::new(Duration::ZERO, ms(60_000), SplitMix64::new(1));
        assert!((0..10).all(|_| b.next_wait() == Duration::ZERO));
        // A cap below the base wins; many retries do not overflow.
        let mut b = Backoff::new(ms(5_000), ms(1_000), SplitMix64::new(2));
        assert!((0..100).all(|_| b.next_wait() <= ms(1_000)));
        assert_eq!(b.ceiling(), ms(1_000));
        let mut b = Backoff::new(ms(u64::MAX), Duration::MAX, SplitMix64::new(3));
        assert!((0..40).all(|_| b.next_wait() <= Duration::MAX));
    }

    #[test]
    fn a_stop_request_ends_the_wait_early() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let stop = StopFlag::new();
            assert!(
                wait_unless_stopped(ms(1), &stop).await,
                "a short wait passes"
            );
            let raiser = stop.clone();
            tokio::spawn(async move {
                tokio::time::sleep(ms(20)).await;
                raiser.raise("SIGTERM");
            });
            let started = std::time::Instant::now();
            assert!(!wait_unless_stopped(Duration::from_secs(60), &stop).await);
            assert!(started.elapsed() < Duration::from_secs(10));
            // Already raised: no wait at all.
            assert!(!wait_unless_stopped(Duration::from_secs(60), &stop).await);
        });
    }
}
