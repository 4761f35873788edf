//! Terminal progress and logging. Progress bars draw on stderr and hide themselves when stderr
//! is not a terminal, so scripts and CI see only the plain summaries on stdout.

use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use elastirec_flow::Progress;

/// Sets up `tracing` on stderr; `ELASTIREC_LOG` (an env-filter) overrides the verbosity flag.
pub fn init_logging(verbose: u8) {
    // The Delta kernel logs an error for every table it probes before creating it; elastirec
    // reports the failures that matter itself.
    let default = match verbose {
        0 => "warn,buoyant_kernel=off",
        1 => "info,buoyant_kernel=off",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ELASTIREC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// A spinner naming the running step of a night.
pub struct NightProgress {
    bar: Mutex<Option<ProgressBar>>,
}

impl NightProgress {
    pub fn new() -> Self {
        NightProgress {
            bar: Mutex::new(None),
        }
    }

    pub fn update(&self, p: &Progress) {
        let Ok(mut bar) = self.bar.lock() else { return };
        match p {
            Progress::StepStarted {
                night,
                step,
                attempt,
            } => {
                let b = ProgressBar::new_spinner();
                b.set_style(
                    ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                b.enable_steady_tick(Duration::from_millis(120));
                b.set_message(if *attempt > 1 {
                    format!("night {night}: {step} (attempt {attempt})")
                } else {
                    format!("night {night}: {step}")
                });
                *bar = Some(b);
            }
            Progress::TrainIteration {
                night,
                iteration,
                iterations,
                loss,
            } => {
                if let Some(b) = bar.as_ref() {
                    b.set_message(format!(
                        "night {night}: train iteration {}/{iterations}, loss {loss:.5}",
                        iteration + 1
                    ));
                }
            }
            Progress::StepFinished { .. } => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
            }
            Progress::StepSkipped { .. } => {}
            Progress::StepRetry {
                night,
                step,
                attempt,
                wait,
                error,
            } => {
                eprintln!(
                    "night {night}: {step} failed transiently ({error}); attempt {attempt} in {:.1} s",
                    wait.as_secs_f64()
                );
            }
        }
    }
}
