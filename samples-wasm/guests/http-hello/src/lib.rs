//! A wasi:http component: answers every request with `hello from POD_NAME` (the env var,
//! default "unknown") and the request's path. Paths listed in `FAIL_PATHS` (comma
//! separated, e.g. `/healthz`) get a 503 instead, for probe tests.
use std::io::Write as _;

use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
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
        let response = OutgoingResponse::new(headers);
        if fail {
            response.set_status_code(503).expect("a valid status code");
        }
        let body = response.body().expect("body taken once");
        ResponseOutparam::set(response_out, Ok(response));
        let mut out = body.write().expect("stream taken once");
        out.write_all(format!("hello from {pod} at {path}\n").as_bytes())
            .expect("write body");
        out.flush().expect("flush body");
        drop(out);
        OutgoingBody::finish(body, None).expect("finish body");
    }
}
