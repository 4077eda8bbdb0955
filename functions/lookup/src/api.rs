//! HTTP routes. User input never causes a 500: bad parameters are 400 with a JSON reason,
//! unreadable partition objects are listed in the answer's `errors`.

use std::sync::Arc;

use axum::extract::{Extension, Query, Request, State};
use axum::http::StatusCode;
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use natlake_core::correlate::Candidate;
use natlake_core::time::format_time;
use natlake_query::attribution::{self, Answer};
use natlake_query::sessions::{EventFilter, SessionsQuery};
use natlake_query::{Lake, QueryError, sessions};
use serde_json::{Value, json};

use crate::access::{ApiKeys, Audit, Caller};
use crate::params::{self, Params};
use crate::tail;

#[derive(Clone)]
pub struct Api {
    pub lake: Arc<Lake>,
    keys: Arc<ApiKeys>,
    audit: Audit,
}

/// On AWS Lambda behind a function URL or API Gateway with IAM auth, AWS has verified the
/// caller's signature before the request reaches us: the principal it names is the audit's "who".
fn iam_caller(req: &Request) -> Option<String> {
    use lambda_http::request::RequestContext;
    let arn = match req.extensions().get::<RequestContext>()? {
        RequestContext::ApiGatewayV2(ctx) => {
            let iam = ctx.authorizer.as_ref()?.iam.as_ref()?;
            iam.user_arn.clone().or_else(|| iam.caller_id.clone())
        }
        RequestContext::ApiGatewayV1(ctx) => ctx
            .identity
            .user_arn
            .clone()
            .or_else(|| ctx.identity.caller.clone()),
        _ => None,
    }?;
    Some(format!("iam:{arn}"))
}

/// API keys, when configured: 401 without one, 403 with one that is not ours. The caller's name
/// goes with the request to the audit record.
async fn authenticate(State(api): State<Api>, mut req: Request, next: Next) -> Response {
    let caller = if let Some(who) = iam_caller(&req) {
        Caller(who)
    } else if api.keys.is_empty() || req.uri().path() == "/healthz" {
        Caller("anonymous".into())
    } else {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match presented.map(|k| api.keys.who(k.trim())) {
            None => {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "an API key is required: Authorization: Bearer <key>",
                );
            }
            Some(None) => {
                metrics::counter!("natlake_lookup_rejected_keys_total").increment(1);
                return error(StatusCode::FORBIDDEN, "this API key is not accepted");
            }
            Some(Some(name)) => Caller(name.to_owned()),
        }
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// Records the request, then returns the answer; an answer that cannot be recorded is not given.
async fn audited(
    api: &Api,
    caller: &Caller,
    endpoint: &str,
    asked: Value,
    answered: Value,
    answer: Value,
) -> Response {
    match api.audit.record(caller, endpoint, asked, answered).await {
        Ok(_) => Json(answer).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "audit record could not be written; answer withheld");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("audit log unavailable, answer withheld: {e}"),
            )
        }
    }
}

/// What the audit keeps of an attribution answer: who was named, and how sure.
fn answer_summary(a: &Value) -> Value {
    json!({
        "matches": a["matches"].as_array().map(|m| m.iter().map(|c| json!({
            "src_ip": c["src_ip"], "src_port": c["src_port"], "subscriber": c["subscriber"],
            "site": c["site"],
            "start": c["start"], "end": c["end"], "source": c["source"],
        })).collect::<Vec<_>>()),
        "ambiguous": a["ambiguous"],
        "errors": a["errors"].as_array().map(Vec::len),
        "unread": a["unread_total"],
        "accepted_losses": a["accepted_losses"].as_array().map(Vec::len),
        "error": a.get("error"),
    })
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({"error": msg.into()}))).into_response()
}

fn query_error(e: QueryError) -> Response {
    match e {
        QueryError::BadRequest(m) => error(StatusCode::BAD_REQUEST, m),
        QueryError::Store(e) => {
            tracing::warn!(error = %e, "store unavailable");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("store unavailable: {e}"),
            )
        }
        other => {
            tracing::error!(error = %other, "lookup failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, other.to_string())
        }
    }
}

/// Log candidates cite raw records; computed ones cite the deterministic NAT mapping (its id and
/// period) they came from.
fn evidence_json(c: &Candidate) -> Vec<Value> {
    match &c.rule {
        Some(r) => vec![json!({
            "source": "deterministic",
            "config": r.config,
            "entry": r.entry,
            "valid_from": format_time(r.valid_from),
            "valid_until": r.valid_until.map(format_time),
            "order": r.order,
            "inside_prefix_len": r.inside_prefix_len,
            // Junos with a block size that does not divide its port range has two readings;
            // a contested candidate is one the other reading contradicts.
            "reading": r.reading,
            "contested": r.contested,
        })],
        None => c
            .evidence
            .iter()
            .map(|e| json!({"key": e.key, "record": e.record}))
            .collect(),
    }
}

fn candidate_json(a: &Answer, c: &Candidate) -> Value {
    let e = a.enrichment_of(c);
    json!({
        "source": if c.rule.is_some() { "deterministic" } else { "logs" },
        "src_ip": c.src_ip.map(|i| i.to_string()),
        "src_port": c.src_port,
        "x_ip": c.x_ip.to_string(),
        "x_port": c.x_port,
        "x_port_end": c.x_port_end,
        "protocol": c.protocol,
        "vrf": c.vrf,
        "device": c.device,
        "start": format_time(c.start),
        "start_known": c.start_known,
        "end": c.end.map(format_time),
        "distance_ms": c.distance / 1000,
        "subscriber": c.subscriber,
        // Subscribers the events name besides `subscriber`, and who held `src_ip` at the
        // question's time by the identity sources (either differing makes it ambiguous).
        "other_subscribers": c.other_subscribers,
        "subscriber_at_time": c.subscriber_at_time,
        "site": e.and_then(|e| e.site.as_deref()),
        "prefix": e.and_then(|e| e.prefix.as_deref()),
        "role": e.and_then(|e| e.role.as_deref()),
        "destinations": c.destinations.iter().map(|(ip, port)| json!({"dst_ip": ip.map(|i| i.to_string()), "dst_port": port})).collect::<Vec<_>>(),
        // The span of its events that were read, and why they do not establish the holding.
        "first_seen": c.rule.is_none().then(|| format_time(c.first_seen)),
        "last_seen": c.rule.is_none().then(|| format_time(c.last_seen)),
        "doubts": c.doubts,
        "evidence": evidence_json(c),
    })
}

/// The JSON body of an attribution answer (shared by the HTTP API and `natlake lookup`).
pub fn answer_json(q: &attribution::Question, a: &Answer) -> Value {
    json!({
        "query": {
            "ip": q.ip.to_string(), "port": q.port, "at": format_time(q.at), "protocol": q.protocol,
            "window_ms": q.window / 1000,
            "dst_ip": q.dst_ip.map(|i| i.to_string()), "dst_port": q.dst_port,
        },
        "matches": a.attribution.matches.iter().map(|c| candidate_json(a, c)).collect::<Vec<_>>(),
        "ambiguous": a.attribution.ambiguous,
        "read_from": format_time(a.read_from),
        "read_until": format_time(a.read_until),
        "carry_hour": a.carry_hour,
        "objects_read": a.objects,
        "errors": a.errors,
        // Raw objects not (yet) normalized and partition objects set aside, in the hours read.
        "unread": a.unread,
        "unread_total": a.unread_total,
        // Raw objects lost whose loss an operator accepted: said, but not ambiguous.
        "accepted_losses": a.accepted_losses,
        "deterministic": a.deterministic,
    })
}

async fn attribution_handler(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Query(p): Query<Params>,
) -> Response {
    let q = match params::question(&p) {
        Ok(q) => q,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let t = std::time::Instant::now();
    match attribution::attribute(&api.lake, &q).await {
        Ok(a) => {
            let t_attr = t.elapsed();
            let answer = answer_json(&q, &a);
            let summary = answer_summary(&answer);
            let r = audited(&api, &caller, "attribution", json!(p), summary, answer).await;
            tracing::debug!(attribute = ?t_attr, total = ?t.elapsed(), "timing handler");
            r
        }
        Err(e) => query_error(e),
    }
}

/// A live tail is audited when it starts (what was asked); what it streamed is not recorded.
async fn tail_handler(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Query(p): Query<tail::TailParams>,
) -> Response {
    let t = match p.validate() {
        Ok(t) => t,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let asked = json!({"table": p.table, "ip": p.ip, "poll_ms": p.poll_ms, "max_secs": p.max_secs});
    match api
        .audit
        .record(&caller, "tail", asked, json!({"stream": true}))
        .await
    {
        Ok(_) => tail::sse(api.lake.clone(), t).into_response(),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("audit log unavailable, tail refused: {e}"),
        ),
    }
}

/// Answers of a batch run this many at a time.
const BATCH_CONCURRENCY: usize = 8;

async fn batch_handler(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Response {
    let items = match params::batch(&body) {
        Ok(items) => items,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let lake = &api.lake;
    let answers: Vec<Value> = futures::stream::iter(items)
        .map(|item| async move {
            match item {
                Err(m) => json!({ "error": m }),
                Ok(q) => match attribution::attribute(lake, &q).await {
                    Ok(a) => answer_json(&q, &a),
                    Err(QueryError::BadRequest(m)) => json!({ "error": m }),
                    Err(e) => {
                        tracing::error!(error = %e, "batch lookup failed");
                        json!({ "error": e.to_string(), "failed": true })
                    }
                },
            }
        })
        .buffered(BATCH_CONCURRENCY)
        .collect()
        .await;
    let asked: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let summary = json!(answers.iter().map(answer_summary).collect::<Vec<_>>());
    audited(
        &api,
        &caller,
        "attribution_batch",
        asked,
        summary,
        json!({ "answers": answers }),
    )
    .await
}

/// `/v1/sessions`, `/v1/port_blocks`, `/v1/address_mappings`: the same listing, filtered.
async fn listing(
    api: Api,
    caller: Caller,
    p: Params,
    events: EventFilter,
    endpoint: &str,
) -> Response {
    let q = match params::sessions(&p) {
        Ok(q) => SessionsQuery { events, ..q },
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    match sessions::sessions(&api.lake, &q).await {
        Ok(page) => {
            let page = json!(page);
            let summary = json!({
                "rows": page["rows"].as_array().map(Vec::len),
                "next_offset": page["next_offset"],
            });
            audited(&api, &caller, endpoint, json!(p), summary, page).await
        }
        Err(e) => query_error(e),
    }
}

async fn sessions_handler(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Query(p): Query<Params>,
) -> Response {
    listing(api, caller, p, EventFilter::All, "sessions").await
}

async fn port_blocks_handler(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Query(p): Query<Params>,
) -> Response {
    listing(api, caller, p, EventFilter::PortBlocks, "port_blocks").await
}

async fn address_mappings_handler(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Query(p): Query<Params>,
) -> Response {
    listing(
        api,
        caller,
        p,
        EventFilter::AddressMappings,
        "address_mappings",
    )
    .await
}

/// The lookup API's routes, open to anyone who can reach them (loopback, `natlake up`, behind
/// IAM on Lambda); every answer is audited.
pub fn router(lake: Arc<Lake>) -> Router {
    router_with_keys(lake, ApiKeys::default())
}

/// The lookup API's routes behind API keys (none configured: open).
pub fn router_with_keys(lake: Arc<Lake>, keys: ApiKeys) -> Router {
    let api = Api {
        audit: Audit::new(lake.store.clone()),
        lake,
        keys: Arc::new(keys),
    };
    Router::new()
        .route("/v1/attribution", get(attribution_handler))
        .route("/v1/attribution/batch", post(batch_handler))
        .route("/v1/sessions", get(sessions_handler))
        .route("/v1/port_blocks", get(port_blocks_handler))
        .route("/v1/address_mappings", get(address_mappings_handler))
        .route("/v1/tail", get(tail_handler))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such endpoint; see /v1/attribution, /v1/attribution/batch, /v1/sessions, /v1/port_blocks and /v1/address_mappings",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            authenticate,
        ))
        .with_state(api)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use futures::TryStreamExt;
    use object_store::{ObjectStore, ObjectStoreExt};
    use tower::ServiceExt;

    use super::*;
    use crate::access::key_digest;

    #[tokio::test]
    async fn api_keys_guard_the_routes_and_answers_are_audited() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let scratch = tempfile::tempdir().unwrap();
        let lake = Arc::new(Lake::with_store(store.clone(), None, scratch.path()));
        let keys = ApiKeys::parse(&format!("desk:{}", key_digest("s3cret"))).unwrap();
        let app = router_with_keys(lake, keys);
        let ask = |auth: Option<&str>| {
            let mut r = Request::get("/v1/attribution?ip=198.51.100.7&port=5000&at=1700000000");
            if let Some(a) = auth {
                r = r.header("authorization", a);
            }
            app.clone().oneshot(r.body(Body::empty()).unwrap())
        };
        assert_eq!(ask(None).await.unwrap().status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            ask(Some("Bearer wrong")).await.unwrap().status(),
            StatusCode::FORBIDDEN
        );
        let ok = ask(Some("Bearer s3cret")).await.unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        // /healthz stays open for load balancers.
        let h = app
            .clone()
            .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(h.status(), StatusCode::OK);
        // Exactly the one answered request was recorded, under the key's name.
        let metas: Vec<_> = store
            .list(Some(&object_store::path::Path::from("audit")))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(metas.len(), 1);
        let rec = store
            .get(&metas[0].location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let rec: Value = serde_json::from_slice(&rec).unwrap();
        assert_eq!(rec["who"], "desk");
        assert_eq!(rec["asked"]["port"], "5000");
        assert_eq!(rec["answered"]["ambiguous"], false);
    }

    #[tokio::test]
    async fn on_lambda_the_iam_principal_is_the_audited_caller() {
        use lambda_http::aws_lambda_events::apigw::{
            ApiGatewayRequestAuthorizer, ApiGatewayRequestAuthorizerIamDescription,
            ApiGatewayV2httpRequestContext,
        };
        use lambda_http::request::RequestContext;
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let scratch = tempfile::tempdir().unwrap();
        let lake = Arc::new(Lake::with_store(store.clone(), None, scratch.path()));
        let arn = "arn:aws:iam::123456789012:user/abuse-desk";
        let mut iam = ApiGatewayRequestAuthorizerIamDescription::default();
        iam.user_arn = Some(arn.into());
        let mut authorizer = ApiGatewayRequestAuthorizer::default();
        authorizer.iam = Some(iam);
        let mut ctx = ApiGatewayV2httpRequestContext::default();
        ctx.authorizer = Some(authorizer);
        let mut req = Request::get("/v1/attribution?ip=198.51.100.7&port=5000&at=1700000000")
            .body(Body::empty())
            .unwrap();
        req.extensions_mut()
            .insert(RequestContext::ApiGatewayV2(ctx));
        let resp = router(lake).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let metas: Vec<_> = store
            .list(Some(&object_store::path::Path::from("audit")))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(metas.len(), 1);
        let rec = store
            .get(&metas[0].location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let rec: Value = serde_json::from_slice(&rec).unwrap();
        assert_eq!(rec["who"], format!("iam:{arn}"));
    }

    #[tokio::test]
    async fn the_answer_names_the_deterministic_mapping_it_was_computed_from() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let scratch = tempfile::tempdir().unwrap();
        let cfg = natlake_core::deterministic::DetConfig::parse(
            "[[mapping]]\nid = 'cgn1-a'\ndevice = 'cgn1'\ninside = '100.64.0.0/26'\n\
             public = '198.51.100.4/30'\nports_per_subscriber = 4000\n\
             valid_from = '2023-11-01T00:00:00Z'\n",
        )
        .unwrap();
        natlake_query::deterministic::publish(&store, &cfg)
            .await
            .unwrap();
        let app = router(Arc::new(Lake::with_store(store, None, scratch.path())));
        let res = app
            .oneshot(
                Request::get("/v1/attribution?ip=198.51.100.7&port=9000&at=1700000000&proto=tcp")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["ambiguous"], false);
        assert_eq!(
            v["deterministic"]["config"],
            "store:config/deterministic_nat.toml"
        );
        let m = &v["matches"][0];
        assert_eq!(m["source"], "deterministic");
        assert_eq!(m["src_ip"], "100.64.0.49");
        assert_eq!(
            (m["x_port"].as_u64(), m["x_port_end"].as_u64()),
            (Some(5024), Some(9023))
        );
        assert_eq!(m["evidence"][0]["entry"], "cgn1-a");
        assert_eq!(m["evidence"][0]["valid_from"], "2023-11-01T00:00:00Z");
        assert_eq!(m["evidence"][0]["valid_until"], Value::Null);
        // One reading only (sequential): nothing contests it.
        assert_eq!(m["evidence"][0]["reading"], Value::Null);
        assert_eq!(m["evidence"][0]["contested"], false);
    }
}
