//! wasi:http containers served on their ports inside the pod network, like any guest
//! listener: other pods, Services, probes and the fabric reach them at podIP:port. Every
//! request runs in a fresh instance of the component.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use skiff_runtime::{HttpError, PodListener};

type Body = UnsyncBoxBody<Bytes, String>;

/// Serves `container` on `listener` until dropped (the caller aborts the task).
pub async fn serve(container: Arc<skiff_runtime::Container>, mut listener: PodListener) {
    loop {
        let (stream, _peer) = listener.accept().await;
        let container = container.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let container = container.clone();
                async move { Ok::<_, Infallible>(respond(&container, request).await) }
            });
            if let Err(error) = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "an http connection in the pod network ended with an error");
            }
        });
    }
}

async fn respond(
    container: &skiff_runtime::Container,
    request: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Body> {
    match container.handle_request(request).await {
        Ok(response) => response.map(|body| body.map_err(|e| format!("{e:?}")).boxed_unsync()),
        Err(error) => {
            tracing::warn!(container = container.name(), %error, "request failed");
            let status = match error {
                HttpError::Stopped { .. } => hyper::StatusCode::SERVICE_UNAVAILABLE,
                _ => hyper::StatusCode::INTERNAL_SERVER_ERROR,
            };
            let body = Full::new(Bytes::from(format!("{error}\n")))
                .map_err(|never| match never {})
                .boxed_unsync();
            let mut response = hyper::Response::new(body);
            *response.status_mut() = status;
            response
        }
    }
}
