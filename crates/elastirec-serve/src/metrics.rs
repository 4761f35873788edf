//! Request counts, a latency histogram per route, rows served and the model night, in the
//! OpenMetrics text format (`GET /metrics`), kept and encoded by `prometheus-client`.
//!
//! Routes are labelled by their pattern (`/v1/users/{id}/recommendations`), never by the raw
//! path, so the number of series stays fixed; requests that match no route count as `unmatched`.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::snapshot::Snapshot;

/// The media type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NightLabels {
    night: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The server's counters.
#[derive(Debug)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram, fn() -> Histogram>,
    rows_served: Counter,
    swaps: Counter,
    model_info: Family<NightLabels, Gauge>,
    model_users: Gauge,
    model_generated: Gauge,
    /// The registry is only read to encode; the lock keeps two scrapes from interleaving
    /// their updates of the model gauges.
    registry: Mutex<Registry>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let requests = Family::<RequestLabels, Counter>::default();
        let durations = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let rows_served = Counter::default();
        let swaps = Counter::default();
        let model_info = Family::<NightLabels, Gauge>::default();
        let model_users = Gauge::default();
        let model_generated = Gauge::default();
        let mut registry = Registry::default();
        registry.register(
            "elastirec_http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "elastirec_http_request_duration_seconds",
            "Time to answer a request",
            durations.clone(),
        );
        registry.register(
            "elastirec_rows_served",
            "Recommended items returned to clients",
            rows_served.clone(),
        );
        registry.register(
            "elastirec_snapshot_swaps",
            "Nights swapped in since start",
            swaps.clone(),
        );
        registry.register(
            "elastirec_model_info",
            "The night being served (value 1)",
            model_info.clone(),
        );
        registry.register(
            "elastirec_model_users",
            "Users with a stored list in the night served",
            model_users.clone(),
        );
        registry.register(
            "elastirec_model_generated_timestamp_seconds",
            "When the served lists were written",
            model_generated.clone(),
        );
        Metrics {
            requests,
            durations,
            rows_served,
            swaps,
            model_info,
            model_users,
            model_generated,
            registry: Mutex::new(registry),
        }
    }
}

impl Metrics {
    /// Counts one finished request.
    pub fn observe(&self, route: &str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_string(),
                status,
            })
            .inc();
        self.durations
            .get_or_create(&RouteLabels {
                route: route.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts recommendation rows returned to clients.
    pub fn served_rows(&self, n: usize) {
        self.rows_served.inc_by(n as u64);
    }

    /// Counts a snapshot swap.
    pub fn swapped(&self) {
        self.swaps.inc();
    }

    /// Requests counted for a route and status so far.
    pub fn requests(&self, route: &str, status: u16) -> u64 {
        self.requests
            .get(&RequestLabels {
                route: route.to_string(),
                status,
            })
            .map(|c| c.get())
            .unwrap_or(0)
    }

    /// The OpenMetrics text exposition of every counter ([`CONTENT_TYPE`]); the model gauges
    /// describe `snapshot`, and are absent while no night is served.
    pub fn render(&self, snapshot: Option<&Snapshot>) -> String {
        let registry = match self.registry.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        self.model_info.clear();
        match snapshot {
            Some(s) => {
                self.model_info
                    .get_or_create(&NightLabels {
                        night: s.night().to_string(),
                    })
                    .set(1);
                self.model_users
                    .set(i64::try_from(s.users()).unwrap_or(i64::MAX));
                self.model_generated.set(s.generated_at.timestamp());
            }
            None => {
                self.model_users.set(0);
                self.model_generated.set(0);
            }
        }
        let mut out = String::new();
        // Writing into a String cannot fail; the encoder's error type is fmt's.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
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
        m.swapped();
        let text = m.render(None);
        assert!(
            text.contains("elastirec_http_requests_total{route=\"/a\",status=\"200\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("elastirec_http_requests_total{route=\"/a\",status=\"404\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("_bucket{le=\"0.0001\",route=\"/a\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("_bucket{le=\"0.005\",route=\"/a\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("_bucket{le=\"1.0\",route=\"/a\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("_bucket{le=\"+Inf\",route=\"/a\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("elastirec_http_request_duration_seconds_count{route=\"/a\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("elastirec_rows_served_total 10\n"), "{text}");
        assert!(
            text.contains("elastirec_snapshot_swaps_total 1\n"),
            "{text}"
        );
        assert!(!text.contains("elastirec_model_info{"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(m.requests("/a", 200), 2);
        assert_eq!(m.requests("/a", 500), 0);
    }
}
