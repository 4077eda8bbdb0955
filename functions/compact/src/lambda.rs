//! Door 1: AWS Lambda, invoked by an EventBridge schedule (hourly). The event's content does not
//! matter: every run works out from the store what is left to do.

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use object_store::ObjectStore;

use crate::run::{CompactConfig, Report, run as run_once};

/// Runs the Lambda runtime loop. An error return makes the schedule's next run retry the hours
/// left undone; nothing is marked done that was not.
pub async fn run(store: Arc<dyn ObjectStore>, cfg: CompactConfig) -> Result<(), Error> {
    let (store, cfg) = (&store, &cfg);
    lambda_runtime::run(service_fn(
        move |_ev: LambdaEvent<serde_json::Value>| async move {
            let report: Report = run_once(store, cfg, natlake_core::time::now_micros()).await?;
            Ok::<Report, Error>(report)
        },
    ))
    .await
}
