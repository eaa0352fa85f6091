//! The manifest of a handover: which kernel objects one load made, by name
//! and kernel id, and the settings it baked in.
//!
//! It travels with the objects it describes, as a small frozen BPF array map
//! of its own (systemd's file descriptor store and bpffs hold only kernel
//! objects, no files), and it is always handed over last: whoever finds a
//! manifest knows the load that wrote it finished handing over everything it
//! names, and can tell a missing or foreign object by its id.

use std::fmt::Write as _;
use std::time::Duration;

use crate::handoff::HandoffError;

/// First line of every manifest; the number changes with the format.
const MAGIC: &str = "leco-handoff 1";

/// The settings fixed when the programs were loaded (their read-only data
/// and map sizes): a process that only reads the maps cannot change them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSettings {
    /// Minimum time between two traffic updates of one flow.
    pub update_interval: Duration,
    /// The kernel's wake-up coalescing interval of the ring buffer reader.
    pub wakeup_latency: Duration,
    /// Size of the event ring buffer in bytes.
    pub ring_bytes: u32,
    /// Capacity of the kernel's flow table.
    pub max_flows: u32,
    /// Benchmark mode: programs return at once.
    pub hooks_only: bool,
}

/// A map user space reads, in a handover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MapRole {
    /// The event ring buffer.
    Events,
    /// The flow table.
    Flows,
    /// The programs' global counters (`.bss`).
    Counters,
    /// Inbound attempts blocked before any socket, aggregated.
    BlockedIn,
}

impl MapRole {
    /// Every role, in handover order.
    pub const ALL: [MapRole; 4] = [
        MapRole::Events,
        MapRole::Flows,
        MapRole::Counters,
        MapRole::BlockedIn,
    ];

    fn word(self) -> &'static str {
        match self {
            MapRole::Events => "events",
            MapRole::Flows => "flows",
            MapRole::Counters => "counters",
            MapRole::BlockedIn => "blocked_in",
        }
    }

    fn from_word(w: &str) -> Option<MapRole> {
        MapRole::ALL.into_iter().find(|r| r.word() == w)
    }
}

/// One kernel object of a handover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A map, with the kernel's id and name for it.
    Map {
        /// What it is for.
        role: MapRole,
        /// Kernel map id.
        id: u32,
        /// The kernel's (truncated) name of the map.
        kernel_name: String,
    },
    /// The link that keeps one program attached.
    Link {
        /// Program name in leco.bpf.c.
        program: String,
        /// Kernel link id.
        id: u32,
        /// Kernel id of the program it attaches.
        prog_id: u32,
    },
}

impl Entry {
    /// The name this object is handed over under: its `FDNAME` in systemd's
    /// file descriptor store and its file name in a pin directory.
    pub fn handover_name(&self) -> String {
        match self {
            Entry::Map { role, .. } => map_name(*role),
            Entry::Link { program, .. } => link_name(program),
        }
    }

    /// The kernel id of the object.
    pub fn id(&self) -> u32 {
        match self {
            Entry::Map { id, .. } | Entry::Link { id, .. } => *id,
        }
    }
}

/// The handover name of a map (see [`Entry::handover_name`]). bpffs refuses
/// names with dots and systemd names with colons: neither is used.
pub fn map_name(role: MapRole) -> String {
    format!("leco-map-{}", role.word())
}

/// The handover name of the link of `program`.
pub fn link_name(program: &str) -> String {
    format!("leco-link-{program}")
}

/// The handover name of the manifest itself.
pub const MANIFEST_NAME: &str = "leco-manifest";

/// Kernel name of the manifest map (at most 15 bytes).
pub(crate) const MANIFEST_MAP_NAME: &str = "leco_manifest";

/// Size of the manifest map's one value: room for some 60 entries.
pub(crate) const MANIFEST_BYTES: u32 = 4096;

/// What one load handed over (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Version of leco that loaded the programs.
    pub version: String,
    /// Sizes of the flow table's key and value: a reader built for another
    /// layout must not read the table.
    pub layout: (u32, u32),
    /// Settings baked in at load time.
    pub settings: LoadSettings,
    /// Every object handed over, the manifest excepted.
    pub entries: Vec<Entry>,
    /// What works less well on this kernel, one sentence each.
    pub degraded: Vec<String>,
}

impl Manifest {
    /// The text form, one fact a line.
    pub fn to_text(&self) -> String {
        let s = &self.settings;
        let mut t = format!(
            "{MAGIC}\nversion {}\nlayout {} {}\nsettings {} {} {} {} {}\n",
            self.version,
            self.layout.0,
            self.layout.1,
            s.update_interval.as_nanos(),
            s.wakeup_latency.as_nanos(),
            s.ring_bytes,
            s.max_flows,
            u8::from(s.hooks_only),
        );
        for e in &self.entries {
            // Writing to a String cannot fail.
            let _ = match e {
                Entry::Map {
                    role,
                    id,
                    kernel_name,
                } => writeln!(t, "map {} {id} {kernel_name}", role.word()),
                Entry::Link {
                    program,
                    id,
                    prog_id,
                } => writeln!(t, "link {program} {id} {prog_id}"),
            };
        }
        for d in &self.degraded {
            let _ = writeln!(t, "degraded {}", d.replace('\n', " "));
        }
        t
    }

    /// Parses [`Manifest::to_text`]'s output.
    pub fn parse(text: &str) -> Result<Manifest, HandoffError> {
        let bad = |why: String| HandoffError::Manifest(why);
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(bad(format!(
                "it does not start with `{MAGIC}` (written by another version of leco?)"
            )));
        }
        let mut version = None;
        let mut layout = None;
        let mut settings = None;
        let mut entries = Vec::new();
        let mut degraded = Vec::new();
        for line in lines {
            let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
            let f: Vec<&str> = rest.split(' ').collect();
            let num = |i: usize| -> Result<u64, HandoffError> {
                f.get(i)
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| bad(format!("bad line `{line}`")))
            };
            let num32 = |i: usize| -> Result<u32, HandoffError> {
                u32::try_from(num(i)?).map_err(|_| bad(format!("bad line `{line}`")))
            };
            match word {
                "version" => version = Some(rest.to_owned()),
                "layout" => layout = Some((num32(0)?, num32(1)?)),
                "settings" => {
                    settings = Some(LoadSettings {
                        update_interval: Duration::from_nanos(num(0)?),
                        wakeup_latency: Duration::from_nanos(num(1)?),
                        ring_bytes: num32(2)?,
                        max_flows: num32(3)?,
                        hooks_only: num(4)? != 0,
                    })
                }
                "map" => {
                    let role = f
                        .first()
                        .and_then(|w| MapRole::from_word(w))
                        .ok_or_else(|| bad(format!("unknown map in `{line}`")))?;
                    let kernel_name = f
                        .get(2)
                        .ok_or_else(|| bad(format!("bad line `{line}`")))?
                        .to_string();
                    entries.push(Entry::Map {
                        role,
                        id: num32(1)?,
                        kernel_name,
                    });
                }
                "link" => entries.push(Entry::Link {
                    program: f
                        .first()
                        .filter(|p| !p.is_empty())
                        .ok_or_else(|| bad(format!("bad line `{line}`")))?
                        .to_string(),
                    id: num32(1)?,
                    prog_id: num32(2)?,
                }),
                "degraded" => degraded.push(rest.to_owned()),
                "" => {}
                other => return Err(bad(format!("unknown line `{other} …`"))),
            }
        }
        let missing = |what: &str| bad(format!("it has no `{what}` line"));
        let manifest = Manifest {
            version: version.ok_or_else(|| missing("version"))?,
            layout: layout.ok_or_else(|| missing("layout"))?,
            settings: settings.ok_or_else(|| missing("settings"))?,
            entries,
            degraded,
        };
        for role in MapRole::ALL {
            if manifest.map(role).is_none() {
                return Err(bad(format!("it names no {} map", role.word())));
            }
        }
        Ok(manifest)
    }

    /// The entry of the map with `role`.
    pub fn map(&self, role: MapRole) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| matches!(e, Entry::Map { role: r, .. } if *r == role))
    }

    /// Kernel ids of the attached programs.
    pub fn program_ids(&self) -> Vec<(String, u32)> {
        self.entries
            .iter()
            .filter_map(|e| match e {
                Entry::Link {
                    program, prog_id, ..
                } => Some((program.clone(), *prog_id)),
                Entry::Map { .. } => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            version: "0.1.0".into(),
            layout: (40, 136),
            settings: LoadSettings {
                update_interval: Duration::from_millis(1500),
                wakeup_latency: Duration::from_millis(2),
                ring_bytes: 262_144,
                max_flows: 4096,
                hooks_only: false,
            },
            entries: vec![
                Entry::Map {
                    role: MapRole::Events,
                    id: 7,
                    kernel_name: "events".into(),
                },
                Entry::Map {
                    role: MapRole::Flows,
                    id: 8,
                    kernel_name: "flows".into(),
                },
                Entry::Map {
                    role: MapRole::Counters,
                    id: 9,
                    kernel_name: "leco_bpf.bss".into(),
                },
                Entry::Map {
                    role: MapRole::BlockedIn,
                    id: 10,
                    kernel_name: "blocked_in".into(),
                },
                Entry::Link {
                    program: "on_sendmsg4".into(),
                    id: 3,
                    prog_id: 21,
                },
            ],
            degraded: vec!["something\nwent wrong".into()],
        }
    }

    #[test]
    fn round_trips_through_text() {
        let m = sample();
        let back = Manifest::parse(&m.to_text()).expect("parses");
        assert_eq!(back.entries, m.entries);
        assert_eq!(back.settings, m.settings);
        assert_eq!(back.degraded, vec!["something went wrong".to_string()]);
        assert_eq!(back.program_ids(), vec![("on_sendmsg4".to_string(), 21)]);
    }

    #[test]
    fn refuses_foreign_or_incomplete_text() {
        assert!(Manifest::parse("hello\n").is_err());
        let no_flows = sample().to_text().replace("map flows 8 flows\n", "");
        let err = Manifest::parse(&no_flows).expect_err("no flows map");
        assert!(err.to_string().contains("no flows map"), "{err}");
        assert!(Manifest::parse(
            &sample()
                .to_text()
                .replace("link on_sendmsg4 3 21", "link x y")
        )
        .is_err());
    }

    #[test]
    fn names_suit_bpffs_and_systemd() {
        for n in [map_name(MapRole::Counters), link_name("on_sendmsg4")] {
            assert!(!n.contains('.') && !n.contains(':') && n.len() < 255, "{n}");
        }
    }
}
