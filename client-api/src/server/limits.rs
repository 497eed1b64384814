//! Connection caps: in total and per IP address (spec `client/transport.md` §Limits).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use mobium_spec::ErrorCode;

/// Counts open connections and refuses new ones over the caps.
#[derive(Debug)]
pub struct ConnectionLimiter {
    max_total: usize,
    max_per_ip: usize,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl ConnectionLimiter {
    /// A limiter with both caps.
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(ConnectionLimiter {
            max_total,
            max_per_ip,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    /// Open connections right now.
    pub fn current(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Admits a connection from `ip`, or refuses it with `too_many_connections`.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionGuard, ErrorCode> {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let n = per_ip.get(&ip).copied().unwrap_or(0);
        if n >= self.max_per_ip || self.total.load(Ordering::Relaxed) >= self.max_total {
            return Err(ErrorCode::TooManyConnections);
        }
        per_ip.insert(ip, n + 1);
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(ConnectionGuard {
            limiter: self.clone(),
            ip,
        })
    }
}

/// Releases its slot when dropped.
#[derive(Debug)]
pub struct ConnectionGuard {
    limiter: Arc<ConnectionLimiter>,
    ip: IpAddr,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut per_ip = self
            .limiter
            .per_ip
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
        self.limiter.total.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_ip_and_in_total() {
        let l = ConnectionLimiter::new(3, 2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let g1 = l.admit(a).expect("first");
        let _g2 = l.admit(a).expect("second");
        assert_eq!(l.admit(a).err(), Some(ErrorCode::TooManyConnections));
        let _g3 = l.admit(b).expect("other ip");
        assert_eq!(
            l.admit(b).err(),
            Some(ErrorCode::TooManyConnections),
            "total cap"
        );
        drop(g1);
        let _g4 = l.admit(b).expect("slot released");
        assert_eq!(l.current(), 3);
    }
}
