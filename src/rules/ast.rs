//! The syntax tree: one [`Stmt`] per line, as written, with the columns the loader needs for
//! its diagnostics.
//!
//! Every value that can be checked on its own (addresses, ports, rates, protocols, ICMP types)
//! already has its final type here, so a statement can only hold valid values; names of sets
//! stay names and are resolved by the loader.

use ipnet::IpNet;

use super::policy::RuleAction;
use crate::proto::PortRange;
use crate::verdict::ProbeMode;

/// One statement of the language.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Stmt {
    /// `policy ACTION`
    Policy {
        /// What happens to new connections no rule matches.
        action: RuleAction,
    },
    /// `probes rst|drop`
    Probes {
        /// How out-of-state probes are answered.
        mode: ProbeMode,
    },
    /// `set $name = ADDRS`
    Set {
        /// The name, without `$`.
        name: String,
        /// Column of `$name`.
        col: u32,
        /// The addresses.
        addrs: AddrExpr,
    },
    /// `include "path"`
    Include {
        /// The path as written.
        path: String,
        /// Column of the quoted path.
        col: u32,
    },
    /// `ACTION ...`
    Rule(Box<RuleAst>),
}

/// An address expression, sets still unresolved.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum AddrExpr {
    /// `any`
    Any,
    /// An address or a network (host bits already cleared).
    Net(IpNet),
    /// `$name`, at column `col`.
    Set {
        /// The name, without `$`.
        name: String,
        /// Column of `$name`.
        col: u32,
    },
    /// `{ ... }`
    List(Vec<AddrExpr>),
}

/// `from ADDRS [port PORTS]` or `to ...`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Endpoint {
    /// The addresses.
    pub addrs: AddrExpr,
    /// The ports, `None` when no `port` follows.
    pub ports: Option<Vec<PortRange>>,
}

/// An interface name, optionally ending in the `+` wildcard.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct IfaceAst {
    /// The name, without the `+`.
    pub name: String,
    /// Written with a trailing `+`: any interface whose name starts with `name`.
    pub wildcard: bool,
}

/// `limit N/UNIT [burst B]`
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LimitAst {
    /// Events per `per_nanos`.
    pub count: u32,
    /// The unit, in nanoseconds.
    pub per_nanos: u64,
    /// Events allowed at once (`count` unless `burst` is given).
    pub burst: u32,
}

/// A rule as written.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RuleAst {
    /// What the rule does.
    pub action: RuleAction,
    /// `in IFACE`
    pub in_iface: Option<IfaceAst>,
    /// `out IFACE`
    pub out_iface: Option<IfaceAst>,
    /// IP protocol number, `None` for `any`.
    pub proto: Option<u8>,
    /// `from ...`
    pub from: Option<Endpoint>,
    /// `to ...`
    pub to: Option<Endpoint>,
    /// ICMP/ICMPv6 types (numbers for the rule's protocol), sorted, without repeats.
    pub icmp_types: Option<Vec<u8>>,
    /// `log`
    pub log: bool,
    /// `limit ...`
    pub limit: Option<LimitAst>,
    /// `label "..."`
    pub label: Option<String>,
}

impl RuleAst {
    /// A rule with `action` and no clause.
    pub(crate) fn new(action: RuleAction) -> RuleAst {
        RuleAst {
            action,
            in_iface: None,
            out_iface: None,
            proto: None,
            from: None,
            to: None,
            icmp_types: None,
            log: false,
            limit: None,
            label: None,
        }
    }
}
