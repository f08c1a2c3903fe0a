//! Self-signed certificates for 127.0.0.1, made with openssl, for SIP over TLS tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Writes `cert.pem` and `key.pem` (RSA 2048, valid two days, `CN` and `subjectAltName`
/// 127.0.0.1) into `dir`; returns their paths. The certificate says it is no CA, as rustls
/// wants of a server's own certificate even when it is trusted directly.
pub fn self_signed(openssl: &Path, dir: &Path) -> (PathBuf, PathBuf) {
    make(
        openssl,
        dir,
        &[
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ],
    )
}

/// Writes `cert.pem` and `key.pem` with `CN` 127.0.0.1 and no `subjectAltName` (openssl's
/// default extensions: a CA) into `dir`, for linphone as the client: its TLS (mbedtls 2.28)
/// matches an IP address against the CN only, and against DNS names only once a
/// `subjectAltName` is there, so the certificate above fails its host check.
pub fn self_signed_cn_only(openssl: &Path, dir: &Path) -> (PathBuf, PathBuf) {
    make(openssl, dir, &[])
}

fn make(openssl: &Path, dir: &Path, extensions: &[&str]) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new(openssl)
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-days", "2", "-subj", "/CN=127.0.0.1"])
        .args(extensions)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl");
    assert!(made.success(), "openssl could not make a certificate");
    (cert, key)
}
