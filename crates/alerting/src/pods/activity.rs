//! When each watched resource last received anything from the API server, bookmarks included.
//!
//! kube-rs's watcher consumes bookmarks itself, so the events it yields cannot tell a quiet namespace from a
//! connection that went silent. [`ActivityLayer`] sits in the API client and marks a resource path each time a
//! chunk of a response to it arrives (a watch event, a bookmark, a page of a list); the watcher restarts a watch
//! whose path stayed unmarked for `watch_idle_timeout`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{Request, Response};
use futures::StreamExt;
use tokio::time::Instant;
use tower::{BoxError, Layer, Service};

/// The last time something arrived for each watched resource path (`/api/v1/namespaces/monitoring/pods`).
#[derive(Clone, Debug, Default)]
pub(crate) struct WatchActivity(Arc<Mutex<HashMap<String, Instant>>>);

impl WatchActivity {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks `path` active now, and watched from now on.
    pub(crate) fn touch(&self, path: &str) {
        let now = Instant::now();
        let mut paths = self.lock();
        match paths.get_mut(path) {
            Some(last) => *last = now,
            None => {
                paths.insert(path.to_owned(), now);
            }
        }
    }

    /// When `path` was last active; now if it is not watched.
    pub(crate) fn last(&self, path: &str) -> Instant {
        self.lock().get(path).copied().unwrap_or_else(Instant::now)
    }

    fn watched(&self, path: &str) -> bool {
        self.lock().contains_key(path)
    }
}

/// Marks [`WatchActivity`] for the responses of the client it wraps.
#[derive(Clone, Debug)]
pub(crate) struct ActivityLayer(pub(crate) WatchActivity);

impl<S> Layer<S> for ActivityLayer {
    type Service = Marking<S>;

    fn layer(&self, inner: S) -> Marking<S> {
        Marking {
            inner,
            activity: self.0.clone(),
        }
    }
}

/// The service [`ActivityLayer`] makes.
#[derive(Clone, Debug)]
pub(crate) struct Marking<S> {
    inner: S,
    activity: WatchActivity,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Marking<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let path = request.uri().path();
        let watched = self
            .activity
            .watched(path)
            .then(|| (self.activity.clone(), path.to_owned()));
        let response = self.inner.call(request);
        // Bodies become axum's: a boxed HTTP body that can be made from a stream of chunks.
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| match watched {
                Some((activity, path)) => {
                    let chunks = Body::new(body).into_data_stream().inspect(move |chunk| {
                        if chunk.is_ok() {
                            activity.touch(&path);
                        }
                    });
                    Body::from_stream(chunks)
                }
                None => Body::new(body),
            }))
        })
    }
}
