//! Who is calling: the tenant every route acts for.
//!
//! In Lambda, API Gateway's authorizer has verified the caller and the tenant
//! is one of its claims (a JWT authorizer) or context values (a Lambda
//! authorizer). Locally, an API key maps to a tenant.

use crate::error::ApiError;
use crate::state::Api;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Extensions, header};
use docpipe_core::domain::keys::Tenant as TenantName;
use lambda_http::request::RequestContext;
use std::collections::HashMap;
use std::sync::Arc;

/// How callers prove who they are.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `Authorization: Bearer <key>`, each key naming a tenant (`API_KEYS=key:tenant,…`).
    ApiKeys(HashMap<String, String>),
    /// The tenant is `claim` in the API Gateway authorizer's context
    /// (`TENANT_CLAIM`, default `tenant`; `custom:tenant` for Cognito).
    Authorizer { claim: String },
}

/// The caller's tenant, checked.
pub struct Tenant(pub TenantName);

impl FromRequestParts<Arc<Api>> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> Result<Self, ApiError> {
        let (tenant, hint) = match &api.auth {
            Auth::ApiKeys(keys) => (
                bearer_key(parts).and_then(|key| keys.get(key)).cloned(),
                "send `Authorization: Bearer <API key>`".to_string(),
            ),
            Auth::Authorizer { claim } => (
                authorizer_value(&parts.extensions, claim),
                format!("the authorizer gave no valid `{claim}` for this caller"),
            ),
        };
        // A tenant names folders and rows: one that could not is refused here too.
        match tenant.and_then(|name| TenantName::new(&name).ok()) {
            Some(tenant) => {
                // Every route acts for a tenant: each request counts against its rate.
                api.admit(&tenant, std::num::NonZeroU32::MIN).await?;
                Ok(Tenant(tenant))
            }
            _ => Err(api.unauthenticated(hint)),
        }
    }
}

/// The key of `Authorization: Bearer <key>`; the scheme in any case (RFC 9110).
fn bearer_key(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

/// `name` from a JWT authorizer's claims or a Lambda authorizer's context.
fn authorizer_value(extensions: &Extensions, name: &str) -> Option<String> {
    let Some(RequestContext::ApiGatewayV2(context)) = extensions.get::<RequestContext>() else {
        return None;
    };
    let authorizer = context.authorizer.as_ref()?;
    let from_jwt = authorizer.jwt.as_ref().and_then(|jwt| jwt.claims.get(name));
    from_jwt
        .cloned()
        .or_else(|| authorizer.fields.get(name)?.as_str().map(str::to_string))
}

/// `key:tenant,key:tenant` (the `API_KEYS` setting) as a map. A key given
/// twice is refused: one of its tenants would silently lose it, or gain
/// the other's documents.
pub fn parse_api_keys(text: &str) -> Result<HashMap<String, String>, String> {
    let mut keys = HashMap::new();
    for pair in text.split(',').filter(|pair| !pair.trim().is_empty()) {
        let (key, tenant) = pair
            .split_once(':')
            .ok_or_else(|| "API_KEYS must be key:tenant pairs separated by commas".to_string())?;
        let (key, tenant) = (key.trim(), tenant.trim());
        if key.len() < 16 {
            return Err("each API key needs 16 or more characters".to_string());
        }
        TenantName::new(tenant).map_err(|e| format!("API_KEYS: {e}"))?;
        if keys.insert(key.to_string(), tenant.to_string()).is_some() {
            return Err(format!(
                "API_KEYS names one key twice (for tenant {tenant}); each key must be unique"
            ));
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::parse_api_keys;

    #[test]
    fn api_keys_are_pairs_of_a_unique_key_and_a_tenant() {
        let keys = parse_api_keys("aaaaaaaaaaaaaaaa:acme, bbbbbbbbbbbbbbbb:other").unwrap();
        assert_eq!(keys["aaaaaaaaaaaaaaaa"], "acme");
        assert_eq!(keys["bbbbbbbbbbbbbbbb"], "other");
        let twice = parse_api_keys("aaaaaaaaaaaaaaaa:acme,aaaaaaaaaaaaaaaa:other").unwrap_err();
        assert!(twice.contains("twice"), "{twice}");
        assert!(parse_api_keys("short:acme").is_err());
        assert!(parse_api_keys("aaaaaaaaaaaaaaaa").is_err());
        assert!(parse_api_keys("aaaaaaaaaaaaaaaa:bad tenant").is_err());
    }
}
