//! What makes docpipe a drop-in for Amazon Bedrock Knowledge Bases'
//! clients, besides its `Retrieve` route (`routes::retrieve`) and AWS's
//! errors (`routes::aws_errors`): their SigV4 signatures with
//! docpipe-issued keys ([`sigv4`]), their paging ([`paging`]), and
//! knowledge base ids the operator names ([`knowledge_bases`]).

pub mod knowledge_bases;
pub mod paging;
pub mod sigv4;

pub use knowledge_bases::{KnowledgeBase, KnowledgeBases};

/// Largest body of a Bedrock request: a query of 20 000 characters (up to
/// four bytes each) and its configuration.
pub const MAX_BODY_BYTES: usize = 128 * 1024;

/// What the Bedrock routes know besides search: the knowledge bases, the
/// SigV4 keys, the page tokens' key.
#[derive(Debug, Clone)]
pub struct Bedrock {
    pub knowledge_bases: KnowledgeBases,
    pub sigv4: sigv4::SigV4Keys,
    pub page_tokens: paging::PageTokens,
}
