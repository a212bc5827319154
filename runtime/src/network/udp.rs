//! UDP in the pod network: datagrams, the receive queue of a bound socket ([`Inbox`]), the
//! host's own UDP socket in a pod ([`PodUdpSocket`]) and the reverse translation that makes a
//! Service endpoint's replies come from the Service ([`ReplyTranslations`]).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;

use super::{PodNetwork, PortLease, lock};

/// The largest payload a datagram may carry: an IPv4 packet's 65,535 bytes less its 20-byte
/// header and UDP's 8. Larger ones are refused (`datagram-too-large`, a kernel's `EMSGSIZE`).
pub const MAX_DATAGRAM: usize = 65_507;

/// A socket's receive queue when the guest sets none: Linux's `net.core.rmem_default`.
pub(crate) const DEFAULT_RECEIVE_BUFFER: usize = 212_992;

/// The smallest and largest receive queue a guest may ask for (the values are clamped).
pub(crate) const RECEIVE_BUFFER_RANGE: (usize, usize) = (4096, 8 << 20);

/// What a queued datagram costs beyond its payload, so that a flood of empty datagrams is
/// bounded too (a kernel charges each its buffer's true size).
const DATAGRAM_OVERHEAD: usize = 256;

/// How long a reply translation lasts without a datagram in its flow (conntrack keeps an
/// answered UDP flow for 120 s).
const REPLY_IDLE: Duration = Duration::from_secs(120);

/// The most reply translations a node keeps; beyond that the stalest are forgotten.
const MAX_REPLY_TRANSLATIONS: usize = 65_536;

/// One UDP datagram in the pod network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// The sending socket's address (never the wildcard).
    pub from: SocketAddr,
    /// Where it is sent.
    pub to: SocketAddr,
    /// The payload, at most [`MAX_DATAGRAM`] bytes.
    pub data: Bytes,
}

/// Why a datagram was not sent or delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DatagramError {
    /// Nothing is bound at the destination (a kernel's ICMP port-unreachable).
    #[error("port unreachable: no socket is bound there")]
    Refused,
    /// There is no route to the destination.
    #[error("no route to the address")]
    Unreachable,
    /// Network policy forbids the datagram.
    #[error("datagram denied by network policy")]
    Denied,
    /// The payload is larger than [`MAX_DATAGRAM`] bytes.
    #[error("datagram larger than {MAX_DATAGRAM} bytes")]
    TooLarge,
}

/// The receive side of a bound UDP socket: what a kernel keeps for it. Registered in the pod's
/// UDP port space, so datagrams queue here from the bind on, whether or not the guest has
/// asked for its streams yet. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Inbox(Arc<InboxShared>);

struct InboxShared {
    state: Mutex<InboxState>,
    /// Wakes whoever waits for a datagram (or an error).
    arrived: Notify,
}

struct InboxState {
    queue: VecDeque<Datagram>,
    /// Bytes the queue holds, with [`DATAGRAM_OVERHEAD`] each.
    used: usize,
    /// The most bytes it may hold: the socket's receive buffer size.
    capacity: usize,
    /// The peer of a connected socket: datagrams from anyone else are not taken.
    peer: Option<SocketAddr>,
    /// An error the connected socket's next call reports once, as a kernel reports an ICMP
    /// error on a connected socket.
    error: Option<DatagramError>,
    /// Datagrams dropped because the queue was full.
    dropped: u64,
}

impl Inbox {
    pub(crate) fn new(capacity: usize) -> Self {
        Self(Arc::new(InboxShared {
            state: Mutex::new(InboxState {
                queue: VecDeque::new(),
                used: 0,
                capacity: clamp_receive_buffer(capacity),
                peer: None,
                error: None,
                dropped: 0,
            }),
            arrived: Notify::new(),
        }))
    }

    /// Queues a datagram, unless the socket is connected to someone else or the queue is full:
    /// then the datagram is dropped, as a kernel drops it. A datagram larger than the whole
    /// queue still goes into an empty one.
    pub(crate) fn push(&self, datagram: Datagram) {
        let mut state = lock(&self.0.state);
        if state.peer.is_some_and(|peer| peer != datagram.from) {
            return;
        }
        let cost = datagram.data.len() + DATAGRAM_OVERHEAD;
        if !state.queue.is_empty() && state.used + cost > state.capacity {
            state.dropped += 1;
            return;
        }
        state.used += cost;
        state.queue.push_back(datagram);
        drop(state);
        self.0.arrived.notify_waiters();
    }

    /// Takes the next datagram (from the peer, if connected).
    pub(crate) fn pop(&self) -> Option<Datagram> {
        let mut state = lock(&self.0.state);
        while let Some(datagram) = state.queue.pop_front() {
            state.used -= datagram.data.len() + DATAGRAM_OVERHEAD;
            if state.peer.is_none_or(|peer| peer == datagram.from) {
                return Some(datagram);
            }
        }
        None
    }

    /// Whether a call would find a datagram or an error.
    fn is_ready(&self) -> bool {
        let state = lock(&self.0.state);
        state.error.is_some() || !state.queue.is_empty()
    }

    /// Waits until a datagram or an error is there.
    pub(crate) async fn ready(&self) {
        loop {
            let arrived = self.0.arrived.notified();
            tokio::pin!(arrived);
            // Registered before the check: a datagram pushed in between still wakes us.
            arrived.as_mut().enable();
            if self.is_ready() {
                return;
            }
            arrived.await;
        }
    }

    /// Polls [`Self::ready`] once, for callers without a future of their own.
    #[cfg(test)]
    pub(crate) fn poll_ready(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        let ready = std::pin::pin!(self.ready());
        ready.poll(cx)
    }

    /// Connects (`Some`) or disconnects (`None`) the socket: only `peer`'s datagrams are taken
    /// from now on, and a pending error of the old association is forgotten.
    pub(crate) fn connect(&self, peer: Option<SocketAddr>) {
        let mut state = lock(&self.0.state);
        state.peer = peer;
        state.error = None;
    }

    /// Records an error for a connected socket's next call; an unconnected socket is not told,
    /// as with a kernel.
    pub(crate) fn report(&self, error: DatagramError) {
        let mut state = lock(&self.0.state);
        if state.peer.is_none() {
            return;
        }
        state.error = Some(error);
        drop(state);
        self.0.arrived.notify_waiters();
    }

    /// The error recorded by [`Self::report`], once.
    pub(crate) fn take_error(&self) -> Option<DatagramError> {
        lock(&self.0.state).error.take()
    }

    /// The receive buffer size, in bytes.
    pub(crate) fn capacity(&self) -> usize {
        lock(&self.0.state).capacity
    }

    /// Sets the receive buffer size, clamped to what the pod network allows.
    pub(crate) fn set_capacity(&self, capacity: usize) {
        lock(&self.0.state).capacity = clamp_receive_buffer(capacity);
    }

    /// Datagrams dropped because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        lock(&self.0.state).dropped
    }
}

fn clamp_receive_buffer(capacity: usize) -> usize {
    capacity.clamp(RECEIVE_BUFFER_RANGE.0, RECEIVE_BUFFER_RANGE.1)
}

/// A UDP socket the host holds in a pod's port space ([`PodNetwork::bind_udp`]): sends and
/// receives as one of the pod's containers would.
pub struct PodUdpSocket {
    pod: PodNetwork,
    lease: PortLease,
    inbox: Inbox,
}

impl std::fmt::Debug for PodUdpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodUdpSocket")
            .field("local_addr", &self.lease.addr())
            .finish_non_exhaustive()
    }
}

impl PodUdpSocket {
    pub(crate) fn new(pod: PodNetwork, lease: PortLease, inbox: Inbox) -> Self {
        Self { pod, lease, inbox }
    }

    /// The address bound (the wildcard stays the wildcard).
    pub fn local_addr(&self) -> SocketAddr {
        self.lease.addr()
    }

    /// Sends `data` to `to`, from the bound address (for the wildcard, the pod's address on
    /// the way to `to`). Never waits; `Ok` means sent, not delivered.
    pub fn send_to(&self, data: impl Into<Bytes>, to: SocketAddr) -> Result<(), DatagramError> {
        let bound = self.lease.addr();
        let from = if bound.ip().is_unspecified() {
            SocketAddr::new(self.pod.source_for(to.ip()), bound.port())
        } else {
            bound
        };
        self.pod.send_datagram(Datagram {
            from,
            to,
            data: data.into(),
        })
    }

    /// Waits for the next datagram.
    pub async fn recv(&self) -> Datagram {
        loop {
            if let Some(datagram) = self.inbox.pop() {
                return datagram;
            }
            self.inbox.ready().await;
        }
    }

    /// The next datagram if one is queued.
    pub fn try_recv(&self) -> Option<Datagram> {
        self.inbox.pop()
    }

    /// How many datagrams were dropped because this socket's queue was full.
    pub fn dropped(&self) -> u64 {
        self.inbox.dropped()
    }
}

/// Datagrams whose source the pod network rewrites on delivery: (from, to) → the source the
/// receiver sees, and when the flow was last used.
#[derive(Default)]
pub(crate) struct ReplyTranslations {
    entries: HashMap<(SocketAddr, SocketAddr), (SocketAddr, Instant)>,
}

impl ReplyTranslations {
    /// Datagrams from `from` to `to` appear to come from `appear_from` (refreshes the entry).
    pub(crate) fn insert(&mut self, from: SocketAddr, to: SocketAddr, appear_from: SocketAddr) {
        let now = Instant::now();
        if self.entries.len() >= MAX_REPLY_TRANSLATIONS && !self.entries.contains_key(&(from, to)) {
            self.entries
                .retain(|_, (_, used)| now.duration_since(*used) < REPLY_IDLE);
            if self.entries.len() >= MAX_REPLY_TRANSLATIONS
                && let Some(stalest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, used))| *used)
                    .map(|(key, _)| *key)
            {
                self.entries.remove(&stalest);
            }
        }
        self.entries.insert((from, to), (appear_from, now));
    }

    /// Rewrites the source of `datagram` if its flow is translated (and refreshes the entry).
    pub(crate) fn translate(&mut self, datagram: &mut Datagram) {
        if self.entries.is_empty() {
            return;
        }
        let key = (datagram.from, datagram.to);
        let now = Instant::now();
        match self.entries.get_mut(&key) {
            Some((appear_from, used)) if now.duration_since(*used) < REPLY_IDLE => {
                *used = now;
                datagram.from = *appear_from;
            }
            Some(_) => {
                self.entries.remove(&key);
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Waker};

    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn datagram(from: &str, size: usize) -> Datagram {
        Datagram {
            from: addr(from),
            to: addr("10.244.1.7:53"),
            data: Bytes::from(vec![7; size]),
        }
    }

    #[test]
    fn a_full_queue_drops_datagrams_and_frees_room_as_they_are_read() {
        let inbox = Inbox::new(RECEIVE_BUFFER_RANGE.0);
        // 4096 bytes: three 1000-byte datagrams (1256 each with overhead), not a fourth.
        for _ in 0..4 {
            inbox.push(datagram("10.244.1.8:4000", 1000));
        }
        assert_eq!(inbox.dropped(), 1);
        assert!(inbox.pop().is_some());
        inbox.push(datagram("10.244.1.8:4000", 1000));
        assert_eq!(inbox.dropped(), 1, "room again after a read");
        let mut count = 0;
        while inbox.pop().is_some() {
            count += 1;
        }
        assert_eq!(count, 3);
        // An empty queue takes even a datagram larger than itself.
        inbox.push(datagram("10.244.1.8:4000", MAX_DATAGRAM));
        assert_eq!(inbox.pop().map(|d| d.data.len()), Some(MAX_DATAGRAM));
    }

    #[test]
    fn a_connected_inbox_takes_only_its_peer_and_reports_errors_once() {
        let inbox = Inbox::new(DEFAULT_RECEIVE_BUFFER);
        inbox.push(datagram("10.244.1.9:4000", 1));
        inbox.report(DatagramError::Refused);
        assert_eq!(
            inbox.take_error(),
            None,
            "unconnected sockets hear no errors"
        );
        inbox.connect(Some(addr("10.244.1.8:4000")));
        inbox.push(datagram("10.244.1.9:4000", 2));
        inbox.push(datagram("10.244.1.8:4000", 3));
        let got = inbox.pop().unwrap();
        assert_eq!(
            (got.from, got.data.len()),
            (addr("10.244.1.8:4000"), 3),
            "queued before the connect or from others: skipped"
        );
        assert!(inbox.pop().is_none());
        inbox.report(DatagramError::Refused);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(inbox.poll_ready(&mut cx).is_ready(), "an error wakes");
        assert_eq!(inbox.take_error(), Some(DatagramError::Refused));
        assert_eq!(inbox.take_error(), None);
        assert!(inbox.poll_ready(&mut cx).is_pending());
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_on_a_datagram() {
        let inbox = Inbox::new(DEFAULT_RECEIVE_BUFFER);
        let waiter = tokio::spawn({
            let inbox = inbox.clone();
            async move {
                inbox.ready().await;
                inbox.pop()
            }
        });
        tokio::task::yield_now().await;
        inbox.push(datagram("10.244.1.8:4000", 5));
        let got = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("woken: likely deadlocked")
            .unwrap();
        assert_eq!(got.map(|d| d.data.len()), Some(5));
    }

    #[test]
    fn replies_of_a_translated_flow_take_the_service_address() {
        let mut translations = ReplyTranslations::default();
        translations.insert(
            addr("10.244.2.5:5353"),
            addr("10.244.1.7:40000"),
            addr("10.96.0.10:53"),
        );
        let mut reply = Datagram {
            from: addr("10.244.2.5:5353"),
            to: addr("10.244.1.7:40000"),
            data: Bytes::new(),
        };
        translations.translate(&mut reply);
        assert_eq!(reply.from, addr("10.96.0.10:53"));
        let mut other = Datagram {
            from: addr("10.244.2.5:5353"),
            to: addr("10.244.1.8:40000"),
            data: Bytes::new(),
        };
        translations.translate(&mut other);
        assert_eq!(
            other.from,
            addr("10.244.2.5:5353"),
            "another flow is untouched"
        );
    }
}
