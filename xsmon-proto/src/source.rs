//! Where a guest's run is read from by [`crate::layout::decode`]: xenstore
//! on dom0, a map in tests and tools. The key layout itself (what the
//! keys hold) is in [`crate::layout`].

use std::collections::BTreeMap;
use std::fmt;

/// Where [`crate::layout::decode`] reads from: xenstore on dom0, a map in tests. Keys are
/// relative to BASE.
pub trait Source {
    type Error: fmt::Display;
    /// The value of `key`, `None` if it does not exist.
    fn read(&mut self, key: &str) -> Result<Option<Vec<u8>>, Self::Error>;
    /// The children of `key` (empty if it does not exist).
    fn list(&mut self, key: &str) -> Result<Vec<String>, Self::Error>;
}

/// In-memory source, for tests and tools.
impl Source for BTreeMap<String, Vec<u8>> {
    type Error = std::convert::Infallible;
    fn read(&mut self, key: &str) -> Result<Option<Vec<u8>>, Self::Error> {
        Ok(self.get(key).cloned())
    }
    fn list(&mut self, key: &str) -> Result<Vec<String>, Self::Error> {
        let prefix = format!("{key}/");
        let mut names: Vec<String> = self
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .map(|rest| rest.split('/').next().unwrap_or(rest).to_string())
            .collect();
        names.dedup();
        Ok(names)
    }
}

/// Reads BASE from xenstore (dom0's collector, tests).
#[cfg(feature = "xenstore")]
pub struct XenstoreSource<'a> {
    pub client: &'a mut xsmon_xenstore::Client,
    /// Absolute BASE, e.g. `/local/domain/7/data/xsmon`.
    pub base: String,
}

#[cfg(feature = "xenstore")]
impl Source for XenstoreSource<'_> {
    type Error = xsmon_xenstore::Error;
    fn read(&mut self, key: &str) -> Result<Option<Vec<u8>>, Self::Error> {
        xsmon_xenstore::Store::read_opt(self.client, &format!("{}/{key}", self.base))
    }
    fn list(&mut self, key: &str) -> Result<Vec<String>, Self::Error> {
        match xsmon_xenstore::Store::directory(self.client, &format!("{}/{key}", self.base)) {
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            other => other,
        }
    }
}
