//! Load generator for the benchmarks in BENCHMARKS.md: drives a running service over gRPC with
//! the generated client, in a closed loop (each caller sends its next call when the last one is
//! answered), and prints one table row per measurement. `bench/load.sh` starts the service, the
//! sandbox and this, and prints the whole table.
//!
//! Latency is recorded per call in an HdrHistogram (microseconds, 3 significant digits). Phases
//! end by letting every caller finish its call in flight, so counters read between phases (the
//! sandbox's request counts) belong to exactly one phase.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use certification_service::{
    domain::{Ci, CiIndexKey},
    grpc::proto::{
        CheckDuplicateRequest, VerifyRequest, certification_service_client::CertificationServiceClient,
        check_duplicate_request,
    },
    sandbox::identities::{CertificationRecord, ci_for},
};
use clap::{Args, Parser, Subcommand};
use hdrhistogram::Histogram;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use tonic::transport::{Channel, Endpoint};

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
    /// CheckDuplicate by CI beside the bare indexed lookup on the same table, same client count.
    Duplicate(DuplicateArgs),
    /// Peak and current resident memory of a process.
    Rss {
        #[arg(long)]
        pid: u32,
        #[arg(long)]
        label: String,
    },
    /// Time from spawning the service to health SERVING, on a fresh SQLite file each run.
    Startup(StartupArgs),
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
    certification_service::startup::install_crypto_provider();
    match Cli::parse().command {
        Command::Header => {
            println!("{}", header());
            Ok(())
        }
        Command::Verify(args) => verify(args).await,
        Command::Duplicate(args) => duplicate(args).await,
        Command::Rss { pid, label } => {
            let (peak, current) = rss_kib(pid)?;
            println!(
                "{label:<34} peak RSS {:.1} MiB, current {:.1} MiB (pid {pid})",
                peak as f64 / 1024.0,
                current as f64 / 1024.0
            );
            Ok(())
        }
        Command::Startup(args) => startup(args).await,
    }
}

/// The table's columns and their widths, as [`Measured::row`] prints them.
const COLUMNS: [(&str, usize); 9] = [
    ("scenario", 34),
    ("conc", 5),
    ("calls", 8),
    ("errors", 8),
    ("calls/s", 9),
    ("p50 ms", 8),
    ("p90 ms", 8),
    ("p99 ms", 8),
    ("max ms", 8),
];

fn header() -> String {
    let mut line = format!("{:<width$}", COLUMNS[0].0, width = COLUMNS[0].1);
    for (name, width) in &COLUMNS[1..] {
        line.push_str(&format!(" {name:>width$}"));
    }
    line.push_str("  notes");
    line
}

/// What one phase of closed-loop load measured.
struct Measured {
    histogram: Histogram<u64>,
    /// Latency of the calls that failed.
    failed: Histogram<u64>,
    errors: BTreeMap<String, u64>,
    elapsed: Duration,
}

/// Microseconds from 1 µs to 10 minutes, 3 significant digits.
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

/// How long a caller whose call failed waits before its next one.
const ERROR_PAUSE: Duration = Duration::from_millis(5);

impl Measured {
    fn new() -> Self {
        Self {
            histogram: new_histogram(),
            failed: new_histogram(),
            errors: BTreeMap::new(),
            elapsed: Duration::ZERO,
        }
    }

    /// Adds another phase of the same scenario.
    fn merge(&mut self, other: Measured) {
        self.histogram.add(other.histogram).expect("same bounds");
        self.failed.add(other.failed).expect("same bounds");
        for (code, n) in other.errors {
            *self.errors.entry(code).or_default() += n;
        }
        self.elapsed += other.elapsed;
    }

    fn ok(&self) -> u64 {
        self.histogram.len()
    }

    fn calls(&self) -> u64 {
        self.ok() + self.errors.values().sum::<u64>()
    }

    fn row(&self, label: &str, concurrency: usize, notes: &str) -> String {
        let ms = |quantile: f64| self.histogram.value_at_quantile(quantile) as f64 / 1000.0;
        let errors = self.errors.values().sum::<u64>();
        let mut notes = notes.to_owned();
        if errors > 0 {
            let by_code: Vec<String> = self
                .errors
                .iter()
                .map(|(code, n)| format!("{code}={n}"))
                .collect();
            notes = format!(
                "{notes}; errors: {} answered in p50 {:.1} ms, p99 {:.1} ms",
                by_code.join(" "),
                self.failed.value_at_quantile(0.5) as f64 / 1000.0,
                self.failed.value_at_quantile(0.99) as f64 / 1000.0
            );
        }
        format!(
            "{label:<34} {concurrency:>5} {:>8} {errors:>8} {:>9.0} {:>8.1} {:>8.1} {:>8.1} {:>8.1}  {}",
            self.calls(),
            self.ok() as f64 / self.elapsed.as_secs_f64(),
            ms(0.5),
            ms(0.9),
            ms(0.99),
            self.histogram.max() as f64 / 1000.0,
            notes.trim()
        )
    }
}

async fn channels(load: &LoadArgs) -> anyhow::Result<Vec<Channel>> {
    let count = if load.connections == 0 {
        load.concurrency.div_ceil(100)
    } else {
        load.connections
    };
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count {
        let channel = Endpoint::from_shared(load.addr.clone())
            .context("--addr must be http://host:port")?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to {}", load.addr))?;
        channels.push(channel);
    }
    Ok(channels)
}

/// One gRPC client per caller, spread over the connections.
fn grpc_clients(channels: &[Channel], concurrency: usize) -> Vec<CertificationServiceClient<Channel>> {
    (0..concurrency)
        .map(|index| CertificationServiceClient::new(channels[index % channels.len()].clone()))
        .collect()
}

/// A failed call's row label: its gRPC code.
fn code(status: tonic::Status) -> String {
    format!("{:?}", status.code())
}

/// Runs `call` from one caller per entry of `callers` (its client) for `duration`, each caller
/// starting its next call when the last one is answered; returns once every call in flight has
/// been answered. A failed call is counted under the label it returns.
async fn closed_loop<C, F, Fut>(callers: &[C], duration: Duration, call: F) -> Measured
where
    C: Clone + Send + 'static,
    F: Fn(C, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let sequence = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(callers.len());
    for client in callers {
        let client = client.clone();
        let (sequence, stop, call) = (Arc::clone(&sequence), Arc::clone(&stop), call.clone());
        tasks.push(tokio::spawn(async move {
            let mut measured = Measured::new();
            while !stop.load(Ordering::Relaxed) {
                let n = sequence.fetch_add(1, Ordering::Relaxed);
                let sent = Instant::now();
                match call(client.clone(), n).await {
                    Ok(()) => measured
                        .histogram
                        .saturating_record(sent.elapsed().as_micros() as u64),
                    Err(label) => {
                        measured
                            .failed
                            .saturating_record(sent.elapsed().as_micros() as u64);
                        *measured.errors.entry(label).or_default() += 1;
                        // A refused caller backs off a little, as a real one would, instead of
                        // spinning on the CPU the admitted calls need.
                        tokio::time::sleep(ERROR_PAUSE).await;
                    }
                }
            }
            measured
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut measured = Measured::new();
    for task in tasks {
        measured.merge(task.await.expect("a caller panicked"));
    }
    measured.elapsed = started.elapsed();
    measured
}

fn with_timeout<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

/// Certifications `imp_9<batch><n>` for persons `load-<batch>-<n>`, put into the sandbox through
/// its admin API, `concurrency` at a time.
async fn insert_certifications(sandbox_url: &str, batch: u32, count: usize) -> anyhow::Result<Vec<String>> {
    let http = reqwest::Client::new();
    let now = chrono::Utc::now().timestamp();
    let birthday = chrono::NaiveDate::from_ymd_opt(1990, 1, 1).expect("a valid date");
    let imp_uids: Vec<String> = (0..count).map(|n| format!("imp_9{batch:03}{n:08}")).collect();
    let records: Vec<CertificationRecord> = imp_uids
        .iter()
        .enumerate()
        .map(|(n, imp_uid)| {
            CertificationRecord::certified(imp_uid, &person_key(batch, n), "부하", birthday, now)
        })
        .collect();
    let url = Arc::new(format!("{sandbox_url}/__sandbox/certifications"));
    let mut records = records.into_iter().peekable();
    while records.peek().is_some() {
        let mut sends = tokio::task::JoinSet::new();
        for record in records.by_ref().take(64) {
            let (http, url) = (http.clone(), Arc::clone(&url));
            sends.spawn(async move {
                http.post(url.as_str())
                    .json(&record)
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
            });
        }
        while let Some(sent) = sends.join_next().await {
            sent.context("an insert task panicked")?
                .context("inserting a certification into the sandbox")?;
        }
    }
    Ok(imp_uids)
}

fn person_key(batch: u32, n: usize) -> String {
    format!("load-{batch}-{n}")
}

#[derive(serde::Deserialize)]
struct SandboxStats {
    get_token_calls: u64,
    certification_lookups: u64,
}

async fn sandbox_calls(sandbox_url: &str) -> anyhow::Result<u64> {
    let stats: SandboxStats = reqwest::get(format!("{sandbox_url}/__sandbox/stats"))
        .await
        .and_then(reqwest::Response::error_for_status)
        .context("reading the sandbox's stats")?
        .json()
        .await
        .context("decoding the sandbox's stats")?;
    Ok(stats.get_token_calls + stats.certification_lookups)
}

async fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let load = &args.load;
    let batch = std::process::id() % 1000;
    let imp_uids = Arc::new(insert_certifications(&args.sandbox_url, batch, args.certifications).await?);
    let clients = grpc_clients(&channels(load).await?, load.concurrency);
    let (bind, timeout) = (args.bind, load.timeout);
    let call = move |mut client: CertificationServiceClient<Channel>, n: u64| {
        let imp_uids = Arc::clone(&imp_uids);
        async move {
            let index = (n % imp_uids.len() as u64) as usize;
            let request = VerifyRequest {
                imp_uid: imp_uids[index].clone(),
                account_id: if bind {
                    format!("acct-{batch}-{index}")
                } else {
                    String::new()
                },
                ..Default::default()
            };
            let answer = client
                .verify(with_timeout(request, timeout))
                .await
                .map_err(code)?
                .into_inner();
            if bind && !answer.bound {
                return Err("answered OK without binding".to_owned());
            }
            Ok(())
        }
    };
    closed_loop(&clients, load.warmup, call.clone()).await;
    let before = sandbox_calls(&args.sandbox_url).await?;
    let cpu_before = args.pid.map(cpu_ticks).transpose()?;
    let measured = closed_loop(&clients, load.duration, call).await;
    let cpu_after = args.pid.map(cpu_ticks).transpose()?;
    let portone_calls = sandbox_calls(&args.sandbox_url).await? - before;
    // Refused calls never reach PortOne; every other call is one Verify that should cost one.
    let refused = measured.errors.get("ResourceExhausted").copied().unwrap_or(0);
    let mut notes = format!(
        "PortOne calls/Verify {:.2}",
        portone_calls as f64 / (measured.calls() - refused).max(1) as f64
    );
    if let (Some(pid), Some(before), Some(after)) = (args.pid, cpu_before, cpu_after) {
        let (peak, _) = rss_kib(pid)?;
        let cpu_ms = (after - before) as f64 * 1000.0 / clock_ticks_per_second() as f64;
        notes = format!(
            "{notes}, service CPU {:.2} ms/call, peak RSS {:.1} MiB",
            cpu_ms / measured.calls().max(1) as f64,
            peak as f64 / 1024.0
        );
    }
    println!("{}", measured.row(&args.label, load.concurrency, &notes));
    let failed = measured.errors.values().sum::<u64>() - refused;
    if failed > 0 || (refused > 0 && !args.expect_refusals) {
        bail!("{}: calls failed: {:?}", args.label, measured.errors);
    }
    if args.expect_refusals && refused == 0 {
        bail!("{}: no call was refused with RESOURCE_EXHAUSTED", args.label);
    }
    if measured.ok() == 0 {
        bail!("{}: no call succeeded", args.label);
    }
    Ok(())
}

async fn duplicate(args: DuplicateArgs) -> anyhow::Result<()> {
    let load = &args.load;
    let batch = 500 + std::process::id() % 400;
    let index_key = CiIndexKey::from_base64(&args.ci_index_key).context("CI_INDEX_KEY")?;
    let imp_uids = insert_certifications(&args.sandbox_url, batch, args.persons).await?;
    let channels = channels(load).await?;

    // Bind every person to an account first, so every lookup finds a holder.
    let imp_uids = Arc::new(imp_uids);
    let (timeout, persons) = (load.timeout, args.persons as u64);
    // Every person exactly once: the tasks share one counter and stop at the first failure.
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..32 {
        let mut client = CertificationServiceClient::new(channels[caller % channels.len()].clone());
        let (imp_uids, next) = (Arc::clone(&imp_uids), Arc::clone(&next));
        tasks.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= persons {
                    return Ok::<_, tonic::Status>(());
                }
                let request = VerifyRequest {
                    imp_uid: imp_uids[n as usize].clone(),
                    account_id: format!("dup-{batch}-{n}"),
                    ..Default::default()
                };
                client.verify(with_timeout(request, timeout)).await?;
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result
            .context("a binding task panicked")?
            .context("binding a person")?;
    }

    let cis: Arc<Vec<String>> = Arc::new((0..args.persons).map(|n| ci_for(&person_key(batch, n))).collect());
    let service_call = {
        let cis = Arc::clone(&cis);
        move |mut client: CertificationServiceClient<Channel>, n: u64| {
            let cis = Arc::clone(&cis);
            async move {
                let ci = cis[(n % cis.len() as u64) as usize].clone();
                let request = CheckDuplicateRequest {
                    key: Some(check_duplicate_request::Key::Ci(ci)),
                };
                let answer = client
                    .check_duplicate(with_timeout(request, timeout))
                    .await
                    .map_err(code)?
                    .into_inner();
                if !answer.duplicate {
                    return Err("a bound person reported free".to_owned());
                }
                Ok(())
            }
        }
    };

    // The bare lookup: the same indexed query on the same table, one connection per client.
    let indexes: Arc<Vec<String>> = Arc::new(
        cis.iter()
            .map(|ci| {
                index_key
                    .ci_index(&Ci::parse(ci).expect("sandbox CIs are valid"))
                    .0
            })
            .collect(),
    );
    let bare_lookups = BareLookups::connect(&args.database_url, load.concurrency, indexes).await?;
    let clients = grpc_clients(&channels, load.concurrency);
    closed_loop(&clients, load.warmup, service_call.clone()).await;
    bare_lookups.run(load.warmup).await;
    // Interleaved, so drift on the machine (checkpoints, autovacuum) falls on both alike.
    let (mut service, mut bare) = (Measured::new(), Measured::new());
    for _ in 0..DUPLICATE_ROUNDS {
        let slice = load.duration / DUPLICATE_ROUNDS;
        service.merge(closed_loop(&clients, slice, service_call.clone()).await);
        bare.merge(bare_lookups.run(slice).await);
    }
    bare_lookups.db.close().await.ok();
    let service_rate = service.ok() as f64 / service.elapsed.as_secs_f64();
    let bare_rate = bare.ok() as f64 / bare.elapsed.as_secs_f64();
    println!(
        "{}",
        service.row(
            "CheckDuplicate by CI (gRPC)",
            load.concurrency,
            &format!("{:.2} of the bare lookup's rate", service_rate / bare_rate)
        )
    );
    println!(
        "{}",
        bare.row(
            "bare indexed lookup (SQL)",
            load.concurrency,
            "SELECT account_id, bound_at FROM persons WHERE ci_hash = $1"
        )
    );
    if !service.errors.is_empty() || !bare.errors.is_empty() || service.ok() == 0 || bare.ok() == 0 {
        bail!("CheckDuplicate or the bare lookup failed");
    }
    Ok(())
}

/// Phases of the bare lookup; slices of the CheckDuplicate comparison.
const DUPLICATE_ROUNDS: u32 = 4;

/// The bare indexed lookup: the same query on the same table, one connection per client.
struct BareLookups {
    db: DatabaseConnection,
    clients: usize,
    indexes: Arc<Vec<String>>,
}

impl BareLookups {
    async fn connect(database_url: &str, clients: usize, indexes: Arc<Vec<String>>) -> anyhow::Result<Self> {
        let mut options = sea_orm::ConnectOptions::new(database_url.to_owned());
        options
            .max_connections(clients as u32)
            .min_connections(clients as u32)
            .sqlx_logging(false);
        let db = Database::connect(options)
            .await
            .context("connecting to the database")?;
        if db.get_database_backend() != DbBackend::Postgres {
            bail!("the bare lookup is measured on PostgreSQL");
        }
        Ok(Self { db, clients, indexes })
    }

    async fn run(&self, duration: Duration) -> Measured {
        let indexes = Arc::clone(&self.indexes);
        let lookup = move |db: DatabaseConnection, n: u64| {
            let index = indexes[(n % indexes.len() as u64) as usize].clone();
            async move {
                let statement = Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT account_id, bound_at FROM persons WHERE ci_hash = $1",
                    [index.into()],
                );
                match db.query_one_raw(statement).await {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) => Err("not found".to_owned()),
                    Err(_) => Err("failed".to_owned()),
                }
            }
        };
        closed_loop(&vec![self.db.clone(); self.clients], duration, lookup).await
    }
}

/// User + system CPU time of a process, in clock ticks, from /proc.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; fields are counted after its closing paren.
    let after_name = stat.rsplit_once(')').context("a /proc stat line")?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |index: usize| {
        fields
            .get(index)
            .and_then(|value| value.parse::<u64>().ok())
            .context("utime/stime")
    };
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after the name.
    Ok(field(11)? + field(12)?)
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf reads a constant of the running system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks)
        .ok()
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

/// (VmHWM, VmRSS) in KiB from /proc.
fn rss_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .with_context(|| format!("{name} in /proc/{pid}/status"))
    };
    Ok((field("VmHWM:")?, field("VmRSS:")?))
}

async fn startup(args: StartupArgs) -> anyhow::Result<()> {
    let mut times = Vec::with_capacity(args.runs);
    let directory = std::env::temp_dir().join(format!("cs-startup-{}", std::process::id()));
    std::fs::create_dir_all(&directory).context("creating a scratch directory")?;
    for run in 0..args.runs {
        let port = free_port()?;
        let database = directory.join(format!("run-{run}.db"));
        let started = Instant::now();
        let mut child = tokio::process::Command::new(&args.binary)
            .args(["serve", "--sandbox"])
            .env("GRPC_LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("METRICS_LISTEN_ADDR", "off")
            .env(
                "DATABASE_URL",
                format!("sqlite://{}?mode=rwc", database.display()),
            )
            .env_remove("REDIS_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", args.binary.display()))?;
        let serving = wait_serving(port, Duration::from_secs(10)).await;
        let elapsed = started.elapsed();
        let _ = child.start_kill();
        let _ = child.wait().await;
        serving?;
        times.push(elapsed);
    }
    let _ = std::fs::remove_dir_all(&directory);
    times.sort();
    let ms = |duration: Duration| duration.as_secs_f64() * 1000.0;
    println!(
        "{:<34} {:>5} {:>8} {:>8} {:>9} {:>8.1} {:>8} {:>8} {:>8.1}  spawn to health SERVING, fresh SQLite file (migrations included), min {:.1} ms",
        "start to SERVING (SQLite)",
        1,
        times.len(),
        0,
        "-",
        ms(times[times.len() / 2]),
        "-",
        "-",
        ms(*times.last().expect("at least one run")),
        ms(times[0]),
    );
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Polls the health of CertificationService every millisecond until SERVING.
async fn wait_serving(port: u16, limit: Duration) -> anyhow::Result<()> {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let give_up = Instant::now() + limit;
    while Instant::now() < give_up {
        if let Ok(channel) = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))?
            .connect()
            .await
        {
            let mut client = HealthClient::new(channel);
            while Instant::now() < give_up {
                let answer = client
                    .check(HealthCheckRequest {
                        service: certification_service::startup::SERVICE_NAME.into(),
                    })
                    .await;
                if answer.is_ok_and(|answer| answer.into_inner().status() == ServingStatus::Serving) {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    bail!("not SERVING within {limit:?}")
}
