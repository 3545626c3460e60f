//! TLS for `turns:` listeners: the rustls server configuration, the certificate, and its hot
//! reload.
//!
//! The certificate lives in a [`CertStore`] that rustls asks for it at every handshake
//! ([`ResolvesServerCert`]); a reload swaps it atomically ([`ArcSwap`]), so new handshakes get
//! the new certificate while open sessions keep the keys they negotiated. A certificate that
//! cannot be loaded is refused and the old one stays. Reloads come from SIGHUP
//! ([`CertStore::reload`], called by the service) and from a task that checks the files'
//! modification times ([`watch`]).
//!
//! Without a configured certificate a self-signed one for `localhost` is generated at start
//! (with a warning): the embedded default configuration serves TLS out of the box, and no
//! client will trust it by accident.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The ALPN protocol id of STUN/TURN over TLS (RFC 7443).
pub const ALPN_TURN: &[u8] = b"stun.turn";
/// The ALPN protocol id of HTTP/1.1.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";
/// The ALPN protocol id of HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file could not be read or holds no usable PEM.
    #[error("cannot read {what} from {}: {reason}", path.display())]
    File {
        /// "the certificate chain" or "the private key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// rustls refused the key or the pair (unsupported key type, key not matching the
    /// certificate).
    #[error("the certificate and key cannot be used: {0}")]
    Unusable(String),
    /// The self-signed certificate could not be generated.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
}

/// Where the certificate comes from.
#[derive(Clone, Debug)]
enum Source {
    /// PEM files, reloadable.
    Files { certificate: PathBuf, key: PathBuf },
    /// Generated at start; nothing to reload.
    SelfSigned,
}

/// The current certificate of every TLS listener, swappable at run time.
pub struct CertStore {
    current: ArcSwap<CertifiedKey>,
    source: Source,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("CertStore")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// The crypto provider: ring (no C toolchain beyond ring's own, no OpenSSL).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl CertStore {
    /// Loads the certificate chain and key from PEM files.
    pub fn from_files(certificate: &Path, key: &Path) -> Result<Arc<CertStore>, CertError> {
        let provider = provider();
        let loaded = load_pem(certificate, key, &provider)?;
        Ok(Arc::new(CertStore {
            current: ArcSwap::from_pointee(loaded),
            source: Source::Files {
                certificate: certificate.to_owned(),
                key: key.to_owned(),
            },
            provider,
        }))
    }

    /// Generates a self-signed certificate for `localhost`, 127.0.0.1 and ::1.
    pub fn self_signed() -> Result<Arc<CertStore>, CertError> {
        let provider = provider();
        let names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        let generated = rcgen::generate_simple_self_signed(names)
            .map_err(|e| CertError::Generate(e.to_string()))?;
        let chain = vec![generated.cert.der().clone()];
        let key = PrivateKeyDer::try_from(generated.signing_key.serialize_der())
            .map_err(|e| CertError::Generate(e.to_string()))?;
        let loaded = CertifiedKey::from_der(chain, key, &provider)
            .map_err(|e| CertError::Unusable(e.to_string()))?;
        Ok(Arc::new(CertStore {
            current: ArcSwap::from_pointee(loaded),
            source: Source::SelfSigned,
            provider,
        }))
    }

    /// The files the certificate is read from (`None` for a self-signed one).
    pub fn files(&self) -> Option<(&Path, &Path)> {
        match &self.source {
            Source::Files { certificate, key } => Some((certificate, key)),
            Source::SelfSigned => None,
        }
    }

    /// Reads the files again and, when they load, makes them the certificate of new
    /// handshakes. On error the current certificate stays. A self-signed store has nothing to
    /// reload (Ok).
    pub fn reload(&self) -> Result<(), CertError> {
        let Some((certificate, key)) = self.files() else {
            return Ok(());
        };
        let loaded = load_pem(certificate, key, &self.provider)?;
        self.current.store(Arc::new(loaded));
        Ok(())
    }

    /// The leaf certificate new handshakes present (DER).
    pub fn leaf(&self) -> CertificateDer<'static> {
        self.current.load().cert[0].clone()
    }

    /// A rustls server configuration presenting this store's certificate, TLS 1.2 and 1.3,
    /// offering the ALPN protocols `alpn` (in preference order).
    pub fn server_config(self: &Arc<Self>, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("the ring provider supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn load_pem(
    certificate: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, CertError> {
    let file_error = |what, path: &Path, reason: String| CertError::File {
        what,
        path: path.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(certificate)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_error("the certificate chain", certificate, e.to_string()))?;
    if chain.is_empty() {
        return Err(file_error(
            "the certificate chain",
            certificate,
            "no CERTIFICATE block in the file".to_owned(),
        ));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| file_error("the private key", key, e.to_string()))?;
    CertifiedKey::from_der(chain, key_der, provider).map_err(|e| CertError::Unusable(e.to_string()))
}

/// What identifies a version of a file for the reload check: modification time and size.
type Signature = Option<(SystemTime, u64)>;

fn signature(path: &Path) -> Signature {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Checks the certificate files every `interval` and reloads them after they changed and then
/// stayed unchanged for one more check (so a file being written is not loaded half-way).
/// Returns at once for a self-signed store. Runs until the task is dropped.
pub async fn watch(store: Arc<CertStore>, interval: Duration) {
    let Some((certificate, key)) = store.files() else {
        return;
    };
    let (certificate, key) = (certificate.to_owned(), key.to_owned());
    let both = || (signature(&certificate), signature(&key));
    let mut loaded = both();
    let mut last_seen = loaded;
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let seen = both();
        if seen != loaded && seen == last_seen {
            loaded = seen;
            reload_and_log(&store, "the certificate files changed");
        }
        last_seen = seen;
    }
}

/// Reloads and logs the outcome (`why` says what triggered it).
pub fn reload_and_log(store: &CertStore, why: &str) {
    match store.reload() {
        Ok(()) if store.files().is_some() => {
            tracing::info!(
                reason = why,
                "TLS certificate reloaded; new handshakes use it"
            )
        }
        Ok(()) => {
            tracing::info!("TLS uses a generated self-signed certificate: nothing to reload")
        }
        Err(error) => tracing::error!(
            reason = why,
            %error,
            "TLS certificate NOT reloaded; the previous certificate stays in use"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf, Vec<u8>) {
        let generated = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, generated.cert.pem()).unwrap();
        std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
        (cert, key, generated.cert.der().to_vec())
    }

    #[test]
    fn loads_reloads_and_keeps_the_old_certificate_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, first) = write_pair(dir.path(), "one.test");
        let store = CertStore::from_files(&cert, &key).unwrap();
        assert_eq!(store.leaf().as_ref(), &first[..]);

        let (cert2, key2, second) = write_pair(dir.path(), "two.test");
        std::fs::copy(&cert2, &cert).unwrap();
        std::fs::copy(&key2, &key).unwrap();
        store.reload().unwrap();
        assert_eq!(store.leaf().as_ref(), &second[..]);

        // A key that does not match the certificate is refused; the loaded pair stays.
        let (_, key3, _) = write_pair(dir.path(), "three.test");
        std::fs::copy(&key3, &key).unwrap();
        assert!(matches!(store.reload(), Err(CertError::Unusable(_))));
        assert_eq!(store.leaf().as_ref(), &second[..]);

        std::fs::write(&cert, "not pem").unwrap();
        assert!(matches!(store.reload(), Err(CertError::File { .. })));
        assert_eq!(store.leaf().as_ref(), &second[..]);
        std::fs::remove_file(&key).unwrap();
        let error = store.reload().unwrap_err().to_string();
        assert!(
            error.contains("private key") || error.contains("certificate"),
            "{error}"
        );
        assert_eq!(store.leaf().as_ref(), &second[..]);
    }

    #[test]
    fn missing_files_are_clear_errors_and_self_signed_works() {
        let error = CertStore::from_files(Path::new("/nonexistent/c.pem"), Path::new("/x"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("/nonexistent/c.pem"), "{error}");
        let store = CertStore::self_signed().unwrap();
        assert!(store.files().is_none());
        store.reload().unwrap();
        let config = store.server_config(&[ALPN_TURN]);
        assert_eq!(config.alpn_protocols, vec![b"stun.turn".to_vec()]);
    }
}
