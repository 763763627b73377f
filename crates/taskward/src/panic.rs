//! Panics inside tracked tasks: their message and the place they happened.
//!
//! A caught panic payload carries the message but not the location, so taskward puts a
//! panic hook in front of whatever hook is installed (once, on the first spawn). The hook
//! only notes the location in a thread-local and then calls the previous hook, so the
//! usual "thread panicked at" line still prints.

use std::any::Any;
use std::cell::RefCell;
use std::sync::Once;

thread_local! {
    /// Location of the last panic on this thread. A panic unwinds on the thread that
    /// raised it, so the task that catches it reads its own location here.
    static LAST_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs the location-noting hook in front of the current one. Idempotent.
pub(crate) fn install_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let location = info.location().map(ToString::to_string);
            // `try_with`: a panic during thread-local destruction must not panic again.
            let _ = LAST_LOCATION.try_with(|last| {
                if let Ok(mut last) = last.try_borrow_mut() {
                    *last = location;
                }
            });
            previous(info);
        }));
    });
}

/// Takes the location of the panic this thread just caught, if the hook saw it.
pub(crate) fn take_location() -> Option<String> {
    LAST_LOCATION
        .try_with(|last| last.try_borrow_mut().ok().and_then(|mut l| l.take()))
        .ok()
        .flatten()
}

/// The message of a panic payload (`panic!("...")` carries a `&str` or a `String`).
pub(crate) fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}
