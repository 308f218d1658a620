//! TLS configuration for both servers (STARTTLS) and for clients of them (tests, the conformance
//! runner).
//!
//! Only the `ring` crypto provider is compiled in, and every config is built with an explicit
//! provider (`builder_with_provider`), so nothing depends on a process-wide default provider.
//! Test certificates come from [`TestPki`], generated with rcgen at run time.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{}: {source}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: rustls::pki_types::pem::Error,
    },
    /// A certificate file holds no certificate.
    #[error("{}: no certificate found", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A file could not be written ([`TestPki::write_to`]).
    #[error("{}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// rustls refused the certificates, key or protocol versions.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// rcgen could not generate a test certificate.
    #[error("test certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// The one crypto provider of the project.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate of a PEM file.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |source| TlsError::Pem {
        path: path.to_path_buf(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// A server config from a PEM certificate chain (leaf first) and a PEM private key (PKCS#8,
/// PKCS#1 or SEC1). TLS 1.2 and 1.3, no client authentication.
pub fn load_server_config(cert_pem: &Path, key_pem: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = read_certs(cert_pem)?;
    let key = PrivateKeyDer::from_pem_file(key_pem).map_err(|source| TlsError::Pem {
        path: key_pem.to_path_buf(),
        source,
    })?;
    server_config(certs, key)
}

fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

fn client_config_with_roots(roots: RootCertStore) -> Result<Arc<ClientConfig>, TlsError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A client config that trusts the certificates of a PEM file (a CA, or a self-signed server
/// certificate) and nothing else.
pub fn client_config_with_ca(ca_pem: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(ca_pem)? {
        roots.add(cert)?;
    }
    client_config_with_roots(roots)
}

/// A client config that accepts any server certificate (expired, self-signed, wrong name). It
/// still checks that the server holds the key of the certificate it shows. For the conformance
/// runner's `--insecure` only: it gives no protection against an active attacker.
///
/// Returns a `Result` because building a rustls config is fallible in general; with the ring
/// provider it does not fail.
pub fn insecure_client_config() -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let verifier = Arc::new(AcceptAnyCertificate {
        provider: provider.clone(),
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The verifier behind [`insecure_client_config`].
struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for AcceptAnyCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AcceptAnyCertificate")
    }
}

impl ServerCertVerifier for AcceptAnyCertificate {
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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A self-signed certificate and key generated at run time, with matching server and client
/// configs: what tests and `gen-cert` style tools use instead of checked-in key material.
#[derive(Clone)]
pub struct TestPki {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key (PKCS#8), PEM.
    pub key_pem: String,
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

impl fmt::Debug for TestPki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestPki")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl TestPki {
    /// A certificate valid for `hosts` (DNS names, or IP addresses such as `127.0.0.1`).
    pub fn new(hosts: &[&str]) -> Result<TestPki, TlsError> {
        let names: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        let certified = rcgen::generate_simple_self_signed(names)?;
        let cert_der = certified.cert.der().clone();
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let server = server_config(vec![cert_der.clone()], key_der)?;
        let mut roots = RootCertStore::empty();
        roots.add(cert_der)?;
        let client = client_config_with_roots(roots)?;
        Ok(TestPki {
            cert_pem: certified.cert.pem(),
            key_pem: certified.signing_key.serialize_pem(),
            server,
            client,
        })
    }

    /// A server config presenting this certificate.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server.clone()
    }

    /// A client config trusting this certificate only.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.client.clone()
    }

    /// Writes `cert.pem` and `key.pem` (mode 0600) into `dir`; returns their paths in that order.
    pub fn write_to(&self, dir: &Path) -> Result<(PathBuf, PathBuf), TlsError> {
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        write_file(&cert, self.cert_pem.as_bytes(), 0o644)?;
        write_file(&key, self.key_pem.as_bytes(), 0o600)?;
        Ok((cert, key))
    }
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    file.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_pki_round_trips_through_files() {
        let pki = TestPki::new(&["localhost", "127.0.0.1"]).unwrap();
        assert!(pki.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(pki.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(!format!("{pki:?}").contains(&pki.key_pem));
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pki.write_to(dir.path()).unwrap();
        load_server_config(&cert, &key).unwrap();
        client_config_with_ca(&cert).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn bad_files_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::new(&["localhost"]).unwrap();
        let (cert, key) = pki.write_to(dir.path()).unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not pem at all\n").unwrap();
        let e = load_server_config(&garbage, &key).unwrap_err();
        assert!(matches!(e, TlsError::NoCertificate { .. }), "{e:?}");
        assert!(e.to_string().contains("garbage.pem"), "{e}");
        let e = load_server_config(&cert, &garbage).unwrap_err();
        assert!(matches!(e, TlsError::Pem { .. }), "{e:?}");
        assert!(e.to_string().contains("garbage.pem"), "{e}");
        let missing = dir.path().join("missing.pem");
        let e = load_server_config(&missing, &key).unwrap_err();
        assert!(e.to_string().contains("missing.pem"), "{e}");
        // A key that does not match the certificate.
        let other = TestPki::new(&["localhost"]).unwrap();
        let other_dir = tempfile::tempdir().unwrap();
        let (_, other_key) = other.write_to(other_dir.path()).unwrap();
        let e = load_server_config(&cert, &other_key).unwrap_err();
        assert!(matches!(e, TlsError::Rustls(_)), "{e:?}");
    }

    #[test]
    fn insecure_config_builds() {
        let config = insecure_client_config().unwrap();
        assert!(!config.crypto_provider().cipher_suites.is_empty());
    }
}
