//! What a night cost on an elastic machine, against an always-on warehouse and cluster.

use elastirec_core::config::CostConfig;
use elastirec_core::manifest::{NightCost, RunRecord};

/// Elastic machines are billed per second with a one-minute minimum (EC2's on-demand rule).
pub const MINIMUM_BILLED_SECONDS: f64 = 60.0;

/// The cost of the night in `record` at the prices of `config`.
pub fn night_cost(record: &RunRecord, config: &CostConfig) -> NightCost {
    let compute_seconds = record.compute_seconds();
    let cpu_seconds = record.steps.iter().filter_map(|s| s.cpu_seconds).sum();
    let billed = if compute_seconds > 0.0 {
        compute_seconds.max(MINIMUM_BILLED_SECONDS)
    } else {
        0.0
    };
    NightCost {
        compute_seconds,
        cpu_seconds,
        price_per_hour: config.price_per_hour,
        elastic_cost: billed / 3600.0 * config.price_per_hour,
        always_on_price_per_hour: config.always_on_price_per_hour,
        always_on_cost: 24.0 * config.always_on_price_per_hour,
        currency: config.currency.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, Utc};
    use elastirec_core::manifest::{StepRecord, StepState};

    #[test]
    fn billed_per_second_with_a_minimum() {
        let t0 = Utc::now();
        let step = |name: &str, from: i64, to: i64, cpu: f64| StepRecord {
            name: name.into(),
            state: StepState::Succeeded,
            started_at: Some(t0 + Duration::seconds(from)),
            ended_at: Some(t0 + Duration::seconds(to)),
            rows_in: None,
            rows_out: None,
            outcome: None,
            error_kind: None,
            attempt: 1,
            bytes_out: None,
            cpu_seconds: Some(cpu),
            peak_memory_bytes: None,
            job: None,
        };
        let mut record = RunRecord {
            night: "2024-01-05".parse().unwrap(),
            state: StepState::Succeeded,
            started_at: t0,
            ended_at: None,
            steps: vec![
                step("ingest", 0, 100, 150.0),
                step("train", 100, 460, 700.0),
            ],
            publish: None,
            cost: None,
            tuning: None,
        };
        let config = CostConfig {
            price_per_hour: 0.36,
            always_on_price_per_hour: 1.0,
            currency: "USD".into(),
        };
        let c = night_cost(&record, &config);
        assert_eq!(c.compute_seconds, 460.0);
        assert_eq!(c.cpu_seconds, 850.0);
        assert!((c.elastic_cost - 0.046).abs() < 1e-9, "{c:?}");
        assert_eq!(c.always_on_cost, 24.0);
        record.steps.truncate(1);
        record.steps[0].ended_at = Some(t0 + Duration::seconds(10));
        let c = night_cost(&record, &config);
        assert!(
            (c.elastic_cost - 0.006).abs() < 1e-9,
            "one minute at least: {c:?}"
        );
    }
}
