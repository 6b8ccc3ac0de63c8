//! Transport security: the API over HTTPS (certificate reloaded on SIGHUP) and the MQTT link
//! over TLS with a client certificate, against certificates made by the test (rcgen).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::broker::Broker;
use common::server::{Options, Server};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};

/// A certificate and key for `names`, signed by `issuer` (self-signed without one), written as
/// PEM files `<stem>.pem` and `<stem>.key` in `dir`; returns the certificate's DER.
fn certificate(
    dir: &Path,
    stem: &str,
    names: &[&str],
    issuer: Option<&(rcgen::Certificate, KeyPair)>,
    ca: bool,
) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    // Distinct names: with rcgen's default name for every certificate, each would look
    // self-issued and OpenSSL (mosquitto) would not find the chain.
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("facegate test {stem}"));
    if ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    let cert = match issuer {
        Some((ic, ik)) => params.signed_by(&key, ic, ik).unwrap(),
        None => params.self_signed(&key).unwrap(),
    };
    std::fs::write(dir.join(format!("{stem}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{stem}.key")), key.serialize_pem()).unwrap();
    (cert, key)
}

/// `GET /health` over TLS trusting only `root`; the answer and the certificate the server
/// presented.
fn https_health(addr: &str, root: &CertificateDer<'static>) -> Result<(String, Vec<u8>), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    // A server may close without close_notify after a Connection: close answer.
    if let Err(e) = tls.read_to_end(&mut out) {
        if out.is_empty() {
            return Err(e.to_string());
        }
    }
    let presented = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    Ok((String::from_utf8_lossy(&out).into_owned(), presented))
}

#[test]
fn the_api_speaks_https_and_takes_a_new_certificate_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = certificate(dir.path(), "api", &["localhost"], None, false);
    let config = format!(
        "[server]\ntls_cert_file = \"{0}/api.pem\"\ntls_key_file = \"{0}/api.key\"\n",
        dir.path().display()
    );
    let s = Server::start_with(
        &dir.path().join("data"),
        &Options {
            config,
            ..Options::default()
        },
    )
    .unwrap();
    assert!(s.url.starts_with("https://"), "{}", s.url);
    let addr = s.url.trim_start_matches("https://").to_owned();
    let (answer, presented) = https_health(&addr, first.der()).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(presented, first.der().to_vec());
    // Plain HTTP on the HTTPS port gets no API answer.
    let mut plain = TcpStream::connect(&addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    let _ = plain.read_to_end(&mut out);
    assert!(!String::from_utf8_lossy(&out).contains("200 OK"));

    // A renewed certificate is served after SIGHUP, without a restart.
    let (second, _) = certificate(dir.path(), "api", &["localhost"], None, false);
    s.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok((answer, presented)) = https_health(&addr, second.der()) {
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            assert_eq!(presented, second.der().to_vec());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A broken pair on the next SIGHUP is refused and the working one kept.
    std::fs::write(dir.path().join("api.key"), "not a key").unwrap();
    s.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    assert!(https_health(&addr, second.der()).is_ok());
    assert!(
        s.log_text().contains("TLS reload failed"),
        "{}",
        s.log_text()
    );
}

#[test]
fn the_mqtt_link_authenticates_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    let ca = certificate(&pki, "ca", &[], None, true);
    certificate(&pki, "broker", &["localhost"], Some(&ca), false);
    certificate(&pki, "client", &["facegate"], Some(&ca), false);
    let broker = Broker::start_with(
        &dir.path().join("broker"),
        &format!(
            "cafile {0}/ca.pem\ncertfile {0}/broker.pem\nkeyfile {0}/broker.key\n\
             require_certificate true\n",
            pki.display()
        ),
    );
    let mqtt = |client_cert: bool| {
        let mut m = format!(
            "[mqtt]\nenabled = true\nhost = \"localhost\"\nport = {}\ntls = true\n\
             ca_file = \"{}/ca.pem\"\ndevice_id = \"gate\"\nhomeassistant = false\n",
            broker.port(),
            pki.display()
        );
        if client_cert {
            m += &format!(
                "client_cert_file = \"{0}/client.pem\"\nclient_key_file = \"{0}/client.key\"\n",
                pki.display()
            );
        }
        m
    };
    let connected = |s: &Server, within: Duration| {
        let deadline = Instant::now() + within;
        loop {
            let (_, h) = s.call("GET", "/health", None);
            if h["mqtt"]["connected"] == true {
                return (true, h);
            }
            if Instant::now() > deadline {
                return (false, h);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let with = Server::start_with(
        &dir.path().join("a"),
        &Options {
            config: mqtt(true),
            ..Options::default()
        },
    )
    .unwrap();
    let (ok, h) = connected(&with, Duration::from_secs(20));
    assert!(ok, "with its certificate: {h:#}");
    let without = Server::start_with(
        &dir.path().join("b"),
        &Options {
            config: mqtt(false),
            ..Options::default()
        },
    )
    .unwrap();
    let (ok, h) = connected(&without, Duration::from_secs(4));
    assert!(!ok, "the broker requires a certificate: {h:#}");
    assert!(h["mqtt"]["last_error"].is_string(), "{h:#}");
}
