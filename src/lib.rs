pub mod access;
pub mod app;
pub mod audit;
pub mod cli;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod maintenance;
pub mod portone;
pub mod quota;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod secret;
pub mod service;
pub mod store;
pub mod telemetry;

/// The arrows the layout promises (docs/architecture.md): the transport reaches the use cases,
/// never the store or the sandbox; configuration does not know the transport.
#[cfg(test)]
mod layout_tests {
    use std::path::Path;

    /// Every `.rs` file under `src/<folder>` that names `crate::<module>`.
    fn naming(folder: &str, module: &str) -> Vec<String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(folder);
        let mut stack = vec![root];
        let mut found = Vec::new();
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|ext| ext == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    let named = text.contains(&format!("crate::{module}"))
                        || text.lines().any(|line| {
                            let line = line.trim_start();
                            line.starts_with(&format!("{module}::"))
                                || line.starts_with(&format!("{module},"))
                        });
                    if named {
                        found.push(path.display().to_string());
                    }
                }
            }
        }
        found
    }

    #[test]
    fn the_transport_reaches_neither_the_store_nor_the_sandbox_and_config_not_the_transport() {
        assert_eq!(naming("grpc", "store"), Vec::<String>::new());
        assert_eq!(naming("grpc", "sandbox"), Vec::<String>::new());
        assert_eq!(naming("config", "grpc"), Vec::<String>::new());
        // The check itself sees an arrow where there is one.
        assert!(!naming("app", "grpc").is_empty());
    }
}
