//! Door 1: AWS Lambda, triggered by S3 ObjectCreated notifications on `raw/`.
//!
//! An error return makes Lambda retry the event and, after its retries, send it to the
//! configured on-failure destination (the dead-letter queue): nothing is dropped here.

use std::sync::Arc;

use aws_lambda_events::s3::S3Event;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use object_store::ObjectStore;

use crate::events::{StoreScope, raw_keys};
use crate::handler::{NormalizeConfig, Report, normalize_object};

pub async fn handle(
    store: &Arc<dyn ObjectStore>,
    scope: &StoreScope,
    cfg: &NormalizeConfig,
    event: S3Event,
) -> Result<Vec<Report>, Error> {
    let keys = raw_keys(&event, scope)?;
    let mut reports = Vec::with_capacity(keys.len());
    for key in keys {
        // Failures here go to the failure queue, not to dead letters.
        reports.push(normalize_object(store, &key, cfg).await?);
    }
    Ok(reports)
}

/// Runs the Lambda runtime loop. The store and config are built once per cold start.
pub async fn run(
    store: Arc<dyn ObjectStore>,
    scope: StoreScope,
    cfg: NormalizeConfig,
) -> Result<(), Error> {
    // An invocation normalizes its objects one after another: one CPU job at a time.
    crate::cpu::size_pool(1);
    let (store, scope, cfg) = (&store, &scope, &cfg);
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<S3Event>| async move {
        handle(store, scope, cfg, ev.payload).await
    }))
    .await
}
