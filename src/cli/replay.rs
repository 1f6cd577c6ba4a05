//! `surge replay`: the keep-alive policies on a production trace (`crate::replay`).

use std::io::Write;
use std::path::Path;

use crate::control::keepalive::PolicySpec;
use crate::replay::{self, plot, Options};

/// Print one line per policy: a table, or one JSON object per line with `json`; with
/// `plot`, also draw the Pareto chart (the policies over a sweep of fixed keep-alives).
pub fn run(opts: &Options, json: bool, plot_to: Option<&Path>) -> anyhow::Result<()> {
    let (shown, bar) = with_progress(opts, "minute model");
    let r = replay::run_minute(&shown)?;
    bar.finish_and_clear();
    if let Some(path) = plot_to {
        let curve =
            |policies| Ok(replay::run_minute(&opts.with_policies(policies, false))?.reports);
        let sweep = (&plot::SWEEP[..], &plot::PREDICTIVE_SWEEP[..]);
        chart(opts, path, "minute", sweep, &r.reports, curve)?;
    }
    let mut out = std::io::stdout().lock();
    if json {
        return json_lines(&mut out, &r.reports);
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
    let w = name_width(r.reports.iter().map(|p| p.policy.as_str()));
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

/// `--model live`: the same, on the live autoscaler's code (`crate::replay::live`).
pub fn run_live(
    opts: &Options,
    cold_start: std::time::Duration,
    seed: u64,
    json: bool,
    plot_to: Option<&Path>,
) -> anyhow::Result<()> {
    let cfg = crate::manifest::config::HostConfig::embedded();
    let params = live_params(&cfg, cold_start, seed);
    let (shown, bar) = with_progress(opts, "live model");
    let reports = replay::run_live(&shown, &params)?;
    bar.finish_and_clear();
    if let Some(path) = plot_to {
        let curve = |policies| {
            let r = replay::run_live(&opts.with_policies(policies, true), &params)?;
            Ok(r.iter().map(replay::LiveReport::as_point).collect())
        };
        let points: Vec<_> = reports.iter().map(replay::LiveReport::as_point).collect();
        let sweep = (&plot::LIVE_SWEEP[..], &plot::LIVE_PREDICTIVE_SWEEP[..]);
        chart(opts, path, "live", sweep, &points, curve)?;
    }
    let mut out = std::io::stdout().lock();
    if json {
        return json_lines(&mut out, &reports);
    }
    writeln!(
        out,
        "{} functions, the live model (the host's autoscaler on simulated time; starts take {:?}, seed {seed})",
        reports.first().map_or(0, |p| p.functions),
        cold_start
    )?;
    let w = name_width(reports.iter().map(|p| p.policy.as_str()));
    writeln!(
        out,
        "{:<w$} {:>12} {:>9} {:>8} {:>10} {:>10} {:>10} {:>13} {:>12} {:>6}",
        "POLICY",
        "INVOCATIONS",
        "COLD",
        "COLD %",
        "STARTS",
        "WAIT P50",
        "WAIT P99",
        "IDLE INST-S",
        "WASTED GB-S",
        "PEAK"
    )?;
    for p in &reports {
        writeln!(
            out,
            "{:<w$} {:>12} {:>9} {:>8.3} {:>10} {:>8.2}ms {:>8.2}ms {:>13.0} {:>12.0} {:>6}",
            p.policy,
            p.invocations,
            p.cold_starts,
            p.cold_share * 100.0,
            p.instance_starts,
            p.added_latency_p50_ms,
            p.added_latency_p99_ms,
            p.idle_instance_s,
            p.wasted_gb_s,
            p.peak_instances
        )?;
    }
    Ok(())
}

/// The live model's parameters: the embedded host config's autoscaler tick and keep-alive.
fn live_params(
    cfg: &crate::manifest::HostConfig,
    cold_start: std::time::Duration,
    seed: u64,
) -> replay::live::LiveParams {
    replay::live::LiveParams {
        cold_start,
        seed,
        tick: cfg.autoscaler.tick.0,
        keepalive: cfg.keepalive.clone(),
    }
}

/// One JSON object per report and line.
fn json_lines<T: serde::Serialize>(out: &mut impl Write, reports: &[T]) -> anyhow::Result<()> {
    for r in reports {
        writeln!(out, "{}", serde_json::to_string(r)?)?;
    }
    Ok(())
}

/// `--model cluster`: the trace placed across nodes (`crate::replay::cluster`).
pub fn run_cluster(
    opts: &Options,
    cold_start: std::time::Duration,
    seed: u64,
    nodes: usize,
    cores: u64,
    json: bool,
) -> anyhow::Result<()> {
    let cfg = crate::manifest::config::HostConfig::embedded();
    let params = live_params(&cfg, cold_start, seed);
    let c = replay::cluster::ClusterParams {
        nodes,
        cores,
        balance: cfg.cluster.balance,
    };
    let (shown, bar) = with_progress(opts, "cluster model");
    let reports = replay::cluster::run(&shown, &params, c)?;
    bar.finish_and_clear();
    let mut out = std::io::stdout().lock();
    if json {
        return json_lines(&mut out, &reports);
    }
    writeln!(
        out,
        "{} functions on {nodes} nodes of {cores} cores, each pool on the live model ({}; starts take {:?}, seed {seed})",
        reports.first().map_or(0, |r| r.functions),
        reports.first().map_or("", |r| r.policy.as_str()),
        cold_start
    )?;
    writeln!(
        out,
        "{:<10} {:>12} {:>9} {:>8} {:>7} {:>10} {:>10} {:>12} {:>13} {:>14} {:>10}",
        "PLACEMENT",
        "INVOCATIONS",
        "COLD",
        "COLD %",
        "POOLS",
        "STARTS",
        "WAIT P99",
        "WASTED GB-S",
        "BUSIEST NODE",
        "IMBALANCE P99",
        "PEAK/NODE"
    )?;
    for r in &reports {
        writeln!(
            out,
            "{:<10} {:>12} {:>9} {:>8.3} {:>7} {:>10} {:>8.2}ms {:>12.0} {:>12.1}% {:>14.2} {:>10}",
            r.placement.as_str(),
            r.invocations,
            r.cold_starts,
            r.cold_share * 100.0,
            r.pools,
            r.instance_starts,
            r.added_latency_p99_ms,
            r.wasted_gb_s,
            r.busiest_node_share * 100.0,
            r.imbalance_p99,
            r.peak_node_in_flight
        )?;
    }
    Ok(())
}

/// Draw the Pareto chart of `points` over a sweep of fixed keep-alives (`sweep.0`, in
/// minutes) and, when the predictive policy is among them, its own curve (`sweep.1`: what a
/// cold start is worth, GB-minutes). `replay` runs a list of policies on the model at hand.
fn chart(
    opts: &Options,
    path: &Path,
    model: &str,
    sweep: (&[u32], &[f64]),
    points: &[replay::PolicyReport],
    replay: impl Fn(Vec<PolicySpec>) -> anyhow::Result<Vec<replay::PolicyReport>>,
) -> anyhow::Result<()> {
    let fixed = replay(sweep.0.iter().map(|&m| PolicySpec::Fixed(m)).collect())?;
    let with_predictive = opts
        .policies
        .iter()
        .any(|p| matches!(p, PolicySpec::Predictive(_)));
    let predictive = if with_predictive {
        replay(
            sweep
                .1
                .iter()
                .map(|&w| PolicySpec::Predictive(Some(w)))
                .collect(),
        )?
    } else {
        Vec::new()
    };
    let title = format!(
        "Keep-alive policies on {} ({} functions, {model} model)",
        opts.invocations
            .file_name()
            .map_or("the trace".into(), |n| n.to_string_lossy()),
        points.first().map_or(0, |p| p.functions)
    );
    plot::pareto(path, &title, &fixed, &predictive, points).map_err(anyhow::Error::msg)
}

/// `opts` with a progress bar over its functions on stderr: drawn on a terminal; else a
/// plain line at each tenth. The total is `--functions`, else the file's lines.
fn with_progress(opts: &Options, what: &str) -> (Options, indicatif::ProgressBar) {
    use std::io::IsTerminal;
    let lines = || {
        std::fs::read(&opts.invocations)
            .map(|b| b.iter().filter(|&&c| c == b'\n').count().saturating_sub(1))
            .unwrap_or(0)
    };
    let total = opts.functions.map_or_else(lines, |n| n.min(lines())) as u64;
    let bar = if std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:40}] {pos}/{len} functions, {elapsed} (eta {eta})",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        b.set_message(format!("replay, {what}"));
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let (b, plain) = (bar.clone(), !std::io::stderr().is_terminal());
    let done = std::sync::atomic::AtomicU64::new(0);
    let what = what.to_string();
    let progress = replay::Progress::new(move || {
        b.inc(1);
        let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let step = (total / 10).max(1);
        if plain && (n.is_multiple_of(step) || n == total) {
            eprintln!("replay, {what}: {n}/{total} functions");
        }
    });
    let mut shown = opts.with_policies(opts.policies.clone(), opts.durations.is_some());
    shown.progress = progress;
    (shown, bar)
}

/// The policy column's width: its longest name, at least the header's.
fn name_width<'a>(names: impl Iterator<Item = &'a str>) -> usize {
    names.map(str::len).max().unwrap_or(0).max(12)
}
