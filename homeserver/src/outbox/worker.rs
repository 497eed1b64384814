//! The durable outbox (spec `federation.md` §Outbox): one delivery worker per destination.
//!
//! Events are written to the database before anything is sent (by the caller, through
//! `Store::outbox_push` or `Store::commit_hosted`); the worker reads the oldest pending events,
//! sends them as one transaction, and deletes them only when the peer acknowledges. Failures
//! back off exponentially (capped, with jitter); a peer that connects to us, new events after a
//! success, or a cheap probe that finds a peer reachable again wake the worker at once.
//!
//! What the peer acknowledges settles each event one of three ways:
//! - applied: deleted;
//! - refused for good (`rejected`): deleted, and for a to-device message its local sender is told
//!   (a `direct_failed` notice, queued in the same database transaction as the deletion);
//! - deferred (backpressure, e.g. the recipient's queue is full): kept, and held back (with every
//!   later to-device message for the same recipient, so its order stays) until the peer's
//!   `retry_after_ms` has passed. Events for other recipients keep flowing meanwhile.
//!
//! On a managed server every instance runs workers, but a worker delivers only while its
//! instance holds the destination's lease ([`Cluster::hold_outbox`]), so the peer sees one
//! ordered stream; the others look again every [`LEASE_POLL`] and take over once a holder's
//! lease ran out. Events queued on an instance that does not hold the lease wake the holder
//! through the bus.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use mobium_client_api::server::encode_event;
use mobium_federation::{FedError, Federation};
use mobium_spec::client::{DirectFailed, ErrorBody, Event};
use mobium_spec::encoding;
use mobium_spec::federation::{FedEvent, MAX_EVENTS_PER_TXN, Query, Rejected, Transaction};
use mobium_spec::{MessageId, ServerName, UserId};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::cluster::{Cluster, OUTBOX_LEASE_TTL};
use crate::hub::Hub;
use crate::storage::{DirectFailureRow, SharedStore};

/// How often a worker of a managed instance looks again at a destination it does not hold the
/// lease of (or, holding it, at an idle one: events queued elsewhere may have had their bus
/// notice lost).
const LEASE_POLL: Duration = Duration::from_secs(1);

/// Encoded events per transaction, leaving room in the 4 MiB frame for the envelope.
const BATCH_BYTES: usize = mobium_spec::federation::MAX_FRAME_BYTES - 64 * 1024;

/// How many pending events a worker reads at a time when building a batch; events held back for
/// a deferred recipient are skipped, so this is more than one transaction's worth.
const PEEK_EVENTS: u32 = 4 * MAX_EVENTS_PER_TXN as u32;

/// How many such pages one attempt reads past held-back events before it waits (100,000 events).
const MAX_PAGES: usize = 25;

/// First retry delay after a failure.
const BACKOFF_START: Duration = Duration::from_millis(250);

/// While backing off longer than this, the worker probes the peer this often (a `ping` query,
/// a handful of packets), so delivery resumes within about this long of the peer coming back.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// A probe that gets no answer within this long failed.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

/// The wait before resending a deferred event when the peer named none.
const DEFAULT_DEFER: Duration = Duration::from_secs(1);
/// The longest a peer may make us hold a deferred event before trying again.
const MAX_DEFER: Duration = Duration::from_secs(60);

struct Worker {
    /// New events were queued.
    work: Notify,
    /// Retry now, even while backing off (the peer connected to us).
    kick: Notify,
    /// On a managed server: until when this instance surely holds the destination's lease.
    held_until: Mutex<Option<Instant>>,
}

impl Worker {
    fn holds(&self) -> bool {
        self.held_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t > Instant::now())
    }
}

/// What the outbox needs to tell a local user that a peer refused their message for good.
pub struct Notices {
    /// Live connections, for the `direct_failed` event.
    pub hub: Arc<Hub>,
    /// How long a notice waits for its acknowledgement.
    pub ttl: Duration,
}

/// Delivery workers, one per destination with pending events.
pub struct Outbox {
    store: SharedStore,
    federation: Federation,
    notices: Notices,
    workers: Mutex<HashMap<ServerName, Arc<Worker>>>,
    /// The workers' tasks, owned here so shutdown can wait for them.
    tasks: Mutex<tokio::task::JoinSet<()>>,
    backoff_cap: Duration,
    shutdown: watch::Receiver<bool>,
    /// On a managed server, the cluster whose leases decide who delivers.
    cluster: Option<Arc<Cluster>>,
    me: Weak<Outbox>,
}

/// What one delivery attempt achieved.
enum Progress {
    /// A transaction was acknowledged (something may have been deferred).
    Sent,
    /// Nothing is pending.
    Idle,
    /// Everything pending is held back until then.
    Held(Instant),
}

/// Recipients whose to-device messages are held back after the peer deferred one.
#[derive(Default)]
struct Holds {
    /// Recipient → not before.
    users: HashMap<UserId, Instant>,
    /// A deferred event of another kind holds everything after it.
    all: Option<Instant>,
}

/// What settling an event needs to know about it, kept beside the batch being sent.
enum Kind {
    /// A to-device message: held per recipient, its sender told when it is refused.
    Direct {
        id: MessageId,
        from: UserId,
        to: UserId,
    },
    /// Anything else: ordered with the whole destination.
    Other,
}

impl Kind {
    fn of(event: &FedEvent) -> Kind {
        match event {
            FedEvent::Direct(d) => Kind::Direct {
                id: d.id,
                from: d.from.clone(),
                to: d.to.clone(),
            },
            _ => Kind::Other,
        }
    }
}

impl Holds {
    fn forget_expired(&mut self, now: Instant) {
        self.users.retain(|_, until| *until > now);
        if self.all.is_some_and(|until| until <= now) {
            self.all = None;
        }
    }

    /// The time until which an event must wait, if it must.
    fn until(&self, event: &FedEvent) -> Option<Instant> {
        match event {
            FedEvent::Direct(d) => self.users.get(&d.to).copied(),
            _ => None,
        }
    }

    fn hold(&mut self, kind: &Kind, until: Instant) {
        match kind {
            Kind::Direct { to, .. } => {
                let slot = self.users.entry(to.clone()).or_insert(until);
                *slot = (*slot).max(until);
            }
            Kind::Other => self.all = Some(self.all.map_or(until, |a| a.max(until))),
        }
    }
}

impl Outbox {
    /// Creates the outbox and starts workers for destinations with events left from before.
    pub async fn start(
        store: SharedStore,
        federation: Federation,
        notices: Notices,
        backoff_cap: Duration,
        shutdown: watch::Receiver<bool>,
        cluster: Option<Arc<Cluster>>,
    ) -> Arc<Outbox> {
        let outbox = Arc::new_cyclic(|me| Outbox {
            store,
            federation,
            notices,
            workers: Mutex::new(HashMap::new()),
            tasks: Mutex::default(),
            backoff_cap,
            shutdown,
            cluster,
            me: me.clone(),
        });
        match outbox.store.outbox_destinations().await {
            Ok(dests) => {
                for d in dests {
                    outbox.wake(&d);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the outbox at start-up"),
        }
        outbox
    }

    fn worker(&self, dest: &ServerName) -> Arc<Worker> {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = workers.get(dest) {
            return w.clone();
        }
        let w = Arc::new(Worker {
            work: Notify::new(),
            kick: Notify::new(),
            held_until: Mutex::new(None),
        });
        workers.insert(dest.clone(), w.clone());
        if let Some(me) = self.me.upgrade() {
            let dest = dest.clone();
            let w2 = w.clone();
            self.tasks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .spawn(async move { me.run(dest, w2).await });
        }
        w
    }

    /// Waits (up to `limit`) for every worker to stop after the shutdown signal; a worker in the
    /// middle of a delivery finishes it first (its events stay in the outbox either way).
    pub async fn stopped(&self, limit: Duration) {
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        let all = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(limit, all).await.is_err() {
            tracing::warn!("outbox workers still delivering at shutdown; stopping them");
        }
    }

    /// New events for `dest` were committed (on a managed server: by this instance, so the
    /// lease holder is told if it is another).
    pub fn wake(&self, dest: &ServerName) {
        let w = self.worker(dest);
        w.work.notify_one();
        if let Some(c) = &self.cluster
            && !w.holds()
        {
            c.outbox_queued(dest);
        }
    }

    /// Another instance committed events for `dest`: look now, if this instance holds its lease.
    pub fn wake_here(&self, dest: &ServerName) {
        self.worker(dest).work.notify_one();
    }

    /// On a managed server, whether this worker may deliver now: takes or renews the lease when
    /// less than half of it is left. Always `true` elsewhere.
    async fn hold(&self, dest: &ServerName, w: &Worker) -> bool {
        let Some(cluster) = &self.cluster else {
            return true;
        };
        let now = Instant::now();
        let fresh = w
            .held_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t > now + OUTBOX_LEASE_TTL / 2);
        if fresh {
            return true;
        }
        let held = cluster.hold_outbox(dest).await;
        let was = std::mem::replace(
            &mut *w.held_until.lock().unwrap_or_else(|p| p.into_inner()),
            // Counted from before the request, so the local view never outlasts the lease.
            held.then_some(now + OUTBOX_LEASE_TTL),
        );
        if held && was.is_none() {
            tracing::info!(destination = %dest, instance = cluster.instance, "delivering this destination's outbox (lease taken)");
        }
        held
    }

    /// `dest` connected to us: retry at once even if backing off.
    pub fn kick(&self, dest: &ServerName) {
        let existing = self
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(dest)
            .cloned();
        if let Some(w) = existing {
            w.kick.notify_one();
            w.work.notify_one();
        }
    }

    /// Pending events for `dest`.
    pub async fn pending(&self, dest: &ServerName) -> u64 {
        self.store.outbox_len(dest).await.unwrap_or(0)
    }

    async fn run(self: Arc<Self>, dest: ServerName, w: Arc<Worker>) {
        let mut shutdown = self.shutdown.clone();
        let mut backoff = BACKOFF_START;
        let mut holds = Holds::default();
        loop {
            // Stop on shutdown, and when the server that started us is gone without one.
            if *shutdown.borrow() || shutdown.has_changed().is_err() {
                return;
            }
            if !self.hold(&dest, &w).await {
                tokio::select! {
                    _ = tokio::time::sleep(LEASE_POLL) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            match self.deliver_batch(&dest, &mut holds).await {
                Ok(Progress::Sent) => {
                    backoff = BACKOFF_START;
                }
                Ok(Progress::Idle) => {
                    backoff = BACKOFF_START;
                    let poll = async {
                        match self.cluster {
                            Some(_) => tokio::time::sleep(LEASE_POLL).await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        _ = w.work.notified() => {}
                        _ = poll => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Ok(Progress::Held(until)) => {
                    backoff = BACKOFF_START;
                    tokio::select! {
                        _ = tokio::time::sleep_until(until) => {}
                        _ = w.work.notified() => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Err(e) => {
                    let delay = jitter(backoff);
                    tracing::debug!(destination = %dest, error = %e, retry_in = ?delay, "federation delivery failed");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = w.kick.notified() => {}
                        _ = self.reachable_again(&dest, delay) => {
                            tracing::debug!(destination = %dest, "peer answers again; retrying now");
                        }
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(self.backoff_cap);
                }
            }
        }
    }

    /// Completes once a probe finds `dest` answering; never, for waits too short to probe.
    async fn reachable_again(&self, dest: &ServerName, wait: Duration) {
        if wait <= PROBE_INTERVAL {
            return std::future::pending().await;
        }
        loop {
            tokio::time::sleep(PROBE_INTERVAL).await;
            let probe = self.federation.query(dest, Query::Ping);
            if let Ok(Ok(_)) = tokio::time::timeout(PROBE_TIMEOUT, probe).await {
                return;
            }
        }
    }

    /// Sends one batch of the oldest pending events that are not held back.
    async fn deliver_batch(
        &self,
        dest: &ServerName,
        holds: &mut Holds,
    ) -> Result<Progress, FedError> {
        let now = Instant::now();
        holds.forget_expired(now);
        let mut seqs = Vec::new();
        let mut events = Vec::new();
        let mut dropped = Vec::new();
        let mut held_until: Option<Instant> = holds.all;
        let mut size = 0;
        let mut after = 0;
        let mut pending = false;
        // Page past events held back for a deferred recipient, so that one recipient's backlog
        // never starves the others (bounded, so a huge backlog costs a bounded scan).
        'pages: for _ in 0..MAX_PAGES {
            let page = self
                .store
                .outbox_peek_after(dest, after, PEEK_EVENTS)
                .await
                .map_err(|e| FedError::Protocol(format!("outbox read: {e}")))?;
            let full = page.len() == PEEK_EVENTS as usize;
            pending |= !page.is_empty();
            if holds.all.is_some() {
                break;
            }
            for (seq, bytes) in page {
                after = seq;
                if events.len() == MAX_EVENTS_PER_TXN {
                    break 'pages;
                }
                if bytes.len() > BATCH_BYTES {
                    tracing::error!(destination = %dest, seq, bytes = bytes.len(), "dropping an event too large for any federation frame");
                    dropped.push(seq);
                    continue;
                }
                if size + bytes.len() > BATCH_BYTES && !events.is_empty() {
                    break 'pages;
                }
                match encoding::decode::<FedEvent>(&bytes) {
                    Ok(ev) => {
                        if let Some(until) = holds.until(&ev) {
                            held_until = Some(held_until.map_or(until, |h| h.min(until)));
                            continue;
                        }
                        size += bytes.len();
                        seqs.push(seq);
                        events.push(ev);
                    }
                    Err(e) => {
                        tracing::error!(destination = %dest, seq, error = %e, "dropping an undecodable outbox event");
                        dropped.push(seq);
                    }
                }
            }
            if !events.is_empty() || !full {
                break;
            }
        }
        if !pending {
            return Ok(Progress::Idle);
        }
        if !dropped.is_empty() {
            let _ = self.store.outbox_remove(dest, &dropped).await;
        }
        if events.is_empty() {
            return Ok(match held_until {
                Some(until) if dropped.is_empty() => Progress::Held(until),
                _ => Progress::Sent,
            });
        }
        let n = events.len();
        let kinds: Vec<Kind> = events.iter().map(Kind::of).collect();
        let ack = self
            .federation
            .send_transaction(
                dest,
                Transaction {
                    events,
                    ephemeral: Vec::new(),
                },
            )
            .await?;
        // Deferred events stay; every later to-device message for the same recipient is held
        // with them (the receiver defers those too, but we need not send them meanwhile).
        let mut keep = vec![false; n];
        for d in &ack.deferred {
            let Some(i) = index_in(d, n) else { continue };
            keep[i] = true;
            let wait = d
                .error
                .retry_after_ms
                .map_or(DEFAULT_DEFER, Duration::from_millis)
                .min(MAX_DEFER);
            holds.hold(&kinds[i], Instant::now() + wait);
        }
        let mut failures = Vec::new();
        for r in &ack.rejected {
            let Some(i) = index_in(r, n) else { continue };
            if keep[i] {
                continue;
            }
            tracing::warn!(destination = %dest, index = r.index, code = %r.error.code, message = %r.error.message, "peer refused an event for good");
            if let Some(f) = self.failure(&kinds[i], &r.error) {
                failures.push(f);
            }
        }
        let settled: Vec<u64> = seqs
            .iter()
            .zip(&keep)
            .filter(|(_, kept)| !**kept)
            .map(|(seq, _)| *seq)
            .collect();
        match self.store.outbox_settle(dest, &settled, &failures).await {
            Ok(_) => self.tell(&failures),
            Err(e) => {
                tracing::error!(destination = %dest, error = %e, "cannot settle delivered events; they will be sent again");
            }
        }
        tracing::debug!(destination = %dest, events = n, deferred = ack.deferred.len(), rejected = ack.rejected.len(), "delivered");
        Ok(Progress::Sent)
    }

    /// The notice for the local sender of a to-device message refused for good.
    fn failure(&self, kind: &Kind, error: &ErrorBody) -> Option<DirectFailureRow> {
        let Kind::Direct { id, from, to } = kind else {
            return None;
        };
        let ttl = u64::try_from(self.notices.ttl.as_millis()).unwrap_or(u64::MAX);
        Some(DirectFailureRow {
            id: *id,
            sender: from.clone(),
            recipient: to.clone(),
            code: error.code,
            message: error.message.clone(),
            expires_at: crate::now_ms().saturating_add(ttl),
        })
    }

    /// Pushes committed failure notices to their senders' open connections.
    fn tell(&self, failures: &[DirectFailureRow]) {
        for f in failures {
            let frame = encode_event(&Event::DirectFailed(failed_event(f)));
            self.notices.hub.push(&f.sender.key, &frame);
        }
    }
}

/// The client event for a queued failure notice.
pub fn failed_event(f: &DirectFailureRow) -> DirectFailed {
    DirectFailed {
        id: f.id,
        to: f.recipient.clone(),
        error: ErrorBody::new(f.code, f.message.clone()),
    }
}

/// The index an ack entry names, if it is one of the `n` events sent.
fn index_in(entry: &Rejected, n: usize) -> Option<usize> {
    usize::try_from(entry.index).ok().filter(|i| *i < n)
}

/// `delay` scaled by a random factor in [0.5, 1.0), so peers coming back are not all retried
/// in the same instant.
fn jitter(delay: Duration) -> Duration {
    let r = getrandom::u32().unwrap_or(u32::MAX / 2);
    let factor = 0.5 + f64::from(r) / (f64::from(u32::MAX) * 2.0);
    delay.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use mobium_spec::federation::FedDirect;
    use mobium_spec::{Keypair, MessageId, UserId};

    use super::*;

    fn user(seed: u8) -> UserId {
        let key = Keypair::from_seed([seed; 32]).public();
        UserId::new(key, "b.test".parse().expect("server name"))
    }

    fn direct_to(to: &UserId) -> FedEvent {
        FedEvent::Direct(FedDirect {
            id: MessageId::new(4_194_304_001).expect("id"),
            from: user(9),
            to: to.clone(),
            ciphertext: vec![1],
            sent_at: 0,
        })
    }

    /// A deferred recipient is held back until the peer's retry-after and no longer; other
    /// recipients are not held at all (the clock is tokio's, paused: no real waiting).
    #[tokio::test(start_paused = true)]
    async fn a_hold_lasts_until_its_deadline_and_only_for_its_recipient() {
        let (bob, carol) = (user(1), user(2));
        let mut holds = Holds::default();
        let until = Instant::now() + Duration::from_millis(250);
        holds.hold(&Kind::of(&direct_to(&bob)), until);
        // A later, shorter deferral does not shorten the hold.
        holds.hold(
            &Kind::of(&direct_to(&bob)),
            Instant::now() + Duration::from_millis(10),
        );
        assert_eq!(holds.until(&direct_to(&bob)), Some(until));
        assert_eq!(holds.until(&direct_to(&carol)), None);

        tokio::time::advance(Duration::from_millis(249)).await;
        holds.forget_expired(Instant::now());
        assert_eq!(holds.until(&direct_to(&bob)), Some(until));
        tokio::time::advance(Duration::from_millis(1)).await;
        holds.forget_expired(Instant::now());
        assert_eq!(holds.until(&direct_to(&bob)), None);
    }

    /// Any other deferred event holds the whole destination, until its deadline.
    #[tokio::test(start_paused = true)]
    async fn a_deferred_hosted_event_holds_everything_until_its_deadline() {
        let mut holds = Holds::default();
        let until = Instant::now() + Duration::from_secs(2);
        holds.hold(&Kind::Other, until);
        assert_eq!(holds.all, Some(until));
        tokio::time::advance(Duration::from_secs(2)).await;
        holds.forget_expired(Instant::now());
        assert_eq!(holds.all, None);
    }

    /// Retry delays are spread over [0.5, 1.0) of the backoff, so peers that come back are not
    /// all retried in the same instant.
    #[test]
    fn jitter_stays_within_half_and_all_of_the_delay() {
        let delay = Duration::from_secs(8);
        for _ in 0..1000 {
            let d = jitter(delay);
            assert!(d >= delay / 2 && d < delay, "{d:?}");
        }
    }
}
