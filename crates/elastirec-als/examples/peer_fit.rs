//! The elastirec side of `bench/peers/speed.py`: fits implicit ALS on a training Parquet file,
//! computes top-10 for every user and scores NDCG@10 on a held-out Parquet file, printing one
//! JSON line. Not a test; run through the peer script (see `bench/README.md`):
//!
//! ```text
//! cargo run --example peer_fit -- --train T.parquet --test H.parquet --factors 64 \
//!     --iterations 10 --threads 2 --alpha 1 --regularization 0.05 --cg-steps 3
//! ```
//!
//! Both files have `user_id` (Int64) and `item_id` (Int64); the training file also `value`
//! (Float32), the confidence being `1 + alpha·value`.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use elastirec_als::data::Interactions;
use elastirec_als::implicit::{ImplicitAls, Solver};
use elastirec_als::topk::top_k_all;

type Columns = (Vec<i64>, Vec<i64>, Vec<f32>);

fn read(path: &str, with_values: bool) -> Result<Columns, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| format!("{path}: {e}"))?
        .with_batch_size(1 << 16)
        .build()
        .map_err(|e| format!("{path}: {e}"))?;
    let (mut u, mut i, mut v) = (Vec::new(), Vec::new(), Vec::new());
    for batch in reader {
        let batch = batch.map_err(|e| format!("{path}: {e}"))?;
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| format!("{path}: no column {name}"))
        };
        let ints = |name: &str| -> Result<Vec<i64>, String> {
            Ok(col(name)?
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| format!("{path}: {name} is not Int64"))?
                .values()
                .to_vec())
        };
        u.extend(ints("user_id")?);
        i.extend(ints("item_id")?);
        if with_values {
            v.extend_from_slice(
                col("value")?
                    .as_primitive_opt::<Float32Type>()
                    .ok_or_else(|| format!("{path}: value is not Float32"))?
                    .values(),
            );
        }
    }
    Ok((u, i, v))
}

/// Peak resident memory of this process, from /proc (Linux), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts: HashMap<String, String> = HashMap::new();
    for pair in args.chunks(2) {
        match pair {
            [k, v] if k.starts_with("--") => {
                opts.insert(k.trim_start_matches("--").to_string(), v.clone());
            }
            _ => {
                return Err(format!(
                    "usage: see the module docs; bad arguments {pair:?}"
                ));
            }
        }
    }
    let get = |k: &str, default: &str| opts.get(k).cloned().unwrap_or_else(|| default.into());
    let num = |k: &str, default: &str| -> Result<f64, String> {
        get(k, default)
            .parse::<f64>()
            .map_err(|e| format!("--{k}: {e}"))
    };
    let train = opts.get("train").ok_or("--train is required")?.clone();
    let test = opts.get("test").ok_or("--test is required")?.clone();
    let threads = num("threads", "2")? as usize;
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .map_err(|e| e.to_string())?;
    let als = ImplicitAls::default()
        .with_factors(num("factors", "64")? as usize)
        .with_iterations(num("iterations", "10")? as usize)
        .with_alpha(num("alpha", "1")? as f32)
        .with_regularization(num("regularization", "0.05")? as f32)
        .with_seed(num("seed", "42")? as u64)
        .with_solver(Solver::ConjugateGradient {
            steps: num("cg-steps", "3")? as usize,
        });

    let t = Instant::now();
    let (u, i, v) = read(&train, true)?;
    let read_seconds = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let data = Interactions::from_columns(&u, &i, &v);
    drop((u, i, v));
    let build_seconds = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let (factors, report) = als.fit(&data, |_, _| {}).map_err(|e| e.to_string())?;
    let fit_seconds = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let lists = top_k_all(
        &factors.users,
        &factors.items,
        factors.factors,
        &data.by_user,
        10,
    );
    let topk_seconds = t.elapsed().as_secs_f64();

    // NDCG@10 (binary relevance) over held-out users known to the model with an unseen item.
    let (tu, ti, _) = read(&test, false)?;
    let mut relevant: HashMap<u32, HashSet<u32>> = HashMap::new();
    for (&user, &item) in tu.iter().zip(&ti) {
        let (Some(u), Some(i)) = (data.users.index(user), data.items.index(item)) else {
            continue;
        };
        if !data.by_user.contains(u as usize, i) {
            relevant.entry(u).or_default().insert(i);
        }
    }
    let mut ndcg = 0.0;
    for (u, rel) in &relevant {
        let dcg: f64 = lists[*u as usize]
            .iter()
            .enumerate()
            .filter(|(_, (i, _))| rel.contains(i))
            .map(|(r, _)| 1.0 / (r as f64 + 2.0).log2())
            .sum();
        let ideal: f64 = (0..rel.len().min(10))
            .map(|r| 1.0 / (r as f64 + 2.0).log2())
            .sum();
        ndcg += dcg / ideal;
    }
    let test_users = relevant.len();
    ndcg /= test_users.max(1) as f64;
    println!(
        "{{\"side\": \"elastirec\", \"users\": {}, \"items\": {}, \"nnz\": {}, \"read_seconds\": \
         {read_seconds:.3}, \"build_seconds\": {build_seconds:.3}, \"fit_seconds\": \
         {fit_seconds:.3}, \"topk_seconds\": {topk_seconds:.3}, \"ndcg10\": {ndcg:.5}, \
         \"test_users\": {test_users}, \"final_loss\": {:.6e}, \"peak_rss_mib\": {:.1}}}",
        data.users.len(),
        data.items.len(),
        data.nnz(),
        report.loss.last().copied().unwrap_or(f64::NAN),
        peak_rss_mib()
    );
    Ok(())
}
