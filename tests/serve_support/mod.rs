//! A minimal HTTP/1.1 client over `std::net::TcpStream` (Content-Length and
//! chunked bodies, server-sent events) and a handle on a running `c3 serve`
//! child process, for `tests/serve.rs`. Loopback only, every read bounded
//! by a timeout.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long one read may block before a test fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text()))
    }

    /// The error body every error answer must have; returns its type.
    pub fn error_type(&self) -> String {
        let v = self.json();
        let e = &v["error"];
        assert_eq!(e["code"], self.status, "{v}");
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        e["type"].as_str().expect("error.type").to_string()
    }
}

/// A request whose answer is never read: the connection is returned, for
/// the caller to drop (a client that leaves).
pub fn send_only(addr: &str, method: &str, path: &str, body: &serde_json::Value) -> TcpStream {
    let mut s = connect(addr);
    let body = body.to_string();
    send_request(
        &mut s,
        addr,
        method,
        path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .expect("send");
    s
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

fn send_request(
    s: &mut TcpStream,
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    s.flush()
}

/// Status line and headers.
fn read_head(r: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).expect("header line");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    (status, headers)
}

/// A body: chunked transfer coding undone, or up to EOF.
pub struct BodyReader<R> {
    inner: R,
    chunked: bool,
    left: usize,
    done: bool,
}

impl<R: BufRead> Read for BodyReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !self.chunked {
            return self.inner.read(buf);
        }
        if self.done {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            self.inner.read_line(&mut line)?;
            if line.trim().is_empty() {
                // CRLF after the previous chunk.
                line.clear();
                self.inner.read_line(&mut line)?;
            }
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("chunk {line:?}"))
                })?;
            if size == 0 {
                self.done = true;
                return Ok(0);
            }
            self.left = size;
        }
        let n = buf.len().min(self.left);
        let got = self.inner.read(&mut buf[..n])?;
        if got == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.left -= got;
        Ok(got)
    }
}

pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut s = connect(addr);
    // The server may answer (413) before reading a large body: a failed
    // write is fine when an answer follows.
    let _ = send_request(&mut s, addr, method, path, headers, body);
    read_response(s)
}

/// Sends `bytes` as they are (a request head and body written by the
/// caller, e.g. with a foreign `Host`) and reads the answer.
pub fn raw(addr: &str, bytes: &[u8]) -> Resp {
    let mut s = connect(addr);
    let _ = s.write_all(bytes).and_then(|_| s.flush());
    read_response(s)
}

/// A connection to the server, for tests that write slowly or not at all.
pub fn open_conn(addr: &str) -> TcpStream {
    connect(addr)
}

fn read_response(s: TcpStream) -> Resp {
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r);
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let mut body = Vec::new();
    match (chunked, len) {
        (false, Some(n)) => {
            body.resize(n, 0);
            r.read_exact(&mut body).expect("body");
        }
        _ => {
            let mut b = BodyReader {
                inner: r,
                chunked,
                left: 0,
                done: false,
            };
            b.read_to_end(&mut body).expect("body");
        }
    }
    Resp {
        status,
        headers,
        body,
    }
}

pub fn get(addr: &str, path: &str) -> Resp {
    request(addr, "GET", path, &[], b"")
}

pub fn post_json(addr: &str, path: &str, v: &serde_json::Value) -> Resp {
    request(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        v.to_string().as_bytes(),
    )
}

pub fn delete(addr: &str, path: &str) -> Resp {
    request(addr, "DELETE", path, &[], b"")
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

/// A response read event by event.
pub struct SseStream {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    lines: BufReader<BodyReader<BufReader<TcpStream>>>,
    /// `:` comment lines seen (keep-alives).
    pub comments: usize,
}

impl SseStream {
    pub fn open(addr: &str, path: &str, body: &serde_json::Value) -> SseStream {
        let mut s = connect(addr);
        send_request(
            &mut s,
            addr,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
        .expect("send");
        let mut r = BufReader::new(s);
        let (status, headers) = read_head(&mut r);
        let chunked = headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
        });
        SseStream {
            status,
            headers,
            lines: BufReader::new(BodyReader {
                inner: r,
                chunked,
                left: 0,
                done: false,
            }),
            comments: 0,
        }
    }

    /// The next event, or `None` at the end of the stream.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        let mut ev = SseEvent {
            event: "message".into(),
            data: String::new(),
        };
        let mut any = false;
        loop {
            let mut line = String::new();
            let n = self.lines.read_line(&mut line).expect("event stream");
            if n == 0 {
                return any.then_some(ev);
            }
            let l = line.trim_end_matches(['\r', '\n']);
            if l.is_empty() {
                if any {
                    return Some(ev);
                }
                continue;
            }
            if l.starts_with(':') {
                self.comments += 1;
                continue;
            }
            let (field, value) = l.split_once(':').unwrap_or((l, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            any = true;
            match field {
                "event" => ev.event = value.to_string(),
                "data" => {
                    if !ev.data.is_empty() {
                        ev.data.push('\n');
                    }
                    ev.data.push_str(value);
                }
                _ => {}
            }
        }
    }

    /// Every remaining event.
    pub fn all(&mut self) -> Vec<SseEvent> {
        let mut v = Vec::new();
        while let Some(e) = self.next_event() {
            v.push(e);
        }
        v
    }
}

/// A running `c3 serve`.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub store: PathBuf,
    pub log: PathBuf,
}

pub fn c3_bin() -> &'static str {
    env!("CARGO_BIN_EXE_c3")
}

pub fn model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden/c3-tiny")
}

impl Server {
    /// Starts `c3 --store STORE --model tiny serve --addr 127.0.0.1:0 --json
    /// EXTRA...` and waits (bounded) until `/health` says ok.
    pub fn start(store: &Path, extra: &[&str]) -> Server {
        Self::start_env(store, extra, &[])
    }

    pub fn start_env(store: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_cmd(
            store,
            &["serve", "--addr", "127.0.0.1:0", "--json"],
            extra,
            env,
        )
    }

    /// Starts `c3 --store STORE --model tiny COMMAND... EXTRA...` (a command
    /// that prints its address as JSON first: `serve --json`, `mcp --http
    /// ADDR --json`) and waits until `/health` says ok.
    pub fn start_cmd(
        store: &Path,
        command: &[&str],
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let log = store.with_extension(format!(
            "serve-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let mut cmd = Command::new(c3_bin());
        cmd.arg("--store")
            .arg(store)
            .arg("--model")
            .arg(model())
            .args(command)
            .args(extra)
            .env_remove("C3_MODEL")
            .env_remove("C3_API_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn c3 serve");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).expect("first stdout line");
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| {
            let _ = child.kill();
            panic!(
                "first line {line:?} is not JSON ({e}); log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        let addr = v["addr"].as_str().expect("addr").to_string();
        assert!(addr.starts_with("127.0.0.1:"), "{addr}");
        let s = Server {
            child,
            addr,
            store: store.to_path_buf(),
            log,
        };
        s.wait_healthy();
        s
    }

    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let r = get(&self.addr, "/health");
            if r.status == 200 {
                assert_eq!(r.json()["status"], "ok");
                return;
            }
            assert_eq!(r.status, 503, "{}", r.text());
            assert_eq!(r.error_type(), "loading");
            assert!(r.header("retry-after").is_some());
            assert!(
                Instant::now() < deadline,
                "not healthy in time: {}",
                r.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit status (bounded wait).
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -TERM {pid}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "server did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The server's resident memory in KiB (Linux), if readable.
    pub fn rss_kib(&self) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// Polls an ingest job until it ends (bounded); returns its last state.
    pub fn wait_job(&self, id: u64) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let r = get(&self.addr, &format!("/v1/jobs/{id}"));
            assert_eq!(r.status, 200, "{}", r.text());
            let v = r.json();
            let st = v["state"].as_str().unwrap().to_string();
            if st != "queued" && st != "running" {
                return v;
            }
            assert!(Instant::now() < deadline, "job {id} did not end: {v}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Adds a document and waits for its job; returns the finished job.
    pub fn add(&self, name: &str, text: &str) -> serde_json::Value {
        let r = post_json(
            &self.addr,
            "/v1/documents",
            &serde_json::json!({"name": name, "text": text}),
        );
        assert_eq!(r.status, 202, "{}", r.text());
        let id = r.json()["id"].as_u64().unwrap();
        self.wait_job(id)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
