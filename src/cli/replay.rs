//! `surge replay`: the keep-alive policies on a production trace (`crate::replay`).

use std::io::Write;
use std::path::Path;

use crate::control::keepalive::PolicySpec;
use crate::replay::{self, plot, Options};

/// Print one line per policy: a table, or one JSON object per line with `json`; with
/// `plot`, also draw the Pareto chart (the policies over a sweep of fixed keep-alives).
pub fn run(opts: &Options, json: bool, plot_to: Option<&Path>) -> anyhow::Result<()> {
    let r = replay::run_minute(opts)?;
    if let Some(path) = plot_to {
        let curve = |policies: Vec<PolicySpec>| {
            replay::run_minute(&Options {
                invocations: opts.invocations.clone(),
                memory: opts.memory.clone(),
                durations: None,
                policies,
                functions: opts.functions,
                cold_start_gb_s: opts.cold_start_gb_s,
            })
        };
        let sweep = curve(plot::SWEEP.iter().map(|&m| PolicySpec::Fixed(m)).collect())?;
        // The predictive policy's own curve, when it is replayed: its cost swept.
        let predictive = if opts
            .policies
            .iter()
            .any(|p| matches!(p, PolicySpec::Predictive(_)))
        {
            let ws = plot::PREDICTIVE_SWEEP.iter();
            curve(ws.map(|&w| PolicySpec::Predictive(Some(w))).collect())?.reports
        } else {
            Vec::new()
        };
        let title = format!(
            "Keep-alive policies on {} ({} functions, minute model)",
            opts.invocations
                .file_name()
                .map_or("the trace".into(), |n| n.to_string_lossy()),
            r.reports.first().map_or(0, |p| p.functions)
        );
        plot::pareto(path, &title, &sweep.reports, &predictive, &r.reports)
            .map_err(anyhow::Error::msg)?;
    }
    let mut out = std::io::stdout().lock();
    if json {
        for p in &r.reports {
            writeln!(out, "{}", serde_json::to_string(p)?)?;
        }
        return Ok(());
    }
    writeln!(
        out,
        "{} functions, {} minutes, the minute model (Shahrad et al., USENIX ATC'20){}",
        r.reports.first().map_or(0, |p| p.functions),
        r.minutes,
        r.with_durations
            .map(|n| format!("; {n} with execution times"))
            .unwrap_or_default()
    )?;
    let w = r
        .reports
        .iter()
        .map(|p| p.policy.len())
        .max()
        .unwrap_or(0)
        .max(12);
    writeln!(
        out,
        "{:<w$} {:>12} {:>11} {:>8} {:>13} {:>13} {:>14}",
        "POLICY", "INVOCATIONS", "COLD", "COLD %", "FN COLD% P50", "FN COLD% P75", "WASTED GB-MIN"
    )?;
    for p in &r.reports {
        writeln!(
            out,
            "{:<w$} {:>12} {:>11} {:>8.3} {:>13.2} {:>13.2} {:>14.1}",
            p.policy,
            p.invocations,
            p.cold_starts,
            p.cold_share * 100.0,
            p.cold_share_p50 * 100.0,
            p.cold_share_p75 * 100.0,
            p.wasted_gb_min
        )?;
    }
    Ok(())
}
