//! Issue 23 over the `/v1` HTTP API: a document's `metadata` at
//! `POST /v1/documents`, shown by `GET /v1/documents[/{id}]`, and the JSON
//! `where` object on `GET /v1/documents`, `POST /v1/search`, `POST /v1/ask`
//! and chat completions; bad metadata and bad filters are 400s with a JSON
//! body naming them, a filter on an unknown key selects nothing and says
//! so, and the store checks clean afterwards.

mod common;
mod serve_support;

use serde_json::{json, Value};
use serve_support::{get, post_json, Server};

fn ids(v: &Value, list: &str, field: &str) -> Vec<u64> {
    v[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d[field].as_u64().unwrap())
        .collect()
}

#[test]
fn metadata_and_where_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let s = Server::start(&store, &[]);
    let docs = [
        ("a.txt", json!({"kind": "code", "year": 1999})),
        ("b.txt", json!({"kind": "license", "year": 2005})),
        (
            "c.txt",
            json!({"kind": "notes", "year": 2001, "draft": true}),
        ),
    ];
    for (name, meta) in &docs {
        let r = post_json(
            &s.addr,
            "/v1/documents",
            &json!({"name": name, "text": format!("The lantern of {name}."), "metadata": meta}),
        );
        assert_eq!(r.status, 202, "{}", r.text());
        let job = s.wait_job(r.json()["id"].as_u64().unwrap());
        assert_eq!(job["state"], "done", "{job}");
    }
    // The same text with other metadata: only the metadata changes.
    let r = post_json(
        &s.addr,
        "/v1/documents",
        &json!({"name": "c.txt", "text": "The lantern of c.txt.", "metadata": {"kind": "notes", "year": 2002}}),
    );
    let job = s.wait_job(r.json()["id"].as_u64().unwrap());
    assert_eq!(job["result"]["action"], "metadata_updated", "{job}");

    let all = get(&s.addr, "/v1/documents").json();
    assert_eq!(all["data"][0]["metadata"], docs[0].1);
    assert_eq!(
        all["data"][2]["metadata"],
        json!({"kind": "notes", "year": 2002})
    );
    assert_eq!(
        get(&s.addr, "/v1/documents/1").json()["metadata"],
        docs[1].1
    );

    // GET /v1/documents?where=<URL-encoded JSON>
    let enc = |v: &Value| {
        v.to_string()
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    let list = |w: Value| get(&s.addr, &format!("/v1/documents?where={}", enc(&w)));
    assert_eq!(
        ids(&list(json!({"year": {">": 2000}})).json(), "data", "id"),
        [1, 2]
    );
    assert_eq!(
        ids(
            &list(json!({"kind": {"in": ["code", "notes"]}})).json(),
            "data",
            "id"
        ),
        [0, 2]
    );
    assert_eq!(
        ids(
            &list(json!({"kind": {"!=": "code"}, "year": {"<": 2006}})).json(),
            "data",
            "id"
        ),
        [1, 2]
    );
    let unknown = list(json!({"team": "search"})).json();
    assert_eq!(unknown["data"], json!([]));
    assert!(
        unknown["warning"].as_str().unwrap().contains("`team`"),
        "{unknown}"
    );

    let search = |w: Value| {
        post_json(
            &s.addr,
            "/v1/search",
            &json!({"query": "lantern", "where": w}),
        )
    };
    assert_eq!(
        ids(&search(json!({"kind": "license"})).json(), "hits", "doc"),
        [1]
    );
    let r = search(json!({"team": "x"})).json();
    assert_eq!(r["hits"], json!([]));
    assert!(r["warning"].as_str().unwrap().contains("`team`"));

    let ask = |w: Value| {
        post_json(
            &s.addr,
            "/v1/ask",
            &json!({"question": "Where is the lantern?", "max_new_tokens": 2, "where": w}),
        )
    };
    let r = ask(json!({"year": {">=": 2002, "<": 2005}}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(ids(&r.json(), "chunks", "doc"), [2]);
    let r = ask(json!({"team": "x"}));
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no document has the metadata key `team`"));
    let chat = post_json(
        &s.addr,
        "/v1/chat/completions",
        &json!({"model": "c3", "max_tokens": 2,
                "messages": [{"role": "user", "content": "Where is the lantern?"}],
                "c3": {"where": {"kind": "code"}}}),
    );
    assert_eq!(chat.status, 200, "{}", chat.text());

    // Bad input: 400 with a JSON body naming it; nothing stored.
    for (path, body, needle) in [
        (
            "/v1/documents",
            json!({"name": "d.txt", "text": "x", "metadata": {"k": [1]}}),
            "metadata key `k`",
        ),
        (
            "/v1/documents",
            json!({"name": "d.txt", "text": "x", "metadata": "kind=code"}),
            "JSON object",
        ),
        (
            "/v1/search",
            json!({"query": "x", "where": {"year": {">": "old"}}}),
            "compares numbers",
        ),
        (
            "/v1/ask",
            json!({"question": "x", "where": ["kind"]}),
            "`where` is a JSON object",
        ),
        (
            "/v1/search",
            json!({"query": "x", "where": {"bad key": 1}}),
            "filter",
        ),
    ] {
        let r = post_json(&s.addr, path, &body);
        assert_eq!(r.status, 400, "{path} {body}: {}", r.text());
        let m = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(m.contains(needle), "{path} {body}: {m}");
    }
    let r = get(&s.addr, "/v1/documents?where=%7Bnot%20json");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("`where` is not JSON"));
    assert_eq!(
        get(&s.addr, "/v1/documents").json()["data"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let check = get(&s.addr, "/v1/check");
    assert_eq!(check.status, 200, "{}", check.text());
    assert_eq!(check.json()["ok"], true, "{}", check.text());
    assert!(s.terminate().success());
}
