//! The Verify scenario: Verify (optionally binding an account) in a closed loop against
//! certifications inserted into the sandbox, with PortOne calls, CPU and RSS of the service.

use std::sync::Arc;

use anyhow::bail;
use certification_service::grpc::proto::{
    VerifyRequest, certification_service_client::CertificationServiceClient,
};
use tonic::transport::Channel;

use crate::{
    VerifyArgs,
    grpc::{channels, grpc_clients, verify_once},
    measure::closed_loop,
    sandbox::{insert_certifications, sandbox_calls},
    system::{cpu_ms_per_call, cpu_ticks, rss_kib},
};

pub(crate) async fn verify(args: VerifyArgs) -> anyhow::Result<()> {
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
            verify_once(&mut client, request, timeout, bind).await
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
    let cpu_ms = cpu_before
        .zip(cpu_after)
        .map(|(before, after)| cpu_ms_per_call(before, after, measured.calls()));
    if let (Some(pid), Some(cpu_ms)) = (args.pid, cpu_ms) {
        let (peak, _) = rss_kib(pid)?;
        notes = format!(
            "{notes}, service CPU {cpu_ms:.2} ms/call, peak RSS {:.1} MiB",
            peak as f64 / 1024.0
        );
    }
    println!("{}", measured.row(&args.label, load.concurrency, &notes));
    if let (0, Some(key)) = (refused, &load.key) {
        let results = load.results.as_deref();
        crate::results::record(results, &format!("{key}_rate"), measured.rate())?;
        crate::results::record(results, &format!("{key}_p50"), measured.p50_ms())?;
        if let Some(cpu_ms) = cpu_ms {
            crate::results::record(results, &format!("{key}_cpu_ms"), cpu_ms)?;
        }
    }
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
