//! One task per neighbor: it owns the session FSM(s), the socket reader and the timers, and
//! turns bytes into FSM events and FSM actions into bytes. Route processing happens in the core.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bgp::fsm::{self, Action, CollisionWinner, DownReason, Event, PeerConfig, Session, State};
use bgp::wire::{self, codes, CodecContext, Message, Notification};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::core::CoreEvent;

/// Bytes on their way to one connection's socket, in order.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// Encoded messages. `credit` marks chunks the core sent under flow control; the writer
    /// returns their length to `in_flight` once they are on the socket. `Bytes` because one
    /// encoded UPDATE chunk is shared by every member of an update group.
    Bytes { data: Bytes, credit: bool },
    /// Flush what came before, then close the socket.
    Close,
}

/// Sender side of a connection's writer task.
pub(crate) type Writer = mpsc::UnboundedSender<Outgoing>;

/// Messages the core sends to a peer task.
pub(crate) enum PeerCommand {
    /// A connection accepted by a listener from this neighbor's address.
    Inbound(TcpStream),
    /// The neighbor was removed (or the daemon stops): Cease and exit.
    Stop { subcode: u8 },
}

/// Per-neighbor settings the task needs beyond the FSM's.
#[derive(Clone, Debug)]
pub(crate) struct PeerSettings {
    pub address: IpAddr,
    pub remote_port: u16,
    pub local_address: Option<IpAddr>,
    /// IP TTL for the session's packets: 1 for directly connected eBGP, the multihop TTL when
    /// configured, None (kernel default) for iBGP.
    pub ttl: Option<u32>,
    pub fsm: PeerConfig,
}

/// The I/O half of one TCP connection, bound to one `Session`.
struct Connection {
    reader: OwnedReadHalf,
    buffer: BytesMut,
    writer: Writer,
    /// We initiated it (matters for collision resolution).
    outbound: bool,
    local: SocketAddr,
    /// How UPDATEs are decoded: defaults until the session negotiates.
    codec: CodecContext,
    /// Bytes of credited chunks queued but not yet written (shared with the writer task and
    /// the core).
    in_flight: Arc<AtomicUsize>,
}

/// How many bytes of encoded UPDATEs the core may have queued for one connection. An update
/// group is drained while at least one member is below this; a member past it waits.
pub(crate) const CREDIT_BYTES: usize = 1 << 20;

/// A member of an update group this far behind (queued, unwritten bytes) is split off into a
/// group of its own, so the others are not held back and its queue stops growing.
pub(crate) const SPLIT_BYTES: usize = 16 << 20;

/// How many queued chunks a writer gathers into one socket write.
const WRITE_GATHER_BYTES: usize = 256 * 1024;

/// A session with the connection it runs on, if any.
struct Slot {
    session: Session,
    connection: Option<Connection>,
    /// This session was created for an inbound collision candidate, so it was built passive;
    /// when it ends, the task rebuilds a session from the neighbor's real settings.
    from_candidate: bool,
}

type ConnectFuture = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

/// What woke the peer task up (computed inside `select!`, handled after it, so the
/// handlers can borrow the whole task mutably).
enum Wakeup {
    Shutdown,
    Command(Option<PeerCommand>),
    Read(Which, io::Result<usize>),
    Connected(io::Result<TcpStream>),
    Timer,
}

/// Which of the task's two sessions an action came from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Which {
    Primary,
    Candidate,
}

pub(crate) struct PeerTask {
    settings: PeerSettings,
    /// The core's id for this task (echoed in every event).
    task_id: u64,
    primary: Slot,
    candidate: Option<Slot>,
    connecting: Option<ConnectFuture>,
    /// Increments each time a session reaches Established, so the core can tell a late
    /// message of an old session from the current one.
    generation: u64,
    established: bool,
    last_reported: Option<State>,
    core: mpsc::Sender<CoreEvent>,
    commands: mpsc::Receiver<PeerCommand>,
    shutdown: watch::Receiver<bool>,
    /// Set before shutdown by `Daemon::abort`: end without a NOTIFICATION, like a killed process.
    crashed: Arc<AtomicBool>,
}

impl PeerTask {
    pub(crate) fn new(
        settings: PeerSettings,
        task_id: u64,
        core: mpsc::Sender<CoreEvent>,
        commands: mpsc::Receiver<PeerCommand>,
        shutdown: watch::Receiver<bool>,
        crashed: Arc<AtomicBool>,
    ) -> PeerTask {
        let session = Session::new(settings.fsm.clone());
        PeerTask {
            settings,
            task_id,
            primary: Slot { session, connection: None, from_candidate: false },
            candidate: None,
            connecting: None,
            generation: 0,
            established: false,
            last_reported: None,
            core,
            commands,
            shutdown,
            crashed,
        }
    }

    pub(crate) async fn run(mut self) {
        let now = Instant::now().into_std();
        let actions = self.primary.session.process(Event::ManualStart, now);
        self.execute(Which::Primary, actions).await;
        loop {
            self.report_state().await;
            let deadline = earliest(
                self.primary.session.next_deadline(),
                self.candidate.as_ref().and_then(|c| c.session.next_deadline()),
            );
            let wakeup = {
                let shutdown = &mut self.shutdown;
                let commands = &mut self.commands;
                let primary = self.primary.connection.as_mut();
                let has_primary = primary.is_some();
                let candidate = self.candidate.as_mut().and_then(|c| c.connection.as_mut());
                let has_candidate = candidate.is_some();
                let connecting = self.connecting.as_mut();
                let is_connecting = connecting.is_some();
                tokio::select! {
                    _ = super::stopped(shutdown) => Wakeup::Shutdown,
                    command = commands.recv() => Wakeup::Command(command),
                    read = read_some(primary), if has_primary => Wakeup::Read(Which::Primary, read),
                    read = read_some(candidate), if has_candidate => Wakeup::Read(Which::Candidate, read),
                    connected = async { connecting.expect("guarded").await }, if is_connecting => Wakeup::Connected(connected),
                    _ = sleep_until_opt(deadline), if deadline.is_some() => Wakeup::Timer,
                }
            };
            if self.crashed.load(Ordering::Acquire) {
                // Simulated crash (whatever woke us: the shutdown signal, or the core's command
                // channel closing as the core exits): drop the connections, which the kernel
                // closes, and send nothing.
                return;
            }
            match wakeup {
                Wakeup::Shutdown => {
                    self.stop(codes::cease_subcode::ADMINISTRATIVE_SHUTDOWN).await;
                    return;
                }
                Wakeup::Command(Some(PeerCommand::Inbound(stream))) => self.inbound(stream).await,
                Wakeup::Command(Some(PeerCommand::Stop { subcode })) => {
                    self.stop(subcode).await;
                    return;
                }
                Wakeup::Command(None) => {
                    self.stop(codes::cease_subcode::PEER_DECONFIGURED).await;
                    return;
                }
                Wakeup::Read(which, read) => self.on_read(which, read).await,
                Wakeup::Connected(connected) => {
                    self.connecting = None;
                    self.on_connect(connected).await;
                }
                Wakeup::Timer => {
                    let now = Instant::now().into_std();
                    let actions = self.primary.session.poll_timers(now);
                    self.execute(Which::Primary, actions).await;
                    if let Some(candidate) = self.candidate.as_mut() {
                        let actions = candidate.session.poll_timers(now);
                        self.execute(Which::Candidate, actions).await;
                    }
                }
            }
            self.resolve_collision().await;
        }
    }

    async fn report_state(&mut self) {
        let state = self.primary.session.state();
        if self.last_reported != Some(state) {
            self.last_reported = Some(state);
            let _ = self.core.send(CoreEvent::State { peer: self.settings.address, task: self.task_id, state }).await;
        }
    }

    async fn stop(&mut self, subcode: u8) {
        self.connecting = None;
        if let Some(mut candidate) = self.candidate.take() {
            close_with_cease(&mut candidate, codes::cease_subcode::CONNECTION_COLLISION_RESOLUTION);
        }
        let now = Instant::now().into_std();
        if self.primary.session.state() == State::Established && subcode != codes::cease_subcode::ADMINISTRATIVE_SHUTDOWN {
            // A Cease other than the FSM's ManualStop one (e.g. peer de-configured).
            close_with_cease(&mut self.primary, subcode);
            self.session_down("stopped", false).await;
        } else {
            let actions = self.primary.session.process(Event::ManualStop, now);
            self.execute(Which::Primary, actions).await;
        }
        self.report_state().await;
    }

    /// What a writer task needs to tell the core it has room again.
    fn wake(&self) -> Wake {
        Wake { core: self.core.clone(), peer: self.settings.address, ttl: self.settings.ttl }
    }

    fn slot(&mut self, which: Which) -> Option<&mut Slot> {
        match which {
            Which::Primary => Some(&mut self.primary),
            Which::Candidate => self.candidate.as_mut(),
        }
    }

    async fn inbound(&mut self, stream: TcpStream) {
        let now = Instant::now().into_std();
        if self.primary.connection.is_none() {
            // No connection yet (Connect/Active): the inbound one becomes ours.
            self.connecting = None;
            match Connection::new(stream, false, self.wake()) {
                Ok(connection) => {
                    self.primary.connection = Some(connection);
                    let actions = self.primary.session.process(Event::TcpConnectionConfirmed, now);
                    self.execute(Which::Primary, actions).await;
                }
                Err(error) => tracing::debug!(peer = %self.settings.address, %error, "inbound connection unusable"),
            }
            return;
        }
        if self.candidate.is_some() || self.primary.session.state() == State::Established {
            tracing::info!(peer = %self.settings.address, "refusing a second connection (collision)");
            refuse(stream, codes::cease_subcode::CONNECTION_COLLISION_RESOLUTION);
            return;
        }
        // OpenSent/OpenConfirm on the existing connection: run the new one alongside until both
        // know the peer's BGP identifier, then keep one (RFC 4271 §6.8).
        let mut fsm_config = self.settings.fsm.clone();
        fsm_config.passive = true;
        let session = Session::new(fsm_config);
        let connection = match Connection::new(stream, false, self.wake()) {
            Ok(connection) => connection,
            Err(_) => return,
        };
        self.candidate = Some(Slot { session, connection: Some(connection), from_candidate: true });
        let candidate = self.candidate.as_mut().expect("just set");
        let mut actions = candidate.session.process(Event::ManualStart, now);
        actions.extend(candidate.session.process(Event::TcpConnectionConfirmed, now));
        self.execute(Which::Candidate, actions).await;
    }

    async fn on_connect(&mut self, connected: io::Result<TcpStream>) {
        let now = Instant::now().into_std();
        match connected {
            Ok(stream) if self.primary.connection.is_none() => match Connection::new(stream, true, self.wake()) {
                Ok(connection) => {
                    self.primary.connection = Some(connection);
                    let actions = self.primary.session.process(Event::TcpConnected, now);
                    self.execute(Which::Primary, actions).await;
                }
                Err(_) => {
                    let actions = self.primary.session.process(Event::TcpConnectionFails, now);
                    self.execute(Which::Primary, actions).await;
                }
            },
            Ok(_stream) => {
                // An inbound connection won the race; drop the outbound one.
            }
            Err(error) => {
                tracing::debug!(peer = %self.settings.address, %error, "connect failed");
                let actions = self.primary.session.process(Event::TcpConnectionFails, now);
                self.execute(Which::Primary, actions).await;
            }
        }
    }

    async fn on_read(&mut self, which: Which, read: io::Result<usize>) {
        let now = Instant::now().into_std();
        let address = self.settings.address;
        let mut which = which;
        if matches!(read, Ok(0) | Err(_)) {
            let Some(slot) = self.slot(which) else { return };
            slot.connection = None;
            let actions = slot.session.process(Event::TcpConnectionFails, now);
            self.execute(which, actions).await;
            return;
        }
        // One message at a time: the codec a message is decoded with can change with the
        // message before it (the KEEPALIVE that establishes the session switches to the
        // negotiated 4-octet AS / ADD-PATH codec, and UPDATEs often arrive in the same read).
        loop {
            let event = {
                let Some(connection) = self.slot(which).and_then(|slot| slot.connection.as_mut()) else { return };
                match connection.next_event(address) {
                    Some(event) => event,
                    None => return,
                }
            };
            let generation = self.generation;
            let Some(slot) = self.slot(which) else { return };
            let actions = slot.session.process(event, now);
            self.execute(which, actions).await;
            if which == Which::Candidate && self.generation != generation {
                // The candidate was established and promoted: its connection is the primary's.
                which = Which::Primary;
            }
        }
    }

    /// Carry out FSM actions for one of the sessions.
    async fn execute(&mut self, which: Which, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Connect => {
                    if which == Which::Primary && self.primary.connection.is_none() && self.connecting.is_none() {
                        self.connecting = Some(Box::pin(connect(
                            self.settings.address,
                            self.settings.remote_port,
                            self.settings.local_address,
                            self.settings.fsm.connect_retry,
                        )));
                    }
                }
                Action::Send(message) => {
                    if let Some(connection) = self.slot(which).and_then(|s| s.connection.as_mut()) {
                        connection.send(&message);
                    }
                }
                Action::CloseConnection => {
                    if let Some(slot) = self.slot(which) {
                        if let Some(connection) = slot.connection.take() {
                            let _ = connection.writer.send(Outgoing::Close);
                        }
                    }
                    if which == Which::Primary {
                        self.connecting = None;
                    }
                }
                Action::Established(negotiated) => {
                    if which == Which::Candidate {
                        // Promote: the candidate won (the old primary is gone or lost).
                        if let Some(candidate) = self.candidate.take() {
                            self.primary = candidate;
                        }
                    }
                    let Some(connection) = self.primary.connection.as_mut() else { continue };
                    connection.codec = negotiated.codec.clone();
                    self.generation += 1;
                    self.established = true;
                    tracing::info!(peer = %self.settings.address, peer_as = negotiated.peer_as, "session established");
                    let event = CoreEvent::Established {
                        peer: self.settings.address,
                        task: self.task_id,
                        generation: self.generation,
                        local_address: connection.local.ip(),
                        writer: connection.writer.clone(),
                        in_flight: connection.in_flight.clone(),
                        negotiated: Box::new(negotiated),
                    };
                    let _ = self.core.send(event).await;
                }
                Action::Deliver(update) => {
                    let event = CoreEvent::Update {
                        peer: self.settings.address,
                        task: self.task_id,
                        generation: self.generation,
                        update,
                    };
                    let _ = self.core.send(event).await;
                }
                Action::RouteRefreshRequested(family) => {
                    let event = CoreEvent::RouteRefresh { peer: self.settings.address, task: self.task_id, generation: self.generation, family };
                    let _ = self.core.send(event).await;
                }
                Action::Down { reason } => {
                    tracing::info!(peer = %self.settings.address, ?reason, ?which, "session down");
                    if which == Which::Primary {
                        if self.established {
                            // RFC 4724: only a session lost without a NOTIFICATION (the
                            // connection died, or the hold timer saw it dead) is a restart.
                            let graceful = matches!(reason, DownReason::ConnectionClosed | DownReason::HoldTimerExpired);
                            self.session_down(&reason.to_string(), graceful).await;
                        } else {
                            // A failed attempt (the session never came up). The core ignores it
                            // for configured neighbors, and forgets a dynamic neighbor on it, so
                            // connections that never complete an OPEN cannot pile up peer tasks.
                            let event = CoreEvent::Down {
                                peer: self.settings.address,
                                task: self.task_id,
                                generation: self.generation,
                                reason: reason.to_string(),
                                graceful: false,
                            };
                            let _ = self.core.send(event).await;
                        }
                        if self.primary.from_candidate {
                            self.rebuild_primary().await;
                        }
                    } else {
                        self.candidate = None;
                    }
                }
                #[allow(unreachable_patterns)]
                other => tracing::debug!(peer = %self.settings.address, ?other, "unhandled FSM action"),
            }
        }
    }

    async fn session_down(&mut self, reason: &str, graceful: bool) {
        self.established = false;
        let event = CoreEvent::Down {
            peer: self.settings.address,
            task: self.task_id,
            generation: self.generation,
            reason: reason.to_string(),
            graceful,
        };
        let _ = self.core.send(event).await;
    }

    /// Replace a promoted (passive-built) session by one with the neighbor's real settings.
    async fn rebuild_primary(&mut self) {
        let session = Session::new(self.settings.fsm.clone());
        self.primary = Slot { session, connection: None, from_candidate: false };
        let now = Instant::now().into_std();
        let actions = self.primary.session.process(Event::ManualStart, now);
        Box::pin(self.execute(Which::Primary, actions)).await;
    }

    /// RFC 4271 §6.8: once both connections know the peer's BGP identifier, keep one.
    async fn resolve_collision(&mut self) {
        let Some(candidate) = self.candidate.as_ref() else { return };
        if candidate.connection.is_none() {
            self.candidate = None;
            return;
        }
        if self.primary.connection.is_none() {
            // The original connection is gone: the candidate carries on as the primary.
            if let Some(candidate) = self.candidate.take() {
                self.primary = candidate;
            }
            return;
        }
        let primary_state = self.primary.session.state();
        if primary_state == State::Established {
            if let Some(mut candidate) = self.candidate.take() {
                close_with_cease(&mut candidate, codes::cease_subcode::CONNECTION_COLLISION_RESOLUTION);
            }
            return;
        }
        let both_know_id = primary_state == State::OpenConfirm && candidate.session.state() == State::OpenConfirm;
        if !both_know_id {
            return;
        }
        let Some(remote_id) = candidate.session.peer_bgp_id() else { return };
        let existing_outbound = self.primary.connection.as_ref().is_some_and(|c| c.outbound);
        // RFC 6286: equal identifiers are allowed between ASes; the AS numbers break the tie.
        let remote_as = candidate.session.negotiated().map_or(self.settings.fsm.remote_as, |n| n.peer_as);
        let local = &self.settings.fsm;
        match fsm::resolve_collision_with_as(local.local_id, local.local_as, remote_id, remote_as, existing_outbound) {
            CollisionWinner::Existing => {
                if let Some(mut candidate) = self.candidate.take() {
                    close_with_cease(&mut candidate, codes::cease_subcode::CONNECTION_COLLISION_RESOLUTION);
                }
            }
            CollisionWinner::New => {
                close_with_cease(&mut self.primary, codes::cease_subcode::CONNECTION_COLLISION_RESOLUTION);
                if let Some(candidate) = self.candidate.take() {
                    self.primary = candidate;
                }
            }
        }
    }
}

/// Send Cease with `subcode` on a slot's connection and close it (used where the FSM is not
/// the one deciding, i.e. collision resolution and de-configuration).
fn close_with_cease(slot: &mut Slot, subcode: u8) {
    if let Some(mut connection) = slot.connection.take() {
        connection.send(&Message::Notification(Notification { code: codes::error_code::CEASE, subcode, data: Vec::new() }));
        let _ = connection.writer.send(Outgoing::Close);
    }
}

/// Refuse a connection politely: Cease, then close, without blocking the peer task.
pub(crate) fn refuse(stream: TcpStream, subcode: u8) {
    tokio::spawn(async move {
        let mut stream = stream;
        let mut bytes = Vec::new();
        let notification = Message::Notification(Notification { code: codes::error_code::CEASE, subcode, data: Vec::new() });
        if wire::encode_message(&notification, &CodecContext::default(), &mut bytes).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&bytes)).await;
        }
        let _ = stream.shutdown().await;
    });
}

/// Lets a writer task wake the core when a peer that was past `CREDIT_BYTES` has room again.
struct Wake {
    core: mpsc::Sender<CoreEvent>,
    peer: IpAddr,
    /// Carried here so `Connection::new` can apply it before the first byte is sent.
    ttl: Option<u32>,
}

impl Connection {
    fn new(stream: TcpStream, outbound: bool, wake: Wake) -> io::Result<Connection> {
        stream.set_nodelay(true)?;
        let local = stream.local_addr()?;
        if let Some(ttl) = wake.ttl {
            let socket = socket2::SockRef::from(&stream);
            if local.is_ipv6() {
                socket.set_unicast_hops_v6(ttl)?;
            } else {
                socket.set_ttl_v4(ttl)?;
            }
        }
        let (reader, writer_half) = stream.into_split();
        let (writer, queue) = mpsc::unbounded_channel();
        let in_flight = Arc::new(AtomicUsize::new(0));
        tokio::spawn(write_loop(writer_half, queue, in_flight.clone(), wake));
        let buffer = BytesMut::with_capacity(READ_BUFFER_BYTES);
        Ok(Connection { reader, buffer, writer, outbound, local, codec: CodecContext::default(), in_flight })
    }

    fn send(&mut self, message: &Message) {
        let mut data = Vec::with_capacity(64);
        match wire::encode_message(message, &self.codec, &mut data) {
            Ok(()) => {
                let _ = self.writer.send(Outgoing::Bytes { data: Bytes::from(data), credit: false });
            }
            Err(error) => tracing::error!(?error, "cannot encode an FSM message"),
        }
    }

    /// Split the next complete message off the buffer and decode it into an FSM event, with
    /// the codec as it is now. `None` when no complete message is buffered. After a framing
    /// or decoding error the rest of the buffer is discarded (the session is closing).
    fn next_event(&mut self, peer: IpAddr) -> Option<Event> {
        match wire::frame_length(&self.buffer) {
            Ok(Some(length)) => {
                let frame = self.buffer.split_to(length);
                match wire::decode_message(&frame, &self.codec) {
                    Ok(received) => {
                        if let Some(issue) = &received.issues.treat_as_withdraw {
                            tracing::warn!(%peer, ?issue, "malformed attribute: UPDATE treated as withdraw (RFC 7606)");
                        }
                        for issue in &received.issues.discarded {
                            tracing::warn!(%peer, ?issue, "malformed attribute discarded (RFC 7606)");
                        }
                        Some(Event::Message(received.message))
                    }
                    Err(error) => {
                        tracing::warn!(%peer, ?error, "malformed message");
                        self.buffer.clear();
                        Some(Event::DecodeError(error.notification))
                    }
                }
            }
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%peer, ?error, "bad message header");
                self.buffer.clear();
                Some(Event::DecodeError(error.notification))
            }
        }
    }
}

async fn read_some(connection: Option<&mut Connection>) -> io::Result<usize> {
    match connection {
        Some(connection) => {
            if connection.buffer.capacity() - connection.buffer.len() < 4096 {
                connection.buffer.reserve(READ_BUFFER_BYTES);
            }
            connection.reader.read_buf(&mut connection.buffer).await
        }
        None => std::future::pending().await,
    }
}

/// Write chunks in order; on Close (or when every sender is gone) flush and shut down. Chunks
/// already queued are written together with one vectored write per round (up to
/// `WRITE_GATHER_BYTES`), straight from the shared buffers: a peer fed by many small group
/// UPDATEs costs few system calls and no copies, and an idle connection holds no buffer.
async fn write_loop(
    mut socket: OwnedWriteHalf,
    mut queue: mpsc::UnboundedReceiver<Outgoing>,
    in_flight: Arc<AtomicUsize>,
    wake: Wake,
) {
    let mut batch: Vec<Bytes> = Vec::new();
    let mut closing = false;
    while !closing {
        let Some(item) = queue.recv().await else { break };
        let mut credited = 0;
        let mut gathered = 0;
        let mut next = Some(item);
        while let Some(item) = next.take() {
            match item {
                Outgoing::Bytes { data, credit } => {
                    credited += data_len(credit, &data);
                    gathered += data.len();
                    batch.push(data);
                }
                Outgoing::Close => {
                    closing = true;
                    break;
                }
            }
            if gathered < WRITE_GATHER_BYTES && batch.len() < MAX_SLICES {
                next = queue.try_recv().ok();
            }
        }
        if write_all_vectored(&mut socket, &mut batch).await.is_err() {
            break;
        }
        if credited > 0 {
            let before = in_flight.fetch_sub(credited, Ordering::AcqRel);
            if before >= CREDIT_BYTES && before - credited < CREDIT_BYTES {
                let _ = wake.core.send(CoreEvent::Writable { peer: wake.peer }).await;
            }
        }
    }
    let _ = socket.shutdown().await;
}

/// Receive buffer per connection, and its growth step: two maximum-size messages. Small on
/// purpose: a reflector with thousands of clients keeps one per session.
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// Most buffers handed to one vectored write (Linux accepts up to 1024).
const MAX_SLICES: usize = 256;

/// Write every buffer of `batch` in order, then empty it.
async fn write_all_vectored(socket: &mut OwnedWriteHalf, batch: &mut Vec<Bytes>) -> io::Result<()> {
    let mut first = 0;
    while first < batch.len() {
        let slices: Vec<io::IoSlice<'_>> = batch[first..].iter().map(|b| io::IoSlice::new(b)).collect();
        let mut written = socket.write_vectored(&slices).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let head = &mut batch[first];
            if written >= head.len() {
                written -= head.len();
                first += 1;
            } else {
                bytes::Buf::advance(head, written);
                written = 0;
            }
        }
        while first < batch.len() && batch[first].is_empty() {
            first += 1;
        }
    }
    batch.clear();
    Ok(())
}

/// The credit a queued chunk carries: its length when the core sent it under flow control.
fn data_len(credit: bool, data: &Bytes) -> usize {
    if credit {
        data.len()
    } else {
        0
    }
}

async fn connect(address: IpAddr, port: u16, local: Option<IpAddr>, retry: Duration) -> io::Result<TcpStream> {
    let remote = SocketAddr::new(address, port);
    let socket = if remote.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(local) = local {
        socket.bind(SocketAddr::new(local, 0))?;
    }
    let limit = retry.clamp(Duration::from_secs(1), Duration::from_secs(30));
    match tokio::time::timeout(limit, socket.connect(remote)).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
    }
}

fn earliest(a: Option<std::time::Instant>, b: Option<std::time::Instant>) -> Option<std::time::Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

async fn sleep_until_opt(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(Instant::from_std(deadline)).await,
        None => std::future::pending().await,
    }
}
