//! xenstore node permissions: a list whose first entry names the owner and
//! the access every other domain gets, followed by per-domain grants
//! (`w0 r7` = owned by dom0, others may write; dom7 may read).

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    None,
    Read,
    Write,
    Both,
}

/// One entry of a node's permission list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perm {
    pub domid: u32,
    pub access: Access,
}

impl Perm {
    pub fn new(domid: u32, access: Access) -> Perm {
        Perm { domid, access }
    }
}

impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = match self.access {
            Access::None => 'n',
            Access::Read => 'r',
            Access::Write => 'w',
            Access::Both => 'b',
        };
        write!(f, "{c}{}", self.domid)
    }
}

impl FromStr for Perm {
    type Err = String;

    fn from_str(s: &str) -> Result<Perm, String> {
        let mut chars = s.chars();
        let access = match chars.next() {
            Some('n') => Access::None,
            Some('r') => Access::Read,
            Some('w') => Access::Write,
            Some('b') => Access::Both,
            _ => {
                return Err(format!(
                    "bad permission {s:?}: expected n, r, w or b then a domain id"
                ))
            }
        };
        let domid = chars
            .as_str()
            .parse::<u32>()
            .map_err(|_| format!("bad permission {s:?}: domain id is not a number"))?;
        Ok(Perm { domid, access })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perms_round_trip() {
        for s in ["n0", "r7", "w65535", "b12"] {
            assert_eq!(s.parse::<Perm>().unwrap().to_string(), s);
        }
        assert!("x1".parse::<Perm>().is_err());
        assert!("r".parse::<Perm>().is_err());
        assert!("r-1".parse::<Perm>().is_err());
        assert!("".parse::<Perm>().is_err());
    }
}
