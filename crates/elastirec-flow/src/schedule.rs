//! `elastirec schedule`: runs each night at a cron time in a time zone, catching up missed ones.
//!
//! Night N is *due* at the first firing of the cron expression after N ends (00:00 UTC of N+1).
//! At start and at every firing the scheduler runs every due night after the last one that
//! succeeded (with `catch_up`, oldest first; without, only the newest), under the lake's lease,
//! then sleeps until the next firing. A stop request (SIGTERM) ends it between steps. Time comes
//! from a [`Clock`], so tests drive it without sleeping.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use elastirec_core::Night;
use elastirec_core::config::ScheduleConfig;

use crate::cron::{Cron, CronError};
use crate::lease::Lease;
use crate::{Error, Pipeline, Result, RunOptions, StopFlag};

/// Where the scheduler gets the time and how it waits.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
    fn sleep_until(&self, t: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, t: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            // Sleep in bounded slices so a suspended laptop or a clock step is noticed.
            loop {
                let left = (t - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                if left.is_zero() {
                    return;
                }
                tokio::time::sleep(left.min(Duration::from_secs(60))).await;
            }
        })
    }
}

/// What one wake-up of the scheduler did.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    pub at: DateTime<Utc>,
    /// Nights run, with whether each succeeded.
    pub nights: Vec<(Night, bool)>,
    /// The next firing it will sleep until.
    pub next: Option<DateTime<Utc>>,
}

/// The scheduler of one lake.
pub struct Scheduler {
    pipeline: Pipeline,
    cron: Cron,
    tz: Tz,
    catch_up: bool,
    clock: Arc<dyn Clock>,
    on_tick: Box<dyn Fn(&Tick) + Send + Sync>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("cron", &self.cron.to_string())
            .field("tz", &self.tz)
            .finish()
    }
}

impl Scheduler {
    /// A scheduler for `pipeline` with `[schedule]` settings; the error names a bad setting.
    pub fn new(pipeline: Pipeline, config: &ScheduleConfig, clock: Arc<dyn Clock>) -> Result<Self> {
        let cron: Cron = config.cron.parse().map_err(|e: CronError| {
            Error::Config(format!(
                "[schedule] cron = '{}' is not a cron expression: {}",
                config.cron,
                e.reason()
            ))
        })?;
        let tz: Tz = config.timezone.parse().map_err(|_| {
            Error::Config(format!(
                "[schedule] timezone = '{}' is not an IANA time zone (such as UTC or \
                 Europe/Paris)",
                config.timezone
            ))
        })?;
        Ok(Scheduler {
            pipeline,
            cron,
            tz,
            catch_up: config.catch_up,
            clock,
            on_tick: Box::new(|_| {}),
        })
    }

    /// Calls `f` after every wake-up (for a log line).
    pub fn on_tick(mut self, f: impl Fn(&Tick) + Send + Sync + 'static) -> Self {
        self.on_tick = Box::new(f);
        self
    }

    /// When night `night` becomes due: the first firing after it ends.
    pub fn due_at(&self, night: Night) -> Option<DateTime<Utc>> {
        let end = DateTime::from_timestamp(night.next().start_unix_seconds(), 0)?;
        self.cron
            .next_after(end - chrono::Duration::seconds(1), self.tz)
    }

    /// The newest night due at `now`.
    pub fn last_due(&self, now: DateTime<Utc>) -> Option<Night> {
        let today = Night::new(now.date_naive());
        let mut n = today.minus_days(1);
        // Firings may lag a night's end by up to a day or so; look back a week at most.
        for _ in 0..8 {
            if self.due_at(n).is_some_and(|t| t <= now) {
                return Some(n);
            }
            n = n.minus_days(1);
        }
        None
    }

    /// One wake-up: runs the due nights, returns what it did.
    pub async fn tick(&self) -> Result<Tick> {
        let now = self.clock.now();
        let mut tick = Tick {
            at: now,
            nights: Vec::new(),
            next: self.cron.next_after(now, self.tz),
        };
        let Some(last_due) = self.last_due(now) else {
            return Ok(tick);
        };
        let mut nights = self.pipeline.missing_nights(last_due).await?;
        if !self.catch_up && nights.len() > 1 {
            nights = nights.split_off(nights.len() - 1);
        }
        if nights.is_empty() {
            return Ok(tick);
        }
        let lease = Lease::acquire(
            self.pipeline.lake(),
            &format!("schedule: nights {} to {}", nights[0], last_due),
            Duration::from_secs(self.pipeline.config().run.lease_seconds),
        )
        .await?;
        let keep = lease.keep_alive(self.pipeline.stop_flag().clone());
        let results = self
            .pipeline
            .run_nights(&nights, RunOptions::default(), false)
            .await;
        keep.released();
        lease.release().await?;
        for (night, result) in results {
            if let Err(e) = &result {
                tracing::error!(%night, error = %crate::pipeline::error_chain(e), "night failed");
            }
            tick.nights.push((night, result.is_ok()));
        }
        Ok(tick)
    }

    /// Runs until `stop` is raised: a tick at start, then one at every firing.
    pub async fn run(&self, stop: &StopFlag) -> Result<()> {
        loop {
            if stop.reason().is_some() {
                return Ok(());
            }
            let tick = match self.tick().await {
                Ok(t) => t,
                Err(e) if e.kind() == elastirec_core::ErrorKind::Transient => {
                    tracing::warn!(error = %crate::pipeline::error_chain(&e), "trying again at the next firing");
                    Tick {
                        at: self.clock.now(),
                        nights: Vec::new(),
                        next: self.cron.next_after(self.clock.now(), self.tz),
                    }
                }
                Err(e) => return Err(e),
            };
            (self.on_tick)(&tick);
            let Some(next) = tick.next else {
                return Err(Error::Config(format!(
                    "[schedule] cron = '{}' never fires again",
                    self.cron
                )));
            };
            tokio::select! {
                () = self.clock.sleep_until(next) => {}
                () = stop.raised() => return Ok(()),
            }
        }
    }
}
