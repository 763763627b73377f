//! The `settings!` macro: turns the table in [`settings`](super::settings) into the
//! types that every source and the merge are written against, so that a setting is
//! described once.
//!
//! From each row it makes a [`Key`](super::settings::Key) variant (file key, flag,
//! environment variable), a field of the clap flags ([`ServeFlags`](super::ServeFlags)),
//! a field of the per-source [`Layer`](super::settings::Layer) and of the merged
//! [`Settings`](super::settings::Settings), the parsing of a value, and the default.
//! Lists (`bind`) and single values differ in how a source spells several values (a
//! repeated flag, a TOML array, commas in the environment), so the table has one group
//! of each.

/// Declares the settings; see the [module docs](self) and the one invocation in
/// `settings.rs`.
macro_rules! settings {
    (
        lists {
            $(
                $(#[$lmeta:meta])*
                $lfield:ident: $lty:ty {
                    key: $lvariant:ident,
                    $(short: $lshort:literal,)?
                    long: $llong:literal,
                    value_name: $lvalue_name:literal,
                    default: $ldefault:literal,
                    range: $lrange:literal,
                    shape: $lshape:literal,
                    empty: $lempty:literal,
                    once: $lonce:literal,
                    parse: $lparse:expr,
                    help: $lhelp:literal $(,)?
                }
            ),* $(,)?
        }
        values {
            $(
                $(#[$meta:meta])*
                $field:ident: $ty:ty {
                    key: $variant:ident,
                    $(short: $short:literal,)?
                    long: $long:literal,
                    value_name: $value_name:literal,
                    default: $default:tt,
                    range: $range:literal,
                    parse: $parse:expr,
                    help: $help:literal $(,)?
                }
            ),* $(,)?
        }
    ) => {
        /// A setting, as named in the file.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Key {
            $($lvariant,)*
            $($variant,)*
        }

        impl Key {
            /// Every setting, in the order of the table.
            pub(crate) const ALL: &[Self] = &[$(Self::$lvariant,)* $(Self::$variant,)*];

            /// The file key (`graceful_timeout`).
            pub(crate) fn name(self) -> &'static str {
                match self {
                    $(Self::$lvariant => stringify!($lfield),)*
                    $(Self::$variant => stringify!($field),)*
                }
            }

            /// The long flag (`--graceful-timeout`).
            pub(crate) fn flag(self) -> &'static str {
                match self {
                    $(Self::$lvariant => concat!("--", $llong),)*
                    $(Self::$variant => concat!("--", $long),)*
                }
            }

            /// What a good value looks like, for error messages and the docs.
            pub(crate) fn range(self) -> &'static str {
                match self {
                    $(Self::$lvariant => $lrange,)*
                    $(Self::$variant => $range,)*
                }
            }

            /// The default as written in the help, `None` if unset by default.
            #[cfg(test)]
            pub(crate) fn default_text(self) -> Option<&'static str> {
                match self {
                    $(Self::$lvariant => Some($ldefault),)*
                    $(Self::$variant => settings!(@default_text $default),)*
                }
            }

            /// Whether a source may give several values (a list such as `bind`).
            pub(crate) fn is_list(self) -> bool {
                matches!(self, $(Self::$lvariant)|*)
            }
        }

        /// The flags of `taskward serve`, as clap parsed them.
        ///
        /// Values stay text here so that a bad flag gets the same
        /// [`ConfigError`](super::ConfigError) as a bad value in the file or the
        /// environment; [`ServeConfig::load`](super::ServeConfig::load) checks them.
        ///
        /// The settings (the file key; the variable is `TASKWARD_` and the key in
        /// capitals):
        ///
        /// | key | flag | default | accepts | meaning |
        /// |---|---|---|---|---|
        $(#[doc = concat!(
            "| `", stringify!($lfield), "` | `", $("-", $lshort, "/",)? "--", $llong,
            "` (repeatable) | `", $ldefault, "` | ", $lrange, ", ", $lonce, " | ", $lhelp, " |"
        )])*
        $(#[doc = concat!(
            "| `", stringify!($field), "` | `", $("-", $short, "/",)? "--", $long,
            "` | ", settings!(@doc_default $default), " | ", $range, " | ", $help, " |"
        )])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
        pub struct ServeFlags {
            $(
                #[doc = $lhelp]
                #[arg(
                    $(short = $lshort,)?
                    long = $llong,
                    value_name = $lvalue_name,
                    help = concat!($lhelp, "; repeat for several [default: ", $ldefault, "]"),
                )]
                pub $lfield: Vec<std::ffi::OsString>,
            )*
            $(
                #[doc = $help]
                #[arg(
                    $(short = $short,)?
                    long = $long,
                    value_name = $value_name,
                    help = settings!(@help $help, $default),
                )]
                pub $field: Option<std::ffi::OsString>,
            )*
            /// The TOML config file, a regular file of at most 1 MiB [default: taskward.toml,
            /// if it exists].
            #[arg(short = 'c', long = "config", value_name = "PATH")]
            pub config: Option<std::path::PathBuf>,
            /// The worker program and its arguments.
            #[arg(last = true, required = true, value_name = "PROGRAM [ARGS]")]
            pub program: Vec<std::ffi::OsString>,
        }

        impl ServeFlags {
            /// The values given for `key`: one per occurrence of the flag.
            pub(crate) fn given(&self, key: Key) -> Vec<&std::ffi::OsStr> {
                match key {
                    $(Key::$lvariant => self.$lfield.iter().map(|v| v.as_os_str()).collect(),)*
                    $(Key::$variant => self.$field.iter().map(|v| v.as_os_str()).collect(),)*
                }
            }

            /// The field of a single-valued setting, for tests that fill flags by key.
            #[cfg(test)]
            pub(crate) fn value_mut(
                &mut self,
                key: Key,
            ) -> Option<&mut Option<std::ffi::OsString>> {
                match key {
                    $(Key::$lvariant => None,)*
                    $(Key::$variant => Some(&mut self.$field),)*
                }
            }
        }

        /// The values one source set; `None` where it said nothing.
        #[derive(Debug, Default)]
        pub(crate) struct Layer {
            $($lfield: Option<Vec<$lty>>,)*
            $($field: Option<$ty>,)*
        }

        /// The merged settings, defaults applied.
        #[derive(Debug)]
        pub(crate) struct Settings {
            $(pub(crate) $lfield: Vec<$lty>,)*
            $(pub(crate) $field: $ty,)*
        }

        impl Layer {
            /// Checks and stores the values a source gave for `key`.
            pub(crate) fn set(
                &mut self,
                key: Key,
                given: super::sources::Given<'_>,
            ) -> Result<(), super::ConfigError> {
                match key {
                    $(Key::$lvariant => {
                        let wanted = [$lshape, $lempty, $lonce];
                        self.$lfield = Some(given.list(key, wanted, $lparse)?);
                    })*
                    $(Key::$variant => self.$field = Some(given.value(key, $parse)?),)*
                }
                Ok(())
            }

            /// `self`, with the settings it lacks taken from `lower`.
            pub(crate) fn or(self, lower: Self) -> Self {
                Self {
                    $($lfield: self.$lfield.or(lower.$lfield),)*
                    $($field: self.$field.or(lower.$field),)*
                }
            }

            /// The settings, the defaults where no source set one.
            pub(crate) fn with_defaults(self) -> Settings {
                Settings {
                    $($lfield: self.$lfield.unwrap_or_else(|| {
                        super::sources::default_list(Key::$lvariant, $ldefault, $lparse)
                    }),)*
                    $($field: self.$field.unwrap_or_else(|| {
                        settings!(@default Key::$variant, $default, $parse)
                    }),)*
                }
            }
        }
    };

    (@doc_default none) => { "unset" };
    (@doc_default $default:literal) => { concat!("`", $default, "`") };
    (@default_text none) => { None };
    (@default_text $default:literal) => { Some($default) };
    (@help $help:literal, none) => { $help };
    (@help $help:literal, $default:literal) => { concat!($help, " [default: ", $default, "]") };
    (@default $key:expr, none, $parse:expr) => { None };
    (@default $key:expr, $default:literal, $parse:expr) => {
        super::sources::default_value($key, $default, $parse)
    };
}

pub(super) use settings;
