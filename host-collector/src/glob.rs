//! Name patterns of the configuration (`expect_stopped`, `[without_probe]
//! guests`): `*` matches any run of characters. A leaf: it imports nothing
//! of this crate.

/// `*` matches any run of characters; everything else matches itself.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn stars_match_any_run() {
        assert!(glob_match("web*", "web01"));
        assert!(glob_match("*01", "web01"));
        assert!(glob_match("w*b*1", "web01"));
        assert!(glob_match("*", ""));
        assert!(glob_match("web01", "web01"));
        assert!(!glob_match("web01", "web011"));
        assert!(!glob_match("web*02", "web01"));
        // The two ends may not overlap.
        assert!(!glob_match("ab*ba", "aba"));
    }
}
