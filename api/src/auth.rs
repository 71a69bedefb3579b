//! Who is calling: the tenant every route acts for.
//!
//! In Lambda, API Gateway's authorizer has verified the caller and the tenant
//! is one of its claims (a JWT authorizer) or context values (a Lambda
//! authorizer). Locally, an API key maps to a tenant.

use crate::{Api, ApiError};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Extensions, StatusCode, header};
use docpipe_shared::stages::ingest::check_tenant;
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

/// The caller's tenant.
pub struct Tenant(pub String);

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
        match tenant {
            Some(tenant) if check_tenant(&tenant).is_ok() => Ok(Tenant(tenant)),
            _ => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                hint,
            )),
        }
    }
}

fn bearer_key(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    Some(value.strip_prefix("Bearer ")?.trim())
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

/// `key:tenant,key:tenant` (the `API_KEYS` setting) as a map.
pub fn parse_api_keys(text: &str) -> Result<HashMap<String, String>, String> {
    text.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (key, tenant) = pair.split_once(':').ok_or_else(|| {
                "API_KEYS must be key:tenant pairs separated by commas".to_string()
            })?;
            let (key, tenant) = (key.trim(), tenant.trim());
            if key.len() < 16 {
                return Err("each API key needs 16 or more characters".to_string());
            }
            check_tenant(tenant).map_err(|e| format!("API_KEYS: {e}"))?;
            Ok((key.to_string(), tenant.to_string()))
        })
        .collect()
}
