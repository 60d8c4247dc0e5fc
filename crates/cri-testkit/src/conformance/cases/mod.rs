//! The cases, one module per area.

mod container;
mod errors;
mod events;
mod exec;
mod idempotence;
mod image;
mod kubelet;
mod logs;
mod mounts;
mod namespaces;
mod network;
mod resources;
mod runtime;
mod sandbox;
mod security;
mod stats;
mod streaming;

use super::Case;

/// Declares a case: `case!("area", "name", "what it verifies", async_fn)`.
macro_rules! case {
    ($area:literal, $name:literal, $description:literal, $body:path) => {
        $crate::conformance::Case {
            area: $area,
            name: $name,
            description: $description,
            run: |ctx| Box::pin($body(ctx)),
        }
    };
}
pub(crate) use case;

/// Every case, area by area.
pub(super) fn all() -> Vec<Case> {
    [
        runtime::cases(),
        sandbox::cases(),
        container::cases(),
        image::cases(),
        idempotence::cases(),
        errors::cases(),
        streaming::cases(),
        exec::cases(),
        events::cases(),
        resources::cases(),
        mounts::cases(),
        network::cases(),
        logs::cases(),
        stats::cases(),
        kubelet::cases(),
        security::cases(),
        namespaces::cases(),
    ]
    .concat()
}
