//! The elastirec side of `bench/foldin/run.py`: trains the night's model on a training CSV, folds
//! in each cold user's first N items with [`ModelFoldIn`] (the code the API and
//! `recommend --fold-in` use) and writes their top-10 lists. Not a test; run through the script
//! (see `bench/README.md`):
//!
//! ```text
//! cargo run --example foldin_lists -- --train train.csv --given given.csv --out lists.csv \
//!     --seeds 0,1,2 --priors 0,1 --factors 64 --iterations 15 --regularization 0.05 --alpha 1
//! ```
//!
//! `train.csv`: `user,item,value` (value = the rating, confidence `1 + alpha·value`);
//! `given.csv`: `n,user,item,value` (the first n items of each cold user, for each n);
//! `lists.csv` (written): `seed,prior,n,user,rank,item,source`.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::time::Instant;

use elastirec_als::data::{IdMap, Interactions};
use elastirec_als::foldin::ModelFoldIn;
use elastirec_als::model::Model;
use elastirec_als::popularity::Popularity;
use elastirec_als::stage::implicit_als;
use elastirec_core::config::ModelConfig;
use elastirec_core::manifest::ModelInfo;

struct Args {
    train: String,
    given: String,
    out: String,
    seeds: Vec<u64>,
    priors: Vec<f32>,
    config: ModelConfig,
}

fn parse_list<T: std::str::FromStr>(s: &str, name: &str) -> Result<Vec<T>, String> {
    s.split(',')
        .map(|v| {
            v.trim()
                .parse::<T>()
                .map_err(|_| format!("--{name}: '{v}' is not a number"))
        })
        .collect()
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        train: String::new(),
        given: String::new(),
        out: String::new(),
        seeds: vec![0],
        priors: vec![0.0, elastirec_als::foldin::DEFAULT_PRIOR],
        config: ModelConfig {
            factors: 64,
            iterations: 15,
            regularization: 0.05,
            alpha: 1.0,
            ..ModelConfig::default()
        },
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |name: &str| -> Result<f64, String> {
            value
                .parse::<f64>()
                .map_err(|_| format!("{name}: '{value}' is not a number"))
        };
        match flag.as_str() {
            "--train" => a.train = value,
            "--given" => a.given = value,
            "--out" => a.out = value,
            "--seeds" => a.seeds = parse_list(&value, "seeds")?,
            "--priors" => a.priors = parse_list(&value, "priors")?,
            "--factors" => a.config.factors = num(&flag)? as usize,
            "--iterations" => a.config.iterations = num(&flag)? as usize,
            "--regularization" => a.config.regularization = num(&flag)? as f32,
            "--alpha" => a.config.alpha = num(&flag)? as f32,
            "--cg-steps" => a.config.cg_steps = num(&flag)? as usize,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.train.is_empty() || a.given.is_empty() || a.out.is_empty() {
        return Err("--train, --given and --out are required".into());
    }
    Ok(a)
}

/// Rows of a CSV with a header and numeric fields.
fn read_csv(path: &str, fields: usize) -> Result<Vec<Vec<f64>>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    text.lines()
        .enumerate()
        .skip(1)
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            let row: Result<Vec<f64>, _> = l.split(',').map(|f| f.trim().parse::<f64>()).collect();
            match row {
                Ok(r) if r.len() == fields => Ok(r),
                _ => Err(format!("{path}:{}: expected {fields} numbers", n + 1)),
            }
        })
        .collect()
}

fn main() {
    if let Err(e) = run() {
        eprintln!("foldin_lists: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let a = args()?;
    let train = read_csv(&a.train, 3)?;
    let users: Vec<i64> = train.iter().map(|r| r[0] as i64).collect();
    let items: Vec<i64> = train.iter().map(|r| r[1] as i64).collect();
    let values: Vec<f32> = train.iter().map(|r| r[2] as f32).collect();
    let data = Interactions::from_columns(&users, &items, &values);
    let popularity = Popularity::from_pairs(items.iter().copied());
    // Cold users' given items, by (n, user), in file order.
    let mut given: BTreeMap<(usize, i64), Vec<(i64, f32)>> = BTreeMap::new();
    for r in read_csv(&a.given, 4)? {
        given
            .entry((r[0] as usize, r[1] as i64))
            .or_default()
            .push((r[2] as i64, r[3] as f32));
    }
    let mut out = std::fs::File::create(&a.out).map_err(|e| format!("{}: {e}", a.out))?;
    writeln!(out, "seed,prior,n,user,rank,item,source").map_err(|e| e.to_string())?;
    for &seed in &a.seeds {
        let config = ModelConfig {
            seed,
            ..a.config.clone()
        };
        let started = Instant::now();
        let (f, report) = implicit_als(&config)
            .fit(&data, |_, _| {})
            .map_err(|e| e.to_string())?;
        let fit = started.elapsed().as_secs_f64();
        let model = Model {
            info: ModelInfo {
                night: "1998-03-31".parse().map_err(|e| format!("{e}"))?,
                created_at: chrono::Utc::now(),
                algorithm: "implicit_als_cg".into(),
                params: serde_json::to_value(&config).map_err(|e| e.to_string())?,
                users: data.users.len() as u64,
                items: data.items.len() as u64,
                interactions: data.nnz() as u64,
                factors: f.factors,
                loss: report.loss,
                train_seconds: fit,
                export_manifest: String::new(),
                table_versions: Default::default(),
                files: Default::default(),
            },
            users: IdMap::from_vec(data.users.ids().to_vec()),
            items: IdMap::from_vec(data.items.ids().to_vec()),
            factors: f.factors,
            user_factors: f.users,
            item_factors: f.items,
        };
        for &prior in &a.priors {
            let fold = ModelFoldIn::new(&model, prior).map_err(|e| e.to_string())?;
            let started = Instant::now();
            for ((n, user), history) in &given {
                let list = fold
                    .recommend(history, 10, &HashSet::new(), &popularity)
                    .map_err(|e| e.to_string())?;
                for (rank, s) in list.items.iter().enumerate() {
                    writeln!(
                        out,
                        "{seed},{prior},{n},{user},{},{},{}",
                        rank + 1,
                        s.item_id,
                        s.source
                    )
                    .map_err(|e| e.to_string())?;
                }
            }
            eprintln!(
                "seed {seed}: fit {fit:.2} s; prior {prior}: {} fold-ins in {:.1} ms",
                given.len(),
                started.elapsed().as_secs_f64() * 1e3
            );
        }
    }
    Ok(())
}
