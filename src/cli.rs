//! The binary's subcommands: `serve` (the sandbox first when asked), `migrate`, `rekey`,
//! `purge`, `health`, and `audit verify`, `audit export` and `audit report`. The operator
//! commands on personal data (`rekey`, `purge`, `audit export`) leave an access record each.

use std::{io::Write, time::Duration};

use anyhow::{Context, anyhow};
use tokio::net::TcpListener;

#[cfg(feature = "sandbox")]
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::{
    app::Application,
    audit::{
        AccessRecord, Accessor, AuditKey, OUTCOME_FAILED, OUTCOME_OK, Subject, Work,
        chain::{Head, check},
        export::{EXPORT_METHOD, Selection, json_line},
        report::{self, HISTORY_MONTHS, Month, Review},
    },
    config::{
        AuditCommand, AuditExportArgs, AuditReportArgs, AuditVerifyArgs, Command, DatabaseArgs, HealthArgs,
        PurgeArgs, RekeyArgs, ServeArgs,
    },
    domain::{Ci, CiIndexKey, SealingKeys},
    store::{Store, StoreError},
    telemetry::LogTo,
};

/// How often a command's record writer logs its chain's head. A command's chain is short: its
/// head is logged when the command ends.
const COMMAND_HEAD_EVERY: Duration = Duration::from_secs(60);
/// Records read at a time by an export (and the report's list of exports).
const EXPORT_PAGE: u64 = 5000;

/// Where `command` logs: the `audit` commands answer on stdout, so their logs go to stderr.
pub fn logs_to(command: &Command) -> LogTo {
    match command {
        Command::Audit(_) => LogTo::Stderr,
        Command::Serve(_)
        | Command::Migrate(_)
        | Command::Rekey(_)
        | Command::Purge(_)
        | Command::Health(_) => LogTo::Stdout,
    }
}

/// Runs one subcommand to its end.
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve(args).await,
        Command::Migrate(args) => migrate(args).await,
        Command::Rekey(args) => rekey(args).await,
        Command::Purge(args) => purge(args).await,
        Command::Health(args) => health(args).await,
        Command::Audit(AuditCommand::Verify(args)) => audit_verify(args).await,
        Command::Audit(AuditCommand::Export(args)) => audit_export(args).await,
        Command::Audit(AuditCommand::Report(args)) => audit_report(args).await,
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

/// The store of an operator command, writing access records chained under `key`.
async fn recording_store(database: &DatabaseArgs, key: AuditKey) -> anyhow::Result<Store> {
    Ok(Store::recording(&database.store_settings(), key, COMMAND_HEAD_EVERY).await?)
}

/// Ends an operator command that came to `result`: leaves its access record (outcome OK or
/// FAILED), then closes `store`. A record not written fails the command, whatever its result.
async fn close_recorded<T>(
    store: Store,
    accessor: Accessor,
    work: Work,
    result: anyhow::Result<T>,
) -> anyhow::Result<T> {
    let outcome = if result.is_ok() {
        OUTCOME_OK
    } else {
        OUTCOME_FAILED
    };
    let written = store
        .record_access(AccessRecord::of(&accessor, work, &Subject::default(), outcome))
        .await;
    store.close().await;
    match (written, result) {
        (Ok(()), result) => result,
        (Err(error), Ok(_)) => Err(anyhow!(error).context(format!(
            "`{}` was done, but its access record was not written",
            accessor.method
        ))),
        (Err(error), Err(failed)) => Err(anyhow!(
            "{failed:#}; and its access record was not written either: {error}"
        )),
    }
}

/// `rekey`: re-encrypt stored CI/DI under the first CI_ENCRYPTION_KEYS key and re-index them by
/// their canonical form; an error when rows are left for the operator. Recorded as a change.
async fn rekey(args: RekeyArgs) -> anyhow::Result<()> {
    let keys = SealingKeys::parse(args.ci_encryption_keys.expose())?;
    let index_key = CiIndexKey::from_base64(args.ci_index_key.expose())?;
    let store = recording_store(&args.database, args.operator.audit.key()?).await?;
    let rekeyed = rekey_rows(&store, &keys, &index_key, args.batch_size).await;
    let accessor = Accessor::operator("rekey", args.operator.actor);
    close_recorded(store, accessor, Work::Change, rekeyed).await
}

async fn rekey_rows(
    store: &Store,
    keys: &SealingKeys,
    index_key: &CiIndexKey,
    batch_size: u64,
) -> anyhow::Result<()> {
    let report = crate::maintenance::rekey(store, keys, index_key, batch_size).await?;
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

/// `purge`: delete what is past retention. Recorded as a deletion.
async fn purge(args: PurgeArgs) -> anyhow::Result<()> {
    args.retention.validate()?;
    let key = args.operator.audit.key()?;
    let store = recording_store(&args.database, key.clone()).await?;
    // Access records too, past AUDIT_RETENTION: this command's own record says so.
    let purged = match crate::maintenance::purge(
        &store,
        args.retention.certification_retention,
        args.retention.rejoin_cooldown,
    )
    .await
    {
        Ok(_) => crate::maintenance::purge_access_records(&store, &key, args.retention.audit_retention).await,
        Err(error) => Err(error),
    };
    let accessor = Accessor::operator("purge", args.operator.actor);
    close_recorded(
        store,
        accessor,
        Work::Deletion,
        purged.map(drop).map_err(Into::into),
    )
    .await
}

/// `audit verify`: every chain with records in the range recomputed, held against the heads
/// logged; the first problem fails the command.
async fn audit_verify(args: AuditVerifyArgs) -> anyhow::Result<()> {
    let key = args.audit.key()?;
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

/// `audit export`: the records selected, as JSON lines on stdout, after the export's own
/// record (a download by `--actor`, naming the account and person filtered on) is committed.
async fn audit_export(args: AuditExportArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.from < args.to, "--from must be before --to");
    let key = args.audit.key()?;
    let person = args
        .person_ci
        .as_ref()
        .map(|ci| Ci::parse(ci.expose()))
        .transpose()
        // The refusal names the rule, never the value.
        .map_err(|violation| anyhow!("--person-ci {}", violation.description))?
        .map(|ci| key.person(&ci));
    let selection = Selection {
        caller: args.caller,
        account: args.account,
        person,
        ..Selection::between(args.from, args.to)
    };
    let accessor = Accessor::operator(EXPORT_METHOD, Some(args.actor));
    let record = AccessRecord {
        account: selection.account.clone(),
        person: selection.person.clone(),
        purpose: Some(args.reason.as_str().to_owned()),
        ..AccessRecord::of(&accessor, Work::Download, &Subject::default(), OUTCOME_OK)
    };
    let store = recording_store(&args.database, key).await?;
    let exported = export(&store, record, &selection).await;
    store.close().await;
    exported
}

async fn export(store: &Store, record: AccessRecord, selection: &Selection) -> anyhow::Result<()> {
    store
        .record_access(record)
        .await
        .context("the export's own access record was not written, so nothing was exported")?;
    let mut out = std::io::BufWriter::new(std::io::stdout());
    store
        .each_access_record(selection, EXPORT_PAGE, |chained| -> anyhow::Result<()> {
            writeln!(out, "{}", json_line(&chained)).context("writing to stdout")
        })
        .await?;
    out.flush().context("writing to stdout")
}

/// `audit report`: the review of a month against the months before, for a human reviewer.
async fn audit_report(args: AuditReportArgs) -> anyhow::Result<()> {
    let store = Store::connect(&args.database.store_settings()).await?;
    let review = review_month(&store, args.month).await;
    store.close().await;
    print!("{}", review?);
    Ok(())
}

async fn review_month(store: &Store, month: Month) -> Result<Review, StoreError> {
    let tallies = store.access_tallies(month.start(), month.end()).await?;
    let mut history = Vec::with_capacity(HISTORY_MONTHS);
    let mut before = month;
    for _ in 0..HISTORY_MONTHS {
        before = before.before();
        history.push(store.access_tallies(before.start(), before.end()).await?);
    }
    let exports_made = Selection {
        method: Some(EXPORT_METHOD.to_owned()),
        ..Selection::between(month.start(), month.end())
    };
    let mut exports = Vec::new();
    store
        .each_access_record(&exports_made, EXPORT_PAGE, |chained| -> Result<(), StoreError> {
            exports.push(chained.record);
            Ok(())
        })
        .await?;
    Ok(report::review(month, &tallies, &history, exports))
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
