"""The README's MCP client example, run as written: the Python block of the "MCP gateway" section is
taken from README.md, pointed at a real gateway in front of the reference MCP server (only the URL
and the key are substituted), and executed with the pinned `mcp` SDK. If the SDK's API moves again,
this fails instead of the README silently going stale.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import anyio

from conftest import KEY_ALICE, REPO_ROOT, Gateway
from mcp_fixtures import (  # noqa: F401  (everything, mcp_gateway: fixtures, used by name)
    SERVER_NAME,
    UNLISTED_TOOL,
    EverythingServer,
    everything,
    mcp_gateway,
    mcp_url,
)

README_URL = f"http://127.0.0.1:8080/mcp/{SERVER_NAME}"
README_KEY = "example-key-platform"


def readme_mcp_example() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("\n## MCP gateway\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, f"one Python block in the README's MCP section, found {len(blocks)}"
    code = blocks[0]
    assert README_URL in code and README_KEY in code, code
    return code


def test_readme_mcp_client_example_runs_as_written(mcp_gateway: Gateway, everything: EverythingServer) -> None:
    code = readme_mcp_example().replace(README_URL, mcp_url(mcp_gateway)).replace(README_KEY, KEY_ALICE)
    # The block is top-level `async with` (as in a notebook or `python -m asyncio`): run it as the
    # body of a coroutine and keep its variables.
    source = "async def readme_example():\n" + textwrap.indent(code, "    ") + "    return locals()\n"
    namespace: dict[str, Any] = {}
    exec(compile(source, "README.md (MCP gateway)", "exec"), namespace)
    found = anyio.run(namespace["readme_example"])
    names = {t.name for t in found["tools"].tools}
    assert "echo" in names, names
    assert UNLISTED_TOOL not in names, f"the role's allowlist filters the list: {names}"
    result = found["result"]
    assert not result.is_error, result
    assert "hi" in result.content[0].text, result
