//! AWS Signature Version 4, verified as AWS verifies it, so that the SDKs'
//! Bedrock clients sign their calls to docpipe with docpipe-issued keys and
//! no hook. Each access key id names a tenant (`SIGV4_KEYS`,
//! `id:secret:tenant,…`, from Secrets Manager in AWS); a tenant may have
//! two live keys, so that a key is rotated without a gap.
//!
//! What is checked: the scheme, the credential's scope (service `bedrock`,
//! this deployment's region, today's date of the request), the request's
//! time (within five minutes of ours, either way), that `host` and
//! `x-amz-date` are signed, the body's hash, and the signature itself,
//! compared in constant time. A refusal names what failed and never the
//! secret or the signature.

use docpipe_core::domain::access_keys;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The service name Bedrock's clients sign for.
pub const SERVICE: &str = "bedrock";
/// How far a request's time may be from ours (AWS's own window).
pub const MAX_SKEW: Duration = Duration::from_secs(5 * 60);
/// The scheme of a SigV4 `Authorization` header.
pub const SCHEME: &str = "AWS4-HMAC-SHA256";
/// Live keys a tenant may have at once: the current one and the next.
pub const KEYS_PER_TENANT: usize = 2;

type HmacSha256 = Hmac<Sha256>;

/// An issued key: its secret and its tenant.
#[derive(Clone)]
struct Key {
    secret: String,
    tenant: String,
}

/// The key pairs docpipe issued, by access key id, and the region they sign for.
#[derive(Clone)]
pub struct SigV4Keys {
    keys: HashMap<String, Key>,
    region: String,
}

impl std::fmt::Debug for SigV4Keys {
    // The secrets never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigV4Keys")
            .field("access_key_ids", &self.keys.keys().collect::<Vec<_>>())
            .field("region", &self.region)
            .finish()
    }
}

impl SigV4Keys {
    /// `id:secret:tenant` triples, comma-separated (`SIGV4_KEYS`), for
    /// signatures of `region`. An id given twice, a short id or secret, a
    /// bad tenant, or a tenant with more than two keys is refused.
    pub fn parse(text: &str, region: &str) -> Result<SigV4Keys, String> {
        let mut keys = HashMap::new();
        let mut per_tenant: HashMap<String, usize> = HashMap::new();
        for triple in text.split(',').filter(|t| !t.trim().is_empty()) {
            let shape = "SIGV4_KEYS must be id:secret:tenant triples separated by commas";
            let (id, rest) = triple.trim().split_once(':').ok_or(shape)?;
            let (secret, tenant) = rest.rsplit_once(':').ok_or(shape)?;
            if !access_keys::is_access_key_id(id) {
                return Err(
                    "each SIGV4_KEYS access key id must be 16 to 128 letters and digits".into(),
                );
            }
            if !access_keys::is_secret(secret) {
                return Err(format!(
                    "the secret of access key {id} needs {} or more characters, without blanks, `:` or `,`",
                    access_keys::MIN_SECRET_CHARS
                ));
            }
            docpipe_core::domain::keys::Tenant::new(tenant)
                .map_err(|e| format!("SIGV4_KEYS: {e}"))?;
            let count = per_tenant.entry(tenant.to_string()).or_default();
            *count += 1;
            if *count > KEYS_PER_TENANT {
                return Err(format!(
                    "SIGV4_KEYS gives tenant {tenant} more than {KEYS_PER_TENANT} keys (the current and the next)"
                ));
            }
            let key = Key {
                secret: secret.to_string(),
                tenant: tenant.to_string(),
            };
            if keys.insert(id.to_string(), key).is_some() {
                return Err(format!("SIGV4_KEYS names access key {id} twice"));
            }
        }
        Ok(SigV4Keys {
            keys,
            region: region.to_string(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A request as its signature covers it.
pub struct Signed<'a> {
    pub method: &'a str,
    /// The path as sent (still percent-encoded).
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a axum::http::HeaderMap,
    pub body: &'a [u8],
}

/// Why a signature was refused: said to the caller, and safe to log.
pub type Refusal = String;

impl SigV4Keys {
    /// The tenant whose key signed `request`, checked at `now`.
    pub fn verify(&self, request: &Signed<'_>, now: SystemTime) -> Result<String, Refusal> {
        let header = request
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .ok_or("the Authorization header is missing or not text")?;
        let authorization = Authorization::parse(header)?;
        let scope = &authorization.scope;
        if scope.service != SERVICE {
            return Err(format!(
                "the signature is for service {:?}; sign for {SERVICE:?}",
                scope.service
            ));
        }
        if scope.region != self.region {
            return Err(format!(
                "the signature is for region {:?}; this endpoint is in {:?}",
                scope.region, self.region
            ));
        }
        for needed in ["host", "x-amz-date"] {
            if !authorization.signed_headers.iter().any(|h| h == needed) {
                return Err(format!("the signature must cover the {needed} header"));
            }
        }
        let amz_date =
            header_text(request.headers, "x-amz-date").ok_or("the x-amz-date header is missing")?;
        let signed_at = parse_amz_date(amz_date).ok_or("x-amz-date must be YYYYMMDDTHHMMSSZ")?;
        if !amz_date.starts_with(&scope.date) {
            return Err("the credential's date is not the request's".into());
        }
        let skew = now
            .duration_since(signed_at)
            .unwrap_or_else(|e| e.duration());
        if skew > MAX_SKEW {
            return Err("the request's time is more than 5 minutes from the server's: signed too long ago, or in the future".into());
        }
        let payload_hash = hex::encode(Sha256::digest(request.body));
        if let Some(claimed) = header_text(request.headers, "x-amz-content-sha256")
            && claimed != payload_hash
        {
            return Err(
                "x-amz-content-sha256 is not the body's hash (the body must be signed)".into(),
            );
        }
        // The same answer for an unknown key as for a wrong signature: which
        // access key ids exist is not told.
        let refused =
            || "the request signature does not match (check the access key and secret)".to_string();
        let Some(key) = self.keys.get(&scope.access_key_id) else {
            return Err(refused());
        };
        let canonical = canonical_request(request, &authorization.signed_headers, &payload_hash)?;
        let string_to_sign = format!(
            "{SCHEME}\n{amz_date}\n{}\n{}",
            scope.string(),
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let signing_key = [
            scope.date.as_str(),
            &scope.region,
            &scope.service,
            "aws4_request",
        ]
        .iter()
        .fold(format!("AWS4{}", key.secret).into_bytes(), |key, part| {
            hmac(&key, part.as_bytes())
        });
        let mut mac =
            <HmacSha256 as KeyInit>::new_from_slice(&signing_key).expect("any key length");
        mac.update(string_to_sign.as_bytes());
        let given = hex::decode(&authorization.signature).map_err(|_| refused())?;
        mac.verify_slice(&given).map_err(|_| refused())?;
        Ok(key.tenant.clone())
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn header_text<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok()
}

/// A credential's scope: `id/date/region/service/aws4_request`.
struct Scope {
    access_key_id: String,
    date: String,
    region: String,
    service: String,
}

impl Scope {
    fn string(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        )
    }
}

struct Authorization {
    scope: Scope,
    signed_headers: Vec<String>,
    signature: String,
}

impl Authorization {
    /// `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
    fn parse(header: &str) -> Result<Authorization, Refusal> {
        let rest = header
            .strip_prefix(SCHEME)
            .and_then(|rest| rest.strip_prefix(' '))
            .ok_or_else(|| format!("the Authorization header must use {SCHEME}"))?;
        let mut fields = HashMap::new();
        for field in rest.split(',') {
            let (name, value) = field
                .trim()
                .split_once('=')
                .ok_or("the Authorization header is malformed")?;
            fields.insert(name, value);
        }
        let field = |name: &str| {
            fields
                .get(name)
                .copied()
                .ok_or(format!("the Authorization header has no {name}"))
        };
        let credential: Vec<&str> = field("Credential")?.split('/').collect();
        let [id, date, region, service, "aws4_request"] = credential[..] else {
            return Err("the credential must be id/date/region/service/aws4_request".into());
        };
        if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
            return Err("the credential's date must be YYYYMMDD".into());
        }
        let signed_headers: Vec<String> = field("SignedHeaders")?
            .split(';')
            .map(str::to_string)
            .collect();
        let mut sorted = signed_headers.clone();
        sorted.sort();
        sorted.dedup();
        if sorted != signed_headers
            || signed_headers
                .iter()
                .any(|h| h.is_empty() || h.bytes().any(|b| b.is_ascii_uppercase()))
        {
            return Err("SignedHeaders must be lowercase names, sorted, each once".into());
        }
        let signature = field("Signature")?.to_string();
        if signature.len() != 64 {
            return Err("the signature must be 64 hex digits".into());
        }
        Ok(Authorization {
            scope: Scope {
                access_key_id: id.to_string(),
                date: date.to_string(),
                region: region.to_string(),
                service: service.to_string(),
            },
            signed_headers,
            signature,
        })
    }
}

/// `YYYYMMDDTHHMMSSZ` as a time.
fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let bytes = text.as_bytes();
    if bytes.len() != 16 || bytes[8] != b'T' || bytes[15] != b'Z' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute, second) = (number(9..11)?, number(11..13)?, number(13..15)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// AWS's URI encoding: unreserved characters kept, every other byte `%XX`
/// (and `/` kept when `keep_slash`).
fn uri_encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// The canonical request: the method, the path encoded again (as every
/// service but S3 signs it), the sorted query, the signed headers and the
/// body's hash.
fn canonical_request(
    request: &Signed<'_>,
    signed_headers: &[String],
    payload_hash: &str,
) -> Result<String, Refusal> {
    let path = if request.path.is_empty() {
        "/"
    } else {
        request.path
    };
    let mut query: Vec<(String, String)> = request
        .query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                uri_encode(&percent_decode(name), false),
                uri_encode(&percent_decode(value), false),
            )
        })
        .collect();
    query.sort();
    let query: Vec<String> = query
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    let mut headers = String::new();
    for name in signed_headers {
        let values: Vec<String> = request
            .headers
            .get_all(name.as_str())
            .iter()
            .map(|value| {
                let text = String::from_utf8_lossy(value.as_bytes());
                text.split_whitespace().collect::<Vec<_>>().join(" ")
            })
            .collect();
        if values.is_empty() {
            return Err(format!("the signed header {name} is not in the request"));
        }
        headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    Ok(format!(
        "{}\n{}\n{}\n{headers}\n{}\n{payload_hash}",
        request.method,
        uri_encode(path, true),
        query.join("&"),
        signed_headers.join(";")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_as_aws_writes_them() {
        let at = parse_amz_date("20150830T123600Z").unwrap();
        assert_eq!(
            at.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_440_938_160
        );
        for bad in [
            "20150830T123600",
            "2015083T123600Z",
            "20151330T123600Z",
            "2015083xT123600Z",
        ] {
            assert!(parse_amz_date(bad).is_none(), "{bad}");
        }
    }

    /// AWS's published example (the SigV4 test suite's get-vanilla),
    /// re-signed for `bedrock` in us-east-1: the signature and the
    /// canonical request are computed as the SDKs compute them.
    #[test]
    fn a_request_signed_as_the_sdks_sign_is_verified() {
        let keys = SigV4Keys::parse(
            "AKIDEXAMPLE12345:wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY:acme",
            "us-east-1",
        )
        .unwrap();
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("host", "example.amazonaws.com".parse().unwrap());
        headers.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
        let body = b"{}";
        let unsigned = Signed {
            method: "POST",
            path: "/knowledgebases/KB12345678/retrieve",
            query: "",
            headers: &headers,
            body,
        };
        let signed = ["host".to_string(), "x-amz-date".to_string()];
        let hash = hex::encode(Sha256::digest(body));
        let canonical = canonical_request(&unsigned, &signed, &hash).unwrap();
        assert_eq!(
            canonical,
            format!(
                "POST\n/knowledgebases/KB12345678/retrieve\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n{hash}"
            )
        );
        let scope = Scope {
            access_key_id: "AKIDEXAMPLE12345".into(),
            date: "20150830".into(),
            region: "us-east-1".into(),
            service: "bedrock".into(),
        };
        let sts = format!(
            "{SCHEME}\n20150830T123600Z\n{}\n{}",
            scope.string(),
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let key = ["20150830", "us-east-1", "bedrock", "aws4_request"]
            .iter()
            .fold(
                b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_vec(),
                |k, p| hmac(&k, p.as_bytes()),
            );
        let signature = hex::encode(hmac(&key, sts.as_bytes()));
        headers.insert(
            "authorization",
            format!("{SCHEME} Credential=AKIDEXAMPLE12345/20150830/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature={signature}")
                .parse()
                .unwrap(),
        );
        let request = Signed {
            method: "POST",
            path: "/knowledgebases/KB12345678/retrieve",
            query: "",
            headers: &headers,
            body,
        };
        let now = parse_amz_date("20150830T123900Z").unwrap();
        assert_eq!(keys.verify(&request, now).unwrap(), "acme");
        // Six minutes later, the same request is a replay past the window.
        let later = parse_amz_date("20150830T124200Z").unwrap();
        assert!(
            keys.verify(&request, later)
                .unwrap_err()
                .contains("5 minutes")
        );
        // Signed for another service or region: refused by its scope.
        for (service, region, says) in [
            ("s3", "us-east-1", "sign for \"bedrock\""),
            ("bedrock", "eu-west-1", "this endpoint is in"),
        ] {
            let header = headers["authorization"]
                .to_str()
                .unwrap()
                .replace("/us-east-1/bedrock/", &format!("/{region}/{service}/"));
            let mut other = headers.clone();
            other.insert("authorization", header.parse().unwrap());
            let request = Signed {
                headers: &other,
                ..request
            };
            let refusal = keys.verify(&request, now).unwrap_err();
            assert!(refusal.contains(says), "{refusal}");
            // What is said (and logged) never holds the signature or the secret.
            assert!(!refusal.contains(&signature) && !refusal.contains("wJalrXUtnFEMI"));
        }
        let changed = Signed {
            body: b"{ }",
            ..request
        };
        assert!(
            keys.verify(&changed, now)
                .unwrap_err()
                .contains("does not match")
        );
    }

    #[test]
    fn keys_are_unique_long_and_at_most_two_a_tenant() {
        let secret = "s".repeat(32);
        let keys = |text: String| SigV4Keys::parse(&text, "us-east-1");
        assert!(
            keys(format!(
                "AAAAAAAAAAAAAAAA:{secret}:acme,BBBBBBBBBBBBBBBB:{secret}:acme"
            ))
            .is_ok()
        );
        let three = format!(
            "AAAAAAAAAAAAAAAA:{secret}:acme,BBBBBBBBBBBBBBBB:{secret}:acme,CCCCCCCCCCCCCCCC:{secret}:acme"
        );
        assert!(keys(three).unwrap_err().contains("more than 2"));
        assert!(
            keys(format!(
                "AAAAAAAAAAAAAAAA:{secret}:acme,AAAAAAAAAAAAAAAA:{secret}:other"
            ))
            .unwrap_err()
            .contains("twice")
        );
        assert!(keys(format!("SHORT:{secret}:acme")).is_err());
        assert!(keys("AAAAAAAAAAAAAAAA:short:acme".into()).is_err());
        assert!(keys(format!("AAAAAAAAAAAAAAAA:{secret}:bad tenant")).is_err());
        // The secrets are not in the debug form.
        let debug = format!(
            "{:?}",
            keys(format!("AAAAAAAAAAAAAAAA:{secret}:acme")).unwrap()
        );
        assert!(!debug.contains(&secret), "{debug}");
    }
}
