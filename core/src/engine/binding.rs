//! How tightly a session is bound to its client: the address (whole, or a
//! network prefix) and the User-Agent (exact, or ignoring version numbers),
//! each enforced, only logged, or not checked.

/// What a check does when the client differs from the one that started the
/// session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Off,
    /// The session is kept; the difference is logged and counted.
    Log,
    /// The cookie is refused and a fresh session begins.
    On,
}

/// `sessions_check_ip`: the mode and how many leading bits of an address
/// must match, for each family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpBinding {
    pub mode: Mode,
    pub v4_prefix: u8,
    pub v6_prefix: u8,
}

impl Default for IpBinding {
    fn default() -> Self {
        Self {
            mode: Mode::On,
            v4_prefix: 32,
            v6_prefix: 128,
        }
    }
}

impl IpBinding {
    /// Whether `now` is in the same network as `then`. Addresses of two
    /// families never are.
    pub fn same(&self, then: &[u8], now: &[u8]) -> bool {
        if then.len() != now.len() {
            return false;
        }
        let bits = match then.len() {
            4 => self.v4_prefix,
            16 => self.v6_prefix,
            _ => return then == now,
        };
        let (whole, rest) = (usize::from(bits / 8), bits % 8);
        if then[..whole] != now[..whole] {
            return false;
        }
        rest == 0 || {
            let mask = 0xffu8 << (8 - rest);
            then[whole] & mask == now[whole] & mask
        }
    }
}

/// `sessions_check_user_agent`: the mode, and whether version numbers count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UaBinding {
    pub mode: Mode,
    pub ignore_versions: bool,
}

impl Default for UaBinding {
    fn default() -> Self {
        Self {
            mode: Mode::On,
            ignore_versions: false,
        }
    }
}

impl UaBinding {
    /// Whether the User-Agent `now` is the browser whose fingerprint a
    /// session kept (`then`). A session started before fingerprints had
    /// their parts kept the whole header's hash (`whole`): still the same.
    pub fn same(&self, then: u64, now: &Ua<'_>) -> bool {
        let same = if self.ignore_versions {
            (then ^ now.fingerprint()) & LOOSE == 0
        } else {
            (then ^ now.whole()) & WHOLE == 0
        };
        same || then == now.whole()
    }
}

/// The fingerprint's part hashing the whole header.
const WHOLE: u64 = 0xffff_ff00_0000_0000;
/// The parts without versions: the versionless hash, browser and system.
const LOOSE: u64 = 0xff_ffff_ffff;

/// A request's User-Agent as the engine reads it: the header (the parts
/// of its fingerprint computed only when needed: a valid session's check
/// hashes it once), or, on the side-car, both values computed before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ua<'a> {
    Header(&'a [u8]),
    Known { fingerprint: u64, whole: u64 },
}

impl Ua<'_> {
    /// Of the header given.
    pub fn known(header: &[u8]) -> Ua<'static> {
        Ua::Known {
            fingerprint: fingerprint(header),
            whole: whole(header),
        }
    }

    /// What a new session keeps (`fingerprint`).
    pub fn fingerprint(&self) -> u64 {
        match self {
            Ua::Header(h) => fingerprint(h),
            Ua::Known { fingerprint, .. } => *fingerprint,
        }
    }

    fn whole(&self) -> u64 {
        match self {
            Ua::Header(h) => whole(h),
            Ua::Known { whole, .. } => *whole,
        }
    }
}

/// A User-Agent's fingerprint, the same in every worker. From the high bits
/// down: 24 bits of the whole header's hash (`whole`), 24 of the header
/// without version numbers (digits, and the `.` and `_` that follow one),
/// 8 naming the browser and 8 the system (`summary`); a browser update
/// changes only the first part. Enough to notice a change; it needs no key:
/// whoever could aim a collision at a victim's User-Agent already knows it
/// and could simply send it.
pub fn fingerprint(ua: &[u8]) -> u64 {
    let mut versionless = Stream::default();
    let mut after_digit = false;
    for &b in ua {
        let skip = b.is_ascii_digit() || (after_digit && matches!(b, b'.' | b'_'));
        after_digit = b.is_ascii_digit() || (after_digit && skip);
        if !skip {
            versionless.push(b);
        }
    }
    let (browser, system) = classify(ua);
    (whole(ua) & WHOLE) | ((versionless.finish() >> 40) << 16) | (u64::from(browser) << 8) | u64::from(system)
}

/// A 64-bit hash of the whole header, 8 bytes a step: what the fingerprint
/// was before it had parts, and its first part now.
pub fn whole(ua: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (ua.len() as u64).wrapping_mul(K);
    let mut words = ua.chunks_exact(8);
    for w in &mut words {
        h = (h ^ u64::from_le_bytes(w.try_into().expect("8 bytes")))
            .wrapping_mul(K)
            .rotate_left(31);
    }
    let mut last = [0u8; 8];
    last[..words.remainder().len()].copy_from_slice(words.remainder());
    h = (h ^ u64::from_le_bytes(last)).wrapping_mul(K);
    h ^ (h >> 29)
}

const BROWSERS: [(&str, &[u8]); 8] = [
    ("Edge", b"Edg"),
    ("Opera", b"OPR/"),
    ("Samsung Internet", b"SamsungBrowser/"),
    ("Chrome", b"Chrome/"),
    ("Firefox", b"Firefox/"),
    ("Safari", b"Safari/"),
    ("curl", b"curl/"),
    ("Wget", b"Wget/"),
];

const SYSTEMS: [(&str, &[u8]); 7] = [
    ("Android", b"Android"),
    ("iOS", b"iPhone"),
    ("iPadOS", b"iPad"),
    ("Windows", b"Windows"),
    ("macOS", b"Macintosh"),
    ("ChromeOS", b"CrOS"),
    ("Linux", b"Linux"),
];

/// For each byte, the marks of `list` that begin with it (bit `i`: mark `i`).
const fn by_first_byte(list: &[(&str, &[u8])]) -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < list.len() {
        t[list[i].1[0] as usize] |= 1 << i;
        i += 1;
    }
    t
}

const BROWSER_STARTS: [u16; 256] = by_first_byte(&BROWSERS);
const SYSTEM_STARTS: [u16; 256] = by_first_byte(&SYSTEMS);

/// The first browser and system of the lists whose mark `ua` contains,
/// numbered from 1 (0: none known). The order settles overlaps: Edge's and
/// Opera's User-Agents name Chrome and Safari too, Android's Linux. One
/// pass, each mark compared only where its first byte stands: a searcher
/// built per mark (`memmem`) cost a new session about 4,000 instructions.
fn classify(ua: &[u8]) -> (u8, u8) {
    // The lowest-numbered mark found at `rest`'s start among `candidates`,
    // if it comes before `found` in its list.
    let earliest = |found: u8, marks: &[(&str, &[u8])], mut candidates: u16, rest: &[u8]| {
        while candidates != 0 {
            let i = candidates.trailing_zeros() as u8;
            if found != 0 && i + 1 >= found {
                break;
            }
            if rest.starts_with(marks[usize::from(i)].1) {
                return i + 1;
            }
            candidates &= candidates - 1;
        }
        found
    };
    let (mut browser, mut system) = (0, 0);
    for (i, &b) in ua.iter().enumerate() {
        let (bs, ss) = (BROWSER_STARTS[usize::from(b)], SYSTEM_STARTS[usize::from(b)]);
        if bs | ss != 0 {
            browser = earliest(browser, &BROWSERS, bs, &ua[i..]);
            system = earliest(system, &SYSTEMS, ss, &ua[i..]);
        }
    }
    (browser, system)
}

/// What a fingerprint says of its browser, for people: "Firefox on Linux",
/// "Chrome", "unknown browser on Windows".
pub fn summary(fingerprint: u64) -> String {
    let name = |marks: &[(&'static str, &[u8])], n: u64| {
        (n as usize)
            .checked_sub(1)
            .and_then(|i| marks.get(i))
            .map(|m| m.0)
    };
    let browser = name(&BROWSERS, (fingerprint >> 8) & 0xff);
    let system = name(&SYSTEMS, fingerprint & 0xff);
    match (browser, system) {
        (Some(b), Some(s)) => format!("{b} on {s}"),
        (Some(b), None) => b.to_string(),
        (None, Some(s)) => format!("unknown browser on {s}"),
        (None, None) => "unknown browser".to_string(),
    }
}

const K: u64 = 0x9e37_79b9_7f4a_7c15;

fn mix(h: u64, word: u64) -> u64 {
    (h ^ word).wrapping_mul(K).rotate_left(31)
}

#[cfg(test)]
fn hash(bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(8);
    let mut h = 0;
    for w in &mut words {
        h = mix(h, u64::from_le_bytes(w.try_into().expect("8 bytes")));
    }
    let mut last = [0u8; 8];
    last[..words.remainder().len()].copy_from_slice(words.remainder());
    finish(h, u64::from_le_bytes(last), bytes.len())
}

fn finish(h: u64, last: u64, len: usize) -> u64 {
    let h = mix(h, last) ^ (len as u64).wrapping_mul(K);
    let h = h.wrapping_mul(K);
    h ^ (h >> 29)
}

/// `hash` fed a byte at a time: the same value as `hash` of the bytes pushed.
#[derive(Default)]
struct Stream {
    h: u64,
    word: u64,
    len: usize,
}

impl Stream {
    fn push(&mut self, b: u8) {
        self.word |= u64::from(b) << (8 * (self.len % 8));
        self.len += 1;
        if self.len.is_multiple_of(8) {
            self.h = mix(self.h, self.word);
            self.word = 0;
        }
    }

    fn finish(&self) -> u64 {
        finish(self.h, self.word, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CHROME_120: &[u8] = b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.71 Safari/537.36";
    const CHROME_121: &[u8] = b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.6167.85 Safari/537.36";
    const FIREFOX: &[u8] = b"Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";

    #[test]
    fn fingerprint_is_stable_and_discriminating() {
        assert_eq!(fingerprint(b"curl/8"), fingerprint(b"curl/8"));
        assert_ne!(fingerprint(b"curl/8"), fingerprint(b"curl/9"));
        assert_ne!(fingerprint(b""), fingerprint(b"\0"));
        assert_ne!(fingerprint(b"abcdefgh"), fingerprint(b"abcdefgh\0"));
        // Every one-byte change of a browser User-Agent changes it.
        let base = fingerprint(CHROME_120);
        let mut seen = std::collections::HashSet::new();
        for i in 0..CHROME_120.len() {
            let mut v = CHROME_120.to_vec();
            v[i] ^= 1;
            assert_ne!(fingerprint(&v), base, "byte {i}");
            assert!(seen.insert(fingerprint(&v)));
        }
    }

    #[test]
    fn a_browser_update_is_the_same_browser_only_when_versions_are_ignored() {
        let (exact, loose) = (
            UaBinding::default(),
            UaBinding {
                ignore_versions: true,
                ..UaBinding::default()
            },
        );
        assert!(same(&exact, CHROME_120, CHROME_120));
        assert!(!same(&exact, CHROME_120, CHROME_121));
        assert!(same(&loose, CHROME_120, CHROME_121));
        assert!(
            !same(&loose, CHROME_120, FIREFOX),
            "another browser is another browser"
        );
        assert!(!same(&loose, b"curl/8.1", b"wget/8.1"));
        // A version's separators go with it; other dots and underscores stay.
        assert!(same(&loose, b"Mac OS X 10_15_7", b"Mac OS X 14_1"));
        assert!(!same(&loose, b"a.b", b"ab"));
    }

    /// `then`'s session against the header `now`, read both ways (the
    /// header itself, and the values the side-car is handed): they agree.
    fn same(b: &UaBinding, then: &[u8], now: &[u8]) -> bool {
        let header = b.same(fingerprint(then), &Ua::Header(now));
        assert_eq!(header, b.same(fingerprint(then), &Ua::known(now)));
        header
    }

    #[test]
    fn sessions_from_before_the_parts_keep_their_browser() {
        let loose = UaBinding {
            ignore_versions: true,
            ..UaBinding::default()
        };
        for b in [UaBinding::default(), loose] {
            assert!(b.same(whole(CHROME_120), &Ua::Header(CHROME_120)));
            assert!(b.same(whole(CHROME_120), &Ua::known(CHROME_120)));
            assert!(!b.same(whole(CHROME_120), &Ua::Header(FIREFOX)));
        }
        assert_eq!(Ua::Header(FIREFOX).fingerprint(), fingerprint(FIREFOX));
    }

    #[test]
    fn summaries_name_the_browser_and_system() {
        assert_eq!(summary(fingerprint(CHROME_120)), "Chrome on Linux");
        assert_eq!(summary(fingerprint(FIREFOX)), "Firefox on Linux");
        let edge = b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91";
        assert_eq!(summary(fingerprint(edge)), "Edge on Windows");
        let iphone = b"Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1";
        assert_eq!(summary(fingerprint(iphone)), "Safari on iOS");
        let android = b"Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.144 Mobile Safari/537.36";
        assert_eq!(summary(fingerprint(android)), "Chrome on Android");
        assert_eq!(summary(fingerprint(b"curl/8.1.2")), "curl");
        assert_eq!(summary(fingerprint(b"")), "unknown browser");
        assert_eq!(
            summary(u64::MAX),
            "unknown browser",
            "any value read back is safe"
        );
    }

    #[test]
    fn prefixes_compare_leading_bits() {
        let p = IpBinding {
            mode: Mode::On,
            v4_prefix: 24,
            v6_prefix: 64,
        };
        assert!(p.same(&[10, 0, 0, 1], &[10, 0, 0, 200]));
        assert!(!p.same(&[10, 0, 0, 1], &[10, 0, 1, 1]));
        let mut a = [0u8; 16];
        a[0] = 0x20;
        let mut b = a;
        b[15] = 9;
        assert!(p.same(&a, &b));
        b[7] = 1;
        assert!(!p.same(&a, &b));
        assert!(!p.same(&[10, 0, 0, 1], &a), "families differ");
        let odd = IpBinding { v4_prefix: 20, ..p };
        assert!(odd.same(&[10, 0, 0x1f, 1], &[10, 0, 0x10, 1]));
        assert!(!odd.same(&[10, 0, 0x1f, 1], &[10, 0, 0x20, 1]));
        let none = IpBinding { v4_prefix: 0, ..p };
        assert!(none.same(&[1, 2, 3, 4], &[5, 6, 7, 8]));
    }

    proptest! {
        /// A prefix comparison agrees with comparing the addresses' leading
        /// bits one by one, and the whole length is plain equality.
        #[test]
        fn prefix_matches_bitwise(a in any::<[u8; 4]>(), b in any::<[u8; 4]>(), bits in 0u8..=32) {
            let p = IpBinding { mode: Mode::On, v4_prefix: bits, v6_prefix: 128 };
            let (x, y) = (u32::from_be_bytes(a), u32::from_be_bytes(b));
            let expect = bits == 0 || (x ^ y) >> (32 - u32::from(bits)) == 0;
            prop_assert_eq!(p.same(&a, &b), expect);
            prop_assert_eq!(IpBinding::default().same(&a, &b), a == b);
        }

        /// The streamed hash is the hash of the bytes streamed.
        #[test]
        fn stream_is_hash(a in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut s = Stream::default();
            a.iter().for_each(|&b| s.push(b));
            prop_assert_eq!(s.finish(), hash(&a));
        }

        /// The one-pass classification finds what searching for each mark does.
        #[test]
        fn classify_is_a_search_for_each_mark(words in proptest::collection::vec(
            proptest::sample::select(vec!["Edg/1", "OPR/", "Chrome/", "Firefox/", "Safari/", "curl/", "Wget/",
                "SamsungBrowser/", "Android", "iPhone", "iPad", "Windows", "Macintosh", "CrOS", "Linux", " ", "x", "(", ";"]), 0..8)) {
            let ua = words.concat().into_bytes();
            let search = |marks: &[(&str, &[u8])]| {
                marks.iter().position(|(_, m)| ua.windows(m.len()).any(|w| w == *m)).map_or(0, |i| i as u8 + 1)
            };
            prop_assert_eq!(classify(&ua), (search(&BROWSERS), search(&SYSTEMS)));
        }

        /// Any fingerprint, even one read back from a store, summarizes.
        #[test]
        fn any_fingerprint_summarizes(f in any::<u64>()) {
            prop_assert!(!summary(f).is_empty());
        }

        /// Ignoring versions never separates what exact comparison joins.
        #[test]
        fn loose_is_looser(a in proptest::collection::vec(any::<u8>(), 0..64), b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let loose = UaBinding { mode: Mode::On, ignore_versions: true };
            let fa = fingerprint(&a);
            if UaBinding::default().same(fa, &Ua::Header(&b)) {
                prop_assert!(loose.same(fa, &Ua::Header(&b)));
            }
            prop_assert!(UaBinding::default().same(fa, &Ua::Header(&a)));
        }
    }
}
