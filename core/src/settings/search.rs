//! How search scans: settings docpipe sets on each query itself, so a stock
//! Postgres (an RDS instance's defaults) answers as measured.

use super::{Settings, choice, invalid};
use crate::error::ConfigError;
use serde::Deserialize;

choice! {
    /// Which chunks the keyword ranker ranks (`SEARCH_KEYWORD_MATCH`).
    pub enum KeywordMatch from "SEARCH_KEYWORD_MATCH" {
        /// Only chunks holding every word (`websearch_to_tsquery`), ranked
        /// by how close together they hold them (`ts_rank_cd`). With a real
        /// model, the better hybrid ranking, and fast.
        #[default]
        All,
        /// Chunks holding any of the query's words, ranked by how much of
        /// the query they hold (`ts_rank`); a query written with operators
        /// (`"a phrase"`, `-word`, `or`) is read as `all` reads it. Better
        /// keyword-only ranking, and hybrid with a weak embedder, but it
        /// ranks every chunk sharing a common word: ~10× slower on a
        /// 50 000-chunk tenant.
        Any,
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SearchSettings {
    /// `SEARCH_EF_SEARCH` (100, 10 to 1000): the HNSW scan's candidate list
    /// (`hnsw.ef_search`); larger finds more of the true nearest at more cost.
    pub search_ef_search: u32,
    /// `SEARCH_KEYWORD_MATCH` (`all`): the keyword ranker's chunks.
    pub search_keyword_match: KeywordMatch,
    /// `SEARCH_EXACT_MAX_CHUNKS` (20 000): a tenant of at most this many
    /// chunks is searched exactly through the tenant index, whatever
    /// Postgres's planner would pick (HNSW, badly, at 1 M rows).
    pub search_exact_max_chunks: u32,
}

impl Default for SearchSettings {
    fn default() -> Self {
        SearchSettings {
            search_ef_search: 100,
            search_keyword_match: KeywordMatch::All,
            search_exact_max_chunks: 20_000,
        }
    }
}

impl Settings for SearchSettings {
    fn check(self) -> Result<Self, ConfigError> {
        if !(10..=1000).contains(&self.search_ef_search) {
            return Err(invalid(
                "SEARCH_EF_SEARCH",
                self.search_ef_search,
                "must be 10 to 1000",
            ));
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::super::env;
    use super::*;

    #[test]
    fn the_candidate_list_is_bounded() {
        let load = |value| env(&[("SEARCH_EF_SEARCH", value)]).load::<SearchSettings>();
        assert_eq!(load("400").unwrap().search_ef_search, 400);
        for bad in ["9", "1001", "lots"] {
            assert!(
                load(bad)
                    .unwrap_err()
                    .to_string()
                    .contains("SEARCH_EF_SEARCH"),
                "{bad}"
            );
        }
    }
}
