//! Writing the manifest: the base file atomically, the log by appends.
//!
//! A commit of generation G is bracketed: [`Journal::intent`] appends the
//! change and fsyncs before sled commits; [`Journal::done`] appends the
//! confirmation after sled has flushed. What a crash at each point leaves,
//! and why the next open accepts it, is in docs/store.md ("The manifest").

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{base_bytes, sealed_line, Change, Line, Replayed, State, BASE_FILE, LOG_FILE};
use crate::{Error, Result};

/// The manifest of a store open for writing.
pub struct Journal {
    dir: PathBuf,
    log: File,
    /// Lines in the log; past a bound the log is folded into the base.
    lines: usize,
    state: State,
    pending: Option<Change>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |err| Error::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// fsync a directory, so a rename or a new file in it is durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Replace `dir/name` with `bytes`: a temporary file, fsync, rename, fsync
/// of the directory. A crash leaves the old file or the new one.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    sync_dir(dir)
}

fn open_log(dir: &Path) -> Result<File> {
    let path = dir.join(LOG_FILE);
    OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(io(&path))
}

impl Journal {
    /// Write a new manifest holding `state` (a new store, a store from
    /// before manifests, the result of a recovery).
    pub fn create(dir: &Path, state: State) -> Result<Self> {
        // The empty log first: a creation killed between the two files
        // leaves a log without a base, which `load` reads as no manifest
        // (nothing can have been committed under it), not as damage.
        write_atomically(dir, LOG_FILE, b"")?;
        write_atomically(dir, BASE_FILE, &base_bytes(&state))?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            log: open_log(dir)?,
            lines: 0,
            state,
            pending: None,
        })
    }

    /// Continue the manifest that was read back and verified at open.
    pub fn resume(dir: &Path, r: Replayed) -> Result<Self> {
        // A temporary left by a crash during a rewrite is never the manifest.
        for name in [BASE_FILE, LOG_FILE] {
            let _ = std::fs::remove_file(dir.join(format!("{name}.tmp")));
        }
        Ok(Journal {
            dir: dir.to_path_buf(),
            log: open_log(dir)?,
            lines: r.log_lines,
            state: r.state,
            pending: r.pending,
        })
    }

    /// The confirmed state.
    pub fn state(&self) -> &State {
        &self.state
    }

    fn append(&mut self, line: &Line) -> Result<()> {
        let body = serde_json::to_vec(line).expect("a log line always serializes");
        let path = self.dir.join(LOG_FILE);
        self.log
            .write_all(&sealed_line(&body))
            .and_then(|_| self.log.sync_data())
            .map_err(io(&path))?;
        self.lines += 1;
        Ok(())
    }

    /// Announce `c` before sled commits it.
    pub fn intent(&mut self, c: Change) -> Result<()> {
        match &self.pending {
            // The announced change did commit (sled moved on), but its
            // `done` was never written (an error after the commit).
            Some(p) if c.generation == p.generation + 1 => {
                let p = self.pending.take().expect("matched Some");
                self.state.apply(&p);
            }
            _ => {}
        }
        self.append(&Line::Intent(c.clone()))?;
        self.pending = Some(c);
        Ok(())
    }

    /// Confirm that sled has flushed `generation`.
    pub fn done(&mut self, generation: u64) -> Result<()> {
        self.append(&Line::Done { generation })?;
        if let Some(p) = self.pending.take_if(|p| p.generation == generation) {
            self.state.apply(&p);
        }
        if self.lines > 256 + 2 * self.state.docs.len() {
            self.compact()?;
        }
        Ok(())
    }

    /// Fold the log into the base. The new base is in place before the
    /// log is emptied; a crash between leaves log lines the base already
    /// holds, which replay skips by generation.
    fn compact(&mut self) -> Result<()> {
        write_atomically(&self.dir, BASE_FILE, &base_bytes(&self.state))?;
        write_atomically(&self.dir, LOG_FILE, b"")?;
        self.log = open_log(&self.dir)?;
        self.lines = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{load, Loaded, ManifestDoc};
    use super::*;

    /// Generation `g` replaces doc `g % 5` (the log grows, the state not).
    fn change(g: u64, _: u64) -> Change {
        let id = g % 5;
        Change {
            generation: g,
            next_doc_id: g + 1,
            model: Some("fp".into()),
            put: vec![ManifestDoc {
                id,
                source: format!("/s/{id}"),
                content_hash: "11".repeat(32),
                size: 3,
                chunks: 1,
                chunk_tokens: 10,
                kind: "text".into(),
                metadata: Default::default(),
            }],
            rm: vec![id],
        }
    }

    fn loaded(dir: &Path) -> Replayed {
        match load(dir) {
            Loaded::Present(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn commits_read_back_across_compactions() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::create(dir.path(), State::default()).unwrap();
        for g in 1..=400u64 {
            j.intent(change(g, g)).unwrap();
            j.done(g).unwrap();
        }
        j.intent(change(401, 401)).unwrap();
        let r = loaded(dir.path());
        assert_eq!(r.state.generation, 400);
        assert_eq!(r.state.docs.len(), 5);
        assert_eq!(r.state.next_doc_id, 401);
        assert_eq!(r.pending.map(|p| p.generation), Some(401));
        assert!(r.log_lines < 300, "the log was compacted: {}", r.log_lines);
        // Resuming continues where it was.
        let mut again = Journal::resume(dir.path(), loaded(dir.path())).unwrap();
        again.done(401).unwrap();
        assert_eq!(loaded(dir.path()).state.generation, 401);
    }
}
