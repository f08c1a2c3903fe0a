//! SIP session timers (RFC 4028), pure: the `Session-Expires` and `Min-SE` headers, the
//! negotiation each side does, and a small state machine driven by `now` that says when to
//! send a refresh and when to give up on the session with BYE.
//!
//! ```text
//! UAC request:  Supported: timer, Session-Expires: S, Min-SE: M           (§7.1)
//! UAS:          S < its minimum            -> 422 + Min-SE: minimum          (§9)
//!               otherwise 2xx with Session-Expires: S';refresher=...        (§9)
//!               (+ Require: timer when the UAC supports it)
//! UAC on 422:   retry with Session-Expires = max(S, Min-SE), Min-SE: Min-SE  (§7.4)
//! UAC on 2xx:   no Session-Expires -> no timer; otherwise the interval and refresher
//!
//! refresher:    refresh at last + S/2                                        (§10)
//!               no successful refresh by last + S -> BYE
//! other side:   no refresh by last + S - min(32 s, S/3) -> BYE               (§10)
//! ```
//! "Refresh" means a re-INVITE or UPDATE that got a 2xx; either side reports it with
//! [`SessionTimer::refreshed`], which also takes the newly negotiated values.

use std::fmt;
use std::time::{Duration, Instant};

use super::msg::Headers;

/// The smallest session interval any element may ask for (§4, §5).
pub const MIN_SE_FLOOR: u32 = 90;
/// The interval RFC 4028 recommends (§4).
pub const RECOMMENDED_INTERVAL: u32 = 1800;

/// Why a session timer header could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionTimerError {
    #[error("invalid Session-Expires")]
    InvalidSessionExpires,
    #[error("invalid Min-SE")]
    InvalidMinSe,
    #[error("a 422 without a usable Min-SE")]
    MissingMinSe,
}

/// Which side refreshes the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    Uac,
    Uas,
}

impl Refresher {
    fn as_str(self) -> &'static str {
        match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        }
    }
}

/// Our role in the transaction that negotiated the timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Uac,
    Uas,
}

/// A `Session-Expires` value: `delta-seconds [;refresher=uac|uas]` (§4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpires {
    pub interval: u32,
    pub refresher: Option<Refresher>,
}

impl SessionExpires {
    pub fn parse(value: &str) -> Result<SessionExpires, SessionTimerError> {
        let mut parts = value.split(';');
        let interval = parse_seconds(parts.next().unwrap_or_default())
            .ok_or(SessionTimerError::InvalidSessionExpires)?;
        let mut refresher = None;
        for param in parts {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            if name.trim().eq_ignore_ascii_case("refresher") {
                refresher = Some(match value.trim().to_ascii_lowercase().as_str() {
                    "uac" => Refresher::Uac,
                    "uas" => Refresher::Uas,
                    _ => return Err(SessionTimerError::InvalidSessionExpires),
                });
            }
        }
        Ok(SessionExpires {
            interval,
            refresher,
        })
    }

    /// The header in `headers`, if present (the compact `x` form is already expanded).
    pub fn from_headers(headers: &Headers) -> Result<Option<SessionExpires>, SessionTimerError> {
        headers
            .get("Session-Expires")
            .map(SessionExpires::parse)
            .transpose()
    }
}

impl fmt::Display for SessionExpires {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.interval)?;
        if let Some(r) = self.refresher {
            write!(f, ";refresher={}", r.as_str())?;
        }
        Ok(())
    }
}

/// A `Min-SE` value (`delta-seconds`, generic parameters ignored).
pub fn parse_min_se(value: &str) -> Result<u32, SessionTimerError> {
    parse_seconds(value.split(';').next().unwrap_or_default())
        .ok_or(SessionTimerError::InvalidMinSe)
}

fn parse_seconds(text: &str) -> Option<u32> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // delta-seconds larger than 2^32-1 mean "a very long time" (RFC 3261 §25.1 spirit).
    Some(
        text.parse::<u64>()
            .map_or(u32::MAX, |n| n.min(u64::from(u32::MAX)) as u32),
    )
}

/// Whether `headers` list `timer` in Supported (or its compact `k`) or Require.
pub fn supports_timer(headers: &Headers) -> bool {
    ["Supported", "Require"]
        .into_iter()
        .any(|name| headers.list(name).any(|t| t.eq_ignore_ascii_case("timer")))
}

/// Our local session timer policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// The interval we ask for, or grant at most (seconds).
    pub interval: u32,
    /// The smallest interval we accept (seconds, at least [`MIN_SE_FLOOR`]).
    pub min_se: u32,
}

impl Default for TimerConfig {
    fn default() -> TimerConfig {
        TimerConfig {
            interval: RECOMMENDED_INTERVAL,
            min_se: MIN_SE_FLOOR,
        }
    }
}

impl TimerConfig {
    fn min_se(&self) -> u32 {
        self.min_se.max(MIN_SE_FLOOR)
    }
}

/// The outcome of a negotiation: the interval and who refreshes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub interval: u32,
    pub refresher: Refresher,
    /// Our role in the transaction that negotiated it.
    pub role: Role,
}

impl Negotiated {
    pub fn we_refresh(&self) -> bool {
        matches!(
            (self.refresher, self.role),
            (Refresher::Uac, Role::Uac) | (Refresher::Uas, Role::Uas)
        )
    }
}

/// What a UAS answers to an INVITE or UPDATE (§9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UasDecision {
    /// Answer 422 with `Min-SE: min_se`.
    TooSmall { min_se: u32 },
    /// Answer the request with `session_expires` in the 2xx and, when `require_timer`,
    /// `Require: timer` too; start (or restart) the timer with `negotiated`.
    Accept {
        session_expires: SessionExpires,
        require_timer: bool,
        negotiated: Negotiated,
    },
}

/// The UAS negotiation for a request with `headers`.
pub fn uas_negotiate(
    config: &TimerConfig,
    headers: &Headers,
) -> Result<UasDecision, SessionTimerError> {
    let uac_supports = supports_timer(headers);
    let requested = SessionExpires::from_headers(headers)?;
    let their_min = match headers.get("Min-SE") {
        Some(v) => parse_min_se(v)?,
        None => MIN_SE_FLOOR,
    };
    let floor = their_min.max(config.min_se());
    let (interval, refresher) = match requested {
        Some(se) if se.interval < config.min_se() => {
            return Ok(UasDecision::TooSmall {
                min_se: config.min_se(),
            });
        }
        Some(se) => (se.interval.min(config.interval).max(floor), se.refresher),
        None => (config.interval.max(floor), None),
    };
    let refresher = match refresher {
        _ if !uac_supports => Refresher::Uas,
        Some(r) => r,
        None => Refresher::Uac,
    };
    let session_expires = SessionExpires {
        interval,
        refresher: Some(refresher),
    };
    Ok(UasDecision::Accept {
        session_expires,
        require_timer: uac_supports,
        negotiated: Negotiated {
            interval,
            refresher,
            role: Role::Uas,
        },
    })
}

/// The session timer headers a UAC puts in an INVITE or UPDATE (§7.1): `Supported: timer`,
/// this `Session-Expires` and `Min-SE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UacOffer {
    pub session_expires: SessionExpires,
    pub min_se: u32,
}

impl UacOffer {
    pub fn new(config: &TimerConfig) -> UacOffer {
        UacOffer {
            session_expires: SessionExpires {
                interval: config.interval.max(config.min_se()),
                refresher: None,
            },
            min_se: config.min_se(),
        }
    }

    /// Adds the offer's headers to an outgoing request (replacing those of an earlier offer).
    pub fn write(&self, headers: &mut Headers) {
        if !headers
            .list("Supported")
            .any(|t| t.eq_ignore_ascii_case("timer"))
        {
            headers.push("Supported", "timer");
        }
        headers.set("Session-Expires", self.session_expires.to_string());
        headers.set("Min-SE", self.min_se.to_string());
    }

    /// The offer for the retry after a 422 with `response_headers` (§7.4).
    pub fn after_422(&self, response_headers: &Headers) -> Result<UacOffer, SessionTimerError> {
        let min_se = response_headers
            .get("Min-SE")
            .ok_or(SessionTimerError::MissingMinSe)
            .and_then(parse_min_se)?
            .max(self.min_se);
        Ok(UacOffer {
            session_expires: SessionExpires {
                interval: self.session_expires.interval.max(min_se),
                refresher: self.session_expires.refresher,
            },
            min_se,
        })
    }

    /// What the 2xx with `response_headers` settled (§7.2): `None` when it carries no
    /// `Session-Expires` (the session does not expire).
    pub fn accepted(
        &self,
        response_headers: &Headers,
    ) -> Result<Option<Negotiated>, SessionTimerError> {
        Ok(
            SessionExpires::from_headers(response_headers)?.map(|se| Negotiated {
                interval: se.interval,
                // A UAS that does not know the extension leaves no refresher: then we refresh.
                refresher: se.refresher.unwrap_or(Refresher::Uac),
                role: Role::Uac,
            }),
        )
    }
}

/// What the session timer asks of the dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionTimerAction {
    /// Send a session refresh (re-INVITE or UPDATE) now.
    Refresh,
    /// The session has expired: send BYE.
    Bye,
}

/// The running timer of one dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionTimer {
    negotiated: Negotiated,
    last_refresh: Instant,
    refresh_sent: bool,
}

impl SessionTimer {
    pub fn new(negotiated: Negotiated, now: Instant) -> SessionTimer {
        SessionTimer {
            negotiated,
            last_refresh: now,
            refresh_sent: false,
        }
    }

    pub fn negotiated(&self) -> Negotiated {
        self.negotiated
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(u64::from(self.negotiated.interval))
    }

    /// When the session expires without a refresh.
    pub fn expires_at(&self) -> Instant {
        self.last_refresh + self.interval()
    }

    /// The next instant [`SessionTimer::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Instant {
        let interval = self.interval();
        if self.negotiated.we_refresh() {
            if self.refresh_sent {
                self.expires_at()
            } else {
                self.last_refresh + interval / 2
            }
        } else {
            let margin = Duration::from_secs(32).min(interval / 3);
            self.expires_at() - margin
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Option<SessionTimerAction> {
        if now < self.poll_timeout() {
            return None;
        }
        if self.negotiated.we_refresh() && !self.refresh_sent {
            self.refresh_sent = true;
            return Some(SessionTimerAction::Refresh);
        }
        Some(SessionTimerAction::Bye)
    }

    /// A refresh (ours or theirs) got a 2xx: restart with what it negotiated.
    pub fn refreshed(&mut self, negotiated: Negotiated, now: Instant) {
        *self = SessionTimer::new(negotiated, now);
    }

    /// Our refresh failed (a final error or a timeout, §10): the session ends.
    pub fn refresh_failed(&mut self) -> SessionTimerAction {
        SessionTimerAction::Bye
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (name, value) in lines {
            h.push(*name, *value);
        }
        h
    }

    #[test]
    fn parses_and_prints_the_headers() {
        let se = SessionExpires::parse(" 1800 ; refresher = UAS").unwrap();
        assert_eq!(se.interval, 1800);
        assert_eq!(se.refresher, Some(Refresher::Uas));
        assert_eq!(se.to_string(), "1800;refresher=uas");
        assert_eq!(SessionExpires::parse("90").unwrap().refresher, None);
        assert_eq!(parse_min_se("120;x=y"), Ok(120));
        for bad in ["", "-1", "abc", "90;refresher=both"] {
            assert!(SessionExpires::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            SessionExpires::parse("99999999999999").unwrap().interval,
            u32::MAX
        );
    }

    #[test]
    fn uas_answers_422_below_its_minimum_and_grants_otherwise() {
        let config = TimerConfig {
            interval: 1800,
            min_se: 300,
        };
        let small = headers(&[("Supported", "timer"), ("Session-Expires", "120")]);
        assert_eq!(
            uas_negotiate(&config, &small),
            Ok(UasDecision::TooSmall { min_se: 300 })
        );

        let big = headers(&[
            ("Supported", "100rel, timer"),
            ("Session-Expires", "3600"),
            ("Min-SE", "600"),
        ]);
        let Ok(UasDecision::Accept {
            session_expires: se,
            require_timer: true,
            negotiated: n,
        }) = uas_negotiate(&config, &big)
        else {
            panic!()
        };
        assert_eq!(se.interval, 1800, "reduced to our interval");
        assert_eq!(
            se.refresher,
            Some(Refresher::Uac),
            "UAC refreshes when it can"
        );
        assert!(!n.we_refresh());

        let insisted = headers(&[
            ("k", "timer"),
            ("Session-Expires", "2000;refresher=uas"),
            ("Min-SE", "1900"),
        ]);
        let Ok(UasDecision::Accept {
            session_expires: se,
            ..
        }) = uas_negotiate(&config, &insisted)
        else {
            panic!()
        };
        assert_eq!(se.interval, 1900, "never below the request's Min-SE");
        assert_eq!(se.refresher, Some(Refresher::Uas));
    }

    #[test]
    fn uas_refreshes_itself_for_a_uac_without_the_extension() {
        let plain = headers(&[("Session-Expires", "1000;refresher=uac")]);
        let Ok(UasDecision::Accept {
            session_expires: se,
            require_timer,
            negotiated: n,
        }) = uas_negotiate(&TimerConfig::default(), &plain)
        else {
            panic!()
        };
        assert_eq!(se.refresher, Some(Refresher::Uas));
        assert!(!require_timer);
        assert!(n.we_refresh());
        assert_eq!(
            uas_negotiate(&TimerConfig::default(), &headers(&[])),
            Ok(UasDecision::Accept {
                session_expires: SessionExpires {
                    interval: RECOMMENDED_INTERVAL,
                    refresher: Some(Refresher::Uas)
                },
                require_timer: false,
                negotiated: Negotiated {
                    interval: RECOMMENDED_INTERVAL,
                    refresher: Refresher::Uas,
                    role: Role::Uas
                },
            })
        );
    }

    #[test]
    fn uac_retries_a_422_with_the_larger_interval() {
        let offer = UacOffer::new(&TimerConfig {
            interval: 120,
            min_se: 90,
        });
        let mut h = Headers::new();
        offer.write(&mut h);
        assert_eq!(h.get("Session-Expires"), Some("120"));
        assert_eq!(h.get("Min-SE"), Some("90"));
        assert!(supports_timer(&h));
        let retry = offer.after_422(&headers(&[("Min-SE", "1000")])).unwrap();
        assert_eq!(retry.session_expires.interval, 1000);
        assert_eq!(retry.min_se, 1000);
        assert_eq!(
            offer.after_422(&headers(&[])),
            Err(SessionTimerError::MissingMinSe)
        );
        assert_eq!(
            retry.accepted(&headers(&[("Session-Expires", "1000;refresher=uac")])),
            Ok(Some(Negotiated {
                interval: 1000,
                refresher: Refresher::Uac,
                role: Role::Uac
            }))
        );
        assert_eq!(retry.accepted(&headers(&[])), Ok(None));
    }

    #[test]
    fn the_refresher_refreshes_at_half_and_gives_up_at_expiry() {
        let t0 = Instant::now();
        let n = Negotiated {
            interval: 1800,
            refresher: Refresher::Uas,
            role: Role::Uas,
        };
        let mut timer = SessionTimer::new(n, t0);
        assert_eq!(timer.poll_timeout(), t0 + Duration::from_secs(900));
        assert_eq!(timer.handle_timeout(t0 + Duration::from_secs(899)), None);
        assert_eq!(
            timer.handle_timeout(t0 + Duration::from_secs(900)),
            Some(SessionTimerAction::Refresh)
        );
        assert_eq!(timer.poll_timeout(), t0 + Duration::from_secs(1800));
        let t1 = t0 + Duration::from_secs(901);
        timer.refreshed(n, t1);
        assert_eq!(timer.poll_timeout(), t1 + Duration::from_secs(900));
        timer.handle_timeout(t1 + Duration::from_secs(900));
        assert_eq!(
            timer.handle_timeout(t1 + Duration::from_secs(1800)),
            Some(SessionTimerAction::Bye),
            "no answer to the refresh before expiry"
        );
        assert_eq!(timer.refresh_failed(), SessionTimerAction::Bye);
    }

    #[test]
    fn the_other_side_sends_bye_before_expiry_minus_the_margin() {
        let t0 = Instant::now();
        let long = Negotiated {
            interval: 1800,
            refresher: Refresher::Uac,
            role: Role::Uas,
        };
        let mut timer = SessionTimer::new(long, t0);
        assert_eq!(timer.poll_timeout(), t0 + Duration::from_secs(1800 - 32));
        assert_eq!(timer.handle_timeout(t0 + Duration::from_secs(1000)), None);
        let t1 = t0 + Duration::from_secs(1000);
        timer.refreshed(long, t1);
        assert_eq!(
            timer.handle_timeout(t1 + Duration::from_secs(1768)),
            Some(SessionTimerAction::Bye)
        );
        let short = Negotiated {
            interval: 90,
            ..long
        };
        let timer = SessionTimer::new(short, t0);
        assert_eq!(
            timer.poll_timeout(),
            t0 + Duration::from_secs(60),
            "90 - 90/3"
        );
    }
}
