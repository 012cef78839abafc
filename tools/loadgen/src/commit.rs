//! The floor under a 1-caller Verify's durable record: the service's own record statement, a new
//! person each call, paced at the rate Verify reached, run by `pgbench` over TLS. At that pace
//! every process sleeps between calls and pays for waking up on each one, so this is what
//! PostgreSQL and its client cost a call at best; `ratios` compares Verify's p50 with the direct
//! GET plus this.

use std::{path::PathBuf, process::Command, time::Duration};

use anyhow::{Context as _, bail, ensure};
use certification_service::store::RECORD_STATEMENT;

use crate::results;

#[derive(clap::Args)]
pub(crate) struct CommitArgs {
    /// The service's PostgreSQL database (its schema migrated); `sslmode=require` is added.
    #[arg(long)]
    database_url: String,
    /// Statements a second: the value of this key in `--results` (Verify's rate at 1 caller).
    #[arg(long)]
    rate_key: String,
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    #[arg(long)]
    results: PathBuf,
    /// `<key>_p50` (ms) in the results file.
    #[arg(long)]
    key: String,
    #[arg(long, default_value = "the record's statement, paced (pgbench)")]
    label: String,
}

/// Each parameter of the record statement as a pgbench expression: the person and the
/// certification are new each call (`:r`), the sizes those the service binds.
const PARAMETERS: [&str; 12] = [
    "md5(:r::text) || md5(:r::text || 'c')",
    "md5(:r::text || 'd') || md5(:r::text || 'e')",
    "repeat('s', 96)",
    "repeat('s', 96)",
    "'bench'",
    "now()",
    "'portone_v1'",
    "'imp_' || :r::text",
    "now()",
    "NULL::text",
    "NULL::text",
    "NULL::timestamptz",
];

pub(crate) fn commit(args: CommitArgs) -> anyhow::Result<()> {
    let rate = results::read(&args.results)?
        .get(&args.rate_key)
        .copied()
        .with_context(|| format!("{} is not in {}", args.rate_key, args.results.display()))?;
    let work = tempfile_dir()?;
    let script = work.join("record.sql");
    std::fs::write(&script, pgbench_script()?)?;
    let seconds = (args.warmup + args.duration).as_secs().max(1);
    let separator = if args.database_url.contains('?') { '&' } else { '?' };
    let status = Command::new("pgbench")
        .args([
            "--no-vacuum",
            "--protocol=prepared",
            "--client=1",
            "--jobs=1",
            "--log",
        ])
        .arg(format!("--rate={rate:.3}"))
        .arg(format!("--time={seconds}"))
        .arg(format!("--log-prefix={}", work.join("log").display()))
        .arg(format!("--file={}", script.display()))
        .arg(format!("{}{separator}sslmode=require", args.database_url))
        .current_dir(&work)
        .output()
        .context("running pgbench (PostgreSQL's client tools)")?;
    if !status.status.success() {
        bail!("pgbench failed: {}", String::from_utf8_lossy(&status.stderr));
    }
    let mut latencies = logged_latencies(&work, args.warmup)?;
    ensure!(
        !latencies.is_empty(),
        "pgbench logged no statement after the warm-up"
    );
    latencies.sort_by(f64::total_cmp);
    let p50 = latencies[latencies.len() / 2];
    results::record(Some(&args.results), &format!("{}_p50", args.key), p50)?;
    println!(
        "{:<34} {rate:>8.1}/s paced, {} statements, p50 {p50:.3} ms",
        args.label,
        latencies.len()
    );
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// The record statement with its parameters written as pgbench expressions. Fails when the
/// statement's parameters are not the twelve this knows, so a changed statement is not measured
/// wrongly.
fn pgbench_script() -> anyhow::Result<String> {
    let mut statement = RECORD_STATEMENT.to_owned();
    for (index, expression) in PARAMETERS.iter().enumerate().rev() {
        let placeholder = format!("${}", index + 1);
        ensure!(
            statement.contains(&placeholder),
            "the record statement has no {placeholder}"
        );
        statement = statement.replace(&placeholder, expression);
    }
    ensure!(
        !statement
            .as_bytes()
            .windows(2)
            .any(|pair| pair[0] == b'$' && pair[1].is_ascii_digit()),
        "the record statement has more parameters than this benchmark knows"
    );
    // pgbench runs one line a command unless told otherwise: one statement, one line.
    let one_line = statement.split_whitespace().collect::<Vec<_>>().join(" ");
    Ok(format!("\\set r random(1, 1000000000000)\n{one_line};\n"))
}

/// Each statement's own time (ms) from pgbench's per-transaction log, its wait for the schedule
/// taken out, after the warm-up. A line: client, transaction, time (µs), script, epoch (s), µs,
/// schedule lag (µs).
fn logged_latencies(work: &std::path::Path, warmup: Duration) -> anyhow::Result<Vec<f64>> {
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(work)? {
        let path = entry?.path();
        if !path
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("log."))
        {
            continue;
        }
        for line in std::fs::read_to_string(&path)?.lines() {
            let fields: Vec<f64> = line
                .split_whitespace()
                .map(|field| field.parse().unwrap_or(f64::NAN))
                .collect();
            if let [_, _, time, _, epoch, micros, lag, ..] = fields[..] {
                rows.push((epoch + micros / 1e6, (time - lag) / 1000.0));
            }
        }
    }
    let Some(first) = rows.iter().map(|(at, _)| *at).reduce(f64::min) else {
        return Ok(Vec::new());
    };
    let measured_from = first + warmup.as_secs_f64();
    Ok(rows
        .into_iter()
        .filter(|(at, _)| *at >= measured_from)
        .map(|(_, ms)| ms)
        .collect())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("loadgen-commit-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
