//! Request counts, a latency histogram per route, rows served and the model night, as
//! Prometheus text (`GET /metrics`).
//!
//! Routes are labelled by their pattern (`/v1/users/{id}/recommendations`), never by the raw
//! path, so the number of series stays fixed; requests that match no route count as `unmatched`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::snapshot::Snapshot;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

#[derive(Debug, Default)]
struct RouteStats {
    by_status: BTreeMap<u16, u64>,
    /// Cumulative counts are computed when rendering; these are per bucket (last: +Inf).
    buckets: [u64; BUCKETS.len() + 1],
    seconds: f64,
    count: u64,
}

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<String, RouteStats>>,
    rows_served: AtomicU64,
    swaps: AtomicU64,
}

impl Metrics {
    /// Counts one finished request.
    pub fn observe(&self, route: &str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        let Ok(mut routes) = self.routes.lock() else {
            return;
        };
        if !routes.contains_key(route) {
            routes.insert(route.to_string(), RouteStats::default());
        }
        let Some(stats) = routes.get_mut(route) else {
            return;
        };
        *stats.by_status.entry(status).or_default() += 1;
        stats.buckets[bucket] += 1;
        stats.seconds += secs;
        stats.count += 1;
    }

    /// Counts recommendation rows returned to clients.
    pub fn served_rows(&self, n: usize) {
        self.rows_served.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts a snapshot swap.
    pub fn swapped(&self) {
        self.swaps.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests counted for a route and status so far.
    pub fn requests(&self, route: &str, status: u16) -> u64 {
        self.routes
            .lock()
            .ok()
            .and_then(|r| r.get(route).and_then(|s| s.by_status.get(&status).copied()))
            .unwrap_or(0)
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self, snapshot: Option<&Snapshot>) -> String {
        let mut out = String::new();
        out.push_str("# HELP elastirec_http_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE elastirec_http_requests_total counter\n");
        let routes = match self.routes.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        for (route, s) in routes.iter() {
            for (status, n) in &s.by_status {
                let _ = writeln!(
                    out,
                    "elastirec_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP elastirec_http_request_duration_seconds Time to answer a request.\n");
        out.push_str("# TYPE elastirec_http_request_duration_seconds histogram\n");
        for (route, s) in routes.iter() {
            let mut cumulative = 0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += s.buckets[i];
                let _ = writeln!(
                    out,
                    "elastirec_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "elastirec_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "elastirec_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                s.seconds
            );
            let _ = writeln!(
                out,
                "elastirec_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                s.count
            );
        }
        drop(routes);
        out.push_str("# HELP elastirec_rows_served_total Recommended items returned to clients.\n");
        out.push_str("# TYPE elastirec_rows_served_total counter\n");
        let _ = writeln!(
            out,
            "elastirec_rows_served_total {}",
            self.rows_served.load(Ordering::Relaxed)
        );
        out.push_str("# HELP elastirec_snapshot_swaps_total Nights swapped in since start.\n");
        out.push_str("# TYPE elastirec_snapshot_swaps_total counter\n");
        let _ = writeln!(
            out,
            "elastirec_snapshot_swaps_total {}",
            self.swaps.load(Ordering::Relaxed)
        );
        out.push_str("# HELP elastirec_model_info The night being served (value 1).\n");
        out.push_str("# TYPE elastirec_model_info gauge\n");
        out.push_str(
            "# HELP elastirec_model_users Users with a stored list in the night served.\n",
        );
        out.push_str("# TYPE elastirec_model_users gauge\n");
        out.push_str(
            "# HELP elastirec_model_generated_timestamp_seconds When the served lists were written.\n",
        );
        out.push_str("# TYPE elastirec_model_generated_timestamp_seconds gauge\n");
        if let Some(s) = snapshot {
            let _ = writeln!(out, "elastirec_model_info{{night=\"{}\"}} 1", s.night());
            let _ = writeln!(out, "elastirec_model_users {}", s.users());
            let _ = writeln!(
                out,
                "elastirec_model_generated_timestamp_seconds {}",
                s.generated_at.timestamp()
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_counts_statuses() {
        let m = Metrics::default();
        m.observe("/a", 200, Duration::from_micros(50));
        m.observe("/a", 200, Duration::from_millis(3));
        m.observe("/a", 404, Duration::from_secs(5));
        m.served_rows(10);
        let text = m.render(None);
        assert!(text.contains("elastirec_http_requests_total{route=\"/a\",status=\"200\"} 2"));
        assert!(text.contains("elastirec_http_requests_total{route=\"/a\",status=\"404\"} 1"));
        assert!(
            text.contains("_bucket{route=\"/a\",le=\"0.0001\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("_bucket{route=\"/a\",le=\"0.005\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("_bucket{route=\"/a\",le=\"1\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("_bucket{route=\"/a\",le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("elastirec_rows_served_total 10"));
        assert_eq!(m.requests("/a", 200), 2);
    }
}
