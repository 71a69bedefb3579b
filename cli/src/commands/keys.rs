//! `docpipe keys issue`: a SigV4 key pair for a tenant's Bedrock clients.

use docpipe_core::domain::access_keys;
use docpipe_core::domain::keys::Tenant;

/// Prints a new key pair for `tenant` and its `SIGV4_KEYS` entry. The
/// secret is shown once, here: nothing keeps it but the operator's secret.
pub fn issue(tenant: &str, json: bool) -> anyhow::Result<()> {
    let tenant = Tenant::new(tenant).map_err(anyhow::Error::msg)?;
    let pair = access_keys::issue();
    let entry = format!("{}:{}:{tenant}", pair.access_key_id, pair.secret_access_key);
    if json {
        let answer = serde_json::json!({
            "tenant": tenant.to_string(),
            "access_key_id": pair.access_key_id,
            "secret_access_key": pair.secret_access_key,
            "sigv4_keys_entry": entry,
        });
        say!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        say!("tenant             {tenant}");
        say!("access key id      {}", pair.access_key_id);
        say!("secret access key  {}", pair.secret_access_key);
        say!("SIGV4_KEYS entry   {entry}");
    }
    Ok(())
}
