//! The traffic endpoints of `tests/e2e/apps.py`, as the tests start them.

use super::lab::Lab;
use super::script;

/// Serves `files` (name → MiB of random data) and a `small` file (`small\n`) over HTTP on
/// port 8080, IPv4 and IPv6, from srv (`apps.py httpd`); returns the sha256 of each of `files`
/// by name, in order.
pub fn http_server(lab: &mut Lab, files: &[(&str, u32)]) -> Vec<(String, String)> {
    let dir = lab.tmp.join("www");
    std::fs::create_dir_all(&dir).expect("www");
    let mut sums = Vec::new();
    for (name, mib) in files {
        let path = dir.join(name);
        let out = lab.ok(
            "srv",
            60,
            &format!(
                "head -c {}M /dev/urandom > {p} && sha256sum {p}",
                mib,
                p = path.display()
            ),
        );
        let sum = out
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        sums.push((name.to_string(), sum));
    }
    std::fs::write(dir.join("small"), "small\n").expect("small file");
    lab.spawn(
        "srv",
        &format!(
            "exec python3 {} httpd :: 8080 {}",
            script("apps.py"),
            dir.display()
        ),
    );
    lab.wait_port("srv", 8080);
    sums
}

/// `http://ADDR:PORT/PATH`, with IPv6 addresses in brackets.
pub fn url(addr: &str, port: u16, path: &str) -> String {
    if addr.contains(':') {
        format!("http://[{addr}]:{port}/{path}")
    } else {
        format!("http://{addr}:{port}/{path}")
    }
}
