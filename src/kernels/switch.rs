//! An on/off kernel choice made once per process: set by a test or a
//! benchmark, else read from an environment variable (`1` / `0`), else a
//! default; never on where the CPU cannot run the kernel.

use std::sync::atomic::{AtomicU8, Ordering};

pub(crate) struct Switch {
    /// 0 while not yet decided, then 1 (off) or 2 (on).
    state: AtomicU8,
    var: &'static str,
    default: bool,
    runs: fn() -> bool,
    /// What the CPU lacks where `runs` is false, for the note.
    needs: &'static str,
}

impl Switch {
    pub const fn new(
        var: &'static str,
        default: bool,
        runs: fn() -> bool,
        needs: &'static str,
    ) -> Self {
        Switch {
            state: AtomicU8::new(0),
            var,
            default,
            runs,
            needs,
        }
    }

    /// The choice: [`Self::set`] earlier, else the variable, else the
    /// default. Another value than `1` / `0`, and `1` where the CPU cannot
    /// run the kernel, are named in a note.
    pub fn on(&self) -> bool {
        match self.state.load(Ordering::Relaxed) {
            1 => false,
            2 => true,
            _ => {
                let var = std::env::var(self.var);
                let want = match var.as_deref() {
                    Ok("1") => true,
                    Ok("0") => false,
                    Err(_) => self.default,
                    Ok(v) => {
                        crate::note!(
                            "c3: {}={v:?}: expected 1 or 0; using {}",
                            self.var,
                            self.default as u8
                        );
                        self.default
                    }
                };
                if var.is_ok() && want && !(self.runs)() {
                    crate::note!(
                        "c3: {}=1: this CPU lacks {}; it stays off",
                        self.var,
                        self.needs
                    );
                }
                self.set(want);
                self.on()
            }
        }
    }

    /// Turns it on (where the CPU runs the kernel) or off for later calls.
    pub fn set(&self, want: bool) {
        let on = want && (self.runs)();
        self.state.store(if on { 2 } else { 1 }, Ordering::Relaxed);
    }
}
