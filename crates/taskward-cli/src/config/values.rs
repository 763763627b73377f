//! Values before they are checked ([`Raw`]: text from a flag or a variable, or a TOML
//! value) and the readings every setting's parser is built from.
//!
//! By hand because no crate reads one value from two spellings the same way: `"30"` in
//! the environment and `30` in the file are both 30 seconds, `"30"` in the file is not,
//! and the error quotes the value as it was written.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::Duration;

use taskward_http::protocol::MAX_SECONDS;
use toml::de::DeValue;

/// A value before it is checked: text from a flag or a variable, or a TOML value.
#[derive(Clone, Copy)]
pub(crate) enum Raw<'a> {
    /// A flag's or an environment variable's value.
    Text(&'a OsStr),
    /// A value of the config file.
    Toml(&'a DeValue<'a>),
}

impl<'a> Raw<'a> {
    /// The value for an error message: text quoted, TOML numbers and booleans bare.
    pub(crate) fn found(self) -> String {
        match self {
            Self::Text(text) => format!("{text:?}"),
            Self::Toml(DeValue::String(text)) => format!("{text:?}"),
            Self::Toml(DeValue::Integer(int)) => int.to_string(),
            Self::Toml(DeValue::Float(float)) => float.to_string(),
            Self::Toml(DeValue::Boolean(bool)) => bool.to_string(),
            Self::Toml(DeValue::Datetime(datetime)) => datetime.to_string(),
            Self::Toml(DeValue::Array(_)) => "an array".to_owned(),
            Self::Toml(DeValue::Table(_)) => "a table".to_owned(),
        }
    }

    /// Text: a flag's or a variable's value, or a TOML string; `None` for other TOML.
    pub(crate) fn text(self) -> Option<&'a OsStr> {
        match self {
            Self::Text(text) => Some(text),
            Self::Toml(DeValue::String(text)) => Some(OsStr::new(text.as_ref())),
            Self::Toml(_) => None,
        }
    }

    /// An unsigned integer: decimal digits only as text, a TOML integer otherwise.
    pub(crate) fn to_u64(self) -> Option<u64> {
        match self {
            Self::Text(text) => {
                let text = text.to_str()?;
                let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
                digits.then(|| text.parse().ok()).flatten()
            }
            Self::Toml(DeValue::Integer(int)) => {
                let value = i128::from_str_radix(int.as_str(), int.radix()).ok()?;
                u64::try_from(value).ok()
            }
            Self::Toml(_) => None,
        }
    }

    /// Seconds as an integer or a float: finite, not negative, at most [`MAX_SECONDS`]
    /// (what the worker protocol carries).
    pub(crate) fn to_duration(self) -> Option<Duration> {
        self.to_any_duration()
            .filter(|duration| *duration <= Duration::from_secs(MAX_SECONDS))
    }

    fn to_any_duration(self) -> Option<Duration> {
        if let Some(secs) = self.to_u64() {
            return Some(Duration::from_secs(secs));
        }
        let secs: f64 = match self {
            Self::Text(text) => text.to_str()?.parse().ok()?,
            Self::Toml(DeValue::Float(float)) => float.as_str().parse().ok()?,
            Self::Toml(_) => return None,
        };
        // Rejects NaN, infinities, negatives and values past Duration::MAX.
        Duration::try_from_secs_f64(secs).ok()
    }

    /// A non-empty path, from text or a TOML string.
    pub(crate) fn to_path(self) -> Option<PathBuf> {
        let path = PathBuf::from(self.text()?);
        (!path.as_os_str().is_empty()).then_some(path)
    }
}
