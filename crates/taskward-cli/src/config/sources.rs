//! The three sources of the settings (flags, the config file, `TASKWARD_*` variables)
//! and the one merge of them: read [`merged`].
//!
//! Each source is read into a [`Layer`] through the same [`Layer::set`] (so a value is
//! checked the same way wherever it came from), every source in full, then the layers
//! are stacked: flags over the file over the environment over the defaults.
//!
//! The file is read with `toml`'s own parser, which keeps the span of every key and
//! value; serde's `deny_unknown_fields` is not used because its errors can neither say
//! which setting a typo was meant to be nor quote the value as written.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use taskward_http::protocol;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::config_error::{ConfigError, Origin, suggestion};
use super::settings::{Key, Layer, ServeFlags, Settings};
use super::values::Raw;

/// The file read when `-c/--config` is not given, if it exists in the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "taskward.toml";

/// The prefix of the environment variables: `TASKWARD_WORKERS` sets `workers`.
pub const ENV_PREFIX: &str = "TASKWARD_";

/// The largest config file read: far past any real one; `-c /dev/zero` or a huge file
/// is refused rather than read without limit.
pub const MAX_CONFIG_FILE: u64 = 1024 * 1024;

impl Key {
    /// The environment variable (`TASKWARD_GRACEFUL_TIMEOUT`).
    pub(crate) fn env_var(self) -> String {
        format!("{ENV_PREFIX}{}", self.name().to_ascii_uppercase())
    }

    /// The setting named `name` in the file.
    fn from_name(name: &str) -> Option<Self> {
        Key::ALL.iter().copied().find(|key| key.name() == name)
    }
}

/// The settings from `flags`, the config file and the environment, merged, defaults
/// applied; see [`ServeConfig::load`](super::ServeConfig::load).
pub(crate) fn merged(
    flags: &ServeFlags,
    env: &impl Fn(&str) -> Option<OsString>,
    cwd: &Path,
) -> Result<Settings, ConfigError> {
    let from_flags = from_flags(flags)?;
    let from_file = match read_config_file(flags.config.as_deref(), cwd)? {
        Some((path, text)) => from_file(&path, &text)?,
        None => Layer::default(),
    };
    let from_env = from_env(env)?;
    check_inherited(env)?;
    Ok(from_flags.or(from_file).or(from_env).with_defaults())
}

/// What one source gave for one setting, before it is checked.
pub(crate) enum Given<'a> {
    /// Text from a flag or a variable: one element per value.
    Text {
        values: Vec<&'a OsStr>,
        origin: Origin,
    },
    /// A value of the config file, with the origin of any of its spans.
    Toml {
        value: &'a Spanned<DeValue<'a>>,
        origin: &'a dyn Fn(Range<usize>) -> Origin,
    },
}

impl Given<'_> {
    /// Checks a single value with `parse`; an error says `key.range()` was expected.
    pub(crate) fn value<T>(
        self,
        key: Key,
        parse: impl Fn(Raw<'_>) -> Option<T>,
    ) -> Result<T, ConfigError> {
        let (raw, origin) = match self {
            // A flag or a variable holds one value: given() makes one element.
            Self::Text { values, origin } => {
                let text = values.last().copied().unwrap_or_default();
                (Raw::Text(text), origin)
            }
            Self::Toml { value, origin } => (Raw::Toml(value.get_ref()), origin(value.span())),
        };
        parse(raw).ok_or_else(|| ConfigError::invalid(key, origin, key.range(), raw.found()))
    }

    /// Checks a list with `parse` for each element, and that no element is given twice
    /// (the second bind would fail with `EADDRINUSE` at start, far from the typo).
    /// `[shape, empty, once]` say what is expected of the value as a whole: a value or an
    /// array of them, not an empty array, each element once.
    pub(crate) fn list<T: PartialEq + fmt::Display>(
        self,
        key: Key,
        [shape, empty, once]: [&'static str; 3],
        parse: impl Fn(Raw<'_>) -> Result<T, &'static str>,
    ) -> Result<Vec<T>, ConfigError> {
        let one = |raw: Raw<'_>, origin: Origin| {
            parse(raw).map_err(|expected| ConfigError::invalid(key, origin, expected, raw.found()))
        };
        let (items, whole) = match self {
            Self::Text { values, origin } => {
                let items = values
                    .into_iter()
                    .map(|text| one(Raw::Text(text), origin.clone()))
                    .collect::<Result<Vec<_>, _>>()?;
                (items, origin)
            }
            Self::Toml { value, origin } => {
                let whole = origin(value.span());
                let items = match value.get_ref() {
                    DeValue::Array(items) if items.is_empty() => {
                        let found = "an empty array".to_owned();
                        return Err(ConfigError::invalid(key, whole, empty, found));
                    }
                    DeValue::Array(items) => items
                        .iter()
                        .map(|item| one(Raw::Toml(item.get_ref()), origin(item.span())))
                        .collect::<Result<Vec<_>, _>>()?,
                    DeValue::String(_) => vec![one(Raw::Toml(value.get_ref()), whole.clone())?],
                    other => {
                        let found = Raw::Toml(other).found();
                        return Err(ConfigError::invalid(key, whole, shape, found));
                    }
                };
                (items, whole)
            }
        };
        for (i, item) in items.iter().enumerate() {
            if items[..i].contains(item) {
                let found = format!("{:?} twice", item.to_string());
                return Err(ConfigError::invalid(key, whole, once, found));
            }
        }
        Ok(items)
    }
}

/// The default of a single value, parsed by its own parser.
pub(crate) fn default_value<T>(
    key: Key,
    text: &'static str,
    parse: impl Fn(Raw<'_>) -> Option<T>,
) -> T {
    parse(Raw::Text(OsStr::new(text)))
        .unwrap_or_else(|| unreachable!("the default of {} is valid (unit-tested)", key.name()))
}

/// The default of a list: one element, parsed by the element's parser.
pub(crate) fn default_list<T>(
    key: Key,
    text: &'static str,
    parse: impl Fn(Raw<'_>) -> Result<T, &'static str>,
) -> Vec<T> {
    vec![default_value(key, text, |raw| parse(raw).ok())]
}

fn from_flags(flags: &ServeFlags) -> Result<Layer, ConfigError> {
    let mut layer = Layer::default();
    for &key in Key::ALL {
        let values = flags.given(key);
        if !values.is_empty() {
            let origin = Origin::Flag(key.flag());
            layer.set(key, Given::Text { values, origin })?;
        }
    }
    Ok(layer)
}

/// In the environment a list is comma-separated (so a unix socket path given there
/// cannot contain a comma) and blanks around each element are ignored. An empty variable
/// is a bad value, not an unset one.
fn from_env(env: &impl Fn(&str) -> Option<OsString>) -> Result<Layer, ConfigError> {
    let mut layer = Layer::default();
    for &key in Key::ALL {
        let name = key.env_var();
        let Some(value) = env(&name) else { continue };
        let values = if key.is_list() {
            value
                .as_bytes()
                .split(|&b| b == b',')
                .map(|item| OsStr::from_bytes(item.trim_ascii()))
                .collect()
        } else {
            vec![value.as_os_str()]
        };
        layer.set(
            key,
            Given::Text {
                values,
                origin: Origin::Env(name),
            },
        )?;
    }
    Ok(layer)
}

/// `path` is the file as given, for messages; `text` its contents.
fn from_file(path: &Path, text: &str) -> Result<Layer, ConfigError> {
    let line_of = |offset: usize| {
        let before = text.get(..offset).unwrap_or(text);
        before.bytes().filter(|&b| b == b'\n').count() + 1
    };
    let origin = |span: Range<usize>| Origin::File {
        path: path.to_owned(),
        line: line_of(span.start),
    };
    let table = DeTable::parse(text).map_err(|error| ConfigError::Syntax {
        path: path.to_owned(),
        line: error.span().map(|span| line_of(span.start)),
        message: error.message().trim_end().to_owned(),
    })?;

    // In file order, so that the first bad line is the one reported.
    let mut entries: Vec<(&Spanned<_>, &Spanned<DeValue<'_>>)> = table.get_ref().iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);

    let mut layer = Layer::default();
    for (name, value) in entries {
        let Some(key) = Key::from_name(name.get_ref()) else {
            return Err(ConfigError::UnknownKey {
                path: path.to_owned(),
                line: line_of(name.span().start),
                key: name.get_ref().to_string(),
                suggestion: suggestion(name.get_ref()),
            });
        };
        layer.set(
            key,
            Given::Toml {
                value,
                origin: &origin,
            },
        )?;
    }
    Ok(layer)
}

/// Checks the variables of the worker protocol that workers inherit from the master
/// unchanged, with the parsers the workers use: a bad one would make every worker exit at
/// start (or, before, panic), so it is the master's configuration error. The others are
/// the master's own settings (`TASKWARD_GRACEFUL_TIMEOUT`, `TASKWARD_MAX_REQUESTS`,
/// checked as settings) or set per worker.
fn check_inherited(env: &impl Fn(&str) -> Option<OsString>) -> Result<(), ConfigError> {
    for var in [protocol::env::DRAIN_DELAY] {
        if let Some(value) = env(var) {
            protocol::parse_seconds(var, &value).map_err(ConfigError::WorkerEnv)?;
        }
    }
    Ok(())
}

/// Reads the `-c` file, or the default file if it exists. Returns the path as given (for
/// messages) and the text.
fn read_config_file(
    explicit: Option<&Path>,
    cwd: &Path,
) -> Result<Option<(PathBuf, String)>, ConfigError> {
    let shown = explicit.unwrap_or(Path::new(DEFAULT_CONFIG_FILE));
    match read_bounded(&cwd.join(shown)) {
        Ok(text) => Ok(Some((shown.to_owned(), text))),
        Err(error) if explicit.is_none() && error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ConfigError::ReadFile {
            path: shown.to_owned(),
            source,
        }),
    }
}

/// The text of `path`, a regular file of at most [`MAX_CONFIG_FILE`] bytes: a device
/// (`/dev/zero`) or a FIFO is refused before it is opened, and the read stops past the
/// limit whatever the size said.
fn read_bounded(path: &Path) -> io::Result<String> {
    use std::io::Read;
    let too_large = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {MAX_CONFIG_FILE} bytes"),
        )
    };
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return Err(io::Error::new(io::ErrorKind::InvalidInput, what));
    }
    if meta.len() > MAX_CONFIG_FILE {
        return Err(too_large());
    }
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_CONFIG_FILE + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_CONFIG_FILE {
        return Err(too_large());
    }
    Ok(text)
}
