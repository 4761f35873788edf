//! What the server holds: the lake, the current snapshot, the token and the metrics.
//!
//! The current [`Snapshot`] sits in an [`ArcSwapOption`]: [`Served::refresh`] builds the new one
//! completely, then replaces the pointer in one atomic store. A request takes one `Arc` at its
//! start and keeps it to the end, so it sees either the old night or the new one, never a mix;
//! the old snapshot is freed when its last request finishes.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use arc_swap::ArcSwapOption;

use elastirec_core::Lake;

use crate::Result;
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

/// Shared state of one server.
#[derive(Debug)]
pub struct Served {
    lake: Lake,
    current: ArcSwapOption<Snapshot>,
    token: Option<String>,
    /// Why the last reload failed, if it did (cleared by a good one).
    last_error: Mutex<Option<String>>,
    pub metrics: Metrics,
}

impl Served {
    /// A server over `lake`; nothing is loaded until [`Served::refresh`].
    pub fn new(lake: Lake, token: Option<String>) -> Arc<Served> {
        Arc::new(Served {
            lake,
            current: ArcSwapOption::empty(),
            token,
            last_error: Mutex::new(None),
            metrics: Metrics::default(),
        })
    }

    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// The bearer token requests must carry, if one is set.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The snapshot requests are served from now.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    /// Why the last reload failed, if the last one did.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Reads `_LATEST` and, when it names another publication than the one served, loads it and
    /// swaps it in. Returns whether it swapped.
    pub async fn refresh(&self) -> Result<bool> {
        let result = self.try_refresh().await;
        if let Ok(mut last) = self.last_error.lock() {
            *last = result.as_ref().err().map(|e| e.to_string());
        }
        result
    }

    async fn try_refresh(&self) -> Result<bool> {
        let Some(pointer) = elastirec_lake::read_latest(&self.lake).await? else {
            return Ok(false);
        };
        if self
            .current
            .load_full()
            .is_some_and(|s| s.pointer == pointer)
        {
            return Ok(false);
        }
        let night = pointer.night;
        let started = std::time::Instant::now();
        let next = Snapshot::load(&self.lake, pointer).await?;
        let users = next.users();
        self.current.store(Some(Arc::new(next)));
        self.metrics.swapped();
        tracing::info!(
            %night,
            users,
            seconds = started.elapsed().as_secs_f64(),
            "serving a new night"
        );
        Ok(true)
    }

    /// Refreshes every `every` until the process ends; a failed reload keeps the night served.
    pub async fn poll(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "reloading recommendations failed; serving the previous night");
            }
        }
    }
}
