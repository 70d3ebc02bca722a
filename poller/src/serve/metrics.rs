//! The service's `/metrics`: the site's state as `poller prometheus` reads
//! it (the same code, so the same series), rendered at each scrape from the
//! state the service keeps, over tiny_http. The service holds no copy of
//! the site in memory for it: a scrape costs what `poller prometheus` does.

use std::path::Path;

use anyhow::{anyhow, Result};
use xsmon_store::site::Scope;

use crate::outputs::prometheus::prometheus;
use crate::{report, site};

/// Listens on `addr` (host:port) and answers on a thread of its own. Fails
/// at once when the address cannot be bound.
pub fn serve(addr: &str, state: &Path) -> Result<()> {
    let server = tiny_http::Server::http(addr)
        .map_err(|e| anyhow!("cannot listen on {addr} for /metrics (service.listen): {e}"))?;
    let state = state.to_path_buf();
    std::thread::spawn(move || {
        for req in server.incoming_requests() {
            let response = answer(req.method(), req.url(), &state);
            let _ = req.respond(response);
        }
    });
    Ok(())
}

type Response = tiny_http::Response<std::io::Cursor<Vec<u8>>>;

fn answer(method: &tiny_http::Method, url: &str, state: &Path) -> Response {
    let path = url.split('?').next().unwrap_or("");
    match (method, path) {
        (tiny_http::Method::Get | tiny_http::Method::Head, "/metrics") => match render(state) {
            Ok(body) => text(200, body, "text/plain; version=0.0.4; charset=utf-8"),
            Err(e) => text(503, format!("{e:#}\n"), "text/plain; charset=utf-8"),
        },
        (tiny_http::Method::Get, "/") => text(
            200,
            "xsmon poller: the site's metrics are at /metrics\n".into(),
            "text/plain; charset=utf-8",
        ),
        _ => text(
            404,
            "not found: xsmon serves /metrics\n".into(),
            "text/plain; charset=utf-8",
        ),
    }
}

/// The metrics of the state kept, or why there are none (no poll yet,
/// stale).
fn render(state: &Path) -> Result<String> {
    let now = xsmon_cli::unix_now();
    let site = site::kept::read(state, Scope::All, None, now)?
        .ok_or_else(|| anyhow!("xsmon-poller has not finished its first poll of the site"))?;
    Ok(prometheus(&report::build(site, None, None)))
}

fn text(status: u16, body: String, content_type: &'static str) -> Response {
    let mut r = tiny_http::Response::from_string(body).with_status_code(status);
    if let Ok(h) = tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes()) {
        r = r.with_header(h);
    }
    r
}
