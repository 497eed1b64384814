//! TLS identity and peer verification (spec `federation.md` §Transport).
//!
//! Federation does not use the web PKI: a server's identity is its Ed25519 key, the one that signs
//! its frames. Each endpoint therefore presents a self-signed X.509 certificate whose subject
//! public key *is* that key, and the only thing the peer checks is the key:
//!
//! - the dialler's [`ExpectedKey`] verifier accepts the acceptor's certificate only if its key
//!   equals the key discovery returned for the dialled name;
//! - the acceptor's [`AnyEd25519Client`] verifier requires a client certificate with an Ed25519
//!   key and remembers nothing itself: the key is read back from the connection
//!   ([`peer_key`]) and compared, per request, with the key discovery gives for the request's
//!   `origin` (`inbound.rs`).
//!
//! In both directions the TLS 1.3 `CertificateVerify` signature (scheme `ed25519` only) is checked
//! with the provider's algorithms, which proves possession of the private key. Names, dates,
//! chains and extensions are deliberately ignored. Session resumption is off on both sides so that
//! every connection performs the full mutual check.
//!
//! All configs are built with [`builder_with_provider`](rustls::ClientConfig::builder_with_provider)
//! on aws-lc-rs, never on a process-default provider (several providers are compiled into the
//! workspace, which makes the default ambiguous).

use std::sync::{Arc, Mutex};

use mobium_spec::{Keypair, PublicKey, ServerName};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use mobium_spec::federation::ALPN;

/// DER prefix of a PKCS#8 v1 `PrivateKeyInfo` holding an Ed25519 seed (RFC 8410 §7): the 32-byte
/// seed follows.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// DER prefix of an Ed25519 `SubjectPublicKeyInfo` (RFC 8410 §4): the 32-byte key follows.
const SPKI_ED25519_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Label of the HMAC that derives the QUIC stateless-reset key from the server key.
const RESET_KEY_LABEL: &[u8] = b"mobium/v1/quic-stateless-reset";
/// Label of the HMAC that derives the key validating our QUIC connection ids.
const CID_KEY_LABEL: &[u8] = b"mobium/v1/quic-connection-id";

/// This server's certificate and private key, as rustls wants them.
pub(crate) struct Identity {
    cert: CertificateDer<'static>,
    pkcs8: Vec<u8>,
    provider: Arc<CryptoProvider>,
}

impl Identity {
    /// Generates the self-signed certificate for `keypair` (the certificate is regenerated at
    /// every start; peers only look at its key).
    pub fn new(keypair: &Keypair, name: &ServerName) -> Result<Self, String> {
        let mut pkcs8 = Vec::with_capacity(48);
        pkcs8.extend_from_slice(&PKCS8_ED25519_PREFIX);
        pkcs8.extend_from_slice(&keypair.secret_bytes());
        let signing = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(pkcs8.as_slice()),
            &rcgen::PKCS_ED25519,
        )
        .map_err(|e| format!("server key unusable for TLS: {e}"))?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
            .map_err(|e| format!("certificate parameters: {e}"))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name.as_str());
        let cert = params
            .self_signed(&signing)
            .map_err(|e| format!("self-signing the certificate: {e}"))?;
        let identity = Identity {
            cert: cert.der().clone(),
            pkcs8,
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        };
        // A certificate that does not carry our key would make every peer refuse us: check once.
        match cert_key(&identity.cert) {
            Ok(key) if key == keypair.public() => Ok(identity),
            _ => Err("generated certificate does not carry the server key".into()),
        }
    }

    fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.pkcs8.clone()))
    }

    fn algorithms(&self) -> WebPkiSupportedAlgorithms {
        self.provider.signature_verification_algorithms
    }

    /// The acceptor's config: TLS 1.3, ALPN `mobium-fed/1`, a client certificate required.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, String> {
        let verifier = Arc::new(AnyEd25519Client {
            algorithms: self.algorithms(),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| format!("TLS 1.3 unavailable: {e}"))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.cert.clone()], self.private_key())
            .map_err(|e| format!("server certificate: {e}"))?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        config.send_tls13_tickets = 0;
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        Ok(config)
    }

    /// The dialler's config for one destination whose key must be `expected`. The returned
    /// [`KeySeen`] tells, after a failed handshake, which key the peer presented.
    pub fn client_config(
        &self,
        expected: PublicKey,
    ) -> Result<(rustls::ClientConfig, KeySeen), String> {
        let seen = KeySeen::default();
        let verifier = Arc::new(ExpectedKey {
            expected,
            seen: seen.clone(),
            algorithms: self.algorithms(),
        });
        let mut config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| format!("TLS 1.3 unavailable: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(vec![self.cert.clone()], self.private_key())
            .map_err(|e| format!("client certificate: {e}"))?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        config.resumption = rustls::client::Resumption::disabled();
        Ok((config, seen))
    }
}

/// The key a certificate carries, if it is an Ed25519 `SubjectPublicKeyInfo` holding a valid key.
pub(crate) fn cert_key(cert: &CertificateDer<'_>) -> Result<PublicKey, rustls::Error> {
    let bad = || rustls::Error::InvalidCertificate(CertificateError::BadEncoding);
    let parsed = webpki::EndEntityCert::try_from(cert).map_err(|_| bad())?;
    let spki = parsed.subject_public_key_info();
    let raw = spki
        .as_ref()
        .strip_prefix(SPKI_ED25519_PREFIX.as_slice())
        .ok_or(rustls::Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        ))?;
    let bytes: [u8; 32] = raw.try_into().map_err(|_| bad())?;
    PublicKey::from_bytes(bytes).map_err(|_| bad())
}

/// The key of the certificate the peer of an established connection presented.
pub(crate) fn peer_key(conn: &quinn::Connection) -> Option<PublicKey> {
    let identity = conn.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    cert_key(certs.first()?).ok()
}

/// Whether the connection negotiated ALPN `mobium-fed/1` (rustls refuses a mismatch, but a
/// client that offers no ALPN at all would otherwise get through).
pub(crate) fn alpn_ok(conn: &quinn::Connection) -> bool {
    conn.handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .is_some_and(|p| p == ALPN)
}

/// The quinn endpoint configuration, with the QUIC stateless-reset key and the connection-id
/// validation key both derived from the server key. A restarted server (same key, same address)
/// then recognises the connection ids its previous run handed out and answers packets on those
/// dead connections with a valid stateless reset: the dialler learns at its next packet that the
/// connection is gone and reconnects at once instead of waiting for the idle timeout. (With
/// per-run random keys, quinn's default, such packets are silently dropped.)
pub(crate) fn endpoint_config(keypair: &Keypair) -> quinn::EndpointConfig {
    let seed = keypair.secret_bytes();
    let master = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &seed);
    let reset = aws_lc_rs::hmac::sign(&master, RESET_KEY_LABEL);
    let reset = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, reset.as_ref());
    let cid = aws_lc_rs::hmac::sign(&master, CID_KEY_LABEL);
    let mut cid_key = [0u8; 8];
    cid_key.copy_from_slice(&cid.as_ref()[..8]);
    let cid_key = u64::from_le_bytes(cid_key);
    let mut config = quinn::EndpointConfig::new(Arc::new(reset));
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    config
}

/// Which key the peer presented during a handshake (shared between a verifier and its caller).
#[derive(Debug, Clone, Default)]
pub(crate) struct KeySeen(Arc<Mutex<Option<PublicKey>>>);

impl KeySeen {
    fn set(&self, key: PublicKey) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(key);
    }

    /// The key the peer presented, if the handshake got that far.
    pub fn get(&self) -> Option<PublicKey> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn check_tls13(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    algorithms: &WebPkiSupportedAlgorithms,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    if dss.scheme != SignatureScheme::ED25519 {
        return Err(rustls::Error::PeerMisbehaved(
            rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
        ));
    }
    rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
}

fn no_tls12() -> rustls::Error {
    rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered)
}

/// The dialler's verifier: the acceptor's certificate key must equal `expected`.
#[derive(Debug)]
struct ExpectedKey {
    expected: PublicKey,
    seen: KeySeen,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ExpectedKey {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let key = cert_key(end_entity)?;
        self.seen.set(key);
        if key != self.expected {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(no_tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        check_tls13(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// The acceptor's verifier: any certificate with an Ed25519 key (whose possession the handshake
/// signature proves); which server it belongs to is decided per request.
#[derive(Debug)]
struct AnyEd25519Client {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyEd25519Client {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        cert_key(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(no_tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        check_tls13(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_carries_the_server_key() {
        let kp = Keypair::from_seed([3; 32]);
        let name: ServerName = "alpha.test:7101".parse().expect("name");
        let id = Identity::new(&kp, &name).expect("identity");
        assert_eq!(cert_key(&id.cert).expect("key"), kp.public());
        id.server_config().expect("server config");
        id.client_config(kp.public()).expect("client config");
    }

    #[test]
    fn garbage_certificates_are_refused() {
        assert!(cert_key(&CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00])).is_err());
        assert!(cert_key(&CertificateDer::from(Vec::new())).is_err());
    }
}
