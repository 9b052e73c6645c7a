//! The incident book in PostgreSQL: one open incident per (trigger, principal, server) fleet-wide
//! (a partial unique index), joined by every replica; plans run once per firing.
