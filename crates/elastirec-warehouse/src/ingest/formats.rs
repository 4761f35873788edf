//! Raw files as producers write them: which format and compression a file is in, what is not a
//! data file at all, and the bytes of its records.
//!
//! The format comes from the file's name (`.csv`, `.json`/`.jsonl`/`.ndjson`, `.parquet`) unless
//! `[events] format` names one; a name that says nothing (Kinesis Firehose writes
//! `stream-1-2024-03-05-10-00-00-<uuid>`, with `.gz` at most) is read as its content shows
//! (Parquet's magic, a JSON object, or delimited text). The compression comes from a last `.gz`,
//! `.zst` or `.bz2`, checked against the file's first bytes, which also reveal a compressed file
//! whose name does not say so. Markers and hidden files (`_SUCCESS`,
//! any name starting with `_` or `.`, `*.crc`) are skipped and counted, never read.

use std::io::Read;

use elastirec_core::config::EventFormat;

/// How a raw file's records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Csv,
    JsonLines,
    Parquet,
}

impl Format {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Format::Csv => "CSV",
            Format::JsonLines => "JSON lines",
            Format::Parquet => "Parquet",
        }
    }
}

/// How a raw file's bytes are compressed as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
    Bzip2,
}

impl Compression {
    fn name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Bzip2 => "bzip2",
        }
    }

    /// The compression the first bytes announce.
    fn sniff(bytes: &[u8]) -> Compression {
        if bytes.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else if bytes.starts_with(b"BZh") {
            Compression::Bzip2
        } else {
            Compression::None
        }
    }
}

/// What a file under the raw prefix is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// A marker or hidden file (`_SUCCESS`, `.part`, `x.crc`): skipped and counted.
    Marker,
    /// A data file to read: its format when the name or `[events] format` says it (`None`:
    /// [`content_format`] tells it once the bytes are decompressed), and its compression.
    Data(Option<Format>, Compression),
}

/// Classifies a file by its name; an error says why it cannot be read and what to do.
pub(crate) fn classify(file_name: &str, configured: EventFormat) -> Result<FileKind, String> {
    if file_name.starts_with('_') || file_name.starts_with('.') || file_name.ends_with(".crc") {
        return Ok(FileKind::Marker);
    }
    let lower = file_name.to_ascii_lowercase();
    let (stem, compression) = [
        (".gz", Compression::Gzip),
        (".gzip", Compression::Gzip),
        (".zst", Compression::Zstd),
        (".zstd", Compression::Zstd),
        (".bz2", Compression::Bzip2),
    ]
    .iter()
    .find_map(|(ext, c)| lower.strip_suffix(ext).map(|s| (s, *c)))
    .unwrap_or((lower.as_str(), Compression::None));
    let by_name = if stem.ends_with(".csv") || stem.ends_with(".tsv") {
        Some(Format::Csv)
    } else if stem.ends_with(".json") || stem.ends_with(".jsonl") || stem.ends_with(".ndjson") {
        Some(Format::JsonLines)
    } else if stem.ends_with(".parquet") {
        Some(Format::Parquet)
    } else {
        None
    };
    let format = match configured {
        EventFormat::Auto => by_name,
        EventFormat::Csv => Some(Format::Csv),
        EventFormat::Jsonl => Some(Format::JsonLines),
        EventFormat::Parquet => Some(Format::Parquet),
    };
    Ok(FileKind::Data(format, compression))
}

/// The format of a file whose name does not say it, from its (decompressed) first bytes:
/// Parquet's `PAR1`, a JSON object (`{` after any byte order mark and blank space), or UTF-8
/// text whose first line holds the delimiter (CSV). Anything else is an error saying what to do.
pub(crate) fn content_format(plain: &[u8], delimiter: u8) -> Result<Format, String> {
    if plain.starts_with(b"PAR1") {
        return Ok(Format::Parquet);
    }
    let text = plain.strip_prefix(&[0xef, 0xbb, 0xbf]).unwrap_or(plain);
    let start = text.iter().position(|b| !b.is_ascii_whitespace());
    match start.map(|i| text[i]) {
        Some(b'{') => return Ok(Format::JsonLines),
        None => return Ok(Format::JsonLines), // empty: no records either way
        _ => {}
    }
    let first_line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    if std::str::from_utf8(first_line).is_ok() && first_line.contains(&delimiter) {
        return Ok(Format::Csv);
    }
    Err(format!(
        "neither its name (.csv, .json, .jsonl, .ndjson or .parquet, optionally with .gz, .zst \
         or .bz2) nor its content (Parquet, JSON objects, or text with the delimiter '{}' in \
         its first line) says its format: set [events] format = \"csv\", \"jsonl\" or \
         \"parquet\", or rename the file",
        (delimiter as char).escape_default()
    ))
}

/// The bytes of a file's records: decompressed as its name says, checked against its first
/// bytes. A compressed file whose name does not say so is decompressed as its bytes say.
pub(crate) fn decompress(body: bytes::Bytes, named: Compression) -> Result<bytes::Bytes, String> {
    let sniffed = Compression::sniff(&body);
    let compression = match (named, sniffed) {
        (n, s) if n == s => n,
        (Compression::None, s) => s,
        (n, s) => {
            let start: String = body
                .iter()
                .take(4)
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ");
            return Err(format!(
                "the name says {} but the content is {} (it starts with {start}): rename the \
                 file to match its content",
                n.name(),
                s.name()
            ));
        }
    };
    let mut out = Vec::new();
    let result = match compression {
        Compression::None => return Ok(body),
        // Multi-member: Firehose and `cat a.gz b.gz` concatenate gzip members.
        Compression::Gzip => flate2::read::MultiGzDecoder::new(&body[..]).read_to_end(&mut out),
        Compression::Zstd => {
            zstd::stream::read::Decoder::new(&body[..]).and_then(|mut d| d.read_to_end(&mut out))
        }
        Compression::Bzip2 => bzip2::read::MultiBzDecoder::new(&body[..]).read_to_end(&mut out),
    };
    result.map_err(|e| {
        format!(
            "cannot decompress it as {} ({e}): the file is truncated or corrupt; replace it, or \
             skip it with `elastirec ingest --skip-file`",
            compression.name()
        )
    })?;
    Ok(bytes::Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn names_give_format_and_compression() {
        let auto = EventFormat::Auto;
        assert_eq!(classify("_SUCCESS", auto), Ok(FileKind::Marker));
        assert_eq!(classify(".part-0.crc", auto), Ok(FileKind::Marker));
        assert_eq!(classify("x.parquet.crc", auto), Ok(FileKind::Marker));
        assert_eq!(
            classify("a.json.gz", auto),
            Ok(FileKind::Data(Some(Format::JsonLines), Compression::Gzip))
        );
        assert_eq!(
            classify("a.CSV.zst", auto),
            Ok(FileKind::Data(Some(Format::Csv), Compression::Zstd))
        );
        assert_eq!(
            classify("part-0.parquet", auto),
            Ok(FileKind::Data(Some(Format::Parquet), Compression::None))
        );
        // Firehose names say nothing: the content decides.
        assert_eq!(
            classify("firehose-1-2024-03-05-10-00-00-9f1c", auto),
            Ok(FileKind::Data(None, Compression::None))
        );
        assert_eq!(
            classify("firehose-1-2024.gz", EventFormat::Jsonl),
            Ok(FileKind::Data(Some(Format::JsonLines), Compression::Gzip))
        );
    }

    #[test]
    fn content_tells_the_format_of_a_file_whose_name_does_not() {
        assert_eq!(content_format(b"PAR1\x15\x04", b','), Ok(Format::Parquet));
        assert_eq!(
            content_format(b"\xef\xbb\xbf \n{\"type\":\"track\"}", b','),
            Ok(Format::JsonLines)
        );
        assert_eq!(
            content_format(b"USER_ID,ITEM_ID\n1,2\n", b','),
            Ok(Format::Csv)
        );
        let e = content_format(b"\x00\x01binary", b',').unwrap_err();
        assert!(e.contains("[events] format"), "{e}");
        let e = content_format(b"just words\n", b';').unwrap_err();
        assert!(e.contains("delimiter ';'"), "{e}");
    }

    #[test]
    fn content_is_checked_against_the_name() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"{\"a\":1}\n").unwrap();
        let gz = bytes::Bytes::from(gz.finish().unwrap());
        assert_eq!(
            decompress(gz.clone(), Compression::Gzip).unwrap(),
            &b"{\"a\":1}\n"[..]
        );
        // A gzip file named without .gz is read as what it is.
        assert_eq!(
            decompress(gz.clone(), Compression::None).unwrap(),
            &b"{\"a\":1}\n"[..]
        );
        let e = decompress(bytes::Bytes::from_static(b"a,b\n"), Compression::Gzip).unwrap_err();
        assert!(
            e.contains("the name says gzip but the content is uncompressed"),
            "{e}"
        );
        let truncated = gz.slice(..gz.len() - 6);
        let e = decompress(truncated, Compression::Gzip).unwrap_err();
        assert!(e.contains("truncated or corrupt"), "{e}");
        let z = zstd::stream::encode_all(&b"x,y\n"[..], 1).unwrap();
        assert_eq!(
            decompress(bytes::Bytes::from(z), Compression::Zstd).unwrap(),
            &b"x,y\n"[..]
        );
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(b"x,y\n").unwrap();
        assert_eq!(
            decompress(bytes::Bytes::from(bz.finish().unwrap()), Compression::Bzip2).unwrap(),
            &b"x,y\n"[..]
        );
    }
}
