//! The hub's checksums: SHA-256 for LFS files (the blob's name in the cache),
//! the git blob SHA-1 for the others.

use std::io::Read;
use std::path::Path;

use sha1::Digest;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checksum {
    Sha256(String),
    GitSha1(String),
}

impl Checksum {
    /// What a cached blob's own name promises (`blobs/<etag>`): 64 hex digits
    /// are an LFS SHA-256, 40 a git SHA-1.
    pub fn of_blob_name(name: &str) -> Option<Checksum> {
        let hex = name.bytes().all(|b| b.is_ascii_hexdigit());
        match name.len() {
            64 if hex => Some(Checksum::Sha256(name.to_ascii_lowercase())),
            40 if hex => Some(Checksum::GitSha1(name.to_ascii_lowercase())),
            _ => None,
        }
    }

    pub fn expected(&self) -> &str {
        match self {
            Checksum::Sha256(h) | Checksum::GitSha1(h) => h,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Checksum::Sha256(_) => "sha256",
            Checksum::GitSha1(_) => "git sha1",
        }
    }

    /// The digest of `path`'s content in this checksum's kind.
    pub fn digest_of(&self, path: &Path) -> std::io::Result<String> {
        match self {
            Checksum::Sha256(_) => hash_file(path, sha2::Sha256::new(), None),
            Checksum::GitSha1(_) => {
                let len = std::fs::metadata(path)?.len();
                let header = format!("blob {len}\0");
                hash_file(path, sha1::Sha1::new(), Some(header.as_bytes()))
            }
        }
    }
}

fn hash_file<D: Digest>(path: &Path, mut d: D, prefix: Option<&[u8]>) -> std::io::Result<String> {
    if let Some(p) = prefix {
        d.update(p);
    }
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        d.update(&buf[..n]);
    }
    Ok(d.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_known_values() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"hello\n").unwrap();
        // `printf 'hello\n' | sha256sum` and `git hash-object`.
        let sha = Checksum::Sha256(String::new()).digest_of(&p).unwrap();
        assert_eq!(
            sha,
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
        );
        let git = Checksum::GitSha1(String::new()).digest_of(&p).unwrap();
        assert_eq!(git, "ce013625030ba8dba906f756967f9e9ca394464a");
    }

    #[test]
    fn blob_names_say_their_kind() {
        assert!(matches!(
            Checksum::of_blob_name(&"a".repeat(64)),
            Some(Checksum::Sha256(_))
        ));
        assert!(matches!(
            Checksum::of_blob_name(&"B".repeat(40)),
            Some(Checksum::GitSha1(_))
        ));
        assert_eq!(Checksum::of_blob_name("x.part"), None);
    }
}
