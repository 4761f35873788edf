//! A model written to a lake and read back: it scores and recommends without retraining, and
//! users or items it does not know get the popularity fallback, flagged `popular`.

use std::collections::{HashMap, HashSet};

use elastirec_als::data::Interactions;
use elastirec_als::implicit::ImplicitAls;
use elastirec_als::model::Model;
use elastirec_als::popularity::Popularity;
use elastirec_als::topk::top_k_all;
use elastirec_core::manifest::{ModelInfo, columns, sources};
use elastirec_core::{Lake, Night, layout};
use elastirec_lake::io;

#[tokio::test(flavor = "multi_thread")]
async fn a_model_is_loaded_back_and_scores_without_retraining() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().to_str().unwrap(), HashMap::new())
        .await
        .unwrap();
    let night: Night = "2024-02-03".parse().unwrap();
    // Two blocks of users and items, with sparse ids.
    let (mut u, mut i) = (Vec::new(), Vec::new());
    for user in 0..30i64 {
        let block = if user < 15 { 0 } else { 8 };
        for item in block..block + 8 {
            if (user + item) % 4 != 0 {
                u.push(user * 10 + 7);
                i.push(item * 3 + 100);
            }
        }
    }
    let v = vec![1.0f32; u.len()];
    let data = Interactions::from_columns(&u, &i, &v);
    let (f, report) = ImplicitAls::default()
        .with_factors(4)
        .with_iterations(8)
        .fit(&data, |_, _| {})
        .unwrap();
    let k = f.factors;
    let ub = io::factors_batch(columns::USER_ID, data.users.ids(), &f.users, k).unwrap();
    let ib = io::factors_batch(columns::ITEM_ID, data.items.ids(), &f.items, k).unwrap();
    let files = vec![
        io::write_parquet(
            &lake,
            &layout::model_user_factors(night),
            ub.schema(),
            &[ub],
        )
        .await
        .unwrap(),
        io::write_parquet(
            &lake,
            &layout::model_item_factors(night),
            ib.schema(),
            &[ib],
        )
        .await
        .unwrap(),
    ];
    let info = ModelInfo {
        night,
        created_at: chrono::Utc::now(),
        algorithm: "implicit_als_cholesky".into(),
        params: serde_json::json!({"factors": 4}),
        users: data.users.len() as u64,
        items: data.items.len() as u64,
        interactions: data.nnz() as u64,
        factors: k,
        loss: report.loss.clone(),
        train_seconds: report.seconds,
        export_manifest: "exports/training/2024/02/03/_manifest.json".into(),
        table_versions: Default::default(),
        files,
    };
    lake.put_json(&layout::model_info(night), &info)
        .await
        .unwrap();

    let model = Model::load(&lake, night).await.unwrap();
    // model.json holds the loss per iteration (JSON may round the last digit).
    assert_eq!(model.info.loss.len(), report.loss.len());
    assert!(
        model
            .info
            .loss
            .iter()
            .zip(&report.loss)
            .all(|(a, b)| (a - b).abs() <= 1e-12 * b.abs())
    );
    assert_eq!(model.users.ids(), data.users.ids());
    assert_eq!(model.items.ids(), data.items.ids());
    assert_eq!(model.user_factors, f.users);
    // Scores are the factors' dot products, by external id.
    let s = model.score(17, 103).unwrap();
    let (ui, ii) = (
        data.users.index(17).unwrap(),
        data.items.index(103).unwrap(),
    );
    let expected: f32 = f
        .user(ui as usize)
        .iter()
        .zip(f.item(ii as usize))
        .map(|(a, b)| a * b)
        .sum();
    assert!((s - expected).abs() < 1e-5);
    assert_eq!(model.score(99_999, 103), None);
    assert_eq!(model.score(17, 99_999), None);

    // A known user's list is the batch top-K's, seen items excluded.
    let popularity = Popularity::from_pairs(i.iter().copied());
    let seen: HashSet<i64> = u
        .iter()
        .zip(&i)
        .filter(|(user, _)| **user == 17)
        .map(|(_, item)| *item)
        .collect();
    let one = model.recommend(17, 3, &seen, &popularity);
    let all = top_k_all(&f.users, &f.items, k, &data.by_user, 3);
    let batch: Vec<i64> = all[ui as usize]
        .iter()
        .map(|(it, _)| data.items.id(*it))
        .collect();
    assert_eq!(one.iter().map(|s| s.item_id).collect::<Vec<_>>(), batch);
    assert!(
        one.iter()
            .all(|s| s.source == sources::ALS && !seen.contains(&s.item_id))
    );
    // User 17 is in the first block and has left exactly two first-block items unseen (ids
    // 109 and 121): those rank above every second-block item (ids ≥ 124).
    let mut first_two: Vec<i64> = one[..2].iter().map(|s| s.item_id).collect();
    first_two.sort_unstable();
    assert_eq!(first_two, vec![109, 121], "{one:?}");
    assert!(one[2].item_id >= 124, "{one:?}");

    // Cold start: an unknown user gets the most popular unseen items, flagged.
    let cold_seen: HashSet<i64> = [popularity.top(1, |_| false)[0].0].into();
    let cold = model.recommend(424_242, 3, &cold_seen, &popularity);
    assert_eq!(cold.len(), 3);
    assert!(cold.iter().all(|s| s.source == sources::POPULAR));
    let expected: Vec<i64> = popularity
        .top(3, |it| cold_seen.contains(&it))
        .iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(cold.iter().map(|s| s.item_id).collect::<Vec<_>>(), expected);
    // An item the model does not know is scored by popularity, flagged.
    let scored = model.score_items(17, &[103, 5_555], &popularity);
    assert_eq!(scored[0].source, sources::ALS);
    assert_eq!(scored[1].source, sources::POPULAR);
    assert_eq!(scored[1].score, 0.0);

    // A night without a model says which command makes it.
    let e = Model::load(&lake, night.next()).await.unwrap_err();
    assert!(
        e.to_string().contains("elastirec train --date 2024-02-04"),
        "{e}"
    );
}
