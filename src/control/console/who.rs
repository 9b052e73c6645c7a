//! Who is logged in to the console, and what each console action needs.

/// What an identity may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads state, incidents and the audit trail.
    Viewer,
    /// Containment switches, plans, prompt and canary rotations, incident checklists.
    Responder,
    /// Everything: policy reload, credential rotation, tool approvals.
    Admin,
}

impl Role {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Responder => "responder",
            Role::Admin => "admin",
        }
    }
}

/// An authenticated operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Who (recorded as the actor).
    pub id: String,
    /// What they may do.
    pub role: Role,
}
