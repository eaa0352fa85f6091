//! The shapes of nodes: sections, settings with one value, settings with
//! several, blocks. Each shape has one reader here and one wording for each
//! way a node can be written wrong, so every section of config.kdl reports
//! the same mistake the same way; a section only lists the nodes it has.

use kdl::{KdlDocument, KdlEntry, KdlNode};

use crate::{one_line, unknown, ConfigError, Source};

/// What a node of a section looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape<'a> {
    /// `name VALUE`: one plain value; `example` is one, for messages.
    Value {
        /// A value as it would be written, such as `60` or `"top-right"`.
        example: &'a str,
    },
    /// `name VALUE…`: plain values, as many as the setting reads.
    Values,
    /// `name { … }`: a block, read by the section itself.
    Block,
}

/// A node a section knows: its name and shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeSpec<'a> {
    /// The node's name.
    pub name: &'a str,
    /// What it looks like.
    pub shape: Shape<'a>,
    /// Whether it may appear more than once.
    pub repeatable: bool,
}

impl<'a> NodeSpec<'a> {
    /// `name VALUE`, such as `name example`.
    pub const fn value(name: &'a str, example: &'a str) -> NodeSpec<'a> {
        NodeSpec {
            name,
            shape: Shape::Value { example },
            repeatable: false,
        }
    }

    /// `name VALUE…`.
    pub const fn values(name: &'a str) -> NodeSpec<'a> {
        NodeSpec {
            name,
            shape: Shape::Values,
            repeatable: false,
        }
    }

    /// `name { … }`.
    pub const fn block(name: &'a str) -> NodeSpec<'a> {
        NodeSpec {
            name,
            shape: Shape::Block,
            repeatable: false,
        }
    }

    /// The same node, allowed more than once.
    pub const fn repeatable(self) -> NodeSpec<'a> {
        NodeSpec {
            repeatable: true,
            ..self
        }
    }
}

impl Source<'_> {
    /// The one top-level `name { … }` section of `document`, if it has one.
    /// A second one, a type annotation or values on it are errors.
    pub fn section<'d>(
        &self,
        document: &'d KdlDocument,
        name: &str,
    ) -> Result<Option<&'d KdlNode>, ConfigError> {
        let mut found: Option<&KdlNode> = None;
        for node in document.nodes() {
            if node.name().value() != name {
                continue;
            }
            if let Some(first) = found {
                return Err(self.second_section(first, node));
            }
            found = Some(node);
        }
        if let Some(node) = found {
            self.untyped(node)?;
            if let Some(entry) = node.entries().first() {
                return Err(self.error(
                    entry.span().offset(),
                    format!("`{name}` takes no values; its settings go inside `{name} {{ … }}`"),
                ));
            }
        }
        Ok(found)
    }

    /// The nodes inside `section`, each with the spec of `known` it is: an
    /// unknown name (with the closest known one suggested), a setting given
    /// twice that is not repeatable, or a type annotation is an error. The
    /// nodes' values are for the caller to read, by their shape.
    pub fn settings<'n, 'a>(
        &self,
        section: &'n KdlNode,
        known: &[NodeSpec<'a>],
    ) -> Result<Vec<(NodeSpec<'a>, &'n KdlNode)>, ConfigError> {
        let Some(children) = section.children() else {
            return Ok(Vec::new());
        };
        let place = format!("{} {{}}", section.name().value());
        let names: Vec<&str> = known.iter().map(|s| s.name).collect();
        let mut seen: Vec<(&str, usize)> = Vec::new();
        let mut out = Vec::with_capacity(children.nodes().len());
        for node in children.nodes() {
            let name = node.name().value();
            let at = node.name().span().offset();
            let Some(spec) = known.iter().find(|s| s.name == name) else {
                return Err(self.error(at, unknown("setting", name, &place, &names)));
            };
            if !spec.repeatable {
                self.set_once(&mut seen, name, at)?;
            }
            self.untyped(node)?;
            out.push((*spec, node));
        }
        Ok(out)
    }

    /// The one plain value of a `name VALUE` node; `example` shows one in
    /// the message when it is missing.
    pub fn value<'n>(&self, node: &'n KdlNode, example: &str) -> Result<&'n KdlEntry, ConfigError> {
        let name = node.name().value();
        let arguments = self.arguments(node, "one value")?;
        match arguments.as_slice() {
            [] => Err(self.error(
                node.name().span().offset(),
                format!("`{name}` needs a value, such as `{name} {example}`"),
            )),
            [one] => {
                if one.ty().is_some() {
                    return Err(self.error(
                        one.span().offset(),
                        format!("`{name}` takes a plain value, without a type annotation"),
                    ));
                }
                Ok(one)
            }
            [_, second, ..] => Err(self.error(
                second.span().offset(),
                format!("`{name}` takes one value, not {}", arguments.len()),
            )),
        }
    }

    /// The plain values of a `name VALUE…` node (perhaps none: the caller
    /// says how many it wants).
    pub fn values<'n>(&self, node: &'n KdlNode) -> Result<Vec<&'n KdlEntry>, ConfigError> {
        let arguments = self.arguments(node, "values")?;
        for entry in &arguments {
            self.plain(node.name().value(), entry)?;
        }
        Ok(arguments)
    }

    /// The values of an untyped node that `takes` them (`one value`,
    /// `values`): neither a block nor properties.
    fn arguments<'n>(
        &self,
        node: &'n KdlNode,
        takes: &str,
    ) -> Result<Vec<&'n KdlEntry>, ConfigError> {
        let name = node.name().value();
        self.untyped(node)?;
        if node.children().is_some() {
            return Err(self.error(
                node.name().span().offset(),
                format!("`{name}` takes {takes}, not a block {{ … }}"),
            ));
        }
        let mut arguments = Vec::new();
        for entry in node.entries() {
            if let Some(key) = entry.name() {
                return Err(self.error(
                    entry.span().offset(),
                    format!(
                        "`{name}` takes {takes}, not a property `{}=…`",
                        one_line(key.value(), 40)
                    ),
                ));
            }
            arguments.push(entry);
        }
        Ok(arguments)
    }

    /// An error unless `entry`, one of `name`'s values, has no type
    /// annotation.
    pub fn plain(&self, name: &str, entry: &KdlEntry) -> Result<(), ConfigError> {
        match entry.ty() {
            Some(_) => Err(self.error(
                entry.span().offset(),
                format!("`{name}` takes plain values, without a type annotation"),
            )),
            None => Ok(()),
        }
    }

    /// The contents of a `name { … }` block (`None` when written without
    /// braces): no type annotation and no values.
    pub fn block<'n>(&self, node: &'n KdlNode) -> Result<Option<&'n KdlDocument>, ConfigError> {
        let name = node.name().value();
        self.untyped(node)?;
        if let Some(entry) = node.entries().first() {
            return Err(self.error(
                entry.span().offset(),
                format!("`{name}` takes no values; its contents go inside `{name} {{ … }}`"),
            ));
        }
        Ok(node.children())
    }

    /// An error if `node` has a type annotation: no node of leco's has one.
    pub fn untyped(&self, node: &KdlNode) -> Result<(), ConfigError> {
        match node.ty() {
            Some(_) => Err(self.error(
                node.span().offset(),
                format!("`{}` takes no type annotation", node.name().value()),
            )),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::parse_on_thread;

    const KNOWN: [NodeSpec<'static>; 4] = [
        NodeSpec::value("size", "3"),
        NodeSpec::values("pair"),
        NodeSpec::values("shadow").repeatable(),
        NodeSpec::block("rules"),
    ];

    /// Reads section `s` of `text` node by node: `Ok` lists what each
    /// node held, by its shape.
    fn read(text: &str) -> Result<Vec<String>, String> {
        parse_on_thread(text, Path::new("t.kdl"), |src| {
            let document = src.document(|_| None)?;
            let Some(section) = src.section(&document, "s")? else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            for (spec, node) in src.settings(section, &KNOWN)? {
                out.push(match spec.shape {
                    Shape::Value { example } => src.value(node, example)?.value().to_string(),
                    Shape::Values => format!("{} values", src.values(node)?.len()),
                    Shape::Block => format!(
                        "block of {}",
                        src.block(node)?.map_or(0, |b| b.nodes().len())
                    ),
                });
            }
            Ok(out)
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn reads_each_shape() {
        assert_eq!(
            read("x 1\ns {\n size 4; pair 1 2; shadow 1; shadow; rules { a }\n}"),
            Ok(vec![
                "4".to_owned(),
                "2 values".to_owned(),
                "1 values".to_owned(),
                "0 values".to_owned(),
                "block of 1".to_owned()
            ])
        );
        assert_eq!(read("other { size 1 }"), Ok(Vec::new()));
        assert_eq!(read("s"), Ok(Vec::new()));
    }

    #[test]
    fn one_wording_per_mistake() {
        let cases = [
            ("s 1", "t.kdl:1:3: `s` takes no values; its settings go inside `s { … }`"),
            ("(t)s {}", "t.kdl:1:1: `s` takes no type annotation"),
            ("s {}\ns {}", "t.kdl:2:1: a second `s {}` section; put these settings into the one at line 1"),
            ("s { sise 1 }", "t.kdl:1:5: unknown setting `sise` in s {}; expected one of size, pair, shadow, rules; did you mean `size`?"),
            ("s { size 1; size 2 }", "t.kdl:1:13: `size` is set twice; the first is at line 1"),
            ("s { (x)pair 1 }", "t.kdl:1:5: `pair` takes no type annotation"),
            ("s { size }", "t.kdl:1:5: `size` needs a value, such as `size 3`"),
            ("s { size 1 2 }", "t.kdl:1:12: `size` takes one value, not 2"),
            ("s { size k=1 }", "t.kdl:1:10: `size` takes one value, not a property `k=…`"),
            ("s { size 1 { } }", "t.kdl:1:5: `size` takes one value, not a block { … }"),
            ("s { size (u8)1 }", "t.kdl:1:10: `size` takes a plain value, without a type annotation"),
            ("s { pair 1 { } }", "t.kdl:1:5: `pair` takes values, not a block { … }"),
            ("s { pair 1 k=2 }", "t.kdl:1:12: `pair` takes values, not a property `k=…`"),
            ("s { pair 1 (u8)2 }", "t.kdl:1:12: `pair` takes plain values, without a type annotation"),
            ("s { rules 1 { a } }", "t.kdl:1:11: `rules` takes no values; its contents go inside `rules { … }`"),
        ];
        for (text, expected) in cases {
            assert_eq!(read(text), Err(expected.to_owned()), "{text:?}");
        }
    }
}
