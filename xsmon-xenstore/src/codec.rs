//! The small rules every request shares: a path's bounds, NUL-terminated
//! arguments, and replies made of names or of one string. A leaf: it
//! imports nothing of the connection.

use crate::error::{Error, Result};
use crate::wire::{MsgType, ABS_PATH_MAX};

pub(crate) fn protocol(op: &'static str, path: &str, detail: &str) -> Error {
    Error::Protocol {
        op,
        path: path.to_string(),
        detail: detail.to_string(),
    }
}

pub(crate) fn check_path(op: &'static str, path: &str) -> Result<()> {
    let reason = if path.is_empty() {
        "empty"
    } else if path.len() > ABS_PATH_MAX {
        "longer than 3072 bytes"
    } else if path.bytes().any(|b| b == 0) {
        "contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(Error::InvalidPath {
        op,
        path: path.chars().take(200).collect(),
        reason,
    })
}

pub(crate) fn nul_terminated(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    v
}

/// Splits a reply made of NUL-terminated names. Node names are restricted
/// by xenstored to a small ASCII set, so anything not UTF-8 is an error.
pub(crate) fn split_names(op: &'static str, path: &str, reply: &[u8]) -> Result<Vec<String>> {
    let body = reply.strip_suffix(&[0]).unwrap_or(reply);
    if body.is_empty() {
        return Ok(Vec::new());
    }
    body.split(|&b| b == 0)
        .map(|name| {
            String::from_utf8(name.to_vec()).map_err(|_| Error::Protocol {
                op,
                path: path.to_string(),
                detail: "node name is not UTF-8".into(),
            })
        })
        .collect()
}

pub(crate) fn string_reply(op: &'static str, path: &str, reply: Vec<u8>) -> Result<String> {
    let body = reply.strip_suffix(&[0]).unwrap_or(&reply);
    String::from_utf8(body.to_vec()).map_err(|_| Error::Protocol {
        op,
        path: path.to_string(),
        detail: "reply is not UTF-8".into(),
    })
}

pub(crate) fn op_name(t: MsgType) -> &'static str {
    match t {
        MsgType::Read => "read",
        MsgType::Write => "write",
        MsgType::Directory | MsgType::DirectoryPart => "directory",
        MsgType::Mkdir => "mkdir",
        MsgType::Rm => "rm",
        MsgType::GetPerms => "get-perms",
        MsgType::SetPerms => "set-perms",
        MsgType::GetDomainPath => "get-domain-path",
        MsgType::TransactionStart => "transaction-start",
        MsgType::TransactionEnd => "transaction-end",
        _ => "request",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_on_nul() {
        assert_eq!(split_names("d", "/", b"a\0bb\0").unwrap(), vec!["a", "bb"]);
        assert!(split_names("d", "/", b"").unwrap().is_empty());
        assert!(split_names("d", "/", b"\xff\0").is_err());
    }

    #[test]
    fn paths_are_checked_before_sending() {
        assert!(check_path("read", "").is_err());
        assert!(check_path("read", "/a\0b").is_err());
        assert!(check_path("read", &"a".repeat(ABS_PATH_MAX + 1)).is_err());
        assert!(check_path("read", "/local/domain/7/data").is_ok());
    }
}
