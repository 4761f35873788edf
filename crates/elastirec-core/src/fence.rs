//! Fencing: writes that matter (Delta commits, `recommendations/_LATEST`) are refused once this
//! process has lost the lake's lease, or let it expire.
//!
//! The lease (elastirec-flow's `lease` module) is what keeps two runners from writing one lake;
//! a runner that stalls past its lease (a long pause, a lost network) and wakes up must not
//! write over the runner that took the lake. The lease holder installs a [`Fence`]; the code
//! right before such a write calls [`Fence::check`], which answers the lease epoch still held
//! (recorded beside the write) or why the write must not happen.

use std::fmt;
use std::sync::Arc;

use crate::{Error, Result};

type Check = dyn Fn() -> std::result::Result<Option<u64>, String> + Send + Sync;

/// A check before a write; the default fence is open (no lease involved: tests, one-off tools).
#[derive(Clone, Default)]
pub struct Fence {
    check: Option<Arc<Check>>,
}

impl Fence {
    /// A fence asking `check`: `Ok(Some(epoch))` while the lease is held, `Ok(None)` when no
    /// lease is involved, `Err(why)` once the lease is lost or expired.
    pub fn new(
        check: impl Fn() -> std::result::Result<Option<u64>, String> + Send + Sync + 'static,
    ) -> Fence {
        Fence {
            check: Some(Arc::new(check)),
        }
    }

    /// The lease epoch to record with the write (`None`: no lease involved), or
    /// [`Error::Fenced`] when the write must not happen.
    pub fn check(&self) -> Result<Option<u64>> {
        match &self.check {
            None => Ok(None),
            Some(check) => check().map_err(Error::Fenced),
        }
    }
}

impl fmt::Debug for Fence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.check.is_some() {
            "Fence(lease)"
        } else {
            "Fence(open)"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn an_open_fence_passes_and_a_closed_one_says_why() {
        assert_eq!(Fence::default().check().unwrap(), None);
        assert_eq!(Fence::new(|| Ok(Some(7))).check().unwrap(), Some(7));
        let e = Fence::new(|| Err("lost to host:1".into()))
            .check()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Transient);
        assert!(e.to_string().contains("lost to host:1"), "{e}");
    }
}
