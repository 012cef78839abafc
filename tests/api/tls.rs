//! TLS and mTLS on the gRPC port, with certificates made by the test: a good client, a client
//! without a certificate, a client from another CA, one without the clientAuth usage; the
//! caller's name from the chosen subject alternative name; certificates and the client CA
//! replaced under a running server; health on a plain port for the kubelet.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use certification_service::{
    access::CallerPermissions,
    config::{CallerSan, Settings, TlsSettings},
    grpc::proto::certification_service_client::CertificationServiceClient,
    sandbox::identities::ADULT,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType,
};
use tonic::{
    Code,
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};

use crate::helpers::{App, TestApp, assert_status, verify_request};

struct Authority {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
}

fn authority() -> Authority {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    Authority {
        pem,
        issuer: Issuer::new(params, key),
    }
}

/// What a leaf certificate says about itself.
#[derive(Default)]
struct Names<'a> {
    common_name: Option<&'a str>,
    dns: &'a [&'a str],
    uris: &'a [&'a str],
    usages: &'a [ExtendedKeyUsagePurpose],
}

/// A CA:FALSE certificate (rustls refuses a CA certificate as a server's or a client's).
fn leaf(authority: &Authority, names: Names<'_>) -> Leaf {
    let mut params = CertificateParams::new(
        names
            .dns
            .iter()
            .map(|name| (*name).to_owned())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    for uri in names.uris {
        params
            .subject_alt_names
            .push(SanType::URI((*uri).try_into().unwrap()));
    }
    if let Some(common_name) = names.common_name {
        params.distinguished_name.push(DnType::CommonName, common_name);
    }
    params.extended_key_usages = names.usages.to_vec();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &authority.issuer).unwrap();
    Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// A client certificate as an issuer makes them: the clientAuth usage and one DNS name.
fn client(authority: &Authority, name: &str) -> Leaf {
    leaf(
        authority,
        Names {
            dns: &[name],
            usages: &[ExtendedKeyUsagePurpose::ClientAuth],
            ..Names::default()
        },
    )
}

fn server(authority: &Authority) -> Leaf {
    leaf(
        authority,
        Names {
            common_name: Some("certification-service"),
            dns: &["localhost"],
            usages: &[ExtendedKeyUsagePurpose::ServerAuth],
            ..Names::default()
        },
    )
}

/// The server's certificate, key and client CA as files, as a mounted Secret has them.
struct TlsFiles {
    dir: tempfile::TempDir,
}

impl TlsFiles {
    fn new(server: &Leaf, client_ca: &Authority) -> Self {
        let files = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        files.write_server(server);
        files.write("ca.pem", &client_ca.pem);
        files
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Replaces a file at once, as the kubelet does (a rename, never a half-written file).
    fn write(&self, name: &str, contents: &str) {
        let scratch = self.path(&format!(".{name}.new"));
        std::fs::write(&scratch, contents).unwrap();
        std::fs::rename(&scratch, self.path(name)).unwrap();
    }

    fn write_server(&self, server: &Leaf) {
        self.write("server.key", &server.key_pem);
        self.write("server.pem", &server.cert_pem);
    }

    fn settings(&self, mutual: bool, caller_san: CallerSan) -> TlsSettings {
        TlsSettings {
            cert_file: self.path("server.pem"),
            key_file: self.path("server.key"),
            client_ca_file: mutual.then(|| self.path("ca.pem")),
            caller_san,
            reload_interval: Duration::from_millis(50),
        }
    }
}

/// TLS on the gRPC port from `tls`, and health on a plain port, where the app waits for SERVING:
/// the TLS port may want a client certificate.
fn serving_tls(tls: TlsSettings) -> impl FnOnce(&mut Settings) {
    move |settings| {
        settings.server.health_listen_addr = Some("127.0.0.1:0".parse().unwrap());
        // Callers named by certificates need permissions named (default-deny).
        if tls.client_ca_file.is_some() {
            settings.server.caller_permissions = Some(CallerPermissions::parse("*").unwrap());
        }
        settings.server.tls = Some(tls);
    }
}

/// Our CA, the server's files from it, and the app serving mTLS from them.
struct Mtls {
    ours: Authority,
    files: TlsFiles,
    app: TestApp,
}

async fn serving_mtls(caller_san: CallerSan, adjust: impl FnOnce(&mut Settings) + 'static) -> Mtls {
    let ours = authority();
    let files = TlsFiles::new(&server(&ours), &ours);
    let app = App::new()
        .adjust(serving_tls(files.settings(true, caller_san)))
        .adjust(adjust)
        .spawn()
        .await;
    Mtls { ours, files, app }
}

/// Only `signup` may call Verify: who a certificate names shows in what it may call.
fn signup_may_verify(settings: &mut Settings) {
    settings.server.caller_permissions = Some(CallerPermissions::parse("signup=Verify").unwrap());
}

async fn tls_client(
    address: &str,
    ca_pem: &str,
    identity: Option<&Leaf>,
) -> Result<CertificationServiceClient<Channel>, tonic::transport::Error> {
    let mut config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    if let Some(leaf) = identity {
        config = config.identity(Identity::from_pem(&leaf.cert_pem, &leaf.key_pem));
    }
    let channel = Channel::from_shared(format!("https://{address}"))
        .unwrap()
        .tls_config(config)?
        .connect()
        .await?;
    Ok(CertificationServiceClient::new(channel))
}

/// A Verify over a new connection: Ok, or the code of the refusal (connection refusals too).
async fn verify_over_new_connection(
    address: &str,
    ca_pem: &str,
    identity: Option<&Leaf>,
) -> Result<(), Code> {
    let mut client = tls_client(address, ca_pem, identity)
        .await
        .map_err(|_| Code::Unavailable)?;
    client
        .verify(verify_request(ADULT))
        .await
        .map(drop)
        .map_err(|status| status.code())
}

/// Writes a server certificate and a client CA from a new CA, and waits until a new connection
/// trusting only that CA, with a client certificate from it, is served.
async fn rotate(files: &TlsFiles, address: &str) -> Authority {
    let next = authority();
    files.write_server(&server(&next));
    files.write("ca.pem", &next.pem);
    let rotated = client(&next, "signup");
    let deadline = Instant::now() + Duration::from_secs(10);
    while verify_over_new_connection(address, &next.pem, Some(&rotated))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the new certificates were never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    next
}

#[tokio::test]
async fn tls_serves_verify_to_a_client_that_trusts_our_ca_and_refuses_plain_text() {
    let ours = authority();
    let files = TlsFiles::new(&server(&ours), &ours);
    let app = App::new()
        .adjust(serving_tls(files.settings(false, CallerSan::Dns)))
        .spawn()
        .await;
    let address = app.addr.to_string();
    let mut client = tls_client(&address, &ours.pem, None).await.unwrap();
    client.verify(verify_request(ADULT)).await.unwrap();
    // A plain-text client gets nothing from the TLS port.
    assert!(app.verify(ADULT).await.is_err());
}

#[tokio::test]
async fn mtls_accepts_a_client_certificate_from_our_ca_only() {
    let Mtls {
        ours,
        files: _files,
        app,
    } = serving_mtls(CallerSan::Dns, |_| {}).await;
    let address = app.addr.to_string();

    let good = client(&ours, "signup");
    verify_over_new_connection(&address, &ours.pem, Some(&good))
        .await
        .unwrap();
    // No client certificate: the handshake or the first call fails.
    assert!(
        verify_over_new_connection(&address, &ours.pem, None)
            .await
            .is_err(),
        "a client without a certificate was served"
    );
    // A certificate from another CA.
    let intruder = client(&authority(), "intruder");
    assert!(
        verify_over_new_connection(&address, &ours.pem, Some(&intruder))
            .await
            .is_err(),
        "a client certificate from another CA was served"
    );
    assert_eq!(
        app.sandbox.stats().certification_lookups,
        1,
        "only the good client got through"
    );
}

#[tokio::test]
async fn mtls_refuses_a_client_certificate_from_our_ca_without_the_client_auth_usage() {
    let Mtls {
        ours,
        files: _files,
        app,
    } = serving_mtls(CallerSan::Dns, |_| {}).await;
    let address = app.addr.to_string();
    // No extended key usage at all: webpki alone would take it for any purpose.
    let no_usage = leaf(
        &ours,
        Names {
            dns: &["signup"],
            ..Names::default()
        },
    );
    // A server's certificate from the same CA.
    let server_usage = leaf(
        &ours,
        Names {
            dns: &["signup"],
            usages: &[ExtendedKeyUsagePurpose::ServerAuth],
            ..Names::default()
        },
    );
    for (what, certificate) in [("no usage", &no_usage), ("serverAuth only", &server_usage)] {
        assert!(
            verify_over_new_connection(&address, &ours.pem, Some(certificate))
                .await
                .is_err(),
            "a client certificate with {what} was served"
        );
    }
    verify_over_new_connection(&address, &ours.pem, Some(&client(&ours, "signup")))
        .await
        .unwrap();
    assert_eq!(app.sandbox.stats().certification_lookups, 1);
}

#[tokio::test]
async fn the_caller_is_the_san_tls_caller_san_names_never_the_common_name() {
    let caller_san = CallerSan::Uri {
        prefix: "spiffe://cluster.local/ns/apps/sa/".to_owned(),
    };
    let Mtls {
        ours,
        files: _files,
        app,
    } = serving_mtls(caller_san, signup_may_verify).await;
    let address = app.addr.to_string();
    let with =
        |common_name: Option<&'static str>, dns: &'static [&'static str], uris: &'static [&'static str]| {
            leaf(
                &ours,
                Names {
                    common_name,
                    dns,
                    uris,
                    usages: &[ExtendedKeyUsagePurpose::ClientAuth],
                },
            )
        };
    let call = |certificate: Leaf| {
        let address = address.clone();
        let ca = ours.pem.clone();
        async move { verify_over_new_connection(&address, &ca, Some(&certificate)).await }
    };

    // The URI under the prefix names the caller, whatever the common name and DNS names say.
    let named = with(
        Some("ops"),
        &["ops"],
        &["spiffe://cluster.local/ns/apps/sa/signup"],
    );
    assert_eq!(call(named).await, Ok(()));
    // A common name alone, or a DNS name alone, names nobody under `uri:`.
    assert_eq!(
        call(with(Some("signup"), &[], &[])).await,
        Err(Code::Unauthenticated)
    );
    assert_eq!(
        call(with(None, &["signup"], &[])).await,
        Err(Code::Unauthenticated)
    );
    // A URI outside the prefix names nobody; two under it are ambiguous.
    assert_eq!(
        call(with(None, &[], &["spiffe://other.local/ns/apps/sa/signup"])).await,
        Err(Code::Unauthenticated)
    );
    let two = &[
        "spiffe://cluster.local/ns/apps/sa/signup",
        "spiffe://cluster.local/ns/apps/sa/ops",
    ];
    assert_eq!(call(with(None, &[], two)).await, Err(Code::Unauthenticated));
    // Named by the URI as ops, though its common name says signup: not signup's permissions.
    let ops = with(
        Some("signup"),
        &["signup"],
        &["spiffe://cluster.local/ns/apps/sa/ops"],
    );
    assert_eq!(call(ops).await, Err(Code::PermissionDenied));
    assert_eq!(app.sandbox.stats().certification_lookups, 1);
}

#[tokio::test]
async fn under_dns_the_one_dns_name_is_the_caller_and_the_common_name_is_ignored() {
    let Mtls {
        ours,
        files: _files,
        app,
    } = serving_mtls(CallerSan::Dns, signup_may_verify).await;
    let address = app.addr.to_string();
    let with = |common_name: Option<&'static str>, dns: &'static [&'static str]| {
        leaf(
            &ours,
            Names {
                common_name,
                dns,
                usages: &[ExtendedKeyUsagePurpose::ClientAuth],
                ..Names::default()
            },
        )
    };
    for (certificate, expected) in [
        (with(Some("ops"), &["signup"]), Ok(())),
        // Named ops by its DNS name, though its common name says signup.
        (with(Some("signup"), &["ops"]), Err(Code::PermissionDenied)),
        (with(Some("signup"), &[]), Err(Code::Unauthenticated)),
        (with(None, &["signup", "ops"]), Err(Code::Unauthenticated)),
    ] {
        assert_eq!(
            verify_over_new_connection(&address, &ours.pem, Some(&certificate)).await,
            expected
        );
    }
}

#[tokio::test]
async fn a_new_server_certificate_and_client_ca_are_served_without_a_restart() {
    let Mtls {
        ours: first,
        files,
        app,
    } = serving_mtls(CallerSan::Dns, |_| {}).await;
    let address = app.addr.to_string();
    let mut before = tls_client(&address, &first.pem, Some(&client(&first, "signup")))
        .await
        .unwrap();
    before.verify(verify_request(ADULT)).await.unwrap();

    // Both rotate: a server certificate from the second CA, and the second CA for clients.
    let second = rotate(&files, &address).await;
    // A client of the first CA is refused on a new connection.
    assert!(
        verify_over_new_connection(&address, &second.pem, Some(&client(&first, "signup")))
            .await
            .is_err()
    );
    // A connection made before keeps the configuration it began with.
    before.verify(verify_request(ADULT)).await.unwrap();
}

#[tokio::test]
async fn a_tls_file_that_does_not_load_keeps_the_certificates_in_use() {
    let Mtls { ours, files, app } = serving_mtls(CallerSan::Dns, |_| {}).await;
    let address = app.addr.to_string();
    let good = client(&ours, "signup");

    // A key of another certificate, then no PEM at all, then a client CA that is not PEM.
    let other = server(&authority());
    files.write("server.key", &other.key_pem);
    tokio::time::sleep(Duration::from_millis(300)).await;
    verify_over_new_connection(&address, &ours.pem, Some(&good))
        .await
        .unwrap();
    files.write("server.key", "not a key");
    files.write("ca.pem", "not a certificate");
    tokio::time::sleep(Duration::from_millis(300)).await;
    verify_over_new_connection(&address, &ours.pem, Some(&good))
        .await
        .unwrap();
    // Files that load again are taken: the loop lives on.
    rotate(&files, &address).await;
}

#[tokio::test]
async fn the_server_process_names_callers_by_tls_caller_san_and_warns_of_a_bad_file() {
    let ours = authority();
    let files = TlsFiles::new(&server(&ours), &ours);
    let path = |name: &str| files.path(name).display().to_string();
    let (cert_file, key_file, ca_file) = (path("server.pem"), path("server.key"), path("ca.pem"));
    let setup = crate::fleet::process_beside_fleet(&[
        ("TLS_CERT_FILE", &cert_file),
        ("TLS_KEY_FILE", &key_file),
        ("TLS_CLIENT_CA_FILE", &ca_file),
        ("TLS_CALLER_SAN", "uri:spiffe://cluster.local/ns/apps/sa/"),
        ("TLS_RELOAD_INTERVAL", "100ms"),
        ("CALLER_PERMISSIONS", "*"),
    ])
    .await;
    let service = &setup.service;
    let good = leaf(
        &ours,
        Names {
            common_name: Some("common-name"),
            dns: &["dns-name"],
            uris: &["spiffe://cluster.local/ns/apps/sa/recovery-service"],
            usages: &[ExtendedKeyUsagePurpose::ClientAuth],
        },
    );
    let mut client = tls_client(&service.address, &ours.pem, Some(&good))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    // NOT_READY until migrations are applied.
    while client.verify(verify_request(ADULT)).await.is_err() {
        assert!(Instant::now() < deadline, "never answered over mTLS");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs = service.wait_for_log("caller=recovery-service").await;
    assert!(logs.contains("caller=recovery-service"), "{logs}");
    assert!(logs.contains("mutual_tls=true"), "{logs}");

    files.write("server.key", "not a key");
    let logs = service.wait_for_log("do not load").await;
    assert!(logs.contains("holds no PEM private key"), "{logs}");
    assert!(
        !logs.contains("not a key"),
        "the file's contents were logged: {logs}"
    );
}

#[tokio::test]
async fn a_refused_mtls_call_reads_as_unauthenticated() {
    // A certificate that names no caller gets through the handshake but not the call.
    let Mtls {
        ours,
        files: _files,
        app,
    } = serving_mtls(CallerSan::Dns, |_| {}).await;
    let nameless = leaf(
        &ours,
        Names {
            common_name: Some("signup"),
            usages: &[ExtendedKeyUsagePurpose::ClientAuth],
            ..Names::default()
        },
    );
    let mut client = tls_client(&app.addr.to_string(), &ours.pem, Some(&nameless))
        .await
        .unwrap();
    assert_status(
        client.verify(verify_request(ADULT)).await,
        Code::Unauthenticated,
        "UNAUTHENTICATED",
    );
}

#[tokio::test]
async fn under_mtls_a_token_must_belong_to_the_certificates_caller() {
    use tonic::{Request, metadata::MetadataValue};
    let tokens = certification_service::access::CallerTokens::parse(
        "signup=signup-token-0123456789abcdef,ops=ops-token-0123456789abcdef0",
    )
    .unwrap();
    let Mtls {
        ours,
        files: _files,
        app,
    } = serving_mtls(CallerSan::Dns, |settings| {
        settings.server.caller_tokens = Some(tokens)
    })
    .await;
    let mut client = tls_client(&app.addr.to_string(), &ours.pem, Some(&client(&ours, "signup")))
        .await
        .unwrap();
    let with_token = |token: &str| {
        let mut request = Request::new(verify_request(ADULT));
        request.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
        );
        request
    };
    client
        .verify(with_token("signup-token-0123456789abcdef"))
        .await
        .unwrap();
    // The signup certificate's holder with the ops token: one caller's certificate, another's token.
    assert_status(
        client.verify(with_token("ops-token-0123456789abcdef0")).await,
        Code::Unauthenticated,
        "CALLER_MISMATCH",
    );
    assert_eq!(app.sandbox.stats().certification_lookups, 1);
}

#[test]
fn a_tls_key_without_a_certificate_is_refused_at_start() {
    use clap::Parser;
    let args = certification_service::config::Cli::try_parse_from([
        "certification-service",
        "serve",
        "--sandbox",
        "--tls-key-file",
        "/nonexistent/key.pem",
    ])
    .unwrap();
    let certification_service::config::Command::Serve(serve) = args.command else {
        unreachable!()
    };
    let error = serve
        .into_settings(Some("http://127.0.0.1:1".into()))
        .unwrap_err();
    assert!(error.to_string().contains("TLS_CERT_FILE"), "{error}");
}

#[test]
fn tls_caller_san_is_dns_or_a_uri_prefix_and_nothing_else() {
    use clap::Parser;
    let parse = |value: &str| {
        certification_service::config::Cli::try_parse_from([
            "certification-service",
            "serve",
            "--tls-caller-san",
            value,
        ])
        .map(|cli| match cli.command {
            certification_service::config::Command::Serve(_) => (),
            _ => unreachable!(),
        })
    };
    assert!(parse("dns").is_ok());
    assert!(parse("uri:spiffe://cluster.local/ns/apps/sa/").is_ok());
    let error = parse("cn").unwrap_err().to_string();
    assert!(error.contains("neither `dns` nor `uri:<prefix>`"), "{error}");
}
