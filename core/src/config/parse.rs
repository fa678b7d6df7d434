//! Typed parsers for directive values. Each returns the reason a value is
//! refused; the module wraps it in nginx's wording:
//! `invalid value "X" in "sessions_..." directive, <reason>`.

use crate::codec::cookie::{SameSite, Secure};
use crate::engine::binding::{IpBinding, Mode, UaBinding};
use crate::engine::{AtLimit, PerUser};

/// Why a value was refused.
pub type Reason = &'static str;

/// `on` | `off`, case-insensitive as nginx's own flags.
pub fn flag(v: &[u8]) -> Result<bool, Reason> {
    if v.eq_ignore_ascii_case(b"on") {
        Ok(true)
    } else if v.eq_ignore_ascii_case(b"off") {
        Ok(false)
    } else {
        Err("it must be \"on\" or \"off\"")
    }
}

/// `on` | `log` | `off`: how a binding check acts on a difference.
fn binding_mode(v: &[u8]) -> Result<Mode, Reason> {
    match v.to_ascii_lowercase().as_slice() {
        b"on" => Ok(Mode::On),
        b"log" => Ok(Mode::Log),
        b"off" => Ok(Mode::Off),
        _ => Err("it must be \"on\", \"log\" or \"off\""),
    }
}

/// `sessions_check_ip on | log | off [ipv4=LEN] [ipv6=LEN]`; an error names
/// the word refused (1 for the first value).
pub fn ip_binding(words: &[&[u8]]) -> Result<IpBinding, (usize, Reason)> {
    let (first, rest) = words.split_first().ok_or((0, "a mode is needed"))?;
    let mut b = IpBinding {
        mode: binding_mode(first).map_err(|r| (1, r))?,
        ..IpBinding::default()
    };
    let (mut v4, mut v6) = (false, false);
    for (i, w) in rest.iter().enumerate() {
        let at = i + 2;
        let (seen, slot, most) = if let Some(n) = w.strip_prefix(b"ipv4=") {
            (&mut v4, &mut b.v4_prefix, (n, 32))
        } else if let Some(n) = w.strip_prefix(b"ipv6=") {
            (&mut v6, &mut b.v6_prefix, (n, 128))
        } else {
            return Err((at, "it must be \"ipv4=LENGTH\" or \"ipv6=LENGTH\""));
        };
        if std::mem::replace(seen, true) {
            return Err((at, "it is given twice"));
        }
        let (n, most) = most;
        *slot = std::str::from_utf8(n)
            .ok()
            .filter(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|n| n.parse::<u8>().ok())
            .filter(|&len| (1..=most).contains(&len))
            .ok_or((at, "a prefix length is from 1 to 32 for ipv4, 1 to 128 for ipv6"))?;
    }
    Ok(b)
}

/// `sessions_max_per_user N [end_oldest | refuse]`: N from 1 to 1000.
pub fn max_per_user(words: &[&[u8]]) -> Result<PerUser, (usize, Reason)> {
    let (first, rest) = words.split_first().ok_or((0, "a number is needed"))?;
    let max = std::str::from_utf8(first)
        .ok()
        .filter(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()))
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|n| (1..=1000).contains(n))
        .ok_or((1, "it must be a number from 1 to 1000"))?;
    let at_limit = match rest {
        [] => AtLimit::EndOldest,
        [w] if w.eq_ignore_ascii_case(b"end_oldest") => AtLimit::EndOldest,
        [w] if w.eq_ignore_ascii_case(b"refuse") => AtLimit::Refuse,
        [_] => return Err((2, "it must be \"end_oldest\" or \"refuse\"")),
        _ => return Err((3, "one option at most")),
    };
    Ok(PerUser { max, at_limit })
}

/// `sessions_check_user_agent on | log | off [ignore_versions]`.
pub fn ua_binding(words: &[&[u8]]) -> Result<UaBinding, (usize, Reason)> {
    let (first, rest) = words.split_first().ok_or((0, "a mode is needed"))?;
    let mode = binding_mode(first).map_err(|r| (1, r))?;
    match rest {
        [] => Ok(UaBinding {
            mode,
            ignore_versions: false,
        }),
        [w] if w.eq_ignore_ascii_case(b"ignore_versions") => Ok(UaBinding {
            mode,
            ignore_versions: true,
        }),
        [_] => Err((2, "it must be \"ignore_versions\"")),
        _ => Err((3, "one option at most")),
    }
}

/// `sessions_assertion_issuer` and `_audience`: printable ASCII without
/// quotes or backslashes, at most 256 bytes (it is copied into every token).
pub fn claim_value(v: &[u8]) -> Result<&str, Reason> {
    if v.is_empty()
        || v.len() > 256
        || !v
            .iter()
            .all(|&c| (0x21..0x7f).contains(&c) && c != b'"' && c != b'\\')
    {
        return Err("it must be 1 to 256 printable characters, no quotes or backslashes");
    }
    Ok(std::str::from_utf8(v).expect("ASCII"))
}

/// `sessions_assertion_ttl`: 1s to 1h, as nginx's times.
pub fn assertion_ttl(v: &[u8]) -> Result<u64, Reason> {
    nginx_time(v, true)
        .filter(|s| (1..=3600).contains(s))
        .map(|s| s * 1000)
        .ok_or("it must be a time from 1s to 1h")
}

/// nginx's own time syntax (`ngx_parse_time`), to the letter: a number
/// with a unit, parts in descending order (`1h30m`, `1h 30m`; not `30m1h`),
/// a bare number in the smallest unit. `in_seconds`: units `y M w d h m s`
/// and a result in seconds, as nginx's second-valued directives; else
/// units `w d h m s ms` and a result in milliseconds, as its timeouts.
pub fn nginx_time(v: &[u8], in_seconds: bool) -> Option<u64> {
    #[derive(PartialEq, PartialOrd, Clone, Copy)]
    enum Step {
        Start,
        Year,
        Month,
        Week,
        Day,
        Hour,
        Min,
        Sec,
        Msec,
        Last,
    }
    const MAX: i64 = i64::MAX;
    let mut step = if in_seconds { Step::Start } else { Step::Month };
    let (mut value, mut total, mut valid) = (0i64, 0i64, false);
    let mut p = 0;
    while p < v.len() {
        let c = v[p];
        p += 1;
        if c.is_ascii_digit() {
            value = value.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
            valid = true;
            continue;
        }
        let (next, seconds): (Step, i64) = match c {
            b'y' if step == Step::Start => (Step::Year, 60 * 60 * 24 * 365),
            b'M' if step < Step::Month => (Step::Month, 60 * 60 * 24 * 30),
            b'w' if step < Step::Week => (Step::Week, 60 * 60 * 24 * 7),
            b'd' if step < Step::Day => (Step::Day, 60 * 60 * 24),
            b'h' if step < Step::Hour => (Step::Hour, 60 * 60),
            b'm' if v.get(p) == Some(&b's') => {
                if in_seconds || step >= Step::Msec {
                    return None;
                }
                p += 1;
                (Step::Msec, 1)
            }
            b'm' if step < Step::Min => (Step::Min, 60),
            b's' if step < Step::Sec => (Step::Sec, 1),
            b' ' if step < Step::Sec => (Step::Last, 1),
            _ => return None,
        };
        step = next;
        let scale = if step != Step::Msec && !in_seconds {
            seconds * 1000
        } else {
            seconds
        };
        if value > MAX / scale {
            return None;
        }
        total = total.checked_add(value * scale)?;
        value = 0;
        while v.get(p) == Some(&b' ') {
            p += 1;
        }
    }
    if !valid {
        return None;
    }
    if !in_seconds {
        value = value.checked_mul(1000)?;
    }
    u64::try_from(total.checked_add(value)?).ok()
}

/// A session time (`sessions_idling_timeout 30m`, ...), as nginx reads
/// second-valued times; in milliseconds.
pub fn time_ms(v: &[u8]) -> Result<u64, Reason> {
    let secs = nginx_time(v, true).ok_or("it must be a time such as \"1800\", \"30m\" or \"1h 30m\"")?;
    // Keep every later `now + timeout` far from overflow.
    if secs > 100 * 365 * 86_400 {
        return Err("the time is too large");
    }
    Ok(secs * 1000)
}

/// As `time_ms`, but `0` is refused (a timeout that must exist).
pub fn positive_time_ms(v: &[u8]) -> Result<u64, Reason> {
    match time_ms(v)? {
        0 => Err("it must not be 0"),
        t => Ok(t),
    }
}

/// A Redis timeout, as nginx reads its own timeouts (`proxy_read_timeout`):
/// milliseconds allowed, months and years not; never 0.
pub fn timeout_ms(v: &[u8]) -> Result<u64, Reason> {
    match nginx_time(v, false) {
        None => Err("it must be a time such as \"500ms\" or \"1s\""),
        Some(0) => Err("it must not be 0"),
        Some(t) if t > 86_400_000 => Err("the time is too large"),
        Some(t) => Ok(t),
    }
}

/// A size as nginx reads a zone's (`ngx_parse_size`): digits with an
/// optional `k`/`K` or `m`/`M` suffix.
pub fn size(v: &[u8]) -> Result<usize, Reason> {
    const REASON: Reason = "it must be a size such as \"10m\"";
    let (digits, mult) = match v.last() {
        Some(b'k' | b'K') => (&v[..v.len() - 1], 1usize << 10),
        Some(b'm' | b'M') => (&v[..v.len() - 1], 1 << 20),
        _ => (v, 1),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(REASON);
    }
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .and_then(|n| n.checked_mul(mult))
        .ok_or("the size is too large")
}

/// `NAME:SIZE` of `sessions_zone`.
pub fn zone(v: &[u8]) -> Result<(&[u8], usize), Reason> {
    let colon = v
        .iter()
        .rposition(|&b| b == b':')
        .ok_or("it must be \"NAME:SIZE\"")?;
    let (name, sz) = (&v[..colon], &v[colon + 1..]);
    if name.is_empty() {
        return Err("the zone name is empty");
    }
    let sz = size(sz).map_err(|_| "invalid zone size")?;
    Ok((name, sz))
}

/// A parameter of `sessions_zone` after `NAME:SIZE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneParam<'a> {
    /// `state=FILE`
    State(&'a [u8]),
    /// `state_interval=TIME`, in ms
    Interval(u64),
}

pub fn zone_param(v: &[u8]) -> Result<ZoneParam<'_>, Reason> {
    if let Some(file) = v.strip_prefix(b"state=") {
        if file.is_empty() {
            return Err("the state file name is empty");
        }
        Ok(ZoneParam::State(file))
    } else if let Some(t) = v.strip_prefix(b"state_interval=") {
        timeout_ms(t).map(ZoneParam::Interval)
    } else {
        Err("it must be \"state=FILE\" or \"state_interval=TIME\"")
    }
}

/// A cookie name as BunkerWeb allows it: `^[a-zA-Z0-9_-]+$`.
pub fn cookie_name(v: &[u8]) -> Result<&[u8], Reason> {
    if v.len() > crate::model::keys::MAX_NAME {
        Err("the name is longer than 128 characters")
    } else if !v.is_empty()
        && v.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Ok(v)
    } else {
        Err("it must match ^[a-zA-Z0-9_-]+$")
    }
}

/// Fewer characters than this in a secret get a warning (BunkerWeb asks
/// for at least 32).
pub const SHORT_SECRET: usize = 32;

/// A secret: any non-empty string without control characters.
pub fn secret(v: &[u8]) -> Result<&[u8], Reason> {
    if v.is_empty() {
        Err("the secret is empty")
    } else if v.iter().any(u8::is_ascii_control) {
        Err("the secret contains control characters")
    } else {
        Ok(v)
    }
}

/// The secrets of a `sessions_secret_file`: one a line, the first signs;
/// blank lines and a line's trailing `\r` are skipped. On error, the line
/// number and why (never the line itself: it may be a secret).
pub fn secret_file(text: &[u8]) -> Result<Vec<&[u8]>, (usize, Reason)> {
    let mut out = Vec::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if line == b"random" {
            return Err((i + 1, "\"random\" is not a secret here"));
        }
        out.push(secret(line).map_err(|why| (i + 1, why))?);
    }
    if out.is_empty() {
        return Err((0, "the file holds no secret"));
    }
    Ok(out)
}

/// `none` or a domain for the cookie's `Domain` attribute.
pub fn domain(v: &[u8]) -> Result<Option<String>, Reason> {
    if v == b"none" {
        return Ok(None);
    }
    let ok = !v.is_empty()
        && v.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
        && !v.starts_with(b"-");
    if ok {
        Ok(Some(String::from_utf8_lossy(v).into_owned()))
    } else {
        Err("it must be \"none\" or a host name")
    }
}

/// The cookie's `Path`: starts with `/`, no `;`, spaces or controls.
pub fn path(v: &[u8]) -> Result<String, Reason> {
    if v.first() == Some(&b'/') && v.iter().all(|&b| b.is_ascii_graphic() && b != b';') {
        Ok(String::from_utf8_lossy(v).into_owned())
    } else {
        Err("it must be a path starting with \"/\" without \";\" or spaces")
    }
}

/// `on` | `off` | `auto`.
pub fn secure(v: &[u8]) -> Result<Secure, Reason> {
    match v.to_ascii_lowercase().as_slice() {
        b"on" => Ok(Secure::On),
        b"off" => Ok(Secure::Off),
        b"auto" => Ok(Secure::Auto),
        _ => Err("it must be \"on\", \"off\" or \"auto\""),
    }
}

/// `strict` | `lax` | `none` | `off` (leave the attribute out).
pub fn same_site(v: &[u8]) -> Result<Option<SameSite>, Reason> {
    match v.to_ascii_lowercase().as_slice() {
        b"strict" => Ok(Some(SameSite::Strict)),
        b"lax" => Ok(Some(SameSite::Lax)),
        b"none" => Ok(Some(SameSite::None)),
        b"off" => Ok(None),
        _ => Err("it must be \"strict\", \"lax\", \"none\" or \"off\""),
    }
}

/// `off` (browser-session cookie) or a lifetime, in whole seconds.
pub fn max_age(v: &[u8]) -> Result<Option<u64>, Reason> {
    if v == b"off" {
        return Ok(None);
    }
    match time_ms(v) {
        Ok(ms) if ms >= 1_000 => Ok(Some(ms / 1_000)),
        Ok(_) => Err("it must be \"off\" or at least 1s"),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assertion_values() {
        assert_eq!(claim_value(b"https://app.example"), Ok("https://app.example"));
        for bad in [&b""[..], b"a b", b"a\"b", b"a\\b", b"\xc3\xa9", &[b'a'; 257]] {
            assert!(claim_value(bad).is_err(), "{bad:?}");
        }
        assert_eq!(assertion_ttl(b"1m"), Ok(60_000));
        assert_eq!(assertion_ttl(b"30"), Ok(30_000));
        for bad in [&b"0"[..], b"2h", b"soon"] {
            assert!(assertion_ttl(bad).is_err());
        }
    }

    #[test]
    fn per_user_limits() {
        assert_eq!(
            max_per_user(&[b"3"]),
            Ok(PerUser {
                max: 3,
                at_limit: AtLimit::EndOldest
            })
        );
        assert_eq!(
            max_per_user(&[b"1", b"refuse"]).map(|l| l.at_limit),
            Ok(AtLimit::Refuse)
        );
        for bad in [&b"0"[..], b"1001", b"-1", b"x", b""] {
            assert_eq!(max_per_user(&[bad]).map_err(|e| e.0), Err(1), "{bad:?}");
        }
        assert_eq!(max_per_user(&[b"2", b"oldest"]).map_err(|e| e.0), Err(2));
    }

    #[test]
    fn binding_checks() {
        assert_eq!(ip_binding(&[b"on"]), Ok(IpBinding::default()));
        assert_eq!(
            ip_binding(&[b"log", b"ipv6=64", b"ipv4=24"]),
            Ok(IpBinding {
                mode: Mode::Log,
                v4_prefix: 24,
                v6_prefix: 64
            })
        );
        assert_eq!(ip_binding(&[b"OFF"]).map(|b| b.mode), Ok(Mode::Off));
        assert_eq!(ip_binding(&[b"yes"]).map_err(|e| e.0), Err(1));
        for bad in [
            &b"ipv4=0"[..],
            b"ipv4=33",
            b"ipv6=129",
            b"ipv4=",
            b"ipv4=+8",
            b"ipv4=024x",
            b"ipv5=8",
            b"24",
        ] {
            assert_eq!(ip_binding(&[b"on", bad]).map_err(|e| e.0), Err(2), "{bad:?}");
        }
        assert_eq!(
            ip_binding(&[b"on", b"ipv4=8", b"ipv4=16"]).map_err(|e| e.0),
            Err(3)
        );
        assert_eq!(
            ua_binding(&[b"on", b"ignore_versions"]),
            Ok(UaBinding {
                mode: Mode::On,
                ignore_versions: true
            })
        );
        assert_eq!(
            ua_binding(&[b"log"]).map(|b| (b.mode, b.ignore_versions)),
            Ok((Mode::Log, false))
        );
        assert_eq!(ua_binding(&[b"on", b"versions"]).map_err(|e| e.0), Err(2));
        assert_eq!(ua_binding(&[b"maybe"]).map_err(|e| e.0), Err(1));
    }

    #[test]
    fn flags() {
        assert_eq!(flag(b"on"), Ok(true));
        assert_eq!(flag(b"OFF"), Ok(false));
        assert!(flag(b"yes").is_err());
        assert!(flag(b"").is_err());
    }

    #[test]
    fn times() {
        assert_eq!(time_ms(b"1800"), Ok(1_800_000));
        assert_eq!(time_ms(b"0"), Ok(0));
        assert_eq!(time_ms(b"30m"), Ok(1_800_000));
        assert_eq!(time_ms(b"1h"), Ok(3_600_000));
        assert_eq!(time_ms(b"1d"), Ok(86_400_000));
        assert_eq!(time_ms(b"1h30m"), Ok(5_400_000));
        assert_eq!(time_ms(b"2s"), Ok(2_000));
        assert_eq!(positive_time_ms(b"0"), Err("it must not be 0"));
        assert_eq!(timeout_ms(b"300ms"), Ok(300));
        assert_eq!(timeout_ms(b"0"), Err("it must not be 0"));
        for bad in [
            &b""[..],
            b"abc",
            b"-1",
            b"1x",
            b"m",
            b"1.5h",
            b"99999999999999999999",
        ] {
            assert!(time_ms(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(time_ms(b"101y").is_err());
    }

    /// What nginx's `ngx_parse_time` says of each, in both of its modes.
    #[test]
    fn times_read_exactly_as_nginx_reads_them() {
        let sec = |v: &[u8]| nginx_time(v, true);
        let ms = |v: &[u8]| nginx_time(v, false);
        assert_eq!(sec(b"1h 30m"), Some(5_400));
        assert_eq!(sec(b"1h  30m 5s"), Some(5_405));
        assert_eq!(sec(b"1h "), Some(3_600));
        assert_eq!(sec(b"30m1h"), None, "units must descend");
        assert_eq!(sec(b"1h1h"), None);
        assert_eq!(sec(b"1 h"), None);
        assert_eq!(sec(b" 1h"), None);
        assert_eq!(sec(b"1y1M"), Some(365 * 86_400 + 30 * 86_400));
        assert_eq!(sec(b"500ms"), None, "seconds know no milliseconds");
        assert_eq!(sec(b"h"), None);
        assert_eq!(ms(b"500ms"), Some(500));
        assert_eq!(ms(b"1s 500ms"), Some(1_500));
        assert_eq!(ms(b"1500"), Some(1_500_000), "a bare number is seconds");
        assert_eq!(ms(b"1y"), None);
        assert_eq!(ms(b"1M"), None);
        assert_eq!(ms(b"1w"), Some(7 * 86_400_000));
        assert_eq!(ms(b"9223372036854775807"), None);
        assert_eq!(sec(b"9223372036854775807"), Some(i64::MAX as u64));
        assert_eq!(sec(b"9223372036854775808"), None);
    }

    #[test]
    fn sizes_and_zones() {
        assert_eq!(size(b"10m"), Ok(10 << 20));
        assert_eq!(size(b"64k"), Ok(64 << 10));
        assert!(size(b"1G").is_err(), "nginx's zone sizes stop at m");
        assert_eq!(size(b"4096"), Ok(4096));
        assert!(size(b"10x").is_err());
        assert!(size(b"m").is_err());
        assert_eq!(zone(b"s:10m"), Ok((&b"s"[..], 10 << 20)));
        assert!(zone(b"s").is_err());
        assert!(zone(b":10m").is_err());
        assert_eq!(zone(b"s:ten"), Err("invalid zone size"));
    }

    #[test]
    fn names_and_secrets() {
        assert!(cookie_name(b"my_session-1").is_ok());
        for bad in [&b""[..], b"a b", b"a;b", b"a=b", b"s\xc3\xa9"] {
            assert!(cookie_name(bad).is_err());
        }
        assert!(cookie_name(&[b'a'; 128]).is_ok());
        assert!(cookie_name(&[b'a'; 129]).is_err());
        assert!(secret(b"x").is_ok());
        assert!(secret(b"").is_err());
        assert!(secret(b"a\nb").is_err());
    }

    #[test]
    fn cookie_attributes() {
        assert_eq!(domain(b"none"), Ok(None));
        assert_eq!(domain(b".example.com"), Ok(Some(".example.com".into())));
        assert!(domain(b"a;b").is_err());
        assert_eq!(path(b"/app"), Ok("/app".into()));
        assert!(path(b"app").is_err());
        assert!(path(b"/a;b").is_err());
        assert_eq!(secure(b"auto"), Ok(Secure::Auto));
        assert!(secure(b"maybe").is_err());
        assert_eq!(same_site(b"Strict"), Ok(Some(SameSite::Strict)));
        assert_eq!(same_site(b"off"), Ok(None));
        assert!(same_site(b"loose").is_err());
        assert_eq!(max_age(b"off"), Ok(None));
        assert_eq!(max_age(b"1h"), Ok(Some(3600)));
        assert!(max_age(b"500ms").is_err());
        assert!(max_age(b"x").is_err());
    }

    #[test]
    fn secret_files() {
        assert_eq!(
            secret_file(b"new secret\r\n\nold secret\n").unwrap(),
            vec![&b"new secret"[..], b"old secret"]
        );
        assert_eq!(secret_file(b"\n\n"), Err((0, "the file holds no secret")));
        assert_eq!(secret_file(b"ok\nbad\x01\n").unwrap_err().0, 2);
        assert_eq!(secret_file(b"random\n").unwrap_err().0, 1);
    }

    #[test]
    fn zone_params() {
        assert_eq!(
            zone_param(b"state=/var/lib/s"),
            Ok(ZoneParam::State(b"/var/lib/s"))
        );
        assert_eq!(zone_param(b"state_interval=30s"), Ok(ZoneParam::Interval(30_000)));
        assert!(zone_param(b"state=").is_err() && zone_param(b"state_interval=0").is_err());
        assert!(zone_param(b"stat=x").is_err());
    }
}
