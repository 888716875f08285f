//! OpenID Connect sign-in, the client side: the authorization code flow with PKCE (S256)
//! against a configured issuer. The provider's endpoints come from its discovery document
//! (`{issuer}/.well-known/openid-configuration`, read once). The ID token arrives straight
//! from the token endpoint, over the connection this server opened to the issuer, so its
//! issuer, audience, expiry and nonce are checked and its signature is not (OpenID Connect
//! Core 3.1.3.7, step 6: TLS to the token endpoint stands in for it; hence an `https://`
//! issuer, except on the loopback interface). The user's claims come from the userinfo
//! endpoint, whose `sub` must be the ID token's.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::domain::{Role, Username};

/// `[oidc]` in the settings: where the provider is, this client's credentials, and how its
/// claims become a user name and a role.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    /// The provider's issuer URL, exactly as its discovery document names it.
    pub issuer: String,
    pub client_id: String,
    /// From `LABELER_OIDC_CLIENT_SECRET` when set there.
    pub client_secret: SecretString,
    /// This server's callback, `https://labeler.example.com/login/oidc/callback`, as
    /// registered with the provider.
    pub redirect_url: String,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The claim that names the user (a valid labeler user name).
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// The claim (a string or a list of strings) that gives the role; none: new users are
    /// annotators and roles are managed in the labeler.
    #[serde(default)]
    pub role_claim: Option<String>,
    /// Values of `role_claim` that make an admin, and a reviewer; any other: annotator.
    #[serde(default)]
    pub admin_values: Vec<String>,
    #[serde(default)]
    pub reviewer_values: Vec<String>,
    /// The sign-in button says "Sign in with {label}".
    #[serde(default = "default_label")]
    pub label: String,
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "profile".into()]
}

fn default_username_claim() -> String {
    "preferred_username".into()
}

fn default_label() -> String {
    "single sign-on".into()
}

/// What went wrong, in words for the sign-in page (never a secret or a token).
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The provider or the answer it gave: try again, or tell the admin.
    #[error("the sign-in provider: {0}")]
    Provider(String),
    /// The answer is not acceptable (wrong issuer, audience, nonce; expired).
    #[error("the sign-in answer was refused: {0}")]
    Refused(String),
}

/// The provider's endpoints, from its discovery document.
#[derive(Debug, Clone, Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    userinfo_endpoint: String,
}

/// A sign-in under way: where to send the browser, and what to keep (in the session) for the
/// callback.
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
pub struct Pending {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
}

/// Who signed in, as the provider says.
#[derive(Debug, Clone)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    pub username: Username,
    /// `None` when no role claim is configured.
    pub role: Option<Role>,
}

#[derive(Debug)]
pub struct OidcClient {
    settings: OidcSettings,
    http: reqwest::Client,
    metadata: tokio::sync::OnceCell<Metadata>,
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `application/x-www-form-urlencoded` for the client credentials in HTTP Basic (RFC 6749,
/// 2.3.1): unreserved characters stay, everything else is percent-encoded.
fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Whether `url` may be used without TLS: only on the loopback interface (tests, a provider
/// on the same machine).
fn allowed_url(url: &str) -> bool {
    url.starts_with("https://")
        || [
            "http://127.0.0.1:",
            "http://127.0.0.1/",
            "http://localhost:",
            "http://localhost/",
        ]
        .iter()
        .any(|p| url.starts_with(p))
}

impl OidcClient {
    /// Checks the settings (URLs, non-empty ids); discovery waits for the first sign-in.
    pub fn new(settings: OidcSettings) -> anyhow::Result<Self> {
        anyhow::ensure!(
            allowed_url(&settings.issuer),
            "[oidc] issuer must be an https:// URL (http only on 127.0.0.1 or localhost), got {:?}",
            settings.issuer
        );
        anyhow::ensure!(
            allowed_url(&settings.redirect_url)
                && settings.redirect_url.ends_with("/login/oidc/callback"),
            "[oidc] redirect_url must be this server's https://.../login/oidc/callback, got {:?}",
            settings.redirect_url
        );
        anyhow::ensure!(!settings.client_id.is_empty(), "[oidc] client_id is empty");
        anyhow::ensure!(
            settings.scopes.iter().any(|s| s == "openid"),
            "[oidc] scopes must include openid"
        );
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            settings,
            http,
            metadata: tokio::sync::OnceCell::new(),
        })
    }

    /// The sign-in button's words.
    pub fn label(&self) -> &str {
        &self.settings.label
    }

    async fn metadata(&self) -> Result<&Metadata, OidcError> {
        self.metadata
            .get_or_try_init(|| async {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.settings.issuer.trim_end_matches('/')
                );
                let metadata: Metadata = self
                    .http
                    .get(&url)
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map_err(|e| OidcError::Provider(format!("discovery at {url}: {e}")))?
                    .json()
                    .await
                    .map_err(|e| OidcError::Provider(format!("discovery document: {e}")))?;
                if metadata.issuer != self.settings.issuer {
                    return Err(OidcError::Provider(format!(
                        "the discovery document names issuer {:?}, not the configured {:?}",
                        metadata.issuer, self.settings.issuer
                    )));
                }
                for endpoint in [
                    &metadata.authorization_endpoint,
                    &metadata.token_endpoint,
                    &metadata.userinfo_endpoint,
                ] {
                    if !allowed_url(endpoint) {
                        return Err(OidcError::Provider(format!(
                            "endpoint {endpoint:?} is not https"
                        )));
                    }
                }
                Ok(metadata)
            })
            .await
    }

    /// Starts a sign-in: the provider's authorization URL and what the callback needs.
    pub async fn start(&self) -> Result<(String, Pending), OidcError> {
        let metadata = self.metadata().await?;
        let pending = Pending {
            state: random_token(),
            nonce: random_token(),
            verifier: random_token(),
        };
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(pending.verifier.as_bytes()));
        let scope = self.settings.scopes.join(" ");
        let url = reqwest::Url::parse_with_params(
            &metadata.authorization_endpoint,
            &[
                ("response_type", "code"),
                ("client_id", self.settings.client_id.as_str()),
                ("redirect_uri", self.settings.redirect_url.as_str()),
                ("scope", scope.as_str()),
                ("state", pending.state.as_str()),
                ("nonce", pending.nonce.as_str()),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
            ],
        )
        .map_err(|e| OidcError::Provider(format!("authorization endpoint: {e}")))?;
        Ok((url.into(), pending))
    }

    /// Finishes a sign-in: trades `code` for tokens, checks the ID token, reads the claims.
    pub async fn finish(&self, code: &str, pending: &Pending) -> Result<Identity, OidcError> {
        let metadata = self.metadata().await?;
        let response = self
            .http
            .post(&metadata.token_endpoint)
            .basic_auth(
                form_encode(&self.settings.client_id),
                Some(form_encode(self.settings.client_secret.expose_secret())),
            )
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", self.settings.redirect_url.as_str()),
                ("code_verifier", pending.verifier.as_str()),
            ])
            .send()
            .await
            .map_err(|e| OidcError::Provider(format!("token endpoint: {e}")))?;
        let status = response.status();
        let tokens: Value = response
            .json()
            .await
            .map_err(|e| OidcError::Provider(format!("token answer: {e}")))?;
        if !status.is_success() {
            return Err(OidcError::Provider(format!(
                "token endpoint answered {status}: {}",
                tokens["error_description"]
                    .as_str()
                    .or(tokens["error"].as_str())
                    .unwrap_or("no reason given")
            )));
        }
        let id_token = tokens["id_token"]
            .as_str()
            .ok_or_else(|| OidcError::Provider("no id_token in the token answer".into()))?;
        let access_token = tokens["access_token"]
            .as_str()
            .ok_or_else(|| OidcError::Provider("no access_token in the token answer".into()))?;
        let claims = self.check_id_token(metadata, id_token, &pending.nonce)?;
        let subject = claims["sub"]
            .as_str()
            .ok_or_else(|| OidcError::Refused("the ID token has no sub".into()))?
            .to_string();
        let userinfo: Value = self
            .http
            .get(&metadata.userinfo_endpoint)
            .bearer_auth(access_token)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| OidcError::Provider(format!("userinfo endpoint: {e}")))?
            .json()
            .await
            .map_err(|e| OidcError::Provider(format!("userinfo answer: {e}")))?;
        if userinfo["sub"].as_str() != Some(subject.as_str()) {
            return Err(OidcError::Refused(
                "userinfo is about another subject than the ID token".into(),
            ));
        }
        let claim = |name: &str| userinfo.get(name).or_else(|| claims.get(name));
        let name = claim(&self.settings.username_claim)
            .and_then(Value::as_str)
            .ok_or_else(|| {
                OidcError::Refused(format!(
                    "the provider sent no {} claim to name the user",
                    self.settings.username_claim
                ))
            })?;
        let username = Username::parse(name).map_err(|e| {
            OidcError::Refused(format!("{name:?} cannot be a labeler user name: {e}"))
        })?;
        let role = self
            .settings
            .role_claim
            .as_deref()
            .map(|c| self.role_from(claim(c)));
        Ok(Identity {
            issuer: metadata.issuer.clone(),
            subject,
            username,
            role,
        })
    }

    /// The ID token's claims, after checking issuer, audience, expiry and nonce.
    fn check_id_token(
        &self,
        metadata: &Metadata,
        token: &str,
        nonce: &str,
    ) -> Result<Value, OidcError> {
        let refused = |why: &str| OidcError::Refused(why.to_string());
        let payload = token
            .split('.')
            .nth(1)
            .ok_or_else(|| refused("the ID token is not a JWT"))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|_| refused("the ID token's payload is not base64url"))?;
        let claims: Value = serde_json::from_slice(&bytes)
            .map_err(|_| refused("the ID token's payload is not JSON"))?;
        if claims["iss"].as_str() != Some(metadata.issuer.as_str()) {
            return Err(refused("the ID token comes from another issuer"));
        }
        let client = self.settings.client_id.as_str();
        let audience_ok = match &claims["aud"] {
            Value::String(a) => a == client,
            Value::Array(list) => {
                list.iter().any(|a| a.as_str() == Some(client))
                    && (list.len() == 1 || claims["azp"].as_str() == Some(client))
            }
            _ => false,
        };
        if !audience_ok {
            return Err(refused("the ID token is for another client"));
        }
        let now = chrono::Utc::now().timestamp();
        let expires = claims["exp"]
            .as_i64()
            .ok_or_else(|| refused("the ID token has no exp"))?;
        if expires + 60 < now {
            return Err(refused("the ID token has expired"));
        }
        let sent = claims["nonce"].as_str().unwrap_or_default();
        if !constant_time_eq(sent.as_bytes(), nonce.as_bytes()) {
            return Err(refused("the ID token's nonce is not this sign-in's"));
        }
        Ok(claims)
    }

    /// The role a role claim's value (a string or a list of them) maps to.
    fn role_from(&self, value: Option<&Value>) -> Role {
        let values: Vec<&str> = match value {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let any_of = |wanted: &[String]| values.iter().any(|v| wanted.iter().any(|w| w == v));
        if any_of(&self.settings.admin_values) {
            Role::Admin
        } else if any_of(&self.settings.reviewer_values) {
            Role::Reviewer
        } else {
            Role::Annotator
        }
    }
}

/// Compares two byte strings in time that depends on their lengths only.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_form_encoded_and_urls_need_tls_off_loopback() {
        assert_eq!(form_encode("a b:c/d~"), "a%20b%3Ac%2Fd~");
        assert!(allowed_url("https://id.example.com"));
        assert!(allowed_url("http://127.0.0.1:8080"));
        assert!(!allowed_url("http://id.example.com"));
        assert!(!allowed_url("http://127.0.0.1.evil.example"));
    }
}
