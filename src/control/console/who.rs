//! Who is logged in to the console: the admin identities of [`crate::control::identity`].

pub use crate::control::identity::{Identity, Role};
