//! A client of several API servers: it moves to the next when one cannot be reached,
//! repeats only what is safe to repeat, and its watches resume on the new server.

use skiff_client::{Api, Client, Config, Error, ListParams};
use tokio::io::AsyncReadExt;

use crate::fake::{Fake, Thing};
use crate::watcher::{params, spawn_watcher};
use crate::within;

/// A URL where nothing listens: connecting is refused.
fn dead_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    url
}

fn client_of(servers: &[&str]) -> Client {
    let mut config = Config::with_servers(servers).expect("urls");
    config.token = Some("t0k".into());
    Client::new(config).expect("client")
}

/// `http://127.0.0.1:port` without the scheme: what the `Host` header says.
fn host(url: &str) -> Option<String> {
    url.strip_prefix("http://").map(str::to_string)
}

/// A server that takes each request and hangs up without answering: the request was
/// sent, and whether it was carried out is unknown. Counts the requests it took.
struct HangUp {
    url: String,
    requests: tokio::sync::watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl HangUp {
    async fn start() -> HangUp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (count, requests) = tokio::sync::watch::channel(0);
        let task = tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.expect("accept");
                let mut head = Vec::new();
                let mut buffer = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                if !head.is_empty() {
                    count.send_modify(|c| *c += 1);
                }
            }
        });
        HangUp {
            url,
            requests,
            task,
        }
    }

    fn requests(&self) -> usize {
        *self.requests.borrow()
    }
}

impl Drop for HangUp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn requests_move_to_the_next_server_when_one_cannot_be_reached() {
    let fake = Fake::start().await;
    let dead = dead_server();
    let client = client_of(&[&dead, &fake.url]);
    assert_eq!(client.server(), dead, "the first server is preferred");
    let api: Api<Thing> = Api::namespaced(client.clone(), "prod");

    // Nothing reached the dead server, so even a create is sent again, once.
    let created = within(10, "creating", api.create(&Thing::new("prod", "a", 1)))
        .await
        .expect("created on the second server");
    assert_eq!(created.spec.value, 1);
    assert_eq!(
        client.server(),
        fake.url,
        "moved to the server that answered"
    );
    let posts: Vec<_> = fake
        .seen()
        .into_iter()
        .filter(|s| s.method == axum::http::Method::POST)
        .collect();
    assert_eq!(posts.len(), 1, "created once");

    // It stays there: the next request goes straight to it.
    let before = fake.seen().len();
    let got = within(10, "getting", api.get("a")).await.expect("get");
    assert_eq!(got.spec.value, 1);
    assert_eq!(fake.seen().len(), before + 1);
    assert_eq!(client.server(), fake.url);

    // Clones share the server they send to.
    let other = Api::<Thing>::namespaced(client.clone(), "prod");
    assert_eq!(other.client().server(), fake.url);

    // With every server down, the error is the connection's.
    let error = within(
        10,
        "all down",
        client_of(&[&dead, &dead_server()]).request_json(skiff_client::Method::GET, "/api", None),
    )
    .await
    .expect_err("nothing answers");
    assert!(matches!(error, Error::Request(_)), "{error:?}");
}

#[tokio::test]
async fn a_request_cut_after_it_was_sent_is_repeated_only_when_that_is_safe() {
    let fake = Fake::start().await;
    let hang_up = HangUp::start().await;
    let client = client_of(&[&hang_up.url, &fake.url]);
    let api: Api<Thing> = Api::namespaced(client.clone(), "prod");

    // The create reached the first server, which may have carried it out: it is not
    // sent again, the caller gets the error.
    let error = within(10, "creating", api.create(&Thing::new("prod", "a", 1)))
        .await
        .expect_err("the first server hung up");
    assert!(matches!(error, Error::Request(_)), "{error:?}");
    assert_eq!(hang_up.requests(), 1);
    assert!(fake.seen().is_empty(), "not sent to the second server");
    assert_eq!(client.server(), hang_up.url, "still on the first server");

    // A list changes nothing: it is sent again to the next server.
    fake.put("prod", "b", 1);
    let list = within(10, "listing", api.list(&ListParams::default()))
        .await
        .expect("listed on the second server");
    assert_eq!(list.items.len(), 1);
    assert_eq!(hang_up.requests(), 2);
    assert_eq!(client.server(), fake.url);
}

#[tokio::test]
async fn a_watch_resumes_on_another_server_from_its_last_resource_version() {
    let fake = Fake::start().await;
    let first = fake.replica();
    fake.put("prod", "a", 1); // rv 1
    fake.put("prod", "b", 1); // rv 2
    let client = client_of(&[&first.url, &fake.url]);
    let api: Api<Thing> = Api::namespaced(client.clone(), "prod");
    let mut events = spawn_watcher(api, params());

    let (listed, errors) = events.next(1).await;
    assert_eq!(listed, ["restarted [a=1@1 b=1@2]"]);
    assert_eq!(errors, 0);
    fake.put("prod", "a", 2); // rv 3
    fake.put("prod", "c", 1); // rv 4
    let (changes, errors) = events.next(2).await;
    assert_eq!(changes, ["applied a=2@3", "applied c=1@4"]);
    assert_eq!(errors, 0);
    let first_host = host(&first.url);
    assert!(
        fake.seen().iter().all(|s| s.host == first_host),
        "all on the first server so far"
    );

    // The first server dies with the watch open; what changes next, the watcher gets
    // from the second server, resumed from the last event it saw.
    first.kill();
    fake.remove("prod", "b"); // rv 5
    fake.put("prod", "c", 2); // rv 6
    let (changes, errors) = events.next(2).await;
    assert_eq!(
        changes,
        ["deleted b=1@5", "applied c=2@6"],
        "the rest, nothing twice"
    );
    assert_eq!(errors, 1, "the dropped watch is reported once");
    assert_eq!(fake.watch_versions(), ["2", "4"]);
    let watches: Vec<_> = fake
        .seen()
        .into_iter()
        .filter(|s| s.is_watch())
        .map(|s| s.host)
        .collect();
    assert_eq!(watches, [first_host, host(&fake.url)]);
    assert_eq!(fake.list_count(), 2, "resumed, not relisted");
    assert_eq!(client.server(), fake.url);
}
