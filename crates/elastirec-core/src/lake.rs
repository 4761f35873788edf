//! The lake: object storage under one root, local folder or object store URL.
//!
//! [`Lake`] only moves whole objects. Every write here is a single `put` of the complete object,
//! which object stores make all-or-nothing (the local store writes a temporary file and renames
//! it), so a reader sees either the previous object or the new one, never half of it. Who writes
//! what and in which order is decided by the stages (manifests last), not here.
//!
//! An S3 lake (`s3://bucket/prefix`) is configured by `[lake] options` (object_store's S3 keys:
//! `endpoint`, `region`, `allow_http`, `access_key_id`, ...) over the `AWS_*` environment
//! variables, with `[lake]` timeouts and retry limits. Opening a remote lake first runs
//! [`Lake::preflight`]: one listing, never retried, under a short timeout, so a wrong endpoint,
//! a missing bucket or rejected credentials stop the command at once with a configuration error
//! that names the endpoint, the bucket and the setting to fix.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    BackoffConfig, ClientConfigKey, ObjectMeta, ObjectStore, ObjectStoreExt, ObjectStoreScheme,
    PutMode, PutPayload, RetryConfig,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::aws::{self, SdkCredentials};
use crate::config::LakeConfig;
use crate::error::chain as error_chain;
use crate::error::{Error, Result};
use crate::layout;

/// The default lake root: a folder in the working directory.
pub const DEFAULT_LAKE_ROOT: &str = "./lake";

/// Option keys that are not object_store S3 keys but that delta-rs reads (retries, its S3
/// locking settings); allowed in `[lake] options` of an S3 lake and passed on to delta-rs only.
const DELTA_ONLY_OPTIONS: &[&str] = &[
    "max_retries",
    "retry_timeout",
    "backoff_config.init_backoff",
    "backoff_config.max_backoff",
    "backoff_config.base",
    "aws_s3_allow_unsafe_rename",
    "aws_s3_locking_provider",
    "aws_force_credential_load",
    "aws_profile",
    "profile",
];

/// What `lake.json` holds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LakeMarker {
    /// The layout version the lake was written with (see [`layout::LAYOUT_VERSION`]).
    pub layout_version: u32,
    /// When the lake was created.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// The program that created it.
    pub created_by: String,
    /// Upgrades by `elastirec migrate`, oldest first (absent from lakes never migrated).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub migrations: Vec<Migration>,
}

/// One upgrade of a lake's layout, as recorded in `lake.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Migration {
    pub from: u32,
    pub to: u32,
    pub at: chrono::DateTime<chrono::Utc>,
    pub by: String,
}

/// A remote lake's coordinates, for the preflight check and its messages.
#[derive(Clone)]
struct Remote {
    /// The same store as the lake's, but with retries off and short timeouts.
    probe: Arc<dyn ObjectStore>,
    /// The endpoint as people should read it (`AWS S3 (region …)` when none is configured).
    endpoint: String,
    /// The bucket (or container) name.
    bucket: String,
    /// How credentials are found when no keys are configured (options or
    /// `AWS_ACCESS_KEY_ID`): the SDK's provider chain, described for messages.
    credential_chain: Option<String>,
    preflight_timeout: Duration,
}

/// A handle on the lake: an object store rooted at the lake root, and the root's URL.
#[derive(Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    /// For an S3 lake, the same client at the bucket's root, which delta-rs is given.
    bucket_store: Option<Arc<dyn ObjectStore>>,
    url: Url,
    options: HashMap<String, String>,
    remote: Option<Remote>,
    /// The settings the handle was built with (for [`Lake::connect_source`]).
    config: LakeConfig,
}

impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lake")
            .field("url", &self.url.as_str())
            .finish()
    }
}

impl Lake {
    /// Opens the lake at `root` (a path or a URL such as `s3://bucket/prefix`) with default
    /// timeouts and retries: see [`Lake::open_config`].
    pub async fn open(root: &str, options: HashMap<String, String>) -> Result<Lake> {
        Lake::open_config(&LakeConfig {
            root: root.to_string(),
            options,
            ..LakeConfig::default()
        })
        .await
    }

    /// Opens the lake `[lake]` names: runs [`Lake::preflight`] on a remote lake, creates
    /// `lake.json` if the lake is new and refuses a lake written by a newer layout.
    pub async fn open_config(config: &LakeConfig) -> Result<Lake> {
        let lake = Lake::connect_config(config).await?;
        lake.preflight().await?;
        lake.check_marker(false).await?;
        Ok(lake)
    }

    /// Opens a lake for a command that only reads it (`runs`, `status`, `show`, `serve`, `sql`,
    /// ...): like [`Lake::open_config`], but a lake that does not exist (no folder, or no
    /// `lake.json` in it) is an error naming the place, and nothing is created there, so a
    /// mistyped `--lake` is not taken for a new, empty lake.
    pub async fn open_existing(config: &LakeConfig) -> Result<Lake> {
        let root = config.root.trim();
        let fix = "check --lake or [lake] root (`elastirec simulate`, `import`, `ingest` and \
                   `run` create a lake)";
        if !root.is_empty() && (!root.contains("://") || root.starts_with("file://")) {
            let path = std::path::Path::new(root.strip_prefix("file://").unwrap_or(root));
            if !path.is_dir() {
                return Err(Error::Config(format!(
                    "no lake at {}: the folder does not exist; {fix}",
                    path.display()
                )));
            }
        }
        let lake = Lake::connect_inner(config, false).await?;
        lake.preflight().await?;
        let marker = lake
            .get_json::<LakeMarker>(&layout::lake_marker(), "lake marker")
            .await?;
        if marker.is_none() {
            return Err(Error::Config(format!(
                "no lake at {}: it holds no {}; {fix}",
                lake.url,
                layout::lake_marker()
            )));
        }
        lake.check_marker(false).await?;
        Ok(lake)
    }

    /// Opens a lake for `elastirec migrate`: like [`Lake::open_config`], but a lake written by
    /// an older layout is opened (and left as it is) instead of refused.
    pub async fn open_for_migrate(config: &LakeConfig) -> Result<Lake> {
        let lake = Lake::connect_config(config).await?;
        lake.preflight().await?;
        lake.check_marker(true).await?;
        Ok(lake)
    }

    /// What `lake.json` says, if the lake has one.
    pub async fn marker(&self) -> Result<Option<LakeMarker>> {
        self.get_json::<LakeMarker>(&layout::lake_marker(), "lake marker")
            .await
    }

    /// Builds the handle without touching storage, with default timeouts and retries.
    pub async fn connect(root: &str, options: HashMap<String, String>) -> Result<Lake> {
        Lake::connect_config(&LakeConfig {
            root: root.to_string(),
            options,
            ..LakeConfig::default()
        })
        .await
    }

    /// Builds the handle without touching storage.
    pub async fn connect_config(config: &LakeConfig) -> Result<Lake> {
        Lake::connect_inner(config, true).await
    }

    /// A handle on another root read with this lake's settings: a producer's prefix that
    /// `[events] raw_prefix` names outside the lake (`s3://bucket/firehose/`, or
    /// `file:///data/firehose/`). An S3 source takes this lake's `[lake] options` when the lake
    /// is on S3 too (the same endpoint and credentials), else only the `AWS_*` environment;
    /// timeouts and retries are the lake's. A local source must exist (it is never created),
    /// and the remote one is checked like a lake ([`Lake::preflight`]).
    pub async fn connect_source(&self, root: &str) -> Result<Lake> {
        let options = if self.is_local() {
            HashMap::new()
        } else {
            self.config.options.clone()
        };
        let config = LakeConfig {
            root: root.to_string(),
            options,
            ..self.config.clone()
        };
        let source = Lake::connect_inner(&config, false).await?;
        source.preflight().await?;
        Ok(source)
    }

    async fn connect_inner(config: &LakeConfig, create: bool) -> Result<Lake> {
        let root = config.root.trim();
        let options = config.options.clone();
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
            if create {
                std::fs::create_dir_all(&path).map_err(|e| {
                    Error::Config(format!(
                        "cannot create the lake folder {}: {e} (check --lake and its permissions)",
                        path.display()
                    ))
                })?;
            } else if !path.is_dir() {
                return Err(Error::Config(format!(
                    "{} is not a folder (check [events] raw_prefix)",
                    path.display()
                )));
            }
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
                bucket_store: None,
                url,
                options,
                remote: None,
                config: config.clone(),
            });
        }
        let mut url = Url::parse(root)
            .map_err(|e| Error::Config(format!("--lake '{root}' is not a valid URL: {e}")))?;
        if !url.path().ends_with('/') {
            let p = format!("{}/", url.path());
            url.set_path(&p);
        }
        let (scheme, prefix) = ObjectStoreScheme::parse(&url)
            .map_err(|e| Error::Config(format!("cannot use lake URL '{root}': {e}")))?;
        let prefix = Path::parse(prefix)
            .map_err(|e| Error::Config(format!("cannot use lake URL '{root}': {e}")))?;
        let bucket = url.host_str().unwrap_or_default().to_string();
        if scheme == ObjectStoreScheme::AmazonS3 {
            let s3 = S3Settings::new(&url, &options, config).await?;
            let bucket_store = s3.build(config, false)?;
            let store: Arc<dyn ObjectStore> =
                Arc::new(PrefixStore::new(Arc::clone(&bucket_store), prefix.clone()));
            let probe: Arc<dyn ObjectStore> =
                Arc::new(PrefixStore::new(s3.build(config, true)?, prefix));
            return Ok(Lake {
                store,
                bucket_store: Some(bucket_store),
                url,
                options: s3.delta_options(&options, config),
                remote: Some(Remote {
                    probe,
                    endpoint: s3.endpoint_description(),
                    bucket,
                    credential_chain: s3.credential_chain(),
                    preflight_timeout: Duration::from_secs(config.preflight_timeout_seconds),
                }),
                config: config.clone(),
            });
        }
        // Other object stores (GCS, Azure, memory) through object_store's own URL parsing.
        let (store, _) = object_store::parse_url_opts(&url, options.iter())
            .map_err(|e| Error::Config(format!("cannot use lake URL '{root}': {e}")))?;
        let store: Arc<dyn ObjectStore> = Arc::new(PrefixStore::new(store, prefix));
        Ok(Lake {
            remote: Some(Remote {
                probe: store.clone(),
                endpoint: format!("{scheme:?}"),
                bucket,
                credential_chain: None,
                preflight_timeout: Duration::from_secs(config.preflight_timeout_seconds),
            }),
            store,
            bucket_store: None,
            url,
            options,
            config: config.clone(),
        })
    }

    /// A cheap check that the lake can be reached: one listing of the lake root, never
    /// retried, under `[lake] preflight_timeout_seconds`. A refused connection, an unknown host,
    /// a missing bucket or rejected credentials are configuration errors
    /// ([`crate::ErrorKind::InvalidInput`]) whose message names the endpoint, the bucket and
    /// the setting to fix; an answer of 5xx is a transient error. A local lake always passes
    /// (opening it created its folder).
    pub async fn preflight(&self) -> Result<()> {
        let Some(remote) = &self.remote else {
            return Ok(());
        };
        let listing = tokio::time::timeout(
            remote.preflight_timeout,
            remote.probe.list_with_delimiter(None),
        )
        .await;
        match listing {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(preflight_error(remote, &self.url, e)),
            Err(_) => Err(Error::Config(format!(
                "the object store at {} did not answer within {} s when listing bucket '{}' \
                 (lake {}): check lake.options.endpoint (or AWS_ENDPOINT_URL) and the network{}; \
                 a slow store may need a larger [lake] preflight_timeout_seconds",
                remote.endpoint,
                remote.preflight_timeout.as_secs(),
                remote.bucket,
                self.url,
                match &remote.credential_chain {
                    None => String::new(),
                    Some(chain) => format!(
                        ". No keys are configured (AWS_ACCESS_KEY_ID, lake.options.access_key_id), \
                         so credentials come from {chain}, which may have waited on the instance \
                         metadata service"
                    ),
                }
            ))),
        }
    }

    async fn check_marker(&self, allow_older: bool) -> Result<()> {
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
            Some(marker) if marker.layout_version < layout::LAYOUT_VERSION && !allow_older => {
                Err(Error::Config(format!(
                    "the lake at {} has layout version {}, older than this elastirec writes ({}): \
                     run `elastirec migrate --lake {}` once to upgrade it in place (see \
                     docs/lake-layout.md, \"Layout versions\")",
                    self.url,
                    marker.layout_version,
                    layout::LAYOUT_VERSION,
                    self.url
                )))
            }
            Some(_) => Ok(()),
            None => {
                let marker = LakeMarker {
                    layout_version: layout::LAYOUT_VERSION,
                    created_at: chrono::Utc::now(),
                    created_by: format!("elastirec {}", env!("CARGO_PKG_VERSION")),
                    migrations: Vec::new(),
                };
                // Create-only: two processes opening a new lake at once both succeed.
                self.put_json_create(&path, &marker).await.map(|_| ())
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

    /// Storage options for other clients of the same lake (delta-rs): the `[lake] options`,
    /// plus, for an S3 lake, the configured timeouts and retry limits.
    pub fn options(&self) -> &HashMap<String, String> {
        &self.options
    }

    /// The store delta-rs should reach this lake's tables through (with
    /// `DeltaTableBuilder::with_storage_backend`): for an S3 lake, the lake's own client at the
    /// bucket's root, so tables and files share its credentials (including the SDK's provider
    /// chain), timeouts and retries; `None` where delta-rs builds its own from the URL.
    pub fn bucket_store(&self) -> Option<Arc<dyn ObjectStore>> {
        self.bucket_store.clone()
    }

    /// Whether the lake is a local folder.
    pub fn is_local(&self) -> bool {
        self.url.scheme() == "file"
    }

    /// The file a lake path stands for on a local lake; `None` on a remote one.
    pub fn local_file(&self, path: &Path) -> Option<std::path::PathBuf> {
        if !self.is_local() {
            return None;
        }
        self.url_of(path).to_file_path().ok()
    }

    /// Whether a path of a local lake goes through a symbolic link below the lake's root (the
    /// file itself or one of its folders). The store would follow it out of the lake, so what
    /// elastirec reads from producers' folders is checked first. Always false on a remote lake.
    pub fn is_link(&self, path: &Path) -> bool {
        let (Some(file), Some(root)) = (self.local_file(path), self.local_file(&Path::from("")))
        else {
            return false;
        };
        let mut at = Some(file.as_path());
        while let Some(p) = at {
            if !p.starts_with(&root) || p == root {
                break;
            }
            if std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink()) {
                return true;
            }
            at = p.parent();
        }
        false
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

/// An S3 lake's settings: `AWS_*` environment variables, then the lake URL, then
/// `[lake] options`; timeouts and retries are applied per client by [`S3Settings::build`].
struct S3Settings {
    builder: AmazonS3Builder,
    /// The region read from the AWS profile (none was configured), which delta-rs is given too.
    profile_region: Option<String>,
    /// The SDK's provider chain, when neither the options nor the environment hold keys.
    credentials: Option<Arc<SdkCredentials>>,
}

impl S3Settings {
    async fn new(
        url: &Url,
        options: &HashMap<String, String>,
        config: &LakeConfig,
    ) -> Result<Self> {
        let mut builder = AmazonS3Builder::from_env().with_url(url.as_str());
        let mut keys: Vec<&String> = options.keys().collect();
        keys.sort();
        for key in keys {
            let lower = key.to_ascii_lowercase();
            match AmazonS3ConfigKey::from_str(&lower) {
                Ok(k) => builder = builder.with_config(k, options[key].clone()),
                Err(_) if DELTA_ONLY_OPTIONS.contains(&lower.as_str()) => {}
                Err(_) => {
                    return Err(Error::Config(format!(
                        "[lake] options: unknown key '{key}' for an S3 lake: use object_store's \
                         S3 keys such as endpoint, region, allow_http, access_key_id, \
                         secret_access_key, session_token, virtual_hosted_style_request"
                    )));
                }
            }
        }
        let mut settings = S3Settings {
            builder,
            profile_region: None,
            credentials: None,
        };
        settings.apply_profile(options).await;
        if let Some(endpoint) = settings.get(AmazonS3ConfigKey::Endpoint)
            && endpoint.starts_with("http://")
            && !settings
                .get(AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp))
                .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1"))
        {
            return Err(Error::Config(format!(
                "the S3 endpoint {endpoint} of lake {} uses plain http but http is not allowed: \
                 set lake.options.allow_http = \"true\" (or AWS_ALLOW_HTTP=true), or use https",
                config.root
            )));
        }
        Ok(settings)
    }

    fn get(&self, key: AmazonS3ConfigKey) -> Option<String> {
        self.builder.get_config_value(&key)
    }

    /// Without keys in the options or the environment, credentials come from the AWS SDK's
    /// provider chain for the profile named by `lake.options.profile` or `AWS_PROFILE` (else
    /// `default`): static keys, `role_arn`, SSO or `credential_process` profiles, then web
    /// identity, container and instance roles ([`crate::aws`]). Without a region in the
    /// options or the environment, the profile's region is used.
    async fn apply_profile(&mut self, options: &HashMap<String, String>) {
        let named = ["profile", "aws_profile"]
            .iter()
            .find_map(|k| options.get(*k).cloned())
            .or_else(|| std::env::var("AWS_PROFILE").ok())
            .filter(|p| !p.is_empty());
        if self.get(AmazonS3ConfigKey::Region).is_none()
            && let Some(region) = aws::profile_region(named.as_deref()).await
        {
            self.builder = std::mem::take(&mut self.builder)
                .with_config(AmazonS3ConfigKey::Region, region.clone());
            self.profile_region = Some(region);
        }
        if self.get(AmazonS3ConfigKey::AccessKeyId).is_none() {
            let credentials = Arc::new(SdkCredentials::new(named));
            self.builder =
                std::mem::take(&mut self.builder).with_credentials(Arc::clone(&credentials) as _);
            self.credentials = Some(credentials);
        }
    }

    /// The store for the lake (`probe: false`) or for its preflight check (`probe: true`: no
    /// retries, and timeouts no longer than the preflight's).
    fn build(&self, config: &LakeConfig, probe: bool) -> Result<Arc<dyn ObjectStore>> {
        let mut timeout = config.timeout_seconds;
        let mut connect = config.connect_timeout_seconds;
        let mut retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: config.max_retries,
            retry_timeout: Duration::from_secs(config.retry_timeout_seconds),
        };
        if probe {
            timeout = timeout.min(config.preflight_timeout_seconds);
            connect = connect.min(config.preflight_timeout_seconds);
            retry.max_retries = 0;
        }
        let mut builder = self.builder.clone();
        // An explicit option wins over the [lake] setting.
        for (key, seconds) in [
            (ClientConfigKey::Timeout, timeout),
            (ClientConfigKey::ConnectTimeout, connect),
        ] {
            if probe || self.get(AmazonS3ConfigKey::Client(key)).is_none() {
                builder =
                    builder.with_config(AmazonS3ConfigKey::Client(key), format!("{seconds}s"));
            }
        }
        let store = builder.with_retry(retry).build().map_err(|e| {
            Error::Config(format!(
                "cannot configure the S3 lake {}: {e} (check --lake, [lake] options and the \
                 AWS_* environment variables)",
                config.root
            ))
        })?;
        Ok(Arc::new(store))
    }

    /// What delta-rs needs to reach the same store: the options, plus the timeouts and retry
    /// limits unless an option sets them.
    fn delta_options(
        &self,
        options: &HashMap<String, String>,
        config: &LakeConfig,
    ) -> HashMap<String, String> {
        let mut out = options.clone();
        if let Some(region) = &self.profile_region {
            out.insert("region".to_string(), region.clone());
        }
        let lower: Vec<String> = options.keys().map(|k| k.to_ascii_lowercase()).collect();
        let has = |names: &[&str]| names.iter().any(|n| lower.iter().any(|k| k == n));
        let mut add = |names: &[&str], value: String| {
            if !has(names) {
                out.insert(names[0].to_string(), value);
            }
        };
        add(
            &["timeout", "aws_timeout"],
            format!("{}s", config.timeout_seconds),
        );
        add(
            &["connect_timeout", "aws_connect_timeout"],
            format!("{}s", config.connect_timeout_seconds),
        );
        add(&["max_retries"], config.max_retries.to_string());
        add(
            &["retry_timeout"],
            format!("{}s", config.retry_timeout_seconds),
        );
        out
    }

    fn endpoint_description(&self) -> String {
        match self.get(AmazonS3ConfigKey::Endpoint) {
            Some(endpoint) => endpoint,
            None => format!(
                "AWS S3 (region {})",
                self.get(AmazonS3ConfigKey::Region)
                    .unwrap_or_else(|| "us-east-1".into())
            ),
        }
    }

    /// Where credentials come from when they are not configured keys.
    fn credential_chain(&self) -> Option<String> {
        self.credentials.as_ref().map(|c| c.describe())
    }
}

/// Turns a failed preflight listing into an error that says what to fix.
fn preflight_error(remote: &Remote, url: &Url, err: object_store::Error) -> Error {
    use object_store::client::{HttpError, HttpErrorKind};
    let chain = error_chain(&err);
    let mut cause: String = chain.chars().take(400).collect();
    if cause.len() < chain.len() {
        cause.push('…');
    }
    let has = |needles: &[&str]| needles.iter().any(|n| chain.contains(n));
    let connect_failed =
        std::iter::successors(Some(&err as &(dyn std::error::Error + 'static)), |e| {
            e.source()
        })
        .any(|e| {
            e.downcast_ref::<HttpError>().is_some_and(|h| {
                matches!(h.kind(), HttpErrorKind::Connect | HttpErrorKind::Timeout)
            })
        });
    let (endpoint, bucket) = (&remote.endpoint, &remote.bucket);
    let is_denied = matches!(
        err,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    ) || has(&[
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "ExpiredToken",
        "InvalidToken",
        " 403 ",
        " 401 ",
    ]);
    if has(&["NoSuchBucket"]) || matches!(err, object_store::Error::NotFound { .. }) {
        return Error::Config(format!(
            "bucket '{bucket}' does not exist at {endpoint}: create it, or fix the bucket in \
             --lake / [lake] root ({url}) or the endpoint in lake.options.endpoint \
             (AWS_ENDPOINT_URL)"
        ));
    }
    let source = match &remote.credential_chain {
        Some(chain) => format!(
            "the credentials come from {chain} (no AWS_ACCESS_KEY_ID or \
             lake.options.access_key_id is set)"
        ),
        None => "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or \
                 lake.options.access_key_id, secret_access_key, session_token)"
            .to_string(),
    };
    if is_denied {
        return Error::Config(format!(
            "{endpoint} refused the credentials for bucket '{bucket}' ({url}): {source}, and \
             they must be allowed to list the lake; cause: {cause}"
        ));
    }
    if connect_failed
        || has(&[
            "dns error",
            "Connection refused",
            "connection refused",
            "tcp connect",
            "error trying to connect",
            "failed to lookup address",
        ])
    {
        return Error::Config(format!(
            "cannot connect to the object store at {endpoint} (bucket '{bucket}', lake {url}): \
             check lake.options.endpoint (or AWS_ENDPOINT_URL), lake.options.allow_http for an \
             http:// endpoint, and the network; cause: {cause}"
        ));
    }
    if chain.to_ascii_lowercase().contains("credential") {
        return Error::Config(format!(
            "no usable credentials for bucket '{bucket}' at {endpoint}: set AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY (or lake.options.access_key_id, secret_access_key), or name \
             an AWS profile (lake.options.profile or AWS_PROFILE: static keys, role_arn, SSO or \
             credential_process), or run where a web identity, container or instance role is \
             available; cause: {cause}"
        ));
    }
    // Anything else (a 5xx, throttling) may pass by itself.
    Error::store(format!("{url} (preflight at {endpoint})"), err)
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

    #[tokio::test]
    async fn refuses_an_older_layout_but_migrate_opens_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("lake.json"),
            r#"{"layout_version": 1, "created_at": "2024-01-01T00:00:00Z", "created_by": "x"}"#,
        )
        .unwrap();
        let root = dir.path().to_str().unwrap();
        let err = Lake::open(root, HashMap::new()).await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("elastirec migrate"), "{err}");
        let config = LakeConfig {
            root: root.into(),
            ..LakeConfig::default()
        };
        let lake = Lake::open_for_migrate(&config).await.unwrap();
        let marker = lake.marker().await.unwrap().unwrap();
        assert_eq!(marker.layout_version, 1);
        assert!(marker.migrations.is_empty());
    }

    fn s3_config(root: &str, options: &[(&str, &str)]) -> LakeConfig {
        LakeConfig {
            root: root.into(),
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..LakeConfig::default()
        }
    }

    /// A local port nothing listens on.
    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn s3_lakes_pass_timeouts_and_retries_to_delta() {
        let lake = Lake::connect_config(&s3_config(
            "s3://bkt/some/prefix",
            &[
                ("endpoint", "http://127.0.0.1:9"),
                ("allow_http", "true"),
                ("access_key_id", "k"),
                ("secret_access_key", "s"),
                ("max_retries", "7"),
            ],
        ))
        .await
        .unwrap();
        assert!(!lake.is_local());
        assert_eq!(lake.url().as_str(), "s3://bkt/some/prefix/");
        let o = lake.options();
        assert_eq!(o["timeout"], "30s");
        assert_eq!(o["connect_timeout"], "5s");
        assert_eq!(o["retry_timeout"], "60s");
        assert_eq!(o["max_retries"], "7", "an explicit option wins");
        assert_eq!(o["endpoint"], "http://127.0.0.1:9");
        assert_eq!(
            lake.url_of(&Path::from("warehouse/events")).as_str(),
            "s3://bkt/some/prefix/warehouse/events"
        );
    }

    #[tokio::test]
    async fn s3_option_mistakes_are_named() {
        let e = Lake::connect_config(&s3_config("s3://bkt/p", &[("endpoitn", "http://x")]))
            .await
            .err()
            .unwrap();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("unknown key 'endpoitn'"), "{e}");
        let e = Lake::connect_config(&s3_config(
            "s3://bkt/p",
            &[("endpoint", "http://127.0.0.1:9"), ("allow_http", "false")],
        ))
        .await
        .err()
        .unwrap();
        assert!(e.to_string().contains("lake.options.allow_http"), "{e}");
    }

    #[tokio::test]
    async fn preflight_fails_fast_on_a_dead_endpoint() {
        let endpoint = format!("http://127.0.0.1:{}", closed_port());
        let started = std::time::Instant::now();
        let e = Lake::open_config(&s3_config(
            "s3://bkt/p",
            &[
                ("endpoint", endpoint.as_str()),
                ("allow_http", "true"),
                ("access_key_id", "k"),
                ("secret_access_key", "s"),
            ],
        ))
        .await
        .err()
        .unwrap();
        let msg = e.to_string();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{msg}");
        assert!(msg.contains(&endpoint), "{msg}");
        assert!(msg.contains("bucket 'bkt'"), "{msg}");
        assert!(msg.contains("lake.options.endpoint"), "{msg}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn preflight_gives_up_on_a_silent_endpoint_after_its_timeout() {
        // Connections are accepted (by the kernel's backlog) and never answered.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", silent.local_addr().unwrap());
        let mut config = s3_config(
            "s3://bkt/p",
            &[
                ("endpoint", endpoint.as_str()),
                ("allow_http", "true"),
                ("access_key_id", "k"),
                ("secret_access_key", "s"),
            ],
        );
        config.preflight_timeout_seconds = 1;
        let started = std::time::Instant::now();
        let e = Lake::open_config(&config).await.err().unwrap();
        let msg = e.to_string();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{msg}");
        assert!(msg.contains(&endpoint), "{msg}");
        assert!(msg.contains("lake.options.endpoint"), "{msg}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "took {:?}",
            started.elapsed()
        );
    }

    fn generic(text: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: text.to_string().into(),
        }
    }

    #[tokio::test]
    async fn preflight_errors_say_what_to_fix() {
        let lake = Lake::connect_config(&s3_config(
            "s3://bkt/p",
            &[("endpoint", "http://127.0.0.1:9"), ("allow_http", "true")],
        ))
        .await
        .unwrap();
        let remote = lake.remote.as_ref().unwrap();
        let classify = |e| preflight_error(remote, lake.url(), e);
        let e = classify(generic(
            "Server returned non-2xx status code: 404 Not Found: <Code>NoSuchBucket</Code>",
        ));
        assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("bucket 'bkt' does not exist"), "{e}");
        let e = classify(generic(
            "Server returned non-2xx status code: 403 Forbidden: <Code>InvalidAccessKeyId</Code>",
        ));
        assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("AWS_ACCESS_KEY_ID"), "{e}");
        let e = classify(generic(
            "Server returned non-2xx status code: 503 Service Unavailable: SlowDown",
        ));
        assert_eq!(e.kind(), crate::ErrorKind::Transient, "{e}");
    }
}
