//! The control protocol: one JSON request line in, one JSON response line out, per connection.
//!
//! Every message carries the protocol version `"v": 1`. Requests name their command in `cmd`;
//! `conns` carries its optional filters next to it:
//!
//! ```text
//! → {"v":1,"cmd":"status"}
//! → {"v":1,"cmd":"conns","src":"10.0.0.0/8","port":22,"state":"established"}
//! → {"v":1,"cmd":"unblock","addr":"203.0.113.9"}
//! ← {"v":1,"ok":true,"data":{...}}
//! ← {"v":1,"ok":false,"error":"rule file rejected","details":["gateway.rules:3:7: error: ..."]}
//! ```
//!
//! The `data` of each command has a type here ([`Status`], [`StatsReport`], [`ConnEntry`] list,
//! [`ReloadReport`], [`BlockEntry`] list, [`UnblockReport`], [`HaReport`]). The wire types are owned by this
//! module, not the engine, so an engine refactoring cannot silently change what scripts parse;
//! the one exception is the engine's counters ([`Stats`], inside [`StatsReport`]), sent as
//! they are defined so that no counter can be lost on the way, their names pinned by a test.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::conntrack::{ConnInfo, ConnRecord, StateCounts, TcpState};
use crate::engine::Stats;
use crate::rules::RuleInfo;

/// Protocol version spoken by this build.
pub const VERSION: u64 = 1;

/// Largest request accepted by the server, newline included.
pub const MAX_REQUEST: usize = 64 * 1024;

/// Time the server gives a client to send its request, and to take the response.
pub const SERVER_TIMEOUT: Duration = Duration::from_secs(2);

/// A command sent to the daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Daemon overview: uptime, rules, table size, per-queue counters.
    Status,
    /// Engine counters, drops per reason, connections per state.
    Stats,
    /// Tracked connections matching a filter.
    Conns(ConnFilter),
    /// Reload the rule file (the running rules stay if the new file is rejected).
    Reload,
    /// Auto-blocked sources.
    Blocks,
    /// Lift the block on an address.
    Unblock {
        /// The address to unblock.
        addr: IpAddr,
    },
    /// Kill the tracked connections matching a filter (at least one filter must be given).
    Kill(ConnFilter),
    /// Block an address or a network (what fail2ban or CrowdSec actions call).
    Block {
        /// The address or network.
        net: AddrMatch,
        /// How long, seconds; none: [`DEFAULT_BLOCK_SECS`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttl_secs: Option<u64>,
    },
    /// The rules in force with their hit counters.
    Rules,
    /// Stream events as they happen: the response line, then one JSON event per line until
    /// the client hangs up.
    Events,
    /// This gateway of a pair now holds the addresses (keepalived's MASTER notification):
    /// adopt what the kernel table holds, open the takeover window.
    Takeover,
    /// This gateway of a pair lost the addresses: every flow follows the kernel table again.
    Standby,
}

/// Duration of a `block` without `--ttl`.
pub const DEFAULT_BLOCK_SECS: u64 = 3600;

/// Why a request line was rejected before reaching the handler.
#[derive(Debug, PartialEq, Eq)]
pub struct BadRequest(pub String);

impl fmt::Display for BadRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Request {
    /// The request as one JSON line, newline included.
    pub fn to_line(&self) -> String {
        let mut v = match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            // A derived Serialize of an internally tagged enum always yields an object.
            _ => serde_json::Map::new(),
        };
        v.insert("v".into(), VERSION.into());
        let mut line = Value::Object(v).to_string();
        line.push('\n');
        line
    }

    /// Parses one request line (trailing newline optional).
    pub fn from_line(line: &[u8]) -> Result<Request, BadRequest> {
        let value: Value = serde_json::from_slice(line)
            .map_err(|e| BadRequest(format!("malformed request: {e}")))?;
        let Value::Object(mut map) = value else {
            return Err(BadRequest("malformed request: not a JSON object".into()));
        };
        match map.remove("v") {
            Some(Value::Number(n)) if n.as_u64() == Some(VERSION) => {}
            Some(v) => {
                return Err(BadRequest(format!(
                    "unsupported protocol version {v} (this statewall speaks {VERSION})"
                )))
            }
            None => return Err(BadRequest("malformed request: missing `v`".into())),
        }
        if !map.contains_key("cmd") {
            return Err(BadRequest("malformed request: missing `cmd`".into()));
        }
        serde_json::from_value(Value::Object(map))
            .map_err(|e| BadRequest(format!("bad request: {e}")))
    }
}

/// The daemon's answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Response {
    /// The command succeeded; its result.
    Ok(Value),
    /// The command failed.
    Err {
        /// One-line summary.
        error: String,
        /// Every individual problem (a reload lists each rule-file error here).
        details: Vec<String>,
    },
}

/// The response as it is on the wire.
#[derive(Serialize, Deserialize)]
struct WireResponse {
    v: u64,
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    details: Vec<String>,
}

impl Response {
    /// A failure without details.
    pub fn error(error: impl Into<String>) -> Response {
        Response::Err {
            error: error.into(),
            details: Vec::new(),
        }
    }

    /// A success carrying `data`, or an error if it cannot be serialised.
    pub fn data<T: Serialize>(data: &T) -> Response {
        match serde_json::to_value(data) {
            Ok(v) => Response::Ok(v),
            Err(e) => Response::error(format!("internal error: cannot encode response: {e}")),
        }
    }

    fn wire(&self) -> WireResponse {
        match self {
            Response::Ok(data) => WireResponse {
                v: VERSION,
                ok: true,
                data: Some(data.clone()),
                error: None,
                details: Vec::new(),
            },
            Response::Err { error, details } => WireResponse {
                v: VERSION,
                ok: false,
                data: None,
                error: Some(error.clone()),
                details: details.clone(),
            },
        }
    }

    /// The response as a JSON object (`{"v":1,"ok":...}`).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self.wire()).unwrap_or(Value::Null)
    }

    /// The response as one JSON line, newline included.
    pub fn to_line(&self) -> String {
        // Serialising plain structs, strings and `Value`s to a string cannot fail.
        let mut line = serde_json::to_string(&self.wire()).unwrap_or_default();
        line.push('\n');
        line
    }

    /// Parses a response line.
    pub fn from_line(line: &[u8]) -> Result<Response, String> {
        let wire: WireResponse =
            serde_json::from_slice(line).map_err(|e| format!("malformed response: {e}"))?;
        if wire.v != VERSION {
            return Err(format!(
                "daemon speaks protocol version {}, this client {VERSION}",
                wire.v
            ));
        }
        if wire.ok {
            Ok(Response::Ok(wire.data.unwrap_or(Value::Null)))
        } else {
            Ok(Response::Err {
                error: wire.error.unwrap_or_else(|| "unspecified error".into()),
                details: wire.details,
            })
        }
    }
}

/// An address or a network, as a filter: `192.0.2.7`, `10.0.0.0/8`, `2001:db8::/32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AddrMatch(IpNet);

impl AddrMatch {
    /// The network (an address is a /32 or /128).
    pub fn net(&self) -> IpNet {
        self.0
    }

    /// Whether `addr` is this address or inside this network.
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.0.contains(&addr)
    }
}

impl FromStr for AddrMatch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(addr) = s.parse::<IpAddr>() {
            return Ok(AddrMatch(IpNet::from(addr)));
        }
        s.parse::<IpNet>()
            .map(|n| AddrMatch(n.trunc()))
            .map_err(|_| format!("`{s}` is not an IP address or CIDR network"))
    }
}

impl TryFrom<String> for AddrMatch {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<AddrMatch> for String {
    fn from(m: AddrMatch) -> String {
        m.to_string()
    }
}

impl fmt::Display for AddrMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.prefix_len() == self.0.max_prefix_len() {
            self.0.addr().fmt(f)
        } else {
            self.0.fmt(f)
        }
    }
}

/// A connection state name accepted by filters: a TCP state (`ESTABLISHED`, `TIME_WAIT`, ...)
/// or `UNREPLIED` / `REPLIED`, any case. Stored upper-case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StateName(String);

impl StateName {
    /// Every state name a connection can have.
    pub fn all() -> Vec<&'static str> {
        let mut names: Vec<&'static str> = TcpState::ALL.iter().map(|s| s.name()).collect();
        names.extend(["UNREPLIED", "REPLIED"]);
        names
    }

    /// Whether a listed state (as the engine prints it) is this one.
    pub fn matches(&self, state: &str) -> bool {
        self.0.eq_ignore_ascii_case(state)
    }
}

impl FromStr for StateName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let upper = s.to_ascii_uppercase();
        if Self::all().contains(&upper.as_str()) {
            Ok(StateName(upper))
        } else {
            Err(format!(
                "unknown state `{s}` (one of {})",
                Self::all().join(", ")
            ))
        }
    }
}

impl TryFrom<String> for StateName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<StateName> for String {
    fn from(s: StateName) -> String {
        s.0
    }
}

impl fmt::Display for StateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Filters of `conns`; every one is optional and all given ones must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnFilter {
    /// Originator address or network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<AddrMatch>,
    /// Responder address or network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<AddrMatch>,
    /// Port on either side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// State, case-insensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateName>,
    /// Protocol (`tcp`, `udp`, `icmp`, ... or a number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<ProtoMatch>,
}

/// A protocol as a filter: a name the rule language knows or a number; stored as the name
/// the listings print.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProtoMatch(String);

impl ProtoMatch {
    /// Whether a listed protocol (as the engine prints it) is this one.
    pub fn matches(&self, proto: &str) -> bool {
        self.0 == proto
    }
}

impl FromStr for ProtoMatch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let number = crate::proto::number(s).or_else(|| s.parse::<u8>().ok());
        number
            .map(|n| ProtoMatch(crate::proto::Name(n).to_string()))
            .ok_or_else(|| {
                format!("unknown protocol `{s}` (a name like tcp, udp, icmp, or a number)")
            })
    }
}

impl TryFrom<String> for ProtoMatch {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<ProtoMatch> for String {
    fn from(p: ProtoMatch) -> String {
        p.0
    }
}

impl fmt::Display for ProtoMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl ConnFilter {
    /// Whether a connection passes every filter given.
    pub fn matches(&self, c: &ConnInfo) -> bool {
        self.src.is_none_or(|m| m.contains(c.src))
            && self.dst.is_none_or(|m| m.contains(c.dst))
            && self.port.is_none_or(|p| c.sport == p || c.dport == p)
            && self.state.as_ref().is_none_or(|s| s.matches(&c.state))
            && self.proto.as_ref().is_none_or(|p| p.matches(&c.proto))
    }

    /// Whether a connection as the engine reports it (a kill's candidates) passes.
    pub fn matches_record(&self, r: &ConnRecord) -> bool {
        let f = &r.flow;
        self.src.is_none_or(|m| m.contains(f.src))
            && self.dst.is_none_or(|m| m.contains(f.dst))
            && self.port.is_none_or(|p| f.sport == p || f.dport == p)
            && self
                .state
                .as_ref()
                .is_none_or(|s| s.matches(&r.state.to_string()))
            && self
                .proto
                .as_ref()
                .is_none_or(|p| p.matches(&crate::proto::Name(f.proto).to_string()))
    }

    /// Whether no filter is given (every connection matches).
    pub fn is_empty(&self) -> bool {
        *self == ConnFilter::default()
    }

    /// Parses command-line words: `src 10.0.0.0/8 port 22` or `src=10.0.0.0/8 port=22`
    /// (keys `src`, `dst`, `port`, `state`, `proto`).
    pub fn from_args<S: AsRef<str>>(args: &[S]) -> Result<ConnFilter, String> {
        let mut filter = ConnFilter::default();
        let mut words = args.iter().map(|s| s.as_ref());
        while let Some(word) = words.next() {
            let (key, value) = match word.split_once('=') {
                Some((k, v)) => (k, v),
                None => {
                    let v = words
                        .next()
                        .ok_or_else(|| format!("`{word}` needs a value"))?;
                    (word, v)
                }
            };
            match key {
                "src" => filter.src = Some(value.parse()?),
                "dst" => filter.dst = Some(value.parse()?),
                "port" => {
                    filter.port = Some(
                        value
                            .parse()
                            .map_err(|_| format!("`{value}` is not a port number"))?,
                    )
                }
                "state" => filter.state = Some(value.parse()?),
                "proto" => filter.proto = Some(value.parse()?),
                _ => {
                    return Err(format!(
                        "unknown filter `{key}` (use src, dst, port, state or proto)"
                    ))
                }
            }
        }
        Ok(filter)
    }
}

/// Counters of one NFQUEUE worker.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStatus {
    /// Queue number.
    pub queue: u16,
    /// Packets received.
    pub packets: u64,
    /// Accept verdicts.
    pub accepted: u64,
    /// Drop verdicts.
    pub dropped: u64,
    /// Receive or verdict errors (e.g. ENOBUFS: the kernel queue overflowed).
    pub errors: u64,
}

/// `status`: what the daemon is doing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Daemon version.
    pub version: String,
    /// Daemon process id.
    pub pid: u32,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Rule file in use; none: allow-all policy.
    pub rules_file: Option<PathBuf>,
    /// When the rules in use were loaded, Unix seconds.
    pub rules_loaded_at: Option<u64>,
    /// Number of rules in use.
    pub rules: usize,
    /// Tracked connections.
    pub entries: u64,
    /// Table capacity.
    pub max_entries: u64,
    /// Auto-blocked sources.
    pub blocked: u64,
    /// Per-queue counters.
    pub queues: Vec<QueueStatus>,
    /// Drops per reason (reasons with a zero count omitted).
    pub drops: BTreeMap<String, u64>,
    /// The role in a pair: `standby`, `taking over (N s left)` or `active` (a single gateway
    /// is `active`, or `taking over` for a while after a restart).
    #[serde(default)]
    pub role: String,
}

/// `stats`: the engine's counters ([`Stats`], every field at the top level, `drops` an object
/// of reason → count) and the live connections per state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsReport {
    /// The engine's counters, as the engine defines them.
    #[serde(flatten)]
    pub stats: Stats,
    /// Live connections per state.
    #[serde(default)]
    pub states: BTreeMap<String, u64>,
}

impl StatsReport {
    /// From the engine's counter snapshot and state counts.
    pub fn new(stats: Stats, states: StateCounts) -> StatsReport {
        StatsReport {
            stats,
            states: states.into_iter().collect(),
        }
    }
}

/// One connection of `conns`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ConnEntry {
    /// Protocol name (`tcp`, `udp`, `icmp`, ...) or number.
    pub proto: String,
    /// Originator address.
    pub src: IpAddr,
    /// Responder address.
    pub dst: IpAddr,
    /// Originator port (or ICMP id).
    pub sport: u16,
    /// Responder port.
    pub dport: u16,
    /// State (`ESTABLISHED`, `UNREPLIED`, ...).
    pub state: String,
    /// Seconds until expiry.
    pub expires_in: u32,
    /// Handshake completed / both directions seen.
    pub assured: bool,
    /// Packets from the originator, as statewall counted them (accepted packets).
    #[serde(default)]
    pub orig_packets: u64,
    /// Bytes (IP length) from the originator.
    #[serde(default)]
    pub orig_bytes: u64,
    /// Packets from the responder.
    #[serde(default)]
    pub reply_packets: u64,
    /// Bytes from the responder.
    #[serde(default)]
    pub reply_bytes: u64,
    /// The rule that admitted it (`FILE:LINE`); none: the default policy, a flow adopted
    /// after a restart, or a rule set replaced long ago.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// That rule's label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// On the kernel fast path (`[OFFLOAD]`, as `conntrack -L` marks flows the kernel
    /// offloads).
    #[serde(default)]
    pub offloaded: bool,
}

impl ConnEntry {
    /// From the engine's listing entry and the rule that admitted it.
    pub fn new(c: ConnInfo, rule: Option<&RuleInfo>) -> ConnEntry {
        ConnEntry {
            proto: c.proto,
            src: c.src,
            dst: c.dst,
            sport: c.sport,
            dport: c.dport,
            state: c.state,
            expires_in: c.expires_in,
            assured: c.assured,
            orig_packets: c.counts.orig_packets,
            orig_bytes: c.counts.orig_bytes,
            reply_packets: c.counts.reply_packets,
            reply_bytes: c.counts.reply_bytes,
            rule: rule.map(|r| format!("{}:{}", r.file, r.line)),
            label: rule.and_then(|r| r.label.clone()),
            offloaded: c.offloaded,
        }
    }
}

impl From<ConnInfo> for ConnEntry {
    fn from(c: ConnInfo) -> Self {
        ConnEntry::new(c, None)
    }
}

/// `kill` result.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillReport {
    /// Connections killed.
    pub killed: u64,
    /// RSTs sent (two per killed TCP connection, up to a limit per kill).
    pub rsts: u64,
}

/// `block` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockReport {
    /// What is blocked.
    pub net: IpNet,
    /// For how long, seconds.
    pub ttl_secs: u64,
}

/// One rule of `rules`, with its hits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleEntry {
    /// `FILE:LINE`, or `default` for the default policy.
    pub rule: String,
    /// `allow`, `drop` or `reject`.
    pub action: String,
    /// `label "..."`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The source line (empty for the default policy).
    pub text: String,
    /// New connections and stateless packets it decided since the rules were loaded.
    pub hits: u64,
    /// Tracked connections it admitted that are live now.
    pub conns: u64,
}

/// `reload` succeeded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// The rule file loaded.
    pub rules_file: Option<PathBuf>,
    /// Number of rules now in use.
    pub rules: usize,
    /// Warnings (`PATH:LINE:COL: warning: ...`); the rules are in use anyway.
    pub warnings: Vec<String>,
    /// Tracked connections closed because the new rules no longer allow them (recheck mode).
    pub revoked: u64,
}

/// `reload` failed; the running rules are unchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadFailure {
    /// One-line summary, e.g. `gateway.rules: 2 errors`.
    pub message: String,
    /// Every error line (`PATH:LINE:COL: error: ...`).
    pub errors: Vec<String>,
    /// The files the errors were found in: a client that may not read one of them is shown
    /// only the errors' first lines, never the source lines.
    pub sources: Vec<std::path::PathBuf>,
}

/// One auto-blocked source, as `blocks` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockEntry {
    /// What is blocked (an address or a network).
    pub net: IpNet,
    /// The address that caused the block.
    pub src: IpAddr,
    /// Why.
    pub reason: String,
    /// Offence count (1 = first block).
    pub level: u32,
    /// Full duration of the block, seconds.
    pub ttl_secs: u64,
    /// Seconds left.
    pub remaining_secs: u64,
}

/// `takeover` / `standby` result: the role now, and what the kernel table gave.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HaReport {
    /// The role now (as in [`Status`]).
    pub role: String,
    /// Kernel entries with the ADMITTED bit seen by the adoption pass (takeover).
    pub seen: u64,
    /// Flows adopted (new entries).
    pub adopted: u64,
    /// Earlier adoptions brought up to date.
    pub refreshed: u64,
    /// Flows statewall tracked already.
    pub known: u64,
    /// Flows the table had no room for.
    pub no_room: u64,
    /// Kernel entries statewall cannot adopt (handshakes in progress, unknown states).
    pub skipped: u64,
    /// Flows that follow the kernel table again (standby).
    pub following: u64,
}

/// `unblock` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnblockReport {
    /// The address.
    pub addr: IpAddr,
    /// True when a block was lifted, false when the address was not blocked.
    pub unblocked: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(src: &str, sport: u16, dst: &str, dport: u16, state: &str) -> ConnInfo {
        ConnInfo {
            proto: "tcp".into(),
            src: src.parse().expect("test address"),
            dst: dst.parse().expect("test address"),
            sport,
            dport,
            state: state.into(),
            expires_in: 100,
            assured: true,
            counts: Default::default(),
            rule: Default::default(),
            offloaded: false,
        }
    }

    fn filter(args: &[&str]) -> ConnFilter {
        ConnFilter::from_args(args).expect("valid filter")
    }

    #[test]
    fn empty_filter_matches_everything() {
        let c = conn("198.51.100.2", 40000, "203.0.113.2", 80, "ESTABLISHED");
        assert!(ConnFilter::default().matches(&c));
    }

    #[test]
    fn address_and_network_filters() {
        let c = conn("198.51.100.2", 40000, "203.0.113.2", 80, "ESTABLISHED");
        assert!(filter(&["src", "198.51.100.2"]).matches(&c));
        assert!(filter(&["src=198.51.100.0/24"]).matches(&c));
        assert!(!filter(&["src", "198.51.100.3"]).matches(&c));
        assert!(!filter(&["src", "203.0.113.0/24"]).matches(&c));
        assert!(filter(&["dst", "203.0.113.0/24"]).matches(&c));
        assert!(!filter(&["dst", "2001:db8::/32"]).matches(&c));
        let v6 = conn("2001:db8::1", 5000, "2001:db8:1::2", 443, "SYN_SENT");
        assert!(filter(&["src", "2001:db8::/48"]).matches(&v6));
        assert!(!filter(&["src", "10.0.0.0/8"]).matches(&v6));
    }

    #[test]
    fn port_matches_either_side() {
        let c = conn("198.51.100.2", 40000, "203.0.113.2", 80, "ESTABLISHED");
        assert!(filter(&["port", "80"]).matches(&c));
        assert!(filter(&["port", "40000"]).matches(&c));
        assert!(!filter(&["port", "443"]).matches(&c));
    }

    #[test]
    fn state_is_case_insensitive_and_validated() {
        let c = conn("198.51.100.2", 40000, "203.0.113.2", 80, "TIME_WAIT");
        assert!(filter(&["state", "time_wait"]).matches(&c));
        assert!(filter(&["state=TIME_WAIT"]).matches(&c));
        assert!(!filter(&["state", "established"]).matches(&c));
        let e = ConnFilter::from_args(&["state", "ESTABLISED"]).unwrap_err();
        assert!(e.contains("unknown state `ESTABLISED`"), "{e}");
    }

    #[test]
    fn all_filters_must_match() {
        let c = conn("198.51.100.2", 40000, "203.0.113.2", 80, "ESTABLISHED");
        assert!(filter(&[
            "src",
            "198.51.100.0/24",
            "port",
            "80",
            "state",
            "established"
        ])
        .matches(&c));
        assert!(!filter(&["src", "198.51.100.0/24", "port", "22"]).matches(&c));
    }

    #[test]
    fn bad_filter_words_are_errors() {
        for (args, want) in [
            (&["src"][..], "`src` needs a value"),
            (&["src", "nope"][..], "not an IP address"),
            (&["port", "70000"][..], "not a port number"),
            (&["proto", "nope"][..], "unknown protocol `nope`"),
            (&["rule", "gw.rules:3"][..], "unknown filter `rule`"),
        ] {
            let e = ConnFilter::from_args(args).unwrap_err();
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }

    #[test]
    fn request_lines_round_trip() {
        let reqs = [
            Request::Status,
            Request::Stats,
            Request::Conns(ConnFilter::default()),
            Request::Conns(filter(&[
                "src",
                "10.0.0.0/8",
                "dst",
                "192.0.2.1",
                "port",
                "22",
            ])),
            Request::Reload,
            Request::Blocks,
            Request::Unblock {
                addr: "2001:db8::9".parse().expect("addr"),
            },
        ];
        for r in reqs {
            let line = r.to_line();
            assert!(line.ends_with('\n') && line.starts_with('{'), "{line}");
            assert!(line.contains("\"v\":1"), "{line}");
            assert_eq!(Request::from_line(line.as_bytes()), Ok(r));
        }
    }

    #[test]
    fn wire_format_is_flat() {
        let line = Request::Conns(filter(&["src", "10.0.0.1/8", "state", "established"])).to_line();
        let v: Value = serde_json::from_str(&line).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"v":1,"cmd":"conns","src":"10.0.0.0/8","state":"ESTABLISHED"})
        );
    }

    #[test]
    fn bad_requests_are_explained() {
        for (line, want) in [
            (&b"not json"[..], "malformed request"),
            (b"[1,2]", "not a JSON object"),
            (b"{\"cmd\":\"status\"}", "missing `v`"),
            (
                b"{\"v\":2,\"cmd\":\"status\"}",
                "unsupported protocol version 2",
            ),
            (b"{\"v\":1}", "missing `cmd`"),
            (
                b"{\"v\":1,\"cmd\":\"shutdown\"}",
                "unknown variant `shutdown`",
            ),
            (
                b"{\"v\":1,\"cmd\":\"conns\",\"sport\":1}",
                "unknown field `sport`",
            ),
            (
                b"{\"v\":1,\"cmd\":\"conns\",\"src\":\"x\"}",
                "not an IP address",
            ),
            (b"{\"v\":1,\"cmd\":\"unblock\"}", "missing field `addr`"),
        ] {
            let e = Request::from_line(line).unwrap_err().0;
            assert!(e.contains(want), "{}: {e}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn responses_round_trip() {
        let ok = Response::Ok(serde_json::json!({"a": 1}));
        assert_eq!(ok.to_line(), "{\"v\":1,\"ok\":true,\"data\":{\"a\":1}}\n");
        assert_eq!(Response::from_line(ok.to_line().as_bytes()), Ok(ok));
        let err = Response::Err {
            error: "rule file rejected".into(),
            details: vec!["a:1:1: error: x".into(), "a:2:1: error: y".into()],
        };
        assert_eq!(Response::from_line(err.to_line().as_bytes()), Ok(err));
        assert!(Response::from_line(b"{\"v\":7,\"ok\":true}")
            .unwrap_err()
            .contains("version 7"));
    }

    #[test]
    fn stats_carry_every_engine_counter_under_its_name() {
        let report = StatsReport::new(
            Stats {
                packets: 3,
                logs_suppressed: 2,
                drops: vec![("tcp_null".into(), 1), ("no_connection".into(), 2)],
                ..Stats::default()
            },
            vec![("ESTABLISHED".into(), 1)],
        );
        let v = serde_json::to_value(&report).expect("json");
        let Value::Object(map) = &v else {
            panic!("not an object: {v}")
        };
        let keys: Vec<&str> = map.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "accepted",
                "adopted",
                "answered",
                "answers_limited",
                "dropped",
                "drops",
                "early_drops",
                "entries",
                "expired",
                "fragments",
                "ignored",
                "logs_suppressed",
                "new_connections",
                "packets",
                "related",
                "resumed",
                "states"
            ]
        );
        assert_eq!(
            v["drops"],
            serde_json::json!({"tcp_null": 1, "no_connection": 2})
        );
        assert_eq!(v["logs_suppressed"], 2);
        let back: StatsReport = serde_json::from_value(v).expect("round trip");
        assert_eq!(back.stats.packets, 3);
        assert_eq!(back.stats.logs_suppressed, 2);
        // A daemon from before `answered` and `logs_suppressed` is still understood.
        let old: StatsReport =
            serde_json::from_str(r#"{"packets":1,"drops":{},"states":{}}"#).expect("old daemon");
        assert_eq!((old.stats.packets, old.stats.logs_suppressed), (1, 0));
    }

    #[test]
    fn engine_conn_info_maps_field_for_field() {
        let info = conn("198.51.100.2", 40000, "203.0.113.2", 80, "ESTABLISHED");
        let engine_json = serde_json::to_value(&info).expect("json");
        let entry = ConnEntry::from(info);
        assert_eq!(serde_json::to_value(&entry).expect("json"), engine_json);
    }
}
