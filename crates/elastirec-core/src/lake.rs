//! The lake: object storage under one root, local folder or object store URL.
//!
//! [`Lake`] only moves whole objects. Every write here is a single `put` of the complete object,
//! which object stores make all-or-nothing (the local store writes a temporary file and renames
//! it), so a reader sees either the previous object or the new one, never half of it. Who writes
//! what and in which order is decided by the stages (manifests last), not here.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::error::{Error, Result};
use crate::layout;

/// The default lake root: a folder in the working directory.
pub const DEFAULT_LAKE_ROOT: &str = "./lake";

/// What `lake.json` holds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LakeMarker {
    /// The layout version the lake was written with (see [`layout::LAYOUT_VERSION`]).
    pub layout_version: u32,
    /// When the lake was created.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// The program that created it.
    pub created_by: String,
}

/// A handle on the lake: an object store rooted at the lake root, and the root's URL.
#[derive(Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    url: Url,
    options: HashMap<String, String>,
}

impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lake")
            .field("url", &self.url.as_str())
            .finish()
    }
}

impl Lake {
    /// Opens the lake at `root` (a path or a URL such as `s3://bucket/prefix`), creating
    /// `lake.json` if the lake is new and refusing a lake written by a newer layout.
    pub async fn open(root: &str, options: HashMap<String, String>) -> Result<Lake> {
        let lake = Lake::connect(root, options)?;
        lake.check_marker().await?;
        Ok(lake)
    }

    /// Builds the handle without touching storage.
    pub fn connect(root: &str, options: HashMap<String, String>) -> Result<Lake> {
        let root = root.trim();
        if root.is_empty() {
            return Err(Error::Config(
                "the lake root is empty: pass --lake PATH_OR_URL or set [lake] root".into(),
            ));
        }
        let is_url = root.contains("://");
        if !is_url || root.starts_with("file://") {
            let path = match root.strip_prefix("file://") {
                Some(p) => std::path::PathBuf::from(p),
                None => std::path::PathBuf::from(root),
            };
            std::fs::create_dir_all(&path).map_err(|e| {
                Error::Config(format!(
                    "cannot create the lake folder {}: {e} (check --lake and its permissions)",
                    path.display()
                ))
            })?;
            let abs = path.canonicalize().map_err(|e| {
                Error::Config(format!(
                    "cannot resolve the lake folder {}: {e}",
                    path.display()
                ))
            })?;
            let store = object_store::local::LocalFileSystem::new_with_prefix(&abs)
                .map_err(|e| Error::store(abs.display(), e))?;
            let url = Url::from_directory_path(&abs).map_err(|()| {
                Error::Config(format!("the lake folder {} is not absolute", abs.display()))
            })?;
            return Ok(Lake {
                store: Arc::new(store),
                url,
                options,
            });
        }
        let mut url = Url::parse(root)
            .map_err(|e| Error::Config(format!("--lake '{root}' is not a valid URL: {e}")))?;
        if !url.path().ends_with('/') {
            let p = format!("{}/", url.path());
            url.set_path(&p);
        }
        let (store, prefix) = object_store::parse_url_opts(&url, options.iter())
            .map_err(|e| Error::Config(format!("cannot use lake URL '{root}': {e}")))?;
        let store: Arc<dyn ObjectStore> = Arc::new(PrefixStore::new(store, prefix));
        Ok(Lake {
            store,
            url,
            options,
        })
    }

    async fn check_marker(&self) -> Result<()> {
        let path = layout::lake_marker();
        match self.get_json::<LakeMarker>(&path, "lake marker").await? {
            Some(marker) if marker.layout_version > layout::LAYOUT_VERSION => {
                Err(Error::Config(format!(
                    "the lake at {} has layout version {}, newer than this elastirec understands \
                     ({}): upgrade elastirec",
                    self.url,
                    marker.layout_version,
                    layout::LAYOUT_VERSION
                )))
            }
            Some(_) => Ok(()),
            None => {
                let marker = LakeMarker {
                    layout_version: layout::LAYOUT_VERSION,
                    created_at: chrono::Utc::now(),
                    created_by: format!("elastirec {}", env!("CARGO_PKG_VERSION")),
                };
                let body = serde_json::to_vec_pretty(&marker)
                    .map_err(|e| Error::Internal(format!("serialize lake marker: {e}")))?;
                // Create-only: two processes opening a new lake at once both succeed.
                match self
                    .store
                    .put_opts(&path, PutPayload::from(body), PutMode::Create.into())
                    .await
                {
                    Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
                    Err(e) => Err(Error::store(self.display_path(&path), e)),
                }
            }
        }
    }

    /// The object store, rooted at the lake root.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The lake root as a URL ending with `/`.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Storage options the lake was opened with (credentials, endpoint).
    pub fn options(&self) -> &HashMap<String, String> {
        &self.options
    }

    /// Whether the lake is a local folder.
    pub fn is_local(&self) -> bool {
        self.url.scheme() == "file"
    }

    /// The URL of a lake path, for tools that address objects by URL (Delta, users).
    pub fn url_of(&self, path: &Path) -> Url {
        let mut url = self.url.clone();
        let joined = format!("{}{}", self.url.path(), path.as_ref());
        url.set_path(&joined);
        url
    }

    /// A lake path as people should read it in messages: the full URL.
    pub fn display_path(&self, path: &Path) -> String {
        self.url_of(path).to_string()
    }

    /// Reads a whole object.
    pub async fn get(&self, path: &Path) -> Result<Bytes> {
        let result = self
            .store
            .get(path)
            .await
            .map_err(|e| Error::store(self.display_path(path), e))?;
        result
            .bytes()
            .await
            .map_err(|e| Error::store(self.display_path(path), e))
    }

    /// Reads a whole object, `None` when it does not exist.
    pub async fn get_opt(&self, path: &Path) -> Result<Option<Bytes>> {
        match self.store.get(path).await {
            Ok(r) => r
                .bytes()
                .await
                .map(Some)
                .map_err(|e| Error::store(self.display_path(path), e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::store(self.display_path(path), e)),
        }
    }

    /// Writes a whole object in one put.
    pub async fn put(&self, path: &Path, body: impl Into<PutPayload>) -> Result<()> {
        self.store
            .put(path, body.into())
            .await
            .map(|_| ())
            .map_err(|e| Error::store(self.display_path(path), e))
    }

    /// Writes a JSON document in one put.
    pub async fn put_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<()> {
        let mut body = serde_json::to_vec_pretty(value)
            .map_err(|e| Error::Internal(format!("serialize {path}: {e}")))?;
        body.push(b'\n');
        self.put(path, body).await
    }

    /// Writes a JSON document only if no object exists at `path` yet (a create-only put, atomic
    /// on every store); `false` when one already did.
    pub async fn put_json_create<T: Serialize>(&self, path: &Path, value: &T) -> Result<bool> {
        let mut body = serde_json::to_vec_pretty(value)
            .map_err(|e| Error::Internal(format!("serialize {path}: {e}")))?;
        body.push(b'\n');
        match self
            .store
            .put_opts(path, PutPayload::from(body), PutMode::Create.into())
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(Error::store(self.display_path(path), e)),
        }
    }

    /// The same lake over a store wrapped by `wrap` (tests inject faults this way).
    pub fn map_store(
        mut self,
        wrap: impl FnOnce(Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore>,
    ) -> Lake {
        self.store = wrap(self.store);
        self
    }

    /// Reads a JSON document, `None` when it does not exist.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        path: &Path,
        what: &'static str,
    ) -> Result<Option<T>> {
        let Some(bytes) = self.get_opt(path).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| Error::Json {
                path: self.display_path(path),
                what,
                source,
            })
    }

    /// Lists every object under `prefix`, sorted by path.
    pub async fn list(&self, prefix: &Path) -> Result<Vec<ObjectMeta>> {
        let mut all: Vec<ObjectMeta> = self
            .store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(|e| Error::store(self.display_path(prefix), e))?;
        all.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(all)
    }

    /// Deletes an object; one that is already gone is fine.
    pub async fn delete(&self, path: &Path) -> Result<()> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::store(self.display_path(path), e)),
        }
    }

    /// Deletes every object under `prefix` (used to discard a partial output before redoing it).
    pub async fn delete_prefix(&self, prefix: &Path) -> Result<usize> {
        let objects = self.list(prefix).await?;
        for meta in &objects {
            self.delete(&meta.location).await?;
        }
        Ok(objects.len())
    }

    /// Discards a dated output folder before it is redone: its completion marker (manifest)
    /// first, then every file, so no reader ever finds a marker beside a mix of old and new files.
    pub async fn clear_output(&self, marker: &Path, dir: &Path) -> Result<()> {
        self.delete(marker).await?;
        self.delete_prefix(dir).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opens_a_local_lake_and_roundtrips_json() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("lake");
        let lake = Lake::open(root.to_str().unwrap(), HashMap::new())
            .await
            .unwrap();
        assert!(lake.is_local());
        assert!(root.join("lake.json").exists());
        let p = Path::from("runs/x.json");
        lake.put_json(&p, &serde_json::json!({"a": 1}))
            .await
            .unwrap();
        let back: serde_json::Value = lake.get_json(&p, "test").await.unwrap().unwrap();
        assert_eq!(back["a"], 1);
        assert!(
            lake.get_json::<serde_json::Value>(&Path::from("nope"), "t")
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(lake.list(&Path::from("runs")).await.unwrap().len(), 1);
        assert!(lake.url_of(&p).as_str().ends_with("/lake/runs/x.json"));
    }

    #[tokio::test]
    async fn refuses_a_newer_layout() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("lake.json"),
            r#"{"layout_version": 999, "created_at": "2024-01-01T00:00:00Z", "created_by": "x"}"#,
        )
        .unwrap();
        let err = Lake::open(dir.path().to_str().unwrap(), HashMap::new())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("upgrade elastirec"), "{err}");
    }
}
