//! Load generator for the benchmarks in BENCHMARKS.md: drives a running service over gRPC with
//! the generated client, in a closed loop (each caller sends its next call when the last one is
//! answered), and prints one table row per measurement. `bench/load.sh` starts the service, the
//! sandbox and this, and prints the whole table.
//!
//! Latency is recorded per call in an HdrHistogram (microseconds, 3 significant digits). Phases
//! end by letting every caller finish its call in flight, so counters read between phases (the
//! sandbox's request counts) belong to exactly one phase.

mod commit;
mod direct;
mod duplicate;
mod grpc;
mod measure;
mod results;
mod sandbox;
mod signup;
mod system;
mod verify;

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::{
    direct::direct,
    duplicate::duplicate,
    measure::header,
    signup::signup,
    system::{rss_kib, startup},
    verify::verify,
};

#[derive(Parser)]
#[command(about = "Load generator for certification-service (see bench/load.sh)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the table's header line.
    Header,
    /// Verify in a closed loop against certifications inserted into the sandbox.
    Verify(VerifyArgs),
    /// The floor: loadgen's own HTTP client straight at the sandbox (token once, then GET).
    Direct(DirectArgs),
    /// The signup path: Verify redeeming a session made beforehand and binding a new person.
    Signup(SignupArgs),
    /// The ratio table from the figures the other subcommands wrote to `--results`.
    Ratios {
        #[arg(long)]
        results: PathBuf,
    },
    /// CheckDuplicate by CI beside the bare indexed lookup on the same table, same client count.
    Duplicate(DuplicateArgs),
    /// Peak and current resident memory of a process.
    Rss {
        #[arg(long)]
        pid: u32,
        #[arg(long)]
        label: String,
        /// Record the peak (MiB) under this key in the results file.
        #[arg(long, requires = "results")]
        key: Option<String>,
        #[arg(long)]
        results: Option<PathBuf>,
    },
    /// Time from spawning the service to health SERVING, on a fresh SQLite file each run.
    Startup(StartupArgs),
    /// The record's statement alone, paced as Verify was, by pgbench: the commit floor.
    Commit(commit::CommitArgs),
}

#[derive(Args, Clone)]
struct LoadArgs {
    /// The service, `http://host:port`.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    addr: String,
    /// Concurrent callers.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// HTTP/2 connections the callers share (0: one per 100 callers).
    #[arg(long, default_value_t = 0)]
    connections: usize,
    /// Measured time.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Unmeasured load first: connections, pools and the token warm up.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Each call's deadline (grpc-timeout).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Append this scenario's figures to this file, for `loadgen ratios`, under `--key`.
    #[arg(long, requires = "key")]
    results: Option<PathBuf>,
    /// The scenario's name in the results file: `<key>_rate`, `<key>_p50`, `<key>_cpu_ms`.
    #[arg(long)]
    key: Option<String>,
}

#[derive(Args)]
struct DirectArgs {
    #[arg(long)]
    sandbox_url: String,
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Distinct certifications the callers cycle through.
    #[arg(long, default_value_t = 5000)]
    certifications: usize,
    #[arg(long, default_value = "direct GET at the sandbox")]
    label: String,
    #[arg(long, requires = "key")]
    results: Option<PathBuf>,
    #[arg(long)]
    key: Option<String>,
}

#[derive(Args)]
struct SignupArgs {
    #[command(flatten)]
    load: LoadArgs,
    #[arg(long)]
    sandbox_url: String,
    /// Signups measured (each a session and a certification made beforehand).
    #[arg(long, default_value_t = 10000)]
    signups: usize,
    /// Signups run first, unmeasured.
    #[arg(long, default_value_t = 1000)]
    warmup_signups: usize,
    #[arg(long, default_value = "signup: redeem + bind")]
    label: String,
    /// The service's process: report its CPU time per call.
    #[arg(long)]
    pid: Option<u32>,
}

#[derive(Args)]
struct VerifyArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// The sandbox's base URL, for inserting certifications and reading its request counts.
    #[arg(long)]
    sandbox_url: String,
    /// Distinct certifications (and persons) the callers cycle through.
    #[arg(long, default_value_t = 5000)]
    certifications: usize,
    /// Also bind each certification's person to an account (`acct-<n>`): a signup. Repeated
    /// calls for the same certification and account are idempotent.
    #[arg(long)]
    bind: bool,
    /// Row label.
    #[arg(long, default_value = "Verify")]
    label: String,
    /// The service's process: report its CPU time per call and its peak RSS (VmHWM) in the row.
    #[arg(long)]
    pid: Option<u32>,
    /// Expect RESOURCE_EXHAUSTED refusals (the overload row): fail without any. Otherwise any
    /// failed call fails the run.
    #[arg(long)]
    expect_refusals: bool,
}

#[derive(Args)]
struct DuplicateArgs {
    #[command(flatten)]
    load: LoadArgs,
    #[arg(long)]
    sandbox_url: String,
    /// The service's database, for the bare lookup.
    #[arg(long)]
    database_url: String,
    /// The service's CI_INDEX_KEY: the bare lookup needs the same index values.
    #[arg(long, env = "CI_INDEX_KEY", hide_env_values = true)]
    ci_index_key: String,
    /// Persons bound to accounts before measuring; the lookups cycle through them.
    #[arg(long, default_value_t = 2000)]
    persons: usize,
}

#[derive(Args)]
struct StartupArgs {
    /// The service binary.
    #[arg(long)]
    binary: PathBuf,
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    certification_service::app::install_crypto_provider();
    match Cli::parse().command {
        Command::Header => {
            println!("{}", header());
            Ok(())
        }
        Command::Verify(args) => verify(args).await,
        Command::Direct(args) => direct(args).await,
        Command::Signup(args) => signup(args).await,
        Command::Ratios { results } => results::ratios(&results),
        Command::Duplicate(args) => duplicate(args).await,
        Command::Rss {
            pid,
            label,
            key,
            results,
        } => {
            let (peak, current) = rss_kib(pid)?;
            if let Some(key) = key {
                results::record(results.as_deref(), &key, peak as f64 / 1024.0)?;
            }
            println!(
                "{label:<34} peak RSS {:.1} MiB, current {:.1} MiB (pid {pid})",
                peak as f64 / 1024.0,
                current as f64 / 1024.0
            );
            Ok(())
        }
        Command::Startup(args) => startup(args).await,
        Command::Commit(args) => commit::commit(args),
    }
}
