//! Per-user token buckets (spec `client/transport.md` §Limits): shared by all of a user's
//! connections, refilled continuously at `rate` tokens per second up to `burst`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mobium_spec::PublicKey;

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Rate limiter keyed by user.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<PublicKey, Bucket>>,
}

impl RateLimiter {
    /// `rate` requests per second sustained, `burst` at once.
    pub fn new(rate: u32, burst: u32) -> Self {
        RateLimiter {
            rate: f64::from(rate.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token, or says how long until one is available.
    pub fn check(&self, user: &PublicKey, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = buckets.entry(*user).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.rate))
        }
    }

    /// Forgets a user (on their last disconnect) so the map does not grow without bound. A
    /// reconnecting user starts with a full bucket, which the connection caps bound.
    pub fn forget(&self, user: &PublicKey) {
        self.buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let rl = RateLimiter::new(10, 3);
        let u = mobium_spec::Keypair::from_seed([1; 32]).public();
        let t = Instant::now();
        for _ in 0..3 {
            assert!(rl.check(&u, t).is_ok());
        }
        let wait = rl.check(&u, t).expect_err("limited");
        assert!(wait <= Duration::from_millis(100) && wait > Duration::ZERO);
        assert!(rl.check(&u, t + Duration::from_millis(100)).is_ok());
    }
}
