//! The table of ingest jobs behind `/v1/jobs/{id}`: state, progress, ETA,
//! result, and the cancel flag the worker checks between chunks.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use serde_json::{json, Value};

/// Finished jobs kept for `GET /v1/jobs/{id}` (the oldest are forgotten).
const KEEP_FINISHED: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn finished(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::Cancelled
        )
    }
}

/// One ingest job as the table holds it.
#[derive(Debug)]
pub struct JobInfo {
    pub id: u64,
    /// `text` (a text sent in the request), `paths` (files and folders
    /// read by the server), `sync`.
    pub kind: &'static str,
    pub name: String,
    pub bytes: u64,
    pub state: JobState,
    pub chunks_done: u64,
    pub chunks_total: Option<u64>,
    /// Bytes of the files found, for `paths` and `sync` jobs (their chunk
    /// count is not known before they are read).
    pub bytes_done: Option<u64>,
    pub bytes_total: Option<u64>,
    pub created_ms: i64,
    started: Option<Instant>,
    pub seconds: Option<f64>,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub cancel: Arc<AtomicBool>,
}

impl JobInfo {
    /// Seconds left, from the pace so far.
    fn eta_s(&self) -> Option<f64> {
        let (done, total) = self.progress()?;
        let start = self.started?;
        if self.state != JobState::Running || done == 0 {
            return None;
        }
        let per = start.elapsed().as_secs_f64() / done as f64;
        Some(per * total.saturating_sub(done) as f64)
    }

    /// Work done and in all, in the job's unit (chunks, or bytes for jobs
    /// over files).
    pub fn progress(&self) -> Option<(u64, u64)> {
        match (self.bytes_done, self.bytes_total) {
            (Some(d), Some(t)) => Some((d, t)),
            _ => Some((self.chunks_done, self.chunks_total?)),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "object": "ingest_job",
            "kind": self.kind,
            "name": self.name,
            "bytes": self.bytes,
            "state": self.state,
            "chunks_done": self.chunks_done,
            "chunks_total": self.chunks_total,
            "bytes_done": self.bytes_done,
            "bytes_total": self.bytes_total,
            "eta_s": self.eta_s(),
            "seconds": self.seconds,
            "created_at_ms": self.created_ms,
            "cancel_requested": self.cancel.load(Ordering::Relaxed),
            "result": self.result,
            "error": self.error,
        })
    }
}

#[derive(Default)]
struct Table {
    next: u64,
    jobs: HashMap<u64, JobInfo>,
    finished: VecDeque<u64>,
}

/// Shared between the HTTP handlers (create, read, cancel) and the worker
/// (progress, finish).
#[derive(Default, Clone)]
pub struct Jobs {
    inner: Arc<Mutex<Table>>,
}

impl Jobs {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new queued job over a text; returns its id and cancel flag.
    pub fn create(&self, name: &str, bytes: u64) -> (u64, Arc<AtomicBool>) {
        self.create_kind("text", name, bytes)
    }

    /// A new queued job of `kind` (`text`, `paths`, `sync`).
    pub fn create_kind(
        &self,
        kind: &'static str,
        name: &str,
        bytes: u64,
    ) -> (u64, Arc<AtomicBool>) {
        let mut t = self.table();
        t.next += 1;
        let id = t.next;
        let cancel = Arc::new(AtomicBool::new(false));
        t.jobs.insert(
            id,
            JobInfo {
                id,
                kind,
                name: name.to_string(),
                bytes,
                state: JobState::Queued,
                chunks_done: 0,
                chunks_total: None,
                bytes_done: None,
                bytes_total: None,
                created_ms: crate::store::now_ms(),
                started: None,
                seconds: None,
                result: None,
                error: None,
                cancel: cancel.clone(),
            },
        );
        (id, cancel)
    }

    /// Forgets a job that never reached the queue (it was full).
    pub fn forget(&self, id: u64) {
        self.table().jobs.remove(&id);
    }

    pub fn get(&self, id: u64) -> Option<Value> {
        self.table().jobs.get(&id).map(JobInfo::to_json)
    }

    /// Asks the job to stop; `None` for an unknown job, else its state.
    pub fn cancel(&self, id: u64) -> Option<(JobState, Value)> {
        let t = self.table();
        let j = t.jobs.get(&id)?;
        if !j.state.finished() {
            j.cancel.store(true, Ordering::Relaxed);
        }
        Some((j.state, j.to_json()))
    }

    /// The cancel flag of job `id`.
    pub fn cancel_flag(&self, id: u64) -> Option<Arc<AtomicBool>> {
        self.table().jobs.get(&id).map(|j| j.cancel.clone())
    }

    /// Sets every unfinished job's cancel flag (shutdown).
    pub fn cancel_all(&self) {
        for j in self.table().jobs.values() {
            if !j.state.finished() {
                j.cancel.store(true, Ordering::Relaxed);
            }
        }
    }

    pub fn start(&self, id: u64) {
        if let Some(j) = self.table().jobs.get_mut(&id) {
            j.state = JobState::Running;
            j.started = Some(Instant::now());
        }
    }

    pub fn progress(&self, id: u64, done: u64, total: u64) {
        if let Some(j) = self.table().jobs.get_mut(&id) {
            j.chunks_done = done;
            j.chunks_total = Some(total);
        }
    }

    /// Progress of a job over files: chunks encoded, bytes of the files.
    pub fn progress_files(&self, id: u64, chunks: u64, bytes_done: u64, bytes_total: u64) {
        if let Some(j) = self.table().jobs.get_mut(&id) {
            j.chunks_done = chunks;
            j.bytes_done = Some(bytes_done);
            j.bytes_total = Some(bytes_total);
        }
    }

    /// The job's state and progress (done, total in its unit), without
    /// building its JSON: what a waiting MCP call polls.
    pub fn status(&self, id: u64) -> Option<(JobState, Option<(u64, u64)>)> {
        self.table().jobs.get(&id).map(|j| (j.state, j.progress()))
    }

    /// Ends a job with its state and result or error.
    pub fn finish(&self, id: u64, state: JobState, result: Option<Value>, error: Option<String>) {
        let mut t = self.table();
        if let Some(j) = t.jobs.get_mut(&id) {
            j.state = state;
            j.seconds = j.started.map(|s| s.elapsed().as_secs_f64());
            j.result = result;
            j.error = error;
        } else {
            return;
        }
        t.finished.push_back(id);
        while t.finished.len() > KEEP_FINISHED {
            if let Some(old) = t.finished.pop_front() {
                t.jobs.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_and_cancel() {
        let jobs = Jobs::default();
        let (id, flag) = jobs.create("a.txt", 10);
        assert_eq!(jobs.get(id).unwrap()["state"], "queued");
        jobs.start(id);
        jobs.progress(id, 1, 4);
        let v = jobs.get(id).unwrap();
        assert_eq!(v["state"], "running");
        assert_eq!(v["chunks_total"], 4);
        assert!(v["eta_s"].is_number());
        let (state, _) = jobs.cancel(id).unwrap();
        assert_eq!(state, JobState::Running);
        assert!(flag.load(Ordering::Relaxed));
        jobs.finish(id, JobState::Cancelled, None, Some("cancelled".into()));
        assert_eq!(jobs.get(id).unwrap()["state"], "cancelled");
        assert!(jobs.get(id + 1).is_none());
        assert!(jobs.cancel(id + 1).is_none());
    }

    #[test]
    fn finished_jobs_are_bounded() {
        let jobs = Jobs::default();
        let mut first = 0;
        for i in 0..(KEEP_FINISHED + 5) {
            let (id, _) = jobs.create("x", 1);
            if i == 0 {
                first = id;
            }
            jobs.finish(id, JobState::Done, None, None);
        }
        assert!(jobs.get(first).is_none());
        assert_eq!(jobs.table().jobs.len(), KEEP_FINISHED);
    }
}
