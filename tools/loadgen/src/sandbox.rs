//! The sandbox's admin API as the scenarios use it: seeding certifications for load persons and
//! reading how many PortOne calls the sandbox has answered.

use std::sync::Arc;

use anyhow::Context as _;
use certification_service::sandbox::identities::CertificationRecord;

/// Certifications `imp_9<batch><n>` for persons `load-<batch>-<n>`, put into the sandbox through
/// its admin API, 64 at a time.
pub(crate) async fn insert_certifications(
    sandbox_url: &str,
    batch: u32,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    let imp_uids: Vec<String> = (0..count).map(|n| imp_uid(batch, n)).collect();
    let records = imp_uids
        .iter()
        .enumerate()
        .map(|(n, imp_uid)| record(imp_uid, &person_key(batch, n)))
        .collect();
    insert_records(sandbox_url, records).await?;
    Ok(imp_uids)
}

pub(crate) fn imp_uid(batch: u32, n: usize) -> String {
    format!("imp_9{batch:03}{n:08}")
}

/// A certified adult, certified now.
pub(crate) fn record(imp_uid: &str, person_key: &str) -> CertificationRecord {
    let birthday = chrono::NaiveDate::from_ymd_opt(1990, 1, 1).expect("a valid date");
    CertificationRecord::certified(
        imp_uid,
        person_key,
        "부하",
        birthday,
        chrono::Utc::now().timestamp(),
    )
}

/// Puts records into the sandbox through its admin API, 64 at a time.
pub(crate) async fn insert_records(
    sandbox_url: &str,
    records: Vec<CertificationRecord>,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
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
    Ok(())
}

pub(crate) fn person_key(batch: u32, n: usize) -> String {
    format!("load-{batch}-{n}")
}

#[derive(serde::Deserialize)]
struct SandboxStats {
    get_token_calls: u64,
    certification_lookups: u64,
}

pub(crate) async fn sandbox_calls(sandbox_url: &str) -> anyhow::Result<u64> {
    let stats: SandboxStats = reqwest::get(format!("{sandbox_url}/__sandbox/stats"))
        .await
        .and_then(reqwest::Response::error_for_status)
        .context("reading the sandbox's stats")?
        .json()
        .await
        .context("decoding the sandbox's stats")?;
    Ok(stats.get_token_calls + stats.certification_lookups)
}
