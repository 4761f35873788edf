//! `_LATEST` moving: the poll swaps the new night in whole, and readers racing the swap see one
//! night or the other, never a mix.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::StatusCode;

use elastirec_serve::{Served, router};

use crate::fixture::{self, NIGHT1, NIGHT2, night};
use crate::router::get;

#[tokio::test]
async fn a_moved_latest_is_swapped_in_by_refresh() {
    let f = fixture::published().await;
    fixture::write_night(&f.lake, night(NIGHT2), &fixture::night2_lists()).await;
    let served = Served::new(f.lake.clone(), None);
    assert!(served.refresh().await.unwrap());
    assert!(
        !served.refresh().await.unwrap(),
        "same pointer: nothing to do"
    );
    let app = router(served.clone());
    let before = get(&app, "/v1/users/7/recommendations").await.json();
    assert_eq!(before["model_date"], NIGHT1);

    fixture::publish(&f.lake, night(NIGHT2)).await;
    assert!(served.refresh().await.unwrap());
    let after = get(&app, "/v1/users/7/recommendations").await.json();
    assert_eq!(after["model_date"], NIGHT2);
    assert_eq!(after["items"][0]["item_id"], "4");
    // User 8 has no list on night 2: now the fallback.
    assert_eq!(
        get(&app, "/v1/users/8/recommendations").await.json()["fallback"],
        true
    );
    assert!(
        get(&app, "/metrics")
            .await
            .text
            .contains("elastirec_snapshot_swaps_total 2")
    );
}

#[tokio::test]
async fn a_broken_night_keeps_the_previous_one_served() {
    let f = fixture::published().await;
    let served = Served::new(f.lake.clone(), None);
    served.refresh().await.unwrap();
    // _LATEST names a night whose files are missing.
    fixture::publish(&f.lake, night(NIGHT2)).await;
    assert!(served.refresh().await.is_err());
    assert!(served.last_error().is_some());
    let app = router(served.clone());
    let health = get(&app, "/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json()["model_date"], NIGHT1);
    assert_eq!(health.json()["reload_failing"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_racing_swaps_never_see_half_a_night() {
    let f = fixture::published().await;
    fixture::write_night(&f.lake, night(NIGHT2), &fixture::night2_lists()).await;
    let served = Served::new(f.lake.clone(), None);
    served.refresh().await.unwrap();
    let app = router(served.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let app = app.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut seen = [0u32; 2];
                while !stop.load(Ordering::Relaxed) {
                    let body = get(&app, "/v1/users/7/recommendations").await.json();
                    // Night 1 lists 2 first and knows user 8's list; night 2 lists 4 first.
                    let first = body["items"][0]["item_id"].as_str().unwrap();
                    match body["model_date"].as_str().unwrap() {
                        NIGHT1 => {
                            assert_eq!(first, "2", "{body}");
                            seen[0] += 1;
                        }
                        NIGHT2 => {
                            assert_eq!(first, "4", "{body}");
                            seen[1] += 1;
                        }
                        other => panic!("unexpected night {other}"),
                    }
                    tokio::task::yield_now().await;
                }
                seen
            })
        })
        .collect();
    for i in 0..6 {
        let n = if i % 2 == 0 { NIGHT2 } else { NIGHT1 };
        fixture::publish(&f.lake, night(n)).await;
        assert!(served.refresh().await.unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = [0u32; 2];
    for r in readers {
        let seen = r.await.unwrap();
        total[0] += seen[0];
        total[1] += seen[1];
    }
    assert!(
        total[0] > 0 && total[1] > 0,
        "readers saw both nights: {total:?}"
    );
}

#[tokio::test]
async fn the_poll_picks_up_a_moved_latest_by_itself() {
    let f = fixture::published().await;
    fixture::write_night(&f.lake, night(NIGHT2), &fixture::night2_lists()).await;
    let served = Served::new(f.lake.clone(), None);
    let poll = tokio::spawn(served.clone().poll(std::time::Duration::from_millis(20)));
    let wait_for = |n: &'static str| {
        let served = served.clone();
        async move {
            for _ in 0..500 {
                if served
                    .snapshot()
                    .is_some_and(|s| s.night().to_string() == n)
                {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            panic!("night {n} was not picked up within 10 s");
        }
    };
    wait_for(NIGHT1).await;
    fixture::publish(&f.lake, night(NIGHT2)).await;
    wait_for(NIGHT2).await;
    poll.abort();
}
