//! The incident engine's side effects, on the gateway: an exchange's firings are turned into
//! incidents (opened or joined, audited, saved) and automatic containment (switch batches through
//! `Gateway::apply`). The engine (`incident`) only counts and decides which triggers fire; it never
//! reaches the gateway, so `incident` does not depend on `proxy`.
//!
//! The book: on a single node the engine's file book. In fleet mode the book is PostgreSQL
//! ([`crate::fleet::incidents`]): an incident opens once fleet-wide and its plan runs on the
//! replica that opened it; while PostgreSQL is unreachable the firing is recorded in the local file
//! (`INC-<replica>-L0001`, `local`) and merged on reconnect ([`merge_local`]). Readers (`control`,
//! alerts, the console) go through [`list`], [`get`], [`tick`] and [`resolve`], which choose.

use serde_json::Value;

use super::Gateway;
use crate::audit::{Exchange, Record};
use crate::config::Policy;
use crate::facts::Facts;
use crate::fleet::FleetError;
use crate::incident::{
    checklist, incident_record, now_rfc3339, server_of, target_of, Evidence, Incident, IncidentError, PlanError,
    Status, Taken, Target, Trigger, MAX_EVIDENCE,
};
use crate::state::{Action, Batch};

/// Writes an exchange's audit `record` and lets the incident engine see its `facts`: the one call
/// the request path, the stream pump and the MCP gateway make when an exchange is finished.
/// Automatic containment is applied before it returns.
pub async fn audited(gw: &Gateway, facts: &Facts, record: Exchange) {
    let policy = gw.policy();
    // Signals → hits (pure), counted in the trigger windows (local, or the fleet's in Redis: one
    // round trip, and none for the common exchange without signals), then the firings.
    let obs = gw.incidents.signals(&policy, facts);
    if obs.is_empty() {
        gw.audit.record(record).await;
        return;
    }
    // Boxed: an async fn's future is as large as the largest state of everything it awaits, and
    // the request's and the stream pump's futures await this one. Inline, the incident and fleet
    // paths (Redis, PostgreSQL) made every stream's pump task 18 KB, held for the stream's life.
    Box::pin(with_signals(gw, &policy, facts, record, obs)).await;
}

/// [`audited`] for an exchange with signals: counted, then the firings opened or joined.
async fn with_signals(gw: &Gateway, policy: &Policy, facts: &Facts, record: Exchange, obs: crate::incident::Observed) {
    let counted = gw.windows.add_all(&obs.hits).await;
    let firings = gw.incidents.firings(policy, obs, &counted);
    if firings.is_empty() {
        gw.audit.record(record).await;
        return;
    }
    let target = target_of(facts);
    let request_id = Some(facts.request_id.clone()).filter(|s| !s.is_empty());
    let server = server_of(facts);
    // A firing that opens an incident (and may contain it) waits for its evidence to be on disk. One
    // that only joins an open incident does not: the request does not wait for an fsync of the
    // audit trail (which, under load, flushes everything written before it: 100-200 ms measured
    // in the load bench), and the joined incident is saved off the request path.
    // (Fleet mode: whether an incident is open is PostgreSQL's to say; the evidence is made durable.)
    let seq = if gw.fleet.is_none() && gw.incidents.joins_only(&firings, &target, server).await {
        gw.audit.record(record).await;
        None
    } else {
        gw.audit.record_durable(record).await.ok()
    };
    for f in firings {
        let ev = Evidence {
            replica: gw.fleet.as_ref().map(|f| f.replica_id.clone()),
            audit_seq: seq,
            request_id: request_id.clone(),
            rule: f.rule,
            time: now_rfc3339(),
        };
        fire(gw, policy, &f.trigger, &target, server.map(str::to_owned), ev).await;
    }
}

/// Opens or joins the incident of `trigger` for `target`. An automatic trigger contains the
/// principal when the incident opens; its plan's gateway-wide steps run only when corroborated
/// (they are recorded as awaiting an operator otherwise, and run when a later firing into the
/// same incident is corroborated).
async fn fire(gw: &Gateway, policy: &Policy, trigger: &Trigger, target: &Target, server: Option<String>, ev: Evidence) {
    let auto = trigger.auto && policy.incidents.auto_contain;
    let corroborated = gw.incidents.corroboration(policy, trigger, target, server.as_deref(), &ev.rule);
    if let Some(fleet) = &gw.fleet {
        let inc = new_incident(String::new(), trigger, target, server.clone(), &ev);
        // The local book is held while the fleet incident opens and its plan runs, as on a single
        // node: an alert enriched meanwhile ([`get`]) waits, and says what was done.
        let held = gw.incidents.book().await;
        let fired = fire_fleet(gw, fleet, policy, trigger, inc, &ev, auto, corroborated.clone()).await;
        drop(held);
        match fired {
            Ok(()) => return,
            Err(e) => {
                gw.metrics.decision(&format!("incident.{}", trigger.name), "local_book");
                tracing::warn!(trigger = %trigger.name, error = %e,
                    "fleet incident book unreachable: recording the incident in this replica's file");
            }
        }
    }
    let mut book = gw.incidents.book().await;
    let now = now_rfc3339();
    let open = book.open_incident(&trigger.name, target, server.as_deref());
    if let Some(pos) = open {
        let inc = &mut book.incidents[pos];
        inc.last_seen = now;
        inc.firings += 1;
        if inc.evidence.len() < MAX_EVIDENCE {
            inc.evidence.push(ev.clone());
        }
        let rec = incident_record(inc, "joined").with("rule", ev.rule.as_str());
        gw.audit.record(rec).await;
        let awaiting = inc.actions.last().is_some_and(|t| !t.awaiting_operator.is_empty());
        if !(auto && awaiting && corroborated.is_some()) {
            drop(book);
            gw.incidents.save_later();
            return;
        }
        let id = inc.id.clone();
        let taken = contain(gw, policy, trigger, &id, target, corroborated).await;
        let widened = !taken.actions.is_empty() && taken.error.is_none();
        book.incidents[pos].actions.push(taken);
        if widened {
            // The steps that awaited an operator ran: the containment grew (alertable).
            let rec = incident_record(&book.incidents[pos], "escalated").with("rule", ev.rule.as_str()).with_opt(
                "corroborated_by",
                book.incidents[pos].actions.last().and_then(|t| t.corroborated_by.clone()),
            );
            gw.audit.record(rec).await;
        }
    } else {
        book.next += 1;
        let (id, local) = match &gw.fleet {
            Some(f) => (format!("INC-{}-L{:04}", f.replica_id, book.next), true),
            None => (format!("INC-{:05}", book.next), false),
        };
        let mut inc = new_incident(id, trigger, target, server, &ev);
        inc.first_seen = now.clone();
        inc.last_seen = now;
        inc.local = local;
        opened(gw, policy, trigger, &mut inc, &ev, auto, corroborated).await;
        book.incidents.push(inc);
    }
    if let Err(e) = gw.incidents.save(&mut book).await {
        tracing::error!(error = %e, "incident file not written");
    }
}

/// A new incident of `trigger` for `target`, its first evidence `ev`.
fn new_incident(id: String, trigger: &Trigger, target: &Target, server: Option<String>, ev: &Evidence) -> Incident {
    let now = now_rfc3339();
    Incident {
        id,
        severity: trigger.severity,
        trigger: trigger.name.clone(),
        status: Status::Open,
        principal: target.clone(),
        server,
        first_seen: now.clone(),
        last_seen: now,
        firings: 1,
        evidence: vec![ev.clone()],
        actions: Vec::new(),
        checklist: checklist::for_trigger(&trigger.name).into_iter().map(str::to_owned).collect(),
        ticked: Vec::new(),
        notes: Vec::new(),
        resolved_at: None,
        local: false,
        merged_from: None,
    }
}

/// Fleet mode: opens the incident once fleet-wide, or joins it. Only the replica whose insert
/// opened it runs the plan (and the forensics hook); an escalation runs under the row lock, so
/// it runs once too. An error means PostgreSQL could not record the firing (nothing ran).
#[allow(clippy::too_many_arguments)]
async fn fire_fleet(
    gw: &Gateway,
    fleet: &crate::fleet::Fleet,
    policy: &Policy,
    trigger: &Trigger,
    new: Incident,
    ev: &Evidence,
    auto: bool,
    corroborated: Option<String>,
) -> Result<(), FleetError> {
    let fired = crate::fleet::incidents::open_or_join(fleet, &new, ev).await?;
    let mut inc = fired.incident;
    if !fired.opened {
        let rec = incident_record(&inc, "joined").with("rule", ev.rule.as_str());
        gw.audit.record(rec).await;
        let awaiting = inc.actions.last().is_some_and(|t| !t.awaiting_operator.is_empty());
        if !(auto && awaiting && corroborated.is_some()) {
            return Ok(());
        }
        // Escalation, under the row lock: a second replica escalating at once finds it done.
        let target = inc.principal.clone();
        let escalated = crate::fleet::incidents::update(fleet, fired.row, |mut locked: Incident| async move {
            let still = locked.actions.last().is_some_and(|t| !t.awaiting_operator.is_empty());
            if !still {
                return (None, None);
            }
            let taken = contain(gw, policy, trigger, &locked.id, &target, corroborated).await;
            let widened = !taken.actions.is_empty() && taken.error.is_none();
            locked.actions.push(taken);
            let out = widened.then(|| locked.clone());
            (Some(locked), out)
        })
        .await;
        match escalated {
            Ok(Some(Some(inc))) => {
                let rec = incident_record(&inc, "escalated")
                    .with("rule", ev.rule.as_str())
                    .with_opt("corroborated_by", inc.actions.last().and_then(|t| t.corroborated_by.clone()));
                gw.audit.record(rec).await;
            }
            Ok(_) => {}
            Err(e) => tracing::error!(incident = %inc.id, error = %e, "incident escalation not recorded"),
        }
        return Ok(());
    }
    opened(gw, policy, trigger, &mut inc, ev, auto, corroborated).await;
    if auto {
        if let Err(e) = crate::fleet::incidents::set_actions(fleet, fired.row, &inc.actions).await {
            tracing::error!(incident = %inc.id, error = %e, "containment ran but is not recorded in the fleet incident");
        }
    }
    Ok(())
}

/// What opening `inc` does on the replica that opened it (a single node, or the fleet's opener):
/// the log line and metric, the durable `opened` record (first, so the switch record of the plan
/// can name the incident), forensics, then the automatic plan when `auto` (its steps in
/// `inc.actions`). The caller persists the incident.
async fn opened(
    gw: &Gateway,
    policy: &Policy,
    trigger: &Trigger,
    inc: &mut Incident,
    ev: &Evidence,
    auto: bool,
    corroborated: Option<String>,
) {
    tracing::warn!(incident = %inc.id, severity = trigger.severity.as_str(), trigger = %trigger.name,
        user = inc.principal.user.as_deref(), rule = %ev.rule, "incident opened");
    gw.metrics.decision(&format!("incident.{}", trigger.name), "detect");
    let rec = incident_record(inc, "opened").with("rule", ev.rule.as_str()).with("auto", auto);
    if let Err(e) = gw.audit.record_durable(rec).await {
        tracing::error!(error = %e, "incident opened but its audit record failed");
    }
    // The principal's recent exchanges (when `[forensics]` is on) become its evidence.
    gw.forensics.incident_opened(inc);
    if auto {
        let target = inc.principal.clone();
        let taken = contain(gw, policy, trigger, &inc.id, &target, corroborated).await;
        if !taken.awaiting_operator.is_empty() {
            let rec = incident_record(inc, "awaiting_operator")
                .with("awaiting_operator", serde_json::to_value(&taken.awaiting_operator).unwrap_or(Value::Null));
            gw.audit.record(rec).await;
        }
        inc.actions.push(taken);
    }
}

/// What `admin incidents` shows.
#[derive(Debug)]
pub struct Listing {
    /// Newest first.
    pub incidents: Vec<Incident>,
    /// Fleet mode, PostgreSQL unreachable: only this replica's local incidents are shown.
    pub degraded: Option<String>,
}

/// Every incident, newest first (only open ones when `open_only`): the fleet book in fleet mode
/// (this replica's local incidents, said so, while PostgreSQL is unreachable).
pub async fn list(gw: &Gateway, open_only: bool) -> Listing {
    let Some(fleet) = &gw.fleet else {
        return Listing { incidents: gw.incidents.list(open_only).await, degraded: None };
    };
    match crate::fleet::incidents::list(fleet, open_only).await {
        Ok(mut incidents) => {
            // Not merged yet (the reconnect task runs within a poll interval): shown too.
            let local = gw.incidents.list(open_only).await;
            incidents.splice(0..0, local.into_iter().filter(|i| i.local));
            Listing { incidents, degraded: None }
        }
        Err(e) => {
            tracing::warn!(error = %e, "incident list: fleet book unreachable, showing local incidents");
            Listing {
                incidents: gw.incidents.list(open_only).await,
                degraded: Some("showing this replica's local incidents: PostgreSQL is unreachable".into()),
            }
        }
    }
}

/// One incident: a fleet id (`INC-00042`) from the fleet book in fleet mode, a local one from the file.
pub async fn get(gw: &Gateway, id: &str) -> Option<Incident> {
    if let (Some(fleet), Some(_)) = (&gw.fleet, crate::fleet::incidents::row_id(id)) {
        // An incident this replica is opening is read once its plan ran (see `fire`).
        drop(gw.incidents.book().await);
        return match crate::fleet::incidents::get(fleet, id).await {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(incident = id, error = %e, "incident lookup: fleet book unreachable");
                None
            }
        };
    }
    gw.incidents.get(id).await
}

/// Runs `change` on fleet incident `id` under its row lock and writes it back.
async fn change_fleet<T>(
    fleet: &crate::fleet::Fleet,
    id: &str,
    change: impl FnOnce(&mut Incident) -> Result<T, IncidentError>,
) -> Option<Result<(Incident, T), IncidentError>> {
    let row = crate::fleet::incidents::row_id(id)?;
    let done = crate::fleet::incidents::update(fleet, row, |mut inc: Incident| async move {
        match change(&mut inc) {
            Ok(t) => (Some(inc.clone()), Ok((inc, t))),
            Err(e) => (None, Err(e)),
        }
    })
    .await;
    Some(match done {
        Ok(Some(r)) => r,
        Ok(None) => Err(IncidentError::NotFound(id.into())),
        Err(e) => Err(IncidentError::Unavailable(e.to_string())),
    })
}

/// Ticks (or unticks) checklist step `step` of incident `id`, audited.
pub async fn tick(gw: &Gateway, id: &str, step: usize, done: bool, actor: &str) -> Result<Incident, IncidentError> {
    if let Some(fleet) = &gw.fleet {
        if let Some(r) = change_fleet(fleet, id, |inc| crate::incident::tick_step(inc, step, done, actor)).await {
            let (inc, text) = r?;
            let event = if done { "checklist_ticked" } else { "checklist_unticked" };
            let rec = incident_record(&inc, event).with("actor", actor).with("step", step).with("step_text", text);
            let _ = gw.audit.record_durable(rec).await;
            return Ok(inc);
        }
    }
    gw.incidents.tick(&gw.audit, id, step, done, actor).await
}

/// Resolves incident `id` with a note, audited.
pub async fn resolve(
    gw: &Gateway,
    id: &str,
    actor: &str,
    on_behalf_of: Option<&str>,
    note: &str,
) -> Result<Incident, IncidentError> {
    if let Some(fleet) = &gw.fleet {
        let r = change_fleet(fleet, id, |inc| {
            crate::incident::resolve_with(inc, actor, note);
            Ok(())
        })
        .await;
        if let Some(r) = r {
            let (inc, ()) = r?;
            let rec = incident_record(&inc, "resolved")
                .with("actor", actor)
                .with_opt("on_behalf_of", on_behalf_of)
                .with("note", note);
            let _ = gw.audit.record_durable(rec).await;
            return Ok(inc);
        }
    }
    gw.incidents.resolve(&gw.audit, id, actor, on_behalf_of, note).await
}

/// Fleet mode, PostgreSQL reachable again: merges the incidents recorded locally meanwhile into the
/// fleet book (inserted, or joined into the open one) and drops them from the file. Their plans
/// ran already (into the local override, replayed by the switch sync): nothing runs again.
pub async fn merge_local(gw: &Gateway) {
    let Some(fleet) = &gw.fleet else { return };
    let local = gw.incidents.local_incidents().await;
    if local.is_empty() {
        return;
    }
    let mut merged = Vec::new();
    for inc in &local {
        match crate::fleet::incidents::merge(fleet, inc).await {
            Ok(to) => {
                tracing::info!(local = %inc.id, fleet = %to, "local incident merged into the fleet book");
                let rec = incident_record(inc, "merged").with("into", to.as_str());
                gw.audit.record(rec).await;
                merged.push(inc.id.clone());
            }
            Err(e) => {
                tracing::warn!(local = %inc.id, error = %e, "local incident not merged yet");
                break;
            }
        }
    }
    if !merged.is_empty() {
        if let Err(e) = gw.incidents.drop_local(&merged).await {
            tracing::error!(error = %e, "merged local incidents not dropped from the file");
        }
    }
}

/// Runs `trigger`'s plan automatically for incident `id`: everything when `corroborated`, the
/// principal-scoped steps only otherwise.
async fn contain(
    gw: &Gateway,
    policy: &Policy,
    trigger: &Trigger,
    id: &str,
    target: &Target,
    corroborated: Option<String>,
) -> Taken {
    let reason = format!("{id}: {} ({}) automatic containment", trigger.name, trigger.severity.as_str());
    let defer = corroborated.is_none();
    match run_plan(gw, policy, &trigger.plan, target, &reason, "firebreak", Some(id), defer).await {
        Ok(mut t) => {
            t.corroborated_by = corroborated.filter(|_| t.actions.iter().any(|a| !a.is_principal_scoped()));
            if !t.awaiting_operator.is_empty() {
                tracing::warn!(incident = id, trigger = %trigger.name, steps = t.awaiting_operator.len(),
                    "gateway-wide containment not corroborated: awaiting an operator");
            }
            t
        }
        Err(e) => Taken {
            plan: trigger.plan.clone(),
            actor: "firebreak".into(),
            time: now_rfc3339(),
            actions: Vec::new(),
            version: None,
            credentials_marked_for_rotation: false,
            error: Some(e.to_string()),
            awaiting_operator: Vec::new(),
            corroborated_by: None,
        },
    }
}

/// A plan expanded for its target: the batch it applies and what it leaves to an operator.
#[derive(Debug, Clone)]
pub struct Expanded {
    /// The plan's name.
    pub plan: String,
    /// The actions it applies, as one batch.
    pub actions: Vec<Action>,
    /// Gateway-wide steps held back for an operator (`principal_only`).
    pub awaiting_operator: Vec<Action>,
    /// Whether it marks provider credentials for rotation.
    pub rotate_credentials: bool,
}

/// Runs a containment plan for `target` as one atomic batch, and audits it (`kind: switch`, with the
/// plan's name; `kind: rotation, event: marked` when the plan marks credentials for rotation). With
/// `principal_only`, the plan's gateway-wide steps are not applied but returned in
/// `awaiting_operator`.
#[allow(clippy::too_many_arguments)]
pub async fn run_plan(
    gw: &Gateway,
    policy: &Policy,
    plan_name: &str,
    target: &Target,
    reason: &str,
    actor: &str,
    incident: Option<&str>,
    principal_only: bool,
) -> Result<Taken, PlanError> {
    let expanded = expand_plan(gw, policy, plan_name, target, principal_only)?;
    apply_plan(gw, expanded, reason, actor, incident, |r| r).await
}

/// The actions plan `plan_name` takes for `target` now (its `{sessions}` are the user's recent
/// sessions at this moment), without applying them.
pub fn expand_plan(
    gw: &Gateway,
    policy: &Policy,
    plan_name: &str,
    target: &Target,
    principal_only: bool,
) -> Result<Expanded, PlanError> {
    let plan = policy.incidents.plans.get(plan_name).ok_or_else(|| {
        PlanError::Unknown(plan_name.into(), policy.incidents.plans.keys().cloned().collect::<Vec<_>>().join(", "))
    })?;
    if target.user.is_none() && target.tenant.is_none() && target.session.is_none() && target.key_id.is_none() {
        return Err(PlanError::NoTarget);
    }
    // `{sessions}`: every recent session of the user, and the one the plan was run for.
    let mut target = target.clone();
    if let Some(user) = &target.user {
        for s in gw.incidents.sessions_of(user) {
            if !target.sessions.contains(&s) {
                target.sessions.push(s);
            }
        }
    }
    if let Some(s) = &target.session {
        if !target.sessions.contains(s) {
            target.sessions.push(s.clone());
        }
    }
    let mut actions = plan.actions_for(&target).map_err(|e| PlanError::Template(plan_name.into(), e))?;
    let mut awaiting_operator = Vec::new();
    if principal_only {
        (actions, awaiting_operator) = actions.into_iter().partition(Action::is_principal_scoped);
    }
    Ok(Expanded { plan: plan_name.into(), actions, awaiting_operator, rotate_credentials: plan.rotate_credentials })
}

/// Applies an expanded plan as one batch and audits it; `mark` adds fields to its records (who
/// approved it, under the two-person rule).
pub async fn apply_plan(
    gw: &Gateway,
    expanded: Expanded,
    reason: &str,
    actor: &str,
    incident: Option<&str>,
    mark: impl Fn(Record) -> Record,
) -> Result<Taken, PlanError> {
    let Expanded { plan: plan_name, actions, awaiting_operator, rotate_credentials } = expanded;
    let mut taken = Taken {
        plan: plan_name.clone(),
        actor: actor.into(),
        time: now_rfc3339(),
        actions: actions.clone(),
        version: None,
        credentials_marked_for_rotation: rotate_credentials,
        error: None,
        awaiting_operator,
        corroborated_by: None,
    };
    if !actions.is_empty() {
        let batch = Batch { actions, reason: reason.into(), actor: Some(actor.into()), expect_version: None };
        let applied = gw.apply(&batch).await?;
        gw.metrics.set_switch_version(applied.after.version);
        taken.version = Some(applied.after.version);
        let rec = Record::new("switch")
            .with("actor", actor)
            .with("reason", reason)
            .with("before_version", applied.before)
            .with("after_version", applied.after.version)
            .with("actions", serde_json::to_value(&batch.actions).unwrap_or(Value::Null))
            .with("plan", plan_name.as_str())
            .with_opt("incident", incident);
        if let Err(e) = gw.audit.record_durable(mark(rec)).await {
            tracing::error!(error = %e, "containment applied but its audit record failed");
            taken.error = Some(format!("applied, but its audit record could not be made durable: {e}"));
        }
        tracing::warn!(plan = %plan_name, actor, version = applied.after.version, "containment plan applied");
    }
    if rotate_credentials {
        let rec = Record::new("rotation")
            .with("event", "marked")
            .with("actor", actor)
            .with("reason", reason)
            .with("plan", plan_name.as_str())
            .with_opt("incident", incident);
        let _ = gw.audit.record_durable(mark(rec)).await;
    }
    Ok(taken)
}
