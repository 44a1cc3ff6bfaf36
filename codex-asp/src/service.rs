//! tower integration: the connection as a [`tower::Service`], and the layers that go with it.
//!
//! [`AspService`] implements `Service<RawRequest>` (answering the result as JSON), and
//! [`TypedService<R>`] implements `Service<R::Params>` for one typed request `R` (answering
//! `R::Response`). Their `poll_ready` reflects the connection's bounded outbound queue: it is
//! pending while the queue is full.
//!
//! Layers that fit:
//!
//! - timeouts: [`tower::timeout::TimeoutLayer`] (a timed-out request is forgotten by the
//!   connection; its late answer is discarded);
//! - retries on overload (-32001 "Server overloaded; retry later."): [`OverloadRetry`], a
//!   [`tower::retry::Policy`] with exponential backoff and jitter;
//! - concurrency limits: [`tower::limit::ConcurrencyLimitLayer`].
//!
//! [`standard_stack`] composes all three. [`AspBackend`](crate::AspBackend) sends every
//! request through [`AspService`] and the [`OverloadRetry`] layer
//! ([`AspBackendOptions::overload_retry`](crate::backend::AspBackendOptions::overload_retry)).
//!
//! ```no_run
//! # async fn demo(conn: codex_asp::Connection) -> Result<(), tower::BoxError> {
//! use std::time::Duration;
//! use codex_asp::service::{AspService, OverloadRetry, RawRequest};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! let mut svc = ServiceBuilder::new()
//!     .concurrency_limit(8)
//!     .timeout(Duration::from_secs(30))
//!     .retry(OverloadRetry::new(5))
//!     .service(AspService::new(conn));
//! let models = svc.ready().await?.call(RawRequest::new("model/list", serde_json::json!({}))).await?;
//! # let _ = models; Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use rand::Rng;
use serde_json::Value;
use tokio_util::sync::PollSender;
use tower::BoxError;

use crate::connection::{
    Connection, Filter, Outbound, Overflow, Subscription, decode_result, encode_params,
};
use crate::error::{CloseReason, Error, Result};
use crate::protocol::Request;

/// A boxed, `Send` future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// An untyped request: a method and its params (`null` params are sent as `{}`).
#[derive(Debug, Clone, PartialEq)]
pub struct RawRequest {
    /// The JSON-RPC method.
    pub method: String,
    /// The params.
    pub params: Value,
}

impl RawRequest {
    /// A request for `method` with `params`.
    pub fn new(method: impl Into<String>, params: Value) -> Self {
        RawRequest {
            method: method.into(),
            params,
        }
    }
}

/// A [`Connection`] as a [`tower::Service`]. Cheap to clone.
pub struct AspService {
    conn: Connection,
    sender: PollSender<Outbound>,
}

impl Clone for AspService {
    fn clone(&self) -> Self {
        AspService::new(self.conn.clone())
    }
}

impl fmt::Debug for AspService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AspService")
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

impl AspService {
    /// A service sending requests over `conn`.
    pub fn new(conn: Connection) -> Self {
        let sender = PollSender::new(conn.out_sender());
        AspService { conn, sender }
    }

    /// The connection.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn closed_now(&self) -> Error {
        Error::closed(self.conn.close_reason().unwrap_or(CloseReason::Failed {
            message: "the connection is closing".into(),
            source: None,
        }))
    }

    fn start(&mut self, method: &str, params: Value) -> BoxFuture<Result<Value>> {
        let fut = self.start_subscribed(method, params, None, Overflow::Lag);
        Box::pin(async move { fut.await.map(|(value, _)| value) })
    }

    /// Sends a request that subscribes with `filter_for(result)` when its answer arrives
    /// (see [`Connection::request_raw_subscribed_with`]).
    fn start_subscribed(
        &mut self,
        method: &str,
        params: Value,
        filter_for: Option<FilterFor>,
        overflow: Overflow,
    ) -> BoxFuture<Result<(Value, Option<Subscription>)>> {
        let filter_for =
            filter_for.map(|f| Box::new(f) as Box<dyn FnOnce(&Value) -> Option<Filter> + Send>);
        let (outbound, call) = match self.conn.prepare(method, params, filter_for, overflow) {
            Ok(prepared) => prepared,
            Err(e) => {
                self.sender.abort_send();
                return Box::pin(std::future::ready(Err(e)));
            }
        };
        if self.sender.send_item(outbound).is_err() {
            let conn = self.conn.clone();
            return Box::pin(async move { Err(Error::closed(conn.closed().await)) });
        }
        Box::pin(call.finish())
    }
}

impl tower::Service<RawRequest> for AspService {
    type Response = Value;
    type Error = Error;
    type Future = BoxFuture<Result<Value>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        match ready!(self.sender.poll_reserve(cx)) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(_) => Poll::Ready(Err(self.closed_now())),
        }
    }

    fn call(&mut self, request: RawRequest) -> Self::Future {
        self.start(&request.method, request.params)
    }
}

/// Which subscription a request's result opens (e.g. [`Filter::result_thread`]).
pub(crate) type FilterFor = fn(&Value) -> Option<Filter>;

/// A request that subscribes when its answer arrives: what [`Subscribing`] serves. Cloneable,
/// so that [`OverloadRetry`] can send it again.
#[derive(Debug, Clone)]
pub(crate) struct SubscribedRequest {
    pub method: &'static str,
    pub params: Value,
    pub filter_for: FilterFor,
    pub overflow: Overflow,
}

/// [`AspService`] for requests that open a subscription with their answer (`thread/start`,
/// `thread/resume`, `thread/fork` of the backend).
#[derive(Debug, Clone)]
pub(crate) struct Subscribing(pub AspService);

impl tower::Service<SubscribedRequest> for Subscribing {
    type Response = (Value, Option<Subscription>);
    type Error = Error;
    type Future = BoxFuture<Result<Self::Response>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        tower::Service::<RawRequest>::poll_ready(&mut self.0, cx)
    }

    fn call(&mut self, request: SubscribedRequest) -> Self::Future {
        self.0.start_subscribed(
            request.method,
            request.params,
            Some(request.filter_for),
            request.overflow,
        )
    }
}

/// A [`Connection`] as a [`tower::Service`] for one typed request `R`: it takes
/// `R::Params` and answers `R::Response`. Cheap to clone.
///
/// ```no_run
/// # async fn demo(conn: codex_asp::Connection) -> codex_asp::Result<()> {
/// use codex_asp::protocol::{ModelList, ModelListParams};
/// use codex_asp::service::TypedService;
/// use tower::ServiceExt;
/// let models = TypedService::<ModelList>::new(conn)
///     .oneshot(ModelListParams::default())
///     .await?;
/// # let _ = models; Ok(()) }
/// ```
pub struct TypedService<R: Request> {
    inner: AspService,
    _marker: PhantomData<fn() -> R>,
}

impl<R: Request> TypedService<R> {
    /// A service sending `R` requests over `conn`.
    pub fn new(conn: Connection) -> Self {
        TypedService {
            inner: AspService::new(conn),
            _marker: PhantomData,
        }
    }
}

impl<R: Request> Clone for TypedService<R> {
    fn clone(&self) -> Self {
        TypedService {
            inner: self.inner.clone(),
            _marker: PhantomData,
        }
    }
}

impl<R: Request> fmt::Debug for TypedService<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedService")
            .field("method", &R::METHOD)
            .field("conn", &self.inner.conn)
            .finish()
    }
}

impl<R: Request + 'static> tower::Service<R::Params> for TypedService<R> {
    type Response = R::Response;
    type Error = Error;
    type Future = BoxFuture<Result<R::Response>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        tower::Service::<RawRequest>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, params: R::Params) -> Self::Future {
        let params = match encode_params::<R>(&params) {
            Ok(params) => params,
            Err(e) => {
                self.inner.sender.abort_send();
                return Box::pin(std::future::ready(Err(e)));
            }
        };
        let fut = self.inner.start(R::METHOD, params);
        Box::pin(async move { decode_result::<R>(fut.await?) })
    }
}

/// Errors that can say "the server is overloaded" (for [`OverloadRetry`]): [`Error`], and a
/// [`BoxError`] holding one (what tower layers such as timeouts produce).
pub trait OverloadSignal {
    /// Whether retrying later may succeed.
    fn is_overloaded(&self) -> bool;
}

impl OverloadSignal for Error {
    fn is_overloaded(&self) -> bool {
        Error::is_overloaded(self)
    }
}

impl OverloadSignal for BoxError {
    fn is_overloaded(&self) -> bool {
        self.downcast_ref::<Error>()
            .is_some_and(Error::is_overloaded)
    }
}

/// A [`tower::retry::Policy`] that retries requests the server refused as overloaded
/// (-32001), with exponential backoff and jitter: the n-th retry waits a random time between
/// half and all of `min(base × 2ⁿ, max)`.
///
/// ```
/// use std::time::Duration;
/// use codex_asp::service::OverloadRetry;
/// let policy = OverloadRetry::new(5)
///     .base_delay(Duration::from_millis(50))
///     .max_delay(Duration::from_secs(2));
/// # let _ = policy;
/// ```
#[derive(Debug, Clone)]
pub struct OverloadRetry {
    max_retries: u32,
    base: Duration,
    max: Duration,
    attempts: u32,
}

impl OverloadRetry {
    /// Retries at most `max_retries` times (base delay 100 ms, at most 5 s).
    pub fn new(max_retries: u32) -> Self {
        OverloadRetry {
            max_retries,
            base: Duration::from_millis(100),
            max: Duration::from_secs(5),
            attempts: 0,
        }
    }

    /// Sets the delay before the first retry (before jitter).
    pub fn base_delay(mut self, delay: Duration) -> Self {
        self.base = delay;
        self
    }

    /// Caps the delay between retries.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max = delay;
        self
    }

    /// The delay before retry number `attempt` (from 0), with jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt.min(30)))
            .min(self.max);
        let half = exp / 2;
        let jitter = rand::rng().random_range(0..=half.as_micros().min(u64::MAX as u128) as u64);
        half + Duration::from_micros(jitter)
    }
}

impl<Req, Res, E> tower::retry::Policy<Req, Res, E> for OverloadRetry
where
    Req: Clone,
    E: OverloadSignal,
{
    type Future = tokio::time::Sleep;

    fn retry(&mut self, _req: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        match result {
            Err(e) if e.is_overloaded() && self.attempts < self.max_retries => {
                let delay = self.delay(self.attempts);
                self.attempts += 1;
                tracing::debug!(
                    attempt = self.attempts,
                    ?delay,
                    "app-server overloaded; retrying"
                );
                Some(tokio::time::sleep(delay))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

/// The usual stack over a connection: at most `concurrency` requests in flight, each with a
/// total `timeout` (retries included), retrying overloads up to `max_retries` times.
///
/// ```no_run
/// # async fn demo(conn: codex_asp::Connection) -> Result<(), tower::BoxError> {
/// use std::time::Duration;
/// use codex_asp::service::{standard_stack, RawRequest};
/// use tower::ServiceExt;
/// let svc = standard_stack(conn, 8, Duration::from_secs(30), 5);
/// let answer = svc.oneshot(RawRequest::new("model/list", serde_json::json!({}))).await?;
/// # let _ = answer; Ok(()) }
/// ```
pub fn standard_stack(
    conn: Connection,
    concurrency: usize,
    timeout: Duration,
    max_retries: u32,
) -> tower::util::BoxCloneService<RawRequest, Value, BoxError> {
    let svc = tower::ServiceBuilder::new()
        .concurrency_limit(concurrency.max(1))
        .timeout(timeout)
        .retry(OverloadRetry::new(max_retries))
        .service(AspService::new(conn));
    tower::util::BoxCloneService::new(svc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let p = OverloadRetry::new(3)
            .base_delay(Duration::from_millis(100))
            .max_delay(Duration::from_millis(350));
        for _ in 0..50 {
            let d0 = p.delay(0);
            assert!(d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100));
            let d2 = p.delay(2);
            assert!(d2 >= Duration::from_millis(175) && d2 <= Duration::from_millis(350));
            assert!(p.delay(40) <= Duration::from_millis(350));
        }
    }
}
