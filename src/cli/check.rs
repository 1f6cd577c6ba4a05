//! `surge sandbox-check`: try each thing a sandbox must never do, from inside a process
//! spawned and locked down exactly as a sandbox is, and report what stopped it. The host
//! runs the same probe once at start (with nothing to try) to say which walls this kernel
//! allows.

use anyhow::Context;

use crate::control::supervisor::process::{self, ProbeOutcome};
use crate::control::supervisor::zygote::{Placement, Zygote};
use crate::manifest::config::SandboxConfig;
use surge_runtime::sandbox::probe::ACTIONS;

/// Where the fork server runs: this binary, as the configured sandbox user.
pub fn placement(cfg: &SandboxConfig) -> anyhow::Result<Placement> {
    Ok(Placement {
        exe: std::env::current_exe().context("finding the surge binary")?,
        uid: cfg.uid,
        gid: cfg.gid,
    })
}

/// The walls this machine gives a sandbox, for the one start-up line, probed through the
/// host's own fork server. An error means a sandbox cannot start here at all (its seccomp
/// filter is not optional).
pub async fn walls(zygote: &Zygote) -> anyhow::Result<String> {
    let o = process::probe(zygote, "none")
        .await
        .context("sandboxes cannot be locked down on this machine")?;
    Ok(o.walls)
}

/// Every forbidden action, one line each; fails if any of them succeeded.
pub async fn run(cfg: &SandboxConfig) -> anyhow::Result<()> {
    let zygote = Zygote::new(placement(cfg)?);
    let mut outcomes: Vec<ProbeOutcome> = Vec::new();
    for action in ACTIONS {
        let o = process::probe(&zygote, action)
            .await
            .with_context(|| format!("probing {action}"))?;
        println!("{:<16} {}", o.action, o.result);
        outcomes.push(o);
    }
    if let Some(o) = outcomes.first() {
        println!("walls: {}", o.walls);
    }
    let breached: Vec<&str> = outcomes
        .iter()
        .filter(|o| !o.held())
        .map(|o| o.action.as_str())
        .collect();
    if !breached.is_empty() {
        anyhow::bail!("a sandbox could: {}", breached.join(", "));
    }
    Ok(())
}
