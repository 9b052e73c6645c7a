//! The AI surface: the phase-by-phase request pipeline for the provider APIs (chat, messages,
//! responses, embeddings, models), policy decisions on the request, the upstream call, the
//! streaming pump and the tool-call filter. It sits on `gateway` (the shared runtime) and `http`
//! (the shared plumbing); `server` routes requests to it.

pub mod decide;
mod pipeline;
mod stream;
pub mod upstream;

pub use pipeline::handle;
