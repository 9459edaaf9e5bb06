"""Drives a Spoke connector's MCP server with the Python `mcp` package
(2.3.x, from PyPI), a client no one on the Spoke team wrote.

Run by tests/mcp_python.rs: `python drive.py <scenario> <args...>`. A
scenario prints `ok` and exits 0, or fails with an assertion that says
what differed (exit 1).

Scenarios:
  echo-stdio BIN ERA             list, call, bad input, unknown tool (ERA: legacy or modern)
  files-stdio BIN ROOT ERA ADMIN admin_only and hidden tools (ADMIN: admin or no-admin)
  faults-stdio BIN ERA           progress, cancellation, an action error, a panic
  http URL TOKEN ADMIN_TOKEN ERA over Streamable HTTP, with and without the tokens
  hub TRANSPORT ERA TARGET TOKENS FILES
                                 the hub's MCP view (TRANSPORT: http, TARGET the MCP URL;
                                 or stdio, TARGET `{"spoke": BIN, "hub": URL}`): tools by
                                 the token's scope, routing by _meta, list changes as the
                                 files connector (FILES: `{"argv": [...], "env": {...}}`)
                                 attaches and leaves
"""

import json
import os
import subprocess
import sys
from contextlib import asynccontextmanager

import anyio
import httpx2
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import listen
from mcp.shared.exceptions import MCPError
from mcp.types import ToolListChangedNotification


async def open_session(session, era):
    if era == "legacy":
        result = await session.initialize()
        assert result.protocol_version in ("2025-11-25", "2025-06-18"), result.protocol_version
    elif era == "modern":
        await session.discover()
    else:
        raise SystemExit(f"unknown era {era}")


def text_of(result):
    return "\n".join(block.text for block in result.content if block.type == "text")


def stdio(bin_path, *args, env=None):
    return stdio_client(StdioServerParameters(command=bin_path, args=["mcp", *args], env=env or {}))


async def echo_stdio(bin_path, era):
    async with stdio(bin_path, env={"ECHO_PREFIX": "> "}) as (read, write):
        async with ClientSession(read, write) as session:
            await open_session(session, era)
            tools = (await session.list_tools()).tools
            assert [t.name for t in tools] == ["echo"], tools
            echo = tools[0]
            assert echo.annotations.read_only_hint is True, echo.annotations
            assert echo.input_schema["type"] == "object", echo.input_schema
            assert echo.input_schema["required"] == ["text"], echo.input_schema
            assert echo.output_schema["properties"]["result"]["type"] == "string", echo.output_schema
            result = await session.call_tool("echo", {"text": "hello"})
            assert not result.is_error, result
            assert result.structured_content == {"result": "> hello"}, result
            assert json.loads(text_of(result)) == {"result": "> hello"}, result
            bad = await session.call_tool("echo", {"text": 5})
            assert bad.is_error and bad.structured_content is None, bad
            assert text_of(bad).startswith("error[invalid_input]: $.text:"), text_of(bad)
            missing = await session.call_tool("echo", {})
            assert missing.is_error and "text" in text_of(missing), missing
            try:
                await session.call_tool("ehco", {"text": "x"})
            except MCPError as e:
                assert e.code == -32602, e.error
                assert "unknown tool `ehco`; the tools are: echo" in e.message, e.message
            else:
                raise AssertionError("an unknown tool was not refused")


async def files_stdio(bin_path, root, era, admin):
    args = [] if admin == "admin" else ["--no-admin"]
    async with stdio(bin_path, *args, env={"FILES_ROOT": root}) as (read, write):
        async with ClientSession(read, write) as session:
            await open_session(session, era)
            tools = {t.name: t for t in (await session.list_tools()).tools}
            assert "delete" not in tools, sorted(tools)  # hidden: never listed
            assert "list" in tools and tools["list"].annotations.read_only_hint, sorted(tools)
            if admin == "admin":
                write_tool = tools["write"]
                assert write_tool.annotations.read_only_hint is False, write_tool.annotations
                assert write_tool.annotations.destructive_hint is True, write_tool.annotations
                assert write_tool.annotations.idempotent_hint is True, write_tool.annotations
                wrote = await session.call_tool("write", {"path": "new.txt", "content": "hi"})
                assert not wrote.is_error, wrote
                assert wrote.structured_content["bytes_written"] == 2, wrote
                # A hidden tool is callable by name by an administrator.
                deleted = await session.call_tool("delete", {"path": "new.txt"})
                assert not deleted.is_error, deleted
            else:
                assert "write" not in tools, sorted(tools)
                refused = await session.call_tool("write", {"path": "new.txt", "content": "hi"})
                assert refused.is_error, refused
                assert text_of(refused) == "error[unauthorized]: tool `write` is for administrators only", text_of(refused)
                try:
                    await session.call_tool("delete", {"path": "a.txt"})
                except MCPError as e:
                    assert e.code == -32602 and "`delete`" in e.message, e.error
                else:
                    raise AssertionError("a hidden tool was callable without admin")
            listed = await session.call_tool("list", {})
            assert not listed.is_error, listed


async def faults_stdio(bin_path, era):
    async with stdio(bin_path) as (read, write):
        async with ClientSession(read, write) as session:
            await open_session(session, era)
            seen = []

            async def on_progress(progress, total, message):
                seen.append((progress, total))

            done = await session.call_tool("progress", {"steps": 3}, progress_callback=on_progress)
            assert not done.is_error and done.structured_content == {"result": 3}, done
            assert [p for p, _ in seen] == [1, 2, 3], seen
            assert all(t == 3 for _, t in seen), seen
            # Cancellation: the client gives up after 1 s; the action's token
            # is cancelled (the connector logs how long it slept).
            with anyio.move_on_after(1.0) as scope:
                await session.call_tool("sleep", {"ms": 30000})
            assert scope.cancelled_caught, "the sleep ended on its own"
            failed = await session.call_tool("fail", {"code": "not_found", "message": "no such thing"})
            assert failed.is_error and failed.content[0].text == "error[not_found]: no such thing", failed
            # The error's details come as a second block.
            assert json.loads(failed.content[1].text) == {"requested": "not_found"}, failed
            panicked = await session.call_tool("panic", {"message": "oh no"})
            assert panicked.is_error and text_of(panicked).startswith("error[panicked]:"), panicked
            assert "oh no" in text_of(panicked), panicked
            # The server goes on serving.
            again = await session.call_tool("sleep", {"ms": 1})
            assert not again.is_error and again.structured_content == {"slept_ms": 1}, again


async def over_http(url, token, admin_token, era):
    # Without a token: 401, before any body is read.
    async with httpx2.AsyncClient() as plain:
        response = await plain.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert response.status_code == 401, (response.status_code, response.text)
        response = await plain.post(url, headers={"Authorization": "Bearer wrong"}, json={})
        assert response.status_code == 401, (response.status_code, response.text)
    for bearer, admin in ((token, False), (admin_token, True)):
        client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {bearer}"}, timeout=30)
        async with client, streamable_http_client(url, http_client=client) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as session:
                await open_session(session, era)
                names = sorted(t.name for t in (await session.list_tools()).tools)
                expected = ["list", "read", "stat", "write"] if admin else ["list", "read", "stat"]
                assert [n for n in names if n in expected] == expected and ("write" in names) == admin, names
                listed = await session.call_tool("list", {})
                assert not listed.is_error, listed
                bad = await session.call_tool("read", {"path": 7})
                assert bad.is_error and text_of(bad).startswith("error[invalid_input]: $.path"), bad


@asynccontextmanager
async def hub_session(transport, target, token, era, message_handler=None):
    if transport == "http":
        client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
        async with client, streamable_http_client(target, http_client=client) as streams:
            async with ClientSession(streams[0], streams[1], message_handler=message_handler) as session:
                await open_session(session, era)
                yield session
    elif transport == "stdio":
        spec = json.loads(target)
        env = {"SPOKE_HUB_URL": spec["hub"], "SPOKE_TOKEN": token}
        params = StdioServerParameters(command=spec["spoke"], args=["mcp"], env=env)
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write, message_handler=message_handler) as session:
                await open_session(session, era)
                yield session
    else:
        raise SystemExit(f"unknown transport {transport}")


async def names_of(session):
    return [t.name for t in (await session.list_tools()).tools]


async def refused_as_unknown(session, name, arguments):
    try:
        await session.call_tool(name, arguments)
    except MCPError as e:
        assert e.code == -32602 and f"unknown tool `{name}`" in e.message, e.error
        return e.message
    raise AssertionError(f"{name} was not refused as unknown")


async def until(session, next_change, expected):
    """Waits for change notifications until the list is `expected`."""
    while True:
        await next_change()
        names = sorted(await names_of(session))
        if names == expected:
            return


READ_TOOLS = ["echo__echo", "tickets__database", "tickets__get", "tickets__link", "tickets__list"]
FILES_TOOLS = ["files__list", "files__read", "files__stat"]


async def hub_view(transport, era, target, tokens, files):
    tokens, files = json.loads(tokens), json.loads(files)
    changed = anyio.Event()

    async def on_message(message):
        if isinstance(message, ToolListChangedNotification):
            changed.set()

    async with hub_session(transport, target, tokens["read"], era, on_message) as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        # Write actions are not listed to a token without --write.
        assert sorted(tools) == READ_TOOLS, sorted(tools)
        assert tools["tickets__list"].description.startswith("[Tickets] "), tools["tickets__list"]
        assert tools["tickets__list"].annotations.read_only_hint is True, tools["tickets__list"]
        ok = await session.call_tool("echo__echo", {"text": "hi"}, meta={"spoke/tag": "eu"})
        assert not ok.is_error and ok.structured_content == {"result": "eu: hi"}, ok
        ok = await session.call_tool("echo__echo", {"text": "hi"}, meta={"spoke/instance": "echo-us"})
        assert ok.structured_content == {"result": "us: hi"}, ok
        nowhere = await session.call_tool("echo__echo", {"text": "hi"}, meta={"spoke/tag": "mars"})
        assert nowhere.is_error and "has tag `mars`; the tags of its ready instances: eu, us" in text_of(nowhere), nowhere
        bad = await session.call_tool("echo__echo", {"text": 5})
        assert bad.is_error and text_of(bad).startswith("error[invalid_input]: $.text"), bad
        # A write tool, by name, with a read token: the hub refuses it.
        refused = await session.call_tool("tickets__create", {"title": "x"})
        assert refused.is_error and refused.structured_content is None, refused
        assert text_of(refused).startswith("error[unauthorized]: ") and "write action" in text_of(refused), refused
        await refused_as_unknown(session, "echo__ehco", {})

        # The files connector attaches, then leaves: the list follows, and
        # the client is told each time.
        env = {"PATH": os.environ.get("PATH", "")} | files["env"]

        async def follow(next_change):
            connector = subprocess.Popen(files["argv"], env=env, stdout=subprocess.DEVNULL)
            stage = "waiting to be told of files' tools"
            try:
                with anyio.fail_after(20):
                    await until(session, next_change, sorted(READ_TOOLS + FILES_TOOLS))
                    listed = await session.call_tool("files__list", {})
                    assert not listed.is_error, listed
                    stage = "waiting for files to stop"
                    connector.terminate()
                    await anyio.to_thread.run_sync(connector.wait, 10)
                    stage = "waiting to be told files' tools are gone"
                    await until(session, next_change, READ_TOOLS)
            except TimeoutError:
                # Say what the list is now: told late, or never changed.
                with anyio.fail_after(5):
                    names = sorted(await names_of(session))
                raise AssertionError(f"20 s {stage}; the list now: {names}") from None
            finally:
                connector.kill()

        if era == "modern":
            async with listen(session, tools_list_changed=True) as subscription:
                await follow(subscription.__anext__)
        else:

            async def next_change():
                nonlocal changed
                await changed.wait()
                changed = anyio.Event()

            await follow(next_change)

    # A token scoped to echo: only echo's tools exist for it.
    async with hub_session(transport, target, tokens["echo"], era) as session:
        assert await names_of(session) == ["echo__echo"]
        await refused_as_unknown(session, "tickets__list", {})

    # A token made with --write lists and calls the write tools.
    async with hub_session(transport, target, tokens["write"], era) as session:
        names = await names_of(session)
        assert "tickets__create" in names and "tickets__close" in names, names
        created = await session.call_tool("tickets__create", {"title": f"from {transport} {era}"})
        assert not created.is_error and created.structured_content["title"] == f"from {transport} {era}", created


def main():
    scenario, args = sys.argv[1], sys.argv[2:]
    run = {
        "echo-stdio": echo_stdio,
        "files-stdio": files_stdio,
        "faults-stdio": faults_stdio,
        "http": over_http,
        "hub": hub_view,
    }[scenario]
    anyio.run(run, *args)
    print("ok")


if __name__ == "__main__":
    main()
