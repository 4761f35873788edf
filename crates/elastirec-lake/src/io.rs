//! Parquet in and out of the lake, with the artefact schemas of `elastirec_core::manifest`.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int32Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, Int32Array, Int64Array, RecordBatch,
    StringArray,
};
use arrow_schema::{DataType, Field, SchemaRef};
use bytes::Bytes;
use object_store::path::Path;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use elastirec_core::Lake;
use elastirec_core::generation::Generation;
use elastirec_core::ids::{IdDictionary, IdKind};
use elastirec_core::manifest::{self, FileEntry, columns};

use crate::{Error, Result};

/// Reads every batch of a Parquet object.
pub async fn read_parquet(lake: &Lake, path: &Path) -> Result<Vec<RecordBatch>> {
    let body: Bytes = lake.get(path).await?;
    let name = lake.display_path(path);
    let perr = |source| Error::Parquet {
        path: name.clone(),
        source,
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(body)
        .map_err(perr)?
        .with_batch_size(64 * 1024)
        .build()
        .map_err(perr)?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::BadInput {
            path: name.clone(),
            reason: e.to_string(),
        })
}

/// Encodes batches as one Parquet file and writes it in one put.
pub async fn write_parquet(
    lake: &Lake,
    path: &Path,
    schema: SchemaRef,
    batches: &[RecordBatch],
) -> Result<FileEntry> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let perr = |source| Error::Parquet {
        path: path.to_string(),
        source,
    };
    let mut buf = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buf, schema, Some(props)).map_err(perr)?;
    let mut rows = 0u64;
    for b in batches {
        rows += b.num_rows() as u64;
        writer.write(b).map_err(perr)?;
    }
    writer.close().map_err(perr)?;
    let bytes = buf.len() as u64;
    lake.put(path, buf).await?;
    Ok(FileEntry {
        path: path.to_string(),
        rows,
        bytes,
    })
}

fn col<'a>(batch: &'a RecordBatch, name: &str, path: &str) -> Result<&'a ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| Error::BadInput {
        path: path.into(),
        reason: format!("no column '{name}'"),
    })
}

/// A primitive column's values, or an error naming the file, column and types.
fn primitive_col<T: arrow_array::types::ArrowPrimitiveType>(
    batch: &RecordBatch,
    name: &str,
    path: &str,
) -> Result<Vec<T::Native>> {
    let a = col(batch, name, path)?;
    let typed = a.as_primitive_opt::<T>().ok_or_else(|| Error::BadInput {
        path: path.into(),
        reason: format!(
            "column '{name}' is {}, expected {}",
            a.data_type(),
            T::DATA_TYPE
        ),
    })?;
    Ok(typed.values().to_vec())
}

fn i64_col(batch: &RecordBatch, name: &str, path: &str) -> Result<Vec<i64>> {
    primitive_col::<Int64Type>(batch, name, path)
}

/// (user id, item id, value) columns of training export files.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PairColumns {
    pub user_ids: Vec<i64>,
    pub item_ids: Vec<i64>,
    /// Empty when the files have no value column (seen pairs).
    pub values: Vec<f32>,
}

/// Reads the listed export files; `with_values` also reads the `value` column.
pub async fn read_pairs(
    lake: &Lake,
    files: &[FileEntry],
    with_values: bool,
) -> Result<PairColumns> {
    let mut out = PairColumns::default();
    for f in files {
        let path = Path::from(f.path.as_str());
        for batch in read_parquet(lake, &path).await? {
            out.user_ids
                .extend(i64_col(&batch, columns::USER_ID, &f.path)?);
            out.item_ids
                .extend(i64_col(&batch, columns::ITEM_ID, &f.path)?);
            if with_values {
                out.values.extend(primitive_col::<Float32Type>(
                    &batch,
                    columns::VALUE,
                    &f.path,
                )?);
            }
        }
    }
    Ok(out)
}

/// Writes a night's model factor files (`models/D/user_factors.parquet`, `item_factors.parquet`)
/// from row-major factors with their external ids and returns their entries for `model.json`,
/// with the [`Generation`] the caller finishes once `model.json` is written (last). A model
/// that `model.json` already describes stays whole until then: the new files go beside it under
/// new names (`user_factors.gTAG.parquet`), see `elastirec_core::generation`.
#[allow(clippy::too_many_arguments)]
pub async fn write_model_factors(
    lake: &Lake,
    night: elastirec_core::Night,
    user_ids: &[i64],
    users: &[f32],
    item_ids: &[i64],
    items: &[f32],
    k: usize,
) -> Result<(Vec<FileEntry>, Generation)> {
    use elastirec_core::layout;
    let live = lake
        .get_json::<manifest::ModelInfo>(&layout::model_info(night), "model")
        .await?
        .map(|m| m.files)
        .unwrap_or_default();
    let generation = Generation::begin(lake, &layout::model_dir(night), &live).await?;
    let user_batch = factors_batch(manifest::columns::USER_ID, user_ids, users, k)?;
    let item_batch = factors_batch(manifest::columns::ITEM_ID, item_ids, items, k)?;
    let files = vec![
        write_parquet(
            lake,
            &generation.path(&layout::model_user_factors(night)),
            user_batch.schema(),
            &[user_batch],
        )
        .await?,
        write_parquet(
            lake,
            &generation.path(&layout::model_item_factors(night)),
            item_batch.schema(),
            &[item_batch],
        )
        .await?,
    ];
    Ok((files, generation))
}

/// The factor file of a model that `model.json` names: `which` is `user_factors` or
/// `item_factors`; a description without file entries reads the plain name.
pub fn model_factor_file(info: &manifest::ModelInfo, which: &str) -> Path {
    use elastirec_core::layout;
    let named = info.files.iter().find(|f| {
        let name = f.path.rsplit('/').next().unwrap_or(&f.path);
        name.split('.').next() == Some(which)
    });
    match named {
        Some(f) => Path::from(f.path.as_str()),
        None if which == "item_factors" => layout::model_item_factors(info.night),
        None => layout::model_user_factors(info.night),
    }
}

/// A factor matrix as a batch: ids and fixed-size lists of f32.
pub fn factors_batch(id_column: &str, ids: &[i64], rows: &[f32], k: usize) -> Result<RecordBatch> {
    let schema = manifest::factors_schema(id_column, k);
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let list = FixedSizeListArray::try_new(
        item,
        k as i32,
        Arc::new(Float32Array::from(rows.to_vec())),
        None,
    )
    .map_err(|e| Error::Internal(format!("factor list: {e}")))?;
    RecordBatch::try_new(
        schema,
        vec![Arc::new(Int64Array::from(ids.to_vec())), Arc::new(list)],
    )
    .map_err(|e| Error::Internal(format!("factor batch: {e}")))
}

/// Reads a factor file: (ids, row-major factors, number of factors).
pub async fn read_factors(
    lake: &Lake,
    path: &Path,
    id_column: &str,
) -> Result<(Vec<i64>, Vec<f32>, usize)> {
    let name = path.to_string();
    let mut ids = Vec::new();
    let mut rows = Vec::new();
    let mut k = 0usize;
    for batch in read_parquet(lake, path).await? {
        ids.extend(i64_col(&batch, id_column, &name)?);
        let a = col(&batch, columns::FACTORS, &name)?;
        let list = a.as_fixed_size_list_opt().ok_or_else(|| Error::BadInput {
            path: name.clone(),
            reason: format!(
                "column 'factors' is {}, expected a fixed-size list",
                a.data_type()
            ),
        })?;
        k = list.value_length() as usize;
        let values = list
            .values()
            .as_primitive_opt::<Float32Type>()
            .ok_or_else(|| Error::BadInput {
                path: name.clone(),
                reason: "factor values are not Float32".into(),
            })?;
        let start = list.offset() * k;
        rows.extend_from_slice(&values.values()[start..start + list.len() * k]);
    }
    Ok((ids, rows, k))
}

/// One row of a recommendations file, with internal ids (the engines' ids); the file holds the
/// external ids the export's dictionary names.
#[derive(Debug, Clone, PartialEq)]
pub struct RecommendationRow {
    pub user_id: i64,
    pub item_id: i64,
    pub rank: i32,
    pub score: f32,
    pub source: &'static str,
}

/// Rows as a batch of the recommendations schema: internal ids become the external ids of
/// `ids` (a numeric id its decimal digits).
pub fn recommendations_batch(
    rows: &[RecommendationRow],
    ids: &IdDictionary,
) -> Result<RecordBatch> {
    let users: StringArray = rows
        .iter()
        .map(|r| Some(ids.users.external(r.user_id)))
        .collect();
    let items: StringArray = rows
        .iter()
        .map(|r| Some(ids.items.external(r.item_id)))
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(users),
        Arc::new(items),
        Arc::new(rows.iter().map(|r| r.rank).collect::<Int32Array>()),
        Arc::new(rows.iter().map(|r| r.score).collect::<Float32Array>()),
        Arc::new(rows.iter().map(|r| Some(r.source)).collect::<StringArray>()),
    ];
    RecordBatch::try_new(manifest::recommendations_schema(), columns)
        .map_err(|e| Error::Internal(format!("recommendations batch: {e}")))
}

/// One entry of a ranked list read back: (item, rank, score, source).
pub type Ranked<Id> = (Id, i32, f32, String);

/// Ranked lists read back with internal ids: user → entries in rank order.
pub type RankedLists = std::collections::BTreeMap<i64, Vec<Ranked<i64>>>;

/// Ranked lists read back with the external ids consumers see: user → entries in rank order.
pub type ExternalLists = std::collections::BTreeMap<String, Vec<Ranked<String>>>;

/// An id column of a recommendations file as external ids: Utf8 (layout 3) as it is, Int64
/// (files written before) as decimal digits.
fn external_ids(batch: &RecordBatch, name: &str, path: &str) -> Result<Vec<String>> {
    let a = col(batch, name, path)?;
    if let Some(strings) = a.as_string_opt::<i32>() {
        return Ok(strings
            .iter()
            .map(|v| v.unwrap_or("").to_string())
            .collect());
    }
    if let Some(ints) = a.as_primitive_opt::<Int64Type>() {
        return Ok(ints.values().iter().map(|v| v.to_string()).collect());
    }
    Err(Error::BadInput {
        path: path.into(),
        reason: format!(
            "column '{name}' is {}, expected Utf8 (or Int64 before layout 3)",
            a.data_type()
        ),
    })
}

/// Reads recommendation files into ranked lists with the external ids they hold.
pub async fn read_recommendations(lake: &Lake, files: &[FileEntry]) -> Result<ExternalLists> {
    let mut out = ExternalLists::new();
    for f in files {
        for batch in read_parquet(lake, &Path::from(f.path.as_str())).await? {
            let users = external_ids(&batch, columns::USER_ID, &f.path)?;
            let items = external_ids(&batch, columns::ITEM_ID, &f.path)?;
            let ranks = primitive_col::<Int32Type>(&batch, columns::RANK, &f.path)?;
            let scores = primitive_col::<Float32Type>(&batch, columns::SCORE, &f.path)?;
            let sources = col(&batch, columns::SOURCE, &f.path)?
                .as_string_opt::<i32>()
                .ok_or_else(|| Error::BadInput {
                    path: f.path.clone(),
                    reason: "column 'source' is not Utf8".into(),
                })?
                .clone();
            for (i, (user, item)) in users.into_iter().zip(items).enumerate() {
                out.entry(user).or_default().push((
                    item,
                    ranks[i],
                    scores[i],
                    sources.value(i).to_string(),
                ));
            }
        }
    }
    for list in out.values_mut() {
        list.sort_by_key(|r| r.1);
    }
    Ok(out)
}

/// Reads recommendation files into ranked lists with internal ids, through the export's id
/// dictionary (what evaluation and serving compare with the export and the model). An id the
/// dictionary does not know means the files and the dictionary are of different nights.
pub async fn read_recommendations_internal(
    lake: &Lake,
    files: &[FileEntry],
    ids: &IdDictionary,
) -> Result<RankedLists> {
    let external = read_recommendations(lake, files).await?;
    let unknown = |kind: &str, id: &str| Error::BadInput {
        path: files.first().map_or_else(String::new, |f| f.path.clone()),
        reason: format!(
            "{kind} id '{id}' is not in the night's id dictionary (the export's ids-*.parquet): \
             the recommendations and the export are of different nights; rerun `elastirec \
             recommend` for this night"
        ),
    };
    let mut out = RankedLists::new();
    for (user, list) in external {
        let u = ids
            .users
            .internal(&user)
            .ok_or_else(|| unknown("user", &user))?;
        let mut entries = Vec::with_capacity(list.len());
        for (item, rank, score, source) in list {
            let i = ids
                .items
                .internal(&item)
                .ok_or_else(|| unknown("item", &item))?;
            entries.push((i, rank, score, source));
        }
        out.insert(u, entries);
    }
    Ok(out)
}

/// The id dictionary of the listed `ids-*.parquet` files (empty list: numeric ids only).
pub async fn read_id_dictionary(lake: &Lake, files: &[FileEntry]) -> Result<IdDictionary> {
    let mut out = IdDictionary::default();
    for f in files {
        for batch in read_parquet(lake, &Path::from(f.path.as_str())).await? {
            let kinds = string_col(&batch, columns::KIND, &f.path)?;
            let ids = i64_col(&batch, columns::ID, &f.path)?;
            let names = string_col(&batch, columns::EXTERNAL, &f.path)?;
            for (i, &id) in ids.iter().enumerate() {
                let kind = IdKind::parse(kinds.value(i)).ok_or_else(|| Error::BadInput {
                    path: f.path.clone(),
                    reason: format!("row {i}: kind '{}' is not user or item", kinds.value(i)),
                })?;
                out.of_mut(kind).insert(id, names.value(i));
            }
        }
    }
    Ok(out)
}

/// A Utf8 column, or an error naming the file, column and type.
fn string_col<'a>(batch: &'a RecordBatch, name: &str, path: &str) -> Result<&'a StringArray> {
    let a = col(batch, name, path)?;
    a.as_string_opt::<i32>().ok_or_else(|| Error::BadInput {
        path: path.into(),
        reason: format!("column '{name}' is {}, expected Utf8", a.data_type()),
    })
}
