//! TLS configuration through rustls: server certificates from PEM, client trust
//! from the webpki roots plus any extra CA.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Result, TlsError};

fn certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &*pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|source| TlsError::Pem {
            what: "certificates",
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Missing("certificate").into());
    }
    Ok(certs)
}

fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>> {
    Ok(rustls_pemfile::private_key(&mut &*pem)
        .map_err(|source| TlsError::Pem {
            what: "a private key",
            source,
        })?
        .ok_or(TlsError::Missing("private key"))?)
}

/// A certificate chain and its signing key from PEM, checked to belong
/// together: what a server that swaps certificates while it runs hands
/// rustls for each new handshake.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<rustls::sign::CertifiedKey>> {
    let key = private_key(key_pem)?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key).map_err(TlsError::from)?;
    let certified = rustls::sign::CertifiedKey::new(certs(cert_pem)?, signing);
    certified.keys_match().map_err(TlsError::from)?;
    Ok(Arc::new(certified))
}

/// A server configuration from a PEM certificate chain and a PEM private key.
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<rustls::ServerConfig>> {
    let key = private_key(key_pem)?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(TlsError::from)?
    .with_no_client_auth()
    .with_single_cert(certs(cert_pem)?, key)
    .map_err(TlsError::from)?;
    Ok(Arc::new(config))
}

/// The client's TLS handshake with `host` over `tcp`.
pub(crate) async fn connect(
    config: Arc<rustls::ClientConfig>,
    host: &str,
    tcp: tokio::net::TcpStream,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|source| {
        TlsError::ServerName {
            name: host.to_owned(),
            source,
        }
    })?;
    Ok(tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?)
}

/// A client configuration trusting the webpki roots and the CA certificates in
/// `extra_ca_pem` (for private CAs and tests).
pub fn client_config(extra_ca_pem: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_ca_pem {
        for cert in certs(pem)? {
            roots.add(cert).map_err(TlsError::from)?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(TlsError::from)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A client configuration that accepts any server certificate, for testing
/// against self-signed servers (`tether connect --insecure`). Handshake
/// signatures are still checked; the certificate chain and name are not, so
/// anyone on the path can impersonate the server.
pub fn insecure_client_config() -> Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::from)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Trusts every certificate; see [`insecure_client_config`].
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
