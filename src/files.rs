//! Reading the admin's files (configuration, rule files) so that no file can hang or exhaust
//! the daemon: only regular files, at most a documented size.
//!
//! A FIFO, a device or `/dev/zero` named by an `include` would otherwise block a SIGHUP reload
//! on the main thread or fill the memory. The file is opened with `O_NONBLOCK` (opening a FIFO
//! for reading then returns at once), its type is checked on the open descriptor (no race
//! between a check of the name and the open), and at most the limit plus one byte is read.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Largest configuration or rule file statewall reads (4 MiB; a rule file of 100 000 rules
/// is about 3 MiB).
pub const MAX_FILE: u64 = 4 * 1024 * 1024;

/// Reads `path` as UTF-8 text if it is a regular file of at most `limit` bytes. A FIFO, a
/// device, a directory or a larger file is an error (`InvalidInput`) whose message says why.
pub fn read_regular(path: &Path, limit: u64) -> io::Result<String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        let kind = kind_of(&meta.file_type());
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a regular file ({kind})"),
        ));
    }
    let too_large = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("larger than the limit of {limit} bytes"),
        )
    };
    if meta.len() > limit {
        return Err(too_large());
    }
    let mut text = String::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // The file may grow between fstat and read: never read more than the limit.
    let read = read_to_end(file, limit, &mut text)?;
    if read > limit {
        return Err(too_large());
    }
    Ok(text)
}

fn read_to_end(file: File, limit: u64, text: &mut String) -> io::Result<u64> {
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    let n = bytes.len() as u64;
    *text = String::from_utf8(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not valid UTF-8 text"))?;
    Ok(n)
}

fn kind_of(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("statewall-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir.join(name)
    }

    #[test]
    fn reads_a_regular_file() {
        let p = tmp("ok.rules");
        std::fs::write(&p, "allow tcp port 22\n").expect("write");
        assert_eq!(
            read_regular(&p, MAX_FILE).expect("read"),
            "allow tcp port 22\n"
        );
    }

    #[test]
    fn a_fifo_is_refused_at_once() {
        let p = tmp("fifo.rules");
        let _ = std::fs::remove_file(&p);
        let made = std::process::Command::new("mkfifo")
            .arg(&p)
            .status()
            .expect("run mkfifo");
        assert!(made.success());
        let t0 = Instant::now();
        let e = read_regular(&p, MAX_FILE).unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(1), "blocked on the FIFO");
        assert!(e.to_string().contains("FIFO"), "{e}");
    }

    #[test]
    fn devices_and_directories_are_refused() {
        let e = read_regular(Path::new("/dev/zero"), MAX_FILE).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
        let e = read_regular(Path::new("/"), MAX_FILE).unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
    }

    #[test]
    fn a_file_over_the_limit_is_refused() {
        let p = tmp("big.rules");
        std::fs::write(&p, vec![b'#'; 101]).expect("write");
        let e = read_regular(&p, 100).unwrap_err();
        assert!(e.to_string().contains("limit of 100 bytes"), "{e}");
        assert_eq!(read_regular(&p, 101).expect("at the limit").len(), 101);
    }
}
