//! Hooks: a shell command or a webhook told how each night ended, for alerting.
//!
//! Both get the same JSON summary: `{night, state, published, held_reason, failed_step, error,
//! error_kind, seconds, lake}`. A hook that fails is logged; it never changes the night.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Serialize;

use elastirec_core::config::HooksConfig;
use elastirec_core::manifest::{RunRecord, StepState};

/// The summary hooks receive.
#[derive(Debug, Clone, Serialize)]
pub struct NightSummary {
    pub night: String,
    /// `succeeded`, `failed` or `held`.
    pub state: String,
    pub published: bool,
    pub held_reason: Option<String>,
    pub failed_step: Option<String>,
    pub error: Option<String>,
    pub error_kind: Option<String>,
    pub seconds: f64,
    pub lake: String,
}

impl NightSummary {
    pub fn of(record: &RunRecord, lake: &str) -> NightSummary {
        let failed = record.steps.iter().find(|s| s.state == StepState::Failed);
        let held = record
            .publish
            .as_ref()
            .filter(|p| !p.published && p.reason.is_some());
        let state = if record.state != StepState::Succeeded {
            "failed"
        } else if held.is_some() {
            "held"
        } else {
            "succeeded"
        };
        NightSummary {
            night: record.night.to_string(),
            state: state.into(),
            published: record.publish.as_ref().is_some_and(|p| p.published),
            held_reason: held.and_then(|p| p.reason.clone()),
            failed_step: failed.map(|s| s.name.clone()),
            error: failed.and_then(|s| s.outcome.clone()),
            error_kind: failed.and_then(|s| s.error_kind.clone()),
            seconds: record.compute_seconds(),
            lake: lake.to_string(),
        }
    }
}

/// The longest a webhook may take, connecting and answering included.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// Calls the configured hooks for a finished night.
pub async fn notify(config: &HooksConfig, summary: &NightSummary) {
    let Ok(json) = serde_json::to_vec(summary) else {
        return;
    };
    let command = if summary.state == "succeeded" {
        config.on_success.as_deref()
    } else {
        config.on_failure.as_deref()
    };
    if let Some(command) = command {
        let (command, json, summary) = (command.to_string(), json.clone(), summary.clone());
        let timeout = Duration::from_secs(config.timeout_seconds.max(1));
        let result =
            tokio::task::spawn_blocking(move || run_command(&command, &json, &summary, timeout))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r);
        if let Err(e) = result {
            tracing::warn!(error = %e, "the night's hook command failed");
        }
    }
    if let Some(url) = &config.webhook_url
        && let Err(e) = post(config, url, &json).await
    {
        let url = webhook_origin(url);
        tracing::warn!(%url, error = %e, "the night's webhook failed");
    }
}

/// Sends `summary` to `[hooks] webhook_url` (nothing when none is set); the error is what
/// [`notify`] logs, without the URL's path or query.
pub async fn webhook(config: &HooksConfig, summary: &NightSummary) -> Result<(), String> {
    let Some(url) = &config.webhook_url else {
        return Ok(());
    };
    let json = serde_json::to_vec(summary).map_err(|e| e.to_string())?;
    post(config, url, &json).await
}

/// Runs a hook in its own process group; past `timeout` the group is killed.
fn run_command(
    command: &str,
    json: &[u8],
    summary: &NightSummary,
    timeout: Duration,
) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("ELASTIREC_NIGHT", &summary.night)
        .env("ELASTIREC_STATE", &summary.state)
        .stdin(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start `{command}`: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its input must not block the night: write from a thread.
        let json = json.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&json);
        });
    }
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if std::time::Instant::now() >= deadline => {
                if let Ok(pid) = i32::try_from(child.id()) {
                    // SAFETY: kill(2) of the process group the hook leads (process_group(0)).
                    unsafe {
                        libc::kill(-pid, libc::SIGKILL);
                    }
                }
                let _ = child.wait();
                return Err(format!(
                    "`{command}` did not finish within {} s ([hooks] timeout_seconds): killed",
                    timeout.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("`{command}` did not finish: {e}")),
        }
    };
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{command}` exited with {status}"))
    }
}

/// `url` as logs and errors may show it: scheme, host and port only. A webhook URL often carries
/// its secret in the path or query (`https://hooks.example.com/services/T0/B0/SECRET`).
pub fn webhook_origin(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(host), Some(port)) => format!("{}://{host}:{port}/…", u.scheme()),
            (Some(host), None) => format!("{}://{host}/…", u.scheme()),
            _ => "(a webhook URL without a host)".into(),
        },
        Err(_) => "(a webhook URL that does not parse)".into(),
    }
}

/// POSTs `body` as JSON to an `http://` or `https://` URL; any 2xx answer is success.
async fn post(config: &HooksConfig, url: &str, body: &[u8]) -> Result<(), String> {
    let parsed =
        url::Url::parse(url).map_err(|e| format!("[hooks] webhook_url is not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "[hooks] webhook_url must start with http:// or https://, not {}://",
            parsed.scheme()
        ));
    }
    let mut client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(WEBHOOK_TIMEOUT)
        .user_agent("elastirec")
        // A redirect could carry the summary somewhere else: answer it as a failure.
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = &config.webhook_ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            format!(
                "cannot read [hooks] webhook_ca_file {}: {e}",
                path.display()
            )
        })?;
        let ca = reqwest::Certificate::from_pem(&pem).map_err(|e| {
            format!(
                "[hooks] webhook_ca_file {} is not a PEM certificate: {}",
                path.display(),
                e.without_url()
            )
        })?;
        client = client.add_root_certificate(ca);
    }
    let client = client
        .build()
        .map_err(|e| format!("cannot make an HTTP client: {}", e.without_url()))?;
    let answer = client
        .post(parsed)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_vec())
        .send()
        .await
        // reqwest's errors name the whole URL: keep its secret out of the log.
        .map_err(|e| describe(&e.without_url()))?;
    let status = answer.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("answered {status}"))
    }
}

/// An error and its causes on one line (the TLS or connection reason is in the causes).
fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
