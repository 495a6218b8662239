//! What a web page must not be able to do with the server: the browser
//! guard in front of every route.
//!
//! A page the user opens can send requests to `127.0.0.1` without asking
//! (a "simple" cross-origin POST needs no preflight), and through DNS
//! rebinding (its own name resolving to 127.0.0.1) even read the answers.
//! Three rules close that, checked before the key and the routes:
//!
//! - **Host** (only without a key: a rebinding page cannot know the key):
//!   a loopback name (`localhost`, `*.localhost`), a loopback address, the
//!   bound address (any IP literal when bound to `0.0.0.0` / `::`), or a
//!   name given with `--allow-host`. A rebinding page always sends its own
//!   DNS name, never an IP literal. A request without `Host` passes (no
//!   browser omits it).
//! - **Origin**: a request that carries one is refused unless it is a
//!   `--cors-origin` (c3 serves no pages, so no origin is its own).
//! - **Content-Type**: a body (and every POST, PUT, PATCH) must be
//!   `application/json`, which a page cannot send cross-origin without a
//!   preflight; the one exception is raw text to `POST /v1/documents`
//!   (`text/*`) with the header [`RAW_TEXT_HEADER`], which a page cannot
//!   add without a preflight either.

use std::net::IpAddr;

use axum::http::{header, HeaderMap, Method, StatusCode};

use super::error::ApiError;

/// The header that marks a raw-text ingest as not coming from a browser
/// form (`X-C3-Raw-Text: 1`).
pub const RAW_TEXT_HEADER: &str = "x-c3-raw-text";

/// What the guard lets through.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// A key protects the routes: the Host check is left out.
    pub keyed: bool,
    /// The addresses the server listens on.
    pub bound: Vec<IpAddr>,
    /// `--allow-host` names, lower case.
    pub hosts: Vec<String>,
    /// `--cors-origin` values, lower case, without a trailing `/`.
    pub origins: Vec<String>,
}

impl Policy {
    pub fn new(keyed: bool, bound: Vec<IpAddr>, hosts: &[String], origins: &[String]) -> Self {
        Policy {
            keyed,
            bound,
            hosts: hosts.iter().map(|h| normal_host(h).to_string()).collect(),
            origins: origins.iter().map(|o| normal_origin(o)).collect(),
        }
    }

    /// Checks one request; the refusal names the header and the way out.
    pub fn check(&self, method: &Method, path: &str, headers: &HeaderMap) -> Result<(), ApiError> {
        if !self.keyed {
            self.check_host(headers)?;
        }
        self.check_origin(headers)?;
        check_content_type(method, path, headers)
    }

    fn check_host(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(raw) = headers.get(header::HOST) else {
            return Ok(());
        };
        let host = raw.to_str().ok().map(host_name);
        if host.is_some_and(|h| self.host_allowed(h)) {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_host",
            format!(
                "Host `{}` is not this server's name: without an API key only a loopback name or \
                 the listening address is served (a guard against DNS rebinding); pass \
                 --allow-host NAME to serve under another name",
                String::from_utf8_lossy(raw.as_bytes())
            ),
        ))
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = normal_host(host);
        if host == "localhost" || host.ends_with(".localhost") {
            return true;
        }
        if self.hosts.contains(&host) {
            return true;
        }
        let Ok(ip) = host.parse::<IpAddr>() else {
            return false;
        };
        ip.is_loopback()
            || self
                .bound
                .iter()
                .any(|b| *b == ip || (b.is_unspecified() && b.is_ipv4() == ip.is_ipv4()))
    }

    fn check_origin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(raw) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = raw.to_str().ok().map(normal_origin);
        if origin.is_some_and(|o| self.origins.contains(&o)) {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            format!(
                "Origin `{}` may not use this server: pages from other sites are refused (pass \
                 --cors-origin ORIGIN to allow one)",
                String::from_utf8_lossy(raw.as_bytes())
            ),
        ))
    }
}

/// `host[:port]` or `[v6][:port]` → the name or address alone.
fn host_name(h: &str) -> &str {
    let h = h.trim();
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match h.rsplit_once(':') {
        // One colon: a port. More: a bare IPv6 address.
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => h,
    }
}

/// Lower case, without a trailing dot (`LOCALHOST.` is `localhost`).
fn normal_host(h: &str) -> String {
    h.trim().trim_end_matches('.').to_ascii_lowercase()
}

fn normal_origin(o: &str) -> String {
    o.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// The media type of a `Content-Type` value, lower case, without parameters.
fn media_type(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

fn has_body(headers: &HeaderMap) -> bool {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return true;
    }
    match headers.get(header::CONTENT_LENGTH) {
        None => false,
        Some(v) => v.to_str().map_or(true, |v| v.trim() != "0"),
    }
}

fn check_content_type(method: &Method, path: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    let writes = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
    if !writes && !has_body(headers) {
        return Ok(());
    }
    let media = media_type(headers);
    match media.as_deref() {
        Some("application/json") => return Ok(()),
        Some(t)
            if t.starts_with("text/")
                && *method == Method::POST
                && path == "/v1/documents"
                && headers.contains_key(RAW_TEXT_HEADER) =>
        {
            return Ok(())
        }
        _ => {}
    }
    let found = media.map_or_else(|| "none".to_string(), |m| format!("`{m}`"));
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!(
            "{method} {path} takes `Content-Type: application/json` (found {found}); raw text goes \
             to POST /v1/documents?name=NAME as text/plain with the header `X-C3-Raw-Text: 1`"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn keyless() -> Policy {
        Policy::new(
            false,
            vec!["127.0.0.1".parse().unwrap()],
            &["c3.internal".into()],
            &["http://localhost:3000/".into()],
        )
    }

    #[test]
    fn hosts_a_rebinding_page_would_send_are_refused() {
        let p = keyless();
        let get = |host: &str| p.check(&Method::GET, "/v1/documents", &headers(&[("host", host)]));
        for ok in [
            "127.0.0.1:8377",
            "localhost:8377",
            "LOCALHOST.",
            "app.localhost",
            "[::1]:8377",
            "127.0.0.2",
            "c3.internal:80",
        ] {
            assert!(get(ok).is_ok(), "{ok}");
        }
        for bad in [
            "evil.example:8377",
            "10.0.0.5:8377",
            "localhost.evil.example",
            "",
        ] {
            let e = get(bad).unwrap_err();
            assert_eq!(e.status, StatusCode::FORBIDDEN, "{bad}");
            assert_eq!(e.kind, "forbidden_host");
        }
        // No Host at all: not a browser.
        assert!(p.check(&Method::GET, "/", &HeaderMap::new()).is_ok());
        // With a key the Host is the proxy's business.
        let keyed = Policy { keyed: true, ..p };
        assert!(keyed
            .check(&Method::GET, "/", &headers(&[("host", "evil.example")]))
            .is_ok());
        // Bound to every address: any IP literal, still no foreign name.
        let any = Policy::new(false, vec!["0.0.0.0".parse().unwrap()], &[], &[]);
        let h = |host| headers(&[("host", host)]);
        assert!(any.check(&Method::GET, "/", &h("192.168.1.7:8377")).is_ok());
        assert!(any.check(&Method::GET, "/", &h("evil.example")).is_err());
    }

    #[test]
    fn only_listed_origins_pass() {
        let p = keyless();
        let with = |o: &str| {
            p.check(
                &Method::GET,
                "/v1/stats",
                &headers(&[("host", "127.0.0.1"), ("origin", o)]),
            )
        };
        assert!(with("http://localhost:3000").is_ok());
        for bad in ["http://evil.example", "null", "http://127.0.0.1:8377"] {
            assert_eq!(with(bad).unwrap_err().kind, "forbidden_origin", "{bad}");
        }
    }

    #[test]
    fn bodies_must_be_json_except_marked_raw_text() {
        let p = keyless();
        let post = |path: &str, pairs: &[(&'static str, &str)]| {
            let mut h = headers(pairs);
            h.insert("host", HeaderValue::from_static("127.0.0.1"));
            h.insert("content-length", HeaderValue::from_static("5"));
            p.check(&Method::POST, path, &h)
        };
        assert!(post("/v1/ask", &[("content-type", "application/json")]).is_ok());
        assert!(post(
            "/v1/ask",
            &[("content-type", "Application/JSON; charset=utf-8")]
        )
        .is_ok());
        for ct in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ] {
            let e = post("/v1/ask", &[("content-type", ct)]).unwrap_err();
            assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct}");
        }
        assert!(post("/v1/ask", &[]).is_err());
        // Raw text: only to /v1/documents, only with the custom header.
        assert!(post("/v1/documents", &[("content-type", "text/plain")]).is_err());
        assert!(post(
            "/v1/documents",
            &[("content-type", "text/plain"), (RAW_TEXT_HEADER, "1")]
        )
        .is_ok());
        assert!(post(
            "/v1/ask",
            &[("content-type", "text/plain"), (RAW_TEXT_HEADER, "1")]
        )
        .is_err());
        // A GET or DELETE without a body needs no type.
        assert!(p
            .check(
                &Method::DELETE,
                "/v1/jobs/1",
                &headers(&[("host", "127.0.0.1")])
            )
            .is_ok());
    }
}
