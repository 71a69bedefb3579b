//! Bedrock's `nextToken`: the next page's offset, bound by a MAC to the
//! request it continues (tenant, knowledge base, query, configuration) and
//! to its time, so that a forged, stale or borrowed token is refused, with
//! the same words whichever it is.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a page's token stays good.
pub const TOKEN_TTL: Duration = Duration::from_secs(15 * 60);

/// What a refused token is told.
pub const REFUSED: &str = "nextToken is not one this request was given, or it is older than 15 minutes; \
                           repeat the request without it";

/// Issues and reads page tokens with a key every API instance shares
/// (`PAGE_TOKEN_KEY`; without it, one of this process's own).
#[derive(Clone)]
pub struct PageTokens {
    key: Vec<u8>,
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokens")
    }
}

impl PageTokens {
    pub fn new(key: Option<&str>) -> PageTokens {
        let key = match key {
            Some(key) => key.as_bytes().to_vec(),
            None => [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
                .iter()
                .flat_map(|id| *id.as_bytes())
                .collect(),
        };
        PageTokens { key }
    }

    fn mac(&self, request: &str, offset: u32, issued: u64) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("any key length");
        mac.update(format!("{request}\n{offset}\n{issued}").as_bytes());
        mac
    }

    /// The token for the page at `offset` of `request` (its binding).
    pub fn issue(&self, request: &str, offset: u32, now: SystemTime) -> String {
        let issued = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let tag = self.mac(request, offset, issued).finalize().into_bytes();
        format!("{offset}.{issued}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// The offset a request's `nextToken` gives (none: the first page, 0),
    /// if docpipe issued it for `request` within [`TOKEN_TTL`].
    pub fn offset(&self, token: Option<&str>, request: &str, now: SystemTime) -> Option<u32> {
        match token {
            None => Some(0),
            Some(token) => self.read(token, request, now),
        }
    }

    /// The offset `token` gives for `request`, if docpipe issued it for
    /// this request within [`TOKEN_TTL`].
    pub fn read(&self, token: &str, request: &str, now: SystemTime) -> Option<u32> {
        let mut parts = token.splitn(3, '.');
        let offset: u32 = parts.next()?.parse().ok()?;
        let issued: u64 = parts.next()?.parse().ok()?;
        let tag = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
        self.mac(request, offset, issued).verify_slice(&tag).ok()?;
        let age = now
            .duration_since(UNIX_EPOCH + Duration::from_secs(issued))
            .ok()?;
        (age <= TOKEN_TTL).then_some(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_continues_its_own_request_only_and_not_for_long() {
        let tokens = PageTokens::new(Some("a shared key of the deployment"));
        let now = SystemTime::now();
        let token = tokens.issue("acme|KB1|fog", 10, now);
        assert_eq!(tokens.read(&token, "acme|KB1|fog", now), Some(10));
        // Another instance with the same key reads it.
        assert_eq!(
            PageTokens::new(Some("a shared key of the deployment")).read(
                &token,
                "acme|KB1|fog",
                now
            ),
            Some(10)
        );
        assert_eq!(
            tokens.read(&token, "globex|KB1|fog", now),
            None,
            "another tenant's"
        );
        assert_eq!(
            tokens.read(&token, "acme|KB1|tides", now),
            None,
            "another query's"
        );
        assert_eq!(
            tokens.read(
                &token,
                "acme|KB1|fog",
                now + TOKEN_TTL + Duration::from_secs(1)
            ),
            None,
            "stale"
        );
        let forged = token.replacen("10.", "90.", 1);
        assert_eq!(tokens.read(&forged, "acme|KB1|fog", now), None, "forged");
        assert_eq!(
            PageTokens::new(None).read(&token, "acme|KB1|fog", now),
            None,
            "another key"
        );
        for junk in ["", "x", "1.2", "1.2.!!", &"9".repeat(2048)] {
            assert_eq!(tokens.read(junk, "acme|KB1|fog", now), None, "{junk}");
        }
    }
}
