//! Figures handed from one loadgen run to the next through a file (`--results`), so that
//! `loadgen ratios` can divide each scenario by the floor measured in the same script run.

use std::{collections::BTreeMap, io::Write as _, path::Path};

use anyhow::Context as _;

/// Appends `key value` to the results file, when there is one.
pub(crate) fn record(path: Option<&Path>, key: &str, value: f64) -> anyhow::Result<()> {
    let Some(path) = path else { return Ok(()) };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(file, "{key} {value}").with_context(|| format!("writing {}", path.display()))
}

pub(crate) fn read(path: &Path) -> anyhow::Result<BTreeMap<String, f64>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect())
}

/// The ratio table of BENCHMARKS.md: each figure against its floor from the same run.
pub(crate) fn ratios(path: &Path) -> anyhow::Result<()> {
    let figures = read(path)?;
    let get = |key: &str| figures.get(key).copied();
    let ratio = |a: &str, b: &str| Some(get(a)? / get(b)?);
    // (what, measured, target, whether a larger figure is better)
    let rows: [(&str, Option<f64>, f64, bool); 10] = [
        (
            "Verify p50 / direct GET p50, 1 caller",
            ratio("verify_one_p50", "direct_one_p50"),
            1.05,
            false,
        ),
        // The floor with the record's durable commit in it, paced as Verify is (pgbench).
        (
            "Verify p50 / (direct GET + commit), 1 caller",
            get("verify_one_p50")
                .zip(get("direct_one_p50"))
                .zip(get("commit_one_p50"))
                .map(|((verify, direct), commit)| verify / (direct + commit)),
            1.02,
            false,
        ),
        (
            "Verify rate / sandbox rate, 50 callers",
            ratio("verify_few_rate", "direct_few_rate"),
            0.9,
            true,
        ),
        (
            "signup rate / Verify rate, 50 callers",
            ratio("signup_few_rate", "verify_few_rate"),
            0.8,
            true,
        ),
        (
            "CheckDuplicate / bare lookup rate",
            ratio("duplicate_rate", "bare_rate"),
            0.5,
            true,
        ),
        // Not a target: how close CheckDuplicate comes to a gRPC round trip plus the lookup.
        (
            "CheckDuplicate / (gRPC hop + bare lookup)",
            ratio("duplicate_rate", "hop_and_bare_rate"),
            f64::NAN,
            true,
        ),
        ("peak RSS idle, MiB", get("rss_idle_mib"), 20.0, false),
        (
            "peak RSS at 1,000 in flight, MiB",
            get("rss_crowd_mib"),
            64.0,
            false,
        ),
        (
            "service CPU per Verify, ms (50 callers)",
            get("verify_few_cpu_ms"),
            0.25,
            false,
        ),
        (
            "service CPU per Verify, ms (200 callers)",
            get("verify_many_cpu_ms"),
            0.25,
            false,
        ),
    ];
    println!("{:<46} {:>9} {:>8}  verdict", "ratio", "measured", "target");
    for (what, measured, target, larger_is_better) in rows {
        let Some(measured) = measured else {
            println!("{what:<46} {:>9} {target:>8.2}  not measured", "-");
            continue;
        };
        if target.is_nan() {
            println!("{what:<46} {measured:>9.3} {:>8}  (no target)", "-");
            continue;
        }
        let met = if larger_is_better {
            measured >= target
        } else {
            measured <= target
        };
        let sign = if larger_is_better { "≥" } else { "≤" };
        println!(
            "{what:<46} {measured:>9.3} {sign}{target:>7.2}  {}",
            if met { "met" } else { "missed" }
        );
    }
    Ok(())
}
