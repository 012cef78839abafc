//! The floor: loadgen's own HTTP client straight at the sandbox, as the service would call
//! PortOne for one Verify: a token once, then keep-alive `GET /certifications/{imp_uid}` with
//! it. Verify's figures are divided by these, measured in the same run.

use std::sync::Arc;

use anyhow::{Context as _, bail};
use certification_service::sandbox::{SANDBOX_IMP_KEY, SANDBOX_IMP_SECRET};

use crate::{DirectArgs, measure::closed_loop, results, sandbox::insert_certifications};

#[derive(serde::Deserialize)]
struct Envelope {
    response: Option<Token>,
}

#[derive(serde::Deserialize)]
struct Token {
    access_token: String,
}

pub(crate) async fn direct(args: DirectArgs) -> anyhow::Result<()> {
    let batch = 900 + std::process::id() % 100;
    let imp_uids = Arc::new(insert_certifications(&args.sandbox_url, batch, args.certifications).await?);
    // Keep-alive HTTP/1 like the service's client: reqwest's pool keeps one connection a caller.
    let http = reqwest::Client::builder()
        .build()
        .context("building the HTTP client")?;
    let token = http
        .post(format!("{}/users/getToken", args.sandbox_url))
        .json(&serde_json::json!({"imp_key": SANDBOX_IMP_KEY, "imp_secret": SANDBOX_IMP_SECRET}))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .context("getToken at the sandbox")?
        .json::<Envelope>()
        .await
        .context("decoding getToken's answer")?
        .response
        .context("getToken answered without a token")?
        .access_token;
    let (token, base) = (Arc::new(token), Arc::new(args.sandbox_url.clone()));
    let call = move |http: reqwest::Client, n: u64| {
        let (imp_uids, token, base) = (Arc::clone(&imp_uids), Arc::clone(&token), Arc::clone(&base));
        async move {
            let imp_uid = &imp_uids[(n % imp_uids.len() as u64) as usize];
            let answer = http
                .get(format!("{base}/certifications/{imp_uid}"))
                .header("Authorization", token.as_str())
                .send()
                .await
                .map_err(|_| "request failed".to_owned())?;
            if !answer.status().is_success() {
                return Err(answer.status().to_string());
            }
            // The whole body, as the service reads it.
            answer.bytes().await.map_err(|_| "body failed".to_owned())?;
            Ok(())
        }
    };
    let callers = vec![http; args.concurrency];
    closed_loop(&callers, args.warmup, call.clone()).await;
    let measured = closed_loop(&callers, args.duration, call).await;
    println!(
        "{}",
        measured.row(
            &args.label,
            args.concurrency,
            "loadgen's HTTP client straight at the sandbox"
        )
    );
    if let Some(key) = &args.key {
        results::record(args.results.as_deref(), &format!("{key}_rate"), measured.rate())?;
        results::record(args.results.as_deref(), &format!("{key}_p50"), measured.p50_ms())?;
    }
    if !measured.errors.is_empty() || measured.ok() == 0 {
        bail!("{}: calls failed: {:?}", args.label, measured.errors);
    }
    Ok(())
}
