//! The kernel side of the fast path ([`crate::marks`], docs/performance.md): the flows whose
//! connection mark carries FASTPATH are forwarded by the kernel without statewall, so statewall
//! reads them from the kernel table instead of from their packets.
//!
//! One [`OffloadSync::pass`] dumps the kernel's entries with the FASTPATH bit (the kernel
//! filters by mark) and asks, for each, whether statewall still holds the flow on the fast
//! path. A flow statewall holds is alive (the kernel forwards its packets): the caller refreshes
//! its entry, so that it does not expire while the kernel carries the flow. A flow statewall
//! does not hold (killed, revoked by a rule recheck, from a blocked address, forgotten) loses
//! the FASTPATH bit at once, through ctnetlink: its next packet goes to the queue again and is
//! judged there. The daemon runs a pass periodically (`[offload] refresh`) and right after
//! anything that takes flows off the fast path (a reload with recheck, a block, a kill).

use std::time::Duration;

use crate::adopt::KernelFlow;
use crate::io::ctnetlink::{CtError, Ctnetlink, MarkFilter, Tuple};
use crate::io::kernel_flows::flow_of;
use crate::marks::ConnMarks;

/// What one pass found and did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Kernel entries with the FASTPATH bit.
    pub seen: u64,
    /// Flows statewall still holds on the fast path (their entries were refreshed).
    pub kept: u64,
    /// Flows taken off the fast path (the bit cleared in the kernel).
    pub released: u64,
    /// Flows gone from the kernel table between the dump and the change.
    pub vanished: u64,
    /// Entries statewall cannot map to a flow (released as well).
    pub unmapped: u64,
}

impl std::fmt::Display for SyncReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seen={} kept={} released={} vanished={} unmapped={}",
            self.seen, self.kept, self.released, self.vanished, self.unmapped
        )
    }
}

/// The ctnetlink side of the fast path.
pub struct OffloadSync {
    ct: Ctnetlink,
    marks: ConnMarks,
    /// Tuples to release, collected during a dump (requests wait until it is over); reused.
    release: Vec<Tuple>,
}

/// How long one request (or one part of a dump) may wait for the kernel.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Dumps interrupted by a resize of the kernel table are repeated this often at most.
const DUMP_ATTEMPTS: u32 = 3;

impl OffloadSync {
    /// Opens a ctnetlink socket in the caller's network namespace.
    pub fn open(marks: ConnMarks) -> Result<OffloadSync, CtError> {
        let ct = Ctnetlink::open()?;
        ct.set_timeout(Some(REQUEST_TIMEOUT))?;
        Ok(OffloadSync {
            ct,
            marks,
            release: Vec::new(),
        })
    }

    /// The kernel-side filter of the entries on the fast path.
    pub fn filter(marks: ConnMarks) -> MarkFilter {
        MarkFilter {
            value: marks.fastpath(),
            mask: marks.fastpath(),
        }
    }

    /// One pass over the kernel's fast-path flows: `keep(flow)` refreshes statewall's entry of
    /// a flow it still holds on the fast path and says so; every other flow loses the FASTPATH
    /// bit (ADMITTED stays: statewall did admit it).
    pub fn pass(
        &mut self,
        mut keep: impl FnMut(&KernelFlow) -> bool,
    ) -> Result<SyncReport, CtError> {
        let marks = self.marks;
        let mut attempts = 0;
        let mut report = loop {
            let mut report = SyncReport::default();
            self.release.clear();
            let release = &mut self.release;
            let r = self.ct.dump_each(Some(Self::filter(marks)), |entry| {
                report.seen += 1;
                match flow_of(&entry, marks) {
                    Ok(flow) if keep(&flow) => report.kept += 1,
                    Ok(_) => release.push(entry.original),
                    Err(_) => {
                        report.unmapped += 1;
                        release.push(entry.original);
                    }
                }
            });
            match r {
                Ok(_) => break report,
                Err(CtError::DumpInterrupted) if attempts < DUMP_ATTEMPTS => attempts += 1,
                Err(e) => return Err(e),
            }
        };
        for i in 0..self.release.len() {
            let tuple = self.release[i];
            match self.ct.set_mark(&tuple, 0, marks.fastpath()) {
                Ok(()) => report.released += 1,
                Err(CtError::NotFound) => report.vanished += 1,
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }
}
