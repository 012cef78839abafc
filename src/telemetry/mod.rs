//! Logging and metrics. Bound SQL values, HTTP bodies and headers are personal data or
//! credentials here, so the libraries that could print them are capped whatever RUST_LOG asks for.

pub mod metrics;

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Appended after RUST_LOG: later directives for the same target win.
const CAPS: &[&str] = &[
    "sqlx=warn",
    "sea_orm=info",
    "h2=info",
    "hyper=info",
    "hyper_util=info",
    "reqwest=info",
    "tower=info",
];

/// Installs the global subscriber: human-readable lines, or JSON with `LOG_FORMAT=json`.
pub fn init() {
    let requested = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    let directives = std::iter::once(requested.as_str())
        .chain(CAPS.iter().copied())
        .collect::<Vec<_>>()
        .join(",");
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    let registry = tracing_subscriber::registry().with(filter);
    let installed = if json {
        registry
            .with(fmt::layer().json().with_current_span(true))
            .try_init()
    } else {
        // Colour codes only for a person at a terminal: piped logs are read by programs.
        let ansi = std::io::stdout().is_terminal();
        registry.with(fmt::layer().with_ansi(ansi)).try_init()
    };
    // A second init (tests) keeps the first subscriber.
    drop(installed);
}
