"""An MCP client for tests/mcp_python.rs, on the official Python `mcp` SDK.

    python client.py stdio CONFIG.json   launches `c3 mcp` over stdio
    python client.py http CONFIG.json    talks to a running server's /mcp

CONFIG holds: c3 (the binary), store, model, roots (the --allow-path
folders), outside (a folder outside them), link (a symlink in a root that
points outside), big (a folder in a root for the cancellation case), and
for http: url, key. The script checks what it can on its own (tool
errors, the session staying up) and prints one JSON object on stdout with
what the Rust side compares against `c3 ask --json` and `c3 show`.
"""

import json
import sys
from contextlib import asynccontextmanager

import anyio
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

TOOLS = {"search", "ask", "expand", "add", "add_path", "sync", "list", "delete", "stats"}


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def structured(result, what):
    check(not result.is_error, f"{what}: tool error: {text(result)}")
    check(isinstance(result.structured_content, dict), f"{what}: no structured content")
    return result.structured_content


def text(result):
    return " ".join(getattr(c, "text", "") for c in result.content)


async def tool_error(session, name, args, needle):
    """Calls a tool that must fail with a message containing `needle`."""
    r = await session.call_tool(name, args)
    check(r.is_error, f"{name} {args}: expected a tool error, got {r.structured_content}")
    msg = text(r)
    check(needle in msg, f"{name} {args}: error {msg!r} does not say {needle!r}")
    return msg


@asynccontextmanager
async def stdio_session(cfg):
    args = ["--store", cfg["store"], "--model", cfg["model"], "mcp",
            "--chunk-tokens", "60", "--batch", "1"]
    for r in cfg["roots"]:
        args += ["--allow-path", r]
    params = StdioServerParameters(command=cfg["c3"], args=args, env={"SOURCE_DATE_EPOCH": "1700000000"})
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            yield session


@asynccontextmanager
async def http_session(cfg):
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {cfg['key']}"} if cfg.get("key") else {}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(120.0)) as client:
        async with streamable_http_client(cfg["url"], http_client=client) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


async def common(session, cfg, out):
    """What both transports must do alike."""
    tools = await session.list_tools()
    names = {t.name for t in tools.tools}
    check(names == TOOLS, f"tools: {sorted(names)}")
    for t in tools.tools:
        check(t.input_schema.get("type") == "object", f"{t.name}: schema {t.input_schema}")
    out["schemas"] = {t.name: t.input_schema for t in tools.tools}

    s = structured(await session.call_tool("search", {"query": "lantern", "top_k": 3}), "search")
    check(s["hits"], "search found nothing")
    for h in s["hits"]:
        check({"doc", "source", "chunk", "score", "snippet"} <= set(h), f"hit {h}")
    out["search"] = s
    out["search_where"] = structured(
        await session.call_tool("search", {"query": "lantern", "where": {"kind": "license"}}),
        "search where")

    out["ask"] = structured(await session.call_tool(
        "ask", {"question": "Where is the lantern?", "top_k": 2, "max_new_tokens": 6}), "ask")
    check(isinstance(out["ask"]["answer"], str), "ask: no answer")
    out["ask_where"] = structured(await session.call_tool(
        "ask", {"question": "Where is the lantern?", "where": {"kind": "license"},
                "max_new_tokens": 4}), "ask where")

    out["expand"] = structured(await session.call_tool("expand", {"doc": 0, "chunk": 0}), "expand")
    by_name = structured(await session.call_tool(
        "expand", {"doc": out["expand"]["source"], "chunk": 0}), "expand by name")
    check(by_name["text"] == out["expand"]["text"], "expand by name differs from by id")
    out["reconstruct"] = structured(await session.call_tool(
        "expand", {"doc": 0, "chunk": 0, "reconstruct": True, "max_new_tokens": 8}), "reconstruct")

    out["list"] = structured(await session.call_tool("list", {}), "list")
    out["list_where"] = structured(
        await session.call_tool("list", {"where": {"year": {">": 2000}}}), "list where")
    out["stats"] = structured(await session.call_tool("stats", {}), "stats")

    res = await session.list_resources()
    out["resources"] = sorted(r.uri for r in res.resources)
    doc = await session.read_resource("c3://doc/0")
    out["resource_doc"] = doc.contents[0].text
    chunk = await session.read_resource("c3://doc/0/chunk/0")
    out["resource_chunk"] = chunk.contents[0].text
    templates = await session.list_resource_templates()
    out["templates"] = sorted(t.uri_template for t in templates.resource_templates)

    # Bad input: each a tool error naming what was wrong; the session goes on.
    errors = {}
    errors["unknown_tool"] = await tool_error(session, "frobnicate", {}, "unknown tool `frobnicate`")
    errors["wrong_type"] = await tool_error(session, "search", {"query": 5}, "argument `query`")
    errors["wrong_type_top_k"] = await tool_error(session, "search", {"query": "x", "top_k": "many"}, "argument `top_k`")
    errors["unknown_argument"] = await tool_error(session, "stats", {"verbose": True}, "unknown field `verbose`")
    errors["empty_question"] = await tool_error(session, "ask", {"question": "  "}, "the question is empty")
    errors["unknown_doc"] = await tool_error(session, "expand", {"doc": 999, "chunk": 0}, "no document")
    errors["unknown_name"] = await tool_error(session, "delete", {"doc": "nope.txt"}, "no document `nope.txt`")
    errors["unknown_chunk"] = await tool_error(session, "expand", {"doc": 0, "chunk": 99}, "there is no chunk 99")
    errors["bad_filter"] = await tool_error(session, "list", {"where": {"year": {"~": 1}}}, "unknown operator `~`")
    errors["unknown_key"] = await tool_error(
        session, "ask", {"question": "lantern?", "where": {"team": "search"}},
        "no document has the metadata key `team`")
    errors["bad_metadata"] = await tool_error(
        session, "add", {"name": "x.txt", "text": "x", "metadata": {"k": [1]}}, "metadata key `k`")
    errors["parent_dir"] = await tool_error(session, "add_path", {"path": "../outside"}, "`..` is not allowed")
    errors["outside"] = await tool_error(session, "add_path", {"path": cfg["outside"]}, "outside the allowed roots")
    errors["symlink_out"] = await tool_error(session, "add_path", {"path": cfg["link"]}, "symlinks are resolved")
    errors["max_new_tokens"] = await tool_error(
        session, "ask", {"question": "hi", "max_new_tokens": 10**9}, "--max-new-tokens")
    try:
        await session.read_resource("c3://doc/999")
        raise AssertionError("reading an unknown document succeeded")
    except AssertionError:
        raise
    except Exception as e:  # a protocol error (resources have no tool errors)
        errors["unknown_resource"] = str(e)
        check("no document 999" in str(e), f"unknown resource: {e}")
    out["errors"] = errors
    # Still alive after all of that.
    structured(await session.call_tool("stats", {}), "stats after errors")


async def stdio_only(session, cfg, out):
    """Writes: add (with progress), add_path, sync, delete, cancellation."""
    progress = []

    async def on_progress(p, total, message):
        progress.append([p, total, message])

    added = structured(await session.call_tool(
        "add", {"name": "notes.md", "text": "The lantern is on the shelf.\n" * 80,
                "metadata": {"kind": "notes", "year": 2024}},
        progress_callback=on_progress), "add")
    check(added["state"] == "done", f"add: {added}")
    check(progress, "add: no progress notification")
    check(all(progress[i][0] <= progress[i + 1][0] for i in range(len(progress) - 1)),
          f"progress went back: {progress}")
    out["add"] = added
    out["add_progress"] = progress

    out["add_path"] = structured(await session.call_tool(
        "add_path", {"path": "extra", "metadata": {"kind": "extra"}}), "add_path")
    check(out["add_path"]["state"] == "done", f"add_path: {out['add_path']}")
    check(any("outside the allowed roots" in s["error"] for s in out["add_path"]["result"]["skipped"]),
          f"add_path: the symlink out of the root was not skipped: {out['add_path']}")

    # Cancellation: a long add_path abandoned by the client.
    with anyio.move_on_after(cfg.get("cancel_after", 1.0)) as scope:
        await session.call_tool("add_path", {"path": cfg["big"]})
    out["cancel_timed_out"] = scope.cancelled_caught
    # The worker takes jobs in order: this waits until the cancelled one ended.
    out["after_cancel"] = structured(await session.call_tool("stats", {}), "stats after cancel")
    out["sync"] = structured(await session.call_tool("sync", {"paths": ["docs"], "prune": True}), "sync")

    deleted = structured(await session.call_tool("delete", {"doc": "notes.md"}), "delete")
    check(deleted["deleted"] is True, f"delete: {deleted}")
    out["list_after"] = structured(await session.call_tool("list", {}), "list after")


async def main():
    mode, path = sys.argv[1], sys.argv[2]
    cfg = json.load(open(path))
    out = {}
    if mode == "stdio":
        async with stdio_session(cfg) as session:
            await common(session, cfg, out)
            await stdio_only(session, cfg, out)
    else:
        async with http_session(cfg) as session:
            await common(session, cfg, out)
    print(json.dumps(out))


if __name__ == "__main__":
    anyio.run(main)
