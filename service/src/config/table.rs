//! The machinery behind the settings table: the `settings!` macro turns the
//! rows of `config/mod.rs` into the [`ServiceConfig`](super::ServiceConfig)
//! struct, its defaults, and the per-setting code the file reader and the
//! command line share.

/// One setting as documentation and help see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// Its name in config.kdl and as a command-line option (`udp-idle`).
    pub name: &'static str,
    /// Its doc comment, the first paragraph being its one-line help.
    pub doc: &'static str,
    /// Its default, as config.kdl writes it (`60`).
    pub default: String,
    /// What a value must be (`a duration between 1s and 1 day`).
    pub describe: String,
    /// The command line's placeholder for its value (`DURATION`).
    pub value_name: &'static str,
}

impl Setting {
    /// The first paragraph of the doc comment, on one line.
    pub fn help(&self) -> String {
        leco_proto::first_paragraph(self.doc)
    }
}

/// `kind`, checked to be a kind of `T`: what the macro uses wherever a row's
/// kind appears, so that a row whose kind holds another type than its field
/// does not compile.
pub(crate) fn kind_of<T, K: leco_kdlconf::kind::Kind<Value = T>>(kind: K) -> K {
    kind
}

/// Declares the settings: for each, a doc comment, then `field: Type {
/// name: "kdl-name", kind: KIND, default: EXPR }`, where KIND is a
/// [`leco_kdlconf::kind::Kind`] whose value is `Type`.
macro_rules! settings {
    (
        $(
            $(#[doc = $doc:literal])+
            $field:ident: $ty:ty {
                name: $name:literal,
                kind: $kind:expr,
                default: $default:expr $(,)?
            }
        )+
    ) => {
        /// Settings of leco-service, from the `service {}` section of
        /// config.kdl and the command line.
        #[derive(Debug, Clone, PartialEq)]
        pub struct ServiceConfig {
            $(
                $(#[doc = $doc])+
                #[doc = concat!("\n\n`", $name, "` in config.kdl and as `--", $name, "`.")]
                pub $field: $ty,
            )+
        }

        impl Default for ServiceConfig {
            fn default() -> Self {
                ServiceConfig {
                    $($field: $default,)+
                }
            }
        }

        impl ServiceConfig {
            /// Every setting, in the table's order (the order messages
            /// and `--help` list them).
            pub fn settings() -> Vec<$crate::config::Setting> {
                use leco_kdlconf::kind::Kind;
                vec![
                    $(
                        $crate::config::Setting {
                            name: $name,
                            doc: concat!($($doc, "\n"),+),
                            default: $crate::config::table::kind_of::<$ty, _>($kind).show(&$default),
                            describe: $crate::config::table::kind_of::<$ty, _>($kind).describe(),
                            value_name: $crate::config::table::kind_of::<$ty, _>($kind).value_name(),
                        },
                    )+
                ]
            }

            /// Reads setting `name` from its value in the file; `Ok(false)`
            /// when there is no such setting.
            pub(crate) fn read_setting(
                &mut self,
                src: &leco_kdlconf::Source<'_>,
                name: &str,
                entry: &kdl::KdlEntry,
            ) -> Result<bool, leco_kdlconf::ConfigError> {
                use leco_kdlconf::kind::Kind;
                match name {
                    $($name => self.$field = $crate::config::table::kind_of::<$ty, _>($kind).read(src, name, entry)?,)+
                    _ => return Ok(false),
                }
                Ok(true)
            }

            /// One command-line option per setting, `--NAME VALUE`, checked
            /// as the file's values are.
            pub(crate) fn options() -> Vec<clap::Arg> {
                use leco_kdlconf::kind::Kind;
                let parsers = [
                    $(clap::builder::ValueParser::new(|arg: &str| {
                        $crate::config::table::kind_of::<$ty, _>($kind).parse_arg(arg)
                    }),)+
                ];
                ServiceConfig::settings()
                    .into_iter()
                    .zip(parsers)
                    .map(|(s, parser)| {
                        let help =
                            format!("{} [config: {}, default {}]", s.help(), s.name, s.default);
                        clap::Arg::new(s.name)
                            .long(s.name)
                            .value_name(s.value_name)
                            .help(help)
                            .value_parser(parser)
                    })
                    .collect()
            }

            /// Replaces every setting given on the command line.
            pub(crate) fn apply_options(&mut self, matches: &clap::ArgMatches) {
                $(
                    if let Some(v) = matches.get_one::<$ty>($name) {
                        self.$field = v.clone();
                    }
                )+
            }
        }
    };
}

pub(crate) use settings;
