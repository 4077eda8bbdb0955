//! Where normalize's CPU-bound work (parse, enrich, encode one raw object) runs: rayon's pool,
//! one thread per core, instead of tokio's blocking pool.
//!
//! The blocking pool hands each task to whichever of its idle threads wakes, and glibc's malloc
//! keeps what a thread freed in that thread's arena; over a run of objects every pool thread
//! came to hold one object's peak working set (a 266-object hour: 259–275 MiB peak RSS for work
//! that needs 43 MiB per object, 10 threads). A fixed pool bounds that to one working set per
//! core, and more CPU jobs than cores at once would gain nothing anyway.

/// Sizes the CPU pool for `workers` objects at once: that many threads, at most one per core.
/// Call it before the first object (the pool is built once per process; later calls only log).
///
/// Without it the pool has a thread per core whatever `--workers` says, and each job handed to
/// the pool wakes an idle thread that finds nothing to take, spins (`sched_yield`) and sleeps
/// again: `normalize run --workers 1` on 2 cores spent 1.5–6 % more CPU for the same objects
/// (bench/README.md, session 21).
pub fn size_pool(workers: usize) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = pool_threads(workers, cores);
    if let Err(e) = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
    {
        tracing::debug!(threads, "CPU pool already built: {e}");
    }
}

fn pool_threads(workers: usize, cores: usize) -> usize {
    workers.clamp(1, cores.max(1))
}

/// Runs `f` on the CPU pool and waits for it without blocking the async workers. Err when `f`
/// panicked (the panic is reported, not propagated into the caller's task).
pub async fn run<F, R>(f: F) -> Result<R, String>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        // The receiver is gone only when the caller was cancelled: nothing to report to.
        let _ = tx.send(out);
    });
    match rx.await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(panic)) => Err(panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panicked".into())),
        Err(_) => Err("the CPU pool dropped the job".into()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pool_has_a_thread_per_worker_up_to_the_cores() {
        assert_eq!(super::pool_threads(1, 2), 1);
        assert_eq!(super::pool_threads(0, 2), 1);
        assert_eq!(super::pool_threads(2, 8), 2);
        assert_eq!(super::pool_threads(16, 4), 4);
        assert_eq!(super::pool_threads(3, 0), 1);
    }

    #[tokio::test]
    async fn returns_the_result_and_reports_a_panic() {
        assert_eq!(super::run(|| 6 * 7).await, Ok(42));
        let e = super::run(|| -> u8 { panic!("bad object") })
            .await
            .unwrap_err();
        assert_eq!(e, "bad object");
    }
}
