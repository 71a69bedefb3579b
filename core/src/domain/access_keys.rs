//! The SigV4 key pairs docpipe issues to tenants, which Bedrock's clients
//! sign their calls with: their form, and new ones.

/// What every issued access key id starts with (AWS's own start `AKIA`).
pub const ID_PREFIX: &str = "DPK";
/// The fewest characters of a secret.
pub const MIN_SECRET_CHARS: usize = 32;

/// Whether `id` has the form of an access key id: 16 to 128 letters and
/// digits, as AWS's.
pub fn is_access_key_id(id: &str) -> bool {
    (16..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Whether `secret` may be a secret access key: long enough, no blanks,
/// and no `:` or `,` (which separate a key list's fields).
pub fn is_secret(secret: &str) -> bool {
    secret.len() >= MIN_SECRET_CHARS
        && !secret.contains(|c: char| c.is_whitespace() || c == ':' || c == ',')
}

/// A new key pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPair {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// `count` characters of `alphabet`, from the system's random source.
fn random_text(alphabet: &[u8], count: usize) -> String {
    // Each v4 UUID holds 122 random bits, from the OS's CSPRNG.
    let bytes = std::iter::repeat_with(|| *uuid::Uuid::new_v4().as_bytes()).flatten();
    bytes
        .filter(|byte| usize::from(*byte) < 256 - 256 % alphabet.len())
        .take(count)
        .map(|byte| char::from(alphabet[usize::from(byte) % alphabet.len()]))
        .collect()
}

/// A new pair: `DPK` and 17 capitals and digits (20 characters, as AWS's
/// ids), and a secret of 40 letters and digits (~238 bits).
pub fn issue() -> KeyPair {
    const CAPITALS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    const LETTERS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    KeyPair {
        access_key_id: format!("{ID_PREFIX}{}", random_text(CAPITALS, 17)),
        secret_access_key: random_text(LETTERS, 40),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_pairs_have_the_form_and_differ() {
        let (one, two) = (issue(), issue());
        assert_ne!(one, two);
        for pair in [&one, &two] {
            assert!(is_access_key_id(&pair.access_key_id), "{pair:?}");
            assert_eq!(pair.access_key_id.len(), 20);
            assert!(is_secret(&pair.secret_access_key));
            assert_eq!(pair.secret_access_key.len(), 40);
        }
        assert!(!is_access_key_id("SHORT") && !is_access_key_id("AKIA-0123456789ABCDEF"));
        assert!(!is_secret("short") && !is_secret(&format!("{}:x", "s".repeat(40))));
    }
}
