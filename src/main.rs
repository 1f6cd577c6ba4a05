//! The `surge` binary: the CLI over the `surge` library.

#![deny(unsafe_code)]

use surge::cli;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "surge",
    version,
    about = "A Lambda-style host for WebAssembly functions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct ClientArgs {
    /// The server's URL (else SURGE_URL, else <state-dir>/server-url).
    #[arg(long, global = true)]
    server: Option<String>,
    /// Where `surge serve` keeps its state (for the server URL and the admin token).
    #[arg(long, global = true, default_value = ".surge")]
    state_dir: PathBuf,
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Every entry, oldest first: id, request id, condition, attempts, time, destination.
    List {
        name: String,
        /// One JSON object per entry and line (requestId, condition,
        /// approximateInvokeCount, destination, timestamp, record).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// One entry with its record, as JSON.
    Show {
        name: String,
        id: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Put entries back into the queue, due now (all of the function's, or --id's).
    Replay {
        name: String,
        #[arg(long)]
        id: Option<i64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete every entry of the function's.
    Purge {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Run the host: deploy every manifest under functions_dir and serve them.
    Serve {
        /// A config file (default: config/surge.toml when present, else the embedded defaults).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on, e.g. 127.0.0.1:8080 (port 0 picks one).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// State directory (deployments, compile cache, admin token).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Folder of functions/<name>/function.toml to deploy at start.
        #[arg(long)]
        functions_dir: Option<PathBuf>,
        /// The host's own log lines on stderr: `text`, or `json` (one object a line, with
        /// the structured fields: function, version, pid, request id…).
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
    },
    /// A function's invocation records: Lambda's START / END / REPORT lines (duration,
    /// billed duration, memory, cold start and its init time) with the guest's stderr.
    Logs {
        name: String,
        /// Keep the stream open and print each new record as it is stored.
        #[arg(long, short)]
        follow: bool,
        /// Only records from this far back (e.g. 30s, 10m, 2h).
        #[arg(long, default_value = "10m")]
        since: String,
        /// Only failed invocations (errors, traps, timeouts, memory, throttles).
        #[arg(long)]
        errors: bool,
        /// One JSON object per record and line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print the dashboard's URL (a link that logs this browser in with the admin token).
    Dashboard {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Deploy a function (or a new version of one) from its manifest.
    Deploy {
        manifest: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List deployed functions.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove a function.
    Remove {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Invoke a function through the Lambda Invoke API and print its response.
    Invoke {
        name: String,
        /// The event: JSON text, or @file.
        #[arg(long)]
        data: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Resize a function's per-instance quota in place (no restart), and pin it: the
    /// vertical recommender leaves a pinned dimension alone until it is set to `auto`.
    Resize {
        name: String,
        /// Memory per instance (e.g. 256Mi), or `auto` to unpin.
        #[arg(long)]
        memory: Option<String>,
        /// CPU per instance (e.g. 500m), or `auto` to unpin.
        #[arg(long)]
        cpu: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show the host and every function's pool.
    Status {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Read and act on a function's dead-letter store: the records of asynchronous
    /// invocations that failed for good (or that a destination addressed to it).
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Try everything a sandbox must never do (open a host file, connect, ptrace, mount,
    /// exec, signal the host) from inside a process locked down as a sandbox is; fails if
    /// any of them succeeds.
    SandboxCheck {
        /// A config file (its [sandbox] uid and gid), as for `serve`.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Replay a production trace (the Azure Functions trace's schema) under keep-alive
    /// policies, with the live host's policy code on simulated time, and report cold
    /// starts and wasted memory per policy.
    Replay {
        /// Invocations per minute: HashFunction,HashOwner,HashApp, then one column a minute.
        #[arg(long)]
        invocations: PathBuf,
        /// Memory per app (AverageAllocatedMb); without it every function counts 1 GB.
        #[arg(long)]
        memory: Option<PathBuf>,
        /// Execution-time percentiles per function (checked; the minute model does not use them).
        #[arg(long)]
        durations: Option<PathBuf>,
        /// The model of time: `minute`, Shahrad et al.'s (USENIX ATC'20), or `live`: the live
        /// autoscaler's own code on simulated seconds (needs --durations).
        #[arg(long, value_enum, default_value = "minute")]
        model: ReplayModel,
        /// Comma-separated policies: fixed:<minutes>, hybrid, kpa (the live autoscaler's), predictive (the host config's costs) or predictive:<GB-minutes a cold start is worth>.
        #[arg(
            long,
            default_value = "fixed:10,fixed:20,fixed:60,fixed:120,fixed:240,hybrid,kpa,predictive"
        )]
        policy: String,
        /// Only the first N functions of the file.
        #[arg(long)]
        functions: Option<usize>,
        /// One JSON object per policy and line.
        #[arg(long)]
        json: bool,
        /// Also draw the Pareto chart (wasted memory against cold starts) into this SVG file.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// `--model live`: how long an instance takes to start (e.g. 10ms, 1s).
        #[arg(long, default_value = "10ms")]
        cold_start: String,
        /// `--model live`: the seed of the arrival times and execution times.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// `--model cluster`: the nodes the trace is placed on.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// `--model cluster`: each node's cores.
        #[arg(long, default_value_t = 2)]
        cores: u64,
    },
    /// Internal: the fork server that starts every sandbox (and `sandbox-check`'s probes).
    #[command(name = "__zygote", hide = true)]
    Zygote,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReplayModel {
    Minute,
    Live,
    /// The trace placed across `--nodes` nodes (surge's placement, plain consistent
    /// hashing, random), each pool on the live model.
    Cluster,
}

fn main() {
    let cli = Cli::parse();
    if let Command::Zygote = cli.command {
        init_tracing(LogFormat::Text);
        surge_runtime::sandbox::zygote::run();
    }
    init_tracing(match &cli.command {
        Command::Serve { log_format, .. } => *log_format,
        _ => LogFormat::Text,
    });
    if let Command::Replay {
        invocations,
        memory,
        durations,
        model,
        policy,
        functions,
        json,
        plot,
        cold_start,
        seed,
        nodes,
        cores,
    } = cli.command
    {
        // No runtime: the replay is arithmetic on plain threads.
        let run = || -> anyhow::Result<()> {
            let policies = surge::control::keepalive::PolicySpec::parse_list(&policy)
                .map_err(anyhow::Error::msg)?;
            let opts = surge::replay::Options {
                invocations,
                memory,
                durations,
                policies,
                functions,
                cold_start_gb_s: surge::replay::embedded_cold_start_gb_s(),
                progress: Default::default(),
            };
            let cold_start: surge::manifest::units::Span = cold_start
                .parse()
                .map_err(|e| anyhow::anyhow!("--cold-start {cold_start:?}: {e}"))?;
            match model {
                ReplayModel::Minute => cli::replay::run(&opts, json, plot.as_deref()),
                ReplayModel::Cluster => {
                    if opts.durations.is_none() {
                        anyhow::bail!(
                            "--model cluster draws execution times from each function's percentiles: give --durations (the trace's *_run.csv)"
                        );
                    }
                    if !(1..=1000).contains(&nodes) || cores == 0 {
                        anyhow::bail!("--nodes must be 1 to 1000 and --cores at least 1");
                    }
                    cli::replay::run_cluster(&opts, cold_start.0, seed, nodes, cores, json)
                }
                ReplayModel::Live => {
                    if opts.durations.is_none() {
                        anyhow::bail!(
                            "--model live draws execution times from each function's percentiles: give --durations (the trace's *_run.csv)"
                        );
                    }
                    cli::replay::run_live(&opts, cold_start.0, seed, json, plot.as_deref())
                }
            }
        };
        if let Err(e) = run() {
            fail(e);
        }
        return;
    }
    // `serve` reads its config first: the config says how many threads the runtime gets.
    let serve_config = match &cli.command {
        Command::Serve { config, .. } => match cli::serve::load_config(config.as_deref()) {
            Ok(c) => Some(c),
            Err(e) => fail(e),
        },
        _ => None,
    };
    let threads = serve_config.as_ref().map_or(1, |c| {
        surge::manifest::config::auto_threads(c.gateway_threads)
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(async move {
        use cli::client;
        match cli.command {
            Command::Serve {
                config: _,
                listen,
                state_dir,
                functions_dir,
                log_format: _,
            } => {
                cli::serve::run(cli::serve::ServeArgs {
                    config: serve_config.expect("loaded above"),
                    listen,
                    state_dir,
                    functions_dir,
                })
                .await
            }
            Command::Deploy {
                manifest,
                client: c,
            } => client::deploy(&client::find_target(c.server, &c.state_dir)?, &manifest).await,
            Command::List { client: c } => {
                client::list(&client::find_target(c.server, &c.state_dir)?).await
            }
            Command::Remove { name, client: c } => {
                client::remove(&client::find_target(c.server, &c.state_dir)?, &name).await
            }
            Command::Invoke {
                name,
                data,
                client: c,
            } => client::invoke(&client::find_target(c.server, &c.state_dir)?, &name, data).await,
            Command::Resize {
                name,
                memory,
                cpu,
                client: c,
            } => {
                let t = client::find_target(c.server, &c.state_dir)?;
                client::resize(&t, &name, memory.as_deref(), cpu.as_deref()).await
            }
            Command::Status { client: c } => {
                client::status(&client::find_target(c.server, &c.state_dir)?).await
            }
            Command::Logs {
                name,
                follow,
                since,
                errors,
                json,
                client: c,
            } => {
                let t = client::find_target(c.server, &c.state_dir)?;
                cli::logs::run(
                    &t,
                    &cli::logs::LogsArgs {
                        name: &name,
                        follow,
                        since: Some(&since),
                        errors,
                        json,
                    },
                )
                .await
            }
            Command::Dashboard { client: c } => {
                client::dashboard(&client::find_target(c.server, &c.state_dir)?)
            }
            Command::Dlq { command } => match command {
                DlqCommand::List {
                    name,
                    json,
                    client: c,
                } => {
                    client::dlq_list(&client::find_target(c.server, &c.state_dir)?, &name, json)
                        .await
                }
                DlqCommand::Show {
                    name,
                    id,
                    client: c,
                } => {
                    client::dlq_show(&client::find_target(c.server, &c.state_dir)?, &name, id).await
                }
                DlqCommand::Replay {
                    name,
                    id,
                    client: c,
                } => {
                    client::dlq_replay(&client::find_target(c.server, &c.state_dir)?, &name, id)
                        .await
                }
                DlqCommand::Purge { name, client: c } => {
                    client::dlq_purge(&client::find_target(c.server, &c.state_dir)?, &name).await
                }
            },
            Command::SandboxCheck { config } => {
                let cfg = cli::serve::load_config(config.as_deref())?;
                cli::check::run(&cfg.sandbox).await
            }
            Command::Zygote | Command::Replay { .. } => unreachable!("handled above"),
        }
    });
    if let Err(e) = result {
        fail(e);
    }
}

fn fail(e: anyhow::Error) -> ! {
    eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
    std::process::exit(1);
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        // One JSON object a line: timestamp, level, the event's fields (function,
        // version, pid, request_id, error…) at the top level with the message.
        LogFormat::Json => b.json().flatten_event(true).with_current_span(false).init(),
        LogFormat::Text => b.init(),
    }
}
