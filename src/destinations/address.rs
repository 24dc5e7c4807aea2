//! Where a destination may point: `https://` URLs of public hosts. Private, loopback,
//! link-local, shared (CGNAT), multicast and unspecified addresses are refused unless allowed,
//! both for IP literals when a URL is saved and for every address a host name resolves to when
//! a request connects (so a name cannot be pointed at an internal address later). Redirects are
//! not followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::model::DestinationError;

/// Longest URL accepted.
const MAX_URL_BYTES: usize = 2_048;

/// Whether `ip` is only reachable inside a network (or is no host at all).
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => internal_v4(v4),
            None => internal_v6(v6),
        },
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        // 0.0.0.0/8, shared address space (100.64.0.0/10), benchmarking (198.18.0.0/15),
        // reserved (240.0.0.0/4).
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (18..20).contains(&b))
        || a >= 240
}

fn internal_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // Unique local (fc00::/7), link-local (fe80::/10), site-local (fec0::/10, deprecated).
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first & 0xffc0) == 0xfec0
        // Documentation (2001:db8::/32).
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        // IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) forms of an internal address.
        || ip.to_ipv4().is_some_and(|v4| v4 != Ipv4Addr::new(0, 0, 0, 1) && internal_v4(v4))
        || (ip.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && {
            let [.., a, b, c, d] = ip.octets();
            internal_v4(Ipv4Addr::new(a, b, c, d))
        })
}

/// What addresses deliveries may reach.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub allow_private: bool,
    pub allow_http: bool,
}

impl Policy {
    /// Checks a destination URL as given; returns it normalized.
    pub fn check_url(&self, text: &str) -> Result<Url, DestinationError> {
        let invalid = |message: String| DestinationError::invalid("url", message);
        if text.len() > MAX_URL_BYTES {
            return Err(invalid(format!(
                "the url is {} bytes long (at most {MAX_URL_BYTES})",
                text.len()
            )));
        }
        let url = Url::parse(text.trim()).map_err(|e| invalid(format!("not a URL: {e}")))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => {
                return Err(invalid(
                    "plain http:// is refused (events and their signatures would travel unencrypted); use https://".into(),
                ));
            }
            other => return Err(invalid(format!("the scheme {other:?} is not https"))),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "credentials in the URL are refused (they would be stored and listed in plaintext); receivers verify the signature instead".into(),
            ));
        }
        if url.fragment().is_some() {
            return Err(invalid("a URL with a #fragment is refused".into()));
        }
        let host = url
            .host_str()
            .ok_or_else(|| invalid("the URL has no host".into()))?;
        // The parser has normalized every IPv4 spelling (`0x7f.1`) to dotted decimal.
        let literal = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok();
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        if literal.is_none()
            && !self.allow_private
            && (name == "localhost" || name.ends_with(".localhost"))
        {
            return Err(invalid(format!(
                "{name} is a local host name; destinations must be public hosts"
            )));
        }
        if let Some(ip) = literal
            && !self.allow_private
            && is_internal(ip)
        {
            return Err(invalid(format!(
                "{ip} is a private, loopback or link-local address; destinations must be public hosts"
            )));
        }
        Ok(url)
    }

    /// The resolver deliveries connect through: it drops the internal addresses a name
    /// resolves to, and fails when none is left.
    pub fn resolver(&self) -> Arc<impl Resolve + use<>> {
        Arc::new(PublicResolver {
            allow_private: self.allow_private,
        })
    }
}

struct PublicResolver {
    allow_private: bool,
}

impl Resolve for PublicResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let usable: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|addr| allow_private || !is_internal(addr.ip()))
                .collect();
            if usable.is_empty() {
                let message = match found.is_empty() {
                    true => format!("{host} resolves to no address"),
                    false => format!(
                        "{host} resolves only to private, loopback or link-local addresses; refused"
                    ),
                };
                return Err(message.into());
            }
            let addrs: Addrs = Box::new(usable.into_iter());
            Ok(addrs)
        })
    }
}
