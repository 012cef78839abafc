//! The binary's subcommands: `serve` (the sandbox first when asked), `migrate`, `rekey`,
//! `purge`, `health` and `audit verify`.

use anyhow::Context;
use tokio::net::TcpListener;

#[cfg(feature = "sandbox")]
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::{
    app::Application,
    audit::{
        AuditKey,
        chain::{Head, check},
    },
    config::{
        AuditCommand, AuditVerifyArgs, Command, DatabaseArgs, HealthArgs, PurgeArgs, RekeyArgs, ServeArgs,
    },
    domain::{CiIndexKey, SealingKeys},
    store::Store,
};

/// Runs one subcommand to its end.
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve(args).await,
        Command::Migrate(args) => migrate(args).await,
        Command::Rekey(args) => rekey(args).await,
        Command::Purge(args) => purge(args).await,
        Command::Health(args) => health(args).await,
        Command::Audit(AuditCommand::Verify(args)) => audit_verify(args).await,
    }
}

/// `serve`: the sandbox first when asked (in a build with it), then settings, listener and server
/// until a signal.
async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    #[cfg(feature = "sandbox")]
    let sandbox = if args.sandbox {
        let listener = TcpListener::bind(args.sandbox_listen_addr)
            .await
            .with_context(|| format!("binding the sandbox to {}", args.sandbox_listen_addr))?;
        let sandbox = Sandbox::start(listener, SandboxConfig::default()).await?;
        tracing::warn!(
            portone_base_url = %sandbox.base_url(),
            "--sandbox: answering with the built-in PortOne sandbox; development only"
        );
        Some(sandbox)
    } else {
        None
    };
    #[cfg(feature = "sandbox")]
    let sandbox_base_url = sandbox.as_ref().map(Sandbox::base_url);
    #[cfg(not(feature = "sandbox"))]
    let sandbox_base_url = None;
    let settings = args.into_settings(sandbox_base_url)?;
    let listener = TcpListener::bind(settings.server.grpc_listen_addr)
        .await
        .with_context(|| format!("binding {}", settings.server.grpc_listen_addr))?;
    let application = Application::build(settings, listener).await?;
    #[cfg(feature = "sandbox")]
    let application = match &sandbox {
        Some(sandbox) => application.with_sandbox(sandbox.handle()),
        None => application,
    };
    application.run_until_stopped(shutdown_signal()).await
}

/// `migrate`: apply pending migrations and exit.
async fn migrate(args: DatabaseArgs) -> anyhow::Result<()> {
    let store = Store::connect(&args.store_settings()).await?;
    store.migrate().await.context("applying migrations")?;
    tracing::info!("migrations applied");
    store.close().await;
    Ok(())
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// `rekey`: re-encrypt stored CI/DI under the first CI_ENCRYPTION_KEYS key and re-index them by
/// their canonical form; an error when rows are left for the operator.
async fn rekey(args: RekeyArgs) -> anyhow::Result<()> {
    let keys = SealingKeys::parse(args.ci_encryption_keys.expose())?;
    let index_key = CiIndexKey::from_base64(args.ci_index_key.expose())?;
    let store = Store::connect(&args.database.store_settings()).await?;
    let report = crate::maintenance::rekey(&store, &keys, &index_key, args.batch_size).await;
    store.close().await;
    let report = report?;
    tracing::info!(
        resealed = report.resealed,
        rehashed = report.rehashed,
        raced = report.raced,
        collisions = report.collisions.len(),
        undecodable = report.undecodable.len(),
        key_id = keys.primary_id(),
        "rekey finished"
    );
    let collisions: Vec<String> = report
        .collisions
        .iter()
        .map(|collision| format!("{}={}", collision.person_id, collision.other_person_id))
        .collect();
    anyhow::ensure!(
        report.is_complete(),
        "rows left for the operator, see docs/security.md#identity-data-at-rest. Pairs of rows \
         that are one person: {} (row=row already holding its canonical CI: {}). Rows whose CI \
         or DI is not base64: {} ({:?})",
        collisions.len(),
        collisions.join(", "),
        report.undecodable.len(),
        report.undecodable,
    );
    Ok(())
}

/// `purge`: delete what is past retention.
async fn purge(args: PurgeArgs) -> anyhow::Result<()> {
    args.retention.validate()?;
    let store = Store::connect(&args.database.store_settings()).await?;
    let purged = crate::maintenance::purge(
        &store,
        args.retention.certification_retention,
        args.retention.rejoin_cooldown,
    )
    .await;
    store.close().await;
    purged?;
    Ok(())
}

/// `audit verify`: every chain with records in the range recomputed, held against the heads
/// logged; the first problem fails the command.
async fn audit_verify(args: AuditVerifyArgs) -> anyhow::Result<()> {
    let key = AuditKey::from_base64(args.audit_key.expose())?;
    let mut heads = Vec::new();
    for path in &args.heads {
        let log = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        heads.extend(Head::in_log(&log));
    }
    let store = Store::connect(&args.database.store_settings()).await?;
    let chains = store.access_chains(args.from, args.to).await;
    store.close().await;
    let checked = check(&key, chains?, &heads).context("the access records do not hold")?;
    let span = match (checked.first, checked.last) {
        (Some(first), Some(last)) => format!(", {} to {}", first.to_rfc3339(), last.to_rfc3339()),
        _ => String::new(),
    };
    println!(
        "access records hold: {} records in {} chains{span}; {} logged heads checked",
        checked.records,
        checked.chains,
        heads.len()
    );
    Ok(())
}

/// `health`: one gRPC health check; Ok only when the answer is SERVING.
async fn health(args: HealthArgs) -> anyhow::Result<()> {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", args.addr))
        .context("--addr must be host:port")?
        .connect_timeout(args.timeout)
        .timeout(args.timeout)
        .connect()
        .await
        .with_context(|| format!("connecting to {}", args.addr))?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: args.service.clone(),
        })
        .await
        .with_context(|| format!("health check of {:?}", args.service))?
        .into_inner();
    let status = answer.status();
    println!("{:?}: {}", args.service, status.as_str_name());
    anyhow::ensure!(
        status == tonic_health::pb::health_check_response::ServingStatus::Serving,
        "not serving"
    );
    Ok(())
}
