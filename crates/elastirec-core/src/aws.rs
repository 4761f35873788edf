//! AWS credentials and region for an S3 lake that has no keys in `[lake] options` or the
//! environment: the AWS SDK's default provider chain (`aws-config`), so a profile may hold
//! static keys, assume a role (`role_arn` with `source_profile`), sign in through IAM Identity
//! Center (`sso_session` / `sso_*`) or run a `credential_process`; web identity tokens,
//! container and instance roles follow, as in every AWS SDK.
//!
//! The lake's store and delta-rs (which is handed the same store) share one provider, so both
//! act as one identity, and a credential is fetched once and reused until five minutes before
//! it expires.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::meta::region::ProvideRegion;
use aws_config::profile::ProfileFileRegionProvider;
use aws_credential_types::provider::ProvideCredentials;
use object_store::CredentialProvider;
use object_store::aws::AwsCredential;
use tokio::sync::{Mutex, OnceCell};

use crate::error::chain as error_chain;

/// A credential is fetched again this long before it expires.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// The region of `profile` (else of `AWS_PROFILE`, else of `default`) in the shared AWS files,
/// following `source_profile`; `None` when no profile names one.
pub(crate) async fn profile_region(profile: Option<&str>) -> Option<String> {
    let mut builder = ProfileFileRegionProvider::builder();
    if let Some(name) = profile {
        builder = builder.profile_name(name);
    }
    builder.build().region().await.map(|r| r.to_string())
}

/// An object_store [`CredentialProvider`] over the SDK's default chain.
pub(crate) struct SdkCredentials {
    profile: Option<String>,
    chain: OnceCell<DefaultCredentialsChain>,
    cached: Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
}

impl std::fmt::Debug for SdkCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credential itself.
        f.debug_struct("SdkCredentials")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

impl SdkCredentials {
    /// A provider for `profile` (`None`: `AWS_PROFILE`, else `default`). Nothing is read
    /// until the first request needs a credential.
    pub(crate) fn new(profile: Option<String>) -> SdkCredentials {
        SdkCredentials {
            profile,
            chain: OnceCell::new(),
            cached: Mutex::new(None),
        }
    }

    /// How the credentials are found, for messages.
    pub(crate) fn describe(&self) -> String {
        match &self.profile {
            Some(p) => format!("the AWS SDK provider chain with profile '{p}'"),
            None => "the AWS SDK provider chain (AWS_PROFILE, else the default profile, web \
                     identity, container or instance role)"
                .to_string(),
        }
    }
}

/// Why no credential could be had, with the chain's own explanation.
#[derive(Debug)]
struct NoCredentials(String);

impl std::fmt::Display for NoCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NoCredentials {}

#[async_trait]
impl CredentialProvider for SdkCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let mut cached = self.cached.lock().await;
        if let Some((credential, expiry)) = cached.as_ref()
            && expiry.is_none_or(|e| SystemTime::now() + REFRESH_BEFORE < e)
        {
            return Ok(Arc::clone(credential));
        }
        let chain = self
            .chain
            .get_or_init(|| async {
                let mut builder = DefaultCredentialsChain::builder();
                if let Some(name) = &self.profile {
                    builder = builder.profile_name(name);
                }
                builder.build().await
            })
            .await;
        let found =
            chain
                .provide_credentials()
                .await
                .map_err(|e| object_store::Error::Generic {
                    store: "S3",
                    source: Box::new(NoCredentials(format!(
                        "no credential from {}: {}",
                        self.describe(),
                        error_chain(&e)
                    ))),
                })?;
        let credential = Arc::new(AwsCredential {
            key_id: found.access_key_id().to_string(),
            secret_key: found.secret_access_key().to_string(),
            token: found.session_token().map(str::to_string),
        });
        *cached = Some((Arc::clone(&credential), found.expiry()));
        Ok(credential)
    }
}
