//! Who is calling: the tenant every route acts for.
//!
//! In Lambda, API Gateway's authorizer has verified the caller and the tenant
//! is one of its claims (a JWT authorizer) or context values (a Lambda
//! authorizer). Locally, an API key maps to a tenant. On Bedrock's routes a
//! SigV4 signature with a docpipe-issued key names it too ([`signed`]).

use crate::bedrock::{MAX_BODY_BYTES, sigv4};
use crate::error::ApiError;
use crate::state::Api;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{Extensions, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use docpipe_core::domain::keys::Tenant as TenantName;
use lambda_http::request::RequestContext;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

/// How callers prove who they are.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `Authorization: Bearer <key>`, each key naming a tenant (`API_KEYS=key:tenant,…`).
    ApiKeys(HashMap<String, String>),
    /// The tenant is `claim` in the API Gateway authorizer's context
    /// (`TENANT_CLAIM`, default `tenant`; `custom:tenant` for Cognito).
    Authorizer { claim: String },
}

/// The tenant whose key signed the request (SigV4, Bedrock's routes),
/// verified before the handler.
#[derive(Debug, Clone)]
pub struct SignedBy(pub String);

/// The caller's tenant, checked.
pub struct Tenant(pub TenantName);

impl FromRequestParts<Arc<Api>> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> Result<Self, ApiError> {
        let signed = parts
            .extensions
            .get::<SignedBy>()
            .map(|signed| signed.0.clone());
        let (tenant, hint) = match &api.auth {
            // A SigV4 signature, verified before (Bedrock's routes).
            _ if signed.is_some() => (signed, String::new()),
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

/// Verifies a SigV4-signed request (its body read once, within the limit)
/// and marks it with its key's tenant; other requests pass to the API's
/// own authentication.
pub(crate) async fn signed(
    State(api): State<Arc<Api>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let is_sigv4 = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with(sigv4::SCHEME));
    if !is_sigv4 {
        return Ok(next.run(request).await);
    }
    let (mut parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the request body is over {MAX_BODY_BYTES} bytes"),
            )
        })?;
    let request = sigv4::Signed {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or_default(),
        headers: &parts.headers,
        body: &body,
    };
    let tenant = api
        .bedrock
        .sigv4
        .verify(&request, SystemTime::now())
        .map_err(|reason| api.unauthenticated(reason))?;
    parts.extensions.insert(SignedBy(tenant));
    Ok(next.run(Request::from_parts(parts, Body::from(body))).await)
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
