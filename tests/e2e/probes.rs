//! The crafted probes of `tests/e2e/probes.py`: what the server's capture saw of each.

use std::path::Path;

use super::script;

/// One probe of an expectations file (`probes.py send`/`lone`) and how many of its copies a
/// capture at the server holds.
#[derive(Clone, Debug)]
pub struct ProbeSeen {
    /// The probe's name.
    pub name: String,
    /// `pass` or `drop`.
    pub expect: String,
    /// Copies needed at the server when it should pass.
    pub copies: u64,
    /// Copies the capture holds.
    pub seen: u64,
}

impl ProbeSeen {
    /// Whether the capture matches the expectation: every copy of a probe that should pass,
    /// none of one that should be dropped.
    pub fn as_expected(&self) -> bool {
        if self.expect == "pass" {
            self.seen >= self.copies
        } else {
            self.seen == 0
        }
    }
}

/// `probes.py check PCAP EXPECT`, run by `run` in the lab's client namespace (it returns the
/// command's output): every probe of `expect` with the copies `pcap` holds, in file order.
pub fn check(pcap: &Path, expect: &Path, run: impl FnOnce(&str) -> String) -> Vec<ProbeSeen> {
    let out = run(&format!(
        "/usr/bin/python3 {} check {} {}",
        script("probes.py"),
        pcap.display(),
        expect.display()
    ));
    let seen: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("probes check: {e}: {out}"));
    let probes: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(expect).expect("expectations"))
            .expect("expectations JSON");
    probes
        .as_array()
        .expect("expectations array")
        .iter()
        .map(|e| {
            let name = e["name"].as_str().unwrap_or_default().to_string();
            ProbeSeen {
                seen: seen[name.as_str()].as_u64().unwrap_or(0),
                expect: e["expect"].as_str().unwrap_or_default().to_string(),
                copies: e["copies"].as_u64().unwrap_or(1),
                name,
            }
        })
        .collect()
}
