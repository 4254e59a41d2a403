//! The guest's outbound HTTP policy: only the configured control plane (scheme, host and port),
//! with every timeout clamped by the host. Implemented as the `WasiHttpHooks::send_request` hook.

use std::time::Duration;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// The one origin the guest may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub https: bool,
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// From a base URL such as `https://anypoint.mulesoft.com` or `http://127.0.0.1:8081`, by
    /// the engine's one rule for URLs that carry credentials
    /// ([`mulesoft_audit::settings::BaseUrl::for_credentials`]).
    pub fn from_base_url(url: &str) -> anyhow::Result<Self> {
        mulesoft_audit::settings::BaseUrl::for_credentials(url, "base URL").map_err(anyhow::Error::msg)?;
        let parsed = url::Url::parse(url).map_err(|e| anyhow::anyhow!("base URL `{url}` is not a URL ({e})"))?;
        let https = match parsed.scheme() {
            "https" => true,
            "http" => false,
            other => anyhow::bail!("base URL `{url}` has scheme `{other}`: use https://"),
        };
        let host = parsed.host_str().ok_or_else(|| anyhow::anyhow!("base URL `{url}` has no host"))?.to_string();
        if parsed.path() != "/" || parsed.query().is_some() || !parsed.username().is_empty() {
            anyhow::bail!("base URL `{url}` must be scheme://host[:port] with no path, query or user");
        }
        let port = parsed.port_or_known_default().unwrap_or(if https { 443 } else { 80 });
        Ok(Self { https, host, port })
    }

    fn allows(&self, uri: &http::Uri) -> bool {
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return false,
        };
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        https == self.https && uri.host().is_some_and(|h| h.eq_ignore_ascii_case(&self.host)) && port == self.port
    }
}

/// Host ceilings for the three wasi:http timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub between_bytes: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(60),
            between_bytes: Duration::from_secs(30),
        }
    }
}

/// Per-run limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Linear memory the guest may use.
    pub memory_bytes: usize,
    /// Wall-clock limit of one run (checked while the guest computes; host calls have their own
    /// timeouts).
    pub run_time: Duration,
    pub http: Timeouts,
}

impl Default for Limits {
    fn default() -> Self {
        Self { memory_bytes: 256 << 20, run_time: Duration::from_secs(55 * 60), http: Timeouts::default() }
    }
}

/// The hooks given to each store.
pub struct SandboxHooks {
    pub origin: Origin,
    pub timeouts: Timeouts,
}

fn clamp(asked: Option<Duration>, ceiling: Duration) -> Option<Duration> {
    Some(asked.map_or(ceiling, |a| a.min(ceiling)))
}

/// The options actually used: the guest's, never above the host's ceilings.
pub fn clamp_options(asked: Option<RequestOptions>, t: &Timeouts) -> RequestOptions {
    let asked = asked.unwrap_or_default();
    RequestOptions {
        connect_timeout: clamp(asked.connect_timeout, t.connect),
        first_byte_timeout: clamp(asked.first_byte_timeout, t.first_byte),
        between_bytes_timeout: clamp(asked.between_bytes_timeout, t.between_bytes),
    }
}

type ResponseFuture = Box<
    dyn Future<
            Output = Result<
                (http::Response<WasiBody>, Box<dyn Future<Output = Result<(), HttpError>> + Send>),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for SandboxHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> ResponseFuture {
        if !self.origin.allows(request.uri()) {
            tracing::warn!(uri = %request.uri().host().unwrap_or("?"), "guest request refused: not the configured control plane");
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        let options = clamp_options(options, &self.timeouts);
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = Result<(), HttpError>> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_configured_origin_is_allowed() {
        let o = Origin::from_base_url("https://anypoint.mulesoft.com").unwrap();
        assert!(o.allows(&"https://anypoint.mulesoft.com/accounts/x".parse().unwrap()));
        assert!(o.allows(&"https://ANYPOINT.mulesoft.com:443/x".parse().unwrap()));
        assert!(!o.allows(&"http://anypoint.mulesoft.com/x".parse().unwrap()));
        assert!(!o.allows(&"https://anypoint.mulesoft.com:8443/x".parse().unwrap()));
        assert!(!o.allows(&"https://evil.example/x".parse().unwrap()));
        assert!(!o.allows(&"https://anypoint.mulesoft.com.evil.example/x".parse().unwrap()));
    }

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(Origin::from_base_url("http://127.0.0.1:8081").is_ok());
        assert!(Origin::from_base_url("http://localhost:8081").is_ok());
        assert!(Origin::from_base_url("http://[::1]:8081").is_ok());
        let err = Origin::from_base_url("http://anypoint.mulesoft.com").unwrap_err().to_string();
        assert!(err.contains("non-loopback"), "{err}");
        assert!(Origin::from_base_url("anypoint.mulesoft.com").is_err());
        assert!(Origin::from_base_url("https://x.example/path").is_err());
    }

    #[test]
    fn timeouts_are_clamped() {
        let t = Timeouts::default();
        let asked = RequestOptions {
            connect_timeout: Some(Duration::from_secs(600)),
            first_byte_timeout: None,
            between_bytes_timeout: Some(Duration::from_secs(1)),
        };
        let got = clamp_options(Some(asked), &t);
        assert_eq!(got.connect_timeout, Some(t.connect));
        assert_eq!(got.first_byte_timeout, Some(t.first_byte));
        assert_eq!(got.between_bytes_timeout, Some(Duration::from_secs(1)));
    }
}
