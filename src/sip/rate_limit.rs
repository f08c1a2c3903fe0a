//! A per-source rate limit for new requests, pure: one token bucket per source IP address
//! (`rate` tokens per second, at most `burst` stored), consulted by the endpoint before it
//! creates any state for a request that starts something new (an out-of-dialog INVITE,
//! REGISTER, OPTIONS...). A refused request is answered `503` with `Retry-After`
//! ([`Decision::Limited`] says how long).
//!
//! Memory is bounded: at most `max_sources` buckets. When the table is full, buckets that
//! have refilled (the same as no bucket) are dropped first, oldest first; failing that the
//! oldest bucket is dropped, which hands that source a fresh burst. Each request does O(1)
//! work amortised, so a flood from many addresses cannot make the limiter itself slow.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The limiter's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimitConfig {
    /// Sustained new requests per second per source.
    pub rate: f64,
    /// Requests a source may send at once after being idle.
    pub burst: u32,
    /// Sources tracked at most.
    pub max_sources: usize,
}

impl Default for RateLimitConfig {
    fn default() -> RateLimitConfig {
        RateLimitConfig {
            rate: 20.0,
            burst: 40,
            max_sources: 10_000,
        }
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RateLimitError {
    #[error("the rate must be a positive number of requests per second")]
    Rate,
    #[error("the burst must be at least 1")]
    Burst,
    #[error("at least one source must be tracked")]
    MaxSources,
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Refuse with 503; `retry_after` is when one request would be allowed again.
    Limited {
        retry_after: Duration,
    },
}

impl Decision {
    /// `Retry-After` in whole seconds (at least 1).
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Decision::Allow => None,
            Decision::Limited { retry_after } => {
                Some(retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0))
                    .map(|s| s.max(1))
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets per source address.
#[derive(Debug)]
pub struct RateLimiter {
    config: RateLimitConfig,
    buckets: HashMap<IpAddr, Bucket>,
    /// Sources in the order their buckets were created.
    created: VecDeque<IpAddr>,
}

impl RateLimiter {
    pub fn new(config: RateLimitConfig) -> Result<RateLimiter, RateLimitError> {
        if !(config.rate.is_finite() && config.rate > 0.0) {
            return Err(RateLimitError::Rate);
        }
        if config.burst == 0 {
            return Err(RateLimitError::Burst);
        }
        if config.max_sources == 0 {
            return Err(RateLimitError::MaxSources);
        }
        Ok(RateLimiter {
            config,
            buckets: HashMap::new(),
            created: VecDeque::new(),
        })
    }

    /// Sources currently tracked.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    /// Takes one token for a new request from `source`.
    pub fn check(&mut self, source: IpAddr, now: Instant) -> Decision {
        let burst = f64::from(self.config.burst);
        let rate = self.config.rate;
        if !self.buckets.contains_key(&source) {
            self.make_room(now);
            self.created.push_back(source);
        }
        let bucket = self.buckets.entry(source).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Decision::Allow
        } else {
            Decision::Limited {
                retry_after: Duration::from_secs_f64((1.0 - bucket.tokens) / rate),
            }
        }
    }

    /// Whether `source` could take a token now, without taking it (an untracked source can).
    pub fn peek(&self, source: IpAddr, now: Instant) -> Decision {
        let Some(bucket) = self.buckets.get(&source) else {
            return Decision::Allow;
        };
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        let tokens = (bucket.tokens + elapsed * self.config.rate).min(f64::from(self.config.burst));
        if tokens >= 1.0 {
            Decision::Allow
        } else {
            Decision::Limited {
                retry_after: Duration::from_secs_f64((1.0 - tokens) / self.config.rate),
            }
        }
    }

    /// Frees one slot when the table is full: a refilled bucket if the oldest few include
    /// one, else the oldest.
    fn make_room(&mut self, now: Instant) {
        if self.buckets.len() < self.config.max_sources {
            return;
        }
        let refill = Duration::from_secs_f64(f64::from(self.config.burst) / self.config.rate);
        const LOOK_AHEAD: usize = 8;
        let idle = self
            .created
            .iter()
            .take(LOOK_AHEAD)
            .position(|ip| {
                self.buckets
                    .get(ip)
                    .is_some_and(|b| now.saturating_duration_since(b.updated) >= refill)
            })
            .unwrap_or(0);
        if let Some(ip) = self.created.remove(idle) {
            self.buckets.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(n.into())
    }

    fn limiter(rate: f64, burst: u32, max_sources: usize) -> RateLimiter {
        RateLimiter::new(RateLimitConfig {
            rate,
            burst,
            max_sources,
        })
        .unwrap()
    }

    #[test]
    fn peeking_takes_no_token() {
        let mut l = limiter(1.0, 2, 10);
        let t0 = Instant::now();
        assert_eq!(l.peek(ip(1), t0), Decision::Allow);
        assert_eq!(l.check(ip(1), t0), Decision::Allow);
        assert_eq!(l.peek(ip(1), t0), Decision::Allow);
        assert_eq!(
            l.peek(ip(1), t0),
            Decision::Allow,
            "peeking twice costs nothing"
        );
        assert_eq!(l.check(ip(1), t0), Decision::Allow);
        assert!(matches!(l.peek(ip(1), t0), Decision::Limited { .. }));
        assert_eq!(l.peek(ip(1), t0 + Duration::from_secs(1)), Decision::Allow);
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let mut l = limiter(2.0, 3, 10);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check(ip(1), t0), Decision::Allow);
        }
        let limited = l.check(ip(1), t0);
        assert_eq!(
            limited,
            Decision::Limited {
                retry_after: Duration::from_millis(500)
            }
        );
        assert_eq!(limited.retry_after_secs(), Some(1));
        assert_eq!(l.check(ip(2), t0), Decision::Allow, "sources are separate");
        assert_eq!(
            l.check(ip(1), t0 + Duration::from_millis(500)),
            Decision::Allow
        );
        assert!(matches!(
            l.check(ip(1), t0 + Duration::from_millis(500)),
            Decision::Limited { .. }
        ));
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(
                l.check(ip(1), later),
                Decision::Allow,
                "refilled to the burst"
            );
        }
        assert!(matches!(l.check(ip(1), later), Decision::Limited { .. }));
    }

    #[test]
    fn memory_stays_bounded_and_idle_sources_go_first() {
        let mut l = limiter(1.0, 1, 4);
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(10);
        l.check(ip(1), t1);
        l.check(ip(2), t0);
        l.check(ip(3), t1);
        l.check(ip(4), t1);
        // The table is full; ip(2) has refilled (idle since t0), ip(1) is exhausted: a
        // newcomer replaces ip(2) although ip(1) is older.
        l.check(ip(5), t1);
        assert_eq!(l.tracked(), 4);
        assert!(matches!(l.check(ip(1), t1), Decision::Limited { .. }));
        for n in 100..10_000 {
            l.check(ip(n), t1);
        }
        assert_eq!(l.tracked(), 4);
    }

    #[test]
    fn bad_configurations_are_refused() {
        let base = RateLimitConfig::default();
        for (config, error) in [
            (RateLimitConfig { rate: 0.0, ..base }, RateLimitError::Rate),
            (
                RateLimitConfig {
                    rate: f64::NAN,
                    ..base
                },
                RateLimitError::Rate,
            ),
            (RateLimitConfig { burst: 0, ..base }, RateLimitError::Burst),
            (
                RateLimitConfig {
                    max_sources: 0,
                    ..base
                },
                RateLimitError::MaxSources,
            ),
        ] {
            assert_eq!(RateLimiter::new(config).unwrap_err(), error);
        }
    }
}
