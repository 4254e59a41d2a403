//! The one URL rule for every endpoint that gets credentials (the Anypoint control plane, Cloud
//! Storage): `https://`, or plain `http://` only to this machine.

/// Whether `host` (a name or an address, IPv6 in brackets or not) is this machine: the one place
/// plain `http://` may carry credentials.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A parsed base URL: `scheme://authority` with no path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    pub https: bool,
    /// `host[:port]`.
    pub authority: String,
}

impl BaseUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim().trim_end_matches('/');
        let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!("base URL `{url}` must start with https:// (or http:// for a local simulator)"));
        };
        if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
            return Err(format!("base URL `{url}` must be scheme://host[:port] with no path, query or user"));
        }
        Ok(Self { https, authority: rest.to_string() })
    }

    /// A base URL requests with credentials go to (the Anypoint control plane, Cloud Storage):
    /// `https://`, or plain `http://` only to this machine (a stand-in). The one rule for every
    /// endpoint, whatever the host: `setting` names it in the refusal.
    pub fn for_credentials(url: &str, setting: &str) -> Result<Self, String> {
        let base = Self::parse(url).map_err(|e| format!("{setting}: {e}"))?;
        if !base.https && !base.is_loopback() {
            return Err(format!(
                "{setting} `{}` uses plain http:// to a non-loopback host: credentials would travel unencrypted; use https://",
                url.trim()
            ));
        }
        Ok(base)
    }

    /// Whether the host is this machine.
    pub fn is_loopback(&self) -> bool {
        let host = match self.authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => self.authority.as_str(),
        };
        is_loopback(host)
    }

    pub fn url(&self, path_and_query: &str) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{path_and_query}", self.authority)
    }
}
