//! Knowledge bases as the operator names them (`KNOWLEDGE_BASES`,
//! `id:tenant[:prefix],…`): each id (Bedrock's pattern, ten letters and
//! digits) searches one tenant's documents, or those under a prefix of its
//! folder, which plays the part of Bedrock's data source.

use docpipe_core::domain::keys::Tenant;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// One knowledge base: whose documents it searches, and which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnowledgeBase {
    pub tenant: String,
    /// A prefix within the tenant's folder (`reports/`), or all of it.
    pub prefix: Option<String>,
    /// Its data source's id, as results carry it
    /// (`x-amz-bedrock-kb-data-source-id`).
    pub data_source_id: String,
}

/// The operator's knowledge bases, by id.
#[derive(Debug, Clone, Default)]
pub struct KnowledgeBases(HashMap<String, KnowledgeBase>);

/// Whether `id` is a knowledge base id as Bedrock writes them.
fn is_id(id: &str) -> bool {
    id.len() == 10 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A data source id (ten capitals and digits) from what it reads: the same
/// across restarts and instances.
pub fn data_source_id(scope: &str) -> String {
    let digest = Sha256::digest(format!("docpipe data source {scope}").as_bytes());
    hex::encode_upper(&digest[..5])
}

impl KnowledgeBases {
    pub fn parse(text: &str) -> Result<KnowledgeBases, String> {
        let mut bases = HashMap::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let mut parts = entry.splitn(3, ':');
            let (Some(id), Some(tenant)) = (parts.next(), parts.next()) else {
                return Err(
                    "KNOWLEDGE_BASES must be id:tenant or id:tenant:prefix, separated by commas"
                        .into(),
                );
            };
            if !is_id(id) {
                return Err(format!(
                    "knowledge base id {id:?} must be 10 letters and digits (Bedrock's pattern)"
                ));
            }
            Tenant::new(tenant).map_err(|e| format!("KNOWLEDGE_BASES: {e}"))?;
            let prefix = parts.next().filter(|p| !p.is_empty()).map(str::to_string);
            if prefix
                .as_deref()
                .is_some_and(|p| p.chars().any(char::is_control) || p.contains(".."))
            {
                return Err(format!(
                    "knowledge base {id}'s prefix must be a plain folder"
                ));
            }
            let base = KnowledgeBase {
                data_source_id: data_source_id(&format!(
                    "{id}:{}",
                    prefix.as_deref().unwrap_or("")
                )),
                tenant: tenant.to_string(),
                prefix,
            };
            if bases.insert(id.to_string(), base).is_some() {
                return Err(format!("KNOWLEDGE_BASES names {id} twice"));
            }
        }
        Ok(KnowledgeBases(bases))
    }

    /// The knowledge base `id` (or its ARN) names, if it is `tenant`'s.
    /// Another tenant's is not found, as an unknown one is: ids tell nothing.
    pub fn of(&self, tenant: &str, id: &str) -> Option<&KnowledgeBase> {
        let id = match id.strip_prefix("arn:") {
            Some(arn) => arn.rsplit_once(":knowledge-base/")?.1,
            None => id,
        };
        self.0.get(id).filter(|base| base.tenant == tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_a_tenant_and_perhaps_a_prefix() {
        let bases =
            KnowledgeBases::parse("KB12345678:acme, KBREPORTS1:acme:reports/,KBGLOBEX01:globex")
                .unwrap();
        let all = bases.of("acme", "KB12345678").unwrap();
        assert_eq!((all.tenant.as_str(), all.prefix.as_deref()), ("acme", None));
        assert_eq!(
            bases.of("acme", "KBREPORTS1").unwrap().prefix.as_deref(),
            Some("reports/")
        );
        let arn = "arn:aws:bedrock:us-east-1:123456789012:knowledge-base/KB12345678";
        assert_eq!(bases.of("acme", arn), Some(all));
        assert_eq!(bases.of("acme", "KBGLOBEX01"), None, "another tenant's");
        assert_eq!(bases.of("acme", "KBUNKNOWN1"), None);
        assert_ne!(
            all.data_source_id,
            bases.of("acme", "KBREPORTS1").unwrap().data_source_id
        );
        assert_eq!(all.data_source_id.len(), 10);
        for bad in [
            "KB123:acme",
            "KB12345678",
            "KB12345678:bad tenant",
            "KB12345678:a,KB12345678:b",
            "KB12345678:a:../x",
        ] {
            assert!(KnowledgeBases::parse(bad).is_err(), "{bad}");
        }
    }
}
