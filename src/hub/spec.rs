//! A hub model repository named on the command line: `org/name[@revision]`.

use std::fmt;

/// A model repository on the Hugging Face hub and the revision (branch, tag
/// or commit) to use; `main` when none is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSpec {
    pub id: String,
    pub revision: String,
}

impl RepoSpec {
    /// `org/name` or `org/name@revision`; `None` for anything else (a path,
    /// a bare name), so callers can treat such an argument as a directory.
    pub fn parse(s: &str) -> Option<RepoSpec> {
        let (id, revision) = match s.split_once('@') {
            Some((id, rev)) => (id, rev),
            None => (s, "main"),
        };
        let (org, name) = id.split_once('/')?;
        if !valid_part(org) || !valid_part(name) || !valid_revision(revision) {
            return None;
        }
        Some(RepoSpec {
            id: id.to_string(),
            revision: revision.to_string(),
        })
    }

    /// The revision is a full commit hash (no ref to follow in the cache).
    pub fn is_commit(&self) -> bool {
        is_commit_hash(&self.revision)
    }

    /// The repository's folder in the cache: `models--org--name`.
    pub fn folder_name(&self) -> String {
        format!("models--{}", self.id.replace('/', "--"))
    }

    pub(crate) fn hub_repo(&self, revision: &str) -> hf_hub::Repo {
        hf_hub::Repo::with_revision(
            self.id.clone(),
            hf_hub::RepoType::Model,
            revision.to_string(),
        )
    }
}

impl fmt::Display for RepoSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id, self.revision)
    }
}

/// The hub's rule for user, organisation and repository names.
fn valid_part(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 96
        && !p.starts_with(['-', '.'])
        && !p.ends_with(['-', '.'])
        && !p.contains("--")
        && !p.contains("..")
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Branch and tag names (`refs/pr/1` included); no path tricks.
fn valid_revision(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 256
        && !r.split('/').any(|s| s.is_empty() || s == "." || s == "..")
        && r.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

pub(crate) fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_and_revisions() {
        let s = RepoSpec::parse("liufanfanlff/C3-Context-Cascade-Compression").unwrap();
        assert_eq!(s.id, "liufanfanlff/C3-Context-Cascade-Compression");
        assert_eq!(s.revision, "main");
        assert_eq!(
            s.folder_name(),
            "models--liufanfanlff--C3-Context-Cascade-Compression"
        );
        let s = RepoSpec::parse("latent-context/0.6b-4b-LCLM-4x@refs/pr/3").unwrap();
        assert_eq!(s.revision, "refs/pr/3");
        assert!(!s.is_commit());
        let c = "0123456789abcdef0123456789abcdef01234567";
        assert!(RepoSpec::parse(&format!("a/b@{c}")).unwrap().is_commit());
    }

    #[test]
    fn paths_are_not_repo_ids() {
        for s in [
            "tests/fixtures/golden/c3-tiny",
            "/abs/dir",
            "./a",
            "a/b/",
            "a/../b",
            "~/models",
            "model",
            "a/b@",
            "a/b@../x",
            "a--b/c",
            "a/b c",
        ] {
            assert_eq!(RepoSpec::parse(s), None, "{s}");
        }
    }
}
