//! The HTTP trigger (Cloud Run): `POST /` with a Pub/Sub push body, a binary-mode CloudEvent or a
//! structured CloudEvent runs a pass and answers 204 (ack) or 500 (Pub/Sub redelivers).
//! Triggers that arrive while a pass runs join it instead of starting a second one. An optional
//! cron schedule triggers passes too, for hosts without Cloud Scheduler.

use crate::pass::Collector;
use crate::settings::{CollectArgs, ConfigError};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use google_cloud_auth::credentials::idtoken::verifier::{Builder as VerifierBuilder, Verifier};
use mulesoft_audit::settings::names;
use mulesoft_audit::trigger::MAX_BODY;
use mulesoft_audit::variables::{default_of, help_of};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, watch};

#[derive(clap::Args, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub collect: CollectArgs,
    // Each flag's name, variable, help and default are its row's in the engine's table.
    #[arg(long, env = names::PORT, help = help_of(names::PORT), default_value = default_of(names::PORT))]
    pub port: u16,
    #[arg(long, env = names::LISTEN, help = help_of(names::LISTEN), default_value = default_of(names::LISTEN))]
    pub listen: IpAddr,
    #[arg(long, env = names::SCHEDULE, help = help_of(names::SCHEDULE))]
    pub schedule: Option<String>,
    #[arg(long, env = names::OIDC_AUDIENCE, help = help_of(names::OIDC_AUDIENCE))]
    pub oidc_audience: Option<String>,
    #[arg(long, env = names::OIDC_EMAIL, help = help_of(names::OIDC_EMAIL))]
    pub oidc_email: Option<String>,
    #[arg(long, env = names::OIDC_ANY_SENDER, help = help_of(names::OIDC_ANY_SENDER))]
    pub oidc_any_sender: bool,
    /// Where the signing keys are (default Google's); for tests.
    #[arg(long, env = names::OIDC_JWKS_URL, help = help_of(names::OIDC_JWKS_URL), hide = true)]
    pub oidc_jwks_url: Option<String>,
}

struct App {
    collector: Arc<Collector>,
    /// The pass in flight, if any: its result (exit code) arrives on this channel.
    inflight: Mutex<Option<watch::Receiver<Option<u8>>>>,
    /// One verification at a time: google-cloud-auth's key cache is taken with `try_write`
    /// (while fetching the keys too), so concurrent calls would fail instead of waiting.
    verifier: Option<Mutex<Verifier>>,
    /// What the passes did, for `GET /metrics`.
    metrics: crate::metrics::Metrics,
    /// A signal came ([`crate::stop`]): no new pass starts.
    stopping: std::sync::atomic::AtomicBool,
}

/// How long verifying a push token may take, fetching Google's signing keys included (the
/// library sets no timeout on that fetch).
const VERIFY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a client may take to send a request's head, and how long a kept-alive connection may
/// wait for its next one: Pub/Sub and health checks send theirs at once.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a trigger's body (at most [`MAX_BODY`]).
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections open at once: half the open-file limit, so that idle or half-sent connections can
/// never take the files a pass needs (its own connections, the store's, the code cache). Those
/// beyond wait in the listen queue until one closes.
fn connection_cap() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    usize::try_from(soft.map_or(2048, |files| (files / 2).clamp(8, 4096))).unwrap_or(8)
}

/// Serves `router` on `listener` until `shutdown`: at most [`connection_cap`] connections, each
/// closed when its head is not read within [`HEADER_READ_TIMEOUT`] (idle keep-alive ones too);
/// then waits for the connections in flight.
async fn listen(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let permits = Arc::new(tokio::sync::Semaphore::new(connection_cap()));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => permit?,
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of files, most likely: wait for some to close rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(
                hyper_util::rt::TokioIo::new(stream),
                hyper_util::service::TowerToHyperService::new(router.clone()),
            );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection closed");
            }
        });
    }
    // Connections in flight (a push waiting for its pass) get the grace, no more.
    if tokio::time::timeout(crate::stop::GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after the grace");
    }
    Ok(())
}

/// Whether verification failed only because Google's keys could not be fetched (a network fault or
/// a 5xx), rather than because of the token (an unknown key id is the token's fault).
fn keys_unavailable(error: &google_cloud_auth::credentials::idtoken::verifier::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(e) = cause.downcast_ref::<google_cloud_auth::errors::CredentialsError>() {
            return error.is_load_cert() && e.is_transient();
        }
        source = cause.source();
    }
    false
}

/// The push verification `serve` is asked for, refused where it would check less than it seems.
fn verifier(args: &ServeArgs) -> Result<Option<Verifier>, ConfigError> {
    let audience = args.oidc_audience.as_deref().map(str::trim).filter(|a| !a.is_empty());
    let email = args.oidc_email.as_deref().map(str::trim).filter(|e| !e.is_empty());
    let Some(audience) = audience else {
        if email.is_some() {
            return Err(ConfigError(
                "MULESOFT_AUDIT_OIDC_EMAIL is set without MULESOFT_AUDIT_OIDC_AUDIENCE: push tokens would not be verified at all; set the audience too (the push endpoint's URL)".into(),
            ));
        }
        if args.oidc_any_sender {
            return Err(ConfigError(
                "MULESOFT_AUDIT_OIDC_ANY_SENDER is set without MULESOFT_AUDIT_OIDC_AUDIENCE".into(),
            ));
        }
        return Ok(None);
    };
    let mut builder = VerifierBuilder::new([audience.to_string()]);
    match (email, args.oidc_any_sender) {
        (Some(email), false) => builder = builder.with_email(email.to_string()),
        (None, true) => tracing::warn!("push tokens from any Google account are accepted for the audience"),
        (Some(_), true) => {
            return Err(ConfigError(
                "both MULESOFT_AUDIT_OIDC_EMAIL and MULESOFT_AUDIT_OIDC_ANY_SENDER are set: set only one".into(),
            ));
        }
        (None, false) => {
            return Err(ConfigError(
                "MULESOFT_AUDIT_OIDC_AUDIENCE is set without MULESOFT_AUDIT_OIDC_EMAIL: any Google account can mint a token for an audience; set the push subscription's service account, or MULESOFT_AUDIT_OIDC_ANY_SENDER=true to accept any sender".into(),
            ));
        }
    }
    if let Some(url) = &args.oidc_jwks_url {
        builder = builder.with_jwks_url(url.clone());
    }
    Ok(Some(builder.build()))
}

impl App {
    /// Runs a pass, or joins the one in flight. Returns its exit code; `None` when stopping and
    /// none is in flight (no new pass starts).
    async fn pass(self: &Arc<Self>) -> Option<u8> {
        let mut receiver = {
            let mut inflight = self.inflight.lock().await;
            match &*inflight {
                Some(rx) => rx.clone(),
                None if self.stopping.load(std::sync::atomic::Ordering::SeqCst) => return None,
                None => {
                    let (tx, rx) = watch::channel(None);
                    *inflight = Some(rx.clone());
                    let app = self.clone();
                    tokio::spawn(async move {
                        let collector = app.collector.clone();
                        let started = std::time::Instant::now();
                        let code = match tokio::task::spawn_blocking(move || collector.pass()).await {
                            Ok(report) => {
                                println!("{}", report.json());
                                app.metrics.record(&report, started.elapsed());
                                report.exit_code
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "pass panicked");
                                1
                            }
                        };
                        *app.inflight.lock().await = None;
                        let _ = tx.send(Some(code));
                    });
                    rx
                }
            }
        };
        Some(match receiver.wait_for(Option::is_some).await {
            Ok(code) => code.unwrap_or(1),
            Err(_) => 1,
        })
    }

    /// Resolves when no pass is in flight.
    async fn idle(&self) {
        let receiver = self.inflight.lock().await.clone();
        if let Some(mut receiver) = receiver {
            let _ = receiver.wait_for(Option::is_some).await;
        }
    }
}

async fn authorize(app: &App, headers: &HeaderMap) -> Result<(), (StatusCode, String)> {
    let Some(verifier) = &app.verifier else {
        return Ok(());
    };
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or((StatusCode::UNAUTHORIZED, "missing bearer token".to_string()))?;
    // The wait for the lock counts too: a slow key fetch for one push must not hold the others
    // past Pub/Sub's deadline.
    match tokio::time::timeout(VERIFY_TIMEOUT, async { verifier.lock().await.verify(token).await }).await {
        Ok(Ok(_)) => Ok(()),
        // Google's keys could not be fetched: not the sender's fault, and Pub/Sub redelivers.
        Ok(Err(e)) if keys_unavailable(&e) => {
            tracing::error!(error = %e, "push request not verified: Google's signing keys could not be fetched");
            Err((StatusCode::SERVICE_UNAVAILABLE, "signing keys unavailable".to_string()))
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "push request refused: token not valid");
            Err((StatusCode::FORBIDDEN, "token not valid".to_string()))
        }
        Err(_) => {
            tracing::error!("push request not verified: fetching Google's signing keys timed out");
            Err((StatusCode::SERVICE_UNAVAILABLE, "signing keys unavailable".to_string()))
        }
    }
}

async fn handle_trigger(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> (StatusCode, String) {
    if let Err(refusal) = authorize(&app, &headers).await {
        return refusal;
    }
    // A body sent slowly, or too large, is refused rather than waited for or held.
    let body = match tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => return (StatusCode::PAYLOAD_TOO_LARGE, format!("trigger body refused: {e}")),
        Err(_) => {
            return (
                StatusCode::REQUEST_TIMEOUT,
                format!("trigger body not received within {} s", BODY_READ_TIMEOUT.as_secs()),
            );
        }
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let trigger = match mulesoft_audit::trigger::parse(header, &body) {
        Ok(t) => t,
        Err(problem) => {
            tracing::warn!(%problem, "bad trigger request");
            return (StatusCode::BAD_REQUEST, problem);
        }
    };
    tracing::info!(?trigger, "trigger received");
    let Some(code) = app.pass().await else {
        // Pub/Sub delivers it again, to an instance that is not stopping.
        return (StatusCode::SERVICE_UNAVAILABLE, "stopping: no new pass starts".into());
    };
    let (status, text) = mulesoft_audit::trigger::answer(code);
    (StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), text)
}

async fn metrics(State(app): State<Arc<App>>) -> ([(axum::http::header::HeaderName, &'static str); 1], String) {
    let text = app.metrics.render(chrono::Utc::now().timestamp_millis());
    ([(axum::http::header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text)
}

pub async fn serve(args: ServeArgs, cache_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let schedule = args
        .schedule
        .as_deref()
        .map(|s| {
            croner::Cron::from_str(s).map_err(|e| {
                ConfigError(format!("--schedule `{s}` is not a cron expression of 5 fields (or 6 with seconds): {e}"))
            })
        })
        .transpose()?;
    let verifier = verifier(&args)?.map(Mutex::new);
    let handle = tokio::runtime::Handle::current();
    let collect = args.collect.clone();
    let collector =
        tokio::task::spawn_blocking(move || Collector::open(&collect, cache_dir.as_deref(), handle)).await??;
    let app = Arc::new(App {
        collector: Arc::new(collector),
        inflight: Mutex::new(None),
        verifier,
        metrics: crate::metrics::Metrics::new(),
        stopping: std::sync::atomic::AtomicBool::new(false),
    });

    if let Some(cron) = schedule {
        let app = app.clone();
        tokio::spawn(async move {
            loop {
                let now = chrono::Utc::now();
                let Ok(next) = cron.find_next_occurrence(&now, false) else {
                    tracing::error!("the schedule has no next occurrence; scheduled passes stop");
                    return;
                };
                let wait = (next - now).to_std().unwrap_or_default();
                tokio::time::sleep(wait).await;
                tracing::info!("scheduled pass");
                if app.pass().await.is_none() {
                    return;
                }
            }
        });
    }

    let router = Router::new()
        .route("/", post(handle_trigger))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .with_state(app.clone());
    let addr = SocketAddr::new(args.listen, args.port);
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|e| ConfigError(format!("cannot listen on {addr}: {e}")))?;
    tracing::info!(addr = %listener.local_addr()?, connections = connection_cap(), "serving");
    let (signalled, signal) = tokio::sync::oneshot::channel();
    let stopping = app.clone();
    listen(listener, router, async move {
        let name = crate::stop::signalled().await;
        stopping.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
        tracing::warn!(signal = name, grace_s = crate::stop::GRACE.as_secs(), "stopping: no new pass starts");
        crate::stop::on_second_signal();
        let _ = signalled.send((name, tokio::time::Instant::now()));
    })
    .await?;
    let (name, at) = signal.await.unwrap_or(("SIGTERM", tokio::time::Instant::now()));
    // The listener waited for the connections in flight; a pass gets what is left of the grace
    // even when no connection waits for it (a scheduled pass, a push whose client hung up).
    let left = crate::stop::GRACE.saturating_sub(at.elapsed());
    if tokio::time::timeout(left, app.idle()).await.is_err()
        && let Some(report) = crate::stop::record(app.collector.clone(), name).await
    {
        crate::stop::exit_with(&report);
    }
    tracing::info!("stopped");
    Ok(())
}
