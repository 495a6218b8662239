//! A stand-in for the Hugging Face hub on 127.0.0.1: the repository listing
//! (`/api/models/{id}/revision/{rev}?blobs=true`) and file downloads
//! (`/{id}/resolve/{rev}/{path}`, with Range, HEAD and the hub's headers), plus
//! faults a test can ask for. Nothing here leaves loopback.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha1::Digest;

#[derive(Clone)]
pub struct File {
    pub path: String,
    pub data: Arc<Vec<u8>>,
    pub lfs: bool,
}

impl File {
    pub fn sha256(&self) -> String {
        hex(&sha2::Sha256::digest(&*self.data))
    }
    pub fn git_sha1(&self) -> String {
        let mut h = sha1::Sha1::new();
        h.update(format!("blob {}\0", self.data.len()).as_bytes());
        h.update(&*self.data);
        hex(&h.finalize())
    }
    /// The hub's ETag: the LFS SHA-256, else the git blob id.
    pub fn etag(&self) -> String {
        if self.lfs {
            self.sha256()
        } else {
            self.git_sha1()
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub struct Repo {
    pub id: String,
    pub commit: String,
    /// Branches and tags that name the commit.
    pub refs: Vec<String>,
    pub files: Vec<File>,
}

impl Repo {
    /// A repository holding every file under `dir` (safetensors and the
    /// tokenizer as LFS files, as on the hub), plus a README the client must
    /// not fetch.
    pub fn from_dir(id: &str, dir: &Path) -> Repo {
        let mut files = Vec::new();
        collect(dir, dir, &mut files);
        files.push(File {
            path: "README.md".into(),
            data: Arc::new(b"# tiny\n".to_vec()),
            lfs: false,
        });
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let mut h = sha1::Sha1::new();
        for f in &files {
            h.update(f.path.as_bytes());
            h.update(&*f.data);
        }
        Repo {
            id: id.into(),
            commit: hex(&h.finalize()),
            refs: vec!["main".into()],
            files,
        }
    }
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<File>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect(root, &p, out);
        } else {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let lfs = rel.ends_with(".safetensors") || rel.ends_with(".tiktoken");
            out.push(File {
                path: rel,
                data: Arc::new(std::fs::read(&p).unwrap()),
                lfs,
            });
        }
    }
}

#[derive(Default)]
pub struct Faults {
    /// Path → (bytes, times): the next `times` bodies of that file are cut
    /// off after `bytes` bytes.
    pub drop_after: HashMap<String, (usize, usize)>,
    /// Paths served with one byte changed (same length).
    pub corrupt: HashSet<String>,
}

pub struct Hub {
    pub endpoint: String,
    /// "METHOD path range" of every request, in order.
    pub log: Arc<Mutex<Vec<String>>>,
    pub faults: Arc<Mutex<Faults>>,
    stop: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
}

impl Hub {
    pub fn start(repos: Vec<Repo>) -> Hub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let repos = Arc::new(repos);
        let log = Arc::new(Mutex::new(Vec::new()));
        let faults = Arc::new(Mutex::new(Faults::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, f, s) = (log.clone(), faults.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (r, l, f) = (repos.clone(), l.clone(), f.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &r, &l, &f);
                });
            }
        });
        Hub {
            endpoint: format!("http://{addr}"),
            log,
            faults,
            stop,
            addr,
        }
    }

    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn serve(
    conn: TcpStream,
    repos: &[Repo],
    log: &Mutex<Vec<String>>,
    faults: &Mutex<Faults>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut range_start: Option<usize> = None;
    let mut range_end: Option<usize> = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        let (k, v) = h.split_once(':').unwrap_or(("", ""));
        if k.eq_ignore_ascii_case("range") {
            let v = v.trim().trim_start_matches("bytes=");
            let (a, b) = v.split_once('-').unwrap_or((v, ""));
            range_start = a.parse().ok();
            range_end = b.parse().ok();
        }
    }
    let range_txt = match (range_start, range_end) {
        (Some(a), Some(b)) => format!(" bytes={a}-{b}"),
        (Some(a), None) => format!(" bytes={a}-"),
        _ => String::new(),
    };
    log.lock()
        .unwrap()
        .push(format!("{method} {target}{range_txt}"));
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let path = percent_decode(path);

    // Newer Python clients list with /api/models/{org}/{name}/tree/{rev}.
    if let Some(rest) = path
        .strip_prefix("/api/models/")
        .filter(|r| r.contains("/tree/"))
    {
        let (id, rev) = rest.split_once("/tree/").unwrap();
        let rev = rev.split('/').next().unwrap_or("");
        let Some(repo) = repos.iter().find(|r| r.id == id) else {
            return reply(&mut out, 401, &[("X-Error-Code", "RepoNotFound")], b"{}");
        };
        if !repo.refs.iter().any(|r| r == rev) && rev != repo.commit {
            return reply(
                &mut out,
                404,
                &[("X-Error-Code", "RevisionNotFound")],
                b"{}",
            );
        }
        let entries: Vec<serde_json::Value> = repo
            .files
            .iter()
            .map(|f| {
                let mut e = serde_json::json!({"type": "file", "oid": f.git_sha1(),
                                               "size": f.data.len(), "path": f.path});
                if f.lfs {
                    e["lfs"] = serde_json::json!({"oid": f.sha256(), "size": f.data.len(), "pointerSize": 134});
                }
                e
            })
            .collect();
        let body = serde_json::Value::Array(entries).to_string();
        return reply(
            &mut out,
            200,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
    }

    // Listing: /api/models/{org}/{name}/revision/{rev}
    if let Some(rest) = path.strip_prefix("/api/models/") {
        let Some((id, rev)) = rest.split_once("/revision/") else {
            return reply(&mut out, 404, &[("X-Error-Code", "EntryNotFound")], b"{}");
        };
        let Some(repo) = repos.iter().find(|r| r.id == id) else {
            return reply(
                &mut out,
                401,
                &[("X-Error-Code", "RepoNotFound")],
                br#"{"error":"Repository not found"}"#,
            );
        };
        if !repo.refs.iter().any(|r| r == rev) && rev != repo.commit {
            return reply(
                &mut out,
                404,
                &[("X-Error-Code", "RevisionNotFound")],
                br#"{"error":"Invalid rev id"}"#,
            );
        }
        let blobs = query.contains("blobs=true");
        let siblings: Vec<serde_json::Value> = repo
            .files
            .iter()
            .map(|f| {
                let mut s = serde_json::json!({"rfilename": f.path});
                if blobs {
                    s["size"] = f.data.len().into();
                    s["blobId"] = f.git_sha1().into();
                    if f.lfs {
                        s["lfs"] = serde_json::json!({"sha256": f.sha256(), "size": f.data.len(), "pointerSize": 134});
                    }
                }
                s
            })
            .collect();
        let body = serde_json::json!({"id": repo.id, "sha": repo.commit, "siblings": siblings});
        return reply(
            &mut out,
            200,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        );
    }

    // Files: /{org}/{name}/resolve/{rev}/{path}
    let Some((id, rest)) = path.trim_start_matches('/').split_once("/resolve/") else {
        return reply(&mut out, 404, &[], b"not found");
    };
    let Some(repo) = repos.iter().find(|r| r.id == id) else {
        return reply(&mut out, 401, &[("X-Error-Code", "RepoNotFound")], b"");
    };
    let Some((rev, file)) = rest.split_once('/') else {
        return reply(&mut out, 404, &[("X-Error-Code", "EntryNotFound")], b"");
    };
    if !repo.refs.iter().any(|r| r == rev) && rev != repo.commit {
        return reply(&mut out, 404, &[("X-Error-Code", "RevisionNotFound")], b"");
    }
    let Some(f) = repo.files.iter().find(|f| f.path == file) else {
        return reply(&mut out, 404, &[("X-Error-Code", "EntryNotFound")], b"");
    };
    let mut data: Vec<u8> = (*f.data).clone();
    if faults.lock().unwrap().corrupt.contains(file) {
        let mid = data.len() / 2;
        data[mid] ^= 0x55;
    }
    let total = data.len();
    let start = range_start.unwrap_or(0).min(total);
    let end = range_end.map_or(total, |e| (e + 1).min(total));
    if range_start.is_some() && start >= total && total > 0 {
        return reply(
            &mut out,
            416,
            &[("Content-Range", &format!("bytes */{total}"))],
            b"",
        );
    }
    let body = &data[start..end];
    let etag = format!("\"{}\"", f.etag());
    let content_range = format!("bytes {start}-{}/{total}", end.saturating_sub(1));
    let size = total.to_string();
    let mut headers: Vec<(&str, &str)> = vec![
        ("X-Repo-Commit", &repo.commit),
        ("ETag", &etag),
        ("Accept-Ranges", "bytes"),
    ];
    if f.lfs {
        headers.push(("X-Linked-Etag", &etag));
        headers.push(("X-Linked-Size", &size));
    }
    let status = if range_start.is_some() {
        headers.push(("Content-Range", &content_range));
        206
    } else {
        200
    };
    if method == "HEAD" {
        let len = body.len().to_string();
        headers.push(("Content-Length", &len));
        return head(&mut out, status, &headers);
    }
    // A cut-off body: all headers (the full Content-Length), part of the data.
    let cut = {
        let mut fl = faults.lock().unwrap();
        match fl.drop_after.get_mut(file) {
            Some((n, times)) if body.len() > 1 && *times > 0 => {
                *times -= 1;
                Some(*n)
            }
            _ => None,
        }
    };
    match cut {
        Some(n) => {
            let len = body.len().to_string();
            headers.push(("Content-Length", &len));
            head(&mut out, status, &headers)?;
            out.write_all(&body[..n.min(body.len())])?;
            out.flush()?;
            let _ = out.shutdown(std::net::Shutdown::Both);
            Ok(())
        }
        None => reply(&mut out, status, &headers, body),
    }
}

fn head(out: &mut TcpStream, status: u16, headers: &[(&str, &str)]) -> std::io::Result<()> {
    let mut h = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    out.write_all(h.as_bytes())
}

fn reply(
    out: &mut TcpStream,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut hs: Vec<(&str, &str)> = headers
        .iter()
        .copied()
        .filter(|(k, _)| *k != "Content-Length")
        .collect();
    let len = body.len().to_string();
    hs.push(("Content-Length", &len));
    head(out, status, &hs)?;
    out.write_all(body)?;
    out.flush()?;
    // Drain nothing more: one request per connection.
    let mut sink = [0u8; 1];
    let _ = out.set_read_timeout(Some(Duration::from_millis(1)));
    let _ = out.read(&mut sink);
    Ok(())
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
