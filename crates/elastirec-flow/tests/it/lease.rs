//! The lease: one holder at a time, a named holder in the refusal, expiry, and loss detection.

use std::time::Duration;

use elastirec_flow::lease::{self, Lease};
use elastirec_flow::{Error, StopFlag};

use crate::lake;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_holder_at_a_time_and_the_refusal_names_it() {
    let (_dir, lake) = lake().await;
    let ttl = Duration::from_secs(60);
    let a = Lease::acquire(&lake, "run 2024-01-01", ttl).await.unwrap();
    let err = Lease::acquire(&lake, "run 2024-01-02", ttl)
        .await
        .expect_err("a second runner is refused");
    let Error::Busy { holder } = &err else {
        panic!("{err:?}")
    };
    assert!(holder.contains(&a.state().owner), "{holder}");
    assert!(holder.contains("run 2024-01-01"), "{holder}");
    assert!(err.to_string().contains("lease is held by"), "{err}");

    a.renew().await.unwrap();
    assert_eq!(lease::current(&lake).await.unwrap().unwrap().epoch, 2);
    a.release().await.unwrap();
    let current = lease::current(&lake).await.unwrap().unwrap();
    assert!(current.released);
    let b = Lease::acquire(&lake, "run 2024-01-02", ttl).await.unwrap();
    assert_eq!(b.state().epoch, 4);
    b.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_taken_over_and_its_holder_stops() {
    let (_dir, lake) = lake().await;
    let a = Lease::acquire(&lake, "slow run", Duration::from_secs(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    // A crashed (here: silent) holder's lease expires; the next runner takes it.
    let b = Lease::acquire(&lake, "next run", Duration::from_secs(60))
        .await
        .expect("an expired lease is free");
    // The old holder learns at its next renewal and stops before its next step.
    let err = a.renew().await.expect_err("the lease was taken over");
    assert!(matches!(err, Error::Busy { .. }), "{err:?}");
    assert!(a.is_lost());
    let stop = StopFlag::new();
    let keep = b.keep_alive(stop.clone());
    drop(keep);
    assert!(stop.reason().is_none());
    b.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_stalled_past_its_lease_is_fenced_and_the_new_holder_is_not() {
    let (_dir, lake) = lake().await;
    let stop_a = StopFlag::new();
    let a = Lease::acquire(&lake, "stalled run", Duration::from_secs(1))
        .await
        .unwrap();
    let keep_a = a.keep_alive(stop_a.clone());
    assert_eq!(stop_a.fence().check().unwrap(), Some(a.state().epoch));
    // A stalls (its renewals stop, as in a long pause) and its lease expires: its writes are
    // refused from then on, even before it looks at the lake.
    drop(keep_a);
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let e = stop_a.fence().check().unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");
    let b = Lease::acquire(&lake, "next run", Duration::from_secs(60))
        .await
        .unwrap();
    let stop_b = StopFlag::new();
    let keep_b = b.keep_alive(stop_b.clone());
    assert_eq!(stop_b.fence_on(&lake).await.unwrap(), Some(b.state().epoch));
    // Looking at the lake, A learns who holds it now, and stops.
    let e = stop_a.fence_on(&lake).await.unwrap_err();
    assert!(e.to_string().contains(&b.state().owner), "{e}");
    assert!(stop_a.reason().is_some());
    keep_b.released();
    assert_eq!(stop_b.fence().check().unwrap(), None, "released: no lease");
    b.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_that_fail_until_expiry_stop_the_holder_and_close_its_fence() {
    let (dir, lake) = lake().await;
    let stop = StopFlag::new();
    let a = Lease::acquire(&lake, "run", Duration::from_secs(1))
        .await
        .unwrap();
    let _keep = a.keep_alive(stop.clone());
    // The lease folder becomes unwritable (a file where the folder was): renewals fail.
    let folder = dir.path().join("lake/runs/_lease");
    std::fs::remove_dir_all(&folder).unwrap();
    std::fs::write(&folder, b"not a folder").unwrap();
    tokio::time::timeout(Duration::from_secs(10), stop.raised())
        .await
        .expect("the holder is stopped once its lease expired");
    let reason = stop.reason().unwrap();
    assert!(reason.contains("renewals failed"), "{reason}");
    assert!(stop.fence().check().is_err());
    assert!(a.is_lost());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_whose_lake_was_taken_over_neither_loads_nor_publishes() {
    let (_dir, lake) = lake().await;
    crate::simulate_days(&lake, 1).await;
    let stop = StopFlag::new();
    let a = Lease::acquire(&lake, "run 2024-01-01", Duration::from_secs(60))
        .await
        .unwrap();
    let _keep = a.keep_alive(stop.clone());
    // Another runner took the lake (its clock said A's lease had expired): the newest epoch is
    // its own. A's renewals would notice within 20 s; its writes notice now.
    let mut other = a.state();
    other.epoch += 1;
    other.owner = "other-host:4242:0badf00d".into();
    other.host = "other-host".into();
    assert!(
        lake.put_json_create(
            &elastirec_core::layout::run_lease_epoch(other.epoch),
            &other
        )
        .await
        .unwrap()
    );
    let p = crate::pipeline(&lake).with_stop(stop.clone());
    let e = p
        .run(crate::night("2024-01-01"))
        .await
        .expect_err("the night is refused");
    let chain = elastirec_core::error::chain(&e);
    assert!(chain.contains("other-host"), "{chain}");
    assert!(
        stop.reason().unwrap().contains("other-host"),
        "{:?}",
        stop.reason()
    );
    // Nothing was loaded, nothing published.
    let loaded = match p.query("SELECT COUNT(*) FROM events").await {
        Ok(batches) => batches
            .first()
            .and_then(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<arrow_array::Int64Array>()
                    .map(|a| a.value(0))
            })
            .unwrap_or(0),
        Err(_) => 0,
    };
    assert_eq!(loaded, 0, "a fenced runner loaded events");
    assert!(
        elastirec_lake::read_latest(&lake).await.unwrap().is_none(),
        "a fenced runner moved _LATEST"
    );
}
