//! What the operating system reports about the service: CPU ticks and resident memory from
//! /proc, and the startup measurement (spawn to health SERVING).

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::StartupArgs;

/// User + system CPU time of a process, in clock ticks, from /proc.
pub(crate) fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
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

/// Milliseconds of CPU per call between two [`cpu_ticks`] readings.
pub(crate) fn cpu_ms_per_call(before: u64, after: u64, calls: u64) -> f64 {
    (after - before) as f64 * 1000.0 / clock_ticks_per_second() as f64 / calls.max(1) as f64
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
pub(crate) fn rss_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
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

pub(crate) async fn startup(args: StartupArgs) -> anyhow::Result<()> {
    let mut times = Vec::with_capacity(args.runs);
    let directory = std::env::temp_dir().join(format!("cs-startup-{}", std::process::id()));
    std::fs::create_dir_all(&directory).context("creating a scratch directory")?;
    for run in 0..args.runs {
        let port = certification_testkit::free_port();
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

/// Polls the health of CertificationService every millisecond until SERVING.
async fn wait_serving(port: u16, limit: Duration) -> anyhow::Result<()> {
    certification_testkit::wait_for_serving(&format!("127.0.0.1:{port}"), limit, Duration::from_millis(1))
        .await
        .map_err(anyhow::Error::msg)
}
