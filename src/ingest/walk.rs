//! Turn command-line inputs into the list of files to ingest.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// One input of `c3 ingest`.
#[derive(Debug, Clone)]
pub enum Input {
    Path(PathBuf),
    /// Standard input, stored under `stdin:LABEL`.
    Stdin {
        label: String,
    },
}

/// A file found by the walk.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Canonical path: the document's source.
    pub path: PathBuf,
    /// Named on the command line (not found by walking a directory).
    pub explicit: bool,
    pub size: u64,
}

/// Something that could not be walked.
#[derive(Debug, Clone)]
pub struct WalkProblem {
    pub source: String,
    pub error: String,
    /// A failure (counts toward the exit code) or only a note.
    pub fatal: bool,
    /// Index of the input whose walk found it.
    pub input: usize,
    /// The input itself does not exist (as opposed to a part of it that
    /// could not be read).
    pub input_missing: bool,
}

/// Expand inputs to files, in a stable order: arguments in the order given,
/// directory entries sorted by name. `.gitignore` (even outside a git
/// repository), hidden files and symlink loops are skipped. Each file is
/// listed once even if reached twice.
pub fn discover(inputs: &[Input]) -> (Vec<Candidate>, Vec<WalkProblem>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    for (i, input) in inputs.iter().enumerate() {
        let Input::Path(root) = input else { continue };
        let meta = match std::fs::metadata(root) {
            Ok(m) => m,
            Err(e) => {
                problems.push(WalkProblem {
                    source: root.display().to_string(),
                    error: e.to_string(),
                    fatal: true,
                    input: i,
                    input_missing: e.kind() == std::io::ErrorKind::NotFound,
                });
                continue;
            }
        };
        if !meta.is_dir() {
            push(
                &mut out,
                &mut seen,
                &mut problems,
                root,
                true,
                meta.len(),
                i,
            );
            continue;
        }
        let walker = ignore::WalkBuilder::new(root)
            .hidden(true)
            .git_ignore(true)
            .require_git(false)
            .follow_links(true)
            .sort_by_file_name(|a, b| a.cmp(b))
            .build();
        for entry in walker {
            match entry {
                Ok(e) => {
                    if e.file_type().is_some_and(|t| t.is_file()) {
                        let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                        push(&mut out, &mut seen, &mut problems, e.path(), false, size, i);
                    }
                }
                Err(err) => {
                    let is_loop = matches!(innermost(&err), ignore::Error::Loop { .. });
                    problems.push(WalkProblem {
                        source: root.display().to_string(),
                        error: if is_loop {
                            format!("skipped symlink loop: {err}")
                        } else {
                            err.to_string()
                        },
                        fatal: !is_loop,
                        input: i,
                        input_missing: false,
                    });
                }
            }
        }
    }
    (out, problems)
}

fn innermost(e: &ignore::Error) -> &ignore::Error {
    match e {
        ignore::Error::WithPath { err, .. }
        | ignore::Error::WithDepth { err, .. }
        | ignore::Error::WithLineNumber { err, .. } => innermost(err),
        other => other,
    }
}

fn push(
    out: &mut Vec<Candidate>,
    seen: &mut HashSet<PathBuf>,
    problems: &mut Vec<WalkProblem>,
    path: &Path,
    explicit: bool,
    size: u64,
    input: usize,
) {
    match std::fs::canonicalize(path) {
        Ok(c) => {
            if seen.insert(c.clone()) {
                out.push(Candidate {
                    path: c,
                    explicit,
                    size,
                });
            }
        }
        Err(e) => problems.push(WalkProblem {
            source: path.display().to_string(),
            error: e.to_string(),
            fatal: true,
            input,
            input_missing: false,
        }),
    }
}
