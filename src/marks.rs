//! The connection mark layout: which bits of the kernel's connection mark belong to statewall.
//!
//! Two bits, chosen by `[netfilter] connmark_mask` (exactly two bits set; default
//! `0x30000000`, clear of statewall's own packet mark 0x5717 and of the low bits that NAT, QoS
//! and policy-routing setups commonly use):
//!
//! * **ADMITTED** (the lower bit): statewall accepted this flow. It is set on the packet mark of
//!   every accepted packet of a tracked flow (in the verdict) and saved into the connection mark
//!   by one rule per hook (`-m mark --mark A/A -j CONNMARK --save-mark --nfmask A --ctmask A`,
//!   in mangle POSTROUTING for the forward and output hooks and security INPUT for the input
//!   hook: an NF_ACCEPT verdict moves the packet on to the next hook, so a rule after the queue
//!   in the filter chain would never see it). The kernel conntrack table, replicated by
//!   conntrackd, therefore always holds the flows statewall admitted, with their TCP state and
//!   window scales: a new master, or statewall after a restart, adopts exactly those.
//! * **FASTPATH** (the upper bit): reserved for the kernel fast path (the flow's middle may
//!   bypass the queue).
//!
//! Only these bits are ever written: the other bits of the packet and connection marks are
//! left as they are (no rule restores the whole packet mark).

use thiserror::Error;

/// A `connmark_mask` that cannot be used.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum MarkError {
    /// Not exactly two bits set.
    #[error("0x{0:x} must have exactly two bits set (ADMITTED, FASTPATH)")]
    NotTwoBits(u32),
    /// Shares bits with the mark of statewall's own packets.
    #[error("0x{mask:x} overlaps the mark of statewall's own packets (0x{own:x})")]
    OverlapsOwnMark {
        /// The connmark mask.
        mask: u32,
        /// `[netfilter] mark`.
        own: u32,
    },
}

/// statewall's two connection mark bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnMarks {
    admitted: u32,
    fastpath: u32,
}

impl Default for ConnMarks {
    fn default() -> Self {
        ConnMarks {
            admitted: 0x1000_0000,
            fastpath: 0x2000_0000,
        }
    }
}

impl ConnMarks {
    /// The default `[netfilter] connmark_mask`.
    pub const DEFAULT_MASK: u32 = 0x3000_0000;

    /// The layout of `mask` (two bits: the lower is ADMITTED), checked against `own`, the mark
    /// of statewall's own packets.
    pub fn new(mask: u32, own: u32) -> Result<ConnMarks, MarkError> {
        if mask.count_ones() != 2 {
            return Err(MarkError::NotTwoBits(mask));
        }
        if mask & own != 0 {
            return Err(MarkError::OverlapsOwnMark { mask, own });
        }
        let admitted = 1 << mask.trailing_zeros();
        Ok(ConnMarks {
            admitted,
            fastpath: mask & !admitted,
        })
    }

    /// The ADMITTED bit.
    pub fn admitted(&self) -> u32 {
        self.admitted
    }

    /// The FASTPATH bit.
    pub fn fastpath(&self) -> u32 {
        self.fastpath
    }

    /// Both bits.
    pub fn mask(&self) -> u32 {
        self.admitted | self.fastpath
    }

    /// The packet mark an accepted packet of an admitted flow leaves with: `current` (the mark
    /// it arrived with) plus the ADMITTED bit, every other bit unchanged.
    pub fn admit(&self, current: u32) -> u32 {
        current | self.admitted
    }

    /// The packet mark an accepted packet of an admitted flow leaves with when statewall says
    /// whether the flow is on the fast path: `current` plus ADMITTED, with FASTPATH set or
    /// cleared (`fastpath`), every other bit unchanged. The save rule writes both bits into the
    /// connection mark, so the verdict puts a flow on the fast path or takes it off.
    pub fn verdict_mark(&self, current: u32, fastpath: bool) -> u32 {
        let admitted = current | self.admitted;
        if fastpath {
            admitted | self.fastpath
        } else {
            admitted & !self.fastpath
        }
    }

    /// Whether a packet mark carries FASTPATH (restored from its connection mark).
    pub fn is_fastpath(&self, mark: u32) -> bool {
        mark & self.fastpath != 0
    }

    /// Whether a connection mark (or a packet mark it was restored into) says the flow was
    /// admitted.
    pub fn is_admitted(&self, connmark: u32) -> bool {
        connmark & self.admitted != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_layout_avoids_the_own_mark_and_the_low_bits() {
        let m = ConnMarks::new(ConnMarks::DEFAULT_MASK, 0x5717).expect("valid");
        assert_eq!(m, ConnMarks::default());
        assert_eq!(m.admitted(), 0x1000_0000);
        assert_eq!(m.fastpath(), 0x2000_0000);
        assert_eq!(m.mask() & 0xffff, 0);
    }

    #[test]
    fn the_lower_bit_is_admitted() {
        let m = ConnMarks::new(0x8000_0800, 0x5717).expect("valid");
        assert_eq!((m.admitted(), m.fastpath()), (0x800, 0x8000_0000));
    }

    #[test]
    fn bad_masks_are_refused() {
        assert_eq!(
            ConnMarks::new(0x1000_0000, 0x5717),
            Err(MarkError::NotTwoBits(0x1000_0000))
        );
        assert_eq!(
            ConnMarks::new(0x7000_0000, 0x5717),
            Err(MarkError::NotTwoBits(0x7000_0000))
        );
        assert!(matches!(
            ConnMarks::new(0x0000_0101, 0x5717),
            Err(MarkError::OverlapsOwnMark { .. })
        ));
    }

    #[test]
    fn admit_keeps_every_other_bit() {
        let m = ConnMarks::default();
        assert_eq!(m.admit(0), 0x1000_0000);
        assert_eq!(m.admit(0x0000_00ff), 0x1000_00ff);
        assert_eq!(m.admit(0x1000_0001), 0x1000_0001);
        assert!(m.is_admitted(0x3000_0000));
        assert!(!m.is_admitted(0x2000_ffff));
    }

    #[test]
    fn the_verdict_sets_or_clears_fastpath_and_nothing_else() {
        let m = ConnMarks::default();
        assert_eq!(m.verdict_mark(0x0000_00ff, true), 0x3000_00ff);
        assert_eq!(m.verdict_mark(0x3000_00ff, false), 0x1000_00ff);
        assert_eq!(m.verdict_mark(0x2000_0000, false), 0x1000_0000);
        assert_eq!(m.verdict_mark(0x1000_0000, true), 0x3000_0000);
        assert!(m.is_fastpath(0x2000_0001));
        assert!(!m.is_fastpath(0x1000_0001));
    }
}
