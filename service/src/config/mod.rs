//! leco-service's settings, in one table: each row is a field of
//! [`ServiceConfig`] with its name in config.kdl (and as a command-line
//! option), its kind (type and range, from leco-kdlconf), its default and a
//! doc comment whose first paragraph is its one-line help. From the table
//! come the defaults, the reading of config.kdl's `service {}` section and
//! its errors ([`file`]), the command-line options and their help
//! ([`cli`]); a test keeps the annotated config.kdl in step with it.
//!
//! Adding a setting is one row here plus the code that uses it.

pub mod cli;
pub mod file;
mod table;

use std::time::Duration;

use leco_kdlconf::kind::{Integer, PowerOfTwo, Seconds};
use leco_kdlconf::DAY;

pub use leco_kdlconf::ConfigError;
pub use table::Setting;

table::settings! {
    /// Least time between two traffic updates of one connection (the `~`
    /// lines and the ConnectionEvent signals of kind "update").
    update_interval: Duration {
        name: "update-interval",
        kind: Seconds::between(Duration::from_millis(10), DAY),
        default: leco_bpf::Options::DEFAULT.update_interval,
    }

    /// Time without traffic after which a UDP flow counts as ended; closing
    /// its socket ends it at once.
    udp_idle: Duration {
        name: "udp-idle",
        kind: Seconds::between(Duration::from_secs(1), DAY),
        default: Duration::from_secs(60),
    }

    /// How long ended connections stay in the backlog that Snapshot()
    /// returns, so that a client started late still sees them (0 keeps
    /// none).
    backlog: Duration {
        name: "backlog",
        kind: Seconds::between(Duration::ZERO, DAY),
        default: Duration::from_secs(300),
    }

    /// Most ended connections kept in the backlog; the oldest go first.
    backlog_max: usize {
        name: "backlog-max",
        kind: Integer::new(0, 1_000_000, "N"),
        default: 2_048,
    }

    /// Capacity of the kernel's flow table; when it is full, the least
    /// recently used flows make room.
    max_flows: u32 {
        name: "max-flows",
        kind: Integer::new(leco_bpf::MIN_FLOWS as i128, 4_194_304, "N"),
        default: leco_bpf::Options::DEFAULT.max_flows,
    }

    /// Size of the kernel's event ring buffer in KiB. Raise it if the
    /// service reports dropped records.
    ring_buffer_kib: u32 {
        name: "ring-buffer-kib",
        kind: PowerOfTwo::new(4, 1 << 20, 256, "KIB"),
        default: leco_bpf::Options::DEFAULT.ring_bytes / 1024,
    }

    /// Most ConnectionEvent signals per second on the bus; beyond it, each
    /// connection's pending updates merge into its latest state (its `new`
    /// and its end are still signalled).
    signal_rate: u32 {
        name: "signal-rate",
        kind: Integer::new(1, 1_000_000, "N"),
        default: 5_000,
    }

    /// How long the store (--state-dir) keeps ended connections for
    /// History() and Totals(), and programs and destinations not seen
    /// since; older ones are removed first.
    retention: Duration {
        name: "retention",
        kind: Seconds::between(DAY, DAY * 3650),
        default: DAY * 30,
    }

    /// Largest size of the store's database in MiB; past it, the oldest
    /// ended connections are removed.
    store_max_mib: u32 {
        name: "store-max-mib",
        kind: Integer::new(1, 1 << 20, "MIB"),
        default: 256,
    }

    /// How long a new store only learns: until then no connection is told
    /// as new (`novelty`), so that the first day is not all "new" (0 turns
    /// it off).
    warm_up: Duration {
        name: "warm-up",
        kind: Seconds::between(Duration::ZERO, DAY * 30),
        default: Duration::from_secs(3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `service {}` section of the annotated config.kdl, as (comment,
    /// setting line) pairs: each setting with the comment just above it.
    fn documented() -> Vec<(String, String)> {
        let text = include_str!("../../../config.kdl");
        let mut inside = false;
        let mut comment: Vec<&str> = Vec::new();
        let mut out = Vec::new();
        for line in text.lines() {
            if line.starts_with("service {") {
                inside = true;
                continue;
            }
            if !inside {
                continue;
            }
            if line == "}" {
                break;
            }
            let line = line.trim();
            if let Some(c) = line.strip_prefix("//") {
                comment.push(c.trim());
            } else if line.is_empty() {
                comment.clear();
            } else {
                out.push((comment.join(" "), line.to_owned()));
                comment.clear();
            }
        }
        out
    }

    #[test]
    fn the_annotated_config_kdl_follows_the_table() {
        let documented = documented();
        let settings = ServiceConfig::settings();
        let names: Vec<&str> = documented
            .iter()
            .map(|(_, line)| line.split_whitespace().next().unwrap_or(""))
            .collect();
        let table: Vec<&str> = settings.iter().map(|s| s.name).collect();
        assert_eq!(
            names, table,
            "config.kdl's service {{}} has other settings than the table"
        );
        for (setting, (comment, line)) in settings.iter().zip(&documented) {
            assert_eq!(
                line,
                &format!("{} {}", setting.name, setting.default),
                "config.kdl must show the default of `{}`",
                setting.name
            );
            let help = setting.help();
            assert!(
                comment.starts_with(&help),
                "the comment above `{}` in config.kdl must start with its help from the \
                 table:\n  {help}\nnot:\n  {comment}",
                setting.name
            );
            let mut kind = setting.describe.clone();
            kind[..1].make_ascii_uppercase();
            assert!(
                comment.ends_with(&format!("{kind}.")),
                "the comment above `{}` in config.kdl must end with what a value is: \
                 `{kind}.`, not:\n  {comment}",
                setting.name
            );
        }
    }

    #[test]
    fn settings_are_named_for_the_file_and_the_command_line() {
        for s in ServiceConfig::settings() {
            assert!(
                s.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{}",
                s.name
            );
            assert!(
                !s.help().is_empty() && s.help().ends_with('.'),
                "{}",
                s.name
            );
        }
    }
}
