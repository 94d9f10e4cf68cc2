//! TCP flags and the one place that decides what a flag combination means.
//!
//! [`TcpFlags::shape`] classifies a segment's flags once into a [`TcpShape`]. Everything else
//! derives from it: the connection tracker's column in the transition table, the drop reason of
//! an invalid combination, and the scan detector's probe kind. So the three can never disagree.

/// TCP flags, the raw flag byte of the header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;
    /// ECE.
    pub const ECE: u8 = 0x40;
    /// CWR.
    pub const CWR: u8 = 0x80;

    /// Whether every flag of `mask` is set.
    #[inline]
    pub const fn has(self, mask: u8) -> bool {
        self.0 & mask == mask
    }
    /// FIN set.
    #[inline]
    pub const fn fin(self) -> bool {
        self.has(Self::FIN)
    }
    /// SYN set.
    #[inline]
    pub const fn syn(self) -> bool {
        self.has(Self::SYN)
    }
    /// RST set.
    #[inline]
    pub const fn rst(self) -> bool {
        self.has(Self::RST)
    }
    /// ACK set.
    #[inline]
    pub const fn ack(self) -> bool {
        self.has(Self::ACK)
    }
}

impl std::fmt::Display for TcpFlags {
    /// tcpdump style: `S`, `S.`, `F.`, `R`, `FPU`, `none`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const NAMES: [(u8, char); 8] = [
            (TcpFlags::FIN, 'F'),
            (TcpFlags::SYN, 'S'),
            (TcpFlags::RST, 'R'),
            (TcpFlags::PSH, 'P'),
            (TcpFlags::URG, 'U'),
            (TcpFlags::ECE, 'E'),
            (TcpFlags::CWR, 'W'),
            (TcpFlags::ACK, '.'),
        ];
        if self.0 == 0 {
            return f.write_str("none");
        }
        for (bit, c) in NAMES {
            if self.0 & bit != 0 {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// What a TCP segment's flags say. ECE and CWR never change the shape, nor does PSH on a
/// valid one.
///
/// The valid shapes are the combinations Linux accepts (`tcp_valid_flags` in
/// `nf_conntrack_proto_tcp.c`): SYN, SYN+URG, SYN+ACK, RST, RST+ACK, FIN+ACK, FIN+ACK+URG, ACK,
/// ACK+URG. Each invalid shape has its own drop reason, since they are scan signatures.
///
/// | flags (PSH, ECE, CWR ignored)        | shape      |
/// |--------------------------------------|------------|
/// | SYN, SYN+URG                         | `Syn`      |
/// | SYN+ACK                              | `SynAck`   |
/// | ACK, ACK+URG                         | `Ack`      |
/// | FIN+ACK, FIN+ACK+URG                 | `FinAck`   |
/// | RST, RST+ACK                         | `Rst`      |
/// | SYN+FIN (+anything)                  | `SynFin`   |
/// | SYN+RST without FIN                  | `SynRst`   |
/// | RST with FIN or URG, without SYN     | `BadRst`   |
/// | nothing (PSH at most: see `Bad`)     | `Null`     |
/// | FIN+PSH+URG                          | `Xmas`     |
/// | FIN without ACK (+PSH or URG)        | `FinNoAck` |
/// | anything else (URG or PSH alone, SYN+ACK+URG, ...) | `Bad` |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpShape {
    /// Opens a connection.
    Syn,
    /// Answers a SYN.
    SynAck,
    /// Acknowledges (data or nothing).
    Ack,
    /// Closes one direction.
    FinAck,
    /// Aborts (with or without ACK).
    Rst,
    /// SYN and FIN together (never valid).
    SynFin,
    /// SYN and RST together (never valid).
    SynRst,
    /// RST with FIN or URG (never valid; never a probe either: a RST is not answered).
    BadRst,
    /// No flag at all besides ECE/CWR (`nmap -sN`).
    Null,
    /// FIN+PSH+URG without ACK (`nmap -sX`).
    Xmas,
    /// FIN without ACK (`nmap -sF`).
    FinNoAck,
    /// Any other invalid combination.
    Bad,
}

impl TcpShape {
    /// Whether Linux conntrack accepts this combination at all.
    pub fn is_valid(self) -> bool {
        matches!(
            self,
            TcpShape::Syn | TcpShape::SynAck | TcpShape::Ack | TcpShape::FinAck | TcpShape::Rst
        )
    }
}

impl TcpFlags {
    /// The one classification of these flags (a lookup in [`SHAPES`], which
    /// [`TcpFlags::classify`] fills at compile time: two classifications per segment stay one
    /// load each).
    #[inline]
    pub fn shape(self) -> TcpShape {
        SHAPES[usize::from(self.0)]
    }

    /// What [`TcpFlags::shape`] says, decided from the bits.
    const fn classify(self) -> TcpShape {
        const SYN: u8 = TcpFlags::SYN;
        const ACK: u8 = TcpFlags::ACK;
        const FIN: u8 = TcpFlags::FIN;
        const RST: u8 = TcpFlags::RST;
        const URG: u8 = TcpFlags::URG;
        const PSH: u8 = TcpFlags::PSH;
        // PSH, ECE and CWR are allowed with every valid shape.
        let core = self.0 & (SYN | ACK | FIN | RST | URG);
        match core {
            SYN | 0x22 /* SYN|URG */ => TcpShape::Syn,
            0x12 /* SYN|ACK */ => TcpShape::SynAck,
            ACK | 0x30 /* ACK|URG */ => TcpShape::Ack,
            0x11 /* FIN|ACK */ | 0x31 /* FIN|ACK|URG */ => TcpShape::FinAck,
            RST | 0x14 /* RST|ACK */ => TcpShape::Rst,
            _ if self.syn() && self.fin() => TcpShape::SynFin,
            _ if self.syn() && self.rst() => TcpShape::SynRst,
            _ if self.rst() => TcpShape::BadRst,
            _ if self.0 & 0x3f == 0 => TcpShape::Null,
            _ if self.has(FIN | PSH | URG) && !self.ack() && !self.syn() => TcpShape::Xmas,
            _ if self.fin() && !self.ack() && !self.syn() => TcpShape::FinNoAck,
            _ => TcpShape::Bad,
        }
    }
}

/// The shape of every flag byte ([`TcpFlags::classify`]).
static SHAPES: [TcpShape; 256] = {
    let mut t = [TcpShape::Bad; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = TcpFlags(b as u8).classify();
        b += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    const SYN: u8 = TcpFlags::SYN;
    const ACK: u8 = TcpFlags::ACK;
    const FIN: u8 = TcpFlags::FIN;
    const RST: u8 = TcpFlags::RST;
    const URG: u8 = TcpFlags::URG;
    const PSH: u8 = TcpFlags::PSH;
    const ECE: u8 = TcpFlags::ECE;
    const CWR: u8 = TcpFlags::CWR;

    #[test]
    fn every_flag_byte_has_one_shape_and_valid_ones_are_linuxs() {
        // Linux tcp_valid_flags, each with and without PSH, ECE, CWR.
        let valid = [
            SYN,
            SYN | URG,
            SYN | ACK,
            RST,
            RST | ACK,
            FIN | ACK,
            FIN | ACK | URG,
            ACK,
            ACK | URG,
        ];
        for b in 0..=255u8 {
            let shape = TcpFlags(b).shape();
            let core = b & !(PSH | ECE | CWR);
            assert_eq!(shape.is_valid(), valid.contains(&core), "{}", TcpFlags(b));
            assert_eq!(TcpFlags(b | ECE | CWR).shape(), shape, "{}", TcpFlags(b));
            if shape.is_valid() {
                assert_eq!(TcpFlags(b | PSH).shape(), shape, "{}", TcpFlags(b));
            }
        }
    }

    #[test]
    fn shapes_of_the_classic_probes() {
        let cases = [
            (SYN, TcpShape::Syn),
            (SYN | ACK, TcpShape::SynAck),
            (ACK | PSH, TcpShape::Ack),
            (FIN | ACK, TcpShape::FinAck),
            (RST | ACK, TcpShape::Rst),
            (0, TcpShape::Null),
            (ECE | CWR, TcpShape::Null),
            (PSH, TcpShape::Bad),
            (URG, TcpShape::Bad),
            (FIN | PSH | URG, TcpShape::Xmas),
            (FIN, TcpShape::FinNoAck),
            (FIN | PSH, TcpShape::FinNoAck),
            (FIN | URG, TcpShape::FinNoAck),
            (SYN | FIN, TcpShape::SynFin),
            (SYN | FIN | ACK, TcpShape::SynFin),
            (SYN | FIN | PSH | URG, TcpShape::SynFin),
            (SYN | RST, TcpShape::SynRst),
            (SYN | FIN | RST, TcpShape::SynFin),
            (RST | FIN, TcpShape::BadRst),
            (SYN | ACK | URG, TcpShape::Bad),
        ];
        for (b, shape) in cases {
            assert_eq!(TcpFlags(b).shape(), shape, "{}", TcpFlags(b));
        }
    }
}
