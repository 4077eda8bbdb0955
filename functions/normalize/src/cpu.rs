//! Where normalize's CPU-bound work (parse, enrich, encode one raw object) runs: rayon's pool,
//! one thread per core, instead of tokio's blocking pool.
//!
//! The blocking pool hands each task to whichever of its idle threads wakes, and glibc's malloc
//! keeps what a thread freed in that thread's arena; over a run of objects every pool thread
//! came to hold one object's peak working set (a 266-object hour: 259–275 MiB peak RSS for work
//! that needs 43 MiB per object, 10 threads). A fixed pool bounds that to one working set per
//! core, and more CPU jobs than cores at once would gain nothing anyway.

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
    #[tokio::test]
    async fn returns_the_result_and_reports_a_panic() {
        assert_eq!(super::run(|| 6 * 7).await, Ok(42));
        let e = super::run(|| -> u8 { panic!("bad object") })
            .await
            .unwrap_err();
        assert_eq!(e, "bad object");
    }
}
