// firebreak console: the only script (no inline script is allowed by the Content-Security-Policy).
// It calls the admin API with the session cookie and the CSRF token from <meta name="csrf-token">.
"use strict";

(function () {
  const meta = (name) => {
    const m = document.querySelector('meta[name="' + name + '"]');
    return m ? m.getAttribute("content") : null;
  };
  const csrf = meta("csrf-token");
  let version = meta("switch-version");
  const $ = (id) => document.getElementById(id);

  async function api(method, path, body) {
    const headers = { "X-CSRF-Token": csrf || "" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try {
      data = await r.json();
    } catch (e) {
      data = null;
    }
    return { status: r.status, data };
  }

  // ---- Now: live rates from the metrics, decisions from the SSE stream ----
  function rates() {
    const out = $("rate-requests");
    if (!out) return;
    let prev = null;
    const tick = async () => {
      const r = await api("GET", "/console/api/rates");
      if (r.status !== 200 || !r.data) return;
      const now = Date.now();
      const blocks = r.data.decisions.block || 0;
      const all = Object.values(r.data.decisions).reduce((a, b) => a + b, 0);
      if (prev) {
        const dt = (now - prev.t) / 1000;
        out.textContent = ((r.data.requests - prev.req) / dt).toFixed(1);
        $("rate-blocks").textContent = ((blocks - prev.blocks) / dt).toFixed(1);
        $("rate-decisions").textContent = ((all - prev.all) / dt).toFixed(1);
      }
      prev = { t: now, req: r.data.requests, blocks, all };
      if (version !== null && String(r.data.version) !== String(version)) {
        const v = $("version");
        if (v) v.classList.add("stale");
      }
    };
    tick();
    setInterval(tick, 3000);
  }

  function cell(tr, text) {
    const td = document.createElement("td");
    td.textContent = text === undefined || text === null ? "" : String(text);
    tr.appendChild(td);
  }

  function decisions() {
    const table = $("decisions");
    if (!table || !window.EventSource) return;
    const body = table.querySelector("tbody");
    const max = parseInt(table.dataset.max || "60", 10);
    const status = $("stream-status");
    const es = new EventSource("/admin/v1/decisions/stream");
    es.onopen = () => (status.textContent = "live");
    es.onerror = () => (status.textContent = "reconnecting…");
    es.addEventListener("lagged", (e) => {
      status.textContent = "live (skipped " + JSON.parse(e.data).missed + " while busy)";
    });
    es.onmessage = (e) => {
      const r = JSON.parse(e.data);
      const tr = document.createElement("tr");
      tr.className = "fresh kind-" + (r.kind || "");
      const rules = (r.decisions || []).map((d) => d.action + " " + d.rule).join(", ");
      [r.seq, r.time, r.kind, r.status !== undefined ? r.status : r.event, r.user, r.tenant, rules || r.reason].forEach((v) =>
        cell(tr, v)
      );
      body.insertBefore(tr, body.firstChild);
      while (body.rows.length > max) body.deleteRow(body.rows.length - 1);
    };
  }

  // ---- Act, Tools, Incidents: review → confirm → apply ----
  let pending = null;

  function show(el, on) {
    if (el) el.hidden = !on;
  }

  function buildRequest(form) {
    const kind = form.dataset.kind;
    const fd = new FormData(form);
    const reason = (fd.get("reason") || "").toString().trim();
    const val = (k) => (fd.get(k) || "").toString().trim();
    const expect = version === null ? undefined : parseInt(version, 10);
    if (kind === "switches") {
      const action = { action: form.dataset.action };
      for (const [k, v] of fd.entries()) {
        if (k === "reason") continue;
        const s = v.toString().trim();
        if (s === "") continue;
        action[k] = k === "enabled" ? s === "true" : s;
      }
      return { path: "/admin/v1/switches", body: { actions: [action], reason, expect_version: expect } };
    }
    if (kind === "rotate_prompt" || kind === "rotate_canary") {
      const what = kind === "rotate_prompt" ? "prompt" : "canary";
      return {
        path: "/admin/v1/rotate/" + what + "/" + encodeURIComponent(val("prompt")),
        body: { reason, expect_version: expect },
      };
    }
    if (kind === "plan") {
      const body = { reason };
      ["user", "tenant", "session"].forEach((k) => {
        if (val(k)) body[k] = val(k);
      });
      return { path: "/admin/v1/playbooks/" + encodeURIComponent(val("plan")), body };
    }
    if (kind === "resolve") {
      return { path: "/admin/v1/incidents/" + encodeURIComponent(form.dataset.incident) + "/resolve", body: { note: val("note") } };
    }
    return null;
  }

  function review(form) {
    const req = buildRequest(form);
    if (!req) return;
    pending = { form, req };
    $("confirm-endpoint").textContent = "POST " + req.path;
    $("confirm-body").textContent = JSON.stringify(req.body, null, 2);
    $("confirm-role").textContent = "Needs the " + form.dataset.role + " role.";
    show($("result"), false);
    show($("confirm"), true);
    $("confirm").scrollIntoView({ block: "start" });
    $("confirm-apply").focus();
  }

  function result(title, text, data, ok) {
    const box = $("result");
    box.classList.toggle("ok", !!ok);
    box.classList.toggle("bad", !ok);
    $("result-title").textContent = title;
    $("result-text").textContent = text;
    $("result-body").textContent = data ? JSON.stringify(data, null, 2) : "";
    show(box, true);
    box.scrollIntoView({ block: "start" });
  }

  async function apply() {
    if (!pending) return;
    const { form, req } = pending;
    show($("confirm"), false);
    show($("result"), false);
    const r = await api("POST", req.path, req.body);
    const err = r.data && r.data.error;
    if (r.status === 200) {
      if (r.data && r.data.version !== undefined) version = String(r.data.version);
      result("Applied", "Done. The page reloads with the new state.", r.data, true);
      pending = null;
      setTimeout(() => location.reload(), 900);
      return;
    }
    if (r.status === 202) {
      // The two-person rule: held until a second identity approves it.
      const p = (r.data && r.data.pending) || {};
      result(
        "Held for a second approval (202)",
        "Nothing is applied yet: " + (p.needs_second || []).join(", ") + " needs a second identity. Another operator approves pending change " +
          (p.id || "") + " (`firebreak admin approve " + (p.id || "ID") + "`) before it expires" +
          (p.expires_in_secs ? " in " + Math.round(p.expires_in_secs / 60) + " min" : "") + ".",
        r.data,
        true
      );
      pending = null;
      approvals();
      return;
    }
    if (r.status === 409) {
      // Someone else changed the switches since this page was loaded: show what is in force now and
      // let the operator review the same change against it.
      const st = await api("GET", "/admin/v1/state");
      const s = st.data || {};
      if (s.version !== undefined) {
        version = String(s.version);
        const v = $("act-version");
        if (v) v.textContent = version;
      }
      if (form) review(form);
      result(
        "Not applied: the state changed (409)",
        (err ? err.message + ". " : "") +
          "Now in force: version " + s.version + ", level " + s.level + ", safe mode " + (s.safe_mode ? "on" : "off") +
          ". Review and confirm again against this state.",
        err,
        false
      );
      return;
    }
    const why = {
      400: "The request was rejected; nothing changed.",
      401: "Your session has ended; log in again.",
      403: "Refused: your role does not allow this, or the CSRF token is missing.",
      404: "Not found.",
      503: "The gateway cannot record this change right now; nothing changed.",
    }[r.status] || "Failed.";
    result("Not applied (" + r.status + ")", why + (err ? " " + err.message : ""), r.data, false);
  }

  function actions() {
    document.querySelectorAll("form.act").forEach((form) => {
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        review(form);
      });
    });
    const a = $("confirm-apply");
    if (a) a.addEventListener("click", apply);
    const c = $("confirm-cancel");
    if (c)
      c.addEventListener("click", () => {
        pending = null;
        show($("confirm"), false);
      });
  }

  // ---- Two-person rule: changes waiting for a second identity ----
  function confirmRequest(req, role) {
    pending = { form: null, req };
    $("confirm-endpoint").textContent = "POST " + req.path;
    $("confirm-body").textContent = JSON.stringify(req.body, null, 2);
    $("confirm-role").textContent = role;
    show($("result"), false);
    show($("confirm"), true);
    $("confirm").scrollIntoView({ block: "start" });
  }

  async function approvals() {
    const box = $("pending-approvals");
    if (!box) return;
    const r = await api("GET", "/admin/v1/pending");
    const list = (r.data && r.data.pending) || [];
    $("pending-count").textContent = String(list.length);
    const out = $("pending-list");
    out.textContent = "";
    if (list.length === 0) {
      const p = document.createElement("p");
      p.className = "empty";
      p.textContent = "none";
      out.appendChild(p);
      return;
    }
    list.forEach((item) => {
      const div = document.createElement("div");
      div.className = "pending-item";
      div.dataset.id = item.id;
      const h = document.createElement("p");
      h.textContent = item.id + " — asked by " + item.requested_by.id + " (" + item.requested_by.role + "); needs a second " +
        item.required_role + " for " + (item.needs_second || []).join(", ") + "; expires in " + Math.round(item.expires_in_secs / 60) + " min";
      div.appendChild(h);
      const pre = document.createElement("pre");
      pre.textContent = JSON.stringify(item.batch, null, 2);
      div.appendChild(pre);
      const mine = item.requested_by.id === box.dataset.me;
      if (box.dataset.can === "yes") {
        [["approve", "Approve…"], ["reject", mine ? "Withdraw…" : "Reject…"]].forEach(([verb, label]) => {
          if (verb === "approve" && mine) return; // a second identity approves, never the requester
          const b = document.createElement("button");
          b.type = "button";
          b.className = verb === "approve" ? "review approve-pending" : "review secondary reject-pending";
          b.textContent = label;
          b.addEventListener("click", () =>
            confirmRequest({ path: "/admin/v1/pending/" + encodeURIComponent(item.id) + "/" + verb, body: {} },
              "Needs the " + item.required_role + " role" + (verb === "approve" ? " and an identity other than " + item.requested_by.id : "") + ".")
          );
          div.appendChild(b);
        });
        if (mine) {
          const note = document.createElement("p");
          note.className = "meta";
          note.textContent = "You asked for this: another identity must approve it.";
          div.appendChild(note);
        }
      }
      out.appendChild(div);
    });
  }

  // ---- Incident checklist ----
  function checklist() {
    const inc = $("incident");
    if (!inc) return;
    document.querySelectorAll("input.tick").forEach((box) => {
      box.addEventListener("change", async () => {
        box.disabled = true;
        const r = await api("POST", "/admin/v1/incidents/" + encodeURIComponent(inc.dataset.id) + "/checklist", {
          step: parseInt(box.dataset.step, 10),
          done: box.checked,
        });
        if (r.status === 200) {
          location.reload();
        } else {
          box.checked = !box.checked;
          box.disabled = false;
          result("Not saved (" + r.status + ")", r.data && r.data.error ? r.data.error.message : "", r.data, false);
        }
      });
    });
  }

  // ---- Audit: verification status ----
  async function verify() {
    const st = $("verify-status");
    if (!st) return;
    const r = await api("GET", "/admin/v1/audit/verify");
    const d = r.data || {};
    st.textContent = d.ok ? "verified" : "NOT verified";
    st.className = d.ok ? "ok" : "bad";
    $("verify-detail").textContent = d.summary || d.error || "";
  }

  document.addEventListener("DOMContentLoaded", () => {
    rates();
    decisions();
    actions();
    checklist();
    verify();
    approvals();
  });
})();
