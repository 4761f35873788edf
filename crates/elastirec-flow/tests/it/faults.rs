//! Transient failures are retried; invalid input is not.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

use elastirec_core::manifest::StepState;
use elastirec_core::{ErrorKind, layout};
use elastirec_flow::{Progress, Step};

use crate::{lake, night, pipeline, simulate_days};

/// A store that fails the next `failures` requests with a generic (network-like) error, the way
/// S3 answers 503 Slow Down, then behaves.
#[derive(Debug)]
struct FlakyStore {
    inner: Arc<dyn ObjectStore>,
    failures: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
}

impl fmt::Display for FlakyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FlakyStore({})", self.inner)
    }
}

impl FlakyStore {
    fn trip(&self) -> object_store::Result<()> {
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0
            && self
                .failures
                .compare_exchange(left, left - 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(object_store::Error::Generic {
                store: "flaky",
                source: "503 Slow Down (injected by the test)".into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for FlakyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.trip()?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.trip()?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.trip()?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.trip()?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        if let Err(e) = self.trip() {
            return Box::pin(futures::stream::once(async move { Err(e) }));
        }
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.trip()?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.trip()?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.trip()?;
        self.inner.rename_opts(from, to, options).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_is_retried_and_the_night_succeeds() {
    let (_dir, plain) = lake().await;
    simulate_days(&plain, 1).await;
    let failures = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let flaky = plain.clone().map_store(|inner| {
        Arc::new(FlakyStore {
            inner,
            failures: failures.clone(),
            failed: failed.clone(),
        })
    });
    let retries = Arc::new(AtomicUsize::new(0));
    let (arm, seen) = (failures.clone(), retries.clone());
    // The first lake request of the train step fails, as an S3 503 would.
    let p = pipeline(&flaky).with_progress(move |p| match p {
        Progress::StepStarted {
            step: Step::Train,
            attempt: 1,
            ..
        } => arm.store(1, Ordering::SeqCst),
        Progress::StepRetry { .. } => {
            seen.fetch_add(1, Ordering::SeqCst);
        }
        _ => {}
    });
    let n = night("2024-01-01");
    let record = p.run(n).await.expect("the night succeeds after a retry");
    assert_eq!(failed.load(Ordering::SeqCst), 1, "one request failed");
    assert_eq!(retries.load(Ordering::SeqCst), 1, "one retry");
    let train = record.step("train").unwrap();
    assert_eq!(train.state, StepState::Succeeded);
    assert_eq!(train.attempt, 2, "{train:?}");
    assert_eq!(record.step("prepare").unwrap().attempt, 1);
    assert_eq!(record.state, StepState::Succeeded);
    assert!(
        plain
            .get_opt(&layout::model_info(n))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_input_fails_at_once_without_retries() {
    let (dir, lake) = lake().await;
    simulate_days(&lake, 1).await;
    let n = night("2024-01-01");
    let manifest = dir
        .path()
        .join("lake")
        .join(layout::training_export_manifest(n).as_ref());
    let retries = Arc::new(AtomicUsize::new(0));
    let seen = retries.clone();
    // Someone overwrites the export manifest with garbage before training reads it.
    let p = pipeline(&lake).with_progress(move |p| match p {
        Progress::StepStarted {
            step: Step::Train, ..
        } => std::fs::write(&manifest, b"{ not json").unwrap(),
        Progress::StepRetry { .. } => {
            seen.fetch_add(1, Ordering::SeqCst);
        }
        _ => {}
    });
    let err = p
        .run(n)
        .await
        .expect_err("a corrupt manifest fails the night");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err:?}");
    assert_eq!(retries.load(Ordering::SeqCst), 0);
    let record = p.ledger().get(n).await.unwrap().unwrap();
    assert_eq!(record.state, StepState::Failed);
    let train = record.step("train").unwrap();
    assert_eq!(
        (train.state, train.attempt),
        (StepState::Failed, 1),
        "{train:?}"
    );
    assert_eq!(train.error_kind.as_deref(), Some("invalid_input"));
    assert!(
        train
            .outcome
            .as_deref()
            .unwrap_or("")
            .contains("_manifest.json"),
        "the error names the file: {train:?}"
    );
    // The steps after it did not run.
    assert!(record.step("recommend").is_none());
}
