//! The incident engine's side effects, on the gateway: an exchange's firings are turned into
//! incidents (opened or joined, audited, saved) and automatic containment (switch batches through
//! `Gateway::apply`). The engine (`incident`) only counts and decides which triggers fire; it never
//! reaches the gateway, so `incident` does not depend on `proxy`.

use serde_json::Value;

use super::Gateway;
use crate::audit::Record;
use crate::config::Policy;
use crate::facts::Facts;
use crate::incident::{
    checklist, incident_record, now_rfc3339, server_of, target_of, Evidence, Incident, PlanError, Status, Taken,
    Target, Trigger, MAX_EVIDENCE,
};
use crate::state::{Action, Batch};

/// Writes an exchange's audit `record` and lets the incident engine see its `facts`: the one call
/// the request path, the stream pump and the MCP gateway make when an exchange is finished.
/// Automatic containment is applied before it returns.
pub async fn audited(gw: &Gateway, facts: &Facts, record: Record) {
    let policy = gw.policy();
    // Signals → hits (pure), counted in the trigger windows (local, or the fleet's in Redis: one
    // round trip, and none for the common exchange without signals), then the firings.
    let obs = gw.incidents.signals(&policy, facts);
    let firings = if obs.is_empty() {
        Vec::new()
    } else {
        let counted = gw.windows.add_all(&obs.hits).await;
        gw.incidents.firings(&policy, obs, &counted)
    };
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
    let seq = if gw.incidents.joins_only(&firings, &target, server).await {
        gw.audit.record(record).await;
        None
    } else {
        gw.audit.record_durable(record).await.ok()
    };
    for f in firings {
        let ev = Evidence { audit_seq: seq, request_id: request_id.clone(), rule: f.rule, time: now_rfc3339() };
        fire(gw, &policy, &f.trigger, &target, server.map(str::to_owned), ev).await;
    }
}

/// Opens or joins the incident of `trigger` for `target`. An automatic trigger contains the
/// principal when the incident opens; its plan's gateway-wide steps run only when corroborated
/// (they are recorded as awaiting an operator otherwise, and run when a later firing into the
/// same incident is corroborated).
async fn fire(gw: &Gateway, policy: &Policy, trigger: &Trigger, target: &Target, server: Option<String>, ev: Evidence) {
    let auto = trigger.auto && policy.incidents.auto_contain;
    let corroborated = gw.incidents.corroboration(policy, trigger, target, server.as_deref(), &ev.rule);
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
        let id = format!("INC-{:05}", book.next);
        let mut inc = Incident {
            id: id.clone(),
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
        };
        tracing::warn!(incident = %id, severity = trigger.severity.as_str(), trigger = %trigger.name,
            user = target.user.as_deref(), rule = %ev.rule, "incident opened");
        gw.metrics.decision(&format!("incident.{}", trigger.name), "detect");
        // The incident record goes first so the switch record that follows can name it.
        let opened = incident_record(&inc, "opened").with("rule", ev.rule.as_str()).with("auto", auto);
        if let Err(e) = gw.audit.record_durable(opened).await {
            tracing::error!(error = %e, "incident opened but its audit record failed");
        }
        // The principal's recent exchanges (when `[forensics]` is on) become its evidence.
        gw.forensics.incident_opened(&inc);
        if auto {
            let taken = contain(gw, policy, trigger, &id, target, corroborated).await;
            if !taken.awaiting_operator.is_empty() {
                let rec = incident_record(&inc, "awaiting_operator")
                    .with("awaiting_operator", serde_json::to_value(&taken.awaiting_operator).unwrap_or(Value::Null));
                gw.audit.record(rec).await;
            }
            inc.actions.push(taken);
        }
        book.incidents.push(inc);
    }
    if let Err(e) = gw.incidents.save(&mut book).await {
        tracing::error!(error = %e, "incident file not written");
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
    let mut taken = Taken {
        plan: plan_name.into(),
        actor: actor.into(),
        time: now_rfc3339(),
        actions: actions.clone(),
        version: None,
        credentials_marked_for_rotation: plan.rotate_credentials,
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
            .with("plan", plan_name)
            .with_opt("incident", incident);
        if let Err(e) = gw.audit.record_durable(rec).await {
            tracing::error!(error = %e, "containment applied but its audit record failed");
            taken.error = Some(format!("applied, but its audit record could not be made durable: {e}"));
        }
        tracing::warn!(plan = plan_name, actor, version = applied.after.version, "containment plan applied");
    }
    if plan.rotate_credentials {
        let rec = Record::new("rotation")
            .with("event", "marked")
            .with("actor", actor)
            .with("reason", reason)
            .with("plan", plan_name)
            .with_opt("incident", incident);
        let _ = gw.audit.record_durable(rec).await;
    }
    Ok(taken)
}
