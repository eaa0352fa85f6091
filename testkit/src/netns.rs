//! Network namespaces a test makes with `ip netns` (iproute2), joined by
//! veth pairs and given nftables rules with `nft`: removed when dropped, so
//! that traffic between them never leaves the machine and a failed test
//! leaves nothing behind. Needs root, `ip` and `nft` (`scripts/deps.sh
//! test` installs them).

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

/// A named network namespace with its `lo` up.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `name` (removing one an earlier run left behind)
    /// and brings its loopback up. Panics, saying what failed, if it cannot.
    pub fn create(name: &str) -> Netns {
        let _ = Command::new("ip")
            .args(["netns", "del", name])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", name]);
        let ns = Netns {
            name: name.to_owned(),
        };
        ip(&["-n", name, "link", "set", "lo", "up"]);
        ns
    }

    /// Its name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Loads `ruleset` (nft syntax) into it with `nft -f -`.
    pub fn nft(&self, ruleset: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "ip netns exec {} nft: {e} (apt install nftables)",
                    self.name
                )
            });
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(ruleset.as_bytes())
            .expect("writing the ruleset to nft");
        let status = child.wait().expect("waiting for nft");
        assert!(status.success(), "nft refused the ruleset:\n{ruleset}");
    }

    /// The packets counted so far by its rule whose text contains `rule`
    /// (a rule with `counter`, e.g. `dport 2222`), as `nft list ruleset`
    /// shows them; why not, if it cannot tell.
    pub fn packets_counted(&self, rule: &str) -> Result<u64, String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "list", "ruleset"])
            .output()
            .map_err(|e| format!("nft list ruleset: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.contains(rule))
            .ok_or_else(|| format!("no rule with `{rule}` in {text}"))?;
        line.split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("no packet count in `{}`", line.trim()))
    }

    /// Moves the calling thread into it (call it from a forked child).
    pub fn enter(&self) -> io::Result<()> {
        join(&self.name)
    }
}

/// Moves the calling thread into namespace `name` (of `ip netns`): for a
/// thread or child that holds the name, not the [`Netns`].
pub fn join(name: &str) -> io::Result<()> {
    let f = File::open(format!("/run/netns/{name}"))?;
    // SAFETY: setns with an open namespace file descriptor.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Joins `a` and `b` with the veth pair `<name>a` (in `a`, address
/// `a_addr`, e.g. `10.77.0.1/24` or `fd77::1/64`) and `<name>b` (in `b`),
/// both up. IPv6 addresses skip duplicate address detection, so they are
/// usable at once.
pub fn veth(name: &str, a: &Netns, a_addrs: &[&str], b: &Netns, b_addrs: &[&str]) {
    let (ea, eb) = (format!("{name}a"), format!("{name}b"));
    ip(&[
        "link", "add", &ea, "netns", &a.name, "type", "veth", "peer", "name", &eb, "netns", &b.name,
    ]);
    for (ns, dev, addrs) in [(a, &ea, a_addrs), (b, &eb, b_addrs)] {
        for addr in addrs {
            let mut args = vec!["-n", &ns.name, "addr", "add", addr, "dev", dev];
            if addr.contains(':') {
                args.push("nodad");
            }
            ip(&args);
        }
        ip(&["-n", &ns.name, "link", "set", dev, "up"]);
    }
}

/// Runs `ip ARGS…`; panics with its stderr if it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("ip {}: {e} (apt install iproute2)", args.join(" ")));
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}
