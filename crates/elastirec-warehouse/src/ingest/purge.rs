//! `forget --purge-raw`: a raw event file without the records of erased users, in the file's
//! own format and compression, read by the same readers and field mapping as a load.
//!
//! A record is a user's when its user field (the `[events]` mapping's, first name present) is
//! one of the external ids given, whatever its kind (a Segment `identify` call carrying the
//! user's traits goes too). CSV and JSON lines keep every other byte as it was (header, other
//! lines, blank lines, lines that cannot be read); a Parquet file is rewritten with its other
//! rows. A compressed file is compressed again with the same codec.

use std::collections::HashSet;
use std::io::Write;

use deltalake::arrow::array::BooleanArray;
use deltalake::arrow::compute::filter_record_batch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use elastirec_core::config::EventsConfig;

use super::formats::{self, Compression, FileKind, Format};
use super::records::{self, FieldSpec};

/// A raw file's bytes without the records of `users`, and how many records went; `Ok(None)`
/// when the file is not a data file (a marker) or holds none of their records. An error says
/// why the file could not be read (it is then left as it is).
pub(crate) fn without_users(
    name: &str,
    body: bytes::Bytes,
    users: &HashSet<&str>,
    events: &EventsConfig,
) -> Result<Option<(Vec<u8>, u64)>, String> {
    let file_name = name.rsplit('/').next().unwrap_or(name);
    let (format, compression) = match formats::classify(file_name, events.format)? {
        FileKind::Marker => return Ok(None),
        FileKind::Data(f, c) => (f, c),
    };
    let plain = formats::decompress(body, compression)?;
    let format = format.map_or_else(
        || formats::content_format(&plain, events.delimiter as u8),
        Ok,
    )?;
    let mapping = events.mapping()?;
    let user = FieldSpec {
        names: mapping.user.names.clone(),
        setting: mapping.user.setting,
        required: true,
    };
    let (kept, removed) = match format {
        Format::Csv | Format::JsonLines => {
            // Each record's first byte, and whether it goes.
            let mut starts: Vec<(usize, bool)> = Vec::new();
            records::read_records(
                format,
                &plain,
                events.delimiter as u8,
                std::slice::from_ref(&user),
                |pos, record| {
                    let Some(byte) = pos.byte else { return };
                    let drop = record.ok().and_then(|f| f.into_iter().next().flatten());
                    let drop = drop.is_some_and(|v| users.contains(v.text().trim()));
                    starts.push((byte, drop));
                },
            )?;
            let removed = starts.iter().filter(|(_, d)| *d).count() as u64;
            if removed == 0 {
                return Ok(None);
            }
            let mut out = plain[..starts.first().map_or(plain.len(), |s| s.0)].to_vec();
            for (i, &(start, drop)) in starts.iter().enumerate() {
                let end = starts.get(i + 1).map_or(plain.len(), |s| s.0);
                if !drop {
                    out.extend_from_slice(&plain[start..end]);
                }
            }
            (out, removed)
        }
        Format::Parquet => {
            let mut keep = Vec::new();
            records::read_records(format, &plain, 0, std::slice::from_ref(&user), |_, r| {
                let v = r.ok().and_then(|f| f.into_iter().next().flatten());
                keep.push(!v.is_some_and(|v| users.contains(v.text().trim())));
            })?;
            let removed = keep.iter().filter(|k| !**k).count() as u64;
            if removed == 0 {
                return Ok(None);
            }
            (parquet_rows(&plain, &keep)?, removed)
        }
    };
    Ok(Some((compress(kept, compression)?, removed)))
}

/// A Parquet file of the rows of `body` whose `keep` is true, in order.
fn parquet_rows(body: &bytes::Bytes, keep: &[bool]) -> Result<Vec<u8>, String> {
    let unreadable = |e: &dyn std::fmt::Display| format!("not a readable Parquet file: {e}");
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(body.clone()).map_err(|e| unreadable(&e))?;
    let schema = builder.schema().clone();
    let reader = builder
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| unreadable(&e))?;
    let mut out = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut out, schema, None).map_err(|e| format!("Parquet: {e}"))?;
    let mut row = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| unreadable(&e))?;
        let n = batch.num_rows();
        let mask = keep
            .get(row..row + n)
            .ok_or("the file changed while it was read")?;
        row += n;
        let kept = filter_record_batch(&batch, &BooleanArray::from(mask.to_vec()))
            .map_err(|e| format!("Parquet: {e}"))?;
        writer.write(&kept).map_err(|e| format!("Parquet: {e}"))?;
    }
    writer.close().map_err(|e| format!("Parquet: {e}"))?;
    Ok(out)
}

/// `plain` compressed with `compression`, as the file was.
fn compress(plain: Vec<u8>, compression: Compression) -> Result<Vec<u8>, String> {
    let failed = |e: std::io::Error| format!("cannot compress it again: {e}");
    match compression {
        Compression::None => Ok(plain),
        Compression::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(&plain).map_err(failed)?;
            gz.finish().map_err(failed)
        }
        Compression::Zstd => zstd::stream::encode_all(&plain[..], 3).map_err(failed),
        Compression::Bzip2 => {
            let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
            bz.write_all(&plain).map_err(failed)?;
            bz.finish().map_err(failed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn users(ids: &[&'static str]) -> HashSet<&'static str> {
        ids.iter().copied().collect()
    }

    #[test]
    fn csv_lines_of_the_users_go_and_every_other_byte_stays() {
        let cfg = EventsConfig::default();
        let body = "userId,movieId,rating,timestamp\n1,10,4.0,5\n2,11,3.0,6\n\n1,12,2.0,7\n3,1,1,8";
        let (kept, removed) = without_users("a.csv", body.into(), &users(&["1"]), &cfg)
            .unwrap()
            .unwrap();
        assert_eq!(removed, 2);
        assert_eq!(
            String::from_utf8(kept).unwrap(),
            "userId,movieId,rating,timestamp\n2,11,3.0,6\n\n3,1,1,8"
        );
        assert!(
            without_users("a.csv", body.into(), &users(&["9"]), &cfg)
                .unwrap()
                .is_none()
        );
        // A file without the user column cannot be purged, and says why.
        let e = without_users("b.csv", "a,b\n1,2\n".into(), &users(&["1"]), &cfg).unwrap_err();
        assert!(e.contains("userId"), "{e}");
    }

    #[test]
    fn csv_string_ids_match_exactly_as_ingest_reads_them() {
        let cfg = EventsConfig::default();
        let body = "userId,movieId,rating,timestamp\n\
                    u-alice,10,4.0,5\n \"u-alice\" ,11,3.0,6\nu-alice2,12,2.0,7\n\
                    42,1,1,8\n042,1,1,9\n\"dom\\bob, jr\",1,1,10\n";
        let (kept, removed) = without_users(
            "a.csv",
            body.into(),
            &users(&["u-alice", "42", "dom\\bob, jr"]),
            &cfg,
        )
        .unwrap()
        .unwrap();
        // A quoted field with spaces outside the quotes is not the id CSV reads: kept.
        assert_eq!(removed, 3);
        assert_eq!(
            String::from_utf8(kept).unwrap(),
            "userId,movieId,rating,timestamp\n \"u-alice\" ,11,3.0,6\nu-alice2,12,2.0,7\n\
             042,1,1,9\n"
        );
    }

    #[test]
    fn gzip_json_lines_lose_every_record_of_the_user_whatever_its_kind() {
        let cfg: EventsConfig = toml::from_str("preset = \"segment\"").unwrap();
        let lines = concat!(
            r#"{"type":"track","event":"v","userId":"u-1","properties":{"sku":"A"},"timestamp":"2024-01-01T00:00:00Z"}"#,
            "\n",
            r#"{"type":"identify","userId":"u-1","traits":{"email":"a@b.c"}}"#,
            "\n",
            "not json\n",
            r#"{"type":"track","event":"v","userId":null,"anonymousId":"u-2","properties":{"sku":"A"},"timestamp":"2024-01-01T00:00:00Z"}"#,
            "\n"
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(lines.as_bytes()).unwrap();
        let body = gz.finish().unwrap();
        let (kept, removed) = without_users("f.json.gz", body.into(), &users(&["u-1"]), &cfg)
            .unwrap()
            .unwrap();
        assert_eq!(removed, 2);
        let mut text = String::new();
        flate2::read::GzDecoder::new(&kept[..])
            .read_to_string(&mut text)
            .unwrap();
        assert!(!text.contains("u-1") && !text.contains("a@b.c"), "{text}");
        assert!(
            text.starts_with("not json\n") && text.contains("u-2"),
            "{text}"
        );
    }

    #[test]
    fn zstd_and_bzip2_files_come_back_in_their_codec() {
        let cfg = EventsConfig::default();
        let body = "userId,movieId,rating,timestamp\n1,10,4.0,5\n2,11,3.0,6\n";
        for (name, packed) in [
            (
                "a.csv.zst",
                zstd::stream::encode_all(body.as_bytes(), 1).unwrap(),
            ),
            (
                "a.csv.bz2",
                compress(body.as_bytes().to_vec(), Compression::Bzip2).unwrap(),
            ),
        ] {
            let (kept, removed) = without_users(name, packed.into(), &users(&["1"]), &cfg)
                .unwrap()
                .unwrap();
            assert_eq!(removed, 1, "{name}");
            let plain = formats::decompress(kept.into(), Compression::None).unwrap();
            assert_eq!(
                &plain[..],
                b"userId,movieId,rating,timestamp\n2,11,3.0,6\n",
                "{name}"
            );
        }
    }

    #[test]
    fn parquet_keeps_the_other_rows_and_the_schema() {
        use deltalake::arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray};
        use std::sync::Arc;
        let batch = RecordBatch::try_from_iter([
            (
                "USER_ID",
                Arc::new(StringArray::from(vec!["a", "b", "a"])) as _,
            ),
            (
                "ITEM_ID",
                Arc::new(StringArray::from(vec!["x", "y", "z"])) as _,
            ),
            ("TIMESTAMP", Arc::new(Int64Array::from(vec![1, 2, 3])) as _),
        ])
        .unwrap();
        let mut body = Vec::new();
        let mut w = ArrowWriter::try_new(&mut body, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let cfg: EventsConfig = toml::from_str("preset = \"personalize\"").unwrap();
        let (kept, removed) = without_users("p.parquet", body.into(), &users(&["a"]), &cfg)
            .unwrap()
            .unwrap();
        assert_eq!(removed, 2);
        let rows: Vec<RecordBatch> =
            ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(kept))
                .unwrap()
                .build()
                .unwrap()
                .map(Result::unwrap)
                .collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].schema(), batch.schema());
        let users = rows[0].column(0).as_string::<i32>();
        assert_eq!((users.len(), users.value(0)), (1, "b"));
    }
}
