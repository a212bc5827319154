//! A wasi:http component: answers every request with `hello from POD_NAME` (the env var,
//! default "unknown") and the request's path. Paths listed in `FAIL_PATHS` (comma
//! separated, e.g. `/healthz`) get a 503 instead, for probe tests. With `UPSTREAM` set to a
//! URL (e.g. `http://backend.default.svc.cluster.local/`), it is a frontend: it GETs that URL
//! through `wasi:http/outgoing-handler` for every request and adds `upstream STATUS: BODY`
//! to its answer, or answers 502 with `upstream failed: ERROR`.
use std::io::{Read as _, Write as _};

use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingRequest, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};

struct HttpHello;

wasi::http::proxy::export!(HttpHello);

impl wasi::exports::http::incoming_handler::Guest for HttpHello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let pod = std::env::var("POD_NAME").unwrap_or_else(|_| "unknown".to_string());
        let path = request.path_with_query().unwrap_or_default();
        let headers = Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())])
            .expect("valid header");
        let failing = std::env::var("FAIL_PATHS").unwrap_or_default();
        let path_only = path.split('?').next().unwrap_or_default();
        let fail = failing.split(',').any(|p| !p.is_empty() && p == path_only);
        let mut text = format!("hello from {pod} at {path}\n");
        let mut status = if fail { 503 } else { 200 };
        if let Ok(upstream) = std::env::var("UPSTREAM") {
            match fetch(&upstream) {
                Ok((code, body)) => text.push_str(&format!("upstream {code}: {body}")),
                Err(error) => {
                    status = 502;
                    text.push_str(&format!("upstream failed: {error}\n"));
                }
            }
        }
        let response = OutgoingResponse::new(headers);
        response.set_status_code(status).expect("a valid status code");
        let body = response.body().expect("body taken once");
        ResponseOutparam::set(response_out, Ok(response));
        let mut out = body.write().expect("stream taken once");
        out.write_all(text.as_bytes())
            .expect("write body");
        out.flush().expect("flush body");
        drop(out);
        OutgoingBody::finish(body, None).expect("finish body");
    }
}

/// GETs `url` (`http://` or `https://`), returning the status and the body as text.
fn fetch(url: &str) -> Result<(u16, String), String> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else {
        return Err(format!("UPSTREAM {url:?} is not an http:// or https:// URL"));
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let request = OutgoingRequest::new(Fields::new());
    request.set_scheme(Some(&scheme)).map_err(|()| "bad scheme")?;
    request
        .set_authority(Some(authority))
        .map_err(|()| format!("bad authority {authority:?}"))?;
    let path = if path.is_empty() { "/" } else { path };
    request
        .set_path_with_query(Some(path))
        .map_err(|()| format!("bad path {path:?}"))?;
    let pending = outgoing_handler::handle(request, None).map_err(describe)?;
    let response = loop {
        match pending.get() {
            Some(result) => break result,
            None => pending.subscribe().block(),
        }
    };
    let response = response
        .map_err(|()| "response taken twice".to_string())?
        .map_err(describe)?;
    let status = response.status();
    let body = response.consume().map_err(|()| "body taken twice")?;
    let mut text = String::new();
    body.stream()
        .map_err(|()| "body stream taken twice")?
        .read_to_string(&mut text)
        .map_err(|error| format!("reading the body: {error}"))?;
    Ok((status, text))
}

fn describe(error: ErrorCode) -> String {
    format!("{error:?}")
}
