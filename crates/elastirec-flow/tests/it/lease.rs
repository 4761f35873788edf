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
