//! The heartbeat: every `sink.heartbeat_interval` the relay rewrites
//! `_state/relays/<relay>.json` ([`natlake_raw::heartbeat`]) with, for each input kind, the time
//! before which everything it received is in a stored raw object. Lookups read it to tell a
//! relay that has delivered from one that is behind or gone.
//!
//! Up to when a kind is stored is the oldest receive time among what is not: the open batch,
//! the batches in the spool (closed, not yet confirmed by the store), the chunks that sources
//! hold while waiting for room in the queue; else the time of the mark. The mark is sent
//! through the batcher's queue [`IN_HAND`] after its time is taken, so what a source received
//! before it has been handed over (or is held waiting for room) by then, and everything handed
//! over before the mark is in an open batch or the spool by its answer.
//!
//! Besides every `heartbeat_interval`, a heartbeat follows each upload (at most one per
//! [`AFTER_UPLOAD_GAP`]), so a question about the last minute stops waiting soon after the
//! batch that holds its answer lands.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use natlake_raw::InputKind;
use natlake_raw::heartbeat::{self, Heartbeat, KindProgress};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use tokio::sync::Notify;

use crate::batch::{OpenOldest, QueueTx, slot};
use crate::spool::Spool;
use crate::{Counters, DropReason, DynStore, RateLimit, RelayError, now_ns};

/// How long a source may hold what it received before handing it to the queue without waiting
/// for room (one receive call's messages, stamped and handed over at once): generous, since it
/// only delays the heartbeat.
const IN_HAND: Duration = Duration::from_secs(1);

/// The least time between heartbeats that uploads prompt (the interval's, if shorter).
const AFTER_UPLOAD_GAP: Duration = Duration::from_secs(5);

static ERROR_LOG: RateLimit = RateLimit::new(Duration::from_secs(60));

/// The last heartbeat, kept in the spool directory too: a start that finds one not marked
/// `stopped` follows an unclean stop, which lost what was received after its claim and not yet
/// spooled (the open batch, the queue).
const LOCAL: &str = ".heartbeat.json";

/// Reads the previous run's local heartbeat and, after an unclean stop, records a span of
/// unknown loss per kind from its claim to now; then marks this run as started (not stopped),
/// so that a run killed before its first heartbeat is caught too.
pub(crate) fn recover(
    spool_dir: &std::path::Path,
    relay_id: &str,
    kinds: &[InputKind],
    counters: &Counters,
) {
    let path = spool_dir.join(LOCAL);
    let now = now_ns();
    if let Ok(bytes) = std::fs::read(&path) {
        match serde_json::from_slice::<Heartbeat>(&bytes) {
            Ok(prev) if !prev.stopped => {
                for (kind, p) in &prev.kinds {
                    let Some(kind) = InputKind::parse(kind) else {
                        continue;
                    };
                    counters.drops.record(
                        kind,
                        heartbeat::UNCLEAN_STOP,
                        0,
                        p.complete_through_us.saturating_mul(1000),
                        now,
                    );
                }
                tracing::warn!(
                    since_us = prev.kinds.values().map(|k| k.complete_through_us).min(),
                    "the previous run did not stop cleanly: what it received and had not spooled is lost (recorded as unclean_stop)"
                );
            }
            Ok(_) => {}
            Err(e) => {
                // Written with fsync before its rename, so this is damage, not a torn write:
                // how it stopped is unknown, so count it as unclean from an hour before the
                // file's last write (a guess, said so in the log).
                let since = std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos() as i64 - 3_600_000_000_000);
                for &kind in kinds {
                    counters
                        .drops
                        .record(kind, heartbeat::UNCLEAN_STOP, 0, since, now);
                }
                tracing::error!(file = %path.display(), error = %e, "the local heartbeat is unreadable: recording an unclean stop from an hour before its last write");
            }
        }
    }
    let started = Heartbeat {
        relay: natlake_raw::key::sanitize_relay_id(relay_id),
        written_us: now / 1000,
        started_us: now / 1000,
        stopped: false,
        kinds: kinds
            .iter()
            .map(|k| {
                let p = KindProgress {
                    complete_through_us: now / 1000,
                    spooled_batches: 0,
                };
                (k.as_str().to_owned(), p)
            })
            .collect(),
        dropped: BTreeMap::new(),
    };
    write_local(spool_dir, &started);
}

/// Writes the local copy (temp file, fsync, rename); a failure is logged, not fatal.
fn write_local(spool_dir: &std::path::Path, hb: &Heartbeat) {
    use std::io::Write;
    let tmp = spool_dir.join(".tmp-heartbeat.json");
    let result = serde_json::to_vec(hb)
        .map_err(std::io::Error::other)
        .and_then(|b| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&b)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, spool_dir.join(LOCAL)));
    if let Err(e) = result
        && let Some(suppressed) = ERROR_LOG.allow()
    {
        tracing::warn!(dir = %spool_dir.display(), error = %e, suppressed, "cannot keep the local heartbeat");
    }
}

/// Everything a heartbeat is made from.
pub(crate) struct Beat {
    pub relay_id: String,
    pub started_us: i64,
    /// The kinds the configured sources produce.
    pub kinds: Vec<InputKind>,
    pub store: DynStore,
    pub spool: Arc<Spool>,
    pub queue: QueueTx,
    pub counters: Arc<Counters>,
}

impl Beat {
    /// The relay's progress at `mark_ns`. `open` is the batcher's answer to the mark (`None`
    /// after the batcher stopped: nothing is open or in hand then).
    fn progress(&self, mark_ns: i64, open: Option<OpenOldest>, stopped: bool) -> Heartbeat {
        let waiting = self.queue.waiting().oldest();
        let floor_us = mark_ns.div_euclid(1000);
        let mut kinds: BTreeMap<&'static str, KindProgress> = BTreeMap::new();
        for &k in &self.kinds {
            entry(&mut kinds, k, floor_us);
        }
        for kind in InputKind::ALL {
            let i = slot(kind);
            for ns in [open.and_then(|o| o[i]), waiting[i]].into_iter().flatten() {
                older(entry(&mut kinds, kind, floor_us), ns);
            }
        }
        match self.spool.list() {
            Ok(entries) => {
                for e in entries {
                    let Some(kind) = spooled_kind(&e.key) else {
                        continue;
                    };
                    // A file from an older relay does not name its oldest receive time: the
                    // start of the hour before its batch's, which no record of it precedes
                    // by more than the queue's delay.
                    let ns = e.oldest_ns.unwrap_or_else(|| hour_before_ns(&e.key));
                    let k = entry(&mut kinds, kind, floor_us);
                    older(k, ns);
                    k.spooled_batches += 1;
                }
            }
            Err(err) => {
                // Nothing can be claimed for any kind without the spool's contents.
                for k in kinds.values_mut() {
                    k.complete_through_us = k.complete_through_us.min(self.started_us);
                }
                if let Some(suppressed) = ERROR_LOG.allow() {
                    tracing::error!(dir = %self.spool.dir().display(), error = %err, suppressed, "heartbeat: cannot list the spool");
                }
            }
        }
        let dropped = DropReason::ALL
            .iter()
            .filter_map(|r| {
                let n = self.counters.dropped_messages[r.index()]
                    .load(std::sync::atomic::Ordering::Relaxed);
                (n > 0).then(|| (r.as_str().to_string(), n))
            })
            .collect();
        Heartbeat {
            relay: natlake_raw::key::sanitize_relay_id(&self.relay_id),
            written_us: now_ns() / 1000,
            started_us: self.started_us,
            stopped,
            kinds: kinds.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            dropped,
        }
    }

    /// Marks, then writes the heartbeat.
    async fn beat(&self) -> Result<Heartbeat, BeatError> {
        let mark_ns = now_ns();
        tokio::time::sleep(IN_HAND).await;
        let open = self.queue.mark().await?;
        let hb = self.progress(mark_ns, Some(open), false);
        self.put(&hb).await?;
        Ok(hb)
    }

    /// The last heartbeat, after the batcher stopped and the uploader put what it could.
    pub async fn last(&self) -> Result<Heartbeat, BeatError> {
        let hb = self.progress(now_ns(), None, true);
        self.put(&hb).await?;
        Ok(hb)
    }

    /// Writes the spans of dropped messages that changed, before the heartbeat whose claim
    /// passes them; what fails is written at the next heartbeat.
    async fn put_drops(&self) -> Result<(), BeatError> {
        let relay = natlake_raw::key::sanitize_relay_id(&self.relay_id);
        let spans = self.counters.drops.take_changed(&relay, now_ns());
        let mut failed = Vec::new();
        let mut first_error = None;
        for d in spans {
            let key = ObjectPath::from(heartbeat::drops_key(&relay, &d.kind, d.first_us));
            let body = serde_json::to_vec(&d).map_err(|e| BeatError::Encode(e.to_string()))?;
            if let Err(e) = self.store.put(&key, PutPayload::from(body)).await {
                first_error.get_or_insert(e);
                failed.push(d);
            }
        }
        self.counters.drops.retry(&failed);
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    async fn put(&self, hb: &Heartbeat) -> Result<(), BeatError> {
        // An fsync may stall: off the runtime's threads.
        let (dir, local) = (self.spool.dir().to_path_buf(), hb.clone());
        let _ = tokio::task::spawn_blocking(move || write_local(&dir, &local)).await;
        self.put_drops().await?;
        let body = serde_json::to_vec_pretty(hb).map_err(|e| BeatError::Encode(e.to_string()))?;
        let key = ObjectPath::from(heartbeat::key(&self.relay_id));
        self.store.put(&key, PutPayload::from(body)).await?;
        ::metrics::counter!("edge_relay_heartbeats_total").increment(1);
        let oldest = hb.kinds.values().map(|k| k.complete_through_us).min();
        if let Some(us) = oldest {
            ::metrics::gauge!("edge_relay_stored_through_seconds").set(us as f64 / 1e6);
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum BeatError {
    #[error(transparent)]
    Relay(#[from] RelayError),
    #[error("put: {0}")]
    Store(#[from] object_store::Error),
    #[error("encode: {0}")]
    Encode(String),
}

/// How long a stop waits for a heartbeat under way (its put may hang on an unreachable store).
const STOP_WAIT: Duration = Duration::from_secs(3);

/// The running heartbeat task.
pub(crate) struct HeartbeatTask {
    beat: Arc<Beat>,
    stop: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl HeartbeatTask {
    /// `uploaded` is poked by the uploader after each batch the store confirmed.
    pub fn start(beat: Beat, interval: Duration, uploaded: Arc<Notify>) -> Self {
        let beat = Arc::new(beat);
        let stop = Arc::new(Notify::new());
        let task = tokio::spawn(run(beat.clone(), interval, uploaded, stop.clone()));
        Self { beat, stop, task }
    }

    /// Stops the task (cutting short a heartbeat that takes too long) and gives back what the
    /// last heartbeat needs.
    pub async fn stop(self) -> Arc<Beat> {
        self.stop.notify_one();
        let abort = self.task.abort_handle();
        if tokio::time::timeout(STOP_WAIT, self.task).await.is_err() {
            abort.abort();
        }
        self.beat
    }
}

async fn run(beat: Arc<Beat>, interval: Duration, uploaded: Arc<Notify>, stop: Arc<Notify>) {
    let gap = interval.min(AFTER_UPLOAD_GAP);
    loop {
        let started = tokio::time::Instant::now();
        match beat.beat().await {
            Ok(hb) => tracing::debug!(kinds = ?hb.kinds, "heartbeat written"),
            Err(BeatError::Relay(RelayError::Stopped)) => return,
            Err(err) => {
                ::metrics::counter!("edge_relay_heartbeat_errors_total").increment(1);
                if let Some(suppressed) = ERROR_LOG.allow() {
                    tracing::warn!(error = %err, suppressed, "cannot write the heartbeat; retrying at the next interval");
                }
            }
        }
        tokio::select! {
            _ = stop.notified() => return,
            _ = tokio::time::sleep_until(started + interval) => {}
            _ = uploaded.notified() => {
                tokio::select! {
                    _ = stop.notified() => return,
                    _ = tokio::time::sleep_until(started + gap) => {}
                }
            }
        }
    }
}

fn entry<'a>(
    kinds: &'a mut BTreeMap<&'static str, KindProgress>,
    kind: InputKind,
    floor_us: i64,
) -> &'a mut KindProgress {
    kinds.entry(kind.as_str()).or_insert(KindProgress {
        complete_through_us: floor_us,
        spooled_batches: 0,
    })
}

/// Lowers a kind's claim to a receive time (ns) of something not yet stored.
fn older(k: &mut KindProgress, ns: i64) {
    k.complete_through_us = k.complete_through_us.min(ns.div_euclid(1000));
}

/// The input kind of a spooled batch's key (`raw/<kind>/…`).
fn spooled_kind(key: &str) -> Option<InputKind> {
    InputKind::parse(natlake_raw::key::kind_of(key)?)
}

/// The start of the hour before a raw key's `hour=` label, in ns (0 when there is none).
fn hour_before_ns(key: &str) -> i64 {
    natlake_raw::key::hour_of(key)
        .and_then(natlake_raw::key::parse_hour_label)
        .map_or(0, |secs| (secs - 3600) * 1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spooled_keys_give_kind_and_a_floor() {
        let key = "raw/ipfix/hour=2026-11-24T10/r1_a.nlraw.zst";
        assert_eq!(spooled_kind(key), Some(InputKind::Ipfix));
        assert_eq!(spooled_kind("other/x"), None);
        // 2026-11-24T09:00:00Z
        assert_eq!(hour_before_ns(key), 1_795_510_800 * 1_000_000_000);
        assert_eq!(hour_before_ns("raw/ipfix/r1_a.nlraw.zst"), 0);
    }
}
