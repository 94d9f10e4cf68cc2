//! Whether the kernel reassembles fragments before the queue.
//!
//! Linux reassembles IPv4 and IPv6 datagrams in PREROUTING (priority -400, before raw and
//! before the FORWARD hook's NFQUEUE rule) once `nf_defrag_ipv4` / `nf_defrag_ipv6` are loaded
//! and a rule of the namespace uses connection tracking. `nf_conntrack` pulls both modules in,
//! and the rules statewall installs always use it (`CT --notrack` with `notrack`, the
//! `CONNMARK` save without), so with `[netfilter] manage = true` statewall sees whole
//! datagrams. Without them fragments reach statewall one by one; the engine then lets a later
//! fragment through only behind its admitted first fragment (`conntrack::fragments`) and
//! reordered tails are lost. The daemon checks this at start and says so.

use std::path::Path;

/// Which families the kernel reassembles for the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reassembly {
    /// `nf_defrag_ipv4` is loaded or built in.
    pub ipv4: bool,
    /// `nf_defrag_ipv6` is loaded or built in.
    pub ipv6: bool,
}

/// Whether `module` is loaded (`/sys/module/NAME`) or built in (listed in `builtin`, the
/// kernel's `modules.builtin`).
fn present(module: &str, loaded: &dyn Fn(&str) -> bool, builtin: &str) -> bool {
    loaded(module)
        || builtin
            .lines()
            .any(|l| l.rsplit('/').next() == Some(&format!("{module}.ko")))
}

/// The kernel's reassembly from what `loaded` and `builtin` say. `nf_conntrack` selects both
/// defragmentation modules (Kconfig, since Linux 5.1) and, having parameters, shows in
/// `/sys/module` even when built in (the defragmentation modules then do not).
pub fn reassembly_from(loaded: &dyn Fn(&str) -> bool, builtin: &str) -> Reassembly {
    let conntrack = present("nf_conntrack", loaded, builtin);
    Reassembly {
        ipv4: conntrack || present("nf_defrag_ipv4", loaded, builtin),
        ipv6: conntrack || present("nf_defrag_ipv6", loaded, builtin),
    }
}

/// This kernel's reassembly.
pub fn kernel_reassembly() -> Reassembly {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let builtin =
        std::fs::read_to_string(format!("/lib/modules/{}/modules.builtin", release.trim()))
            .unwrap_or_default();
    reassembly_from(&|m| Path::new("/sys/module").join(m).exists(), &builtin)
}

/// The warning to give, if any, for `r` (`managed`: statewall installed its own rules, which
/// use connection tracking).
pub fn warning(r: Reassembly, managed: bool) -> Option<String> {
    let missing: Vec<&str> = [("nf_defrag_ipv4", r.ipv4), ("nf_defrag_ipv6", r.ipv6)]
        .iter()
        .filter(|(_, present)| !present)
        .map(|(m, _)| *m)
        .collect();
    let consequence = "fragments reach statewall unreassembled: a later fragment passes only \
                       behind its admitted first fragment (else dropped as fragment_orphan), and \
                       fragments that overtake their first are lost";
    if !missing.is_empty() {
        return Some(format!(
            "kernel defragmentation not loaded ({}): {consequence}; load nf_conntrack",
            missing.join(", ")
        ));
    }
    (!managed).then(|| {
        format!(
            "netfilter.manage = false: the kernel reassembles only if a rule of this namespace \
             uses connection tracking (-m conntrack, CONNMARK, CT); otherwise {consequence}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reassembly_is_read_from_loaded_or_builtin_modules() {
        let none = |_: &str| false;
        assert_eq!(
            reassembly_from(&none, ""),
            Reassembly {
                ipv4: false,
                ipv6: false
            }
        );
        let v4 = |m: &str| m == "nf_defrag_ipv4";
        let builtin = "kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko\nkernel/fs/ext4/ext4.ko\n";
        assert_eq!(
            reassembly_from(&v4, builtin),
            Reassembly {
                ipv4: true,
                ipv6: true
            }
        );
        // A module whose name merely contains the other's is not it.
        let near = "kernel/net/ipv6/netfilter/xnf_defrag_ipv6.ko\n";
        assert!(!reassembly_from(&v4, near).ipv6);
        // A kernel with conntrack built in shows only nf_conntrack (it has parameters).
        let conntrack = |m: &str| m == "nf_conntrack";
        assert_eq!(
            reassembly_from(&conntrack, ""),
            Reassembly {
                ipv4: true,
                ipv6: true
            }
        );
    }

    #[test]
    fn the_warning_names_what_is_missing() {
        let both = Reassembly {
            ipv4: true,
            ipv6: true,
        };
        assert_eq!(warning(both, true), None);
        assert!(warning(both, false).is_some_and(|w| w.contains("manage = false")));
        let w = warning(
            Reassembly {
                ipv6: false,
                ..both
            },
            true,
        )
        .unwrap_or_default();
        assert!(
            w.contains("nf_defrag_ipv6") && !w.contains("nf_defrag_ipv4"),
            "{w}"
        );
        assert!(w.contains("fragment_orphan"), "{w}");
    }
}
