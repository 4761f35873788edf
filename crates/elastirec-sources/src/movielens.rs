//! `import movielens`: lays a MovieLens ratings file out as daily raw event files.
//!
//! Reads every published layout, detected by content rather than by file name:
//!
//! | layout | ratings | items |
//! |---|---|---|
//! | ml-20m, ml-25m, ml-latest | `ratings.csv` `userId,movieId,rating,timestamp` | `movies.csv` (RFC 4180) |
//! | ml-1m, ml-10m | `ratings.dat` `UserID::MovieID::Rating::Timestamp` | `movies.dat` `ID::Title::Genres` |
//! | ml-100k | `u.data` tab-separated, no header | `u.item` `|`-separated, latin-1, genre flags |
//!
//! (RecBole's `ml-100k.inter`, tab-separated with a typed header, reads as the ml-100k layout.)
//! Output: `raw/events/YYYY/MM/DD/movielens-ratings.csv` per UTC day of the timestamps, and
//! `raw/items/movielens-movies.csv`, both in ml-20m's columns. Importing the same file again
//! rewrites the same objects with the same bytes.

use std::collections::BTreeMap;
use std::path::Path;

use elastirec_core::{Lake, Night, layout};

use crate::{EVENTS_HEADER, Error, ITEMS_HEADER, Result};

/// File name of each day's ratings in `raw/events/YYYY/MM/DD/`.
pub const RATINGS_FILE_NAME: &str = "movielens-ratings.csv";
/// File name of the items in `raw/items/`.
pub const ITEMS_FILE_NAME: &str = "movielens-movies.csv";

/// The layout of a ratings file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RatingsLayout {
    /// ml-20m/25m/latest `ratings.csv`.
    Csv,
    /// ml-1m/10m `ratings.dat` with `::` separators.
    DoubleColon,
    /// ml-100k `u.data`, tab-separated (optionally with a header line, as RecBole ships it).
    Tab,
}

impl RatingsLayout {
    /// A name for messages.
    pub fn describe(self) -> &'static str {
        match self {
            RatingsLayout::Csv => "ml-20m ratings.csv (comma-separated)",
            RatingsLayout::DoubleColon => "ml-1m/ml-10m ratings.dat (::-separated)",
            RatingsLayout::Tab => "ml-100k u.data (tab-separated)",
        }
    }

    fn split(self, line: &str) -> Vec<&str> {
        match self {
            RatingsLayout::Csv => line.split(',').collect(),
            RatingsLayout::DoubleColon => line.split("::").collect(),
            RatingsLayout::Tab => line.split('\t').collect(),
        }
    }
}

/// Detects the layout of a ratings file from its first non-empty line.
pub fn detect_ratings_layout(first_line: &str) -> Option<RatingsLayout> {
    if first_line.contains("::") {
        Some(RatingsLayout::DoubleColon)
    } else if first_line.contains('\t') {
        Some(RatingsLayout::Tab)
    } else if first_line.contains(',') {
        Some(RatingsLayout::Csv)
    } else {
        None
    }
}

/// One parsed rating.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rating {
    pub user_id: i64,
    pub item_id: i64,
    pub rating: f32,
    pub timestamp: i64,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportReport {
    pub layout: RatingsLayout,
    pub ratings: u64,
    pub users: u64,
    pub days: u64,
    pub first_day: Option<Night>,
    pub last_day: Option<Night>,
    pub items: Option<u64>,
}

/// Parses a whole ratings file; any malformed line is an error naming the file and line.
pub fn parse_ratings(name: &str, text: &str) -> Result<(RatingsLayout, Vec<Rating>)> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, first)) = lines.clone().next() else {
        return Err(Error::Malformed {
            file: name.into(),
            line: 1,
            message: "the ratings file is empty".into(),
        });
    };
    let layout = detect_ratings_layout(first).ok_or_else(|| Error::Malformed {
        file: name.into(),
        line: 1,
        message: "not a MovieLens ratings file: expected fields separated by ',', '::' or a tab \
                  (userId, movieId, rating, timestamp)"
            .into(),
    })?;
    // A header names its columns; data starts with a number.
    let has_header = layout
        .split(first)
        .first()
        .is_some_and(|f| f.trim().parse::<i64>().is_err());
    if has_header {
        lines.next();
    }
    let mut out = Vec::with_capacity(text.len() / 24);
    for (index, line) in lines {
        let line_no = index as u64 + 1;
        let bad = |message: String| Error::Malformed {
            file: name.into(),
            line: line_no,
            message,
        };
        let fields = layout.split(line.trim_end_matches('\r'));
        if fields.len() != 4 {
            return Err(bad(format!(
                "expected 4 fields (userId, movieId, rating, timestamp) in the {} layout, found \
                 {}: '{line}'",
                layout.describe(),
                fields.len()
            )));
        }
        let int = |i: usize, what: &str| {
            fields[i].trim().parse::<i64>().map_err(|_| {
                bad(format!(
                    "{what} '{}' is not an integer: '{line}'",
                    fields[i]
                ))
            })
        };
        let user_id = int(0, "userId")?;
        let item_id = int(1, "movieId")?;
        let rating: f32 = fields[2]
            .trim()
            .parse()
            .map_err(|_| bad(format!("rating '{}' is not a number: '{line}'", fields[2])))?;
        if !rating.is_finite() || rating.abs() > 1e9 {
            return Err(bad(format!(
                "rating '{}' is not a finite number up to 1e9 in magnitude",
                fields[2]
            )));
        }
        // RecBole writes timestamps as floats ("881250949.0").
        let timestamp = match fields[3].trim().parse::<i64>() {
            Ok(t) => t,
            Err(_) => match fields[3].trim().parse::<f64>() {
                Ok(t) if t.is_finite() && t.fract() == 0.0 => t as i64,
                _ => {
                    return Err(bad(format!(
                        "timestamp '{}' is not whole Unix seconds: '{line}'",
                        fields[3]
                    )));
                }
            },
        };
        if Night::of_unix_seconds(timestamp).is_none() {
            return Err(bad(format!("timestamp {timestamp} is out of range")));
        }
        out.push(Rating {
            user_id,
            item_id,
            rating,
            timestamp,
        });
    }
    Ok((layout, out))
}

/// One item's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Movie {
    pub item_id: i64,
    pub title: String,
    pub genres: String,
}

/// ml-100k `u.item` genre flags, in column order.
const U_ITEM_GENRES: [&str; 19] = [
    "(no genres listed)",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
];

/// Parses a movies file in any layout (`movies.csv`, `movies.dat`, `u.item`).
pub fn parse_movies(name: &str, text: &str) -> Result<Vec<Movie>> {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let bad = |line: u64, message: String| Error::Malformed {
        file: name.into(),
        line,
        message,
    };
    let mut out = Vec::new();
    if first.contains("::") || first.split('|').count() >= 5 {
        let u_item = !first.contains("::");
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let line_no = index as u64 + 1;
            let fields: Vec<&str> = if u_item {
                line.split('|').collect()
            } else {
                line.split("::").collect()
            };
            let (id, title, genres) = if u_item {
                if fields.len() != 5 + U_ITEM_GENRES.len() {
                    return Err(bad(
                        line_no,
                        format!(
                            "expected {} '|'-separated fields (ml-100k u.item), found {}",
                            5 + U_ITEM_GENRES.len(),
                            fields.len()
                        ),
                    ));
                }
                let genres: Vec<&str> = fields[5..]
                    .iter()
                    .zip(U_ITEM_GENRES)
                    .filter(|(flag, _)| flag.trim() == "1")
                    .map(|(_, g)| g)
                    .collect();
                (fields[0], fields[1], genres.join("|"))
            } else {
                if fields.len() != 3 {
                    return Err(bad(
                        line_no,
                        format!(
                            "expected 3 '::'-separated fields (MovieID::Title::Genres), found {}",
                            fields.len()
                        ),
                    ));
                }
                (fields[0], fields[1], fields[2].to_string())
            };
            let item_id = id
                .trim()
                .parse()
                .map_err(|_| bad(line_no, format!("movie id '{id}' is not an integer")))?;
            out.push(Movie {
                item_id,
                title: title.to_string(),
                genres,
            });
        }
        return Ok(out);
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_bytes());
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            bad(line, format!("not a valid movies.csv row: {e}"))
        })?;
        let line = record.position().map_or(0, |p| p.line());
        if record.len() != 3 {
            return Err(bad(
                line,
                format!(
                    "expected 3 fields (movieId,title,genres), found {}",
                    record.len()
                ),
            ));
        }
        let item_id = record[0]
            .trim()
            .parse()
            .map_err(|_| bad(line, format!("movieId '{}' is not an integer", &record[0])))?;
        out.push(Movie {
            item_id,
            title: record[1].to_string(),
            genres: record[2].to_string(),
        });
    }
    Ok(out)
}

/// Reads a file as text: UTF-8 when it is, otherwise latin-1 (older MovieLens files).
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        file: path.display().to_string(),
        source,
    })?;
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => e.into_bytes().iter().map(|&b| char::from(b)).collect(),
    })
}

/// Formats ratings as a raw event file in ml-20m's columns.
pub fn format_events_csv<'a>(rows: impl IntoIterator<Item = &'a Rating>) -> String {
    use std::fmt::Write;
    let mut out = String::from(EVENTS_HEADER);
    out.push('\n');
    for r in rows {
        // `{:?}` keeps a decimal point on whole ratings ("4.0"), as MovieLens writes them.
        let _ = writeln!(
            out,
            "{},{},{:?},{}",
            r.user_id, r.item_id, r.rating, r.timestamp
        );
    }
    out
}

/// Formats items as `movieId,title,genres` with RFC 4180 quoting.
pub fn format_items_csv(movies: &[Movie]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let to_err = |e: csv::Error| Error::Options(format!("cannot format items: {e}"));
    w.write_record(ITEMS_HEADER).map_err(to_err)?;
    for m in movies {
        w.write_record([m.item_id.to_string().as_str(), &m.title, &m.genres])
            .map_err(to_err)?;
    }
    w.into_inner()
        .map_err(|e| Error::Options(format!("cannot format items: {e}")))
}

/// Imports a ratings file (and optionally a movies file) into the lake's raw area.
pub async fn import(lake: &Lake, ratings: &Path, items: Option<&Path>) -> Result<ImportReport> {
    let name = ratings.display().to_string();
    let text = read_text(ratings)?;
    let (layout, parsed) = parse_ratings(&name, &text)?;
    drop(text);
    let mut by_day: BTreeMap<Night, Vec<Rating>> = BTreeMap::new();
    let mut users = std::collections::HashSet::new();
    for r in &parsed {
        // parse_ratings checked the range.
        if let Some(day) = Night::of_unix_seconds(r.timestamp) {
            by_day.entry(day).or_default().push(*r);
        }
        users.insert(r.user_id);
    }
    for (day, rows) in by_day.iter_mut() {
        rows.sort_by_key(|r| (r.timestamp, r.user_id, r.item_id));
        let path = layout::raw_events_day(*day).join(RATINGS_FILE_NAME);
        lake.put(&path, format_events_csv(rows.iter()).into_bytes())
            .await?;
    }
    let items = match items {
        Some(path) => {
            let movies = parse_movies(&path.display().to_string(), &read_text(path)?)?;
            let body = format_items_csv(&movies)?;
            lake.put(&layout::raw_items_root().join(ITEMS_FILE_NAME), body)
                .await?;
            Some(movies.len() as u64)
        }
        None => None,
    };
    Ok(ImportReport {
        layout,
        ratings: parsed.len() as u64,
        users: users.len() as u64,
        days: by_day.len() as u64,
        first_day: by_day.keys().next().copied(),
        last_day: by_day.keys().next_back().copied(),
        items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_layout() {
        let csv = "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n";
        let dat = "1::1193::5::978300760\n1::661::3::978302109\n";
        let tab = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n";
        let inter =
            "user_id:token\titem_id:token\trating:float\ttimestamp:float\n196\t242\t3\t881250949\n";
        for (text, layout, n) in [
            (csv, RatingsLayout::Csv, 1),
            (dat, RatingsLayout::DoubleColon, 2),
            (tab, RatingsLayout::Tab, 2),
            (inter, RatingsLayout::Tab, 1),
        ] {
            let (got, rows) = parse_ratings("f", text).unwrap();
            assert_eq!(got, layout);
            assert_eq!(rows.len(), n);
        }
        let (_, rows) = parse_ratings("f", csv).unwrap();
        assert_eq!(
            rows[0],
            Rating {
                user_id: 1,
                item_id: 31,
                rating: 2.5,
                timestamp: 1_260_759_144
            }
        );
    }

    #[test]
    fn malformed_line_names_file_and_line() {
        let text = "1::1193::5::978300760\n1::661::x::978302109\n";
        let e = parse_ratings("ratings.dat", text).unwrap_err();
        assert_eq!(e.to_string().split(": ").next(), Some("ratings.dat:2"));
        assert!(e.to_string().contains("rating 'x'"), "{e}");
        let e = parse_ratings("u.data", "1\t2\t3\n").unwrap_err();
        assert!(
            e.to_string().starts_with("u.data:1: expected 4 fields"),
            "{e}"
        );
    }

    #[test]
    fn movies_in_every_layout() {
        let csv = "movieId,title,genres\n1,\"American President, The (1995)\",Comedy|Romance\n";
        let dat = "1::Toy Story (1995)::Animation|Children's|Comedy\n";
        let u_item =
            "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n";
        let m = parse_movies("movies.csv", csv).unwrap();
        assert_eq!(m[0].title, "American President, The (1995)");
        let m = parse_movies("movies.dat", dat).unwrap();
        assert_eq!(m[0].genres, "Animation|Children's|Comedy");
        let m = parse_movies("u.item", u_item).unwrap();
        assert_eq!(m[0].genres, "Animation|Children's|Comedy");
        let back =
            String::from_utf8(format_items_csv(&parse_movies("m", csv).unwrap()).unwrap()).unwrap();
        assert!(
            back.contains("\"American President, The (1995)\""),
            "{back}"
        );
    }
}
