//! Debian's real Icinga 2 (`icinga2-bin`) for the tests: a private
//! instance in a temporary directory, its REST API on a free local port
//! over TLS (a CA and a certificate for `localhost` made with `openssl`),
//! two API users (`xsmon`, with only `actions/process-check-result`, as
//! docs/deploy.md sets it up; `reader`, for the test's queries), its
//! checker on, and the given object files.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

/// The pushing user's password in the tests.
pub const PUSH_PASSWORD: &str = "xsmon-test-secret";
const READER_PASSWORD: &str = "reader-test-secret";

pub struct Icinga2 {
    child: std::process::Child,
    dir: tempfile::TempDir,
    pub port: u16,
    agent: ureq::Agent,
}

/// The icinga2 command line of a private instance in `d`.
fn icinga2(d: &Path) -> Command {
    let mut cmd = Command::new("icinga2");
    let at = |sub: &str| d.join(sub).display().to_string();
    cmd.arg("daemon")
        .arg("-c")
        .arg(d.join("icinga2.conf"))
        .arg("-DRunAsUser=root")
        .arg("-DRunAsGroup=root")
        .arg(format!("-DLocalStateDir={}", at("data")))
        .arg(format!("-DConfigDir={}", d.display()))
        .arg(format!("-DInitRunDir={}", at("run")))
        .arg(format!("-DLogDir={}", at("log")))
        .arg(format!("-DCacheDir={}", at("cache")))
        .arg(format!("-DSpoolDir={}", at("spool")))
        .arg(format!("-DPidPath={}", at("run/icinga2/icinga2.pid")));
    cmd
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("running openssl (Debian package openssl)")?;
    ensure!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

impl Icinga2 {
    /// The config with `objects`, checked with `icinga2 daemon -C`: its
    /// output, or the error with it.
    pub fn check(objects: &Path) -> Result<String> {
        let dir = tempfile::tempdir()?;
        Self::write_config(dir.path(), objects, None)?;
        let out = icinga2(dir.path())
            .arg("-C")
            .output()
            .context("icinga2 (Debian package icinga2-bin)")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        ensure!(
            out.status.success(),
            "icinga2 daemon -C refuses it:\n{text}"
        );
        Ok(text)
    }

    /// The main config; with `api_port`, the API listener (its
    /// certificates where Icinga 2 looks: `DataDir/certs/NodeName.crt`).
    fn write_config(d: &Path, objects: &Path, api_port: Option<u16>) -> Result<()> {
        for sub in [
            "run/icinga2",
            "data/cache/icinga2",
            "data/lib/icinga2",
            "data/log/icinga2",
            "log",
            "cache",
            "spool",
        ] {
            std::fs::create_dir_all(d.join(sub))?;
        }
        let api = match api_port {
            Some(port) => format!(
                "object ApiListener \"api\" {{\n  bind_host = \"127.0.0.1\"\n  bind_port = {port}\n}}\n"
            ),
            None => String::new(),
        };
        std::fs::write(
            d.join("icinga2.conf"),
            format!(
                "const PluginDir = \"/usr/lib/nagios/plugins\"\nconst NodeName = \"localhost\"\nconst ZoneName = \"master\"\n\
                 include <itl>\ninclude <plugins>\n\
                 object Endpoint NodeName {{ }}\nobject Zone ZoneName {{ endpoints = [ NodeName ] }}\n\
                 object CheckerComponent \"checker\" {{ }}\n{api}\
                 object ApiUser \"xsmon\" {{\n  password = \"{PUSH_PASSWORD}\"\n  permissions = [ \"actions/process-check-result\" ]\n}}\n\
                 object ApiUser \"reader\" {{\n  password = \"{READER_PASSWORD}\"\n  permissions = [ \"objects/query/Host\", \"objects/query/Service\", \"actions/reschedule-check\" ]\n}}\n\
                 include \"{}\"\n",
                objects.display()
            ),
        )?;
        Ok(())
    }

    /// Starts Icinga 2 with `objects` and waits until its API answers.
    pub fn start(objects: &Path) -> Result<Icinga2> {
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        let certs = d.join("data/lib/icinga2/certs");
        std::fs::create_dir_all(&certs)?;
        openssl(
            &certs,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=xsmon test CA",
            ],
        )?;
        openssl(
            &certs,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "localhost.key",
                "-out",
                "localhost.csr",
                "-subj",
                "/CN=localhost",
            ],
        )?;
        std::fs::write(certs.join("san.ext"), "subjectAltName=DNS:localhost\n")?;
        openssl(
            &certs,
            &[
                "x509",
                "-req",
                "-in",
                "localhost.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "localhost.crt",
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ],
        )?;
        let port = crate::service::free_port()?;
        Self::write_config(d, objects, Some(port))?;
        let mut cmd = icinga2(d);
        cmd.stdout(Stdio::from(std::fs::File::create(d.join("daemon.log"))?))
            .stderr(Stdio::from(std::fs::File::create(d.join("daemon.err"))?));
        let child = crate::daemon::spawn_tied_to_process(cmd)
            .context("starting icinga2 (Debian package icinga2-bin)")?;
        let ca = std::fs::read(certs.join("ca.crt"))?;
        let certs: Vec<_> = ureq::tls::parse_pem(&ca)
            .filter_map(|i| match i {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c.to_owned()),
                _ => None,
            })
            .collect();
        let agent = ureq::Agent::config_builder()
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                    .build(),
            )
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .into();
        let mut icinga = Icinga2 {
            child,
            dir,
            port,
            agent,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if icinga.query("/v1/objects/hosts?attrs=name").is_ok() {
                return Ok(icinga);
            }
            if Instant::now() > deadline || icinga.child.try_wait()?.is_some() {
                bail!(
                    "icinga2's API did not answer within 60 s:\n{}",
                    icinga.log()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The API's URL and its CA, for the poller's `[push]`.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("data/lib/icinga2/certs/ca.crt")
    }

    /// Its log (the daemon's output).
    pub fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!("{}{}", read("daemon.log"), read("daemon.err"))
    }

    /// A GET of the API as `reader`: its JSON.
    pub fn query(&self, path_and_query: &str) -> Result<serde_json::Value> {
        let mut r = self
            .agent
            .get(format!("{}{path_and_query}", self.url()))
            .header("Accept", "application/json")
            .header(
                "Authorization",
                format!(
                    "Basic {}",
                    crate::xenlab::base64(format!("reader:{READER_PASSWORD}").as_bytes())
                ),
            )
            .call()?;
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string()?;
        ensure!(status == 200, "GET {path_and_query}: {status} {text}");
        Ok(serde_json::from_str(&text)?)
    }

    /// A POST of the API as `reader` (its actions: reschedule-check).
    pub fn action(&self, action: &str, body: &serde_json::Value) -> Result<serde_json::Value> {
        let mut r = self
            .agent
            .post(format!("{}/v1/actions/{action}", self.url()))
            .header("Accept", "application/json")
            .header("Authorization", self.reader_auth())
            .content_type("application/json")
            .send(body.to_string())?;
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string()?;
        ensure!(status == 200, "POST {action}: {status} {text}");
        Ok(serde_json::from_str(&text)?)
    }

    fn reader_auth(&self) -> String {
        format!(
            "Basic {}",
            crate::xenlab::base64(format!("reader:{READER_PASSWORD}").as_bytes())
        )
    }

    /// One host's or service's attributes (`name`: "xen01" or
    /// "web01!xsmon").
    pub fn object(&self, kind: &str, name: &str) -> Result<serde_json::Value> {
        let j = self.query(&format!(
            "/v1/objects/{kind}/{}",
            crate::service::url_encode(name)
        ))?;
        Ok(j["results"][0]["attrs"].clone())
    }
}

impl Drop for Icinga2 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
