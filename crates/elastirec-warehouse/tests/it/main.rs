//! Warehouse tests on real Delta tables in a temporary local lake.

mod catalog;
mod events;
mod golden;
mod load;
mod prepare;

use elastirec_core::{Lake, Night, layout};

/// A new lake in a temporary folder.
pub async fn lake() -> (tempfile::TempDir, Lake) {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(
        dir.path().join("lake").to_str().unwrap(),
        Default::default(),
    )
    .await
    .unwrap();
    (dir, lake)
}

/// Writes a raw event file of `day` with rows (user, item, value, seconds into the day).
pub async fn raw_file(lake: &Lake, day: &str, name: &str, rows: &[(i64, i64, f32, i64)]) {
    let night: Night = day.parse().unwrap();
    let mut body = String::from("userId,movieId,rating,timestamp\n");
    for (u, i, v, s) in rows {
        body.push_str(&format!("{u},{i},{v},{}\n", night.start_unix_seconds() + s));
    }
    lake.put(&layout::raw_events_day(night).join(name), body.into_bytes())
        .await
        .unwrap();
}

/// The single integer a query returns.
pub async fn scalar(wh: &elastirec_warehouse::Warehouse, sql: &str) -> i64 {
    let batches = wh.sql(sql).await.unwrap();
    let col = batches[0].column(0);
    let col = arrow_array::cast::AsArray::as_primitive::<arrow_array::types::Int64Type>(col);
    col.value(0)
}

/// Every record batch of the export files `files`.
pub async fn read_files(
    lake: &Lake,
    files: &[elastirec_core::manifest::FileEntry],
) -> Vec<arrow_array::RecordBatch> {
    let mut batches = Vec::new();
    for f in files {
        let body = lake.get(&f.path.as_str().into()).await.unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(body)
            .unwrap()
            .build()
            .unwrap();
        batches.extend(reader.map(|b| b.unwrap()));
    }
    batches
}
