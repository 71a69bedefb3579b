//! Deterministic ids: replaying any event or message yields the same rows.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// docpipe's UUIDv5 namespace. Never change it: every stored id derives from it.
pub const NAMESPACE: Uuid = Uuid::from_u128(0x6f1d_3c8a_5b2e_4e17_9a40_d2c7_1e85_b6f3);

/// SHA-256 of some bytes.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A document is one key of one tenant.
pub fn document_id(tenant: &str, key: &str) -> Uuid {
    v5(&[b"document", tenant.as_bytes(), key.as_bytes()])
}

/// A job is one version (content) of a document.
pub fn job_id(document_id: Uuid, content_sha256: &[u8; 32]) -> Uuid {
    v5(&[b"job", document_id.as_bytes(), content_sha256])
}

/// A chunk is one piece of text at one position of one job.
pub fn chunk_id(job_id: Uuid, index: u32, text_sha256: &[u8; 32]) -> Uuid {
    v5(&[
        b"chunk",
        job_id.as_bytes(),
        &index.to_be_bytes(),
        text_sha256,
    ])
}

/// Parts are length-prefixed so ("ab","c") and ("a","bc") never collide.
fn v5(parts: &[&[u8]]) -> Uuid {
    let mut name = Vec::with_capacity(parts.iter().map(|p| p.len() + 8).sum());
    for part in parts {
        name.extend_from_slice(&(part.len() as u64).to_be_bytes());
        name.extend_from_slice(part);
    }
    Uuid::new_v5(&NAMESPACE, &name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_across_releases() {
        // Golden values: if these change, every stored id changes with them.
        assert_eq!(
            document_id("acme", "uploads/acme/a.txt").to_string(),
            "f0c2fb89-d3fd-54ef-9042-7c760cd7d0e9"
        );
        let doc = document_id("acme", "uploads/acme/a.txt");
        assert_eq!(
            job_id(doc, &sha256(b"hello")).to_string(),
            "115ecfdc-61d6-5039-ba7b-7f607cda3c80"
        );
    }

    #[test]
    fn ids_depend_on_every_input() {
        let doc = document_id("acme", "uploads/acme/a.txt");
        assert_eq!(doc, document_id("acme", "uploads/acme/a.txt"));
        assert_ne!(doc, document_id("acme2", "uploads/acme/a.txt"));
        assert_ne!(doc, document_id("acme", "uploads/acme/b.txt"));
        // Length prefixes keep the boundary between parts.
        assert_ne!(document_id("ab", "c"), document_id("a", "bc"));

        let job = job_id(doc, &sha256(b"v1"));
        assert_eq!(job, job_id(doc, &sha256(b"v1")));
        assert_ne!(job, job_id(doc, &sha256(b"v2")));

        let text = sha256(b"chunk text");
        assert_eq!(chunk_id(job, 3, &text), chunk_id(job, 3, &text));
        assert_ne!(chunk_id(job, 3, &text), chunk_id(job, 4, &text));
        assert_ne!(chunk_id(job, 3, &text), chunk_id(job, 3, &sha256(b"other")));
        assert_eq!(Uuid::get_version_num(&job), 5);
    }
}
