"""Writes nginx `return` directives for the mock upstream of benches/load/run.sh (UPSTREAM=nginx).

The bodies are the issue-15 side-by-side's, kept beside this script: `reply_chat.json`, a 721-byte
OpenAI `chat.completion`; `reply_chat.sse`, 20 `chat.completion.chunk` events and `data: [DONE]` in
one body; `reply_mcp.json`, the MCP `tools/call` result of the fake provider. `benches/alloc.rs`
uses the same files in-process.

    python3 benches/load/mock.py OUT_DIR    # writes OUT_DIR/{chat,sse,mcp}.conf
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main(out):
    for name, file in (("chat", "reply_chat.json"), ("sse", "reply_chat.sse"), ("mcp", "reply_mcp.json")):
        with open(os.path.join(HERE, file)) as f:
            s = f.read()
        # An nginx single-quoted string: backslash, quote and newline escaped; no `$` (a variable).
        assert "$" not in s, file
        quoted = s.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
        with open(os.path.join(out, f"{name}.conf"), "w") as f:
            f.write(f"return 200 '{quoted}';\n")


if __name__ == "__main__":
    main(sys.argv[1])
