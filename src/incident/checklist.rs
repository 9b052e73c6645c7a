//! The investigation checklist of each trigger, from the incident playbooks.

/// The steps an investigator follows for incidents of `trigger`.
pub fn for_trigger(trigger: &str) -> Vec<&'static str> {
    let mut steps: Vec<&'static str> = match trigger {
        "credential_leakage_confirmed" => vec![
            "Identify which credential or canary leaked (rule id in the evidence) and where it came from",
            "Rotate the affected provider credential(s): `firebreak admin rotate-all` or rotate-credential",
            "If a canary leaked, rotate the system prompt and its canary",
            "Sweep logs and stores for the secret: `firebreak scan PATH…`",
            "Review the user's other sessions and requests in the window (`firebreak report --since 24h`)",
            "Decide when to lift safe mode and the tool disable; unblock the user only after review",
        ],
        "unauthorized_tool_execution" => vec![
            "Identify the tool and the refused arguments (rule id in the evidence)",
            "Check whether any side effect happened upstream before the refusal (MCP server logs)",
            "Find the prompt or tool result that steered the model (indirect injection?)",
            "Tighten the role's tool allowlist or argument constraints; replay the payload",
            "Lift safe mode and re-enable tools once the cause is fixed",
        ],
        "bulk_data_extraction" => vec![
            "Confirm the volume of data tool calls and which tools/servers were used",
            "Determine what data was returned and to whom (tenant, sessions)",
            "Contact the data owner; assess notification duties",
            "Lower the user's rate limit or the level; review the role's data tools",
        ],
        "sustained_injection_campaign" => vec![
            "Review the injection signatures that matched and their sources (user input or tool results)",
            "Check whether any attempt got through (flagged but not blocked)",
            "Identify the account owner; decide on revoking the key",
            "Add new signatures seen in the campaign; replay the payloads",
        ],
        "system_prompt_exposure" | "partial_prompt_extraction" => vec![
            "Review the responses that contained prompt fragments (request ids in the evidence)",
            "Assess what the exposed instructions reveal (tools, data, guardrails)",
            "Rotate the managed system prompt and its canary",
            "Add the extraction payload to the replay suite",
        ],
        "cross_user_data_leakage" => vec![
            "Identify whose identifiers appeared and in which response",
            "Find the shared context (cache, retrieval index, session) that mixed tenants",
            "Notify the affected tenant per policy; preserve the audit trail",
        ],
        "tool_definition_changed" => vec![
            "Review the pending definition and its diff against the pinned one (`admin pending-tools`)",
            "Contact the MCP server's owner; confirm whether the change is legitimate",
            "Approve the reviewed hash (`admin approve-tool --hash`), reject it, or isolate the server",
        ],
        "anomalous_probing" => {
            vec!["Review the distinct refusals the user triggered", "Watch for escalation to a higher-severity trigger"]
        }
        _ => vec!["Review the evidence"],
    };
    steps.push("Verify the audit chain (`firebreak audit verify`) and attach `firebreak report` to the ticket");
    steps
}
