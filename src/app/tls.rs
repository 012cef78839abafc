//! TLS on the gRPC port, done here rather than by tonic so that its certificates can change under
//! a running server: the files are read again every TLS_RELOAD_INTERVAL; a change that loads
//! becomes the configuration of every new connection, and one that does not keeps the previous
//! configuration and is logged once. Under mTLS a client certificate must be from the client CA
//! and carry the clientAuth extended key usage.

use std::{
    path::Path,
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
    client::danger::HandshakeSignatureValid,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, UnixTime, pem::PemObject},
    server::{
        WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
};
use sha2::{Digest, Sha256};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::wrappers::ReceiverStream;

use crate::config::TlsSettings;

/// A client that connects and never finishes its handshake holds a task this long at most.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for tonic to take them.
const ACCEPTED_BACKLOG: usize = 64;

/// Why the TLS files do not make a configuration. Never a byte of a key: PEM decoding errors are
/// not passed on, since they may quote the text they failed on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsLoadError {
    #[error("cannot read {path}: {kind}")]
    Read { path: String, kind: std::io::ErrorKind },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: String },
    #[error("{path} holds no PEM private key")]
    NoKey { path: String },
    #[error("the certificate and key are not usable together: {0}")]
    Identity(#[source] rustls::Error),
    #[error("the client CA in {path} is not usable: {reason}")]
    ClientCa { path: String, reason: String },
}

/// The three files as read, and what identifies that content without keeping the key.
struct Files {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl Files {
    async fn read(settings: &TlsSettings) -> Result<Self, TlsLoadError> {
        let client_ca = match &settings.client_ca_file {
            Some(path) => Some(read(path).await?),
            None => None,
        };
        Ok(Self {
            cert: read(&settings.cert_file).await?,
            key: read(&settings.key_file).await?,
            client_ca,
        })
    }

    fn digest(&self) -> [u8; 32] {
        let mut digest = Sha256::new();
        for part in [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()] {
            let part = part.map_or(&[][..], Vec::as_slice);
            digest.update((part.len() as u64).to_be_bytes());
            digest.update(part);
        }
        digest.finalize().into()
    }

    fn server_config(&self, settings: &TlsSettings) -> Result<ServerConfig, TlsLoadError> {
        let path = |path: &Path| path.display().to_string();
        let chain = CertificateDer::pem_slice_iter(&self.cert)
            .collect::<Result<Vec<_>, _>>()
            .ok()
            .filter(|chain| !chain.is_empty())
            .ok_or_else(|| TlsLoadError::NoCertificate {
                path: path(&settings.cert_file),
            })?;
        let key = PrivateKeyDer::from_pem_slice(&self.key).map_err(|_| TlsLoadError::NoKey {
            path: path(&settings.key_file),
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(TlsLoadError::Identity)?;
        let builder = match (&self.client_ca, &settings.client_ca_file) {
            (Some(pem), Some(ca_path)) => {
                builder.with_client_cert_verifier(client_verifier(pem, provider).map_err(|reason| {
                    TlsLoadError::ClientCa {
                        path: path(ca_path),
                        reason,
                    }
                })?)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(TlsLoadError::Identity)?;
        // gRPC is HTTP/2 only; tonic's clients insist on it being negotiated.
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

async fn read(path: &Path) -> Result<Vec<u8>, TlsLoadError> {
    tokio::fs::read(path).await.map_err(|error| TlsLoadError::Read {
        path: path.display().to_string(),
        kind: error.kind(),
    })
}

/// Client certificates from the CAs in `pem`, for clientAuth.
fn client_verifier(pem: &[u8], provider: Arc<CryptoProvider>) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(pem) {
        let certificate = certificate.map_err(|_| "not PEM certificates".to_owned())?;
        roots.add(certificate).map_err(|error| error.to_string())?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|error| error.to_string())?;
    Ok(Arc::new(ClientAuthUsage(verifier)))
}

/// webpki checks the clientAuth usage only when a certificate lists usages; a certificate
/// without the extension is good for anything, a server's included. Ours must say clientAuth.
#[derive(Debug)]
struct ClientAuthUsage(Arc<dyn ClientCertVerifier>);

fn has_client_auth_usage(certificate: &CertificateDer<'_>) -> bool {
    x509_parser::parse_x509_certificate(certificate.as_ref())
        .ok()
        .and_then(|(_, parsed)| {
            let usage = parsed.extended_key_usage().ok()??;
            Some(usage.value.client_auth)
        })
        .unwrap_or(false)
}

impl ClientCertVerifier for ClientAuthUsage {
    fn offer_client_auth(&self) -> bool {
        self.0.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.0.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.0.verify_client_cert(end_entity, intermediates, now)?;
        if has_client_auth_usage(end_entity) {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::InvalidPurpose,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signed: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, certificate, signed)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signed: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, certificate, signed)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The configuration new connections get. Connections keep the one they began with.
#[derive(Clone)]
pub(crate) struct ServerTls {
    current: Arc<RwLock<Arc<ServerConfig>>>,
    settings: Arc<TlsSettings>,
}

impl ServerTls {
    /// Reads and loads the files once: at start, a file that does not load stops the server.
    pub(crate) async fn load(settings: &TlsSettings) -> Result<(Self, Loaded), TlsLoadError> {
        let files = Files::read(settings).await?;
        let config = files.server_config(settings)?;
        let tls = Self {
            current: Arc::new(RwLock::new(Arc::new(config))),
            settings: Arc::new(settings.clone()),
        };
        Ok((tls, Loaded(files.digest())))
    }

    fn acceptor(&self) -> TlsAcceptor {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        TlsAcceptor::from(Arc::clone(&current))
    }

    /// Reads the files again: Some(new content) when it changed and loaded; an error when it
    /// changed and does not load (the configuration in use stays).
    async fn reload(&self, loaded: &Loaded) -> Result<Option<Loaded>, (Loaded, TlsLoadError)> {
        let files = match Files::read(&self.settings).await {
            Ok(files) => files,
            // An unreadable file has no content to remember: reported while it lasts.
            Err(error) => return Err((Loaded([0; 32]), error)),
        };
        let seen = Loaded(files.digest());
        if seen == *loaded {
            return Ok(None);
        }
        let config = files
            .server_config(&self.settings)
            .map_err(|error| (seen, error))?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
        Ok(Some(seen))
    }

    /// Polls the files until `stopped`.
    pub(crate) fn spawn_reload(
        self,
        mut loaded: Loaded,
        mut stopped: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            // The last content that failed, so a file that stays broken is reported once.
            let mut failed: Option<Loaded> = None;
            loop {
                tokio::select! {
                    () = tokio::time::sleep(self.settings.reload_interval) => {}
                    _ = stopped.changed() => return,
                }
                match self.reload(&loaded).await {
                    Ok(None) => {}
                    Ok(Some(now)) => {
                        loaded = now;
                        failed = None;
                        tracing::info!("tls certificates reloaded; new connections use them");
                    }
                    Err((seen, error)) => {
                        if failed.as_ref() != Some(&seen) {
                            tracing::warn!(%error, "tls files changed but do not load; keeping the certificates in use");
                        }
                        failed = Some(seen);
                    }
                }
            }
        })
    }

    /// Accepted connections after their TLS handshake. Handshakes run side by side, so a slow
    /// or silent client delays nobody else; one that fails is dropped and logged at debug level
    /// (anyone may knock). The stream ends when tonic drops it, and with it the listener.
    pub(crate) fn accept(
        self,
        listener: TcpListener,
    ) -> ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
        let (sender, receiver) = mpsc::channel(ACCEPTED_BACKLOG);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    () = sender.closed() => return,
                };
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        // tonic decides about accept errors, as with a plain listener.
                        if sender.send(Err(error)).await.is_err() {
                            return;
                        }
                        continue;
                    }
                };
                // Only latency is at stake: a socket that refuses the option still serves.
                let _ = stream.set_nodelay(true);
                let acceptor = self.acceptor();
                let sender = sender.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let _ = sender.send(Ok(stream)).await;
                        }
                        Ok(Err(error)) => tracing::debug!(%error, "tls handshake failed"),
                        Err(_) => tracing::debug!("tls handshake timed out"),
                    }
                });
            }
        });
        ReceiverStream::new(receiver)
    }
}

/// What the configuration in use was loaded from (a digest of the files).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Loaded([u8; 32]);
