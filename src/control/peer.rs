//! Who is on the other end of a control connection: `SO_PEERCRED` (through `rustix`, no
//! `unsafe` here), the user's name and groups from `/etc/passwd` and `/etc/group`, and whether
//! that user may read a given file (used to decide whether a failed reload's source lines may
//! be shown to them).

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

/// The credentials of a connected client, as the kernel recorded them at `connect(2)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Process id (0 when unknown).
    pub pid: i32,
}

impl Peer {
    /// The credentials of the peer of `stream`.
    pub fn of(stream: &UnixStream) -> std::io::Result<Peer> {
        let cred = rustix::net::sockopt::socket_peercred(stream)?;
        Ok(Peer {
            uid: cred.uid.as_raw(),
            gid: cred.gid.as_raw(),
            pid: cred.pid.as_raw_nonzero().get(),
        })
    }

    /// Root (tests, and callers inside the daemon).
    pub fn root() -> Peer {
        Peer {
            uid: 0,
            gid: 0,
            pid: 0,
        }
    }

    /// The user's name from `/etc/passwd`, or its uid as text.
    pub fn user_name(&self) -> String {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        user_name(&passwd, self.uid).unwrap_or_else(|| self.uid.to_string())
    }

    /// The user's groups: the primary group and every group of `/etc/group` listing the user.
    pub fn groups(&self) -> Vec<u32> {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
        groups_of(&group, user_name(&passwd, self.uid).as_deref(), self.gid)
    }

    /// Whether this user may read `path`: root always; otherwise read permission on the file
    /// and search permission on every directory above it, by the owner/group/other rule.
    /// Anything that cannot be checked counts as not readable.
    pub fn may_read(&self, path: &Path) -> bool {
        if self.uid == 0 {
            return true;
        }
        let Ok(full) = std::fs::canonicalize(path) else {
            return false;
        };
        let groups = self.groups();
        let grants = |p: &Path, bit: u32| {
            std::fs::metadata(p)
                .is_ok_and(|m| permits(m.uid(), m.gid(), m.mode(), self.uid, &groups, bit))
        };
        full.ancestors().skip(1).all(|dir| grants(dir, 0o1)) && grants(&full, 0o4)
    }
}

/// Unix permission check for one access bit (`0o4` read, `0o1` search): the owner's bits if
/// the user owns the file, else the group's if one of the user's groups owns it, else other's.
fn permits(owner: u32, group: u32, mode: u32, uid: u32, groups: &[u32], bit: u32) -> bool {
    if owner == uid {
        mode & (bit << 6) != 0
    } else if groups.contains(&group) {
        mode & (bit << 3) != 0
    } else {
        mode & bit != 0
    }
}

/// The name of `uid` in a `/etc/passwd` text.
fn user_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?;
        let id: u32 = f.nth(1)?.parse().ok()?;
        (id == uid).then(|| name.to_string())
    })
}

/// The primary group plus every group of a `/etc/group` text whose member list names `user`.
fn groups_of(group_file: &str, user: Option<&str>, primary: u32) -> Vec<u32> {
    let mut groups = vec![primary];
    let Some(user) = user else {
        return groups;
    };
    for line in group_file.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 {
            continue;
        }
        if f[3].split(',').any(|m| m == user) {
            if let Ok(gid) = f[2].parse() {
                groups.push(gid);
            }
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\nbroken\n";
    const GROUP: &str = "root:x:0:\nadm:x:4:syslog,alice\nstatewall:x:997:bob\n";

    #[test]
    fn names_and_groups_from_the_files() {
        assert_eq!(user_name(PASSWD, 1000).as_deref(), Some("alice"));
        assert_eq!(user_name(PASSWD, 5), None);
        assert_eq!(groups_of(GROUP, Some("alice"), 1000), vec![1000, 4]);
        assert_eq!(groups_of(GROUP, None, 1000), vec![1000]);
    }

    #[test]
    fn owner_then_group_then_other() {
        // Owner bits apply to the owner even when other may read.
        assert!(!permits(1000, 1000, 0o044, 1000, &[1000], 0o4));
        assert!(permits(0, 4, 0o640, 1000, &[1000, 4], 0o4));
        assert!(!permits(0, 0, 0o640, 1000, &[1000, 4], 0o4));
        assert!(permits(0, 0, 0o644, 1000, &[1000], 0o4));
        assert!(permits(0, 0, 0o711, 1000, &[1000], 0o1));
    }

    #[test]
    fn root_reads_everything_and_unknown_files_are_unreadable() {
        assert!(Peer::root().may_read(Path::new("/nonexistent")));
        let nobody = Peer {
            uid: 65534,
            gid: 65534,
            pid: 1,
        };
        assert!(!nobody.may_read(Path::new("/nonexistent/file")));
        assert!(nobody.may_read(Path::new("/etc/passwd")));
    }

    #[test]
    fn credentials_of_a_socket_pair_are_ours() {
        let (a, _b) = UnixStream::pair().expect("socketpair");
        let p = Peer::of(&a).expect("peercred");
        assert_eq!(p.pid, i32::try_from(std::process::id()).expect("pid"));
    }
}
