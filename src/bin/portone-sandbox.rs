//! A standalone PortOne emulator for developers of the service's callers.
//!
//! Serves V1's `POST /users/getToken` and `GET /certifications/{imp_uid}`, V2's
//! `GET /identity-verifications/{id}`, and the `/__sandbox/` admin routes (see
//! `certification_service::sandbox`) until Ctrl-C or SIGTERM.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context as _;
use certification_service::sandbox::{
    SANDBOX_IMP_KEY, SANDBOX_IMP_SECRET, SANDBOX_OTHER_IMP_KEY, SANDBOX_OTHER_IMP_SECRET, SANDBOX_STORE_ID,
    SANDBOX_TIER, SANDBOX_V2_API_SECRET, Sandbox, SandboxConfig,
};
use clap::Parser;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    version,
    about = "PortOne API emulator (V1 getToken and certifications, V2 identity verifications)"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "SANDBOX_LISTEN_ADDR", default_value = "127.0.0.1:8900")]
    listen: SocketAddr,
    /// The imp_key getToken accepts.
    #[arg(long, env = "SANDBOX_IMP_KEY", default_value = SANDBOX_IMP_KEY)]
    imp_key: String,
    /// The imp_secret getToken accepts.
    #[arg(long, env = "SANDBOX_IMP_SECRET", default_value = SANDBOX_IMP_SECRET, hide_env_values = true)]
    imp_secret: String,
    /// The second merchant's imp_key (its own certifications, no foreigner contract).
    #[arg(long, env = "SANDBOX_OTHER_IMP_KEY", default_value = SANDBOX_OTHER_IMP_KEY)]
    other_imp_key: String,
    /// The second merchant's imp_secret.
    #[arg(long, env = "SANDBOX_OTHER_IMP_SECRET", default_value = SANDBOX_OTHER_IMP_SECRET, hide_env_values = true)]
    other_imp_secret: String,
    /// The main merchant's sub-merchant code (`Tier` header); empty for none.
    #[arg(long, env = "SANDBOX_TIER", default_value = SANDBOX_TIER)]
    tier: String,
    /// The V2 API secret (`Authorization: PortOne <secret>`).
    #[arg(long, env = "SANDBOX_V2_API_SECRET", default_value = SANDBOX_V2_API_SECRET, hide_env_values = true)]
    v2_api_secret: String,
    /// The V2 store that secret reads.
    #[arg(long, env = "SANDBOX_STORE_ID", default_value = SANDBOX_STORE_ID)]
    store_id: String,
    /// Lifetime of a newly issued token, in seconds (PortOne: 1800).
    #[arg(long, env = "SANDBOX_TOKEN_LIFETIME_SECONDS", default_value_t = 1800)]
    token_lifetime_seconds: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let config = SandboxConfig {
        imp_key: args.imp_key,
        imp_secret: args.imp_secret,
        other_imp_key: args.other_imp_key,
        other_imp_secret: args.other_imp_secret,
        tier: Some(args.tier).filter(|tier| !tier.is_empty()),
        token_lifetime: Duration::from_secs(args.token_lifetime_seconds),
        v2_api_secret: args.v2_api_secret,
        store_id: args.store_id,
    };
    let imp_key = config.imp_key.clone();
    let sandbox = Sandbox::start(listener, config)
        .await
        .context("cannot start the sandbox")?;
    tracing::info!(base_url = %sandbox.base_url(), %imp_key, "portone sandbox listening");

    shutdown_signal().await?;
    tracing::info!("portone sandbox stopping");
    drop(sandbox);
    Ok(())
}

/// Ctrl-C, or SIGTERM where there is one (containers stop with it).
async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot listen for SIGTERM")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("cannot listen for Ctrl-C")?,
            _ = terminate.recv() => {}
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.context("cannot listen for Ctrl-C")
    }
}
