//! The bucket's keys and the tenants they name: every rule about them is
//! here. A tenant owns `uploads/<tenant>/…` (its documents) and
//! `parsed/<tenant>/…` (their text); nothing else may name a tenant.

use crate::error::Rejection;
use std::fmt;
use uuid::Uuid;

/// Where uploads live in the bucket.
pub const UPLOAD_PREFIX: &str = "uploads/";
/// Where parsed text lives.
pub const PARSED_PREFIX: &str = "parsed/";

const TENANT_RULE: &str = "tenant must be 1-64 characters of A-Z, a-z, 0-9, '-' and '_'";

/// A tenant's name, checked: it names folders and rows, so it stays plain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tenant(String);

impl Tenant {
    pub fn new(name: &str) -> Result<Tenant, Rejection> {
        let plain = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if (1..=64).contains(&name.len()) && plain {
            Ok(Tenant(name.to_string()))
        } else {
            Err(Rejection::InvalidKey {
                key: format!("{UPLOAD_PREFIX}{name}/"),
                detail: TENANT_RULE.into(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The folder of the tenant's uploads, with `path` (a name or a prefix) under it.
    pub fn upload_path(&self, path: &str) -> String {
        format!("{UPLOAD_PREFIX}{}/{path}", self.0)
    }
}

/// A checked tenant reads as its name wherever a `&str` is taken.
impl std::ops::Deref for Tenant {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The extension of a parsed text stored with its layout; texts stored
/// before it (`.md`, `.txt`) are the bare text.
pub const STORED_TEXT_EXTENSION: &str = "parsed";

/// Where a job's parsed text is stored (a parsed text with its layout).
pub fn parsed_key(tenant: &str, job_id: Uuid) -> String {
    let extension = STORED_TEXT_EXTENSION;
    format!("{PARSED_PREFIX}{tenant}/{job_id}.{extension}")
}

/// The file name of `key`: what follows its last `/` (all of it if none).
pub fn file_name(key: &str) -> &str {
    key.rsplit_once('/').map_or(key, |(_, name)| name)
}

/// A document's metadata sidecar is its key with this appended (Bedrock
/// Knowledge Bases' convention): `uploads/acme/report.pdf.metadata.json`.
pub const SIDECAR_SUFFIX: &str = ".metadata.json";

/// The key of the document a sidecar key gives metadata for, if it is one.
pub fn sidecar_target(key: &str) -> Option<&str> {
    key.strip_suffix(SIDECAR_SUFFIX)
}

/// The sidecar key of the document at `key`.
pub fn sidecar_key(key: &str) -> String {
    format!("{key}{SIDECAR_SUFFIX}")
}

/// Characters that make a name show as another: the bidirectional
/// overrides, embeddings, isolates and marks, and the zero-width space, word
/// joiner and byte-order mark. (The zero-width joiners, which some scripts
/// and emoji need, stay.)
const DISGUISING: &[char] = &[
    '\u{061C}', '\u{200B}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}',
    '\u{202E}', '\u{2060}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{FEFF}',
];

/// An upload key `uploads/<tenant>/<path>`, checked: a plain tenant, a path
/// that names a file (no empty, `.` or `..` segments), no control characters
/// nor characters that disguise a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadKey<'a> {
    key: &'a str,
    tenant: &'a str,
}

impl<'a> UploadKey<'a> {
    pub fn parse(key: &'a str) -> Result<UploadKey<'a>, Rejection> {
        let invalid = |detail: &str| Rejection::InvalidKey {
            key: key.to_string(),
            detail: detail.to_string(),
        };
        if key.chars().any(char::is_control) {
            return Err(invalid(
                "control characters (NUL, newlines…) are not allowed in keys",
            ));
        }
        if let Some(c) = key.chars().find(|c| DISGUISING.contains(c)) {
            return Err(invalid(&format!(
                "the invisible or direction-changing character U+{:04X} is not allowed in keys: \
                 it makes a name read as another",
                c as u32
            )));
        }
        let rest = key
            .strip_prefix(UPLOAD_PREFIX)
            .ok_or_else(|| invalid("not under uploads/"))?;
        let (tenant, path) = rest
            .split_once('/')
            .ok_or_else(|| invalid("no tenant folder"))?;
        Tenant::new(tenant).map_err(|_| invalid(TENANT_RULE))?;
        if path.is_empty()
            || path.ends_with('/')
            || path
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(invalid(
                "path after the tenant must name a file without empty, '.' or '..' segments",
            ));
        }
        Ok(UploadKey { key, tenant })
    }

    pub fn tenant(&self) -> &'a str {
        self.tenant
    }

    pub fn as_str(&self) -> &'a str {
        self.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_name_is_what_follows_the_last_slash() {
        assert_eq!(file_name("uploads/acme/notes/tides.md"), "tides.md");
        assert_eq!(file_name("tides.md"), "tides.md");
        assert_eq!(file_name("uploads/acme/"), "");
    }

    #[test]
    fn upload_keys_name_a_tenant_and_a_file() {
        let tenant = |key| UploadKey::parse(key).map(|k| k.tenant());
        assert_eq!(tenant("uploads/acme/a.txt"), Ok("acme"));
        assert_eq!(tenant("uploads/acme-2_x/dir/sub dir/ü.md"), Ok("acme-2_x"));
        for bad in [
            "parsed/acme/a.txt",
            "uploads/a.txt",
            "uploads//a.txt",
            "uploads/ac me/a.txt",
            "uploads/acme/",
            "uploads/acme/../other/a.txt",
            "uploads/acme/./a.txt",
            "uploads/acme/dir//a.txt",
            "uploads/acme/a\0.txt",
            "uploads/acme/a\n.txt",
            "uploads/acme/\u{7f}.txt",
        ] {
            assert!(
                matches!(UploadKey::parse(bad), Err(Rejection::InvalidKey { .. })),
                "{bad}"
            );
        }
        assert_eq!(
            sidecar_target("uploads/acme/a.pdf.metadata.json"),
            Some("uploads/acme/a.pdf")
        );
        assert_eq!(sidecar_target("uploads/acme/a.json"), None);
        assert_eq!(
            sidecar_key("uploads/acme/a.pdf"),
            "uploads/acme/a.pdf.metadata.json"
        );
        assert!(Tenant::new(&"t".repeat(65)).is_err());
        assert!(Tenant::new("").is_err());
        let acme = Tenant::new("acme").unwrap();
        assert_eq!(acme.upload_path("reports/"), "uploads/acme/reports/");
        assert_eq!(
            parsed_key(&acme, Uuid::nil()),
            "parsed/acme/00000000-0000-0000-0000-000000000000.parsed"
        );
    }
}
