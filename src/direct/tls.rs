//! TLS settings of the direct connections (feature `tls`): rustls with the ring
//! provider, no OpenSSL.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use redis::{ErrorKind, RedisError, RedisResult};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::TlsFailure;

/// How a direct connection does TLS for a `rediss://` address (feature `tls`): which
/// certificate authorities it trusts, the client certificate it presents, and whether
/// it checks the server's certificate at all. Given to
/// [`ConnectOptions::with_tls`](super::ConnectOptions::with_tls).
///
/// * **Trust** (default: the system's root certificates, as `rustls-native-certs` finds
///   them): [`with_ca_pem`](Self::with_ca_pem) or [`with_ca_file`](Self::with_ca_file)
///   trust these CAs instead (a private CA, as Redis deployments usually have).
/// * **Mutual TLS**: [`with_client_cert_pem`](Self::with_client_cert_pem) or
///   [`with_client_cert_files`](Self::with_client_cert_files) present a client
///   certificate (for a server with `tls-auth-clients yes`).
/// * **Insecure** ([`with_insecure`](Self::with_insecure)): accept any server
///   certificate. Dangerous; also asked for by a `rediss://...#insecure` URL.
///
/// The server name checked is the URL's host (an IP address is checked as one). The
/// scheme decides whether TLS is used: a `rediss://` URL always does TLS (never a
/// plaintext fallback), a `redis://` URL never does, whatever these options say.
///
/// The rustls configuration is built once, at the first connection, and shared by the
/// clones of these options (every reconnection, every node of a cluster).
///
/// ```no_run
/// use redstash::direct::{ConnectOptions, DirectConnection, TlsOptions};
///
/// let tls = TlsOptions::default()
///     .with_ca_file("ca.pem")?
///     .with_client_cert_files("client.pem", "client.key")?;
/// let options = ConnectOptions::default().with_tls(tls);
/// let con = DirectConnection::open_with("rediss://redis.internal:6380/", options)?;
/// # Ok::<(), redis::RedisError>(())
/// ```
#[derive(Clone, Default)]
pub struct TlsOptions {
    /// The trusted CAs; `None`: the system's roots.
    roots: Option<Arc<[CertificateDer<'static>]>>,
    /// The client certificate chain and its key.
    client: Option<Arc<ClientIdentity>>,
    insecure: bool,
    /// The rustls configurations of these settings, built at first use: verifying the
    /// server's certificate, and accepting any.
    built: Arc<Built>,
}

#[derive(Default)]
struct Built {
    verifying: OnceLock<Arc<ClientConfig>>,
    insecure: OnceLock<Arc<ClientConfig>>,
}

struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field(
                "roots",
                &match &self.roots {
                    None => "system".to_owned(),
                    Some(certs) => format!("{} CA certificate(s)", certs.len()),
                },
            )
            // Never the key.
            .field("client_certificate", &self.client.is_some())
            .field("insecure", &self.insecure)
            .finish()
    }
}

impl TlsOptions {
    /// Trust these CA certificates (PEM, one or more `CERTIFICATE` blocks) instead of
    /// the system's roots.
    ///
    /// # Errors
    ///
    /// Kind [`InvalidClientConfig`](redis::ErrorKind::InvalidClientConfig) when the PEM
    /// holds no certificate or one that is not a valid X.509 CA certificate.
    pub fn with_ca_pem(self, pem: &[u8]) -> RedisResult<Self> {
        self.ca(pem, "CA certificate")
    }

    /// [`with_ca_pem`](Self::with_ca_pem) with the contents of a PEM file.
    ///
    /// # Errors
    ///
    /// As [`with_ca_pem`](Self::with_ca_pem), also when the file cannot be read (the
    /// message names the file).
    pub fn with_ca_file(self, path: impl AsRef<Path>) -> RedisResult<Self> {
        let path = path.as_ref();
        let what = format!("CA certificate file {}", path.display());
        let pem = read_file(path, &what)?;
        self.ca(&pem, &what)
    }

    fn ca(mut self, pem: &[u8], what: &str) -> RedisResult<Self> {
        let certs = parse_certs(pem, what)?;
        let mut store = RootCertStore::empty();
        for cert in &certs {
            store
                .add(cert.clone())
                .map_err(|e| config_error("invalid CA certificate", format!("{what}: {e}")))?;
        }
        self.roots = Some(certs.into());
        Ok(self.rebuilt())
    }

    /// Present this client certificate (PEM: the certificate, then any intermediates)
    /// with its private key (PEM: PKCS#8, PKCS#1 or SEC1) for mutual TLS.
    ///
    /// # Errors
    ///
    /// Kind [`InvalidClientConfig`](redis::ErrorKind::InvalidClientConfig) when the
    /// certificate PEM holds no certificate or the key PEM no private key of a type
    /// rustls supports.
    pub fn with_client_cert_pem(self, cert: &[u8], key: &[u8]) -> RedisResult<Self> {
        self.client_cert(cert, key, "client certificate", "client key")
    }

    fn client_cert(
        mut self,
        cert: &[u8],
        key: &[u8],
        cert_what: &str,
        key_what: &str,
    ) -> RedisResult<Self> {
        let chain = parse_certs(cert, cert_what)?;
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| config_error("no private key in the PEM", format!("{key_what}: {e}")))?;
        provider()
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| config_error("unusable private key", format!("{key_what}: {e}")))?;
        self.client = Some(Arc::new(ClientIdentity { chain, key }));
        Ok(self.rebuilt())
    }

    /// [`with_client_cert_pem`](Self::with_client_cert_pem) with the contents of two PEM
    /// files.
    ///
    /// # Errors
    ///
    /// As [`with_client_cert_pem`](Self::with_client_cert_pem), also when a file
    /// cannot be read (the message names the file).
    pub fn with_client_cert_files(
        self,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> RedisResult<Self> {
        let cert_what = format!("client certificate file {}", cert.as_ref().display());
        let key_what = format!("client key file {}", key.as_ref().display());
        let cert = read_file(cert.as_ref(), &cert_what)?;
        let key = read_file(key.as_ref(), &key_what)?;
        self.client_cert(&cert, &key, &cert_what, &key_what)
    }

    /// **Dangerous**: accept any server certificate, whoever signed it and whatever
    /// name it is for (the handshake's signatures are still checked, so the connection
    /// is encrypted, but to a server that is not authenticated: anyone on the path can
    /// pretend to be it). For tests and self-signed servers on a trusted network only;
    /// prefer [`with_ca_file`](Self::with_ca_file) with the server's CA. A
    /// `rediss://...#insecure` URL asks for the same on its connection.
    pub fn with_insecure(mut self, insecure: bool) -> Self {
        self.insecure = insecure;
        self
    }

    /// Whether any server certificate is accepted ([`with_insecure`](Self::with_insecure)).
    pub fn is_insecure(&self) -> bool {
        self.insecure
    }

    /// Settings changed: the configurations are built again at the next connection.
    fn rebuilt(mut self) -> Self {
        self.built = Arc::default();
        self
    }

    /// The rustls configuration, built at its first use (loading the system's roots
    /// then, unless CAs were given); `insecure` (from the URL) accepts any certificate
    /// too.
    pub(crate) fn client_config(&self, insecure: bool) -> RedisResult<Arc<ClientConfig>> {
        let insecure = insecure || self.insecure;
        let cell = if insecure {
            &self.built.insecure
        } else {
            &self.built.verifying
        };
        if let Some(config) = cell.get() {
            return Ok(config.clone());
        }
        let config = Arc::new(self.build(insecure)?);
        Ok(cell.get_or_init(|| config).clone())
    }

    fn build(&self, insecure: bool) -> RedisResult<ClientConfig> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error("TLS configuration", e.to_string()))?;
        let builder = if insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCertificate {
                    algorithms: provider.signature_verification_algorithms,
                }))
        } else {
            builder.with_root_certificates(self.root_store()?)
        };
        match &self.client {
            None => Ok(builder.with_no_client_auth()),
            Some(id) => builder
                .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
                .map_err(|e| config_error("unusable client certificate", e.to_string())),
        }
    }

    fn root_store(&self) -> RedisResult<RootCertStore> {
        let mut store = RootCertStore::empty();
        match &self.roots {
            Some(certs) => {
                for cert in certs.iter() {
                    store
                        .add(cert.clone())
                        .map_err(|e| config_error("invalid CA certificate", e.to_string()))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = store.add_parsable_certificates(found.certs);
                if added == 0 {
                    let why = found
                        .errors
                        .first()
                        .map_or_else(|| "none found".to_owned(), ToString::to_string);
                    return Err(config_error(
                        "no system root certificates to verify the server with (give the \
                         server's CA with TlsOptions::with_ca_file)",
                        why,
                    ));
                }
            }
        }
        Ok(store)
    }
}

/// The crypto provider of the direct connections: the one the process installed as
/// rustls's default (`CryptoProvider::install_default`, e.g. aws-lc-rs for post-quantum
/// key exchange or FIPS), else ring (what this crate builds rustls with: quick to
/// build, no C toolchain beyond ring's own, but no post-quantum key exchange).
fn provider() -> Arc<CryptoProvider> {
    if let Some(installed) = CryptoProvider::get_default() {
        return installed.clone();
    }
    static RING: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    RING.get_or_init(|| {
        // Deprecated since rustls 0.23.48 only for lacking post-quantum algorithms;
        // ring is the provider this crate is built with.
        #[allow(deprecated)]
        let ring = rustls::crypto::ring::default_provider();
        Arc::new(ring)
    })
    .clone()
}

/// The name the server's certificate must be for: the host of the address (a DNS name
/// or an IP address, brackets of an IPv6 address removed).
pub(crate) fn server_name(host: &str) -> RedisResult<ServerName<'static>> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(bare.to_owned())
        .map_err(|e| config_error("not a TLS server name", format!("{host}: {e}")))
}

/// A rustls error as the I/O error a direct connection reports: a [`TlsFailure`] (kind
/// `InvalidData`), which classifies as [`Tls`](crate::RedisErrorKind::Tls).
pub(crate) fn failure(context: impl Into<String>, source: rustls::Error) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        TlsFailure {
            context: context.into(),
            source,
        },
    )
}

/// An I/O error of a TLS stream, the rustls error it may carry made a [`TlsFailure`]
/// naming `peer` (`what`: `"TLS"`, `"TLS handshake"`).
pub(crate) fn stream_error(e: io::Error, what: &str, peer: &str) -> io::Error {
    if !e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
        return e;
    }
    let kind = e.kind();
    match e
        .into_inner()
        .map(|inner| inner.downcast::<rustls::Error>())
    {
        Some(Ok(source)) => failure(format!("{what} with {peer}"), *source),
        Some(Err(inner)) => io::Error::new(kind, inner),
        None => io::Error::from(kind),
    }
}

fn parse_certs(pem: &[u8], what: &str) -> RedisResult<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| config_error("unreadable certificate PEM", format!("{what}: {e}")))?;
    if certs.is_empty() {
        return Err(config_error(
            "no certificate in the PEM",
            format!("{what}: no CERTIFICATE block"),
        ));
    }
    Ok(certs)
}

fn read_file(path: &Path, what: &str) -> RedisResult<Vec<u8>> {
    std::fs::read(path).map_err(|e| config_error("unreadable TLS file", format!("{what}: {e}")))
}

fn config_error(what: &'static str, detail: String) -> RedisError {
    RedisError::from((ErrorKind::InvalidClientConfig, what, detail))
}

/// The verifier of [`TlsOptions::with_insecure`]: any certificate is accepted; the
/// handshake's signatures are still checked with the provider's algorithms (the peer
/// holds the key of the certificate it sent).
#[derive(Debug)]
struct AcceptAnyServerCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_pem_is_a_config_error() {
        let e = TlsOptions::default().with_ca_pem(b"not a pem").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidClientConfig);
        let e = TlsOptions::default()
            .with_client_cert_pem(b"", b"")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidClientConfig);
        let e = TlsOptions::default()
            .with_ca_file("/nonexistent/ca.pem")
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn server_names() {
        assert!(matches!(
            server_name("127.0.0.1"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(server_name("[::1]"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(
            server_name("redis.example"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(server_name("bad name").is_err());
    }

    #[test]
    fn debug_never_shows_the_key() {
        let s = format!("{:?}", TlsOptions::default().with_insecure(true));
        assert!(s.contains("system") && s.contains("insecure: true"), "{s}");
    }
}
