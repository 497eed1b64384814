//! TLS for `wss://`: which server certificates the SDK accepts, and what it says when it
//! refuses one.
//!
//! A certificate is accepted when it chains to the web PKI roots, to the system's roots
//! (`rustls-native-certs`, which honours `SSL_CERT_FILE` and `SSL_CERT_DIR`), or to one of the extra
//! certificates the user gave ([`ConnectOptions::extra_root_certs`], `--ca-cert` on the command
//! line), or when it *is* one of those extra certificates: a self-hoster's self-signed
//! certificate is pinned exactly, since the usual self-signed certificate is marked as a CA and
//! path validation refuses a CA used as a server's own certificate. Handshake signatures are
//! always verified, with the aws-lc-rs provider the workspace standardises on.
//!
//! Refusals are described in words ([`describe_connect_error`]) rather than as rustls variant
//! names such as `UnknownIssuer`.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use super::{ConnectOptions, SdkError};

/// The TLS client configuration for `wss://` under `opts`.
pub(crate) fn client_config(opts: &ConnectOptions) -> Result<Arc<rustls::ClientConfig>, SdkError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // The system's store too (and SSL_CERT_FILE / SSL_CERT_DIR): an organisation's CA
    // installed there is trusted without being named. Unreadable entries are skipped.
    let system = rustls_native_certs::load_native_certs();
    if !system.errors.is_empty() {
        tracing::debug!(errors = ?system.errors, "some system certificates could not be read");
    }
    roots.add_parsable_certificates(system.certs);
    let mut pinned = Vec::new();
    for der in &opts.extra_root_certs {
        let cert = CertificateDer::from(der.clone());
        // A certificate that cannot be a trust anchor can still be pinned.
        let _ = roots.add(cert.clone());
        pinned.push(cert);
    }
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| SdkError::Connection(format!("cannot set up TLS: {e}")))?;
    let verifier = Arc::new(Verifier {
        pinned,
        webpki,
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SdkError::Connection(format!("cannot set up TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Web PKI validation, or an exact match with a pinned certificate.
#[derive(Debug)]
struct Verifier {
    pinned: Vec<CertificateDer<'static>>,
    webpki: Arc<WebPkiServerVerifier>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self
            .pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref())
        {
            // The user named exactly this certificate as the server's.
            return Ok(ServerCertVerified::assertion());
        }
        self.webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
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

/// webpki's `CaUsedAsEndEntity`, which rustls passes on as an "other" certificate error.
fn is_ca_used_as_end_entity(e: &rustls::OtherError) -> bool {
    e.0.downcast_ref::<webpki::Error>() == Some(&webpki::Error::CaUsedAsEndEntity)
}

/// What to tell a person when opening the WebSocket failed.
pub(crate) fn describe_connect_error(e: &tokio_tungstenite::tungstenite::Error) -> String {
    use tokio_tungstenite::tungstenite::Error;
    let tls = match e {
        Error::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    match tls {
        Some(tls) => describe_tls_error(tls),
        None => e.to_string(),
    }
}

const TRUST_HINT: &str = "if the server uses its own CA or a self-signed certificate, trust \
                          that certificate (--ca-cert FILE on the command line)";

fn describe_tls_error(e: &rustls::Error) -> String {
    let rustls::Error::InvalidCertificate(cert) = e else {
        return format!("the TLS handshake failed: {e}");
    };
    match cert {
        CertificateError::UnknownIssuer => format!(
            "the server's certificate is not signed by an authority this client trusts; \
             {TRUST_HINT}"
        ),
        CertificateError::Other(other) if is_ca_used_as_end_entity(other) => format!(
            "the server presents a CA certificate as its own certificate; {TRUST_HINT}: it is \
             then accepted exactly"
        ),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "the server's certificate has expired".to_owned()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "the server's certificate is not valid yet (is this computer's clock right?)".to_owned()
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "the server's certificate is for another name than the one in the URL".to_owned()
        }
        CertificateError::Revoked => "the server's certificate has been revoked".to_owned(),
        CertificateError::BadSignature | CertificateError::BadEncoding => {
            "the server's certificate is damaged or badly signed".to_owned()
        }
        other => format!("the server's certificate was refused ({other:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_words() {
        let unknown = describe_tls_error(&rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        assert!(unknown.contains("not signed by an authority"), "{unknown}");
        assert!(!unknown.contains("UnknownIssuer"), "{unknown}");
        let ca = describe_tls_error(&rustls::Error::InvalidCertificate(CertificateError::Other(
            rustls::OtherError(Arc::new(webpki::Error::CaUsedAsEndEntity)),
        )));
        assert!(ca.contains("--ca-cert"), "{ca}");
        assert!(!ca.contains("CaUsedAsEndEntity"), "{ca}");
    }
}
