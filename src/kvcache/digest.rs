//! The decoder's identity as a cache key component: a digest of its weight
//! and configuration files' bytes. Reading a multi-gigabyte checkpoint
//! costs seconds, so each file's digest is remembered in the cache
//! directory under the file's path, length, modification time and inode,
//! and read whole again only when one of those changes.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Sub-directory of the cache that remembers file digests.
pub const MEMO_DIR: &str = "digests";

/// Hex blake3 over `files` in order: each file's name (not its directory,
/// so a copied checkpoint keeps its identity), length and content digest.
/// With `memo`, file digests are remembered there.
pub fn files_digest(files: &[PathBuf], memo: Option<&Path>) -> Result<String> {
    let mut h = blake3::Hasher::new();
    for f in files {
        let meta = std::fs::metadata(f).map_err(Error::io(f))?;
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name.unwrap_or_default();
        h.update(&(name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(&meta.len().to_le_bytes());
        h.update(file_digest(f, &meta, memo)?.as_bytes());
    }
    Ok(h.finalize().to_hex().to_string())
}

fn file_digest(path: &Path, meta: &std::fs::Metadata, memo: Option<&Path>) -> Result<String> {
    let slot = memo.map(|dir| dir.join(memo_name(path, meta)));
    if let Some(s) = &slot {
        if let Ok(text) = std::fs::read_to_string(s) {
            let text = text.trim();
            if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Ok(text.to_string());
            }
        }
    }
    let mut f = std::fs::File::open(path).map_err(Error::io(path))?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(Error::io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let digest = h.finalize().to_hex().to_string();
    if let (Some(s), Some(dir)) = (&slot, memo) {
        // Remembering is an optimisation: a failure only costs a re-read.
        let tmp = dir.join(format!(".tmp-{}-digest", std::process::id()));
        let _ = std::fs::create_dir_all(dir)
            .and_then(|_| std::fs::write(&tmp, &digest))
            .and_then(|_| std::fs::rename(&tmp, s));
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(digest)
}

/// Where a file's digest is remembered: a hash of what identifies this
/// version of it.
fn memo_name(path: &Path, meta: &std::fs::Metadata) -> String {
    let mut h = blake3::Hasher::new();
    let canon = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    h.update(canon.to_string_lossy().as_bytes());
    h.update(&meta.len().to_le_bytes());
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    h.update(&mtime.to_le_bytes());
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        h.update(&meta.ino().to_le_bytes());
        h.update(&meta.dev().to_le_bytes());
    }
    format!("{}.digest", &h.finalize().to_hex()[..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_follows_the_content_and_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let memo = dir.path().join("memo");
        let a = dir.path().join("model.safetensors");
        std::fs::write(&a, b"weights one").unwrap();
        let d1 = files_digest(std::slice::from_ref(&a), Some(&memo)).unwrap();
        assert_eq!(std::fs::read_dir(&memo).unwrap().count(), 1);
        assert_eq!(
            files_digest(std::slice::from_ref(&a), Some(&memo)).unwrap(),
            d1
        );
        // Other bytes (another length, so another memo slot): another digest.
        std::fs::write(&a, b"weights two!").unwrap();
        let d2 = files_digest(std::slice::from_ref(&a), Some(&memo)).unwrap();
        assert_ne!(d1, d2);
        assert_eq!(files_digest(std::slice::from_ref(&a), None).unwrap(), d2);
    }
}
