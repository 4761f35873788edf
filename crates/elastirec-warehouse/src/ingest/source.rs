//! Where raw event files are read: `raw/events/` of the lake, another folder of the lake, or a
//! producer's own prefix outside it (`[events] raw_prefix = "s3://bucket/firehose/"`).
//!
//! A file is named in the load ledger, in rejects and in `events.source_file` by its lake path
//! (`raw/events/2024/03/05/app.csv`) when it is in the lake, and by its full URL
//! (`s3://bucket/firehose/2024/03/05/09/f.gz`) when it is not, so the two never collide and
//! every message says where the file is.

use object_store::ObjectMeta;
use object_store::path::Path;

use elastirec_core::config::EventsConfig;
use elastirec_core::lake::Lake;
use elastirec_core::{Night, layout};

use crate::{Error, Result};

/// The raw event files' store and folder.
#[derive(Debug, Clone)]
pub(crate) struct RawSource {
    /// The lake itself, or a handle on the producer's prefix.
    store: Lake,
    /// The folder within `store` whose `YYYY/MM/DD/[HH/]` folders hold the files.
    root: Path,
    /// Whether the files are outside the lake (named by URL).
    outside: bool,
}

fn config_error(message: String) -> Error {
    Error::Lake(elastirec_core::Error::Config(message))
}

impl RawSource {
    /// The source `[events] raw_prefix` names (a folder of the lake, or a URL), else
    /// `raw/events/` of the lake.
    pub(crate) async fn of(lake: &Lake, events: &EventsConfig) -> Result<RawSource> {
        let Some(prefix) = events.raw_prefix.as_deref().map(str::trim) else {
            return Ok(RawSource {
                store: lake.clone(),
                root: layout::raw_events_root(),
                outside: false,
            });
        };
        if prefix.is_empty() {
            return Err(config_error(
                "[events] raw_prefix is empty: leave it out to read raw/events/ of the lake, or \
                 name a folder of the lake or a URL such as s3://bucket/firehose/"
                    .into(),
            ));
        }
        // A folder of the lake, read through the lake's own store.
        let in_lake = |folder: &str| {
            let root = Path::parse(folder.trim_matches('/')).map_err(|e| {
                config_error(format!(
                    "[events] raw_prefix = '{prefix}' is not a valid path: {e}"
                ))
            })?;
            Ok(RawSource {
                store: lake.clone(),
                root,
                outside: false,
            })
        };
        if !prefix.contains("://") {
            return in_lake(prefix);
        }
        // A URL inside the lake is a folder of the lake.
        let lake_url = lake.url().as_str();
        let with_slash = if prefix.ends_with('/') {
            prefix.to_string()
        } else {
            format!("{prefix}/")
        };
        if let Some(inside) = with_slash.strip_prefix(lake_url) {
            return in_lake(inside);
        }
        let store = lake.connect_source(prefix).await.map_err(|e| {
            config_error(format!(
                "cannot read [events] raw_prefix = '{prefix}': {}",
                elastirec_core::error::chain(&e)
            ))
        })?;
        Ok(RawSource {
            store,
            root: Path::default(),
            outside: true,
        })
    }

    /// Whether the files are a producer's prefix outside the lake (read only).
    pub(crate) fn is_outside(&self) -> bool {
        self.outside
    }

    /// Every object under the source's folder, sorted by path.
    pub(crate) async fn list(&self) -> Result<Vec<ObjectMeta>> {
        Ok(self.store.list(&self.root).await?)
    }

    /// Every object under `folder` (a folder within the source's store), sorted by path.
    pub(crate) async fn list_under(&self, folder: &Path) -> Result<Vec<ObjectMeta>> {
        Ok(self.store.list(folder).await?)
    }

    /// Whether a listed file of a local source is, or lies under, a symbolic link: such a file
    /// is not read (the link could point anywhere on the machine); the load rejects it.
    pub(crate) fn is_link(&self, location: &Path) -> bool {
        self.store.is_link(location)
    }

    /// A file's whole body.
    pub(crate) async fn get(&self, location: &Path) -> Result<bytes::Bytes> {
        Ok(self.store.get(location).await?)
    }

    /// The arrival day of a listed object (`YYYY/MM/DD/[HH/]name` under the folder).
    pub(crate) fn day(&self, location: &Path) -> Option<Night> {
        layout::raw_file_day(&self.root, location)
    }

    /// How the ledger, rejects and `source_file` name a listed file.
    pub(crate) fn name(&self, location: &Path) -> String {
        if self.outside {
            self.store.display_path(location)
        } else {
            location.to_string()
        }
    }

    /// The listed location a name (as [`RawSource::name`] gives it) stands for, if it is one of
    /// this source's.
    pub(crate) fn location(&self, name: &str) -> Option<Path> {
        let relative = if self.outside {
            name.strip_prefix(self.store.url().as_str())?
        } else {
            name
        };
        let path = Path::parse(relative).ok()?;
        path.prefix_matches(&self.root).then_some(path)
    }

    /// How a file of 2024-01-05 would be named, for messages.
    pub(crate) fn example(&self) -> String {
        let parts = ["2024", "01", "05", "app.json.gz"].map(object_store::path::PathPart::from);
        self.name(&Path::from_iter(self.root.parts().chain(parts)))
    }

    /// The folder as people should read it (a URL ending in `/`).
    pub(crate) fn display(&self) -> String {
        self.store.display_path(&self.root)
    }
}
