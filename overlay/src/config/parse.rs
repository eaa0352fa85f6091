//! KDL → [`OverlayConfig`](super::OverlayConfig), errors with
//! file:line:column.
//!
//! The overlay reads the `overlay {}` section of `config.kdl` (KDL v2) and
//! ignores every other top-level node (`service {}` is the service's). Its
//! line rules live inside it, in `overlay { rules { … } }`; a top-level
//! `rules` node is an error that says so, because silently ignoring rules
//! would be worse. The annotated default, `config.kdl` at the root of the
//! repository, documents every setting.
//!
//! Errors read `FILE:LINE:COLUMN: message` (1-based; the column counts
//! characters) and say what was expected. A bad regex points into the
//! pattern when the string is written without escapes (a raw string
//! `#"…"#` or a plain one without `\`). leco-kdlconf reads the file and
//! builds the errors; this module knows the settings.

use std::path::Path;
use std::time::Duration;

use kdl::{KdlEntry, KdlNode, KdlValue};
pub use leco_kdlconf::ConfigError;
use leco_kdlconf::{duration_hint, unknown, NodeSpec, Shape, Source, DAY};

use super::{
    Anchor, Layer, Margins, OutputChoice, OverlayConfig, Shadow, DEFAULT_LINE_HEIGHT_FACTOR,
    MAX_ROWS,
};
use crate::color::Rgba;
use crate::fade::FadeCurve;
use crate::format::LineFormat;
use crate::rules::{Action, MatchSpec, Rule, Rules};

/// The nodes of `overlay {}`, in the order messages list them, with an
/// example value for the message when one is missing.
const NODES: [NodeSpec<'static>; 28] = [
    NodeSpec::value("layer", "\"bottom\""),
    NodeSpec::value("anchor", "\"top-right\""),
    NodeSpec::values("margin"),
    NodeSpec::value("width", "900"),
    NodeSpec::value("height", "400"),
    NodeSpec::value("output", "\"default\""),
    NodeSpec::value("padding", "8"),
    NodeSpec::value("font", "\"DejaVu Sans Mono\""),
    NodeSpec::value("font-size", "13"),
    NodeSpec::value("line-height", "1.3"),
    NodeSpec::value("text-color", "\"#e0e0e0ff\""),
    NodeSpec::value("failed-color", "\"#ffb040ff\""),
    NodeSpec::value("blocked-color", "\"#ff5555ff\""),
    NodeSpec::value("new-color", "\"#6cc8ffff\""),
    NodeSpec::value("background", "\"#e0e0e0ff\""),
    NodeSpec::value("line-background", "\"#e0e0e0ff\""),
    NodeSpec::values("shadow").repeatable(),
    NodeSpec::value("tag", "#true"),
    NodeSpec::value("max-fps", "30"),
    NodeSpec::value("format", "\"classic\""),
    NodeSpec::value("traffic-threshold", "\"5KiB\""),
    NodeSpec::value("remote-names", "#true"),
    NodeSpec::value("new-marker", "\"★ \""),
    NodeSpec::value("max-lines", "20"),
    NodeSpec::value("fade-time", "60"),
    NodeSpec::value("fade-curve", "\"0,100 100,0\""),
    NodeSpec::value("linger", "#true"),
    NodeSpec::block("rules"),
];

const RULE_KINDS: [&str; 3] = ["rewrite", "group", "hide"];

/// Reads and parses a file; a missing file is an error naming it.
pub fn load(path: &Path) -> Result<OverlayConfig, ConfigError> {
    let text = leco_kdlconf::read_file(path)?;
    parse(&text, path)
}

/// Parses `text` (the contents of `path`, used only in messages).
pub fn parse(text: &str, path: &Path) -> Result<OverlayConfig, ConfigError> {
    leco_kdlconf::parse_on_thread(text, path, parse_here)
}

/// Parses and reads the `overlay` section; runs on the parser thread.
fn parse_here(src: Source<'_>) -> Result<OverlayConfig, ConfigError> {
    let document = src.document(duration_hint)?;
    // Silently ignoring rules would be worse than refusing them.
    if let Some(rules) = document
        .nodes()
        .iter()
        .find(|n| n.name().value() == "rules")
    {
        return Err(src.error(
            rules.name().span().offset(),
            "line rules go inside the overlay section: overlay { rules { … } }",
        ));
    }
    match src.section(&document, "overlay")? {
        Some(node) => Reader { src }.overlay(node),
        None => Ok(OverlayConfig::default()),
    }
}

/// How the line height was given.
enum LineHeight {
    Factor(f32),
    Pixels(f32),
    Gap(f32),
}

/// A rule's values and properties as written.
struct RuleValues<'n> {
    args: Vec<&'n KdlEntry>,
    case_sensitive: bool,
    group: bool,
}

/// A rule's chain of regexes, where each is written (for messages), and
/// the values left for its action.
struct Chain<'n, 's> {
    specs: Vec<MatchSpec>,
    entries: Vec<&'n KdlEntry>,
    rest: &'s [&'s str],
}

/// Walks the nodes with the text around for messages.
struct Reader<'a> {
    src: Source<'a>,
}

impl Reader<'_> {
    fn overlay(&self, node: &KdlNode) -> Result<OverlayConfig, ConfigError> {
        let mut config = OverlayConfig::default();
        let mut line_height: Option<LineHeight> = None;
        let mut shadows: Option<Vec<Shadow>> = None;
        for (spec, child) in self.src.settings(node, &NODES)? {
            match (spec.name, spec.shape) {
                ("rules", _) => config.rules = self.rules(child)?,
                ("margin", _) => config.surface.margins = self.margins(child)?,
                ("shadow", _) => {
                    let list = shadows.get_or_insert_with(Vec::new);
                    list.extend(self.shadow(child)?);
                }
                ("line-height", Shape::Value { example }) => {
                    line_height = Some(self.line_height(self.src.value(child, example)?)?)
                }
                (name, Shape::Value { example }) => {
                    self.setting(&mut config, name, self.src.value(child, example)?)?
                }
                (name, _) => unreachable!("overlay {{}} reads every node of its table: {name}"),
            }
        }
        if let Some(list) = shadows {
            config.style.shadows = list;
        }
        let size = config.style.font_size;
        config.style.line_height = match line_height {
            None => size * DEFAULT_LINE_HEIGHT_FACTOR,
            Some(LineHeight::Factor(f)) => size * f,
            Some(LineHeight::Pixels(px)) => px,
            Some(LineHeight::Gap(gap)) => size + gap,
        };
        Ok(config)
    }

    /// Reads the value of the single-valued setting `name` into `config`.
    fn setting(
        &self,
        config: &mut OverlayConfig,
        name: &str,
        entry: &KdlEntry,
    ) -> Result<(), ConfigError> {
        let src = &self.src;
        let s = &mut config.surface;
        let st = &mut config.style;
        match name {
            "layer" => s.layer = self.layer(entry)?,
            "anchor" => s.anchor = self.anchor(entry)?,
            "width" => s.width = src.integer(name, entry, 1..=16_384)?,
            "height" => s.height = src.integer(name, entry, 1..=16_384)?,
            "output" => s.output = self.output(entry)?,
            "padding" => s.padding = src.integer(name, entry, 0..=1_000)?,
            "font" => {
                st.font_family = src
                    .string(
                        name,
                        entry,
                        "a font family name such as \"DejaVu Sans Mono\"",
                    )?
                    .to_owned()
            }
            "font-size" => st.font_size = src.number(name, entry, 1.0..=500.0)? as f32,
            "text-color" => st.text_color = self.color(name, entry)?,
            "failed-color" => st.failed_color = self.color(name, entry)?,
            "blocked-color" => st.blocked_color = self.color(name, entry)?,
            "new-color" => st.new_color = self.color(name, entry)?,
            "background" => st.background = self.color(name, entry)?,
            "line-background" => st.line_background = self.color(name, entry)?,
            "tag" => st.tag = src.boolean(name, entry)?,
            "max-fps" => st.max_fps = src.integer(name, entry, 1..=1_000)?,
            "format" => config.lines.format = self.format(entry)?,
            "traffic-threshold" => config.lines.traffic_threshold = src.size(name, entry)?,
            "remote-names" => config.lines.remote_names = src.boolean(name, entry)?,
            "new-marker" => {
                let marker =
                    src.string(name, entry, "a short text such as \"★ \" (\"\" for none)")?;
                config.lines.new_marker = leco_proto::sanitize_text(marker, 16);
            }
            "max-lines" => {
                config.lines.max_lines = Some(src.integer(name, entry, 0..=MAX_ROWS as i128)?)
            }
            "fade-time" => {
                config.fade.fade_time =
                    src.duration(name, entry, Duration::from_millis(100)..=DAY)?
            }
            "fade-curve" => config.fade.curve = self.curve(entry)?,
            "linger" => config.fade.linger = src.boolean(name, entry)?,
            other => unreachable!("overlay {{}} reads every node of its table: {other}"),
        }
        Ok(())
    }

    fn color(&self, name: &str, entry: &KdlEntry) -> Result<Rgba, ConfigError> {
        entry
            .value()
            .as_string()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                self.src
                    .wrong(entry, name, "a colour \"#rrggbb\" or \"#rrggbbaa\"")
            })
    }

    fn layer(&self, entry: &KdlEntry) -> Result<Layer, ConfigError> {
        match entry.value().as_string() {
            Some("background") => Ok(Layer::Background),
            Some("bottom") => Ok(Layer::Bottom),
            Some("top") => Ok(Layer::Top),
            Some("overlay") => Ok(Layer::Overlay),
            _ => Err(self.src.wrong(
                entry,
                "layer",
                "one of \"background\", \"bottom\", \"top\", \"overlay\"",
            )),
        }
    }

    fn output(&self, entry: &KdlEntry) -> Result<OutputChoice, ConfigError> {
        match entry.value().as_string() {
            Some("default") => Ok(OutputChoice::Default),
            Some("all") => Ok(OutputChoice::All),
            Some(name) if !name.trim().is_empty() => Ok(OutputChoice::Named(name.to_owned())),
            _ => Err(self.src.wrong(
                entry,
                "output",
                "\"default\", \"all\" or an output name such as \"DP-1\"",
            )),
        }
    }

    fn anchor(&self, entry: &KdlEntry) -> Result<Anchor, ConfigError> {
        let expected = "edges joined by -, such as \"top-right\", \"bottom\", \
                        \"top-left-right\", or \"center\"";
        let Some(s) = entry.value().as_string() else {
            return Err(self.src.wrong(entry, "anchor", expected));
        };
        let mut anchor = Anchor::default();
        if s == "center" {
            return Ok(anchor);
        }
        for edge in s.split('-') {
            let slot = match edge {
                "top" => &mut anchor.top,
                "bottom" => &mut anchor.bottom,
                "left" => &mut anchor.left,
                "right" => &mut anchor.right,
                _ => return Err(self.src.wrong(entry, "anchor", expected)),
            };
            if *slot {
                return Err(self.src.wrong(entry, "anchor", expected));
            }
            *slot = true;
        }
        Ok(anchor)
    }

    fn margins(&self, node: &KdlNode) -> Result<Margins, ConfigError> {
        let args = self.src.values(node)?;
        let v = args
            .iter()
            .map(|e| self.src.integer::<i32>("margin", e, -10_000..=10_000))
            .collect::<Result<Vec<_>, _>>()?;
        match v.as_slice() {
            [all] => Ok(Margins {
                top: *all,
                right: *all,
                bottom: *all,
                left: *all,
            }),
            [vertical, horizontal] => Ok(Margins {
                top: *vertical,
                right: *horizontal,
                bottom: *vertical,
                left: *horizontal,
            }),
            [top, right, bottom, left] => Ok(Margins {
                top: *top,
                right: *right,
                bottom: *bottom,
                left: *left,
            }),
            _ => Err(self.src.error(
                node.name().span().offset(),
                format!(
                    "`margin` takes 1 (all), 2 (vertical horizontal) or 4 (top right bottom left) \
                     values, not {}",
                    v.len()
                ),
            )),
        }
    }

    /// `shadow DX DY "#rrggbbaa"`, or `shadow "none"`.
    fn shadow(&self, node: &KdlNode) -> Result<Option<Shadow>, ConfigError> {
        let args = self.src.values(node)?;
        match args.as_slice() {
            [one] if one.value().as_string() == Some("none") => Ok(None),
            [dx, dy, color] => Ok(Some(Shadow {
                dx: self.src.number("shadow x offset", dx, -100.0..=100.0)? as f32,
                dy: self.src.number("shadow y offset", dy, -100.0..=100.0)? as f32,
                color: self.color("shadow colour", color)?,
            })),
            _ => Err(self.src.error(
                node.name().span().offset(),
                "`shadow` takes an x offset, a y offset and a colour, such as \
                 `shadow 1 1 \"#000000a0\"`, or `shadow \"none\"`",
            )),
        }
    }

    fn line_height(&self, entry: &KdlEntry) -> Result<LineHeight, ConfigError> {
        let expected = "a multiple of the font size (a number with a point, such as 1.3), \
                        pixels (an integer, such as 18) or a gap in pixels (\"+4\")";
        let value = match entry.value() {
            KdlValue::Float(f) if (0.5..=10.0).contains(f) => LineHeight::Factor(*f as f32),
            KdlValue::Integer(i) if (1..=1_000).contains(i) => LineHeight::Pixels(*i as f32),
            KdlValue::String(s) => match s.strip_prefix('+').and_then(|g| g.parse::<f32>().ok()) {
                Some(gap) if (0.0..=500.0).contains(&gap) => LineHeight::Gap(gap),
                _ => return Err(self.src.wrong(entry, "line-height", expected)),
            },
            _ => return Err(self.src.wrong(entry, "line-height", expected)),
        };
        Ok(value)
    }

    fn format(&self, entry: &KdlEntry) -> Result<LineFormat, ConfigError> {
        match entry.value() {
            KdlValue::String(s) if s == "classic" => Ok(LineFormat::Classic),
            KdlValue::String(s) => LineFormat::new(Some(s)).map_err(|e| {
                self.src.error(
                    self.offset_in_string(entry, e.offset),
                    format!("format: {}", e.message),
                )
            }),
            _ => Err(self.src.wrong(
                entry,
                "format",
                "\"classic\" or a template string such as \"{time} {comm} {remote_addr}\"",
            )),
        }
    }

    fn curve(&self, entry: &KdlEntry) -> Result<FadeCurve, ConfigError> {
        let Some(spec) = entry.value().as_string() else {
            return Err(self.src.wrong(
                entry,
                "fade-curve",
                "a string of TIME,OPACITY points such as \"range=0:100 0,100 50,80 100,0\"",
            ));
        };
        FadeCurve::parse(spec).map_err(|e| {
            self.src.error(
                self.offset_in_string(entry, e.offset),
                format!("fade-curve: {}", e.message),
            )
        })
    }

    /// File offset of byte `inner` of a string value, when the string is
    /// written so that its bytes are the value's (raw, or without
    /// escapes); else the value's start.
    fn offset_in_string(&self, entry: &KdlEntry, inner: usize) -> usize {
        let start = entry.span().offset();
        let written = self.src.text().get(start..).unwrap_or("");
        let hashes = written.bytes().take_while(|&b| b == b'#').count();
        let rest = &written[hashes..];
        let opener = if rest.starts_with("\"\"\"") {
            return start;
        } else if rest.starts_with('"') {
            hashes + 1
        } else {
            return start;
        };
        let Some(value) = entry.value().as_string() else {
            return start;
        };
        // Same bytes in the file as in the value: no escapes were used.
        if written.get(opener..opener + value.len()) == Some(value) {
            start + opener + inner.min(value.len())
        } else {
            start
        }
    }

    fn rules(&self, node: &KdlNode) -> Result<Rules, ConfigError> {
        let mut rules = Vec::new();
        let Some(children) = self.src.block(node)? else {
            return Ok(Rules::default());
        };
        for child in children.nodes() {
            rules.push(self.rule(child)?);
        }
        Ok(Rules::new(rules))
    }

    /// One rule: `rewrite REGEX REPLACEMENT`, `group REGEX KEY`, `hide
    /// REGEX`, or with a chain block: `rewrite REPLACEMENT { match …; not … }`,
    /// `group KEY { … }`, `hide { … }`. Properties: `case-sensitive=#true`
    /// (all its regexes), `group=#true` (rewrite only).
    fn rule(&self, node: &KdlNode) -> Result<Rule, ConfigError> {
        let kind = node.name().value();
        let at = node.name().span().offset();
        if !RULE_KINDS.contains(&kind) {
            return Err(self
                .src
                .error(at, unknown("rule", kind, "rules {}", &RULE_KINDS)));
        }
        self.src.untyped(node)?;
        let written = self.rule_values(node)?;
        let strings = written
            .args
            .iter()
            .map(|e| {
                e.value()
                    .as_string()
                    .ok_or_else(|| self.src.wrong(e, &format!("a `{kind}` value"), "a string"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let chain = self.rule_chain(node, &written, &strings)?;
        let action = self.rule_action(node, &written, chain.rest)?;
        Rule::new(action, chain.specs).map_err(|e| {
            let offset = match e.matcher.and_then(|i| chain.entries.get(i)) {
                Some(entry) => self.offset_in_string(entry, e.offset.unwrap_or(0)),
                None => at,
            };
            self.src.error(offset, format!("{kind}: {}", e.message))
        })
    }

    /// A rule's values and properties, as written.
    fn rule_values<'n>(&self, node: &'n KdlNode) -> Result<RuleValues<'n>, ConfigError> {
        let kind = node.name().value();
        let mut written = RuleValues {
            args: Vec::new(),
            case_sensitive: false,
            group: false,
        };
        for entry in node.entries() {
            self.src.plain(kind, entry)?;
            match entry.name().map(|n| n.value()) {
                None => written.args.push(entry),
                Some("case-sensitive") => {
                    written.case_sensitive = self.src.boolean("case-sensitive", entry)?
                }
                Some("group") if kind == "rewrite" => {
                    written.group = self.src.boolean("group", entry)?
                }
                Some(other) => {
                    let known: &[&str] = if kind == "rewrite" {
                        &["case-sensitive", "group"]
                    } else {
                        &["case-sensitive"]
                    };
                    return Err(self.src.error(
                        entry.span().offset(),
                        unknown("property", other, kind, known),
                    ));
                }
            }
        }
        Ok(written)
    }

    /// The rule's chain of regexes — from its block, or its first value —
    /// with where each is written (for messages), and the values left for
    /// the action.
    fn rule_chain<'n, 's>(
        &self,
        node: &'n KdlNode,
        written: &RuleValues<'n>,
        strings: &'s [&'s str],
    ) -> Result<Chain<'n, 's>, ConfigError> {
        let kind = node.name().value();
        let at = node.name().span().offset();
        let mut chain_entries: Vec<&KdlEntry> = Vec::new();
        let mut chain: Vec<MatchSpec> = Vec::new();
        let text_args = match node.children() {
            Some(block) => {
                for m in block.nodes() {
                    let (spec, entry) = self.chain_link(m, written.case_sensitive)?;
                    chain.push(spec);
                    chain_entries.push(entry);
                }
                if chain.is_empty() {
                    return Err(self
                        .src
                        .error(at, format!("`{kind} {{ … }}` needs at least one `match`")));
                }
                strings
            }
            None => {
                let Some((regex, rest)) = strings.split_first() else {
                    return Err(self.src.error(at, usage(kind)));
                };
                chain.push(MatchSpec {
                    case_sensitive: written.case_sensitive,
                    ..MatchSpec::new(*regex)
                });
                chain_entries.push(written.args[0]);
                rest
            }
        };
        Ok(Chain {
            specs: chain,
            entries: chain_entries,
            rest: text_args,
        })
    }

    /// What the rule does, from the values its chain left.
    fn rule_action(
        &self,
        node: &KdlNode,
        written: &RuleValues<'_>,
        text_args: &[&str],
    ) -> Result<Action, ConfigError> {
        let kind = node.name().value();
        let at = node.name().span().offset();
        match (kind, text_args) {
            ("rewrite", [replacement]) => Ok(Action::Rewrite {
                replacement: (*replacement).to_owned(),
                group: written.group,
            }),
            ("group", [key]) => Ok(Action::Group {
                key: (*key).to_owned(),
            }),
            ("hide", []) => Ok(Action::Hide),
            _ => {
                // Too many values: point at the first extra one; too few:
                // at the rule.
                let wanted = usize::from(kind != "hide") + usize::from(node.children().is_none());
                let offset = written.args.get(wanted).map_or(at, |e| e.span().offset());
                Err(self.src.error(offset, usage(kind)))
            }
        }
    }

    /// `match REGEX [case-sensitive=…] [replace=#true]` or `not REGEX
    /// [case-sensitive=…]`.
    fn chain_link<'n>(
        &self,
        node: &'n KdlNode,
        case_sensitive: bool,
    ) -> Result<(MatchSpec, &'n KdlEntry), ConfigError> {
        let name = node.name().value();
        let at = node.name().span().offset();
        let negated = match name {
            "match" => false,
            "not" => true,
            _ => {
                return Err(self.src.error(
                    at,
                    unknown("chain entry", name, "a rule's { }", &["match", "not"]),
                ))
            }
        };
        if node.children().is_some() {
            return Err(self
                .src
                .error(at, format!("`{name}` takes a regex, not a block {{ … }}")));
        }
        let mut spec = MatchSpec {
            negated,
            case_sensitive,
            ..MatchSpec::new("")
        };
        let mut regex: Option<&KdlEntry> = None;
        for entry in node.entries() {
            match entry.name().map(|n| n.value()) {
                None if regex.is_none() => {
                    spec.pattern = entry
                        .value()
                        .as_string()
                        .ok_or_else(|| {
                            self.src
                                .wrong(entry, &format!("the `{name}` regex"), "a string")
                        })?
                        .to_owned();
                    regex = Some(entry);
                }
                None => {
                    return Err(self.src.error(
                        entry.span().offset(),
                        format!(
                        "`{name}` takes one regex; put others on their own `match` / `not` lines"
                    ),
                    ))
                }
                Some("case-sensitive") => {
                    spec.case_sensitive = self.src.boolean("case-sensitive", entry)?
                }
                Some("replace") if !negated => {
                    spec.replaces = self.src.boolean("replace", entry)?
                }
                Some(other) => {
                    let known: &[&str] = if negated {
                        &["case-sensitive"]
                    } else {
                        &["case-sensitive", "replace"]
                    };
                    return Err(self.src.error(
                        entry.span().offset(),
                        unknown("property", other, name, known),
                    ));
                }
            }
        }
        let entry = regex.ok_or_else(|| {
            self.src.error(
                at,
                format!("`{name}` needs a regex, such as `{name} \"firefox\"`"),
            )
        })?;
        Ok((spec, entry))
    }
}

fn usage(kind: &str) -> String {
    match kind {
        "rewrite" => {
            "expected `rewrite REGEX REPLACEMENT` or `rewrite REPLACEMENT { match REGEX … }`".into()
        }
        "group" => "expected `group REGEX KEY` or `group KEY { match REGEX … }`".into(),
        _ => "expected `hide REGEX` or `hide { match REGEX … }`".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<OverlayConfig, ConfigError> {
        parse(text, Path::new("config.kdl"))
    }

    fn error(text: &str) -> String {
        match parse_text(text) {
            Ok(c) => panic!("{text:?} parsed to {c:?}, expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn empty_and_foreign_files_give_defaults() {
        for text in [
            "",
            "// x\n",
            "service { udp-idle 5 }\nother 1",
            "overlay",
            "overlay {}",
        ] {
            let c = parse_text(text).expect(text);
            assert_eq!(c.surface.width, 900);
            assert!(c.rules.is_empty());
        }
    }

    #[test]
    fn every_setting_is_read() {
        let text = r##"
            service { anything 1 }
            overlay {
                layer "top"
                anchor "bottom-left"
                margin 1 2 3 4
                width 640
                height 200
                output "DP-1"
                padding 4
                font "Iosevka"
                font-size 16
                line-height "+4"
                text-color "#ffffff"
                background "#00000080"
                line-background "#10101040"
                shadow 2 2 "#000000ff"
                shadow -1 -1 "#ffffff20"
                tag #true
                max-fps 60
                format "{time} {comm}"
                traffic-threshold "1KiB"
                max-lines 5
                fade-time "2m"
                fade-curve "0,100 100,0"
                linger #true
                rules {
                    hide "x"
                }
            }
        "##;
        let c = parse_text(text).expect("parses");
        assert_eq!(c.surface.layer, Layer::Top);
        assert!(c.surface.anchor.bottom && c.surface.anchor.left && !c.surface.anchor.top);
        assert_eq!(
            c.surface.margins,
            Margins {
                top: 1,
                right: 2,
                bottom: 3,
                left: 4
            }
        );
        assert_eq!(
            (c.surface.width, c.surface.height, c.surface.padding),
            (640, 200, 4)
        );
        assert_eq!(c.surface.output, OutputChoice::Named("DP-1".into()));
        assert_eq!(c.style.font_family, "Iosevka");
        assert_eq!(c.style.line_height, 20.0);
        assert_eq!(c.style.shadows.len(), 2);
        assert!(c.style.tag);
        assert_eq!(c.style.max_fps, 60);
        assert!(matches!(c.lines.format, LineFormat::Template(_)));
        assert_eq!(c.lines.traffic_threshold, 1024);
        assert_eq!(c.lines.max_lines, Some(5));
        assert_eq!(c.fade.fade_time, Duration::from_secs(120));
        assert!(c.fade.linger);
        assert_eq!(c.rules.len(), 1);
        let c =
            parse_text("overlay { shadow \"none\"; line-height 2.0; font-size 10 }").expect("none");
        assert!(c.style.shadows.is_empty());
        assert_eq!(c.style.line_height, 20.0);
    }

    #[test]
    fn positions_of_common_mistakes() {
        let cases = [
            ("overlay {\n  widht 5\n}", "config.kdl:2:3: unknown setting `widht` in overlay {}; expected one of layer, anchor, margin, width, height, output, padding, font, font-size, line-height, text-color, failed-color, blocked-color, new-color, background, line-background, shadow, tag, max-fps, format, traffic-threshold, remote-names, new-marker, max-lines, fade-time, fade-curve, linger, rules; did you mean `width`?"),
            ("overlay {\n  width \"wide\"\n}", "config.kdl:2:9: width must be an integer from 1 to 16384, not \"wide\""),
            ("overlay {\n  tag 1\n}", "config.kdl:2:7: tag must be #true or #false, not 1"),
            ("overlay {\n  text-color \"red\"\n}", "config.kdl:2:14: text-color must be a colour \"#rrggbb\" or \"#rrggbbaa\", not \"red\""),
            ("overlay { width 1; width 2 }", "config.kdl:1:20: `width` is set twice; the first is at line 1"),
            ("overlay {\n  width 5\n", "config.kdl:1:9: No closing '}' for child block"),
            ("rules { hide \"x\" }", "config.kdl:1:1: line rules go inside the overlay section: overlay { rules { … } }"),
            ("overlay {\n  format \"{time} {bogus}\"\n}", "config.kdl:2:19: format: unknown key `bogus` in the format; expected one of time, traffic, rx, tx, conns, id, proto, ip_proto, interface, family, direction, state, local_addr, local_port, remote_addr, remote_port, remote_name, name_source, pid, comm, program, exe, cmdline, uid, user, cgroup, unit, container, app_id, first_seen_us, last_seen_us, rx_bytes, tx_bytes, error, reason, attempts, novelty"),
            ("overlay {\n  fade-curve \"0,100 5,50 5,0\"\n}", "config.kdl:2:26: fade-curve: times must increase from point to point: 5 follows 5"),
            ("overlay { anchor \"top-top\" }", "config.kdl:1:18: anchor must be edges joined by -, such as \"top-right\", \"bottom\", \"top-left-right\", or \"center\", not \"top-top\""),
        ];
        for (text, expected) in cases {
            assert_eq!(error(text), expected, "{text:?}");
        }
    }

    #[test]
    fn integers_too_large_for_kdl_are_named_where_they_are() {
        let big = "9".repeat(42);
        let cases = [
            (format!("overlay {{ width {big} }}"), "1:17"),
            (
                format!("overlay {{\n  font-size 12\n  margin 1 {big} 3\n}}"),
                "3:12",
            ),
            (
                format!("overlay {{\n  rules {{\n    hide {big}\n  }}\n}}"),
                "3:10",
            ),
        ];
        for (text, at) in cases {
            let message = error(&text);
            assert!(
                message.starts_with(&format!("config.kdl:{at}: integer 999"))
                    && message.contains("is too large: integers go from"),
                "{text:?}: {message}"
            );
        }
    }

    #[test]
    fn rule_forms() {
        let text = r##"
            overlay {
                rules {
                    rewrite "^(\\S+) :: root :: " "$1 :: ⚙ :: "
                    hide #"::\s*127\.0\.0\.1 "# case-sensitive=#true
                    group "firefox (web)" {
                        match "firefox"
                        not "443/"
                    }
                    rewrite ":: $1 ::" group=#true {
                        match #":: (\S+) \[firefox\] ::"# replace=#true
                        match "alice" case-sensitive=#true
                    }
                    group #".*:: (.*?) :: (\S+) 53/udp.*"# "$1 $2 dns"
                    hide { match "sshd"; not "alice" }
                }
            }
        "##;
        let c = parse_text(text).expect("parses");
        let r = c.rules.rules();
        assert_eq!(r.len(), 6);
        assert!(r[1].chain()[0].case_sensitive);
        assert!(r[2].chain()[1].negated);
        assert_eq!(
            r[3].action(),
            &Action::Rewrite {
                replacement: ":: $1 ::".into(),
                group: true
            }
        );
        assert!(r[3].chain()[0].replaces);
        assert!(r[3].chain()[1].case_sensitive);
        let out = c.rules.apply("10:00 :: root :: cron :: 1.1.1.1 80/tcp");
        assert_eq!(out.text, "10:00 :: ⚙ :: cron :: 1.1.1.1 80/tcp");
    }

    #[test]
    fn rule_errors_point_at_the_regex() {
        let cases = [
            // Raw string: the column of the regex error inside it.
            ("overlay {\n  rules {\n    hide #\"a(b\"#\n  }\n}", "config.kdl:3:15: hide: bad regex: Parsing error at position 3"),
            ("overlay { rules { hide \"x\" \"y\" } }", "config.kdl:1:28: expected `hide REGEX`"),
            ("overlay { rules { drop \"x\" } }", "config.kdl:1:19: unknown rule `drop` in rules {}; expected one of rewrite, group, hide"),
            ("overlay { rules { rewrite \"x\" } }", "config.kdl:1:19: expected `rewrite REGEX REPLACEMENT`"),
            ("overlay { rules { hide \"x\" case=#true } }", "config.kdl:1:28: unknown property `case` in hide; expected one of case-sensitive"),
            ("overlay { rules { hide { not \"x\" } } }", "config.kdl:1:19: hide: a rule needs at least one `match`"),
            ("overlay { rules { group \"k\" {\n match \"a\" replace=#true\n match \"b\" replace=#true } } }", "config.kdl:3:9: group: only one regex"),
            ("overlay { rules { hide { nope \"x\" } } }", "config.kdl:1:26: unknown chain entry `nope`"),
            ("overlay { rules { hide 5 } }", "config.kdl:1:24: a `hide` value must be a string, not 5"),
        ];
        for (text, expected) in cases {
            let message = error(text);
            assert!(message.starts_with(expected), "{text:?}: {message}");
            assert!(!message.contains('\n'), "{message:?}");
        }
        let message = error("overlay {\n  rules {\n    hide #\"a(b\"#\n  }\n}");
        assert!(message.contains("bad regex"), "{message}");
    }

    #[test]
    fn hostile_input_is_an_error_not_a_crash() {
        let inputs = [
            "{".repeat(2_000),
            format!("overlay {{ {} 1 }}", "x".repeat(10_000)),
            format!("overlay {{ rules {{ hide \"{}\" }} }}", "(".repeat(5_000)),
            format!("overlay {{ fade-curve \"{}\" }}", "1,".repeat(5_000)),
            "overlay { width 99999999999999999999999999999999999 }".into(),
            "\0\u{202e}overlay".into(),
        ];
        for text in &inputs {
            if let Err(e) = parse_text(text) {
                let message = e.to_string();
                assert!(message.starts_with("config.kdl"), "{message}");
                assert!(!message.contains('\n'));
            }
        }
    }

    #[test]
    fn every_node_is_read_and_every_example_is_valid() {
        for spec in NODES {
            let text = match spec.shape {
                Shape::Value { example } => format!("overlay {{ {} {example} }}", spec.name),
                Shape::Values if spec.name == "margin" => "overlay { margin 1 2 }".to_owned(),
                Shape::Values => "overlay { shadow 1 1 \"#000000ff\" }".to_owned(),
                Shape::Block => format!("overlay {{ {} {{ }} }}", spec.name),
            };
            if let Err(e) = parse_text(&text) {
                panic!("{text}: {e}");
            }
        }
    }

    /// Every node is shown in the annotated config.kdl (written out, or
    /// commented out where it has no default), so the file documents all.
    #[test]
    fn the_annotated_config_shows_every_node() {
        let text = include_str!("../../../config.kdl");
        let section = text
            .split_once("\noverlay {")
            .map(|(_, rest)| rest)
            .expect("config.kdl has an overlay section");
        for spec in NODES {
            let shown = section.lines().map(str::trim).any(|l| {
                let l = l.strip_prefix("// ").unwrap_or(l);
                l.strip_prefix(spec.name)
                    .is_some_and(|rest| rest.starts_with(' '))
            });
            assert!(shown, "config.kdl does not show `{}`", spec.name);
        }
    }
}
