//! Running one step under its run record: each attempt is recorded (state, rows, CPU time,
//! peak memory), and transient failures are retried with exponential backoff up to
//! `[run] max_attempts`.

use std::future::Future;
use std::time::Duration;

use chrono::Utc;

use elastirec_core::manifest::{RunRecord, StepState};
use elastirec_core::{Night, failpoint};

use super::{Outcome, Progress, Step, error_chain, new_step_record};
use crate::resources::Usage;
use crate::{Error, Pipeline, Result};

impl Pipeline {
    /// Runs one step under the run record of `night`: marks it running, retries transient
    /// failures with exponential backoff, then records it succeeded (or skipped, or held) or
    /// failed, with its CPU time and the process's peak memory.
    pub(crate) async fn recorded<T, F, Fut>(
        &self,
        night: Night,
        step: Step,
        record: &mut RunRecord,
        work: F,
        describe: impl Fn(&T) -> Outcome,
    ) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let first_attempt = record.step(step.name()).map_or(1, |s| s.attempt + 1);
        let run = &self.config.run;
        let mut attempt = first_attempt;
        let mut wait = Duration::from_millis(run.backoff_initial_ms);
        loop {
            let mut step_record = new_step_record(step, attempt);
            self.ledger.update_step(record, step_record.clone()).await?;
            (self.progress)(&Progress::StepStarted {
                night,
                step,
                attempt,
            });
            failpoint::hit(&format!("{step}.before"));
            let usage = Usage::now();
            let result = work().await;
            if result.is_ok() {
                failpoint::hit(&format!("{step}.done"));
            }
            let after = Usage::now();
            step_record.ended_at = Some(Utc::now());
            step_record.cpu_seconds = Some(after.cpu_since(&usage));
            step_record.peak_memory_bytes = Some(after.peak_rss_bytes);
            match &result {
                Ok(value) => {
                    let o = describe(value);
                    step_record.state = o.state;
                    step_record.rows_in = o.rows_in;
                    step_record.rows_out = o.rows_out;
                    step_record.bytes_out = o.bytes_out;
                    step_record.outcome = Some(o.message);
                    step_record.job = o.job;
                }
                Err(e) => {
                    step_record.state = StepState::Failed;
                    step_record.outcome = Some(error_chain(e));
                    step_record.error_kind = Some(e.kind().as_str().into());
                    step_record.job = e.job().cloned();
                }
            }
            self.ledger.update_step(record, step_record.clone()).await?;
            (self.progress)(&Progress::StepFinished {
                night,
                record: Box::new(step_record.clone()),
            });
            match result {
                Ok(value) => return Ok(value),
                Err(e)
                    if e.kind() == elastirec_core::ErrorKind::Transient
                        && attempt + 1 - first_attempt < run.max_attempts
                        && self.stop.reason().is_none() =>
                {
                    (self.progress)(&Progress::StepRetry {
                        night,
                        step,
                        attempt: attempt + 1,
                        wait,
                        error: error_chain(&e),
                    });
                    tracing::warn!(%night, %step, attempt, error = %error_chain(&e), ?wait, "transient failure; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_millis(run.backoff_max_ms));
                    attempt += 1;
                }
                Err(e) => {
                    return Err(Error::Step {
                        night,
                        step,
                        source: Box::new(e),
                    });
                }
            }
        }
    }
}
