//! The publish gate holds a night whose users collapse; yesterday's lists stay live.

use elastirec_core::manifest::StepState;
use elastirec_core::{Night, layout};
use elastirec_flow::RunOptions;

use crate::{lake, night, pipeline, simulate_days};

async fn latest(lake: &elastirec_core::Lake) -> Option<Night> {
    elastirec_lake::read_latest(lake)
        .await
        .unwrap()
        .map(|l| l.night)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_night_whose_users_collapse_is_held_until_forced() {
    let (_dir, lake) = lake().await;
    simulate_days(&lake, 2).await;
    let p = pipeline(&lake);
    let (d1, d2, d3) = (
        night("2024-01-01"),
        night("2024-01-02"),
        night("2024-01-03"),
    );
    for n in [d1, d2] {
        let r = p.run(n).await.unwrap();
        assert_eq!(r.step("publish").unwrap().state, StepState::Succeeded);
        assert!(r.publish.as_ref().unwrap().published, "{r:?}");
    }
    assert_eq!(latest(&lake).await, Some(d2));
    let users_live = elastirec_lake::read_recommendations_manifest(&lake, d2)
        .await
        .unwrap()
        .users;
    assert!(users_live > 200, "{users_live}");

    // The warehouse is rebuilt from a source that lost the history: only night 3's few events.
    lake.delete_prefix(&"warehouse".into()).await.unwrap();
    lake.delete_prefix(&layout::raw_events_root())
        .await
        .unwrap();
    let mut body = String::from("userId,movieId,rating,timestamp\n");
    for u in 1..=5 {
        for i in 1..=4 {
            body.push_str(&format!(
                "{u},{},4.0,{}\n",
                u * 7 + i,
                d3.start_unix_seconds() + 60 * i64::from(u)
            ));
        }
    }
    lake.put(
        &layout::raw_events_day(d3).join("partial.csv"),
        body.into_bytes(),
    )
    .await
    .unwrap();

    let r = p.run(d3).await.unwrap();
    assert_eq!(
        r.state,
        StepState::Succeeded,
        "the night ran; only publishing is held"
    );
    let publish = r.step("publish").unwrap();
    assert_eq!(publish.state, StepState::Held, "{publish:?}");
    let decision = r.publish.clone().unwrap();
    assert!(!decision.published);
    let reason = decision.reason.unwrap();
    assert!(reason.contains("users did not collapse"), "{reason}");
    assert!(reason.contains(&format!("vs {users_live}")), "{reason}");
    assert_eq!(latest(&lake).await, Some(d2), "yesterday's lists stay live");

    // Running the night again does not change the decision...
    let again = p.run(d3).await.unwrap();
    assert_eq!(again.step("publish").unwrap().state, StepState::Held);
    assert_eq!(latest(&lake).await, Some(d2));
    // ...until someone forces it.
    let forced = p
        .run_with(
            d3,
            RunOptions {
                force_publish: true,
                ..RunOptions::default()
            },
        )
        .await
        .unwrap();
    let decision = forced.publish.unwrap();
    assert!(decision.published && decision.forced, "{decision:?}");
    assert_eq!(latest(&lake).await, Some(d3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_night_is_copied_to_redis_by_the_sink_step() {
    let (_dir, lake) = lake().await;
    simulate_days(&lake, 1).await;
    let mut config = crate::config();
    config.sink.target = elastirec_core::config::SinkTarget::Redis;
    let prefix = format!("elastirec-test:{}:", std::process::id());
    config.sink.redis_key_prefix = prefix.clone();
    config.sink.ttl_seconds = 600;
    let p = elastirec_flow::Pipeline::new(lake.clone(), config);
    let r = p.run(night("2024-01-01")).await.unwrap();
    let sink = r
        .step("sink")
        .expect("a sink step when [sink] target is set");
    assert_eq!(sink.state, StepState::Succeeded, "{sink:?}");
    let users = elastirec_lake::read_recommendations_manifest(&lake, night("2024-01-01"))
        .await
        .unwrap()
        .users;
    assert_eq!(sink.rows_out, Some(users));
    // What an application sees: one key per user.
    let keys = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", "6379", "--scan", "--pattern"])
        .arg(format!("{prefix}*"))
        .output()
        .expect("redis-cli runs");
    let listed = String::from_utf8_lossy(&keys.stdout).lines().count() as u64;
    assert_eq!(listed, users);
    let _ = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "redis-cli -h 127.0.0.1 --scan --pattern '{prefix}*' | xargs -r redis-cli -h 127.0.0.1 del"
        ))
        .output();
}
