//! leco's programs as `bpftool prog show -j` sees them, and their kernel
//! run-time statistics.

use std::collections::HashSet;
use std::fs;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::signals;

/// Longest name the kernel keeps for a program (BPF_OBJ_NAME_LEN - 1); a
/// bpftool that cannot read the full name from BTF shows this much.
const KERNEL_NAME_LEN: usize = 15;

/// One loaded program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prog {
    /// Kernel program id.
    pub id: u32,
    /// Name as bpftool shows it.
    pub name: String,
    /// Total run time, counted only while `kernel.bpf_stats_enabled` is 1.
    pub run_time_ns: u64,
    /// Number of runs, counted likewise.
    pub run_cnt: u64,
    /// Runs skipped because the program was already running on that CPU
    /// (counted whatever the sysctl says).
    pub recursion_misses: u64,
    /// Processes holding the program open, when bpftool can tell.
    pub pids: Option<Vec<u32>>,
}

impl Prog {
    /// The leco program this is, accepting a name cut to the kernel's
    /// length.
    pub fn leco_name(&self) -> Option<&'static str> {
        canonical_name(&self.name)
    }
}

/// The leco program called `name`, or whose name was cut to `name`.
pub fn canonical_name(name: &str) -> Option<&'static str> {
    leco_bpf::program_names()
        .find(|p| *p == name || (name.len() == KERNEL_NAME_LEN && p.starts_with(name)))
}

/// Parses `bpftool prog show -j`, in which zero counters are left out.
pub fn parse_progs(json: &str) -> Result<Vec<Prog>> {
    let v: Value = serde_json::from_str(json).context("bpftool output is not JSON")?;
    let Some(items) = v.as_array() else {
        bail!("bpftool output is not a JSON array");
    };
    let mut progs = Vec::with_capacity(items.len());
    for item in items {
        let Some(id) = item.get("id").and_then(Value::as_u64) else {
            bail!("bpftool listed a program without an id: {item}");
        };
        let count = |k: &str| item.get(k).and_then(Value::as_u64).unwrap_or(0);
        let pids = item.get("pids").and_then(Value::as_array).map(|ps| {
            ps.iter()
                .filter_map(|p| p.get("pid").and_then(Value::as_u64))
                .map(|p| p as u32)
                .collect()
        });
        progs.push(Prog {
            id: id as u32,
            name: item
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            run_time_ns: count("run_time_ns"),
            run_cnt: count("run_cnt"),
            recursion_misses: count("recursion_misses"),
            pids,
        });
    }
    Ok(progs)
}

/// Every program loaded on the machine.
pub fn list_progs() -> Result<Vec<Prog>> {
    let out = Command::new("bpftool")
        .args(["prog", "show", "-j"])
        .output()
        .context("cannot run bpftool (is it installed and on PATH?)")?;
    if !out.status.success() {
        bail!(
            "bpftool prog show failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse_progs(&String::from_utf8_lossy(&out.stdout))
}

/// Run count and total run time (ns) now of the leco program `name`
/// among programs `ids` (bpf_stats must be on for them to move).
pub fn runs_of(ids: &HashSet<u32>, name: &str) -> Result<(u64, u64)> {
    Ok(list_progs()?
        .iter()
        .filter(|p| ids.contains(&p.id) && p.leco_name() == Some(name))
        .fold((0, 0), |(c, t), p| (c + p.run_cnt, t + p.run_time_ns)))
}

/// leco programs loaded by process `pid`, loaded after `before` (the ids
/// seen before it started) when bpftool cannot name holders.
pub fn leco_progs_of(progs: &[Prog], pid: u32, before: &HashSet<u32>) -> Vec<Prog> {
    let mut held = held_by(progs, pid, before);
    held.retain(|p| p.leco_name().is_some());
    held
}

/// Programs `pid` holds, whatever their names (another build's may not be
/// this build's); when bpftool cannot tell holders, those not in `before`.
pub fn held_by(progs: &[Prog], pid: u32, before: &HashSet<u32>) -> Vec<Prog> {
    progs
        .iter()
        .filter(|p| match &p.pids {
            Some(pids) => pids.contains(&pid),
            None => !before.contains(&p.id),
        })
        .cloned()
        .collect()
}

/// Names of leco's programs (`leco_bpf::program_names`) that `progs` lacks.
pub fn missing(progs: &[Prog]) -> Vec<&'static str> {
    leco_bpf::program_names()
        .filter(|n| !progs.iter().any(|p| p.leco_name() == Some(*n)))
        .collect()
}

/// Kernel cost of one program over a measured window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookCost {
    /// leco program name.
    pub name: &'static str,
    /// Runs during the window.
    pub calls: u64,
    /// Time spent running it during the window.
    pub run_time_ns: u64,
    /// Runs skipped during the window because it was already running on
    /// that CPU: events leco did not see.
    pub recursion_misses: u64,
}

impl HookCost {
    /// Mean cost of one run, `None` when it never ran.
    pub fn mean_ns(&self) -> Option<f64> {
        (self.calls > 0).then(|| self.run_time_ns as f64 / self.calls as f64)
    }
}

/// Per-program counter deltas between two snapshots of the same programs,
/// in the order of `leco_bpf::program_names`; a program absent from either snapshot is left out.
pub fn deltas(before: &[Prog], after: &[Prog]) -> Vec<HookCost> {
    let mut costs: Vec<HookCost> = after
        .iter()
        .filter_map(|a| {
            let name = a.leco_name()?;
            let b = before.iter().find(|b| b.id == a.id)?;
            Some(HookCost {
                name,
                calls: a.run_cnt.saturating_sub(b.run_cnt),
                run_time_ns: a.run_time_ns.saturating_sub(b.run_time_ns),
                recursion_misses: a.recursion_misses.saturating_sub(b.recursion_misses),
            })
        })
        .collect();
    costs.sort_by_key(|c| leco_bpf::program_names().position(|p| p == c.name));
    costs
}

const STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Whether run-time statistics are on now, `None` if unreadable.
pub fn stats_enabled() -> Option<bool> {
    fs::read_to_string(STATS_SYSCTL)
        .ok()
        .map(|v| v.trim() != "0")
}

/// `kernel.bpf_stats_enabled` set to 1 for as long as this lives; the old
/// value comes back on drop (so on error paths and panics too), and on
/// SIGINT, SIGTERM or SIGHUP through [`crate::signals`].
#[derive(Debug)]
pub struct StatsEnabled {
    old: String,
}

impl StatsEnabled {
    /// Turns run-time statistics on for every program of the machine.
    pub fn enable() -> Result<StatsEnabled> {
        let old = fs::read_to_string(STATS_SYSCTL)
            .with_context(|| format!("cannot read {STATS_SYSCTL}"))?
            .trim()
            .to_owned();
        signals::stats_changed(&old);
        let stats = StatsEnabled { old };
        fs::write(STATS_SYSCTL, "1").with_context(|| format!("cannot write {STATS_SYSCTL}"))?;
        Ok(stats)
    }
}

impl Drop for StatsEnabled {
    fn drop(&mut self) {
        match fs::write(STATS_SYSCTL, &self.old) {
            Ok(()) => signals::stats_restored(),
            Err(e) => eprintln!(
                "leco-bench: could not restore {STATS_SYSCTL} to {}: {e}",
                self.old
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW: &str = r#"[{"id":248,"type":"tracing","name":"on_inet_sock_set_state","tag":"d5b8","gpl_compatible":true,"run_time_ns":5000,"run_cnt":50,"recursion_misses":2,"pids":[{"pid":77,"comm":"leco-service"}]},
        {"id":250,"type":"tracing","name":"on_getpeername4","run_time_ns":900,"run_cnt":9},
        {"id":251,"type":"tracing","name":"on_sock_send_le"},
        {"id":3,"type":"cgroup_skb","name":"sd_fw_egress","pids":[{"pid":1,"comm":"systemd"}]}]"#;

    #[test]
    fn parses_bpftool_with_absent_counters() {
        let p = parse_progs(SHOW).expect("valid JSON");
        assert_eq!(p.len(), 4);
        assert_eq!(p[0].id, 248);
        assert_eq!((p[0].run_time_ns, p[0].run_cnt), (5000, 50));
        assert_eq!((p[0].recursion_misses, p[1].recursion_misses), (2, 0));
        assert_eq!(p[0].pids, Some(vec![77]));
        assert_eq!((p[2].run_time_ns, p[2].run_cnt), (0, 0));
        assert_eq!(p[1].pids, None);
    }

    #[test]
    fn rejects_non_arrays() {
        assert!(parse_progs("{}").is_err());
        assert!(parse_progs("nope").is_err());
        assert_eq!(parse_progs("[]").expect("empty array"), vec![]);
    }

    #[test]
    fn names_cut_by_the_kernel_still_match() {
        assert_eq!(canonical_name("on_getpeername4"), Some("on_getpeername4"));
        assert_eq!(
            canonical_name("on_inet_sock_se"),
            Some("on_inet_sock_set_state")
        );
        assert_eq!(canonical_name("on_inet"), None);
        assert_eq!(canonical_name("sd_fw_egress"), None);
    }

    #[test]
    fn picks_programs_by_holder_or_by_novelty() {
        let p = parse_progs(SHOW).expect("valid JSON");
        let before: HashSet<u32> = [250].into_iter().collect();
        let ours: Vec<u32> = leco_progs_of(&p, 77, &before)
            .iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(ours, vec![248, 251]);
        let ours: Vec<u32> = leco_progs_of(&p, 77, &HashSet::new())
            .iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(ours, vec![248, 250, 251]);
        let ours: Vec<u32> = leco_progs_of(&p, 78, &before)
            .iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(ours, vec![251]);
    }

    #[test]
    fn another_builds_programs_are_all_it_holds_whatever_their_names() {
        let mut p = parse_progs(SHOW).expect("valid JSON");
        p[0].name = "on_recvmsg4".to_owned();
        let before: HashSet<u32> = [250].into_iter().collect();
        let held: Vec<u32> = held_by(&p, 77, &before).iter().map(|p| p.id).collect();
        assert_eq!(
            held,
            vec![248, 251],
            "systemd's program is not the service's"
        );
        let held: Vec<u32> = held_by(&p, 1, &before).iter().map(|p| p.id).collect();
        assert_eq!(held, vec![251, 3]);
    }

    #[test]
    fn lists_missing_programs() {
        let p = parse_progs(SHOW).expect("valid JSON");
        let m = missing(&p);
        let all = leco_bpf::program_names().count();
        assert_eq!(m.len(), all - 3, "{all} programs, 3 present");
        assert!(!m.contains(&"on_getpeername4"));
        assert!(!m.contains(&"on_sock_send_length"));
        assert!(m.contains(&"on_sock_recv_length"));
    }

    #[test]
    fn deltas_match_by_id_and_keep_order() {
        let before = parse_progs(SHOW).expect("valid JSON");
        let mut after = before.clone();
        after[0].run_cnt += 10;
        after[0].run_time_ns += 1500;
        after[0].recursion_misses += 3;
        after[1].run_cnt += 4;
        after[1].run_time_ns += 400;
        after.swap(0, 1);
        let d = deltas(&before, &after);
        assert_eq!(d.len(), 3);
        assert_eq!(d[0].name, "on_inet_sock_set_state");
        assert_eq!((d[0].calls, d[0].run_time_ns), (10, 1500));
        assert_eq!(d[0].mean_ns(), Some(150.0));
        assert_eq!(d[0].recursion_misses, 3);
        assert_eq!(d[1].name, "on_sock_send_length");
        assert_eq!(d[1].mean_ns(), None);
        assert_eq!(d[2].name, "on_getpeername4");
        assert_eq!(d[2].mean_ns(), Some(100.0));
    }
}
