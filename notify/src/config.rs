//! The `notify { }` section of config.kdl: what to notify about, how
//! often, and the programs muted; and the one edit leco-notify makes to
//! the file itself, adding a program to `mute` ("Mute this program").

use std::path::Path;
use std::time::Duration;

use kdl::{KdlDocument, KdlDocumentFormat, KdlEntry, KdlEntryFormat, KdlNode, KdlNodeFormat};
use leco_kdlconf::{ConfigError, NodeSpec, Shape, Source, DAY};

/// What leco-notify does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyConfig {
    /// Notify when a program never seen before uses the network.
    pub programs: bool,
    /// Notify when a known program talks to a destination never seen
    /// before.
    pub destinations: bool,
    /// Notify when this machine's policy blocks an attempt.
    pub blocked: bool,
    /// Least time between two notifications about one program.
    pub cooldown: Duration,
    /// Notifications a minute at most; past it, one "+N more" notification
    /// counts the rest.
    pub max_per_minute: u32,
    /// Programs never notified about.
    pub mute: Vec<String>,
}

impl Default for NotifyConfig {
    fn default() -> NotifyConfig {
        NotifyConfig {
            programs: true,
            destinations: false,
            blocked: false,
            cooldown: Duration::from_secs(600),
            max_per_minute: 5,
            mute: Vec::new(),
        }
    }
}

/// The nodes of `notify {}`, in the order messages list them.
const NODES: [NodeSpec<'static>; 6] = [
    NodeSpec::value("programs", "#true"),
    NodeSpec::value("destinations", "#false"),
    NodeSpec::value("blocked", "#false"),
    NodeSpec::value("cooldown", "\"10m\""),
    NodeSpec::value("max-per-minute", "5"),
    NodeSpec::values("mute"),
];

/// Longest program name kept in `mute`.
const MUTE_NAME_MAX: usize = 256;

/// Reads the `notify {}` section of the file at `path` (the rest is
/// ignored); errors read `FILE:LINE:COLUMN: what was expected`.
pub fn load(path: &Path) -> Result<NotifyConfig, ConfigError> {
    let text = leco_kdlconf::read_file(path)?;
    parse(&text, path)
}

/// Parses `text` (the contents of `path`, for messages).
pub fn parse(text: &str, path: &Path) -> Result<NotifyConfig, ConfigError> {
    leco_kdlconf::parse_on_thread(text, path, |src| {
        let document = src.document(leco_kdlconf::duration_hint)?;
        match src.section(&document, "notify")? {
            Some(node) => read(&src, node),
            None => Ok(NotifyConfig::default()),
        }
    })
}

fn read(src: &Source<'_>, node: &KdlNode) -> Result<NotifyConfig, ConfigError> {
    let mut config = NotifyConfig::default();
    for (spec, child) in src.settings(node, &NODES)? {
        let name = spec.name;
        match spec.shape {
            Shape::Value { example } => {
                let entry = src.value(child, example)?;
                match name {
                    "programs" => config.programs = src.boolean(name, entry)?,
                    "destinations" => config.destinations = src.boolean(name, entry)?,
                    "blocked" => config.blocked = src.boolean(name, entry)?,
                    "cooldown" => {
                        config.cooldown = src.duration(name, entry, Duration::ZERO..=DAY)?
                    }
                    "max-per-minute" => {
                        config.max_per_minute = src.integer(name, entry, 1..=1_000)?
                    }
                    other => unreachable!("notify {{}} reads every node of its table: {other}"),
                }
            }
            _ => {
                for entry in src.values(child)? {
                    let program = src.string(name, entry, "program names, such as \"curl\"")?;
                    if program.is_empty() || program.len() > MUTE_NAME_MAX {
                        return Err(src.wrong(
                            entry,
                            name,
                            "a program name of 1 to 256 bytes, such as \"curl\"",
                        ));
                    }
                    config.mute.push(program.to_owned());
                }
            }
        }
    }
    Ok(config)
}

/// Why `program` could not be added to `mute` in the file.
#[derive(Debug, thiserror::Error)]
pub enum MuteError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{}: {source}", path.display())]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Adds `program` to `notify { mute … }` in the file at `path`, keeping
/// everything else in it as written (comments included); the file and the
/// section are made if missing. The file is replaced whole (written next
/// to it, then renamed), so that a reader never sees half of it.
pub fn add_mute(path: &Path, program: &str) -> Result<(), MuteError> {
    let text = if path.exists() {
        leco_kdlconf::read_file(path)?
    } else {
        String::new()
    };
    // Checked first: never write a file the readers would refuse.
    parse(&text, path)?;
    let mut doc: KdlDocument = text
        .parse()
        .map_err(|e| ConfigError::whole(path, format!("not KDL: {e}")))?;
    let first = doc.nodes().is_empty();
    let nodes = doc.nodes_mut();
    let notify = match nodes.iter().position(|n| n.name().value() == "notify") {
        Some(i) => &mut nodes[i],
        None => {
            let mut n = KdlNode::new("notify");
            n.set_format(KdlNodeFormat {
                leading: if first { "" } else { "\n" }.into(),
                before_children: " ".into(),
                terminator: "\n".into(),
                ..KdlNodeFormat::default()
            });
            nodes.push(n);
            nodes.last_mut().expect("just pushed")
        }
    };
    let fresh = notify.children().is_none();
    let children = notify.ensure_children();
    if fresh {
        children.set_format(KdlDocumentFormat {
            leading: "\n".into(),
            trailing: String::new(),
        });
    }
    let mute = match children
        .nodes()
        .iter()
        .position(|n| n.name().value() == "mute")
    {
        Some(i) => &mut children.nodes_mut()[i],
        None => {
            let mut n = KdlNode::new("mute");
            n.set_format(KdlNodeFormat {
                leading: "    ".into(),
                terminator: "\n".into(),
                ..KdlNodeFormat::default()
            });
            children.nodes_mut().push(n);
            children.nodes_mut().last_mut().expect("just pushed")
        }
    };
    let already = mute
        .entries()
        .iter()
        .any(|e| e.value().as_string() == Some(program));
    if !already {
        let mut entry = KdlEntry::new(program.to_owned());
        // Quoted like the rest of config.kdl (kdl would write a bare
        // word): a JSON string is a KDL one for text without control
        // characters, and the result is read back before it is written.
        if !program.chars().any(char::is_control) {
            entry.set_format(KdlEntryFormat {
                value_repr: serde_json::to_string(program).unwrap_or_default(),
                leading: " ".into(),
                ..KdlEntryFormat::default()
            });
        }
        mute.entries_mut().push(entry);
    }
    let mut text = doc.to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    if !parse(&text, path)?.mute.iter().any(|m| m == program) {
        return Err(ConfigError::whole(path, "the edit did not read back; left as it was").into());
    }
    let write = |source| MuteError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(write)?;
    }
    let tmp = path.with_extension("kdl.leco-notify");
    std::fs::write(&tmp, &text).map_err(write)?;
    std::fs::rename(&tmp, path).map_err(write)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Result<NotifyConfig, String> {
        parse(text, Path::new("config.kdl")).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_every_setting() {
        assert_eq!(config("").expect("empty"), NotifyConfig::default());
        let c = config(
            "overlay { width 100; }\nnotify {\n  programs #false\n  destinations #true\n  \
             blocked #true\n  cooldown \"1h\"\n  max-per-minute 2\n  mute \"curl\" \"wget\"\n}\n",
        )
        .expect("parses");
        assert_eq!(
            c,
            NotifyConfig {
                programs: false,
                destinations: true,
                blocked: true,
                cooldown: Duration::from_secs(3600),
                max_per_minute: 2,
                mute: vec!["curl".into(), "wget".into()],
            }
        );
    }

    #[test]
    fn the_annotated_config_kdl_shows_the_defaults() {
        let shipped = config(include_str!("../../config.kdl")).expect("config.kdl parses");
        assert_eq!(shipped, NotifyConfig::default());
        let text = include_str!("../../config.kdl");
        for spec in NODES {
            assert!(
                text.contains(&format!("\n    {} ", spec.name))
                    || text.contains(&format!("\n    // {} ", spec.name)),
                "config.kdl's notify {{}} shows `{}`",
                spec.name
            );
        }
    }

    #[test]
    fn mistakes_are_placed() {
        let cases = [
            (
                "notify {\n  cooldown \"10 parsecs\"\n}",
                "config.kdl:2:12: cooldown must be a duration",
            ),
            (
                "notify {\n  max-per-minute 0\n}",
                "config.kdl:2:18: max-per-minute must be",
            ),
            (
                "notify {\n  mute 5\n}",
                "config.kdl:2:8: mute must be program names",
            ),
            (
                "notify {\n  programz #true\n}",
                "config.kdl:2:3: unknown setting `programz` in notify {}",
            ),
        ];
        for (text, want) in cases {
            let got = config(text).expect_err(text);
            assert!(got.starts_with(want), "{text:?}:\n  {got}\nwant {want}");
        }
    }

    #[test]
    fn muting_adds_to_the_file_and_keeps_the_rest() {
        let dir = std::env::temp_dir().join(format!("leco-notify-mute-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("leco/config.kdl");
        // No file yet: it is made.
        add_mute(&path, "curl").expect("mute into a new file");
        assert_eq!(load(&path).expect("reads").mute, ["curl"]);
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, "notify {\n    mute \"curl\"\n}\n");
        // A file with other sections and comments keeps them.
        std::fs::write(
            &path,
            "// my overlay\noverlay {\n    width 300 // narrow\n}\nnotify {\n    cooldown \"1m\"\n}\n",
        )
        .expect("write");
        add_mute(&path, "wget").expect("mute");
        add_mute(&path, "nc").expect("mute");
        add_mute(&path, "wget").expect("again");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            text.contains("// my overlay") && text.contains("width 300 // narrow"),
            "{text}"
        );
        assert!(text.contains("\n    mute \"wget\" \"nc\"\n}"), "{text}");
        let c = load(&path).expect("reads");
        assert_eq!(c.mute, ["wget", "nc"]);
        assert_eq!(c.cooldown, Duration::from_secs(60));
        // A broken file is left alone.
        std::fs::write(&path, "notify { cooldown \"x\" }\n").expect("write");
        assert!(add_mute(&path, "curl").is_err());
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "notify { cooldown \"x\" }\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
