//! The signup path: BeginVerification, the certification made for its merchant_uid, then the
//! Verify that redeems the session and binds a new person. Sessions and certifications are made
//! beforehand, as a pool, so the measured time is the redeem-and-bind Verify alone, the same
//! call plain Verify is compared with.

use std::sync::Arc;

use anyhow::{Context as _, bail};
use certification_service::grpc::proto::{
    BeginVerificationRequest, Purpose, VerifyRequest,
    certification_service_client::CertificationServiceClient,
};
use tonic::transport::Channel;

use crate::{
    SignupArgs,
    grpc::{channels, grpc_clients, verify_once, with_timeout},
    measure::closed_loop_count,
    results,
    sandbox::{imp_uid, insert_records, record},
    system::{cpu_ms_per_call, cpu_ticks},
};

/// (imp_uid, merchant_uid) of each signup, in the order the callers take them.
async fn make_pool(
    args: &SignupArgs,
    channels: &[Channel],
    batch: u32,
) -> anyhow::Result<Vec<(String, String)>> {
    let total = args.warmup_signups + args.signups;
    let mut pool = Vec::with_capacity(total);
    let mut begins = tokio::task::JoinSet::new();
    for chunk_start in (0..total).step_by(64) {
        for n in chunk_start..(chunk_start + 64).min(total) {
            let mut client = CertificationServiceClient::new(channels[n % channels.len()].clone());
            let timeout = args.load.timeout;
            begins.spawn(async move {
                let request = BeginVerificationRequest {
                    purpose: Purpose::Signup.into(),
                    account_id: Some(format!("su-{batch}-{n}")),
                    ..Default::default()
                };
                let began = client.begin_verification(with_timeout(request, timeout)).await?;
                Ok::<_, tonic::Status>((n, began.into_inner().merchant_uid))
            });
        }
        while let Some(began) = begins.join_next().await {
            let (n, merchant_uid) = began
                .context("a begin task panicked")?
                .context("BeginVerification")?;
            pool.push((n, merchant_uid));
        }
    }
    pool.sort();
    let pool: Vec<(String, String)> = pool
        .into_iter()
        .map(|(n, merchant_uid)| (imp_uid(batch, n), merchant_uid))
        .collect();
    let records = pool
        .iter()
        .enumerate()
        .map(|(n, (imp_uid, merchant_uid))| {
            let mut record = record(imp_uid, &format!("signup-{batch}-{n}"));
            record.merchant_uid = Some(merchant_uid.clone());
            record
        })
        .collect();
    insert_records(&args.sandbox_url, records).await?;
    Ok(pool)
}

pub(crate) async fn signup(args: SignupArgs) -> anyhow::Result<()> {
    let load = &args.load;
    let batch = 100 + std::process::id() % 800;
    let channels = channels(load).await?;
    let pool = Arc::new(make_pool(&args, &channels, batch).await?);
    let clients = grpc_clients(&channels, load.concurrency);
    let timeout = load.timeout;
    let call = move |offset: usize| {
        let pool = Arc::clone(&pool);
        move |mut client: CertificationServiceClient<Channel>, n: u64| {
            let pool = Arc::clone(&pool);
            async move {
                let (imp_uid, merchant_uid) = &pool[offset + n as usize];
                let request = VerifyRequest {
                    imp_uid: imp_uid.clone(),
                    merchant_uid: merchant_uid.clone(),
                    ..Default::default()
                };
                verify_once(&mut client, request, timeout, true).await
            }
        }
    };
    closed_loop_count(&clients, args.warmup_signups as u64, call(0)).await;
    let cpu_before = args.pid.map(cpu_ticks).transpose()?;
    let measured = closed_loop_count(&clients, args.signups as u64, call(args.warmup_signups)).await;
    let cpu_after = args.pid.map(cpu_ticks).transpose()?;
    let mut notes = "redeem the session + bind a new person; sessions made beforehand".to_owned();
    if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
        let cpu_ms = cpu_ms_per_call(before, after, measured.calls());
        notes = format!("{notes}; service CPU {cpu_ms:.2} ms/call");
    }
    println!("{}", measured.row(&args.label, load.concurrency, &notes));
    if let Some(key) = &load.key {
        results::record(load.results.as_deref(), &format!("{key}_rate"), measured.rate())?;
    }
    if !measured.errors.is_empty() || measured.ok() == 0 {
        bail!("{}: calls failed: {:?}", args.label, measured.errors);
    }
    Ok(())
}
