//! Trusting a TLS-terminating proxy: which peers may say, in
//! `X-Forwarded-Proto`, that the client came over HTTPS.

use std::net::IpAddr;

use crate::config::parse::Reason;

/// An address or a network, as `set_real_ip_from` takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// 4 bytes used for IPv4, 16 for IPv6.
    addr: [u8; 16],
    v6: bool,
    bits: u8,
}

impl Cidr {
    /// `ADDRESS` or `ADDRESS/BITS`, IPv4 or IPv6.
    pub fn parse(v: &[u8]) -> Result<Self, Reason> {
        const REASON: Reason = "it must be an address or a network such as \"10.0.0.0/8\" or \"fd00::/8\"";
        let s = std::str::from_utf8(v).map_err(|_| REASON)?;
        let (ip, bits) = match s.split_once('/') {
            Some((ip, b)) => (ip, Some(b.parse::<u8>().map_err(|_| REASON)?)),
            None => (s, None),
        };
        let mut addr = [0u8; 16];
        let (v6, max) = match ip.parse::<IpAddr>().map_err(|_| REASON)? {
            IpAddr::V4(a) => {
                addr[..4].copy_from_slice(&a.octets());
                (false, 32)
            }
            IpAddr::V6(a) => {
                addr.copy_from_slice(&a.octets());
                (true, 128)
            }
        };
        let bits = bits.unwrap_or(max);
        if bits > max {
            return Err(REASON);
        }
        let c = Self { addr, v6, bits };
        if c.masked(&addr[..if v6 { 16 } else { 4 }]) != addr {
            return Err("the address has bits set past the network's length");
        }
        Ok(c)
    }

    fn masked(&self, ip: &[u8]) -> [u8; 16] {
        let mut out = [0u8; 16];
        for (i, &b) in ip.iter().enumerate() {
            let left = usize::from(self.bits).saturating_sub(8 * i).min(8);
            out[i] = if left == 0 { 0 } else { b & (0xffu8 << (8 - left)) };
        }
        out
    }

    /// Whether the address `ip` (4 or 16 bytes) is in this network.
    pub fn contains(&self, ip: &[u8]) -> bool {
        let fits = if self.v6 { ip.len() == 16 } else { ip.len() == 4 };
        fits && self.masked(ip) == self.addr
    }
}

/// An address as text (`$realip_remote_addr`), as 4 or 16 bytes.
pub fn address_bytes(text: &[u8]) -> Option<([u8; 16], usize)> {
    let mut out = [0u8; 16];
    match std::str::from_utf8(text).ok()?.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => {
            out[..4].copy_from_slice(&a.octets());
            Some((out, 4))
        }
        IpAddr::V6(a) => {
            out.copy_from_slice(&a.octets());
            Some((out, 16))
        }
    }
}

/// Whether an `X-Forwarded-Proto` value says HTTPS. Behind a chain of
/// proxies the first value is the client's.
pub fn says_https(v: &[u8]) -> bool {
    let first = v.split(|&b| b == b',').next().unwrap_or_default();
    first.trim_ascii().eq_ignore_ascii_case(b"https")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let n = Cidr::parse(b"10.0.0.0/8").unwrap();
        assert!(n.contains(&[10, 1, 2, 3]) && !n.contains(&[11, 0, 0, 1]));
        let one = Cidr::parse(b"127.0.0.1").unwrap();
        assert!(one.contains(&[127, 0, 0, 1]) && !one.contains(&[127, 0, 0, 2]));
        let v6 = Cidr::parse(b"fd00::/8").unwrap();
        let mut a = [0u8; 16];
        a[0] = 0xfd;
        assert!(v6.contains(&a) && !v6.contains(&[10, 0, 0, 1]));
        assert!(Cidr::parse(b"0.0.0.0/0").unwrap().contains(&[1, 2, 3, 4]));
        assert!(Cidr::parse(b"10.0.0.0/12").unwrap().contains(&[10, 15, 255, 255]));
        for bad in [&b"10.0.0.1/8"[..], b"10.0.0.0/33", b"host", b"10.0.0.0/", b""] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn forwarded_proto() {
        assert!(says_https(b"https") && says_https(b"HTTPS, http") && says_https(b" https "));
        assert!(!says_https(b"http") && !says_https(b"http, https") && !says_https(b""));
        assert_eq!(address_bytes(b"127.0.0.1").map(|(_, n)| n), Some(4));
        assert_eq!(address_bytes(b"::1").map(|(_, n)| n), Some(16));
        assert!(address_bytes(b"unix:").is_none());
    }
}
