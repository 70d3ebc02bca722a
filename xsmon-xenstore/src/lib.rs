//! A small xenstore client for xsmon.
//!
//! One wire protocol, one client: inside a guest it talks to
//! `/dev/xen/xenbus`, on dom0 to xenstored's unix socket, through the same
//! code ([`Client`]). It is built for cron jobs that must never hang and for
//! a dom0 that must never trust what a guest wrote:
//!
//! * every request has a timeout ([`Client::set_timeout`], default 5 s);
//! * replies are matched to requests by id; watch events are queued for
//!   [`Client::wait_event`];
//! * a frame longer than the protocol's 4096-byte bound is an error before
//!   anything is allocated for it;
//! * values are bytes in and bytes out: decoding belongs to the caller.
//!
//! ```no_run
//! use xsmon_xenstore::{Client, Store};
//! let mut xs = Client::open_default()?;
//! xs.write("/local/domain/0/data/hello", b"world")?;
//! let v = xs.read("/local/domain/0/data/hello")?;
//! # Ok::<(), xsmon_xenstore::Error>(())
//! ```

mod client;
mod codec;
mod error;
mod perms;
mod pipeline;
mod store;
pub mod wire;

pub use client::{default_paths, Client, WatchEvent, DEFAULT_TIMEOUT, MAX_QUEUED_EVENTS};
pub use error::{Error, Result};
pub use perms::{Access, Perm};
pub use pipeline::{Reply, Request};
pub use store::{Store, Transaction};
pub use wire::XsErrno;
