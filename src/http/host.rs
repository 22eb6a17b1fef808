//! DNS-rebinding guard: the console answers only requests addressed to it by a name it knows.
//! A web page on `evil.example` whose DNS answer switches to 127.0.0.1 makes the visitor's
//! browser send `Host: evil.example` to this listener with the page's own origin, so the
//! browser's same-origin rule does not stop it; checking `Host` does.
//!
//! Allowed: loopback names and addresses (`localhost`, `127.0.0.1`, `[::1]`, any port), the
//! listen address's IP (any IP when listening on 0.0.0.0 or ::, since rebinding always uses a
//! DNS name), and names given with `--http-allowed-host` (`name` for any port, `name:port`).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;

/// Which `Host` values the listener answers.
#[derive(Debug, Clone)]
pub(crate) struct HostPolicy {
    listen: IpAddr,
    /// (lowercase name, port if the entry named one).
    allowed: Vec<(String, Option<u16>)>,
}

impl HostPolicy {
    pub(crate) fn new(listen: SocketAddr, allowed: &[String]) -> Self {
        let allowed = allowed
            .iter()
            .filter_map(|h| split_host(h).map(|(name, port)| (normalize(name), port)))
            .collect();
        HostPolicy { listen: listen.ip(), allowed }
    }

    /// Whether a request with this `Host` (or absolute-URI authority) is answered.
    pub(crate) fn allows(&self, host: &str) -> bool {
        let Some((name, port)) = split_host(host) else { return false };
        let name = normalize(name);
        if name == "localhost" || name.ends_with(".localhost") {
            return true;
        }
        if let Ok(ip) = name.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            return ip.is_loopback() || ip == self.listen || self.listen.is_unspecified();
        }
        self.allowed.iter().any(|(n, p)| *n == name && (p.is_none() || *p == port))
    }
}

/// Splits `host[:port]` (`[v6]:port` for IPv6); `None` when the port is not a number.
fn split_host(s: &str) -> Option<(&str, Option<u16>)> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let (host, port) = if s.starts_with('[') {
        let end = s.find(']')?;
        let rest = &s[end + 1..];
        let port = if rest.is_empty() { None } else { Some(rest.strip_prefix(':')?) };
        (&s[..=end], port)
    } else {
        match s.rsplit_once(':') {
            // A bare IPv6 address without brackets has several colons: no port.
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            _ => (s, None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    Some((host, port))
}

/// Names compare case-insensitively and without a trailing root dot (`localhost.`).
fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Middleware: answers 403 with the reason unless the request's host is allowed.
pub(crate) async fn check(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let host = match req.uri().authority() {
        Some(a) => Some(a.as_str().to_owned()),
        None => req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).map(str::to_owned),
    };
    match host {
        Some(h) if s.hosts.allows(&h) => next.run(req).await,
        other => {
            let shown = other.as_deref().unwrap_or("");
            tracing::warn!(host = shown, "HTTP request refused: Host not allowed");
            let name = split_host(shown).map_or("NAME", |(n, _)| n);
            let message = format!(
                "this broker's console does not answer to Host {shown:?} (a guard against DNS \
                 rebinding): use its listen address or localhost, or start the broker with \
                 --http-allowed-host {name}"
            );
            (StatusCode::FORBIDDEN, axum::Json(serde_json::json!({ "error": message })))
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(listen: &str, allowed: &[&str]) -> HostPolicy {
        let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        HostPolicy::new(listen.parse().unwrap(), &allowed)
    }

    #[test]
    fn loopback_names_and_the_listen_address_are_allowed() {
        let p = policy("127.0.0.1:7071", &[]);
        for ok in [
            "localhost",
            "localhost:7071",
            "LOCALHOST.:1",
            "127.0.0.1",
            "127.0.0.1:7071",
            "127.0.0.2:80",
            "[::1]",
            "[::1]:7071",
            "app.localhost:7071",
        ] {
            assert!(p.allows(ok), "{ok}");
        }
        for bad in ["evil.example", "evil.example:7071", "10.0.0.1:7071", "", "localhost:x", "[::1"]
        {
            assert!(!p.allows(bad), "{bad}");
        }
        let p = policy("192.168.1.5:7071", &[]);
        assert!(p.allows("192.168.1.5:7071"));
        assert!(!p.allows("192.168.1.6:7071"));
    }

    #[test]
    fn an_unspecified_listen_address_allows_ip_literals_but_not_names() {
        let p = policy("0.0.0.0:7071", &[]);
        assert!(p.allows("10.1.2.3:7071"));
        assert!(p.allows("[fe80::1]:7071"));
        assert!(!p.allows("broker.internal:7071"));
    }

    #[test]
    fn configured_names_match_with_any_or_their_port() {
        let p = policy("0.0.0.0:7071", &["Broker.Internal", "console.example:8443"]);
        assert!(p.allows("broker.internal"));
        assert!(p.allows("broker.internal:7071"));
        assert!(p.allows("console.example:8443"));
        assert!(!p.allows("console.example:7071"));
        assert!(!p.allows("console.example"));
        assert!(!p.allows("evil.broker.internal"));
    }
}
