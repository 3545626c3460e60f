//! Test certificates: a CA and leaf certificates it signs, written as PEM files (rcgen).

use std::path::{Path, PathBuf};

/// A test CA and leaf certificates it signs, as PEM files in `dir`.
pub struct Pki {
    dir: PathBuf,
    pub ca_pem: PathBuf,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The directory [`Pki::temporary`] made, removed with the `Pki`.
    _temp: Option<tempfile::TempDir>,
}

/// A leaf certificate's files and the SHA-256 of its DER (what a client sees).
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub sha256: String,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "turnpike test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&key).unwrap();
        let ca_pem = dir.join("ca.pem");
        std::fs::write(&ca_pem, ca.pem()).unwrap();
        Pki {
            dir: dir.to_owned(),
            ca_pem,
            issuer: rcgen::Issuer::new(params, key),
            _temp: None,
        }
    }

    /// A CA whose files live in a temporary directory of its own, removed when it is dropped.
    pub fn temporary() -> Pki {
        let temp = tempfile::tempdir().expect("a temporary directory for the test CA");
        let mut pki = Pki::new(temp.path());
        pki._temp = Some(temp);
        pki
    }

    /// A leaf for localhost and 127.0.0.1, written to `NAME.crt` and `NAME.key`.
    pub fn leaf(&self, name: &str) -> Leaf {
        use rcgen::{CertificateParams, DnType, KeyPair};
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let leaf = Leaf {
            cert: self.dir.join(format!("{name}.crt")),
            key: self.dir.join(format!("{name}.key")),
            sha256: sha256_hex(cert.der()),
        };
        std::fs::write(&leaf.cert, cert.pem()).unwrap();
        std::fs::write(&leaf.key, key.serialize_pem()).unwrap();
        leaf
    }
}

impl Leaf {
    /// Its certificate and key files, as `Conf::tls_files` takes them.
    pub fn tls_files(&self) -> Option<(PathBuf, PathBuf)> {
        Some((self.cert.clone(), self.key.clone()))
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Installs `from`'s files at `to`'s paths atomically (write aside, then rename), as a
/// certificate renewal tool does.
pub fn install(from: &Leaf, to: &Leaf) {
    for (src, dst) in [(&from.cert, &to.cert), (&from.key, &to.key)] {
        let aside = dst.with_extension("new");
        std::fs::copy(src, &aside).unwrap();
        std::fs::rename(&aside, dst).unwrap();
    }
}
