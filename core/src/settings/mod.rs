//! Settings from the environment: one typed struct per concern, each with
//! its documented defaults and its own checks, all read the same way
//! ([`Env::load`]: serde, through `envy`). A binary loads the concerns it
//! uses and no other, so `migrate` and `ingest` start without any
//! provider's key, and a function's role reads only the secrets it uses.

mod aws;
mod chunking;
mod cost;
mod database;
mod embedding;
mod external;
mod parsing;
mod pipeline;
mod rerank;
mod search;
mod telemetry;

pub use aws::{AwsResources, QueueUrls, SweepPolicy};
pub use chunking::{ChunkHeader, ChunkingSettings, DEFAULT_CHUNK_TOKENS, default_min_tokens};
pub use cost::CostPolicy;
pub use database::DatabaseSettings;
pub use embedding::{
    CacheScope, DEFAULT_EMBEDDING_DIMS, EmbeddingProvider, EmbeddingSettings,
    MAX_HALFVEC_HNSW_DIMS, MAX_HNSW_DIMS, MOCK_EMBEDDING_MODEL, VectorIndex, VectorStorage,
};
pub use external::{ExternalPolicy, ServiceMode, ServiceSettings};
pub use parsing::{
    LlamaParseSettings, MIN_CHARS_ALLOWED, OutputBounds, ParseLimits, ParserProvider,
    ParserSettings,
};
pub use pipeline::{DEFAULT_MAX_FILE_BYTES, Parts, PipelineSettings, StageSettings};
pub use rerank::{MAX_RERANK_CANDIDATES, RerankProvider, RerankSettings};
pub use search::{KeywordMatch, SearchSettings};
pub use telemetry::TelemetrySettings;

use crate::error::ConfigError;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

/// A secret value: never printed by `Debug`, exposed only on purpose.
pub type Secret = secrecy::SecretString;
pub use secrecy::ExposeSecret;

/// One concern's settings: read from the environment by serde (field names
/// are the variables' names in lower case), then checked as a whole.
pub trait Settings: DeserializeOwned {
    /// The checks no field's type makes: ranges and relations between fields.
    fn check(self) -> Result<Self, ConfigError> {
        Ok(self)
    }
}

/// The variables settings are read from: the process environment, with the
/// values of the secrets it names laid over it. An empty value is unset
/// (the template passes `""` for a parameter left empty).
#[derive(Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    pub fn from_process() -> Env {
        Env::from_pairs(std::env::vars())
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Env {
        let vars = pairs
            .into_iter()
            .map(|(name, value)| (name.into(), value.into()))
            .filter(|(_, value)| !value.is_empty())
            .collect();
        Env { vars }
    }

    /// `values` (e.g. read from Secrets Manager) in place of the variables of their names.
    pub fn overlay(mut self, values: impl IntoIterator<Item = (&'static str, String)>) -> Env {
        self.vars.extend(
            values
                .into_iter()
                .map(|(name, value)| (name.to_string(), value)),
        );
        self
    }

    /// The variables a model change's next model is read with: each
    /// `NEXT_`-prefixed variable (`NEXT_EMBEDDING_MODEL`, `NEXT_OPENAI_BASE_URL`…)
    /// in place of the one it names, the rest as they are. `None` when no
    /// `NEXT_EMBEDDING_*` variable is set: no change under way.
    pub fn next_model(&self) -> Option<Env> {
        if !self
            .vars
            .keys()
            .any(|name| name.starts_with("NEXT_EMBEDDING_"))
        {
            return None;
        }
        let mut next = self.clone();
        for (name, value) in &self.vars {
            if let Some(name) = name.strip_prefix(NEXT) {
                next.vars.insert(name.to_string(), value.clone());
            }
        }
        Some(next)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// The concern `T`'s settings, read and checked.
    pub fn load<T: Settings>(&self) -> Result<T, ConfigError> {
        let pairs = self.vars.iter().map(|(k, v)| (k.clone(), v.clone()));
        envy::from_iter::<_, T>(pairs).map_err(unreadable)?.check()
    }
}

impl fmt::Debug for Env {
    /// Names only: values may be secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.vars.keys()).finish()
    }
}

/// The prefix of the variables that configure a model change's next model.
pub const NEXT: &str = "NEXT_";

/// `error` of the next model's settings, naming the `NEXT_` variable.
pub fn of_next_model(error: ConfigError) -> ConfigError {
    match error {
        ConfigError::Missing { name } => ConfigError::Missing {
            name: format!("{NEXT}{name}"),
        },
        ConfigError::Invalid {
            name,
            value,
            reason,
        } => invalid(&format!("{NEXT}{name}"), value, &reason),
        other => other,
    }
}

/// envy's error, with the variable it names.
fn unreadable(error: envy::Error) -> ConfigError {
    match error {
        envy::Error::MissingValue(field) => ConfigError::Missing {
            name: field.to_ascii_uppercase(),
        },
        // envy's words for a value that does not parse as its field's type.
        envy::Error::Custom(message) => match message
            .rsplit_once(" provided by ")
            .and_then(|(head, name)| Some((head.split_once(" while parsing value '")?, name)))
        {
            Some(((reason, value), name)) => ConfigError::Invalid {
                name: name.to_string(),
                value: value.strip_suffix('\'').unwrap_or(value).to_string(),
                reason: reason.to_string(),
            },
            None => ConfigError::Unreadable(message),
        },
    }
}

/// A setting's value that fails its check.
pub fn invalid(name: &str, value: impl fmt::Display, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// A setting that names one of a fixed set of choices: the enum, its names
/// (lower case, by `strum`), and an error that says which variable it is
/// and what it takes.
macro_rules! choice {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident from $variable:literal {
            $($(#[$variant_meta:meta])* $variant:ident,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
        #[derive(strum::EnumString, strum::VariantNames, strum::Display)]
        #[serde(try_from = "String")]
        #[strum(serialize_all = "lowercase")]
        $vis enum $name {
            $($(#[$variant_meta])* $variant,)*
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, String> {
                value.parse().map_err(|_| {
                    let choices = <$name as strum::VariantNames>::VARIANTS.join(", ");
                    let reason = format!("expected one of {choices}");
                    $crate::settings::invalid($variable, &value, &reason).to_string()
                })
            }
        }
    };
}
pub(crate) use choice;

/// Durations are given in whole seconds (`*_SECS`).
pub fn secs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    serde::Deserialize::deserialize(d).map(Duration::from_secs)
}

/// ...or milliseconds (`*_MS`).
pub fn millis<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    serde::Deserialize::deserialize(d).map(Duration::from_millis)
}

#[cfg(test)]
pub(crate) fn env(vars: &[(&str, &str)]) -> Env {
    Env::from_pairs(vars.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_variable_and_its_value() {
        let err = env(&[("CHUNK_TOKENS", "abc")])
            .load::<ChunkingSettings>()
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("CHUNK_TOKENS=\"abc\" is invalid"),
            "{err}"
        );
        let err = env(&[("PARSER", "word")])
            .load::<ParserSettings>()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "PARSER=\"word\" is invalid: expected one of local, llamaparse"
        );
        assert_eq!(
            env(&[]).load::<DatabaseSettings>().unwrap_err().to_string(),
            "DATABASE_URL is not set"
        );
    }

    #[test]
    fn empty_is_unset_and_debug_shows_no_values() {
        let env = env(&[("DATABASE_URL", ""), ("OPENAI_API_KEY", "sk-live-123")]);
        assert_eq!(env.get("DATABASE_URL"), None);
        let printed = format!("{env:?}");
        assert!(printed.contains("OPENAI_API_KEY") && !printed.contains("sk-live-123"));
    }
}
