//! The service's `/metrics`: the last poll's metrics (the same series as
//! `poller prometheus`) in Prometheus's text format, over tiny_http.

use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Result};

/// The text the last cycle rendered; empty before the first.
#[derive(Clone, Default)]
pub struct Published(Arc<Mutex<String>>);

impl Published {
    pub fn set(&self, text: String) {
        if let Ok(mut t) = self.0.lock() {
            *t = text;
        }
    }

    fn get(&self) -> String {
        self.0.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

/// Listens on `addr` (host:port) and answers from `published` on a thread
/// of its own. Fails at once when the address cannot be bound.
pub fn serve(addr: &str, published: Published) -> Result<()> {
    let server = tiny_http::Server::http(addr)
        .map_err(|e| anyhow!("cannot listen on {addr} for /metrics (service.listen): {e}"))?;
    std::thread::spawn(move || {
        for req in server.incoming_requests() {
            let response = answer(req.method(), req.url(), &published);
            let _ = req.respond(response);
        }
    });
    Ok(())
}

fn answer(
    method: &tiny_http::Method,
    url: &str,
    published: &Published,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let text_type = |t: &'static str| {
        tiny_http::Header::from_bytes(&b"Content-Type"[..], t.as_bytes())
            .expect("a static header is valid")
    };
    let path = url.split('?').next().unwrap_or("");
    match (method, path) {
        (tiny_http::Method::Get | tiny_http::Method::Head, "/metrics") => {
            let body = published.get();
            if body.is_empty() {
                tiny_http::Response::from_string(
                    "xsmon-poller has not finished its first poll of the site\n",
                )
                .with_status_code(503)
                .with_header(text_type("text/plain; charset=utf-8"))
            } else {
                tiny_http::Response::from_string(body)
                    .with_header(text_type("text/plain; version=0.0.4; charset=utf-8"))
            }
        }
        (tiny_http::Method::Get, "/") => {
            tiny_http::Response::from_string("xsmon poller: the site's metrics are at /metrics\n")
                .with_header(text_type("text/plain; charset=utf-8"))
        }
        _ => tiny_http::Response::from_string("not found: xsmon serves /metrics\n")
            .with_status_code(404)
            .with_header(text_type("text/plain; charset=utf-8")),
    }
}
