//! The one failure after which the lab runs a step once more: a fault
//! of the emulated machine, which the lab's code and its scenarios both
//! raise and the lab's runner tells apart.

/// A fault of the emulated machine, which no program of a guest or of
/// dom0 can cause, proven by what it left (a console's panic, a canary's
/// lost pages): the one failure after which the harness runs a step once
/// more, said on stderr as `xen lab: environment fault: ...` (see
/// docs/testing.md, "The soak").
#[derive(Debug)]
pub struct EnvironmentFault(pub String);

impl std::fmt::Display for EnvironmentFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EnvironmentFault {}
