//! The CheckDuplicate scenario: CheckDuplicate by CI over gRPC beside the bare indexed SQL lookup
//! on the same table, and beside a gRPC round trip to the same server that does nothing (health
//! Check), interleaved, same client count. CheckDuplicate is a gRPC round trip *and* the lookup,
//! so the two floors together bound what it can reach.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, bail};
use certification_service::{
    domain::{Ci, CiIndexKey},
    grpc::proto::{
        CheckDuplicateRequest, VerifyRequest, certification_service_client::CertificationServiceClient,
        check_duplicate_request,
    },
    sandbox::identities::ci_for,
};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::{
    DuplicateArgs,
    grpc::{channels, code, grpc_clients, with_timeout},
    measure::{Measured, closed_loop},
    sandbox::{insert_certifications, person_key},
};

pub(crate) async fn duplicate(args: DuplicateArgs) -> anyhow::Result<()> {
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
                    ..Default::default()
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
    // The gRPC round trip alone: the server's health Check (no authentication, no database).
    let hop_clients: Vec<HealthClient<Channel>> = (0..load.concurrency)
        .map(|index| HealthClient::new(channels[index % channels.len()].clone()))
        .collect();
    let hop_call = move |mut client: HealthClient<Channel>, _n: u64| async move {
        let answer = client
            .check(with_timeout(HealthCheckRequest::default(), timeout))
            .await
            .map_err(code)?
            .into_inner();
        if answer.status != ServingStatus::Serving as i32 {
            return Err("the server is not SERVING".to_owned());
        }
        Ok(())
    };
    closed_loop(&clients, load.warmup, service_call.clone()).await;
    bare_lookups.run(load.warmup).await;
    closed_loop(&hop_clients, load.warmup, hop_call).await;
    // Interleaved, so drift on the machine (checkpoints, autovacuum) falls on all alike.
    let (mut service, mut bare, mut hop) = (Measured::new(), Measured::new(), Measured::new());
    for _ in 0..DUPLICATE_ROUNDS {
        let slice = load.duration / DUPLICATE_ROUNDS;
        service.merge(closed_loop(&clients, slice, service_call.clone()).await);
        bare.merge(bare_lookups.run(slice).await);
        hop.merge(closed_loop(&hop_clients, slice, hop_call).await);
    }
    bare_lookups.db.close().await.ok();
    let service_rate = service.ok() as f64 / service.elapsed.as_secs_f64();
    let bare_rate = bare.ok() as f64 / bare.elapsed.as_secs_f64();
    let hop_rate = hop.ok() as f64 / hop.elapsed.as_secs_f64();
    // A round trip and a lookup one after the other: their times per call add up.
    let in_series = 1.0 / (1.0 / hop_rate + 1.0 / bare_rate);
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
    println!(
        "{}",
        hop.row(
            "gRPC round trip (health Check)",
            load.concurrency,
            &format!(
                "the same server and connections; with the bare lookup in series: {in_series:.0}/s, {:.2} of the bare lookup's rate",
                in_series / bare_rate
            )
        )
    );
    crate::results::record(load.results.as_deref(), "duplicate_rate", service_rate)?;
    crate::results::record(load.results.as_deref(), "bare_rate", bare_rate)?;
    crate::results::record(load.results.as_deref(), "hop_and_bare_rate", in_series)?;
    let failed = [&service, &bare, &hop]
        .iter()
        .any(|measured| !measured.errors.is_empty() || measured.ok() == 0);
    if failed {
        bail!("CheckDuplicate, the bare lookup or the gRPC round trip failed");
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
            // Pooled as the service pools its connections (src/store/mod.rs), so the floor is
            // the same query through the same client, not a different round-trip count.
            .test_before_acquire_if_idle_for(Duration::from_millis(250))
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
