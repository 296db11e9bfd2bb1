//! The connection layer: accept loop, per-connection hyper service, idle
//! and header-read timeouts, panic isolation, graceful drain.
//!
//! Invariants:
//! - Every request runs in its own task: a panic becomes a 500 for that
//!   request only, and a client that disconnects mid-request does not
//!   cancel an engine write half-way.
//! - Shutdown: stop accepting, ask every connection to finish its in-flight
//!   requests and close, then wait until every connection and request task
//!   is done, bounded by the shutdown timeout.
//! - Every answered request is counted in the metrics by method, route
//!   pattern and status, with its time to the response head.
//! - A connection with no request in flight and no I/O for the idle timeout
//!   is closed; HTTP/1 headers must arrive within the header-read timeout.
//!   (hyper starts that timer as soon as it waits for the next request, so
//!   an idle HTTP/1 keep-alive connection lasts at most
//!   min(header-read timeout, idle timeout).)
//! - A new connection must deliver its first complete request head (HTTP/1
//!   headers, or the HTTP/2 preface, SETTINGS and a HEADERS frame) within
//!   the header-read timeout, else it is dropped: a partial preface cannot
//!   hold a connection open.
//! - At most `max_connections` client connections are open. One more is
//!   answered `503` with `retry-after: 1` (an HTTP/1 response, written
//!   without reading the request) and closed; connections already open are
//!   unaffected. Refusals in progress are bounded too (a connection past
//!   that bound is closed without an answer). At start the soft
//!   file-descriptor limit is raised (within the hard limit) to what the cap
//!   needs, and the cap lowered if it still does not fit, so the cap, not
//!   `EMFILE`, is what turns clients away.
//! - A failed `accept` (out of file descriptors, ...) pauses accepting with
//!   a backoff from 10 ms doubling to 1 s, logged once per episode, instead
//!   of spinning; errors that concern only the one connection (the peer reset
//!   it before it was accepted) are retried at once.
//! - A 408 (a request body too slow) closes its HTTP/1 connection: the rest
//!   of that body would otherwise be read as the next request.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, ALLOW, CONNECTION};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use super::body::{accepts_gzip, json_response};
use super::error::ApiError;
use super::handlers::dispatch;
use super::metrics::http_labels;
use super::router::route;
use super::stream::{boxed, Reply, ResponseBody};
use super::AppState;

/// Connection-level settings.
#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    /// Time a client has to send request headers (HTTP/1), and a new
    /// connection its first complete request head (HTTP/1 or HTTP/2).
    pub header_read_timeout: Duration,
    /// Idle connections are closed after this long.
    pub idle_timeout: Duration,
    /// Bound on draining at shutdown.
    pub shutdown_timeout: Duration,
    /// Most open client connections (see [`fit_fd_limit`]).
    pub max_connections: usize,
}

/// File descriptors kept for everything but client connections and the
/// segment files kept for positioned reads (store, cache, metadata, refusals
/// in progress, logs).
const RESERVED_FDS: u64 = 256;
/// Most refusals (503 answers over the connection cap) in progress at once.
const MAX_REFUSALS: usize = 64;
/// Longest a refusal may take (write the 503, wait for the client to close).
const REFUSAL_TIME: Duration = Duration::from_secs(1);

/// Counts live connections and request tasks; lets shutdown wait for zero.
#[derive(Debug, Clone, Default)]
pub struct Tracker(Arc<(AtomicUsize, Notify)>);

/// Held while a connection or request task is alive.
#[derive(Debug)]
pub struct TrackGuard(Tracker);

impl Tracker {
    /// Register one live task.
    pub fn enter(&self) -> TrackGuard {
        self.0 .0.fetch_add(1, Ordering::SeqCst);
        TrackGuard(self.clone())
    }

    /// Live tasks.
    pub fn count(&self) -> usize {
        self.0 .0.load(Ordering::SeqCst)
    }

    /// Wait until no task is live.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.0 .1.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for TrackGuard {
    fn drop(&mut self) {
        if (self.0).0 .0.fetch_sub(1, Ordering::SeqCst) == 1 {
            (self.0).0 .1.notify_waiters();
        }
    }
}

/// Serve until `shutdown` resolves, then drain.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    opts: ServerOptions,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(opts.header_read_timeout).keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(opts.idle_timeout))
        .keep_alive_timeout(opts.idle_timeout);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut gate = Gate {
        builder,
        state: state.clone(),
        stop: stop_rx,
        opts,
        slots: Arc::new(Semaphore::new(opts.max_connections)),
        refusals: Arc::new(Semaphore::new(MAX_REFUSALS)),
        cap_reached: false,
    };
    let mut backoff = AcceptBackoff::default();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff.succeeded();
                    gate.admit(stream, peer);
                }
                Err(e) => {
                    let Some(pause) = backoff.failed(&e) else { continue };
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            },
        }
    }
    drop(listener);
    state.draining.store(true, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    tracing::info!(live = state.tracker.count(), "stopped accepting; draining in-flight requests");
    if tokio::time::timeout(opts.shutdown_timeout, state.tracker.wait_idle()).await.is_err() {
        tracing::warn!(
            live = state.tracker.count(),
            timeout_secs = opts.shutdown_timeout.as_secs(),
            "shutdown timeout elapsed with requests still in flight; abandoning them"
        );
    }
}

/// Admits accepted connections up to the cap; refuses the rest.
struct Gate {
    builder: auto::Builder<TokioExecutor>,
    state: Arc<AppState>,
    stop: watch::Receiver<bool>,
    opts: ServerOptions,
    /// One permit per connection that may be open.
    slots: Arc<Semaphore>,
    /// One permit per refusal that may be in progress.
    refusals: Arc<Semaphore>,
    /// The last connection was refused (the warning is logged once per episode).
    cap_reached: bool,
}

impl Gate {
    /// Serve `stream` in its own task, or refuse it when the cap is reached.
    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            if !std::mem::replace(&mut self.cap_reached, true) {
                let max_connections = self.opts.max_connections;
                tracing::warn!(max_connections, "connection cap reached; refusing new connections with 503");
            }
            refuse(stream, &self.refusals);
            return;
        };
        self.cap_reached = false;
        let conn = Conn {
            builder: self.builder.clone(),
            state: self.state.clone(),
            stop: self.stop.clone(),
            opts: self.opts,
        };
        let guard = self.state.tracker.enter();
        tokio::spawn(async move {
            let (_guard, _slot) = (guard, slot);
            conn.run(stream, peer).await;
        });
    }
}

/// The connection cap lowered, if need be, to fit the process's
/// file-descriptor limit (raised first towards what the cap needs), so that
/// the cap refuses connections gracefully before `accept` fails with `EMFILE`.
///
/// Mapped segments keep up to `cache::KEPT_FILES_MAX` files open for
/// positioned reads; a low limit gives them a quarter of it (and the mappings
/// past that read through the mapping), so connections keep the rest.
pub fn fit_fd_limit(cap: usize) -> usize {
    let kept_max = crate::cache::KEPT_FILES_MAX as u64;
    let wanted = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(RESERVED_FDS + kept_max);
    let limit = raise_fd_limit(wanted);
    let kept = kept_max.min(limit / 4);
    crate::cache::limit_kept_files(usize::try_from(kept).unwrap_or(usize::MAX));
    let fit = usize::try_from(limit.saturating_sub(RESERVED_FDS + kept)).unwrap_or(usize::MAX).max(1);
    if cap > fit {
        tracing::warn!(
            max_connections = cap,
            fd_limit = limit,
            using = fit,
            "max_connections lowered to fit the file-descriptor limit (raise LimitNOFILE / ulimit -n)"
        );
        return fit;
    }
    cap
}

/// Raise the soft `RLIMIT_NOFILE` towards `wanted` (never above the hard
/// limit); returns the soft limit in force.
fn raise_fd_limit(wanted: u64) -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    let Some(current) = lim.current else { return u64::MAX };
    let target = lim.maximum.map_or(wanted, |hard| wanted.min(hard));
    if target <= current {
        return current;
    }
    lim.current = Some(target);
    match setrlimit(Resource::Nofile, lim) {
        Ok(()) => target,
        Err(_) => current,
    }
}

/// Answer a connection over the cap with a 503 and close it, in the
/// background and bounded in number and time.
fn refuse(stream: TcpStream, refusals: &Arc<Semaphore>) {
    let Ok(permit) = refusals.clone().try_acquire_owned() else {
        return; // too many refusals in progress: close at once
    };
    tokio::spawn(async move {
        let _permit: OwnedSemaphorePermit = permit;
        let _ = tokio::time::timeout(REFUSAL_TIME, send_refusal(stream)).await;
    });
}

async fn send_refusal(mut stream: TcpStream) -> io::Result<()> {
    stream.write_all(&refusal_response()).await?;
    stream.shutdown().await?;
    // Read what the client sends until it closes: closing with unread data
    // would reset the connection and could destroy the 503 in flight.
    let mut sink = [0u8; 4096];
    while stream.read(&mut sink).await? > 0 {}
    Ok(())
}

/// The HTTP/1.1 response to a connection over the cap.
fn refusal_response() -> Vec<u8> {
    let body = r#"{"status":"error","error":"too many open connections; retry later"}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         x-should-retry: true\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Pauses after failed accepts: 10 ms doubling to 1 s while they keep
/// failing; one warning per episode and one line when it ends.
#[derive(Debug, Default)]
struct AcceptBackoff {
    /// The next pause (None: not in an episode).
    next: Option<Duration>,
    /// Failures in the current episode.
    failures: u64,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    /// The pause after a failed accept; None for an error that concerns only
    /// the one connection (retry at once).
    fn failed(&mut self, e: &io::Error) -> Option<Duration> {
        use io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted, WouldBlock};
        if matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted | WouldBlock) {
            tracing::debug!(error = %e, "accept failed for one connection");
            return None;
        }
        let pause = match self.next {
            Some(p) => p,
            None => {
                tracing::warn!(error = %e, "accept failed (out of file descriptors?); pausing accepts, backing off up to 1 s");
                Self::FIRST
            }
        };
        self.failures += 1;
        self.next = Some((pause * 2).min(Self::MAX));
        Some(pause)
    }

    /// An accept succeeded: the episode, if any, is over.
    fn succeeded(&mut self) {
        if self.next.take().is_some() {
            tracing::info!(failures = self.failures, "accepting connections again");
            self.failures = 0;
        }
    }
}

struct Conn {
    builder: auto::Builder<TokioExecutor>,
    state: Arc<AppState>,
    stop: watch::Receiver<bool>,
    opts: ServerOptions,
}

impl Conn {
    async fn run(mut self, stream: TcpStream, peer: SocketAddr) {
        let activity = Arc::new(Activity::new());
        let in_flight = Arc::new(AtomicUsize::new(0));
        let first_request = Arc::new(AtomicBool::new(false));
        let io = TokioIo::new(Tracked { inner: stream, activity: activity.clone() });
        let state = self.state.clone();
        let (flights, started) = (in_flight.clone(), first_request.clone());
        let svc = service_fn(move |req| {
            started.store(true, Ordering::SeqCst);
            let (state, flight) = (state.clone(), InFlight::enter(&flights));
            async move {
                let _flight = flight;
                handle(state, req).await
            }
        });
        let conn = self.builder.serve_connection(io, svc);
        tokio::pin!(conn);
        let mut closing = false;
        let idle = self.opts.idle_timeout;
        let mut tick = tokio::time::interval((idle / 4).max(Duration::from_millis(50)));
        // hyper's own header timer covers HTTP/1 heads only, and not the
        // protocol detection before them (the HTTP/2 preface).
        let handshake = tokio::time::sleep(self.opts.header_read_timeout);
        tokio::pin!(handshake);
        loop {
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(%peer, error = %e, "connection closed with an error");
                    }
                    return;
                }
                () = &mut handshake, if !first_request.load(Ordering::SeqCst) => {
                    tracing::debug!(%peer, "no complete request head within the header-read timeout; closing");
                    return;
                }
                _ = self.stop.changed(), if !closing => {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = tick.tick(), if !closing => {
                    if in_flight.load(Ordering::SeqCst) == 0 && activity.idle_for() >= idle {
                        tracing::debug!(%peer, "closing idle connection");
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    }
}

/// Run one request in its own task; map errors and panics to responses.
/// Every log line of the request carries its id (the client's
/// `x-request-id` when it sent a short printable one, else a counter), and
/// the response echoes it.
async fn handle(state: Arc<AppState>, req: Request<Incoming>) -> Result<Response<ResponseBody>, Infallible> {
    let started = Instant::now();
    let (method, path, version) = (req.method().clone(), req.uri().path().to_owned(), req.version());
    let gzip = accepts_gzip(req.headers());
    let rid = request_id(req.headers());
    let span = tracing::info_span!("request", id = %rid);
    let (metrics, route) = (state.engine.metrics().clone(), route(&method, &path).ok());
    let guard = state.tracker.enter();
    let result = isolated(
        async move {
            let _guard = guard;
            dispatch(state, req, started).await
        }
        .instrument(span.clone()),
    )
    .await;
    let _entered = span.enter();
    let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut resp = match result {
        Ok(Reply::Json(body)) => boxed(json_response(StatusCode::OK, &body, gzip)),
        Ok(Reply::Stream(s)) => s.into_response(),
        Ok(Reply::Page(page)) => boxed(page),
        Err(e) => {
            if e.status.is_server_error() && e.status != StatusCode::NOT_IMPLEMENTED {
                tracing::warn!(%method, path, status = e.status.as_u16(), ms, error = %e.message, "request failed");
            }
            boxed(error_response(&e, gzip))
        }
    };
    if let Ok(v) = HeaderValue::from_str(&rid) {
        resp.headers_mut().insert("x-request-id", v);
    }
    if resp.status() == StatusCode::REQUEST_TIMEOUT && version < Version::HTTP_2 {
        resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    }
    metrics.observe_http(&http_labels(&method, route.as_ref(), resp.status().as_u16()), started.elapsed());
    tracing::debug!(%method, path, status = resp.status().as_u16(), ms, "request");
    Ok(resp)
}

/// The request's id: the client's `x-request-id` if it is 1..=64 visible
/// ASCII characters, else `r` and a per-process counter.
fn request_id(headers: &hyper::HeaderMap) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let given = headers.get("x-request-id").and_then(|v| v.to_str().ok());
    match given.filter(|v| (1..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic())) {
        Some(v) => v.to_owned(),
        None => format!("r{}", NEXT.fetch_add(1, Ordering::Relaxed)),
    }
}

/// Run a handler in its own task: a panic becomes a 500 for this request
/// only, and a dropped connection does not cancel the handler half-way.
async fn isolated<F, T>(fut: F) -> Result<T, ApiError>
where
    F: std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
    T: Send + 'static,
{
    match tokio::spawn(fut).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => {
            tracing::error!("request handler panicked");
            Err(ApiError::internal("internal error: the request handler panicked"))
        }
        Err(e) => Err(ApiError::internal(format!("internal error: request task failed: {e}")).with_source(e)),
    }
}

/// The JSON error response with its retry headers.
pub fn error_response(e: &ApiError, gzip: bool) -> Response<Full<Bytes>> {
    let mut resp = json_response(e.status, &e.body(), gzip);
    let h = resp.headers_mut();
    h.insert(
        HeaderName::from_static("x-should-retry"),
        HeaderValue::from_static(if e.retryable { "true" } else { "false" }),
    );
    if let Some(ms) = e.retry_after_ms {
        if let Ok(v) = HeaderValue::from_str(&ms.to_string()) {
            h.insert(HeaderName::from_static("retry-after-ms"), v);
        }
        if let Ok(v) = HeaderValue::from_str(&ms.div_ceil(1000).to_string()) {
            h.insert(hyper::header::RETRY_AFTER, v);
        }
    }
    if let Some(v) = e.allow.as_deref().and_then(|a| HeaderValue::from_str(a).ok()) {
        h.insert(ALLOW, v);
    }
    resp
}

/// Requests in flight on one connection.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(n: &Arc<AtomicUsize>) -> InFlight {
        n.fetch_add(1, Ordering::SeqCst);
        InFlight(n.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Time of a connection's last I/O.
struct Activity {
    base: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity { base: Instant::now(), last_ms: AtomicU64::new(0) }
    }
    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
    fn touch(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }
    fn idle_for(&self) -> Duration {
        Duration::from_millis(self.now_ms().saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// A stream that records when it last moved bytes.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        r
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn handler_panics_become_500() {
        let r = isolated(async {
            if std::hint::black_box(true) {
                panic!("boom");
            }
            Ok(serde_json::Value::Null)
        })
        .await;
        let e = r.unwrap_err();
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        let resp = error_response(&e, false);
        assert_eq!(resp.headers().get("x-should-retry").unwrap(), "true");
    }

    /// A writer for a test subscriber: collects every log line.
    #[derive(Clone, Default)]
    struct Lines(Arc<std::sync::Mutex<Vec<u8>>>);

    impl io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn accept_backoff_doubles_to_a_second_logs_once_and_resets() {
        let lines = Lines::default();
        let sink = lines.clone();
        let subscriber =
            tracing_subscriber::fmt().with_writer(move || sink.clone()).with_ansi(false).finish();
        tracing::subscriber::with_default(subscriber, || {
            let mut b = AcceptBackoff::default();
            let emfile = io::Error::from_raw_os_error(24);
            let pauses: Vec<u128> = (0..9).map(|_| b.failed(&emfile).unwrap().as_millis()).collect();
            assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
            let aborted = io::Error::from(io::ErrorKind::ConnectionAborted);
            assert_eq!(b.failed(&aborted), None, "one connection's error: no pause");
            b.succeeded();
            b.succeeded();
            assert_eq!(b.failed(&emfile), Some(Duration::from_millis(10)), "a new episode starts over");
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches("accept failed (out of file descriptors?)").count(), 2, "{text}");
        assert_eq!(text.matches("accepting connections again").count(), 1, "{text}");
        assert!(text.contains("failures=9"), "{text}");
    }

    #[test]
    fn the_refusal_is_a_complete_http_response() {
        let r = String::from_utf8(refusal_response()).unwrap();
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["status"], "error");
    }

    #[test]
    fn the_connection_cap_fits_the_fd_limit() {
        assert_eq!(fit_fd_limit(4), 4);
        let soft = raise_fd_limit(0);
        let huge = usize::try_from(soft).unwrap_or(usize::MAX);
        assert!(fit_fd_limit(huge) < huge, "room is kept for the daemon's own files");
    }

    #[tokio::test]
    async fn tracker_waits_for_every_guard() {
        let t = Tracker::default();
        let g = t.enter();
        let g2 = t.enter();
        assert_eq!(t.count(), 2);
        let waiter = tokio::spawn({
            let t = t.clone();
            async move { t.wait_idle().await }
        });
        drop(g);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(g2);
        tokio::time::timeout(Duration::from_secs(1), waiter).await.unwrap().unwrap();
    }
}
