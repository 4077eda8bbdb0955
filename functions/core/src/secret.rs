//! Shared secrets (API keys, webhook tokens) are configured as SHA-256 digests only, so a
//! configuration file or environment dump never holds one in clear.

use sha2::{Digest, Sha256};

/// The SHA-256 of a secret, as `printf %s SECRET | sha256sum` prints it.
pub fn digest_hex(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A configured digest: 64 hex digits.
pub fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    let s = hex.trim();
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Whether `presented` hashes to `want`, compared in full: the time taken says nothing about
/// how much of it matched.
pub fn matches(want: &[u8; 32], presented: &str) -> bool {
    let d: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    d.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_round_trip_and_compare() {
        // The digest of "test", as sha256sum prints it.
        let hex = digest_hex("test");
        assert_eq!(
            hex,
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        let d = parse_digest(&hex).unwrap();
        assert!(matches(&d, "test"));
        assert!(!matches(&d, "test "));
        assert!(!matches(&d, ""));
        assert!(parse_digest("abc").is_none());
        assert!(parse_digest(&"zz".repeat(32)).is_none());
    }
}
