-- Fleet schema, version 1 (docs/design/fleet-mode.md §4). Applied by fleet::db::migrate in one
-- transaction under an advisory lock; fleet_schema records it.
-- The switch snapshot: one row. `snapshot` is serde's Snapshot (canaries are #[serde(skip)]);
-- `canaries` holds their values (the state file's canary_values), kept apart so no query of the snapshot shows them.
CREATE TABLE switch_state (
  id         boolean PRIMARY KEY DEFAULT true CHECK (id),
  version    bigint NOT NULL,
  snapshot   jsonb NOT NULL,
  canaries   jsonb NOT NULL DEFAULT '{}'::jsonb,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- The audit record of every committed batch, written in the batch's transaction.
CREATE TABLE switch_batches (
  version        bigint PRIMARY KEY,             -- after_version: also a second guard against a double commit
  before_version bigint NOT NULL,
  replica_id     text NOT NULL,                  -- where the admin call (or the automatic plan) ran
  actor          text NOT NULL,
  reason         text NOT NULL,
  record         jsonb NOT NULL,                 -- the same fields as the JSONL `switch` record (sessions digested)
  committed_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE replicas (
  replica_id      text PRIMARY KEY,
  address         text NOT NULL,                 -- proxy listener as bound (or advertised)
  admin_address   text,
  pid             integer NOT NULL,
  binary_version  text NOT NULL,                 -- CARGO_PKG_VERSION
  started_at      timestamptz NOT NULL,
  last_seen       timestamptz NOT NULL,
  applied_version bigint NOT NULL DEFAULT 0,
  applied_at      timestamptz,
  policy_hash     text NOT NULL,
  written_seq     bigint NOT NULL DEFAULT 0,     -- local audit trail's last seq
  shipped_seq     bigint NOT NULL DEFAULT 0,     -- last seq known in audit_records
  redis_ok        boolean NOT NULL DEFAULT true,
  local_override  jsonb,                         -- LocalOverride when one is in force
  audit_head      jsonb                          -- the local .head file ({seq,kid,mac}) for `audit verify --postgres`
);

CREATE TABLE incidents (
  id             bigserial PRIMARY KEY,          -- shown as INC-00042 (format('INC-%s', lpad(id::text, 5, '0')))
  trigger        text NOT NULL,
  principal_user text NOT NULL DEFAULT '',
  server         text NOT NULL DEFAULT '',       -- only for tool_definition_changed, else ''
  status         text NOT NULL CHECK (status IN ('open', 'resolved')),
  severity       text NOT NULL,
  opened_by      text NOT NULL,                  -- replica id
  first_seen     timestamptz NOT NULL DEFAULT now(),
  last_seen      timestamptz NOT NULL DEFAULT now(),
  firings        bigint NOT NULL DEFAULT 1,
  evidence_count integer NOT NULL DEFAULT 0,
  doc            jsonb NOT NULL                  -- Incident minus evidence: principal, actions (Taken), checklist, ticked, notes, resolved_at
);
CREATE UNIQUE INDEX incidents_one_open ON incidents (trigger, principal_user, server) WHERE status = 'open';
CREATE INDEX incidents_recent ON incidents (status, last_seen DESC);

CREATE TABLE incident_evidence (
  incident_id bigint NOT NULL REFERENCES incidents (id),
  replica_id  text NOT NULL,
  audit_seq   bigint,                           -- (replica_id, audit_seq) joins audit_records
  request_id  text,
  rule        text NOT NULL,
  time        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX incident_evidence_by_incident ON incident_evidence (incident_id, time);

CREATE TABLE audit_records (
  replica_id text NOT NULL,
  seq        bigint NOT NULL,
  time       timestamptz NOT NULL,
  kind       text NOT NULL,
  event      text,
  user_id    text,
  tenant     text,
  key_id     text,
  session    text,                               -- already the digest (sha256:…16 hex), as in the JSONL
  request_id text,
  rules      text[] NOT NULL DEFAULT '{}',       -- decision rules ∪ redaction rule ids ∪ injections ∪ `rule`
  has_canary boolean NOT NULL DEFAULT false,     -- a rule id starting with 'canary.'
  flagged    boolean NOT NULL DEFAULT false,     -- a block decision, a credential/canary redaction, an injection, an incident
  line       text NOT NULL,                      -- the exact JSONL line: verification re-MACs its canonical form
  PRIMARY KEY (replica_id, seq)
);
CREATE INDEX audit_time         ON audit_records (time);
CREATE INDEX audit_user_time    ON audit_records (user_id, time) WHERE user_id IS NOT NULL;
CREATE INDEX audit_session_time ON audit_records (session, time) WHERE session IS NOT NULL;
CREATE INDEX audit_canary_time  ON audit_records (time) WHERE has_canary;
CREATE INDEX audit_flagged_time ON audit_records (time, user_id) WHERE flagged;
CREATE INDEX audit_rules        ON audit_records USING gin (rules);

CREATE TABLE mcp_sessions (
  binding    text PRIMARY KEY,                   -- hex SHA-256 of "server\nsession id": the raw id never stored
  key_id     text NOT NULL,
  created_by text NOT NULL,                      -- replica id
  created_at timestamptz NOT NULL DEFAULT now(),
  last_used  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mcp_sessions_idle ON mcp_sessions (last_used);

CREATE TABLE fleet_commands (
  id        bigserial PRIMARY KEY,
  kind      text NOT NULL CHECK (kind IN ('rotate_credentials', 'reload')),
  target    text,                                -- one credential name; NULL = all
  actor     text NOT NULL,
  reason    text NOT NULL,
  issued_by text NOT NULL,                       -- replica id
  issued_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE fleet_command_results (
  command_id bigint NOT NULL REFERENCES fleet_commands (id),
  replica_id text NOT NULL,
  ok         boolean NOT NULL,
  detail     jsonb,                              -- {"rotated": [...], "failed": {...}} / reload error
  done_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (command_id, replica_id)
);
