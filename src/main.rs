use std::process::ExitCode;

use certification_service::{app::install_crypto_provider, cli, config::Cli, telemetry};
use clap::Parser;

fn main() -> ExitCode {
    limit_malloc_arenas();
    run()
}

/// glibc gives every thread that allocates concurrently an arena of its own (up to 8 per core)
/// and keeps their freed memory. One arena lowers the peak at no measured CPU cost
/// (BENCHMARKS.md, "malloc arenas"). MALLOC_ARENA_MAX in the environment still wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; it runs before any other thread
        // exists, and a refusal (return 0) leaves the default in place.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

#[tokio::main]
async fn run() -> ExitCode {
    let cli = Cli::parse();
    // Once, before anything that may open a TLS connection (the OTLP exporter included).
    install_crypto_provider();
    let _telemetry = telemetry::init(cli::logs_to(&cli.command));
    match cli::run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Once, on stderr, where a failed command's reason belongs (Kubernetes keeps it
            // beside the logs).
            eprintln!("certification-service: {error:#}");
            ExitCode::FAILURE
        }
    }
}
