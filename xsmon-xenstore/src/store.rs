//! The node operations ([`Store`]: read, write, list, permissions), the
//! same on a connection and inside a transaction, and the transactions
//! themselves.

use std::time::Duration;

use crate::client::Client;
use crate::codec::{check_path, nul_terminated, protocol, split_names, string_reply};
use crate::error::{Error, Result};
use crate::perms::Perm;
use crate::wire::{MsgType, XsErrno, PAYLOAD_MAX};

impl Client {
    /// Runs `body` in a transaction and commits it, retrying the whole
    /// transaction when xenstored reports a conflict (EAGAIN), at most
    /// `max_attempts` times. An error from `body` aborts the transaction.
    pub fn transaction<T>(
        &mut self,
        max_attempts: u32,
        mut body: impl FnMut(&mut Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        for attempt in 1..=max_attempts.max(1) {
            let id = self.transaction_start()?;
            let outcome = body(&mut Transaction { client: self, id });
            match outcome {
                Ok(value) => match self.transaction_end(id, true) {
                    Ok(()) => return Ok(value),
                    Err(e) if e.is_conflict() => {
                        tracing::debug!(attempt, "xenstore transaction conflict, retrying");
                    }
                    Err(e) => return Err(e),
                },
                Err(e) => {
                    // Abort; the body's error is the one worth reporting.
                    let _ = self.transaction_end(id, false);
                    if !e.is_conflict() {
                        return Err(e);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(u64::from(attempt.min(10)) * 5));
        }
        Err(Error::TooManyConflicts {
            attempts: max_attempts.max(1),
        })
    }

    /// Lists a node's children, trusting the daemon with a reply of up to
    /// `max_bytes` (at least the protocol's 4096) for this one request.
    ///
    /// For dom0's own listings that can outgrow 4096 bytes, such as
    /// `/local/domain` on a host with about 900 domains or more: oxenstored
    /// (Xen 4.17) sends such a listing in one long frame on its socket; C
    /// xenstored answers E2BIG, and the listing is then read in parts
    /// (`XS_DIRECTORY_PART`). A reply over `max_bytes` is an error for this
    /// listing (its payload is discarded, never buffered), the connection
    /// stays usable. Never use it for a node a guest controls.
    pub fn directory_trusted(&mut self, path: &str, max_bytes: usize) -> Result<Vec<String>> {
        check_path("directory", path)?;
        let before = self.reader.max_payload();
        self.reader.set_max_payload(max_bytes.max(PAYLOAD_MAX));
        let reply = self.request(0, MsgType::Directory, path, &nul_terminated(path));
        self.reader.set_max_payload(before);
        match reply {
            Ok(reply) => split_names("directory", path, &reply),
            Err(e) if e.errno() == Some(&XsErrno::E2big) => directory_in_parts(self, path),
            Err(e) => Err(e),
        }
    }

    /// Starts a transaction by hand; prefer [`Client::transaction`].
    pub fn transaction_start(&mut self) -> Result<u32> {
        let reply = self.request(0, MsgType::TransactionStart, "", b"\0")?;
        let text = string_reply("transaction-start", "", reply)?;
        text.parse::<u32>().map_err(|_| Error::Protocol {
            op: "transaction-start",
            path: String::new(),
            detail: format!("transaction id {text:?} is not a number"),
        })
    }

    /// Ends transaction `id`, committing it when `commit` is true.
    pub fn transaction_end(&mut self, id: u32, commit: bool) -> Result<()> {
        let arg: &[u8] = if commit { b"T\0" } else { b"F\0" };
        self.request(id, MsgType::TransactionEnd, "", arg).map(drop)
    }
}

/// A transaction in progress, handed to the body of [`Client::transaction`].
pub struct Transaction<'c> {
    client: &'c mut Client,
    id: u32,
}

impl Transaction<'_> {
    pub fn id(&self) -> u32 {
        self.id
    }
}

/// The node operations, the same inside and outside a transaction.
pub trait Store {
    #[doc(hidden)]
    fn raw_request(&mut self, msg_type: MsgType, path: &str, payload: &[u8]) -> Result<Vec<u8>>;

    /// Reads a node's value: bytes, not assumed to be UTF-8.
    fn read(&mut self, path: &str) -> Result<Vec<u8>> {
        check_path("read", path)?;
        self.raw_request(MsgType::Read, path, &nul_terminated(path))
    }

    /// Reads a node, `Ok(None)` when it does not exist.
    fn read_opt(&mut self, path: &str) -> Result<Option<Vec<u8>>> {
        match self.read(path) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes a value, creating the node and its parents as needed.
    fn write(&mut self, path: &str, value: &[u8]) -> Result<()> {
        check_path("write", path)?;
        let mut payload = Vec::with_capacity(path.len() + 1 + value.len());
        payload.extend_from_slice(path.as_bytes());
        payload.push(0);
        payload.extend_from_slice(value);
        self.raw_request(MsgType::Write, path, &payload).map(drop)
    }

    /// Lists a node's children. Lists too long for one reply are read in
    /// parts (`XS_DIRECTORY_PART`), restarting if the node changes meanwhile.
    fn directory(&mut self, path: &str) -> Result<Vec<String>> {
        check_path("directory", path)?;
        match self.raw_request(MsgType::Directory, path, &nul_terminated(path)) {
            Ok(reply) => split_names("directory", path, &reply),
            Err(e) if e.errno() == Some(&XsErrno::E2big) => directory_in_parts(self, path),
            Err(e) => Err(e),
        }
    }

    /// Creates a node (and its parents) with an empty value; fine if it exists.
    fn mkdir(&mut self, path: &str) -> Result<()> {
        check_path("mkdir", path)?;
        self.raw_request(MsgType::Mkdir, path, &nul_terminated(path))
            .map(drop)
    }

    /// Removes a node and everything under it; fine if it does not exist.
    fn rm(&mut self, path: &str) -> Result<()> {
        check_path("rm", path)?;
        match self.raw_request(MsgType::Rm, path, &nul_terminated(path)) {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(drop),
        }
    }

    /// A node's permission list (owner first).
    fn get_perms(&mut self, path: &str) -> Result<Vec<Perm>> {
        check_path("get-perms", path)?;
        let reply = self.raw_request(MsgType::GetPerms, path, &nul_terminated(path))?;
        split_names("get-perms", path, &reply)?
            .iter()
            .map(|s| {
                s.parse::<Perm>().map_err(|detail| Error::Protocol {
                    op: "get-perms",
                    path: path.to_string(),
                    detail,
                })
            })
            .collect()
    }

    /// Replaces a node's permission list (owner first).
    fn set_perms(&mut self, path: &str, perms: &[Perm]) -> Result<()> {
        check_path("set-perms", path)?;
        let mut payload = nul_terminated(path);
        for p in perms {
            payload.extend_from_slice(p.to_string().as_bytes());
            payload.push(0);
        }
        self.raw_request(MsgType::SetPerms, path, &payload)
            .map(drop)
    }
}

impl Store for Client {
    fn raw_request(&mut self, msg_type: MsgType, path: &str, payload: &[u8]) -> Result<Vec<u8>> {
        self.request(0, msg_type, path, payload)
    }
}

impl Store for Transaction<'_> {
    fn raw_request(&mut self, msg_type: MsgType, path: &str, payload: &[u8]) -> Result<Vec<u8>> {
        self.client.request(self.id, msg_type, path, payload)
    }
}

fn directory_in_parts<S: Store + ?Sized>(store: &mut S, path: &str) -> Result<Vec<String>> {
    // A guest's home can hold at most ~1000 nodes, dom0 can write far more;
    // give up after a bounded number of restarts rather than loop forever.
    'restart: for _ in 0..8 {
        let mut names = Vec::new();
        let mut offset = 0usize;
        let mut generation: Option<Vec<u8>> = None;
        loop {
            let mut payload = nul_terminated(path);
            payload.extend_from_slice(offset.to_string().as_bytes());
            payload.push(0);
            let reply = store.raw_request(MsgType::DirectoryPart, path, &payload)?;
            let (gen, rest) = match reply.iter().position(|&b| b == 0) {
                Some(i) => (reply[..i].to_vec(), &reply[i + 1..]),
                None => {
                    return Err(protocol(
                        "directory",
                        path,
                        "directory part without generation",
                    ))
                }
            };
            match &generation {
                Some(g) if *g != gen => continue 'restart,
                _ => generation = Some(gen),
            }
            // The list ends with an empty name (two NULs in a row).
            let done = rest.is_empty() || rest.ends_with(b"\0\0") || rest == b"\0";
            let chunk = if done {
                rest.strip_suffix(b"\0").unwrap_or(rest)
            } else {
                rest
            };
            let chunk_names = split_names("directory", path, chunk)?;
            if chunk.is_empty() && !done {
                return Err(protocol("directory", path, "empty directory part"));
            }
            offset += chunk.len();
            names.extend(chunk_names);
            if done {
                return Ok(names);
            }
        }
    }
    Err(protocol(
        "directory",
        path,
        "node kept changing while being listed",
    ))
}
