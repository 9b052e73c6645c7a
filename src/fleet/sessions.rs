//! MCP session bindings (session id → key id) shared by every replica.
