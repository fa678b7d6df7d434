//! How a request's session went, as `$session_status` shows it.

/// `$session_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    New,
    Valid,
    Renewed,
    ExpiredIdle,
    ExpiredRolling,
    ExpiredAbsolute,
    IpMismatch,
    UaMismatch,
    /// Malformed or badly signed cookie.
    Invalid,
    /// Well signed, but the id is not stored (evicted, expired and
    /// reclaimed, an anonymous session ended, another zone).
    Unknown,
    /// Well signed, of a logged-in session that was logged out or revoked
    /// (kept on record while the session could otherwise have lived).
    Ended,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Valid => "valid",
            Self::Renewed => "renewed",
            Self::ExpiredIdle => "expired_idle",
            Self::ExpiredRolling => "expired_rolling",
            Self::ExpiredAbsolute => "expired_absolute",
            Self::IpMismatch => "ip_mismatch",
            Self::UaMismatch => "ua_mismatch",
            Self::Invalid => "invalid",
            Self::Unknown => "unknown",
            Self::Ended => "ended",
        }
    }

    /// Whether a presented cookie was refused (and a fresh session started).
    pub fn is_refusal(self) -> bool {
        !matches!(self, Self::New | Self::Valid | Self::Renewed)
    }
}
