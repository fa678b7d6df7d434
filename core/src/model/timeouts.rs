//! Timeout decisions, as BunkerWeb / lua-resty-session define them.
//!
//! All times are Unix milliseconds; a timeout of 0 is switched off.

/// The three timeouts of one location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Longest allowed gap between two requests.
    pub idle: u64,
    /// Longest life of one id; the id is renewed before it runs out.
    pub rolling: u64,
    /// Longest life of the session, whatever the activity.
    pub absolute: u64,
}

impl Default for Timeouts {
    /// BunkerWeb's defaults: 30 min idle, 1 h rolling, 1 day absolute.
    fn default() -> Self {
        Self {
            idle: 1_800_000,
            rolling: 3_600_000,
            absolute: 86_400_000,
        }
    }
}

/// What a stored session's times say about it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    /// Valid, and three quarters of the rolling time have passed: issue a new id.
    Renew,
    ExpiredIdle,
    ExpiredRolling,
    ExpiredAbsolute,
}

/// The times a session record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    pub created: u64,
    pub last_seen: u64,
    pub renewed: u64,
}

fn passed(since: u64, now: u64, limit: u64) -> bool {
    limit != 0 && now.saturating_sub(since) > limit
}

impl Timeouts {
    /// Judges a session. Absolute wins over rolling over idle when several apply.
    pub fn judge(&self, t: Times, now: u64) -> Verdict {
        if passed(t.created, now, self.absolute) {
            Verdict::ExpiredAbsolute
        } else if passed(t.renewed, now, self.rolling) {
            Verdict::ExpiredRolling
        } else if passed(t.last_seen, now, self.idle) {
            Verdict::ExpiredIdle
        } else if self.rolling != 0 && now.saturating_sub(t.renewed) >= self.rolling / 4 * 3 {
            Verdict::Renew
        } else {
            Verdict::Valid
        }
    }

    /// When the session expires if nothing happens, or `None` for never.
    pub fn deadline(&self, t: Times) -> Option<u64> {
        [
            (t.created, self.absolute),
            (t.renewed, self.rolling),
            (t.last_seen, self.idle),
        ]
        .into_iter()
        .filter(|&(_, limit)| limit != 0)
        .map(|(since, limit)| since.saturating_add(limit))
        .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        idle: 1_000,
        rolling: 4_000,
        absolute: 10_000,
    };

    fn at(created: u64, last_seen: u64, renewed: u64) -> Times {
        Times {
            created,
            last_seen,
            renewed,
        }
    }

    #[test]
    fn fresh_session_is_valid() {
        assert_eq!(T.judge(at(0, 0, 0), 0), Verdict::Valid);
        assert_eq!(T.judge(at(0, 0, 0), 1_000), Verdict::Valid); // boundary is inclusive
    }

    #[test]
    fn idle() {
        assert_eq!(T.judge(at(0, 0, 0), 1_001), Verdict::ExpiredIdle);
        assert_eq!(T.judge(at(0, 900, 0), 1_800), Verdict::Valid);
    }

    #[test]
    fn rolling_renews_at_three_quarters_then_expires() {
        assert_eq!(T.judge(at(0, 2_900, 0), 2_999), Verdict::Valid);
        assert_eq!(T.judge(at(0, 2_900, 0), 3_000), Verdict::Renew);
        assert_eq!(T.judge(at(0, 4_000, 0), 4_001), Verdict::ExpiredRolling);
        assert_eq!(T.judge(at(0, 4_000, 3_500), 4_001), Verdict::Valid);
    }

    #[test]
    fn absolute_beats_activity() {
        assert_eq!(T.judge(at(0, 9_999, 9_000), 10_001), Verdict::ExpiredAbsolute);
    }

    #[test]
    fn zero_switches_off() {
        let off = Timeouts {
            idle: 0,
            rolling: 0,
            absolute: 0,
        };
        assert_eq!(off.judge(at(0, 0, 0), u64::MAX), Verdict::Valid);
        assert_eq!(off.deadline(at(0, 0, 0)), None);
        let only_idle = Timeouts { idle: 5, ..off };
        assert_eq!(only_idle.judge(at(0, 0, 0), 6), Verdict::ExpiredIdle);
    }

    #[test]
    fn deadline_is_earliest() {
        assert_eq!(T.deadline(at(0, 500, 0)), Some(1_500));
        assert_eq!(T.deadline(at(0, 3_900, 0)), Some(4_000));
        assert_eq!(T.deadline(at(0, 9_500, 8_000)), Some(10_000));
    }

    #[test]
    fn clock_going_back_is_not_expiry() {
        assert_eq!(T.judge(at(5_000, 5_000, 5_000), 4_000), Verdict::Valid);
    }
}
