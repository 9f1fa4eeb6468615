//! TLS for `tether serve` (`[tls]`): the certificate chain and key are read
//! at start, and again when either file changes (checked every
//! [`CHECK_EVERY`]) or the process gets SIGHUP. A new pair that cannot be
//! read, or whose key does not match, is refused with a log line and the
//! old one goes on serving. A reload drops nothing: each connection keeps
//! the certificate it was opened with; new handshakes get the new one.
//!
//! ALPN offers HTTP/2 first, then HTTP/1.1.

use std::io;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::TlsConfig;

/// How often the files' modification times are compared.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// The certificate new handshakes get, and where it is read from.
#[derive(Debug)]
pub struct Certificates {
    cert_file: String,
    key_file: String,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' modification times when last read.
    read_at: Mutex<Option<(SystemTime, SystemTime)>>,
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("certificate lock").clone())
    }
}

fn read(path: &str) -> io::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))
}

fn modified(path: &str) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Certificates {
    /// Reads the pair; fails when it cannot be read or does not match.
    pub fn load(cert_file: &str, key_file: &str) -> io::Result<Arc<Self>> {
        let read_at = modified(cert_file).zip(modified(key_file));
        let pair = Self::read_pair(cert_file, key_file)?;
        Ok(Arc::new(Self {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            current: RwLock::new(pair),
            read_at: Mutex::new(read_at),
        }))
    }

    fn read_pair(cert_file: &str, key_file: &str) -> io::Result<Arc<CertifiedKey>> {
        tether::tls::certified_key(&read(cert_file)?, &read(key_file)?).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{cert_file}, {key_file}: {e}"),
            )
        })
    }

    /// Whether either file changed since it was last read.
    pub fn changed(&self) -> bool {
        let now = modified(&self.cert_file).zip(modified(&self.key_file));
        now.is_some() && now != *self.read_at.lock().expect("stamp lock")
    }

    /// Reads the pair again: new handshakes get it if it is good; a bad
    /// one is refused and the old pair stays.
    pub fn reload(&self) -> io::Result<()> {
        let read_at = modified(&self.cert_file).zip(modified(&self.key_file));
        // Remembered even when refused: a bad pair is reported once, not
        // at every check, until the files change again.
        *self.read_at.lock().expect("stamp lock") = read_at;
        let pair = Self::read_pair(&self.cert_file, &self.key_file)?;
        *self.current.write().expect("certificate lock") = pair;
        Ok(())
    }
}

/// The TLS acceptor `[tls]` asks for, if any, and its certificates (to
/// [`watch`]). A server whose pair cannot be read does not start.
pub fn acceptor(
    tls: &TlsConfig,
) -> io::Result<Option<(tokio_rustls::TlsAcceptor, Arc<Certificates>)>> {
    let (cert, key) = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) => return Ok(None),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "tls.cert_file and tls.key_file go together: set both, or neither",
            ))
        }
    };
    let certificates = Certificates::load(cert, key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(io::Error::other)?
    .with_no_client_auth()
    .with_cert_resolver(certificates.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some((
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        certificates,
    )))
}

/// Reloads `certificates` when their files change or on SIGHUP, until
/// aborted.
pub async fn watch(certificates: Arc<Certificates>) {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut every = tokio::time::interval(CHECK_EVERY);
    every.tick().await;
    loop {
        #[cfg(unix)]
        let asked = async {
            match hangup.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let asked = std::future::pending::<Option<()>>();
        let why = tokio::select! {
            _ = asked => "SIGHUP",
            _ = every.tick() => {
                if !certificates.changed() {
                    continue;
                }
                "the files changed"
            }
        };
        match certificates.reload() {
            Ok(()) => tracing::info!(why, "TLS certificate reloaded"),
            Err(error) => tracing::error!(
                why,
                %error,
                "new TLS certificate refused; the old one goes on serving"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &std::path::Path, name: &str) -> (String, String) {
        let made = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
        (cert.display().to_string(), key.display().to_string())
    }

    #[test]
    fn a_bad_new_pair_is_refused_and_the_old_one_kept() {
        let dir = std::env::temp_dir().join(format!("tether-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = pair(&dir, "one.test");
        let certificates = Certificates::load(&cert, &key).unwrap();
        let first = certificates.current.read().unwrap().cert[0].clone();
        // Another name's certificate with the first one's key: refused.
        let (other_cert, _) = pair(&dir, "two.test");
        std::fs::copy(&other_cert, &cert).unwrap();
        assert!(certificates.reload().is_err());
        assert_eq!(certificates.current.read().unwrap().cert[0], first);
        // Garbage: refused too.
        std::fs::write(&cert, "not a certificate").unwrap();
        assert!(certificates.reload().is_err());
        assert_eq!(certificates.current.read().unwrap().cert[0], first);
        // A good new pair is taken.
        let (new_cert, new_key) = pair(&dir, "three.test");
        std::fs::copy(&new_cert, &cert).unwrap();
        std::fs::copy(&new_key, &key).unwrap();
        certificates.reload().unwrap();
        assert_ne!(certificates.current.read().unwrap().cert[0], first);
        // Half a pair configured does not start.
        let half = TlsConfig {
            cert_file: Some(cert),
            key_file: None,
            h2c: false,
        };
        assert!(acceptor(&half).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
