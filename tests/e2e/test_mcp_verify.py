"""`firebreak mcp verify` against the reference MCP server (@modelcontextprotocol/server-everything):
directly over Streamable HTTP, and through a running gateway in front of it. A real server's tools
are listed, hashed and checked; the gateway-mode report follows what clients listing through the
gateway trusted on first use.
"""

from __future__ import annotations

import json
import os
import subprocess

import anyio

from conftest import ADMIN_TOKEN, KEY_ALICE, Gateway
from mcp_fixtures import (  # noqa: F401  (everything, mcp_gateway: fixtures, used by name)
    SERVER_NAME,
    EverythingServer,
    everything,
    mcp_gateway,
    mcp_url,
)
from conftest import firebreak_bin


def verify(*args: str) -> tuple[int, str, str]:
    env = dict(os.environ, FIREBREAK_ADMIN_TOKEN=ADMIN_TOKEN)
    p = subprocess.run(
        [str(firebreak_bin()), "mcp", "verify", SERVER_NAME, *args],
        capture_output=True, text=True, timeout=60, env=env,
    )
    return p.returncode, p.stdout, p.stderr


def test_verify_lists_server_everything_directly(everything: EverythingServer) -> None:
    code, out, err = verify("--url", everything.url, "--json")
    report = json.loads(out)
    names = {t["name"] for t in report["tools"]}
    assert {"echo", "get-sum"} <= names, names
    # Nothing pinned and no state: every clean tool is new, which is not trusted without --allow-new.
    assert code == 1, (out, err)
    assert all(len(t["hash"]) == 64 for t in report["tools"]), report
    code, out, err = verify("--url", everything.url, "--allow-new")
    poisoned = [t for t in report["tools"] if t["status"] == "poisoned"]
    assert code == (1 if poisoned else 0), (out, err)
    assert "echo" in out and "new" in out, out


def test_verify_through_the_gateway_after_first_use(mcp_gateway: Gateway, everything: EverythingServer) -> None:
    # A client lists the tools through the gateway: their definitions are trusted on first use.
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    import httpx2

    async def list_tools() -> None:
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {KEY_ALICE}"}) as http:
            async with streamable_http_client(mcp_url(mcp_gateway), http_client=http) as (r, w):
                async with ClientSession(r, w) as s:
                    await s.initialize()
                    await s.list_tools()

    anyio.run(list_tools)
    code, out, err = verify("--gateway", f"http://{mcp_gateway.admin}", "--json")
    assert code in (0, 1), err
    report = json.loads(out)
    by_name = {t["name"]: t for t in report["tools"]}
    assert by_name["echo"]["status"] == "trusted_on_first_use", by_name["echo"]
    # The tools the gateway saw are all trusted or withheld for a reason the report names.
    for t in report["tools"]:
        assert t["status"] in ("trusted_on_first_use", "poisoned"), t
    assert (code == 0) == all(t["status"] == "trusted_on_first_use" for t in report["tools"]), out
