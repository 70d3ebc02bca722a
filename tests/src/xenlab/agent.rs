//! Talking to the lab: a small agent on TCP 2323 in dom0 and in every
//! guest runs one base64-encoded shell script per connection and answers
//! `__XSMON_BEGIN`, its output, `__XSMON_RC=<exit code>` (scripts/xen-lab).
//! A guest's agent is reached through dom0's, over the lab bridge.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// What a command printed and how it exited.
#[derive(Debug, Clone)]
pub struct Exec {
    pub out: String,
    pub rc: i32,
}

impl Exec {
    /// Fails unless the command exited 0.
    pub fn ok(self, what: &str) -> Result<String> {
        if self.rc != 0 {
            bail!("{what}: exit {}\n{}", self.rc, self.out);
        }
        Ok(self.out)
    }
}

/// A script's first line, for messages.
pub(super) fn brief(script: &str) -> String {
    let first = script.lines().next().unwrap_or("");
    let mut s: String = first.chars().take(120).collect();
    if s.len() < script.len() {
        s.push_str(" ...");
    }
    s
}

pub(super) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// What a lab agent prints before it runs the script (scripts/xen-lab).
pub(super) const BEGIN: &str = "__XSMON_BEGIN";

/// Requests to dom0's agents in this process (see [`super::harness_load`]).
pub(super) static AGENT_CALLS: AtomicU64 = AtomicU64::new(0);

/// One request to a lab agent: the script base64-encoded on one line, then
/// `__XSMON_BEGIN`, everything it prints, and `__XSMON_RC=<code>`.
pub(super) fn agent_call(port: u16, script: &str, timeout: Duration) -> Result<Exec> {
    // QEMU's user network accepts on the host's side before it connects
    // inside; when dom0's agent is between two connections, the host's
    // connection is closed (or reset) at once, without a byte: the script
    // never ran (its answer would start with `__XSMON_BEGIN`), so it is
    // sent again.
    let mut attempt = 1;
    loop {
        AGENT_CALLS.fetch_add(1, Ordering::Relaxed);
        let out = agent_exchange(port, script, timeout)?;
        let text = String::from_utf8_lossy(&out).into_owned();
        if !text.contains(BEGIN) && attempt < 4 {
            eprintln!(
                "xen lab: dom0's agent did not start {:?} ({} bytes back: {:?}); again ({attempt})",
                brief(script),
                out.len(),
                brief(text.trim())
            );
            std::thread::sleep(Duration::from_secs(1));
            attempt += 1;
            continue;
        }
        return parse_agent_output(&text)
            .with_context(|| format!("agent's answer to {:?}: {text:?}", brief(script)));
    }
}

/// One connection to dom0's agent: the script out, the answer back.
fn agent_exchange(port: u16, script: &str, timeout: Duration) -> Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(5))
        .with_context(|| format!("connecting to the lab's agent on 127.0.0.1:{port}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.write_all(format!("{}\n", request_line(script)).as_bytes())?;
    s.shutdown(Shutdown::Write)?;
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => Ok(out),
        // Reset before a byte came back: as a close without an answer.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && out.is_empty() => Ok(out),
        Err(e) => Err(anyhow::Error::new(e)
            .context(format!("reading the agent's answer to {:?}", brief(script)))),
    }
}

pub(super) fn parse_agent_output(text: &str) -> Result<Exec> {
    // What the agent printed before the script is not the script's.
    let text = match text.find(BEGIN) {
        Some(at) => text[at + BEGIN.len()..]
            .strip_prefix('\n')
            .unwrap_or(&text[at + BEGIN.len()..]),
        None => bail!("the agent did not start the script"),
    };
    let marker = "__XSMON_RC=";
    let at = text
        .rfind(marker)
        .context("no exit code in the answer (cut off?)")?;
    // The code's own line; what follows it is the relay's noise (a
    // relay whose connection a save or a migration left hanging is killed
    // by `timeout` after the whole answer came: "Terminated").
    let rc = text[at + marker.len()..]
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .parse::<i32>()
        .context("unreadable exit code")?;
    Ok(Exec {
        out: text[..at].to_string(),
        rc,
    })
}

/// A request to an agent, without its newline: the script's size in
/// bytes and the script in base64 (scripts/xen-lab's agent refuses one
/// whose decoded size differs, a request cut short, before it runs any).
pub(super) fn request_line(script: &str) -> String {
    format!("{} {}", script.len(), base64(script.as_bytes()))
}

/// Standard base64 (busybox `base64 -d` reads it).
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (what busybox `base64` prints), ignoring line
/// breaks; `None` for anything else.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"xl list\n"), "eGwgbGlzdAo=");
    }

    #[test]
    fn base64_round_trips() {
        for data in [&b""[..], b"f", b"fo", b"foo", b"\x89PNG\r\n\x1a\n\x00\xff"] {
            assert_eq!(base64_decode(&base64(data)).as_deref(), Some(data));
        }
        assert_eq!(
            base64_decode("Zm9v\nYmFy\n").as_deref(),
            Some(&b"foobar"[..])
        );
        assert_eq!(base64_decode("Zm9v!"), None);
    }

    #[test]
    fn agent_output_carries_the_exit_code() {
        let e = parse_agent_output("__XSMON_BEGIN\na\nb\n__XSMON_RC=3\n").unwrap();
        assert_eq!((e.out.as_str(), e.rc), ("a\nb\n", 3));
        // A guest's answer relayed by dom0's agent: the guest's own code.
        let relayed =
            parse_agent_output("__XSMON_BEGIN\n__XSMON_BEGIN\nup\n__XSMON_RC=0\n__XSMON_RC=0\n")
                .unwrap();
        let inner = parse_agent_output(&relayed.out).unwrap();
        assert_eq!((inner.out.as_str(), inner.rc), ("up\n", 0));
        // Started, then cut off; never started.
        assert!(parse_agent_output("__XSMON_BEGIN\ncut").is_err());
        assert!(parse_agent_output("").is_err());
        assert!(parse_agent_output("nc: can't connect").is_err());
    }
}
