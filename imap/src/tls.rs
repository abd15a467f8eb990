//! TLS to the IMAP server with rustls (ring): which roots to trust, or, only when the
//! administrator turns verification off by name, none.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_name, WebPkiServerVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use std::fmt;
use std::io;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

/// How to reach the IMAP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Plain text (loopback, or a trusted network).
    #[default]
    Plain,
    /// Plain text, then `STARTTLS` before anything else; never falls back to plain.
    StartTls,
    /// TLS from the first byte (port 993).
    Imaps,
}

impl FromStr for TlsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "plain" | "none" | "" => Ok(TlsMode::Plain),
            "starttls" => Ok(TlsMode::StartTls),
            "imaps" | "tls" => Ok(TlsMode::Imaps),
            other => Err(format!("{other:?}: use plain, starttls or imaps")),
        }
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsMode::Plain => "plain",
            TlsMode::StartTls => "starttls",
            TlsMode::Imaps => "imaps",
        })
    }
}

/// Whether the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Against IMAP_CA_FILE or the system's roots.
    On,
    /// Not at all (IMAP_TLS_VERIFY=0): any certificate is accepted.
    Off,
}

impl Verification {
    /// [`Verification::On`] for true (IMAP_TLS_VERIFY's value).
    pub fn from_flag(verify: bool) -> Verification {
        if verify {
            Verification::On
        } else {
            Verification::Off
        }
    }
}

/// The rustls client configuration: the roots of `ca_file` (PEM) when given, otherwise
/// the system's; with verification off, any certificate is accepted (the handshake's
/// signatures are still checked).
///
/// A certificate in `ca_file` is also trusted as itself: a server presenting exactly
/// that certificate, valid for the host's name, is accepted even when it is self-signed
/// (as Dovecot's snakeoil certificates are, which WebPKI refuses as end entities).
///
/// # Errors
/// The CA file cannot be read or holds no certificate; with verification on and no CA
/// file, the system store holds none.
pub fn client_config(
    verify: Verification,
    ca_file: Option<&Path>,
) -> io::Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?;
    let config = if verify == Verification::On {
        let mut roots = RootCertStore::empty();
        match ca_file {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| {
                        io::Error::other(format!("IMAP_CA_FILE {}: {e}", path.display()))
                    })?;
                let (added, _) = roots.add_parsable_certificates(certs.iter().cloned());
                if added == 0 {
                    return Err(io::Error::other(format!(
                        "IMAP_CA_FILE {}: no usable certificate",
                        path.display()
                    )));
                }
                let webpki =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(io::Error::other)?;
                let ca = CaFile { webpki, pinned: certs };
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(CertVerifier {
                        provider,
                        ca: Some(ca),
                    }))
                    .with_no_client_auth()
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(io::Error::other(
                        "IMAP TLS: no trusted roots in the system store; set IMAP_CA_FILE",
                    ));
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
        }
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(CertVerifier { provider, ca: None }))
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// A rustls server configuration from a PEM certificate chain (the server's certificate
/// first) and a PEM private key, for a listener of the daemon's (`what` names the setting in
/// errors, e.g. `TCP_TLS_CERT`). TLS 1.2 and 1.3, no client certificates, and no TLS 1.3
/// session tickets (each connection carries one request: a ticket would only cost a write).
///
/// Read while the daemon is still privileged, so the key may be readable by root alone.
///
/// # Errors
/// A file cannot be read, holds no certificate or no key, or the key does not match.
pub fn server_config(cert: &Path, key: &Path, what: &str) -> io::Result<Arc<ServerConfig>> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| io::Error::other(format!("{what} {}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(io::Error::other(format!("{what} {}: no certificate", cert.display())));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| io::Error::other(format!("{what} key {}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| {
            io::Error::other(format!("{what} {} with key {}: {e}", cert.display(), key.display()))
        })?;
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The name the certificate must carry: the host as given (a DNS name or an IP address).
///
/// # Errors
/// The host is neither.
pub fn server_name(host: &str) -> io::Result<ServerName<'static>> {
    ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))
}

/// Checks the IMAP server's certificate against IMAP_CA_FILE, or not at all when the
/// administrator turned verification off; the handshake's signatures are checked either way,
/// with the provider's algorithms (as WebPKI's own verifier does).
#[derive(Debug)]
struct CertVerifier {
    /// Where the signature algorithms come from.
    provider: Arc<CryptoProvider>,
    /// IMAP_CA_FILE's certificates; `None` for IMAP_TLS_VERIFY=0 (every certificate).
    ca: Option<CaFile>,
}

/// IMAP_CA_FILE's certificates: as roots (WebPKI), or, when the server presents one of
/// them exactly, as itself (its name still checked).
#[derive(Debug)]
struct CaFile {
    webpki: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for CertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = &self.ca else {
            return Ok(ServerCertVerified::assertion());
        };
        match ca.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(v) => Ok(v),
            Err(e) if ca.pinned.iter().any(|p| p.as_ref() == end_entity.as_ref()) => {
                let parsed = ParsedCertificate::try_from(end_entity).map_err(|_| e)?;
                verify_server_name(&parsed, server_name)?;
                Ok(ServerCertVerified::assertion())
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_by_name() {
        assert_eq!("STARTTLS".parse::<TlsMode>(), Ok(TlsMode::StartTls));
        assert_eq!("imaps".parse::<TlsMode>(), Ok(TlsMode::Imaps));
        assert_eq!("plain".parse::<TlsMode>(), Ok(TlsMode::Plain));
        assert!("ssl3".parse::<TlsMode>().is_err());
    }

    #[test]
    fn a_ca_file_without_certificates_is_an_error() {
        let p = std::env::temp_dir().join(format!("inl-ca-{}.pem", std::process::id()));
        std::fs::write(&p, "not a certificate\n").unwrap();
        let e = client_config(Verification::On, Some(&p)).unwrap_err();
        assert!(e.to_string().contains("no usable certificate"), "{e}");
        std::fs::remove_file(&p).unwrap();
        assert!(client_config(Verification::On, Some(Path::new("/nonexistent/ca.pem"))).is_err());
        assert!(client_config(Verification::Off, None).is_ok());
    }

    #[test]
    fn ip_addresses_and_names_are_server_names() {
        assert!(matches!(server_name("127.0.0.1").unwrap(), ServerName::IpAddress(_)));
        assert!(matches!(server_name("mail.example.com").unwrap(), ServerName::DnsName(_)));
        assert!(server_name("bad name!").is_err());
    }
}
