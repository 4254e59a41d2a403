//! Google credentials for the GCS store: Application Default Credentials through
//! `google-cloud-auth`, built inside the Tokio runtime (its token cache spawns a refresh task
//! there), renewed once when GCS answers 401, and named for `check` without ever showing a token.
//!
//! ADC looks, in order, at the file `GOOGLE_APPLICATION_CREDENTIALS` names, at gcloud's
//! `~/.config/gcloud/application_default_credentials.json`, then at the metadata server
//! (`GCE_METADATA_HOST` redirects it). [`Source::discover`] follows the same order to say which
//! one is in use and whose it is.

use super::super::StoreError;
use google_cloud_auth::credentials::{Builder as CredentialsBuilder, CacheableResource, Credentials};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// How long a token may take to arrive. The library's metadata client has no timeout of its own,
/// so an unreachable metadata server would otherwise hang the pass.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one question to the metadata server may take at start-up.
const METADATA_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a metadata server that refuses, or has no account yet, is asked again at start-up.
const METADATA_STARTUP: Duration = Duration::from_secs(10);

const NO_CREDENTIALS_ADVICE: &str = "on Cloud Run, GKE or Compute Engine attach a service account; elsewhere set GOOGLE_APPLICATION_CREDENTIALS to a key file or run `gcloud auth application-default login`";

/// Where the credentials come from, and whose they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A JSON file: `GOOGLE_APPLICATION_CREDENTIALS`, or gcloud's application-default file.
    File { path: PathBuf, kind: FileKind },
    /// The metadata server (Cloud Run, GKE workload identity, Compute Engine).
    Metadata { host: String, email: String },
}

/// The `type` of a credentials file, with the principal where the file names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKind {
    ServiceAccountKey {
        email: String,
    },
    /// `gcloud auth application-default login`: a person's refresh token.
    User,
    /// Workload identity federation, possibly impersonating a service account.
    ExternalAccount {
        impersonates: Option<String>,
    },
    Impersonated {
        email: Option<String>,
    },
    Other(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // GKE workload identity without a linked service account: the principal is the
            // Kubernetes service account, which IAM names `principal://…/sa/NAME`.
            Self::Metadata { host, email } if email.ends_with(".svc.id.goog") => write!(
                f,
                "metadata server ({host}), GKE workload identity of pool {email} (the Kubernetes service account's principal)"
            ),
            Self::Metadata { host, email } => write!(f, "metadata server ({host}), service account {email}"),
            Self::File { path, kind } => {
                let path = path.display();
                match kind {
                    FileKind::ServiceAccountKey { email } => {
                        write!(f, "service account key {path}, service account {email}")
                    }
                    FileKind::User => {
                        write!(f, "user credentials from `gcloud auth application-default login` ({path})")
                    }
                    FileKind::ExternalAccount { impersonates: Some(email) } => {
                        write!(f, "workload identity federation ({path}), impersonating service account {email}")
                    }
                    FileKind::ExternalAccount { impersonates: None } => {
                        write!(f, "workload identity federation ({path}), federated principal")
                    }
                    FileKind::Impersonated { email: Some(email) } => {
                        write!(f, "impersonation ({path}), service account {email}")
                    }
                    FileKind::Impersonated { email: None } => write!(f, "impersonation ({path})"),
                    FileKind::Other(kind) => write!(f, "credentials of type `{kind}` ({path})"),
                }
            }
        }
    }
}

/// The service account an impersonation URL names: `…/serviceAccounts/EMAIL:generateAccessToken`.
fn impersonated_email(url: Option<&str>) -> Option<String> {
    let tail = url?.rsplit_once("/serviceAccounts/")?.1;
    Some(tail.split_once(':').map_or(tail, |(email, _)| email).to_string())
}

impl FileKind {
    /// From the file's JSON; `None` when it is not a JSON object with a `type`.
    fn of(json: &serde_json::Value) -> Option<Self> {
        let text = |field: &str| json.get(field).and_then(|v| v.as_str()).map(str::to_string);
        Some(match json.get("type")?.as_str()? {
            "service_account" => Self::ServiceAccountKey { email: text("client_email").unwrap_or_default() },
            "authorized_user" => Self::User,
            "external_account" => Self::ExternalAccount {
                impersonates: impersonated_email(text("service_account_impersonation_url").as_deref()),
            },
            "impersonated_service_account" => {
                Self::Impersonated { email: impersonated_email(text("service_account_impersonation_url").as_deref()) }
            }
            other => Self::Other(other.to_string()),
        })
    }
}

impl Source {
    /// Finds the source ADC will use, and checks that it can work: a file that exists and is a
    /// credentials file, or a metadata server that answers and has a service account.
    pub async fn discover() -> Result<Self, StoreError> {
        let path = match std::env::var_os(mulesoft_audit::settings::names::GOOGLE_APPLICATION_CREDENTIALS) {
            // google-cloud-auth would try to read a file named "", so say so first.
            Some(path) if path.is_empty() => {
                return Err(StoreError::Denied(
                    "GOOGLE_APPLICATION_CREDENTIALS is set but empty: unset it, or name a credentials file".into(),
                ));
            }
            Some(path) => Some(PathBuf::from(path)),
            None => std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".config/gcloud/application_default_credentials.json"))
                .filter(|p| p.exists()),
        };
        match path {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    StoreError::Denied(format!("Google credentials file {} cannot be read ({e})", path.display()))
                })?;
                let kind = serde_json::from_str(&text).ok().as_ref().and_then(FileKind::of).ok_or_else(|| {
                    StoreError::Denied(format!(
                        "{} is not a Google credentials file (JSON with a `type`); download a service account key or run `gcloud auth application-default login`",
                        path.display()
                    ))
                })?;
                Ok(Self::File { path, kind })
            }
            None => Self::metadata().await,
        }
    }

    /// Asks the metadata server which service account it serves. A metadata server may refuse
    /// for its first seconds (GKE starts it beside a new pod), so refusals are asked again for a
    /// while; a host name that does not resolve means there is none.
    async fn metadata() -> Result<Self, StoreError> {
        let host = mulesoft_audit::gcs::metadata_host(
            std::env::var(mulesoft_audit::settings::names::METADATA_HOST).ok().as_deref(),
        )
        .map_err(StoreError::Denied)?;
        let none = |why: String| {
            StoreError::Denied(format!(
                "no Google credentials found: GOOGLE_APPLICATION_CREDENTIALS is not set, there is no gcloud application-default file, and {why}; {NO_CREDENTIALS_ADVICE}"
            ))
        };
        let authority = if host.contains(':') { host.clone() } else { format!("{host}:80") };
        if tokio::net::lookup_host(&authority).await.map_or(true, |mut addresses| addresses.next().is_none()) {
            return Err(none(format!("there is no metadata server (`{host}` does not resolve)")));
        }
        let url = format!("http://{host}/computeMetadata/v1/instance/service-accounts/default/email");
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(METADATA_PROBE_TIMEOUT)
            .timeout(METADATA_PROBE_TIMEOUT)
            .build()
            .map_err(|e| StoreError::Other(format!("HTTP client: {e}")))?;
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(250);
        loop {
            let outcome = match client.get(&url).header("Metadata-Flavor", "Google").send().await {
                Err(e) if e.is_timeout() => {
                    Err(StoreError::Unavailable(format!("the metadata server at {host} did not answer in time")))
                }
                Err(_) => Err(none(format!("no metadata server answers at {host}"))),
                Ok(reply) => {
                    let status = reply.status().as_u16();
                    let email = reply.text().await.unwrap_or_default();
                    match status {
                        200 if !email.trim().is_empty() => {
                            return Ok(Self::Metadata { host, email: email.trim().to_string() });
                        }
                        404 | 200 => {
                            Err(none(format!("the metadata server at {host} has no service account attached")))
                        }
                        s if s >= 500 => {
                            Err(StoreError::Unavailable(format!("the metadata server at {host} answered HTTP {s}")))
                        }
                        s => return Err(none(format!("the metadata server at {host} refused (HTTP {s})"))),
                    }
                }
            };
            if started.elapsed() + pause > METADATA_STARTUP {
                return outcome;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}

/// Google credentials that can be renewed: `google-cloud-auth` caches a token until shortly
/// before the expiry it was told, and offers no way to drop it, so a token the server no longer
/// takes (revoked, or the clocks disagree) is replaced by building the credentials again. A key
/// file signs a fresh token and a refresh token is exchanged again; a metadata server may hand
/// back the token it has cached, and then the second 401 stands and says so.
pub struct Auth {
    credentials: Mutex<Credentials>,
    runtime: tokio::runtime::Handle,
}

impl Auth {
    /// Builds ADC inside `runtime` (the token cache spawns its refresh task there).
    pub fn new(runtime: tokio::runtime::Handle) -> Result<Self, StoreError> {
        let credentials = build(&runtime)?;
        Ok(Self { credentials: Mutex::new(credentials), runtime })
    }

    /// The `Authorization` (and quota project) headers for one request.
    pub async fn headers(&self) -> Result<http::HeaderMap, StoreError> {
        let credentials = self.credentials.lock().map_err(|_| poisoned())?.clone();
        let headers = tokio::time::timeout(TOKEN_TIMEOUT, credentials.headers(http::Extensions::new()))
            .await
            .map_err(|_| StoreError::Unavailable(format!("no Google access token within {TOKEN_TIMEOUT:?}")))?;
        match headers {
            Ok(CacheableResource::New { data, .. }) => Ok(data),
            Ok(CacheableResource::NotModified) => Err(StoreError::Other("credentials returned no headers".into())),
            Err(e) if e.is_transient() => Err(StoreError::Unavailable(format!("getting a Google access token: {e}"))),
            Err(e) => Err(StoreError::Denied(format!(
                "getting a Google access token failed: {e}; check the credentials ({NO_CREDENTIALS_ADVICE})"
            ))),
        }
    }

    /// Drops the cached token: the next [`Auth::headers`] fetches a new one.
    pub fn renew(&self) -> Result<(), StoreError> {
        let fresh = build(&self.runtime)?;
        *self.credentials.lock().map_err(|_| poisoned())? = fresh;
        Ok(())
    }
}

/// Application Default Credentials as the one Cloud Storage client's [`TokenProvider`](mulesoft_audit::gcs::TokenProvider): their
/// headers for each request, renewed after a 401, named by their [`Source`].
#[derive(Clone)]
pub struct Adc {
    /// One token cache for every client of the store.
    auth: std::sync::Arc<Auth>,
    source: Source,
}

impl Adc {
    pub fn new(source: Source, runtime: tokio::runtime::Handle) -> Result<Self, StoreError> {
        Ok(Self { auth: std::sync::Arc::new(Auth::new(runtime)?), source })
    }
}

impl mulesoft_audit::gcs::TokenProvider for Adc {
    fn headers(&mut self) -> Result<Vec<(String, String)>, StoreError> {
        let headers = self.auth.runtime.block_on(self.auth.headers())?;
        Ok(headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect())
    }

    fn renew(&mut self) -> Result<(), StoreError> {
        tracing::warn!("Cloud Storage refused the access token (HTTP 401); fetching a new one");
        self.auth.renew()
    }

    fn who(&self) -> String {
        self.source.to_string()
    }
}

fn poisoned() -> StoreError {
    StoreError::Other("credentials lock poisoned".into())
}

fn build(runtime: &tokio::runtime::Handle) -> Result<Credentials, StoreError> {
    let _inside = runtime.enter();
    CredentialsBuilder::default()
        .build()
        .map_err(|e| StoreError::Denied(format!("Google credentials cannot be loaded ({e}); {NO_CREDENTIALS_ADVICE}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_named_by_type_and_principal() {
        let kind = |json: &str| FileKind::of(&serde_json::from_str(json).unwrap());
        assert_eq!(
            kind(r#"{"type":"service_account","client_email":"c@p.iam.gserviceaccount.com"}"#),
            Some(FileKind::ServiceAccountKey { email: "c@p.iam.gserviceaccount.com".into() })
        );
        assert_eq!(kind(r#"{"type":"authorized_user","refresh_token":"r"}"#), Some(FileKind::User));
        assert_eq!(
            kind(
                r#"{"type":"external_account","service_account_impersonation_url":"https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/c@p.iam.gserviceaccount.com:generateAccessToken"}"#
            ),
            Some(FileKind::ExternalAccount { impersonates: Some("c@p.iam.gserviceaccount.com".into()) })
        );
        assert_eq!(kind(r#"{"type":"external_account"}"#), Some(FileKind::ExternalAccount { impersonates: None }));
        assert_eq!(kind(r#"{"type":"gdch"}"#), Some(FileKind::Other("gdch".into())));
        assert_eq!(kind(r#"{"client_email":"x"}"#), None);
        assert_eq!(kind(r#"[1]"#), None);
    }

    #[test]
    fn a_source_names_no_secret() {
        let source = Source::File {
            path: "/k.json".into(),
            kind: FileKind::ServiceAccountKey { email: "c@p.iam.gserviceaccount.com".into() },
        };
        assert_eq!(source.to_string(), "service account key /k.json, service account c@p.iam.gserviceaccount.com");
        let md = Source::Metadata { host: "169.254.169.254".into(), email: "c@p".into() };
        assert_eq!(md.to_string(), "metadata server (169.254.169.254), service account c@p");
    }
}
