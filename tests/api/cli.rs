//! The binary itself: what `serve` refuses, and `migrate`.

use std::process::Command;

fn service() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_certification-service"));
    // Nothing from the developer's or CI's environment may satisfy the checks under test.
    for variable in [
        "PORTONE_IMP_KEY",
        "PORTONE_IMP_SECRET",
        "CI_INDEX_KEY",
        "DATABASE_URL",
        "REDIS_URL",
        "RUST_LOG",
    ] {
        command.env_remove(variable);
    }
    command
}

#[test]
fn serve_without_credentials_or_sandbox_refuses_and_says_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let output = service()
        .args(["serve", "--grpc-listen-addr", "127.0.0.1:0"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("PORTONE_IMP_KEY") && stderr.contains("--sandbox"),
        "{stderr}"
    );
}

#[test]
fn serve_without_an_index_key_refuses_and_never_prints_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let output = service()
        .args(["serve", "--grpc-listen-addr", "127.0.0.1:0"])
        .env("PORTONE_IMP_KEY", "key")
        .env("PORTONE_IMP_SECRET", "very-secret-value")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let everything = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(everything.contains("CI_INDEX_KEY"), "{everything}");
    assert!(!everything.contains("very-secret-value"), "{everything}");
}

#[test]
fn migrate_creates_the_schema_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("nested/dir/cs.db");
    let output = service()
        .args([
            "migrate",
            "--database-url",
            &format!("sqlite://{}?mode=rwc", database.display()),
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(database.exists());
    // Applying again is a no-op, not an error.
    let again = service()
        .args([
            "migrate",
            "--database-url",
            &format!("sqlite://{}?mode=rwc", database.display()),
        ])
        .output()
        .unwrap();
    assert!(again.status.success());
}
