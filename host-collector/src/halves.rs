//! Work on many guests at once, on two threads: a leaf the cycle's pure
//! phases (decoding what xenstore gave, judging each running domain)
//! share. Imports nothing of the crate.

/// `f` over `items`, results in their order, on two threads once there
/// are enough to be worth it: each item is worked on its own, and a large
/// dom0's cycle need not wait for one core.
pub fn in_two_halves<T: Send, R: Send>(mut items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    if items.len() < 64 {
        return items.into_iter().map(&f).collect();
    }
    let second = items.split_off(items.len() / 2);
    std::thread::scope(|s| {
        let other = s.spawn(|| second.into_iter().map(&f).collect::<Vec<R>>());
        let mut out: Vec<R> = items.into_iter().map(&f).collect();
        match other.join() {
            Ok(rest) => out.extend(rest),
            // Decoding and judging do not panic (fuzzed); if they ever
            // did, the cycle fails as a whole rather than losing guests
            // silently.
            Err(e) => std::panic::resume_unwind(e),
        }
        out
    })
}
