//! The scheduler under a fake clock: after three missed nights it runs them in order, then waits.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use elastirec_core::config::ScheduleConfig;
use elastirec_core::manifest::StepState;
use elastirec_flow::StopFlag;
use elastirec_flow::schedule::{Clock, Scheduler};

use crate::{lake, night, pipeline, simulate_days};

/// A clock that jumps to whatever time the scheduler sleeps until, and stops it after `wakes`.
struct FakeClock {
    now: Mutex<DateTime<Utc>>,
    slept_until: Mutex<Vec<DateTime<Utc>>>,
    wakes: usize,
    stop: StopFlag,
}

impl Clock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap()
    }

    fn sleep_until(&self, t: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let mut slept = self.slept_until.lock().unwrap();
        slept.push(t);
        if slept.len() > self.wakes {
            self.stop.raise("test over");
        } else {
            *self.now.lock().unwrap() = t;
        }
        Box::pin(async {})
    }
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_up_missed_nights_in_order_then_waits() {
    let (_dir, lake) = lake().await;
    simulate_days(&lake, 5).await;
    let p = pipeline(&lake);
    p.run(night("2024-01-01")).await.unwrap();

    // Down since night 1; it is now 03:00 on 01-05, past 02:30 when night 01-04 became due.
    let stop = StopFlag::new();
    let clock = Arc::new(FakeClock {
        now: Mutex::new(utc("2024-01-05T03:00:00Z")),
        slept_until: Mutex::new(Vec::new()),
        wakes: 1,
        stop: stop.clone(),
    });
    let ticks = Arc::new(Mutex::new(Vec::new()));
    let seen = ticks.clone();
    let config = ScheduleConfig::default();
    let scheduler = Scheduler::new(p.clone(), &config, clock.clone())
        .unwrap()
        .on_tick(move |t| seen.lock().unwrap().push(t.clone()));
    assert_eq!(
        scheduler.due_at(night("2024-01-04")),
        Some(utc("2024-01-05T02:30:00Z"))
    );
    scheduler.run(&stop).await.unwrap();

    let ticks = ticks.lock().unwrap().clone();
    assert_eq!(ticks.len(), 2, "{ticks:?}");
    let ran = |i: usize| -> Vec<String> {
        ticks[i]
            .nights
            .iter()
            .map(|(n, ok)| {
                assert!(ok, "night {n} failed");
                n.to_string()
            })
            .collect()
    };
    assert_eq!(ran(0), ["2024-01-02", "2024-01-03", "2024-01-04"]);
    assert_eq!(ticks[0].next, Some(utc("2024-01-06T02:30:00Z")));
    // Night 01-05 waited for its own time, then ran.
    assert_eq!(ran(1), ["2024-01-05"]);
    assert_eq!(
        clock.slept_until.lock().unwrap().clone(),
        [utc("2024-01-06T02:30:00Z"), utc("2024-01-07T02:30:00Z")]
    );
    let records = p.ledger().all().await.unwrap();
    let nights: Vec<String> = records.iter().map(|r| r.night.to_string()).collect();
    assert_eq!(
        nights,
        [
            "2024-01-01",
            "2024-01-02",
            "2024-01-03",
            "2024-01-04",
            "2024-01-05"
        ]
    );
    assert!(records.iter().all(|r| r.state == StepState::Succeeded));
    assert!(
        records
            .windows(2)
            .all(|w| w[0].started_at < w[1].started_at),
        "in date order"
    );
    // Nothing runs twice: the lease is free again and no night has a second attempt.
    assert!(
        records
            .iter()
            .all(|r| r.steps.iter().all(|s| s.attempt == 1))
    );
}

#[test]
fn bad_settings_are_named() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_dir, lake) = lake().await;
        let p = pipeline(&lake);
        let clock = Arc::new(elastirec_flow::schedule::SystemClock);
        let bad_tz = ScheduleConfig {
            timezone: "Mars/Olympus".into(),
            ..ScheduleConfig::default()
        };
        let e = Scheduler::new(p.clone(), &bad_tz, clock.clone()).unwrap_err();
        assert!(e.to_string().contains("[schedule] timezone"), "{e}");
        let bad_cron = ScheduleConfig {
            cron: "30 25 * * *".into(),
            ..ScheduleConfig::default()
        };
        let e = Scheduler::new(p.clone(), &bad_cron, clock.clone()).unwrap_err();
        assert!(
            e.to_string().contains("[schedule] cron = '30 25 * * *'"),
            "{e}"
        );
        assert!(e.to_string().contains("hour '25'"), "{e}");
        for (cron, needle) in [
            ("@fortnightly", "not a shorthand"),
            ("0 2 * * JAN", "not a weekday name"),
            ("30 2 * *", "has 4 fields"),
        ] {
            let bad = ScheduleConfig {
                cron: cron.into(),
                ..ScheduleConfig::default()
            };
            let e = Scheduler::new(p.clone(), &bad, clock.clone()).unwrap_err();
            assert!(e.to_string().contains("[schedule] cron"), "{e}");
            assert!(e.to_string().contains(needle), "{e}");
        }
        // Names, shorthands and the Vixie day rule are accepted.
        for cron in ["0 2 * * MON-FRI", "@daily", "0 0 1 * MON"] {
            let good = ScheduleConfig {
                cron: cron.into(),
                ..ScheduleConfig::default()
            };
            Scheduler::new(p.clone(), &good, clock.clone()).unwrap();
        }
    });
}
