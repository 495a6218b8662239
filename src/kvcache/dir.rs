//! The cache directory: one file per block, named by its first position and
//! key; writes through temporary files; least-recently-used eviction under a
//! byte cap; damaged files removed when found.
//!
//! A block's "use" time is its file's modification time: a hit sets it to
//! now for every block of the prefix at once. Eviction removes the least
//! recently used first and, among blocks used at the same moment, the later
//! positions first, so a prefix loses its tail before its head (a block is
//! useless without the ones before it).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::file::{self, Bad, Header};
use crate::{Error, Result};

/// Extension of block files.
pub const BLOCK_EXT: &str = "kvb";
/// Prefix of files being written.
const TMP: &str = ".tmp-";
/// A temporary file this old is left over whoever wrote it.
const STALE: Duration = Duration::from_secs(3600);

/// A cache directory.
#[derive(Debug, Clone)]
pub struct Disk {
    dir: PathBuf,
}

/// What a lookup found.
pub enum Found {
    /// The block, checked, mapped.
    Block(memmap2::Mmap),
    Missing,
    /// A file was there but bad; it has been removed.
    Removed(Bad),
}

/// One block file in a listing.
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: PathBuf,
    pub bytes: u64,
    pub used: SystemTime,
    /// First position of the block (from the name).
    pub start: u64,
}

/// The directory's contents.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Listing {
    pub blocks: u64,
    pub bytes: u64,
    /// Temporary files (writes in progress, or left by a killed process).
    pub temp_files: u64,
    pub temp_bytes: u64,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

impl Disk {
    /// The cache at `dir`, created if needed; temporary files that no live
    /// process is writing are removed.
    pub fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).map_err(Error::io(dir))?;
        let d = Disk {
            dir: dir.to_path_buf(),
        };
        d.sweep_temps();
        Ok(d)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, h: &Header) -> PathBuf {
        self.dir
            .join(format!("{:010}-{}.{BLOCK_EXT}", h.start, h.key.hex()))
    }

    fn temp_path(&self) -> PathBuf {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        self.dir.join(format!(
            "{TMP}{}-{nanos}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// The block `h` describes, if its file is there and sound. A bad file
    /// is removed (unless another process has just replaced it).
    pub fn read(&self, h: &Header) -> Result<Found> {
        let path = self.path(h);
        let f = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Missing),
            Err(e) => return Err(Error::io(&path)(e)),
        };
        let meta = f.metadata().map_err(Error::io(&path))?;
        if meta.len() != h.file_bytes() {
            remove_if_same(&path, &meta);
            return Ok(Found::Removed(Bad::Size {
                found: meta.len(),
                expected: h.file_bytes(),
            }));
        }
        // SAFETY: block files are never written in place: writers create a
        // new file and rename it over the name, so the mapped inode keeps
        // its bytes (a removed one too) while mapped. Only a file truncated
        // by hand while mapped could change under us.
        let map = unsafe { memmap2::Mmap::map(&f) }.map_err(Error::io(&path))?;
        match file::check(&map, h) {
            Ok(_) => Ok(Found::Block(map)),
            Err(bad) => {
                remove_if_same(&path, &meta);
                Ok(Found::Removed(bad))
            }
        }
    }

    /// Whether a file of `h`'s name and size is there.
    pub fn has(&self, h: &Header) -> bool {
        fs::metadata(self.path(h)).is_ok_and(|m| m.len() == h.file_bytes())
    }

    /// Writes a block: a temporary file renamed into place, so another
    /// process never sees half of it. Returns the bytes written.
    pub fn write(&self, h: &Header, payload: &[u8]) -> Result<u64> {
        let path = self.path(h);
        file::write(&path, &self.temp_path(), h, payload).map_err(Error::io(&path))
    }

    /// Marks the blocks as used at `when` (a block evicted meanwhile by
    /// another process is skipped).
    pub fn touch(&self, blocks: &[Header], when: SystemTime) {
        for h in blocks {
            if let Ok(f) = fs::File::options().write(true).open(self.path(h)) {
                let _ = f.set_modified(when);
            }
        }
    }

    /// Every block file, and the temporary files.
    pub fn list(&self) -> Result<(Vec<Entry>, Listing)> {
        let mut blocks = Vec::new();
        let mut sum = Listing::default();
        let rd = fs::read_dir(&self.dir).map_err(Error::io(&self.dir))?;
        for e in rd.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let Ok(meta) = e.metadata() else { continue };
            if name.starts_with(TMP) {
                sum.temp_files += 1;
                sum.temp_bytes += meta.len();
                continue;
            }
            let Some(start) = name
                .strip_suffix(&format!(".{BLOCK_EXT}"))
                .and_then(|n| n.split_once('-'))
                .and_then(|(s, _)| s.parse::<u64>().ok())
            else {
                continue;
            };
            sum.blocks += 1;
            sum.bytes += meta.len();
            blocks.push(Entry {
                path: e.path(),
                bytes: meta.len(),
                used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                start,
            });
        }
        Ok((blocks, sum))
    }

    /// Reads and checks every block file on its own (header, size,
    /// checksum), removing the bad ones. Returns (sound, removed).
    pub fn verify(&self) -> Result<(u64, u64)> {
        let (blocks, _) = self.list()?;
        let (mut good, mut bad) = (0, 0);
        for b in blocks {
            let Ok(f) = fs::File::open(&b.path) else {
                continue;
            };
            let Ok(meta) = f.metadata() else { continue };
            // SAFETY: as in `read`: block files are replaced, never rewritten.
            let map = unsafe { memmap2::Mmap::map(&f) }.map_err(Error::io(&b.path))?;
            let named = b.path.file_name().map(|n| n.to_string_lossy().into_owned());
            match file::check_standalone(&map) {
                // The name must be the one the header gives.
                Ok(h) if named.as_deref() == self.path(&h).file_name().and_then(|n| n.to_str()) => {
                    good += 1
                }
                _ => {
                    remove_if_same(&b.path, &meta);
                    bad += 1;
                }
            }
        }
        Ok((good, bad))
    }

    /// Removes the least recently used blocks until the blocks take at most
    /// `cap` bytes. Returns the files and bytes removed and the bytes left.
    pub fn evict(&self, cap: u64) -> Result<(u64, u64, u64)> {
        let (mut blocks, sum) = self.list()?;
        let mut left = sum.bytes;
        if left <= cap {
            return Ok((0, 0, left));
        }
        blocks.sort_by(|a, b| a.used.cmp(&b.used).then(b.start.cmp(&a.start)));
        let (mut files, mut bytes) = (0, 0);
        for b in blocks {
            if left <= cap {
                break;
            }
            match fs::remove_file(&b.path) {
                Ok(()) => {
                    files += 1;
                    bytes += b.bytes;
                }
                // Another process evicted it first: gone all the same.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&b.path)(e)),
            }
            left -= b.bytes;
        }
        Ok((files, bytes, left))
    }

    /// Removes every block and temporary file. Returns files and bytes.
    pub fn clear(&self) -> Result<(u64, u64)> {
        let (blocks, _) = self.list()?;
        let (mut files, mut bytes) = (0, 0);
        for b in blocks {
            if fs::remove_file(&b.path).is_ok() {
                files += 1;
                bytes += b.bytes;
            }
        }
        for (path, len) in self.temps() {
            if fs::remove_file(&path).is_ok() {
                files += 1;
                bytes += len;
            }
        }
        Ok((files, bytes))
    }

    fn temps(&self) -> Vec<(PathBuf, u64)> {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(TMP))
            .map(|e| (e.path(), e.metadata().map_or(0, |m| m.len())))
            .collect()
    }

    /// Removes temporary files whose writer is gone (its process no longer
    /// runs, or the file is older than an hour).
    pub fn sweep_temps(&self) -> u64 {
        let mut n = 0;
        for (path, _) in self.temps() {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let pid = name
                .as_deref()
                .and_then(|n| n.strip_prefix(TMP))
                .and_then(|n| n.split('-').next())
                .and_then(|p| p.parse::<u32>().ok());
            let old = fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE);
            if (old || pid.is_some_and(|p| !process_alive(p))) && fs::remove_file(&path).is_ok() {
                n += 1;
            }
        }
        n
    }
}

/// Whether a process with this id runs (unknown platforms: assume it does,
/// so only age removes its files).
fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: signal 0 only checks that the process exists.
        let r = unsafe { libc::kill(pid, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    }
    #[cfg(not(unix))]
    {
        true
    }
}

/// Removes `path` if it is still the file `meta` describes (another process
/// may have renamed a good block over it since it was opened).
fn remove_if_same(path: &Path, meta: &fs::Metadata) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match fs::metadata(path) {
            Ok(now) if now.ino() == meta.ino() && now.dev() == meta.dev() => {}
            _ => return,
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let _ = fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn temporary_files_of_dead_writers_are_swept_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let gone = dir.path().join(format!("{TMP}{dead}-1-0"));
        let live = dir.path().join(format!("{TMP}{}-1-0", std::process::id()));
        fs::write(&gone, b"half a block").unwrap();
        fs::write(&live, b"being written").unwrap();
        let d = Disk::open(dir.path()).unwrap();
        assert!(!gone.exists() && live.exists());
        assert_eq!(d.list().unwrap().1.temp_files, 1);
        assert_eq!(d.clear().unwrap().0, 1);
        assert!(!live.exists());
    }
}
