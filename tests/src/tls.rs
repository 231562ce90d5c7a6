//! A throwaway certificate authority and a server certificate for
//! 127.0.0.1, made with the `openssl` program (`cargo xtask test` installs
//! it), for servers the tests start with TLS.

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, ensure};

/// PEM files: the CA clients trust, and the server's certificate and key.
pub struct TestCa {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .context("running openssl")?;
    ensure!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

impl TestCa {
    /// Creates the files under `dir`: a CA, and a leaf certificate it signs
    /// for 127.0.0.1 (a leaf, not the CA itself: rustls refuses a CA
    /// certificate presented as a server's).
    pub fn new(dir: &std::path::Path) -> anyhow::Result<Self> {
        let p = |n: &str| dir.join(n);
        let s = |n: &str| p(n).to_string_lossy().into_owned();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=flowlog test CA"];
        ca.extend(ec);
        let (ca_key, ca_pem) = (s("ca.key"), s("ca.pem"));
        ca.extend(["-keyout", &ca_key, "-out", &ca_pem]);
        openssl(&ca)?;
        let (key, csr) = (s("server.key"), s("server.csr"));
        let mut req = vec!["req", "-subj", "/CN=127.0.0.1"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr]);
        openssl(&req)?;
        let ext = p("server.ext");
        std::fs::write(
            &ext,
            "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        )?;
        let (cert, ext) = (s("server.pem"), ext.to_string_lossy().into_owned());
        openssl(&[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ])?;
        Ok(Self {
            ca: p("ca.pem"),
            cert: p("server.pem"),
            key: p("server.key"),
        })
    }
}
