//! Redis connection settings as the `sessions_redis_*` directives give them,
//! and the parsers for their values. Nothing here connects.

use crate::config::parse::Reason;
use crate::engine::store::StoreKind;

/// Where a Redis server (or Sentinel, or cluster node) listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A host name, IPv4 or IPv6 literal (without brackets), and a port.
    Tcp {
        host: String,
        port: u16,
    },
    Unix(String),
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Self::Tcp { host, port } => write!(f, "{host}:{port}"),
            Self::Unix(p) => write!(f, "unix:{p}"),
        }
    }
}

/// What a request gets while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unavailable {
    /// 503, as Authelia fails closed.
    #[default]
    Refuse,
    /// A session kept in the local zone until Redis is back.
    Local,
}

/// How the servers are found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    Standalone(Address),
    Sentinel { master: String, nodes: Vec<Address> },
    Cluster(Vec<Address>),
}

/// Everything `sessions_redis_*` set at `http` level; `None` is "not set".
#[derive(Debug, Clone, Default)]
pub struct RedisSettings {
    pub server: Option<Address>,
    pub sentinel_master: Option<String>,
    pub sentinels: Option<Vec<Address>>,
    pub cluster: Option<Vec<Address>>,
    pub database: Option<u32>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<String>,
    pub tls: Option<bool>,
    pub tls_verify: Option<bool>,
    /// PEM bytes, read at configuration time.
    pub tls_trusted_certificate: Option<Vec<u8>>,
    pub tls_certificate: Option<Vec<u8>>,
    pub tls_certificate_key: Option<Vec<u8>>,
    pub tls_server_name: Option<String>,
    pub tls_protocols: Option<TlsProtocols>,
    pub connect_timeout: Option<u64>,
    pub timeout: Option<u64>,
    pub connections: Option<(u32, u32)>,
    pub prefix: Option<Vec<u8>>,
    /// `sessions_redis_pending`: writes kept until Redis acknowledges them.
    pub pending: Option<u32>,
    /// `sessions_redis_near_cache`: sessions each worker keeps (0: off).
    pub near_cache: Option<u32>,
}

pub const DEFAULT_PORT: u16 = 6379;
pub const DEFAULT_SENTINEL_PORT: u16 = 26379;
pub const DEFAULT_PREFIX: &[u8] = b"sessions:";
pub const DEFAULT_CONNECT_TIMEOUT: u64 = 1_000;
pub const DEFAULT_TIMEOUT: u64 = 1_000;
pub const DEFAULT_PENDING: u32 = 1_024;
pub const DEFAULT_NEAR_CACHE: u32 = 10_000;

impl RedisSettings {
    /// Whether the `http` block names a Redis at all (a server, Sentinels
    /// or a cluster).
    pub fn configured(&self) -> bool {
        self.server.is_some() || self.sentinels.is_some() || self.cluster.is_some()
    }

    /// The one topology the settings describe, or why they do not.
    pub fn topology(&self) -> Result<Topology, Reason> {
        match (&self.server, &self.sentinels, &self.cluster) {
            (Some(a), None, None) => Ok(Topology::Standalone(a.clone())),
            (None, Some(nodes), None) => match &self.sentinel_master {
                Some(master) => Ok(Topology::Sentinel {
                    master: master.clone(),
                    nodes: nodes.clone(),
                }),
                None => Err("\"sessions_redis_sentinel\" needs \"sessions_redis_sentinel_master\""),
            },
            (None, None, Some(nodes)) => {
                if self.database.unwrap_or(0) != 0 {
                    return Err("Redis Cluster has only database 0");
                }
                Ok(Topology::Cluster(nodes.clone()))
            }
            (None, None, None) => Err(
                "\"sessions_store redis\" needs \"sessions_redis_server\", \"sessions_redis_sentinel\" \
                 or \"sessions_redis_cluster\" at http level",
            ),
            _ => Err(
                "only one of \"sessions_redis_server\", \"sessions_redis_sentinel\" and \
                 \"sessions_redis_cluster\" may be set",
            ),
        }
    }

    pub fn prefix(&self) -> &[u8] {
        self.prefix.as_deref().unwrap_or(DEFAULT_PREFIX)
    }

    /// Connections per worker: (maximum, minimum kept open).
    pub fn connections(&self) -> (u32, u32) {
        self.connections.unwrap_or((4, 1))
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`, `unix:/path` or `/path`.
pub fn address(v: &[u8], default_port: u16) -> Result<Address, Reason> {
    const REASON: Reason = "it must be \"host\", \"host:port\", \"[ipv6]:port\" or \"unix:/path\"";
    let s = std::str::from_utf8(v).map_err(|_| REASON)?;
    if let Some(path) = s.strip_prefix("unix:").or(s.starts_with('/').then_some(s)) {
        if !path.starts_with('/') || path.len() < 2 {
            return Err("a unix socket path must be absolute");
        }
        return Ok(Address::Unix(path.to_owned()));
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or(REASON)?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("the part in brackets must be an IPv6 address");
        }
        match after {
            "" => (h, None),
            p => (h, Some(p.strip_prefix(':').ok_or(REASON)?)),
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let host_ok = !host.is_empty()
        && (host.contains(':')
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)));
    if !host_ok {
        return Err(REASON);
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or("the port must be 1 to 65535")?,
    };
    Ok(Address::Tcp {
        host: host.to_owned(),
        port,
    })
}

/// The TLS versions offered to Redis (rustls speaks only these two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TlsProtocols {
    pub v1_2: bool,
    pub v1_3: bool,
}

impl TlsProtocols {
    /// Adds one `sessions_redis_tls_protocols` value.
    pub fn add(&mut self, v: &[u8]) -> Result<(), Reason> {
        match v {
            b"TLSv1.2" => self.v1_2 = true,
            b"TLSv1.3" => self.v1_3 = true,
            b"SSLv2" | b"SSLv3" | b"TLSv1" | b"TLSv1.1" => {
                return Err("only TLSv1.2 and TLSv1.3 are supported with Redis")
            }
            _ => return Err("it must be \"TLSv1.2\" or \"TLSv1.3\""),
        }
        Ok(())
    }
}

/// A database index.
pub fn database(v: &[u8]) -> Result<u32, Reason> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .filter(|&n| n <= 1_000_000)
        .ok_or("it must be a database number such as 0 or 1")
}

/// `sessions_redis_pending N`: how many writes this nginx keeps for Redis.
pub fn pending(v: &[u8]) -> Result<u32, Reason> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .filter(|n| (16..=100_000).contains(n))
        .ok_or("it must be a number of writes from 16 to 100000")
}

/// `sessions_redis_near_cache N | off`: how many sessions each worker
/// keeps (`off`: 0, none).
pub fn near_cache(v: &[u8]) -> Result<u32, Reason> {
    if v == b"off" {
        return Ok(0);
    }
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .filter(|n| (1..=1_000_000).contains(n))
        .ok_or("it must be off or a number of sessions from 1 to 1000000")
}

/// A user name, password, master or server name: not empty, no spaces or controls.
pub fn word(v: &[u8]) -> Result<String, Reason> {
    if v.is_empty() || v.len() > 512 || v.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err("it must be 1 to 512 characters without spaces");
    }
    String::from_utf8(v.to_vec()).map_err(|_| "it must be UTF-8")
}

/// A password read from a file: the first line, without its line end.
pub fn password_file_contents(v: &[u8]) -> Result<String, Reason> {
    let line = v.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    word(line).map_err(|_| "the file's first line must hold the password, without spaces")
}

/// `sessions_redis_connections MAX [MIN]`.
pub fn connections(max: &[u8], min: Option<&[u8]>) -> Result<(u32, u32), Reason> {
    const REASON: Reason = "it must be a number from 1 to 64 (a minimum from 0 to the maximum)";
    let num = |v: &[u8]| std::str::from_utf8(v).ok().and_then(|s| s.parse::<u32>().ok());
    let max = num(max).filter(|n| (1..=64).contains(n)).ok_or(REASON)?;
    let min = match min {
        None => max.min(1),
        Some(m) => num(m).filter(|&n| n <= max).ok_or(REASON)?,
    };
    Ok((max, min))
}

/// A key prefix: printable, no spaces, at most 64 bytes.
pub fn prefix(v: &[u8]) -> Result<Vec<u8>, Reason> {
    if v.len() > 64 || v.iter().any(|&b| !(0x21..0x7f).contains(&b)) {
        return Err("it must be at most 64 printable characters without spaces");
    }
    Ok(v.to_vec())
}

/// `shm` | `redis` | `cookie`.
pub fn store(v: &[u8]) -> Result<StoreKind, Reason> {
    match v {
        b"shm" => Ok(StoreKind::Shm),
        b"redis" => Ok(StoreKind::Redis),
        b"cookie" => Ok(StoreKind::Cookie),
        _ => Err("it must be \"shm\", \"redis\" or \"cookie\""),
    }
}

/// `503` | `local`.
pub fn unavailable(v: &[u8]) -> Result<Unavailable, Reason> {
    match v {
        b"503" => Ok(Unavailable::Refuse),
        b"local" => Ok(Unavailable::Local),
        _ => Err("it must be \"503\" or \"local\""),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tls_protocols() {
        let mut p = TlsProtocols::default();
        assert_eq!(p.add(b"TLSv1.3"), Ok(()));
        assert_eq!(
            p,
            TlsProtocols {
                v1_2: false,
                v1_3: true
            }
        );
        assert_eq!(p.add(b"TLSv1.2"), Ok(()));
        assert!(p.v1_2 && p.v1_3);
        assert_eq!(
            p.add(b"TLSv1.1"),
            Err("only TLSv1.2 and TLSv1.3 are supported with Redis")
        );
        for bad in [&b""[..], b"tlsv1.2", b"TLSv1.4", b"1.3"] {
            assert!(TlsProtocols::default().add(bad).is_err(), "{bad:?}");
        }
    }

    use super::*;

    fn tcp(host: &str, port: u16) -> Address {
        Address::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn addresses() {
        assert_eq!(address(b"redis", 6379), Ok(tcp("redis", 6379)));
        assert_eq!(address(b"127.0.0.1:7000", 6379), Ok(tcp("127.0.0.1", 7000)));
        assert_eq!(address(b"[::1]:7000", 6379), Ok(tcp("::1", 7000)));
        assert_eq!(address(b"[::1]", 26379), Ok(tcp("::1", 26379)));
        assert_eq!(
            address(b"unix:/run/r.sock", 6379),
            Ok(Address::Unix("/run/r.sock".into()))
        );
        assert_eq!(
            address(b"/run/r.sock", 6379),
            Ok(Address::Unix("/run/r.sock".into()))
        );
        for bad in [
            &b""[..],
            b"h:0",
            b"h:70000",
            b"h:x",
            b"[zz]:1",
            b"[::1]x",
            b"unix:rel",
            b"a b",
            b"::1",
        ] {
            assert!(address(bad, 6379).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(tcp("::1", 1).to_string(), "[::1]:1");
    }

    #[test]
    fn values() {
        assert_eq!(database(b"3"), Ok(3));
        assert!(database(b"-1").is_err());
        assert_eq!(connections(b"8", None), Ok((8, 1)));
        assert_eq!(connections(b"8", Some(b"2")), Ok((8, 2)));
        assert!(connections(b"0", None).is_err());
        assert!(connections(b"2", Some(b"3")).is_err());
        assert!(word(b"a b").is_err());
        assert_eq!(password_file_contents(b"s3cret\r\nnext"), Ok("s3cret".into()));
        assert!(password_file_contents(b"\n").is_err());
        assert!(prefix(b"a b").is_err());
        assert_eq!(unavailable(b"local"), Ok(Unavailable::Local));
        assert!(store(b"disk").is_err());
    }

    #[test]
    fn one_topology() {
        let mut s = RedisSettings::default();
        assert!(s.topology().is_err());
        s.server = Some(tcp("h", 1));
        assert_eq!(s.topology(), Ok(Topology::Standalone(tcp("h", 1))));
        s.cluster = Some(vec![tcp("h", 2)]);
        assert!(s.topology().is_err());
        s.server = None;
        s.database = Some(1);
        assert!(s.topology().is_err());
        s.cluster = None;
        s.sentinels = Some(vec![tcp("h", 3)]);
        assert!(s.topology().is_err());
        s.sentinel_master = Some("m".into());
        assert!(matches!(s.topology(), Ok(Topology::Sentinel { .. })));
    }
}
