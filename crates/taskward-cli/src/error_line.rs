//! An error and its causes on one line, as the command prints and logs them.

/// `error: cause: cause of the cause`.
///
/// # Examples
///
/// ```
/// let error = std::io::Error::other("disk full");
/// assert_eq!(taskward_cli::error_line::error_line(&error), "disk full");
/// ```
#[must_use]
pub fn error_line(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
