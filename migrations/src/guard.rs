//! Panics of the storage libraries, caught at the store boundary.
//!
//! sled 0.34 and tantivy panic on some damaged files (sled: "tried to
//! serialize Uninitialized" while recovering a damaged log; tantivy: on
//! some truncated segment files) instead of returning an error. Every call
//! c3 makes into them runs inside [`catch`], which turns such a panic into
//! an `Err` carrying the panic's message, so the caller can name the file
//! and the way back instead of the process dying with exit code 101.
//!
//! While a [`catch`] runs on a thread, the process's panic hook stays quiet
//! for panics on that thread (the message becomes the error instead of a
//! backtrace on stderr); panics elsewhere are reported as before.

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// How many [`catch`] calls are running on this thread.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// Message and location of the last panic caught on this thread.
    static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Installs (once) a panic hook that records, instead of printing, panics
/// raised inside [`catch`], and hands every other panic to the hook that
/// was there before.
fn install_hook() {
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if DEPTH.with(Cell::get) == 0 {
                return previous(info);
            }
            let msg = payload_text(info.payload());
            let text = match info.location() {
                Some(l) => format!("{msg} (at {}:{})", l.file(), l.line()),
                None => msg,
            };
            LAST.with(|last| *last.borrow_mut() = Some(text));
        }));
    });
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-text payload".to_string()
    }
}

/// Runs `f`; a panic inside it comes back as `Err(message)`.
///
/// Whatever `f` was working on is abandoned: callers treat the database
/// (or index) as damaged and do not call into it again for this request.
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_hook();
    DEPTH.with(|d| d.set(d.get() + 1));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    DEPTH.with(|d| d.set(d.get() - 1));
    result.map_err(|payload| {
        LAST.with(|last| last.borrow_mut().take())
            .unwrap_or_else(|| payload_text(payload.as_ref()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_its_message_and_the_thread_goes_on() {
        let r: Result<u32, String> = catch(|| panic!("tried to serialize Uninitialized"));
        let msg = r.unwrap_err();
        assert!(msg.contains("tried to serialize Uninitialized"), "{msg}");
        assert!(msg.contains("guard.rs"), "the location is named: {msg}");
        assert_eq!(catch(|| 7), Ok(7));
        // Nested: the inner catch takes its own panic, the outer sees none.
        let outer = catch(|| catch(|| -> () { panic!("inner") }).unwrap_err());
        assert!(outer.unwrap().contains("inner"));
    }
}
