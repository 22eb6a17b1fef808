//! One TCP connection to a broker, shared by clones, with pipelined requests: any number of
//! requests may be in flight; the broker answers in request order, and each answer is matched to
//! its caller by correlation id. A request either gets its response or an error, never a retry;
//! after a failure, [`Connection::reconnect`] opens a fresh link (authenticating again) for the
//! requests that follow, and the caller decides what to send again.
//!
//! A cluster: the connection is given one or more brokers (`a:7070,b:7070`) and opens its main
//! link to the first that answers. Once a broker has said it does not lead a partition
//! ([`ErrorCode::is_retriable`]), the caller asks [`Connection::refresh_routes`]: the brokers'
//! partition leaders are learnt (`DescribePartitions`), and from then on every request for one
//! partition (append, fetch, trim, offset by time) goes to its leader over a link of its own,
//! opened when first needed. Everything else, and everything while no routes are known (a single
//! broker never refuses as a non-leader, so it never pays for any of this), goes over the main
//! link.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};

use super::{ClientError, Reconnect, ReconnectEvent, partition_for_key};
use crate::protocol::{self, ErrorCode, MAX_FRAME_BYTES, Request, Response};

/// How many requests may wait to be written before `request` itself waits (back-pressure).
const WRITE_QUEUE: usize = 256;
/// Written batch buffers kept for reuse, and the largest kept: a fresh 1 MiB buffer per batch
/// cost a page fault and a page clearing per 4 KiB (a quarter of the producer's CPU at 1 KiB
/// records).
const SPARE_BUFFERS: usize = 16;
const SPARE_BUFFER_MAX_BYTES: usize = 16 * 1024 * 1024;
/// Longest one reconnect attempt (connect and authenticate) may take: a host that drops packets
/// would otherwise hold an attempt for minutes.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Batch buffers whose bytes have been written, ready to be filled again.
type Spares = Arc<std::sync::Mutex<Vec<Vec<u8>>>>;

/// Why a link died, once it has: later requests on it fail with this instead of hanging.
type Failure = Arc<Mutex<Option<String>>>;

type Reply = oneshot::Sender<Result<Response, ClientError>>;

/// A request on its way to the write loop: its correlation id, the encoded frame (or, for an
/// Append, the frame head), the Append's records to write right after it, and whom to answer.
type Outgoing = (u32, BytesMut, Option<Bytes>, Reply);

/// A cheaply clonable handle to one broker connection. Dropping every clone closes it.
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

struct Inner {
    /// The address (or comma-separated addresses) the connection was opened with.
    addr: String,
    /// The brokers to bootstrap from, in the order given.
    bootstrap: Vec<String>,
    /// Sent first on every link, so a reconnect authenticates again.
    token: Option<String>,
    next_correlation_id: AtomicU32,
    /// The TCP connection in use; replaced by `reconnect` once it has failed.
    link: RwLock<Arc<Link>>,
    /// One reconnect at a time: clones that see the same failure reconnect once.
    reconnecting: tokio::sync::Mutex<()>,
    spares: Spares,
    /// Partition leaders, once learnt (`refresh_routes`).
    routes: RwLock<Option<Arc<Routes>>>,
    /// Links to partition leaders other than the main link, by address.
    leader_links: Mutex<HashMap<String, Arc<Link>>>,
    /// Spreads appends without key or partition over the partitions when routing.
    round_robin: AtomicU32,
}

/// Where each partition's requests go, as a broker last described the cluster.
#[derive(Debug, Default)]
struct Routes {
    /// The native address of each partition's leader (partitions without a leader, or whose
    /// leader has no native listener, are absent: their requests go over the main link and are
    /// refused there as retriable).
    leaders: HashMap<(String, u32), String>,
    /// Each topic's partition count, to pick a partition for an append that names none.
    partition_counts: HashMap<String, u32>,
    /// Every live broker's native address: where to bootstrap again.
    brokers: Vec<String>,
}

/// One TCP connection's write queue and, once it has failed, why.
struct Link {
    addr: String,
    outgoing: mpsc::Sender<Outgoing>,
    failure: Failure,
}

impl Link {
    /// Opens a TCP connection to `addr` and starts its write and read loops.
    async fn open(addr: &str, spares: &Spares) -> Result<Arc<Link>, ClientError> {
        let stream = TcpStream::connect(addr).await.map_err(|source| ClientError::Io {
            op: "connect to",
            addr: addr.to_string(),
            source,
        })?;
        // Small requests (commits, describes) should not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let (outgoing, outgoing_rx) = mpsc::channel(WRITE_QUEUE);
        let (pending_tx, pending_rx) = mpsc::unbounded_channel();
        let failure = Failure::default();
        let writer =
            Writer { addr: addr.to_string(), pending: pending_tx, failure: failure.clone() };
        tokio::spawn(write_loop(writer, write, outgoing_rx, spares.clone()));
        tokio::spawn(read_loop(addr.to_string(), read, pending_rx, failure.clone()));
        Ok(Arc::new(Link { addr: addr.to_string(), outgoing, failure }))
    }

    /// Why this link failed, if it has.
    fn failure(&self) -> Option<String> {
        lock(&self.failure).clone()
    }

    fn closed_error(&self) -> ClientError {
        ClientError::Closed {
            addr: self.addr.clone(),
            reason: self.failure().unwrap_or_else(|| "connection closed".to_string()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Connection {
    /// Connects to `addr` (`host:port`). Responses larger than the protocol's `MAX_FRAME_BYTES`
    /// are refused before anything is allocated for them.
    pub async fn connect(addr: &str) -> Result<Connection, ClientError> {
        Connection::connect_with_token(addr, None).await
    }

    /// Connects and, when `token` is set, authenticates with it before returning: a broker run
    /// with `--auth-token-file` answers nothing else first (and closes the connection). The
    /// token is sent again on every reconnect.
    ///
    /// `addr` may list several brokers of a cluster, comma-separated: the first that accepts the
    /// connection is used, and the others are tried again when it is lost.
    pub async fn connect_with_token(
        addr: &str,
        token: Option<&str>,
    ) -> Result<Connection, ClientError> {
        let bootstrap: Vec<String> =
            addr.split(',').map(str::trim).filter(|a| !a.is_empty()).map(str::to_string).collect();
        let Some(first) = bootstrap.first().cloned() else {
            return Err(ClientError::InvalidArgument(format!("no broker address in {addr:?}")));
        };
        let spares = Spares::default();
        let mut last_error = None;
        let mut opened = None;
        for candidate in &bootstrap {
            match Link::open(candidate, &spares).await {
                Ok(link) => {
                    opened = Some(link);
                    break;
                }
                Err(e) => last_error = Some(e),
            }
        }
        let Some(link) = opened else {
            // Every candidate refused: the last error names its address.
            return Err(last_error.unwrap_or_else(|| ClientError::Closed {
                addr: first,
                reason: "no broker answered".to_string(),
            }));
        };
        let conn = Connection {
            inner: Arc::new(Inner {
                addr: addr.to_string(),
                bootstrap,
                token: token.map(str::to_string),
                next_correlation_id: AtomicU32::new(1),
                link: RwLock::new(link.clone()),
                reconnecting: tokio::sync::Mutex::new(()),
                spares,
                routes: RwLock::new(None),
                leader_links: Mutex::new(HashMap::new()),
                round_robin: AtomicU32::new(0),
            }),
        };
        conn.authenticate(&link).await?;
        Ok(conn)
    }

    /// The address this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// Sends one request and waits for its response. A `Response::Error` from the broker becomes
    /// `ClientError::Broker`. Safe to call concurrently from several tasks (pipelining).
    pub async fn request(&self, req: &Request) -> Result<Response, ClientError> {
        self.start(req).await?.wait().await
    }

    /// Queues one request on the connection (in the order of `start` calls) and returns a handle
    /// to await its response later; this is how a producer keeps several batches in flight while
    /// preserving their order.
    pub(crate) async fn start(&self, req: &Request) -> Result<Pending, ClientError> {
        let routed = self.routes().and_then(|routes| self.route(&routes, req));
        match routed {
            Some((addr, req)) => {
                let link = self.leader_link(&addr).await?;
                self.start_on(link, &req).await
            }
            None => self.start_on(self.main_link(), req).await,
        }
    }

    fn main_link(&self) -> Arc<Link> {
        self.inner.link.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn routes(&self) -> Option<Arc<Routes>> {
        self.inner.routes.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether requests are routed to partition leaders (a broker of a cluster refused one as a
    /// non-leader, and the leaders were learnt).
    pub fn is_routing(&self) -> bool {
        self.routes().is_some()
    }

    /// The leader's address for a request about one partition, and the request to send there:
    /// an append that names no partition gets one here (by its key hint, as the broker would
    /// pick it, else round-robin), since only the partition's leader may take it.
    fn route<'r>(&self, routes: &Routes, req: &'r Request) -> Option<(String, Cow<'r, Request>)> {
        let (topic, partition) = match req {
            Request::Append { topic, partition: Some(p), .. }
            | Request::Fetch { topic, partition: p, .. }
            | Request::Trim { topic, partition: p, .. }
            | Request::OffsetForTimestamp { topic, partition: p, .. } => (topic, *p),
            Request::Append { topic, partition: None, key_hint, records } => {
                let n = *routes.partition_counts.get(topic)?;
                if n == 0 {
                    return None;
                }
                let p = match key_hint {
                    Some(key) => partition_for_key(key, n),
                    None => self.inner.round_robin.fetch_add(1, Ordering::Relaxed) % n,
                };
                let addr = routes.leaders.get(&(topic.clone(), p))?.clone();
                let req = Request::Append {
                    topic: topic.clone(),
                    partition: Some(p),
                    key_hint: None,
                    records: records.clone(),
                };
                return Some((addr, Cow::Owned(req)));
            }
            _ => return None,
        };
        let addr = routes.leaders.get(&(topic.clone(), partition))?.clone();
        Some((addr, Cow::Borrowed(req)))
    }

    /// A working link to `addr`: the main link when it goes there, else one of the leader
    /// links, opened (and authenticated) when there is none that works.
    async fn leader_link(&self, addr: &str) -> Result<Arc<Link>, ClientError> {
        let main = self.main_link();
        if main.addr == addr && main.failure().is_none() {
            return Ok(main);
        }
        if let Some(link) = lock(&self.inner.leader_links).get(addr)
            && link.failure().is_none()
        {
            return Ok(link.clone());
        }
        let link = tokio::time::timeout(ATTEMPT_TIMEOUT, self.open_link_to(addr)).await.map_err(
            |_| ClientError::Closed { addr: addr.to_string(), reason: "no answer".to_string() },
        )??;
        lock(&self.inner.leader_links).insert(addr.to_string(), link.clone());
        Ok(link)
    }

    /// Learns every partition's leader from a broker (the main link's, or, when that is lost,
    /// the first other known broker that answers) and routes by them from now on. A broker
    /// from before clusters (it does not know the request) leaves routing off.
    pub async fn refresh_routes(&self) -> Result<(), ClientError> {
        let req = Request::DescribePartitions { topic: None };
        let mut answer = self.start_on(self.main_link(), &req).await?.wait().await;
        if matches!(&answer, Err(e) if e.is_disconnect()) {
            for addr in self.candidates() {
                let Ok(Ok(link)) =
                    tokio::time::timeout(ATTEMPT_TIMEOUT, self.open_link_to(&addr)).await
                else {
                    continue;
                };
                answer = match self.start_on(link.clone(), &req).await {
                    Ok(pending) => pending.wait().await,
                    Err(e) => Err(e),
                };
                if answer.is_ok() {
                    // This broker answers: requests that are not routed go to it from now on.
                    *self.inner.link.write().unwrap_or_else(|p| p.into_inner()) = link;
                    break;
                }
            }
        }
        let (brokers, partitions) = match answer {
            Ok(Response::Partitions { brokers, partitions }) => (brokers, partitions),
            Ok(other) => return Err(super::admin::unexpected("DescribePartitions", &other)),
            Err(ClientError::Broker { code: ErrorCode::InvalidRequest, .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let addrs: HashMap<i32, String> = brokers
            .iter()
            .filter(|b| !b.fenced)
            .filter_map(|b| Some((b.id, b.native_addr.clone()?)))
            .collect();
        let mut routes = Routes { brokers: addrs.values().cloned().collect(), ..Routes::default() };
        routes.brokers.sort();
        for p in partitions {
            let count = routes.partition_counts.entry(p.topic.clone()).or_default();
            *count = (*count).max(p.partition + 1);
            if let Some(addr) = p.leader.and_then(|id| addrs.get(&id)) {
                routes.leaders.insert((p.topic, p.partition), addr.clone());
            }
        }
        tracing::debug!(
            brokers = routes.brokers.len(),
            partitions = routes.leaders.len(),
            "learnt the partition leaders"
        );
        *self.inner.routes.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(routes));
        Ok(())
    }

    /// Every broker address known: the bootstrap list, then the brokers last described.
    fn candidates(&self) -> Vec<String> {
        let mut all = self.inner.bootstrap.clone();
        if let Some(routes) = self.routes() {
            for b in &routes.brokers {
                if !all.contains(b) {
                    all.push(b.clone());
                }
            }
        }
        all
    }

    async fn start_on(&self, link: Arc<Link>, req: &Request) -> Result<Pending, ClientError> {
        let correlation_id = self.inner.next_correlation_id.fetch_add(1, Ordering::Relaxed);
        let mut buf = BytesMut::new();
        // An Append's records are written from the caller's buffer, not copied into the frame.
        let records = protocol::encode_request_split(&mut buf, correlation_id, req);
        let (reply_tx, reply_rx) = oneshot::channel();
        if link.outgoing.send((correlation_id, buf, records, reply_tx)).await.is_err() {
            return Err(link.closed_error());
        }
        Ok(Pending { rx: reply_rx, link })
    }

    /// Sends the token, if any, as the first request on `link`.
    async fn authenticate(&self, link: &Arc<Link>) -> Result<(), ClientError> {
        if let Some(token) = &self.inner.token {
            let req = Request::Authenticate { token: token.clone() };
            self.start_on(link.clone(), &req).await?.wait().await?;
        }
        Ok(())
    }

    /// After a request failed because the connection was lost ([`ClientError::is_disconnect`]):
    /// opens a new one, waiting between attempts as `policy` says, and authenticates again.
    /// Requests started afterwards go over the new connection; nothing is re-sent here. Returns
    /// at once when the connection in use has not failed (another clone already reconnected).
    /// Fails with [`ClientError::Unavailable`] after `policy.give_up_after`, or with the
    /// broker's answer when it refuses the token.
    ///
    /// Routing to partition leaders, a lost leader link is forgotten and the leaders are learnt
    /// again (after `policy.initial_backoff`, so that a caller whose next attempt fails at once
    /// does not spin); a lost main link is replaced by one to whichever known broker answers.
    pub async fn reconnect(&self, policy: &Reconnect) -> Result<(), ClientError> {
        let _one_at_a_time = self.inner.reconnecting.lock().await;
        lock(&self.inner.leader_links).retain(|_, link| link.failure().is_none());
        let current = self.inner.link.read().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(lost) = current.failure() else {
            if self.is_routing() {
                tokio::time::sleep(policy.initial_backoff).await;
                return match self.refresh_routes().await {
                    Err(e) if !e.is_disconnect() => Err(e),
                    // A lost main link is for the next call to replace.
                    _ => Ok(()),
                };
            }
            return Ok(());
        };
        let addr = self.inner.addr.as_str();
        let candidates = self.candidates();
        let mut attempt = 0usize;
        let since = Instant::now();
        let deadline = policy.give_up_after.map(|d| since + d);
        let mut waits = policy.backoff();
        let mut reason = lost;
        let mut announced = false;
        loop {
            // Waiting before the first attempt too: a broker being killed can still complete a
            // handshake on its listening socket for a moment after dropping its connections.
            let wake = Instant::now() + waits.next().unwrap_or(policy.max_backoff);
            match deadline {
                Some(d) if wake >= d => {
                    tokio::time::sleep_until(d.into()).await;
                    return Err(ClientError::Unavailable {
                        addr: addr.to_string(),
                        waited: since.elapsed(),
                        reason,
                    });
                }
                _ => tokio::time::sleep_until(wake.into()).await,
            }
            let limit = Instant::now() + ATTEMPT_TIMEOUT;
            let limit = deadline.map_or(limit, |d| d.min(limit));
            // Several brokers: each attempt tries the next one.
            let target =
                candidates.get(attempt % candidates.len().max(1)).map_or(addr, String::as_str);
            attempt += 1;
            match tokio::time::timeout_at(limit.into(), self.open_link_to(target)).await {
                Ok(Ok(link)) => {
                    *self.inner.link.write().unwrap_or_else(|p| p.into_inner()) = link;
                    if !announced {
                        policy.notify(&ReconnectEvent::Unavailable { addr, reason: &reason });
                    }
                    policy.notify(&ReconnectEvent::Reconnected { addr, after: since.elapsed() });
                    if self.is_routing()
                        && let Err(e) = self.refresh_routes().await
                    {
                        // The requests that follow fail and bring the caller back here.
                        tracing::debug!("learning the partition leaders again failed: {e}");
                    }
                    return Ok(());
                }
                Ok(Err(e)) if !e.is_disconnect() => return Err(e),
                Ok(Err(e)) => reason = e.reason(),
                Err(_) => reason = "no answer".to_string(),
            }
            if !announced {
                policy.notify(&ReconnectEvent::Unavailable { addr, reason: &reason });
                announced = true;
            }
        }
    }

    /// One attempt: a new link to `addr`, authenticated.
    async fn open_link_to(&self, addr: &str) -> Result<Arc<Link>, ClientError> {
        let link = Link::open(addr, &self.inner.spares).await?;
        self.authenticate(&link).await?;
        Ok(link)
    }

    /// An empty buffer of at least `capacity` bytes to encode a batch of records into: one whose
    /// earlier batch this connection has finished writing, when there is one.
    pub(crate) fn batch_buffer(&self, capacity: usize) -> Vec<u8> {
        let spare = self.inner.spares.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut buf = spare.unwrap_or_default();
        buf.reserve(capacity);
        buf
    }

    /// Gives a batch's records back for reuse once the caller no longer needs them (a producer
    /// keeps a batch until it is acknowledged, in case it must be sent again).
    pub(crate) fn recycle(&self, records: Bytes) {
        recycle(&self.inner.spares, records);
    }
}

/// A request on its way; [`Pending::wait`] yields its response.
pub(crate) struct Pending {
    rx: oneshot::Receiver<Result<Response, ClientError>>,
    link: Arc<Link>,
}

impl Pending {
    pub(crate) async fn wait(self) -> Result<Response, ClientError> {
        match self.rx.await {
            Ok(result) => into_result(result),
            Err(_) => Err(self.link.closed_error()),
        }
    }

    /// The response if it has already arrived, without waiting.
    pub(crate) fn try_take(&mut self) -> Option<Result<Response, ClientError>> {
        match self.rx.try_recv() {
            Ok(result) => Some(into_result(result)),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(self.link.closed_error())),
        }
    }
}

fn into_result(result: Result<Response, ClientError>) -> Result<Response, ClientError> {
    match result {
        Ok(Response::Error { code, message }) => Err(ClientError::Broker { code, message }),
        other => other,
    }
}

/// Writes queued requests in order, registering each with the reader *before* writing it so the
/// reader always knows whom the next response belongs to.
async fn write_loop(
    w: Writer,
    write: OwnedWriteHalf,
    mut outgoing: mpsc::Receiver<Outgoing>,
    spares: Spares,
) {
    let mut write = BufWriter::new(write);
    while let Some((correlation_id, frame, records, reply)) = outgoing.recv().await {
        if w.pending.send((correlation_id, reply)).is_err() {
            return; // the reader died and recorded why
        }
        let mut result = write_frame(&mut write, &frame, records, &spares).await;
        // Coalesce whatever else is already queued into the same flush.
        while result.is_ok() {
            match outgoing.try_recv() {
                Ok((id, frame, records, reply)) => {
                    if w.pending.send((id, reply)).is_err() {
                        return;
                    }
                    result = write_frame(&mut write, &frame, records, &spares).await;
                }
                Err(_) => break,
            }
        }
        if let Err(e) = result.and(write.flush().await) {
            tracing::debug!(addr = %w.addr, error = %e, "write failed; closing connection");
            lock(&w.failure).get_or_insert_with(|| format!("write failed: {e}"));
            // Dropping `write` shuts our side; the reader then fails everything pending.
            return;
        }
    }
    let _ = write.shutdown().await;
}

/// What the write loop shares with the rest of the connection.
struct Writer {
    addr: String,
    /// Requests written, in order, for the reader to match responses to.
    pending: mpsc::UnboundedSender<(u32, Reply)>,
    failure: Failure,
}

/// Keeps a written batch buffer for reuse when nothing else holds it any more.
fn recycle(spares: &Spares, records: Bytes) {
    if records.len() > SPARE_BUFFER_MAX_BYTES {
        return;
    }
    if let Ok(buf) = records.try_into_mut() {
        let mut buf = Vec::from(buf);
        buf.clear();
        let mut spares = spares.lock().unwrap_or_else(|p| p.into_inner());
        if spares.len() < SPARE_BUFFERS {
            spares.push(buf);
        }
    }
}

/// Writes one frame: its head, then an Append's records (large ones bypass the buffer).
async fn write_frame(
    write: &mut BufWriter<OwnedWriteHalf>,
    head: &[u8],
    records: Option<Bytes>,
    spares: &Spares,
) -> std::io::Result<()> {
    write.write_all(head).await?;
    if let Some(records) = records {
        write.write_all(&records).await?;
        recycle(spares, records);
    }
    Ok(())
}

/// Reads responses and hands each to the oldest waiting request, checking the correlation id.
async fn read_loop(
    addr: String,
    read: OwnedReadHalf,
    mut pending: mpsc::UnboundedReceiver<(u32, Reply)>,
    failure: Failure,
) {
    let mut read = BufReader::with_capacity(64 * 1024, read);
    let mut waiting: VecDeque<(u32, Reply)> = VecDeque::new();
    let mut bodies = SpentBodies::default();
    let reason = loop {
        // Wait for a request to be outstanding before reading, so an idle connection closed by
        // the broker is not an error for anyone.
        if waiting.is_empty() {
            match pending.recv().await {
                Some(w) => waiting.push_back(w),
                None => return, // every handle dropped
            }
        }
        while let Ok(w) = pending.try_recv() {
            waiting.push_back(w);
        }
        let body = match read_frame(&mut read, &mut bodies).await {
            Ok(body) => body,
            Err(reason) => break reason,
        };
        while let Ok(w) = pending.try_recv() {
            waiting.push_back(w);
        }
        let Some((expected_id, reply)) = waiting.pop_front() else {
            break "the broker sent a response nobody asked for".to_string();
        };
        match protocol::decode_response_bytes(&body) {
            Ok((id, resp)) if id == expected_id => {
                let _ = reply.send(Ok(resp));
            }
            // Correlation id 0: the broker refused the frame itself (too large, say) and closes
            // the connection. That is its answer to the request, not a lost connection: sending
            // the request again on a new one would be refused the same way.
            Ok((0, Response::Error { code, message })) => {
                let reason = format!("the broker refused a request: {message}");
                lock(&failure).get_or_insert_with(|| reason.clone());
                let _ = reply.send(Err(ClientError::Broker { code, message }));
                break reason;
            }
            Ok((id, _)) => {
                let reason = format!("response correlation id {id}, expected {expected_id}");
                // Marked failed before the waiter hears of it, so a reconnect it starts at once
                // sees the failure.
                lock(&failure).get_or_insert_with(|| reason.clone());
                let _ = reply
                    .send(Err(ClientError::Closed { addr: addr.clone(), reason: reason.clone() }));
                break reason;
            }
            Err(source) => {
                let reason = format!("undecodable response: {source}");
                let _ = reply.send(Err(ClientError::Protocol { addr: addr.clone(), source }));
                break reason;
            }
        }
    };
    tracing::debug!(%addr, %reason, "connection failed");
    lock(&failure).get_or_insert_with(|| reason.clone());
    // Fail everything in flight now and everything registered later; the write loop stops when
    // `pending` is dropped with this function.
    pending.close();
    while let Ok(w) = pending.try_recv() {
        waiting.push_back(w);
    }
    for (_, reply) in waiting {
        let _ = reply.send(Err(ClientError::Closed { addr: addr.clone(), reason: reason.clone() }));
    }
}

/// Large response bodies handed out recently: once every record slice of one has been dropped,
/// its memory receives the next large response. A fresh multi-MiB buffer per fetch cost a page
/// fault and a page clearing per 4 KiB, as much as the CRC checks of its records.
#[derive(Default)]
struct SpentBodies(VecDeque<Bytes>);

impl SpentBodies {
    /// Bodies this big or bigger are kept for reuse; smaller ones are cheap to allocate.
    const MIN_BYTES: usize = 64 * 1024;
    /// Most bodies kept: more than a consumer keeps alive at once (its fetches in flight).
    const MAX_KEPT: usize = 8;

    /// An empty buffer with room for `len` bytes: a spent body when one is free, else new.
    fn take(&mut self, len: usize) -> BytesMut {
        if len >= Self::MIN_BYTES
            && let Some(i) = self.0.iter().position(Bytes::is_unique)
            && let Some(body) = self.0.remove(i)
            && let Ok(mut buf) = body.try_into_mut()
        {
            buf.clear();
            buf.reserve(len);
            return buf;
        }
        BytesMut::with_capacity(len)
    }

    fn keep(&mut self, body: &Bytes) {
        if body.len() >= Self::MIN_BYTES {
            if self.0.len() == Self::MAX_KEPT {
                self.0.pop_front();
            }
            self.0.push_back(body.clone());
        }
    }
}

async fn read_frame(
    read: &mut BufReader<OwnedReadHalf>,
    bodies: &mut SpentBodies,
) -> Result<Bytes, String> {
    let mut prefix = [0u8; 4];
    read.read_exact(&mut prefix).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => "the broker closed the connection".to_string(),
        _ => format!("read failed: {e}"),
    })?;
    let len =
        protocol::frame_len(prefix, MAX_FRAME_BYTES).map_err(|e| format!("bad frame: {e}"))?;
    // `len` was checked against MAX_FRAME_BYTES by frame_len before this allocation. Read into
    // spare capacity rather than a zeroed buffer: zero-filling a multi-MiB fetch response cost
    // as much CPU as the CRC checks of its records.
    let mut body = bodies.take(len);
    while body.len() < len {
        let want = (len - body.len()) as u64;
        let n = (&mut *read)
            .take(want)
            .read_buf(&mut body)
            .await
            .map_err(|e| format!("read failed mid-frame: {e}"))?;
        if n == 0 {
            return Err("the broker closed the connection mid-frame".to_string());
        }
    }
    // Frozen so fetched records are slices of this buffer, not copies.
    let body = body.freeze();
    bodies.keep(&body);
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::stand_in;
    use tokio::net::TcpListener;

    /// A stand-in broker: answers every request in order with `Topics { names: [id] }`, after
    /// `delay_first` for the first one (so later requests queue behind it), and closes the
    /// connection after `close_after` requests.
    async fn fake_broker(close_after: usize) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            for i in 0..close_after {
                let Some((id, _req)) = stand_in::read_request(&mut sock).await else { return };
                if i == 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                let resp = Response::Topics { names: vec![id.to_string()] };
                stand_in::respond(&mut sock, id, &resp).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn pipelined_requests_each_get_their_own_response() {
        let addr = fake_broker(64).await;
        let conn = Connection::connect(&addr).await.unwrap();
        let mut pending = Vec::new();
        for _ in 0..64 {
            pending.push(conn.start(&Request::ListTopics).await.unwrap());
        }
        let mut ids = Vec::new();
        for p in pending {
            match p.wait().await.unwrap() {
                Response::Topics { names } => ids.push(names[0].parse::<u32>().unwrap()),
                other => panic!("unexpected {other:?}"),
            }
        }
        let want: Vec<u32> = (1..=64).collect();
        assert_eq!(ids, want, "responses matched to requests in order");
    }

    #[tokio::test]
    async fn a_closed_connection_fails_requests_instead_of_hanging() {
        let addr = fake_broker(1).await;
        let conn = Connection::connect(&addr).await.unwrap();
        assert!(conn.request(&Request::ListTopics).await.is_ok());
        let err = conn.request(&Request::ListTopics).await.unwrap_err();
        assert!(matches!(err, ClientError::Closed { .. }), "{err:?}");
        let err = conn.request(&Request::ListTopics).await.unwrap_err();
        assert!(matches!(err, ClientError::Closed { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn a_written_batch_buffer_is_reused_for_the_next_batch_and_a_shared_one_is_not() {
        let addr = fake_broker(2).await;
        let conn = Connection::connect(&addr).await.unwrap();
        let append = |records: Bytes| Request::Append {
            topic: "t".into(),
            partition: Some(0),
            key_hint: None,
            records,
        };
        let mut buf = conn.batch_buffer(64 * 1024);
        buf.extend_from_slice(&[1; 40_000]);
        let at = buf.as_ptr();
        let req = append(Bytes::from(buf));
        let pending = conn.start(&req).await.unwrap();
        drop(req);
        pending.wait().await.unwrap();
        let mut again = conn.batch_buffer(1024);
        assert_eq!(again.as_ptr(), at, "the written buffer comes back");
        assert!(again.is_empty() && again.capacity() >= 64 * 1024);
        // Still referenced elsewhere (here: by `kept`) once written: never handed out again.
        again.extend_from_slice(&[2; 40_000]);
        let kept = Bytes::from(again);
        assert_eq!(kept.as_ptr(), at);
        let pending = conn.start(&append(kept.clone())).await.unwrap();
        pending.wait().await.unwrap();
        let fresh = conn.batch_buffer(1024);
        assert_ne!(fresh.as_ptr(), kept.as_ptr());
    }

    #[test]
    fn a_large_response_body_is_reused_only_once_nothing_else_holds_it() {
        let mut bodies = SpentBodies::default();
        let mut buf = bodies.take(1 << 20);
        buf.resize(1 << 20, 7);
        let at = buf.as_ptr();
        let body = buf.freeze();
        bodies.keep(&body);
        let records = body.slice(100..);
        drop(body);
        // The records are still in use: the next body gets new memory.
        let other = bodies.take(1 << 20);
        assert_ne!(other.as_ptr(), at);
        drop(records);
        let again = bodies.take(1 << 20);
        assert_eq!(again.as_ptr(), at, "freed by its last user, the body is reused");
        assert!(again.is_empty() && again.capacity() >= 1 << 20);
        // Small bodies are never kept.
        let small = BytesMut::from(&[1u8; 100][..]).freeze();
        bodies.keep(&small);
        assert!(bodies.0.is_empty());
    }

    #[tokio::test]
    async fn connect_to_a_closed_port_names_the_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let err = Connection::connect(&addr).await.err().unwrap();
        assert!(err.to_string().contains(&addr), "{err}");
    }
}
