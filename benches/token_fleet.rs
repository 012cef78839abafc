//! What the fleet-wide token cache saves: N concurrent Verify calls spread over M replicas that
//! share one Redis and one PortOne sandbox answering at a set latency, cold (no token anywhere)
//! and warm. Prints getToken calls, Redis round trips per Verify and Verify latency.
//!
//! `cargo bench --bench token_fleet -- [--replicas 1,3] [--calls 150] [--latency-ms 50] [--rounds 3]`
//! Needs `redis-server` on PATH (a private one is started on a free port). DATABASE_URL may
//! name a PostgreSQL database; otherwise a temporary SQLite file is shared by the replicas.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use certification_service::{
    app::{Application, install_crypto_provider},
    config::RedisSettings,
    grpc::proto::{
        CheckDuplicateRequest, VerifyRequest, certification_service_client::CertificationServiceClient,
        check_duplicate_request::Key,
    },
    portone::v1::PortoneClient,
    sandbox::{Sandbox, SandboxConfig, identities::CertificationRecord},
    secret::Secret,
};
use certification_testkit::{RedisServer, test_settings, wait_for_serving};
use tokio::{net::TcpListener, sync::oneshot};
use tonic::transport::Channel;

struct Options {
    replicas: Vec<usize>,
    calls: usize,
    latency: Duration,
    rounds: usize,
}

fn options() -> Options {
    let mut options = Options {
        replicas: vec![1, 3],
        calls: 150,
        latency: Duration::from_millis(50),
        rounds: 3,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut index = 0;
    while index < args.len() {
        let value = args.get(index + 1).cloned().unwrap_or_default();
        match args[index].as_str() {
            "--replicas" => {
                options.replicas = value
                    .split(',')
                    .map(|count| count.parse().expect("--replicas 1,3"))
                    .collect();
            }
            "--calls" => options.calls = value.parse().expect("--calls N"),
            "--latency-ms" => options.latency = Duration::from_millis(value.parse().expect("--latency-ms N")),
            "--rounds" => options.rounds = value.parse().expect("--rounds N"),
            // `cargo bench` passes --bench; anything else is a mistake worth stopping for.
            "--bench" => {
                index += 1;
                continue;
            }
            other => panic!("unknown option {other}"),
        }
        index += 2;
    }
    options
}

struct Replica {
    client: CertificationServiceClient<Channel>,
    portone: PortoneClient,
    _stop: oneshot::Sender<()>,
}

struct Phase {
    get_token_calls: u64,
    redis_round_trips: u64,
    redis_commands_seen_by_server: u64,
    latencies: Vec<Duration>,
}

fn main() {
    let options = options();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(run(options));
}

async fn run(options: Options) {
    install_crypto_provider();
    println!(
        "token_fleet: {} concurrent Verify per phase, sandbox latency {} ms, {} rounds, {}",
        options.calls,
        options.latency.as_millis(),
        options.rounds,
        if std::env::var("DATABASE_URL").is_ok_and(|url| url.starts_with("postgres")) {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    println!(
        "{:>8} {:>5} {:>5} {:>10} {:>12} {:>14} {:>9} {:>9} {:>9}",
        "replicas", "round", "phase", "getToken", "redis rt/op", "redis cmd/op", "p50 ms", "p99 ms", "max ms"
    );
    for &replicas in &options.replicas {
        for round in 1..=options.rounds {
            let redis = RedisServer::start();
            let mut observer = redis.connection().await;
            let (sandbox, fleet, _data) = start_fleet(replicas, &redis, options.latency).await;
            warm_database_pools(&fleet, options.calls).await;
            for (phase_index, phase) in ["cold", "warm"].into_iter().enumerate() {
                // Every signup brings its own imp_uid (and person): no row shared between calls.
                let imp_uids = insert_certifications(&sandbox, round * 10 + phase_index, options.calls);
                let measured = measure(&sandbox, &fleet, &mut observer, &imp_uids).await;
                let calls = options.calls as f64;
                println!(
                    "{:>8} {:>5} {:>5} {:>10} {:>12.2} {:>14.2} {:>9.1} {:>9.1} {:>9.1}",
                    replicas,
                    round,
                    phase,
                    measured.get_token_calls,
                    measured.redis_round_trips as f64 / calls,
                    measured.redis_commands_seen_by_server as f64 / calls,
                    percentile(&measured.latencies, 0.50),
                    percentile(&measured.latencies, 0.99),
                    percentile(&measured.latencies, 1.0),
                );
            }
        }
    }
}

async fn start_fleet(
    replicas: usize,
    redis: &RedisServer,
    latency: Duration,
) -> (Sandbox, Vec<Replica>, Option<tempfile::TempDir>) {
    let config = SandboxConfig {
        imp_key: format!("bench_{}", uuid::Uuid::new_v4().simple()),
        ..SandboxConfig::default()
    };
    let sandbox = Sandbox::start(TcpListener::bind("127.0.0.1:0").await.unwrap(), config.clone())
        .await
        .unwrap();
    sandbox.handle().set_latency(latency);
    let (database_url, data) = match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => (url, None),
        _ => {
            let dir = tempfile::tempdir().unwrap();
            (
                format!("sqlite://{}/bench.db?mode=rwc", dir.path().display()),
                Some(dir),
            )
        }
    };
    let mut settings = test_settings(
        &database_url,
        &sandbox.base_url(),
        &config.imp_key,
        &config.imp_secret,
    );
    settings.redis = Some(RedisSettings {
        url: Secret::new(redis.url()),
        timeout: Duration::from_millis(250),
        ca_file: None,
    });
    settings.store.acquire_timeout = Duration::from_secs(10);
    settings.store.readiness_interval = Duration::from_millis(100);
    settings.portone_v1.as_mut().unwrap().http.request_timeout = Duration::from_secs(5);
    settings.server.request_timeout = Duration::from_secs(30);
    settings.server.max_in_flight = 4096;
    let mut fleet = Vec::new();
    for _ in 0..replicas {
        let application =
            Application::build(settings.clone(), TcpListener::bind("127.0.0.1:0").await.unwrap())
                .await
                .unwrap();
        let address = application.local_addr();
        let portone = application.portone().expect("the benchmark configures V1");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(application.run_until_stopped(async {
            let _ = stopped.await;
        }));
        let channel = Channel::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let client = CertificationServiceClient::new(channel);
        wait_for_serving(
            &address.to_string(),
            Duration::from_secs(30),
            Duration::from_millis(25),
        )
        .await
        .unwrap();
        fleet.push(Replica {
            client,
            portone,
            _stop: stop,
        });
    }
    (sandbox, fleet, data)
}

/// Opens the database connections the measured calls will use (a lookup by CI never reaches
/// PortOne), so "cold" measures the token, not connection set-up.
async fn warm_database_pools(fleet: &[Replica], calls: usize) {
    let lookups = (0..calls).map(|index| {
        let mut client = fleet[index % fleet.len()].client.clone();
        async move {
            let request = CheckDuplicateRequest {
                key: Some(Key::Ci(certification_service::sandbox::identities::ci_for(
                    "warm-up",
                ))),
                ..Default::default()
            };
            client
                .check_duplicate(request)
                .await
                .expect("CheckDuplicate failed");
        }
    });
    futures::future::join_all(lookups).await;
}

fn insert_certifications(sandbox: &Sandbox, batch: usize, count: usize) -> Vec<String> {
    let handle = sandbox.handle();
    let now = chrono::Utc::now().timestamp();
    let birthday = chrono::NaiveDate::from_ymd_opt(1990, 1, 1).unwrap();
    (0..count)
        .map(|index| {
            let imp_uid = format!("imp_9{batch:03}{index:08}");
            let person = format!("bench-{batch}-{index}");
            handle.insert_certification(CertificationRecord::certified(
                &imp_uid, &person, "벤치", birthday, now,
            ));
            imp_uid
        })
        .collect()
}

async fn measure(
    sandbox: &Sandbox,
    fleet: &[Replica],
    redis: &mut redis::aio::MultiplexedConnection,
    imp_uids: &[String],
) -> Phase {
    let calls = imp_uids.len();
    let handle = sandbox.handle();
    handle.reset_stats();
    let round_trips_before: u64 = fleet
        .iter()
        .map(|replica| replica.portone.token_cache().stats().redis_round_trips)
        .sum();
    let commands_before = redis_commands(redis).await;
    let start_line = Arc::new(tokio::sync::Barrier::new(calls));
    let tasks: Vec<_> = (0..calls)
        .map(|index| {
            let mut client = fleet[index % fleet.len()].client.clone();
            let start_line = start_line.clone();
            let request = VerifyRequest {
                imp_uid: imp_uids[index].clone(),
                ..VerifyRequest::default()
            };
            tokio::spawn(async move {
                start_line.wait().await;
                let started = Instant::now();
                client.verify(request).await.expect("Verify failed");
                started.elapsed()
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(calls);
    for task in tasks {
        latencies.push(task.await.unwrap());
    }
    let round_trips_after: u64 = fleet
        .iter()
        .map(|replica| replica.portone.token_cache().stats().redis_round_trips)
        .sum();
    // INFO itself is one command; leave it out.
    let commands_seen = redis_commands(redis).await.saturating_sub(commands_before + 1);
    latencies.sort();
    Phase {
        get_token_calls: handle.stats().get_token_calls,
        redis_round_trips: round_trips_after - round_trips_before,
        redis_commands_seen_by_server: commands_seen,
        latencies,
    }
}

/// Commands Redis itself counted: a check on our own counter.
async fn redis_commands(connection: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(connection)
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("total_commands_processed:"))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], quantile: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 * quantile).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1000.0
}
