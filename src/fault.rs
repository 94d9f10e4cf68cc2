//! Fault injection for the end-to-end tests of the daemon's failure paths.
//!
//! Compiled in only with the `fault-injection` feature (which the `e2e` test feature turns
//! on); a build without it (the package, `cargo build --release`) answers `false` to every
//! question here and reads no environment. With the feature, the environment variable
//! `FAULT_INJECT_STATEWALL` holds a comma-separated list of faults:
//!
//! - `recv_error`: every receive after the first packet fails (a worker that gives up);
//! - `action_panic`: performing a decision's actions panics (caught and counted);
//! - `stall`: a worker stops for good after its first packet, without failing (the watchdog
//!   must notice).

/// A fault the tests can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Receives fail after the first packet.
    RecvError,
    /// Action handling panics.
    ActionPanic,
    /// A worker stalls after its first packet.
    Stall,
}

/// Whether `fault` is injected in this process.
#[cfg(feature = "fault-injection")]
pub fn injected(fault: Fault) -> bool {
    use std::sync::OnceLock;
    static FAULTS: OnceLock<Vec<Fault>> = OnceLock::new();
    FAULTS
        .get_or_init(|| {
            let text = std::env::var("FAULT_INJECT_STATEWALL").unwrap_or_default();
            text.split(',')
                .filter_map(|w| match w.trim() {
                    "recv_error" => Some(Fault::RecvError),
                    "action_panic" => Some(Fault::ActionPanic),
                    "stall" => Some(Fault::Stall),
                    _ => None,
                })
                .collect()
        })
        .contains(&fault)
}

/// Whether `fault` is injected in this process (never, in this build).
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn injected(_fault: Fault) -> bool {
    false
}
