//! Hooks: a shell command or a webhook told how each night ended, for alerting.
//!
//! Both get the same JSON summary: `{night, state, published, held_reason, failed_step, error,
//! error_kind, seconds, lake}`. A hook that fails is logged; it never changes the night.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    if let Some(url) = &config.webhook_url {
        match tokio::time::timeout(Duration::from_secs(10), post(url, &json)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(%url, error = %e, "the night's webhook failed"),
            Err(_) => tracing::warn!(%url, "the night's webhook timed out after 10 s"),
        }
    }
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

/// A minimal HTTP/1.1 POST for `http://host[:port]/path` URLs (alerting endpoints inside a VPC).
async fn post(url: &str, body: &[u8]) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| "[hooks] webhook_url must start with http://".to_string())?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\nUser-Agent: elastirec\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    stream.write_all(body).await.map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    let status_line = String::from_utf8_lossy(&answer);
    let status_line = status_line.lines().next().unwrap_or_default();
    match status_line.split_whitespace().nth(1) {
        Some(code) if code.starts_with('2') => Ok(()),
        _ => Err(format!("answered '{status_line}'")),
    }
}
