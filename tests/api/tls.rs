//! TLS and mTLS on the gRPC port, with certificates made by the test: a good client, a client
//! without a certificate, a client from another CA; health on a plain port for the kubelet.

use std::time::{Duration, Instant};

use certification_service::{
    config::{Settings, TlsSettings},
    grpc::proto::certification_service_client::CertificationServiceClient,
    sandbox::identities::ADULT,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::helpers::{App, verify_request};

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

/// A CA:FALSE certificate (rustls refuses a CA certificate as a server's) named `common_name`.
fn leaf(authority: &Authority, common_name: &str, dns_names: &[&str]) -> Leaf {
    let mut params = CertificateParams::new(
        dns_names
            .iter()
            .map(|name| (*name).to_owned())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    params.distinguished_name.push(DnType::CommonName, common_name);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &authority.issuer).unwrap();
    Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

struct Pki {
    ours: Authority,
    server: Leaf,
}

fn pki() -> Pki {
    let ours = authority();
    let server = leaf(&ours, "certification-service", &["localhost"]);
    Pki { ours, server }
}

/// TLS on the gRPC port with the server's certificate from `pki` (client certificates from our CA
/// if `mutual`), and health on a plain port, where the app waits for SERVING: the TLS port may want
/// a client certificate.
fn serving_tls(pki: &Pki, mutual: bool) -> impl FnOnce(&mut Settings) {
    let tls = TlsSettings {
        cert_pem: pki.server.cert_pem.clone().into_bytes(),
        key_pem: pki.server.key_pem.clone().into_bytes(),
        client_ca_pem: mutual.then(|| pki.ours.pem.clone().into_bytes()),
    };
    move |settings| {
        settings.server.tls = Some(tls);
        settings.server.health_listen_addr = Some("127.0.0.1:0".parse().unwrap());
        if mutual {
            settings.server.caller_permissions =
                Some(certification_service::access::CallerPermissions::parse("*").unwrap());
        }
    }
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

#[tokio::test]
async fn tls_serves_verify_to_a_client_that_trusts_our_ca_and_refuses_plain_text() {
    let pki = pki();
    let app = App::new().adjust(serving_tls(&pki, false)).spawn().await;
    let address = app.addr.to_string();
    let mut client = tls_client(&address, &pki.ours.pem, None).await.unwrap();
    client.verify(verify_request(ADULT)).await.unwrap();
    // A plain-text client gets nothing from the TLS port.
    assert!(app.verify(ADULT).await.is_err());
}

#[tokio::test]
async fn mtls_accepts_a_client_certificate_from_our_ca_only() {
    let pki = pki();
    let app = App::new().adjust(serving_tls(&pki, true)).spawn().await;
    let address = app.addr.to_string();

    let good = leaf(&pki.ours, "signup", &[]);
    let mut client = tls_client(&address, &pki.ours.pem, Some(&good)).await.unwrap();
    client.verify(verify_request(ADULT)).await.unwrap();

    // No client certificate: the handshake or the first call fails.
    let without = match tls_client(&address, &pki.ours.pem, None).await {
        Ok(mut client) => client.verify(verify_request(ADULT)).await.is_err(),
        Err(_) => true,
    };
    assert!(without, "a client without a certificate was served");

    // A certificate from another CA.
    let other = authority();
    let intruder = leaf(&other, "intruder", &[]);
    let foreign = match tls_client(&address, &pki.ours.pem, Some(&intruder)).await {
        Ok(mut client) => client.verify(verify_request(ADULT)).await.is_err(),
        Err(_) => true,
    };
    assert!(foreign, "a client certificate from another CA was served");
    assert_eq!(
        app.sandbox.stats().certification_lookups,
        1,
        "only the good client got through"
    );
}

#[tokio::test]
async fn under_mtls_a_token_must_belong_to_the_certificates_caller() {
    use tonic::{Code, Request, metadata::MetadataValue};
    let pki = pki();
    let tokens = certification_service::access::CallerTokens::parse(
        "signup=signup-token-0123456789abcdef,ops=ops-token-0123456789abcdef0",
    )
    .unwrap();
    let app = App::new()
        .adjust(serving_tls(&pki, true))
        .adjust(|settings| settings.server.caller_tokens = Some(tokens))
        .spawn()
        .await;
    let signup = leaf(&pki.ours, "signup", &[]);
    let mut client = tls_client(&app.addr.to_string(), &pki.ours.pem, Some(&signup))
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
    crate::helpers::assert_status(
        client.verify(with_token("ops-token-0123456789abcdef0")).await,
        Code::Unauthenticated,
        "CALLER_MISMATCH",
    );
    assert_eq!(app.sandbox.stats().certification_lookups, 1);
}

#[tokio::test]
async fn the_callers_name_comes_from_its_certificate() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, pem: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path.display().to_string()
    };
    let cert_file = write("server.pem", &pki.server.cert_pem);
    let key_file = write("server.key", &pki.server.key_pem);
    let ca_file = write("ca.pem", &pki.ours.pem);
    let setup = crate::fleet::process_beside_fleet(&[
        ("TLS_CERT_FILE", &cert_file),
        ("TLS_KEY_FILE", &key_file),
        ("TLS_CLIENT_CA_FILE", &ca_file),
        ("CALLER_PERMISSIONS", "*"),
    ])
    .await;
    let service = &setup.service;
    let good = leaf(&pki.ours, "recovery-service", &[]);
    let mut client = tls_client(&service.address, &pki.ours.pem, Some(&good))
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
