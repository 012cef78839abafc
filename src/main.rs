use std::process::ExitCode;

use certification_service::{
    config::{Cli, Command},
    startup, telemetry,
};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let _telemetry = telemetry::init();
    let outcome = match cli.command {
        Command::Serve(args) => startup::serve(args).await,
        Command::Migrate(args) => startup::migrate(args).await,
        Command::Rekey(args) => startup::rekey(args).await,
        Command::Purge(args) => startup::purge(args).await,
        Command::Health(args) => startup::health(args).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("certification-service: {error:#}");
            ExitCode::FAILURE
        }
    }
}
