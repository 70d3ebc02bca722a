//! Icinga 2's REST API as a consumer of the pushed results (see the
//! parent module): one `POST /v1/actions/process-check-result` per result,
//! over one TLS connection kept alive, verified against the CA the site
//! gives (Icinga's own, `/var/lib/icinga2/certs/ca.crt`), as an API user
//! that needs only the permission `actions/process-check-result`. Each
//! result carries a `ttl` of the freshness: when no result follows within
//! it, Icinga runs the objects' own check (`poller icinga2-objects`), which
//! says the poller is silent.

use std::path::Path;
use std::time::Duration;

use super::{Pushed, SERVICE};
use crate::config::PushConfig;

/// A connection to Icinga 2's API, for the pushes of a service's life.
pub struct Icinga2 {
    agent: ureq::Agent,
    url: String,
    authorization: String,
}

/// How one push went: every result taken, or the hosts Icinga 2 has no
/// object for (the objects were not regenerated since they came).
#[derive(Debug, Default)]
pub struct Outcome {
    pub taken: usize,
    pub unknown: Vec<String>,
}

impl Icinga2 {
    /// From `[push]`: the API's URL, its user and password, and the CA
    /// file (empty: the usual public roots).
    pub fn new(cfg: &PushConfig) -> Result<Icinga2, String> {
        let mut tls = ureq::tls::TlsConfig::builder();
        if !cfg.icinga2_ca.as_os_str().is_empty() {
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&ca_certs(
                &cfg.icinga2_ca,
            )?));
        }
        let agent = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Icinga2 {
            agent,
            url: format!(
                "{}/v1/actions/process-check-result",
                cfg.icinga2_url.trim_end_matches('/')
            ),
            authorization: format!(
                "Basic {}",
                base64(
                    format!("{}:{}", cfg.icinga2_user, cfg.icinga2_password.expose()).as_bytes()
                )
            ),
        })
    }

    /// Posts every result, each with `ttl_secs`. Fails at the first
    /// refusal that is not "no such object" (unreachable, TLS, a wrong
    /// password, a missing permission), naming what Icinga 2 said.
    pub fn push(&self, results: &[Pushed], ttl_secs: u64) -> Result<Outcome, String> {
        let mut outcome = Outcome::default();
        for r in results {
            let body = request_body(r, ttl_secs).to_string();
            let mut response = self
                .agent
                .post(&self.url)
                .header("Authorization", &self.authorization)
                .header("Accept", "application/json")
                .content_type("application/json")
                .send(body)
                .map_err(|e| format!("Icinga 2's API at {}: {e}", self.url))?;
            let status = response.status().as_u16();
            let text = response
                .body_mut()
                .with_config()
                .limit(64 * 1024)
                .read_to_string()
                .unwrap_or_default();
            match status {
                200 => outcome.taken += 1,
                _ if names_no_object(&text) => outcome.unknown.push(r.host.clone()),
                _ => {
                    return Err(format!(
                        "Icinga 2's API at {} answered {status}: {}",
                        self.url,
                        xsmon_proto::text::clean(&text, 300)
                    ))
                }
            }
        }
        outcome.unknown.dedup();
        Ok(outcome)
    }
}

/// Icinga 2's answer when the filter matched no object: 404 "No objects
/// found." (2.13 answers a filter with variables that matches nothing with
/// 500 and an empty result list).
fn names_no_object(answer: &str) -> bool {
    answer.contains("No objects found")
        || serde_json::from_str::<serde_json::Value>(answer)
            .ok()
            .and_then(|j| j["results"].as_array().map(Vec::is_empty))
            .unwrap_or(false)
}

/// The certificates of a PEM file.
fn ca_certs(path: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("Icinga 2's CA {}: {e}", path.display()))?;
    let certs: Vec<_> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c.to_owned()),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(format!(
            "Icinga 2's CA {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}

/// The API's request for one result: the object by a filter whose names
/// are passed as variables (never spliced into the expression), the
/// plugin output, the performance data apart.
pub fn request_body(r: &Pushed, ttl_secs: u64) -> serde_json::Value {
    let (output, perf) = split_output(&r.output);
    let mut body = if r.service {
        serde_json::json!({
            "type": "Service",
            "filter": "host.name == xsmon_host && service.name == xsmon_service",
            "filter_vars": {"xsmon_host": r.host, "xsmon_service": SERVICE},
        })
    } else {
        serde_json::json!({
            "type": "Host",
            "filter": "host.name == xsmon_host",
            "filter_vars": {"xsmon_host": r.host},
        })
    };
    body["exit_status"] = r.state.into();
    body["plugin_output"] = output.into();
    body["performance_data"] = perf.into();
    body["check_source"] = "xsmon-poller".into();
    body["ttl"] = ttl_secs.into();
    body
}

/// A plugin's output as Icinga 2 takes it: the text (first line without
/// its performance data, then the long output), and each item of the
/// performance data (split on spaces outside quoted labels).
pub fn split_output(output: &str) -> (String, Vec<String>) {
    let mut lines = output.trim_end_matches('\n').lines();
    let first = lines.next().unwrap_or_default();
    let (text, perf) = first.split_once('|').unwrap_or((first, ""));
    let mut out = text.trim_end().to_string();
    for l in lines {
        out.push('\n');
        out.push_str(l);
    }
    (out, perf_items(perf))
}

fn perf_items(perf: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in perf.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                cur.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    items.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        items.push(cur);
    }
    items
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_splits_into_text_and_performance_data() {
        let (text, perf) = split_output(
            "XSMON CRITICAL - 1 error | 'guests'=3;;;0 'web 01 cpu'=5%;80;95\nERROR xen01/web01 disk: full\n",
        );
        assert_eq!(
            text,
            "XSMON CRITICAL - 1 error\nERROR xen01/web01 disk: full"
        );
        assert_eq!(perf, vec!["'guests'=3;;;0", "'web 01 cpu'=5%;80;95"]);
        let (text, perf) = split_output("XSMON UP - running");
        assert_eq!((text.as_str(), perf.len()), ("XSMON UP - running", 0));
    }

    #[test]
    fn names_go_to_the_filter_as_variables() {
        let r = Pushed {
            host: "web01\" || true || \"".into(),
            service: true,
            state: 2,
            output: "XSMON CRITICAL - x".into(),
        };
        let body = request_body(&r, 240);
        assert_eq!(
            body["filter"],
            "host.name == xsmon_host && service.name == xsmon_service"
        );
        assert_eq!(body["filter_vars"]["xsmon_host"], r.host.as_str());
        assert_eq!(body["exit_status"], 2);
        assert_eq!(body["ttl"], 240);
    }

    #[test]
    fn an_answer_naming_no_object_is_told_apart() {
        assert!(names_no_object(
            r#"{"error":404.0,"status":"No objects found."}"#
        ));
        assert!(names_no_object(r#"{"results":[]}"#));
        assert!(!names_no_object(
            r#"{"error":401.0,"status":"Unauthorized."}"#
        ));
        assert!(!names_no_object("<html>bad gateway</html>"));
    }

    #[test]
    fn basic_auth_is_base64() {
        assert_eq!(base64(b"xsmon:s3cret"), "eHNtb246czNjcmV0");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
    }
}
