//! A provider's words made safe to keep: its error may echo what it was
//! sent (`Incorrect API key provided: Bearer sk-…`), so anything shaped like
//! a credential is replaced before the text is stored, logged or shown.

const REDACTED: &str = "[redacted]";
/// How well-known keys begin (OpenAI, LlamaCloud, AWS access keys, GitHub,
/// Slack, a JWT's header).
const KEY_PREFIXES: &[&str] = &[
    "sk-",
    "sk_",
    "llx-",
    "rk-",
    "AKIA",
    "ASIA",
    "ghp_",
    "github_pat_",
    "xox",
    "eyJ",
];
/// Words that say the next word is a credential.
const SCHEMES: &[&str] = &[
    "bearer",
    "basic",
    "api-key",
    "apikey",
    "x-api-key",
    "api_key",
];
/// A run this long of letters and digits together reads as a secret.
const LONG_SECRET: usize = 24;

/// `text` with every credential-shaped word replaced by `[redacted]`.
pub fn credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut after_scheme = false;
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest.find(|c: char| !is_word(c)).unwrap_or(rest.len());
        let (word, tail) = rest.split_at(end);
        if !word.is_empty() {
            if after_scheme || looks_secret(word) {
                out.push_str(REDACTED);
            } else {
                out.push_str(word);
            }
            after_scheme = SCHEMES.iter().any(|s| word.eq_ignore_ascii_case(s));
        }
        let gap = tail.find(is_word).unwrap_or(tail.len());
        let (separator, next) = tail.split_at(gap);
        out.push_str(separator);
        // `Bearer: x` and `api-key=x` still name what follows.
        if separator
            .chars()
            .any(|c| !matches!(c, ' ' | ':' | '=' | '\t'))
        {
            after_scheme = false;
        }
        rest = next;
    }
    out
}

/// Characters of a word as keys are written (base64 included; a JWT's
/// parts are words of their own).
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '-' | '_' | '/' | '+')
}

fn looks_secret(word: &str) -> bool {
    let prefixed = KEY_PREFIXES
        .iter()
        .any(|prefix| word.len() >= prefix.len() + 6 && word.starts_with(prefix));
    let long_mixed = word.len() >= LONG_SECRET
        && word.chars().any(|c| c.is_ascii_digit())
        && word.chars().any(|c| c.is_ascii_alphabetic());
    prefixed || long_mixed
}

#[cfg(test)]
mod tests {
    use super::credentials;

    #[test]
    fn keys_in_a_providers_answer_are_replaced() {
        let echoed = "Incorrect API key provided: Bearer sk-live-0123456789abcdef. See docs.";
        assert_eq!(
            credentials(echoed),
            "Incorrect API key provided: Bearer [redacted]. See docs."
        );
        assert_eq!(credentials("api_key=abc"), "api_key=[redacted]");
        assert_eq!(credentials("api-key: hunter2"), "api-key: [redacted]");
        assert_eq!(
            credentials("key llx-AbCdEf123456 and AKIAIOSFODNN7EXAMPLE"),
            "key [redacted] and [redacted]"
        );
        assert_eq!(
            credentials("sig dGhpcyBpcyBhIHNlY3JldCBrZXkgMTIzNA== end"),
            "sig [redacted]== end"
        );
    }

    #[test]
    fn ordinary_words_stay() {
        let text = "HTTP 400: input 3 is over text-embedding-3-small's limit of 8192 tokens";
        assert_eq!(credentials(text), text);
        assert_eq!(credentials("a token, then words"), "a token, then words");
        assert_eq!(credentials(""), "");
    }
}
