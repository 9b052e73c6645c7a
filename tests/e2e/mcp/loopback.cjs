// Preloaded (`node --require`) into @modelcontextprotocol/server-everything by the e2e suite
// (tests/e2e/mcp_fixtures.py). The server calls `app.listen(PORT)` on every interface and logs the
// port it was asked for, not the one it got. This shim changes only that: a bare-port listen() binds
// 127.0.0.1, and the address actually bound (PORT=0 gives an ephemeral port, so no port race) is
// written atomically to the file named by $FIREBREAK_E2E_LISTEN_FILE as {"host":…,"port":…}.
"use strict";
const fs = require("node:fs");
const net = require("node:net");

const listenFile = process.env.FIREBREAK_E2E_LISTEN_FILE;
const originalListen = net.Server.prototype.listen;

net.Server.prototype.listen = function (...args) {
    const first = args[0];
    const barePort = typeof first === "number" || (typeof first === "string" && /^\d+$/.test(first));
    if (barePort && (args.length === 1 || typeof args[1] === "function")) {
        args.splice(1, 0, "127.0.0.1");
    }
    this.once("listening", () => {
        const addr = this.address();
        if (!listenFile || !addr || typeof addr !== "object") return;
        const tmp = `${listenFile}.tmp-${process.pid}`;
        fs.writeFileSync(tmp, JSON.stringify({ host: addr.address, port: addr.port, pid: process.pid }));
        fs.renameSync(tmp, listenFile);
    });
    return originalListen.apply(this, args);
};
