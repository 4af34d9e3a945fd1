//! Certificates for TLS tests, made with rcgen: a CA, a server certificate for
//! `127.0.0.1` and `localhost` and a client certificate signed by it, and an unrelated
//! second CA (for "wrong CA" tests). Written as PEM files in a temporary directory.
//! The server certificate is good for client authentication too: the nodes of a TLS
//! cluster present it to each other (cluster bus, replication).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use redstash::testkit::TlsFiles;

/// The certificates of one test, as PEM files in a temporary directory (removed on
/// drop).
pub struct Pki {
    dir: tempfile::TempDir,
}

/// The file names in [`Pki`]'s directory.
pub const CA: &str = "ca.pem";
pub const SERVER_CERT: &str = "server.pem";
pub const SERVER_KEY: &str = "server.key";
pub const CLIENT_CERT: &str = "client.pem";
pub const CLIENT_KEY: &str = "client.key";
/// A CA that signed nothing here.
pub const OTHER_CA: &str = "other-ca.pem";

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let pem = params.self_signed(&key).expect("self-sign the CA").pem();
    (params, key, pem)
}

fn leaf(
    issuer: &Issuer<'_, &KeyPair>,
    name: &str,
    usages: &[ExtendedKeyUsagePurpose],
) -> (String, String) {
    let key = KeyPair::generate().expect("leaf key");
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("leaf params");
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = usages.to_vec();
    let cert = params.signed_by(&key, issuer).expect("sign the leaf");
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    /// A new CA with a server and a client certificate, and an unrelated CA.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca_params, ca_key, ca_pem) = ca("redstash test CA");
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let (server_cert, server_key) = leaf(
            &issuer,
            "redis test server",
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        );
        let (client_cert, client_key) = leaf(
            &issuer,
            "redis test client",
            &[ExtendedKeyUsagePurpose::ClientAuth],
        );
        let (_, _, other_ca) = ca("unrelated CA");
        for (name, pem) in [
            (CA, &ca_pem),
            (SERVER_CERT, &server_cert),
            (SERVER_KEY, &server_key),
            (CLIENT_CERT, &client_cert),
            (CLIENT_KEY, &client_key),
            (OTHER_CA, &other_ca),
        ] {
            std::fs::write(dir.path().join(name), pem).expect("write PEM");
        }
        Pki { dir }
    }

    /// The path of one of the files ([`CA`], [`SERVER_CERT`], ...).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The contents of one of the files.
    pub fn pem(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).expect("read PEM")
    }

    /// The server's TLS files; with `auth_clients`, clients need a certificate of the CA.
    pub fn server_files(&self, auth_clients: bool) -> TlsFiles {
        TlsFiles {
            cert: self.path(SERVER_CERT),
            key: self.path(SERVER_KEY),
            ca: self.path(CA),
            auth_clients,
        }
    }
}
