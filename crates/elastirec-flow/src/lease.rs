//! The lease that keeps two runs from writing one lake at once.
//!
//! The lease is a sequence of create-only objects `runs/_lease/EPOCH.json`. The newest epoch
//! says who holds the lake until when. To take the lease a runner creates the next epoch; a
//! create-only put succeeds for exactly one of two racing runners. The holder renews by
//! creating the following epoch (the local store of `object_store` supports create-only puts
//! but not conditional overwrites), and releases by creating one marked released. A holder that
//! crashed stops renewing, so its lease expires; on the same host a holder whose process is gone
//! is recognised at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use elastirec_core::{Lake, layout};

use crate::{Error, Result, StopFlag};

/// The content of one lease epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseState {
    pub epoch: u64,
    /// `host:pid:token` of the holder.
    pub owner: String,
    pub host: String,
    pub pid: u32,
    /// What the holder is doing (`run 2024-01-05`).
    pub purpose: String,
    pub acquired_at: DateTime<Utc>,
    pub renewed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub released: bool,
}

impl LeaseState {
    fn is_free(&self, now: DateTime<Utc>) -> bool {
        self.released || self.expires_at <= now || self.holder_is_gone()
    }

    /// True when the holder ran on this host and its process no longer exists.
    fn holder_is_gone(&self) -> bool {
        if self.host != hostname() || !std::path::Path::new("/proc/self").exists() {
            return false;
        }
        !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "{} (pid {} on {}, {}, since {}, last heartbeat {}, expires {})",
            self.owner,
            self.pid,
            self.host,
            self.purpose,
            self.acquired_at.format("%Y-%m-%d %H:%M:%S UTC"),
            self.renewed_at.format("%H:%M:%S"),
            self.expires_at.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

/// The newest lease epoch of a lake, if any.
pub async fn current(lake: &Lake) -> Result<Option<LeaseState>> {
    let newest = lake
        .list(&layout::run_lease())
        .await?
        .iter()
        .filter_map(|m| layout::run_lease_epoch_of(&m.location))
        .max();
    match newest {
        None => Ok(None),
        Some(epoch) => Ok(lake
            .get_json(&layout::run_lease_epoch(epoch), "lease")
            .await?),
    }
}

/// A held lease; renew it with [`Lease::keep_alive`] and give it back with [`Lease::release`].
#[derive(Debug)]
pub struct Lease {
    lake: Lake,
    state: std::sync::Mutex<LeaseState>,
    epoch: AtomicU64,
    ttl: Duration,
    lost: Arc<AtomicBool>,
}

impl Lease {
    /// Takes the lease of `lake` for `ttl`, or fails naming the holder.
    pub async fn acquire(lake: &Lake, purpose: &str, ttl: Duration) -> Result<Arc<Lease>> {
        let host = hostname();
        let pid = std::process::id();
        let token: u32 = rand_token();
        let owner = format!("{host}:{pid}:{token:08x}");
        let now = Utc::now();
        let newest = current(lake).await?;
        if let Some(held) = &newest
            && !held.is_free(now)
        {
            return Err(Error::Busy {
                holder: held.describe(),
            });
        }
        let epoch = newest.as_ref().map_or(1, |c| c.epoch + 1);
        let state = LeaseState {
            epoch,
            owner,
            host,
            pid,
            purpose: purpose.to_string(),
            acquired_at: now,
            renewed_at: now,
            expires_at: now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX),
            released: false,
        };
        if !lake
            .put_json_create(&layout::run_lease_epoch(epoch), &state)
            .await?
        {
            // Another runner created this epoch between our read and our write.
            let holder = current(lake)
                .await?
                .map_or_else(|| "another runner".to_string(), |s| s.describe());
            return Err(Error::Busy { holder });
        }
        tracing::info!(epoch, owner = %state.owner, "took the lake's lease");
        Ok(Arc::new(Lease {
            lake: lake.clone(),
            epoch: AtomicU64::new(epoch),
            state: std::sync::Mutex::new(state),
            ttl,
            lost: Arc::new(AtomicBool::new(false)),
        }))
    }

    /// The current state of the lease as this holder last wrote it.
    pub fn state(&self) -> LeaseState {
        self.state
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// True once a renewal found that another runner took the lease.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    async fn write_next(&self, released: bool) -> Result<bool> {
        let mut next = self.state();
        let now = Utc::now();
        next.epoch = self.epoch.load(Ordering::SeqCst) + 1;
        next.renewed_at = now;
        next.expires_at =
            now + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::MAX);
        next.released = released;
        let created = self
            .lake
            .put_json_create(&layout::run_lease_epoch(next.epoch), &next)
            .await?;
        if !created {
            return Ok(false);
        }
        let old = self.epoch.swap(next.epoch, Ordering::SeqCst);
        if let Ok(mut s) = self.state.lock() {
            *s = next;
        }
        // Epochs before the previous one are history nobody reads; removing them is best-effort.
        if old > 1 {
            let _ = self.lake.delete(&layout::run_lease_epoch(old - 1)).await;
        }
        Ok(true)
    }

    /// Writes the next epoch; if one exists already, it may be this holder's own (a renewal
    /// cancelled after its write): then moves past it. `false` when another runner holds it.
    async fn advance(&self, released: bool) -> Result<bool> {
        for _ in 0..4 {
            if self.write_next(released).await? {
                return Ok(true);
            }
            match current(&self.lake).await? {
                Some(s) if s.owner == self.state().owner && !s.released => {
                    self.epoch.store(s.epoch, Ordering::SeqCst);
                }
                _ => break,
            }
        }
        self.lost.store(true, Ordering::SeqCst);
        Ok(false)
    }

    /// Extends the lease by its time to live; `Busy` when another runner took it.
    pub async fn renew(&self) -> Result<()> {
        if self.advance(false).await? {
            return Ok(());
        }
        let holder = current(&self.lake)
            .await?
            .map_or_else(|| "another runner".to_string(), |s| s.describe());
        Err(Error::Busy { holder })
    }

    /// Renews the lease every third of its time to live until dropped, and keeps `stop`'s
    /// [`StopFlag::fence`] up to date. If a renewal finds the lease taken, or renewals fail
    /// until the lease has expired, raises `stop` (the run ends before its next step) and
    /// closes the fence (writes already under way are refused).
    pub fn keep_alive(self: &Arc<Self>, stop: StopFlag) -> KeepAlive {
        let lease = Arc::clone(self);
        let period = (self.ttl / 3).max(Duration::from_millis(500));
        stop.hold_lease(&self.state());
        let flag = stop.clone();
        let handle = tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                match lease.renew().await {
                    Ok(()) => stop.hold_lease(&lease.state()),
                    Err(Error::Busy { holder }) => {
                        tracing::error!(%holder, "lost the lake's lease; stopping before the next step");
                        stop.lease_lost(format!("lost the lake's lease to {holder}"));
                        return;
                    }
                    Err(e) => {
                        let expires = lease.state().expires_at;
                        if Utc::now() >= expires {
                            tracing::error!(error = %e, "the lake's lease expired: renewals failed");
                            lease.lost.store(true, Ordering::SeqCst);
                            stop.lease_lost(format!(
                                "the lake's lease expired at {} because renewals failed ({e})",
                                expires.format("%H:%M:%S UTC")
                            ));
                            return;
                        }
                        tracing::warn!(error = %e, "could not renew the lake's lease; will retry")
                    }
                }
            }
        });
        KeepAlive { handle, stop: flag }
    }

    /// Gives the lease back so the next runner need not wait for it to expire.
    pub async fn release(&self) -> Result<()> {
        if self.is_lost() {
            return Ok(());
        }
        self.advance(true).await.map(|_| ())
    }
}

/// Renews a lease in the background while it lives.
#[derive(Debug)]
pub struct KeepAlive {
    handle: tokio::task::JoinHandle<()>,
    stop: StopFlag,
}

impl Drop for KeepAlive {
    /// Renewals end; the fence keeps the last state until it expires (a lease dropped without
    /// [`KeepAlive::released`] is a holder that stopped renewing).
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl KeepAlive {
    /// Stops renewing after the lease was given back: the fence opens (no lease involved).
    pub fn released(self) {
        self.stop.drop_lease();
    }
}

fn rand_token() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() as u32
}
