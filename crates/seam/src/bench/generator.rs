//! The load generator: the testers and the monitor, each a minimal BGP speaker on tokio, and
//! the coordinator that establishes them, starts the clock and waits for convergence.
//!
//! Why its own speakers rather than a routing daemon: the generator must not be the
//! bottleneck and must know the exact instant each receiver reached its target. Every UPDATE a
//! tester sends is encoded before the clock starts (with `bgp::wire`), and received UPDATEs are
//! read by [`walker`](super::walker) without allocating. Testers run on a tokio runtime with
//! at most `threads` workers; the monitor runs alone on its own thread, so its CPU time can be
//! reported apart and its fan-in time does not wait behind the testers' work.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bgp::types::Family;
use bgp::wire::codes::{error_code, message_type, HEADER_LEN, MAX_MESSAGE_LEN};
use bgp::wire::{
    decode_message, encode_message, encode_update_split, frame_length, Capability, CodecContext, Message, Nlri, Open, Origin,
    PathAttributes, Update,
};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, Notify};

use super::procstat;
use super::scenario::{Layout, Scenario, Workload, AS, MONITOR};
use super::walker::{Counters, RouteTable};

/// Hold time the generator's speakers offer in their OPEN.
const HOLD_TIME: u16 = 180;
/// The longest gap between two KEEPALIVEs a speaker sends (shorter if the hold time asks).
const KEEPALIVE_EVERY: Duration = Duration::from_secs(60);
/// Each session's receive buffer; reads are as large as this allows.
const READ_BUFFER: usize = 64 * 1024;
/// After convergence, how long no UPDATE may arrive before the final checks run: late
/// duplicates or withdrawals must be seen by them.
const QUIET: Duration = Duration::from_millis(300);
/// Longest wait for that quiet period (it is not part of any timed result).
const QUIET_AT_MOST: Duration = Duration::from_secs(5);
/// How often the coordinator looks at the reflector process while it waits.
const CHECK_EVERY: Duration = Duration::from_millis(200);
/// Pause between two connection attempts of one session (a quick connect-retry).
const RECONNECT_AFTER: Duration = Duration::from_millis(500);
/// At most this many failure lines are kept per check (the rest are counted).
const MAX_LINES: usize = 8;

/// What the generator is asked to do.
pub struct GeneratorOptions {
    pub scenario: Scenario,
    /// Worker threads of the testers' runtime.
    pub threads: usize,
    /// Budget of the whole run: establishment, convergence and the checks.
    pub timeout: Duration,
    pub reflector: SocketAddr,
}

/// Times and tallies of one run. A time is absent when it was not reached (timeout, failure)
/// or does not apply to the scenario.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Measurement {
    /// First connection attempt → every session Established.
    #[serde(rename = "establish_s", serialize_with = "seconds")]
    pub establish: Option<Duration>,
    /// t0 (testers start writing) → the monitor holds every prefix with its right next hop.
    #[serde(rename = "fan_in_s", serialize_with = "seconds")]
    pub fan_in: Option<Duration>,
    /// t0 → every tester holds every other tester's prefixes.
    #[serde(rename = "fan_out_s", serialize_with = "seconds")]
    pub fan_out: Option<Duration>,
    /// Churn: tester 0 starts withdrawing → no other client holds any of its prefixes.
    #[serde(rename = "withdraw_s", serialize_with = "seconds")]
    pub withdraw: Option<Duration>,
    /// Churn: tester 0 starts announcing again → every other client holds them again.
    #[serde(rename = "reannounce_s", serialize_with = "seconds")]
    pub reannounce: Option<Duration>,
    /// CPU seconds of the whole generator process during the run.
    pub generator_cpu_s: f64,
    /// CPU seconds of the monitor's thread during the run (part of the above).
    pub monitor_cpu_s: f64,
    /// Summed over every receiver.
    pub counters: Counters,
    /// Connection attempts that failed and were retried.
    pub reconnects: u64,
}

/// JSON has times as (fractional) seconds, or null when not reached.
fn seconds<S: serde::Serializer>(time: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
    match time {
        Some(d) => serializer.serialize_f64(d.as_secs_f64()),
        None => serializer.serialize_none(),
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    /// A check failed or a session broke: every reason found.
    Failed(Vec<String>),
    /// The run's budget ran out; what was still missing.
    TimedOut(String),
}

/// What [`run`] returns: the verdict and whatever was measured until then.
pub struct GeneratorRun {
    pub verdict: Verdict,
    pub measurement: Measurement,
}

/// Runs one scenario against the reflector. `reflector_alive` is polled while waiting (a dead
/// reflector ends the run at once); `sample_reflector` is called once the run is over but
/// before the sessions close, so the reflector's figures cover exactly the measured work.
pub fn run(
    options: &GeneratorOptions,
    reflector_alive: &dyn Fn() -> Result<(), String>,
    sample_reflector: &mut dyn FnMut(),
) -> anyhow::Result<GeneratorRun> {
    let layout = options.scenario.layout;
    let messages = Prepared::encode(&layout)?;
    let shared = Arc::new(Shared::default());
    let monitor = Arc::new(Receiver::new(format!("monitor {MONITOR}"), RouteTable::new(layout, u32::from(MONITOR), 0..0)));
    let testers: Vec<Arc<Receiver>> = (0..layout.testers)
        .map(|i| {
            let address = layout.tester_address(i);
            Arc::new(Receiver::new(format!("tester {i} ({address})"), RouteTable::new(layout, u32::from(address), layout.range_of(i))))
        })
        .collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads.max(1))
        .thread_name("bench-tester")
        .enable_all()
        .build()?;
    let mut monitor_thread = MonitorThread::start()?;
    let cpu_before = (procstat::own_cpu_seconds()?, procstat::thread_cpu_seconds(monitor_thread.tid)?);

    let mut coordinator = Coordinator {
        options,
        layout,
        shared: shared.clone(),
        monitor: monitor.clone(),
        testers: testers.clone(),
        commands: Vec::new(),
        deadline: Instant::now() + options.timeout,
        reflector_alive,
        measurement: Measurement::default(),
    };
    let verdict = runtime.block_on(async {
        // Establish: every session starts connecting at once.
        let start = Instant::now();
        let monitor_spec = SessionSpec::new(MONITOR, options.reflector, &messages, monitor.clone(), shared.clone());
        monitor_thread.spawn_session(monitor_spec)?;
        for (i, tester) in testers.iter().enumerate() {
            let (spec, commands) =
                SessionSpec::with_commands(layout.tester_address(i as u32), options.reflector, &messages, tester.clone(), shared.clone());
            coordinator.commands.push(commands);
            tokio::spawn(session(spec));
        }
        anyhow::Ok(coordinator.drive(start, &messages).await)
    })?;
    let cpu_after = (procstat::own_cpu_seconds()?, procstat::thread_cpu_seconds(monitor_thread.tid)?);
    sample_reflector();

    let mut measurement = coordinator.measurement;
    measurement.generator_cpu_s = cpu_after.0 - cpu_before.0;
    measurement.monitor_cpu_s = cpu_after.1 - cpu_before.1;
    measurement.reconnects = shared.reconnects.load(Ordering::Relaxed);
    for receiver in std::iter::once(&monitor).chain(&testers) {
        measurement.counters.add(&receiver.lock().table.counters);
    }
    // Closing the sessions is not part of the run: whatever fails from here on is expected.
    shared.stopping.store(true, Ordering::SeqCst);
    monitor_thread.stop();
    runtime.shutdown_timeout(Duration::from_secs(2));
    Ok(GeneratorRun { verdict, measurement })
}

/// Messages encoded before the clock starts: per tester its announcements and withdrawals
/// (packed into as few 4096-octet UPDATEs as the codec allows), and the KEEPALIVE.
struct Prepared {
    announce: Vec<Arc<[u8]>>,
    withdraw: Vec<Arc<[u8]>>,
    keepalive: Arc<[u8]>,
}

impl Prepared {
    fn encode(layout: &Layout) -> anyhow::Result<Prepared> {
        let ctx = codec_context();
        let mut announce = Vec::with_capacity(layout.testers as usize);
        let mut withdraw = Vec::with_capacity(layout.testers as usize);
        for tester in 0..layout.testers {
            let nlri: Vec<Nlri> = layout
                .range_of(tester)
                .map(|k| Nlri::from(bgp::types::Prefix::from(ipnet::Ipv4Net::new(layout.prefix(k), 32).expect("a /32"))))
                .collect();
            let attributes = PathAttributes {
                origin: Some(Origin::Igp),
                next_hop: Some(layout.tester_next_hop(tester).into()),
                local_pref: Some(100),
                ..PathAttributes::default()
            };
            let mut bytes = Vec::new();
            encode_update_split(&Update { attributes, nlri: nlri.clone(), ..Update::default() }, &ctx, &mut bytes)?;
            announce.push(bytes.into());
            let mut bytes = Vec::new();
            encode_update_split(&Update { withdrawn: nlri, ..Update::default() }, &ctx, &mut bytes)?;
            withdraw.push(bytes.into());
        }
        let mut keepalive = Vec::new();
        encode_message(&Message::Keepalive, &ctx, &mut keepalive)?;
        Ok(Prepared { announce, withdraw, keepalive: keepalive.into() })
    }

    fn open(&self, address: Ipv4Addr) -> anyhow::Result<Vec<u8>> {
        let open = Open {
            version: 4,
            my_as: u16::try_from(AS).unwrap_or(bgp::types::AS_TRANS),
            hold_time: HOLD_TIME,
            bgp_id: address,
            capabilities: vec![Capability::Multiprotocol(Family::IPV4_UNICAST), Capability::FourOctetAs(AS), Capability::RouteRefresh],
        };
        let mut bytes = Vec::new();
        encode_message(&Message::Open(open), &codec_context(), &mut bytes)?;
        Ok(bytes)
    }
}

/// Both sides of every session advertise 4-octet AS numbers.
fn codec_context() -> CodecContext {
    CodecContext { four_octet_as: true, ..CodecContext::default() }
}

/// State every session and the coordinator share.
#[derive(Default)]
struct Shared {
    /// Sessions that got the reflector's OPEN and KEEPALIVE.
    established: AtomicUsize,
    /// When the last of them did.
    last_established: Mutex<Option<Instant>>,
    /// Receivers that reached the goal of the current phase.
    reached: AtomicUsize,
    /// Broken sessions, as messages naming the peer.
    failures: Mutex<Vec<String>>,
    /// Set while the run is torn down: sessions closing then are not failures.
    stopping: AtomicBool,
    reconnects: AtomicU64,
    /// Why the latest retried connection attempt failed, naming the session.
    last_retry: Mutex<Option<String>>,
    /// Wakes the coordinator when any of the above changes.
    wake: Notify,
}

impl Shared {
    fn fail(&self, message: String) {
        if !self.stopping.load(Ordering::SeqCst) {
            self.failures.lock().expect("failures").push(message);
            self.wake.notify_one();
        }
    }
}

/// One receiving session's view: its routes and the goal of the current phase.
struct Receiver {
    name: String,
    state: Mutex<ReceiverState>,
}

/// Behind the receiver's lock: written by its session's receive path, read by the
/// coordinator between phases and for the checks.
struct ReceiverState {
    table: RouteTable,
    /// Held-prefix count that completes the current phase for this receiver (None: it is not
    /// waited for).
    goal: Option<u32>,
    /// When the count first equalled the goal in this phase (recorded by the receive path).
    reached_at: Option<Instant>,
    /// When the last UPDATE arrived.
    last_update: Option<Instant>,
    /// A wrong next hop or unknown prefix was reported (once is enough).
    reported_wrong: bool,
}

impl Receiver {
    fn new(name: String, table: RouteTable) -> Receiver {
        Receiver {
            name,
            state: Mutex::new(ReceiverState { table, goal: None, reached_at: None, last_update: None, reported_wrong: false }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReceiverState> {
        self.state.lock().expect("receiver state")
    }

    /// Sets the goal of a new phase; a receiver already there counts as reached now.
    fn set_goal(&self, goal: Option<u32>, shared: &Shared) {
        let mut state = self.lock();
        state.goal = goal;
        state.reached_at = None;
        if goal == Some(state.table.held_count()) {
            state.reached_at = Some(Instant::now());
            shared.reached.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl ReceiverState {
    /// A route with a wrong next hop or an unknown prefix fails the run at once: no later
    /// message can make the run correct again, so there is no point waiting for a timeout.
    fn report_wrong_routes(&mut self, name: &str, shared: &Shared) {
        let c = &self.table.counters;
        if !self.reported_wrong && (c.wrong_next_hop > 0 || c.unknown_prefix > 0) {
            self.reported_wrong = true;
            shared.fail(format!(
                "{name} got {} announcements with a wrong next hop and {} of unknown prefixes",
                c.wrong_next_hop, c.unknown_prefix
            ));
        }
    }

    /// Called by the receive path after each UPDATE.
    fn note_progress(&mut self, shared: &Shared) {
        if self.reached_at.is_none() && self.goal == Some(self.table.held_count()) {
            self.reached_at = Some(Instant::now());
            shared.reached.fetch_add(1, Ordering::SeqCst);
            shared.wake.notify_one();
        }
    }
}

/// What a session's writer is told to do.
enum Command {
    /// Write these bytes (a tester's UPDATEs, from the coordinator).
    Send(Arc<[u8]>),
    /// Start sending KEEPALIVEs at this interval (once the hold time is known).
    Keepalives(Duration),
}

/// Everything one session needs.
struct SessionSpec {
    address: Ipv4Addr,
    reflector: SocketAddr,
    open: Vec<u8>,
    keepalive: Arc<[u8]>,
    receiver: Arc<Receiver>,
    shared: Arc<Shared>,
    commands_tx: mpsc::UnboundedSender<Command>,
    commands_rx: mpsc::UnboundedReceiver<Command>,
}

impl SessionSpec {
    fn new(address: Ipv4Addr, reflector: SocketAddr, messages: &Prepared, receiver: Arc<Receiver>, shared: Arc<Shared>) -> SessionSpec {
        SessionSpec::with_commands(address, reflector, messages, receiver, shared).0
    }

    /// Also returns the sender through which the coordinator makes the session write.
    fn with_commands(
        address: Ipv4Addr,
        reflector: SocketAddr,
        messages: &Prepared,
        receiver: Arc<Receiver>,
        shared: Arc<Shared>,
    ) -> (SessionSpec, mpsc::UnboundedSender<Command>) {
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let open = messages.open(address).expect("an OPEN with three capabilities always encodes");
        let spec = SessionSpec {
            address,
            reflector,
            open,
            keepalive: messages.keepalive.clone(),
            receiver,
            shared,
            commands_tx: commands_tx.clone(),
            commands_rx,
        };
        (spec, commands_tx)
    }
}

/// One speaker: connect, OPEN, then read until the run ends; failures are reported to the
/// coordinator with the speaker's name.
async fn session(spec: SessionSpec) {
    let shared = spec.shared.clone();
    let name = spec.receiver.name.clone();
    if let Err(why) = run_session(spec).await {
        shared.fail(format!("{name}: {why}"));
    }
}

async fn run_session(spec: SessionSpec) -> Result<(), String> {
    let SessionSpec { address, reflector, open, keepalive, receiver, shared, commands_tx, commands_rx } = spec;
    let mut inbox = Inbox::new();
    // Like a BGP speaker's connect-retry, but quick: a connection the reflector refuses or
    // drops before the session is established is tried again (and counted).
    let (stream, keepalive_every) = loop {
        match establish(address, reflector, &open, &keepalive, &mut inbox).await {
            Ok(established) => break established,
            Err(Attempt::Fatal(why)) => return Err(why),
            Err(Attempt::Retry(_)) if shared.stopping.load(Ordering::SeqCst) => return Ok(()),
            Err(Attempt::Retry(why)) => {
                shared.reconnects.fetch_add(1, Ordering::Relaxed);
                *shared.last_retry.lock().expect("last retry") = Some(format!("{}: {why}", receiver.name));
                tokio::time::sleep(RECONNECT_AFTER).await;
            }
        }
    };
    let now = Instant::now();
    {
        let mut last = shared.last_established.lock().expect("last established");
        *last = Some(last.map_or(now, |t| t.max(now)));
    }
    shared.established.fetch_add(1, Ordering::SeqCst);
    shared.wake.notify_one();

    let (read, write) = stream.into_split();
    if let Some(interval) = keepalive_every {
        let _ = commands_tx.send(Command::Keepalives(interval));
    }
    let writer_shared = shared.clone();
    let writer_name = receiver.name.clone();
    tokio::spawn(async move {
        if let Err(e) = writer(write, commands_rx, keepalive).await {
            writer_shared.fail(format!("{writer_name}: send: {e}"));
        }
    });
    receive(read, inbox, &receiver, &shared).await
}

/// Why a connection attempt did not reach Established.
enum Attempt {
    /// The connection failed or was closed: worth another try.
    Retry(String),
    /// The reflector said no (NOTIFICATION) or broke the protocol.
    Fatal(String),
}

/// Connects from `address` and runs the opening handshake (RFC 4271 §8.2.2 from the active
/// side: OPEN sent, OPEN received and answered with a KEEPALIVE, KEEPALIVE received). Returns
/// the stream and the KEEPALIVE interval; bytes already read past the handshake stay in `inbox`.
async fn establish(
    address: Ipv4Addr,
    reflector: SocketAddr,
    open: &[u8],
    keepalive: &[u8],
    inbox: &mut Inbox,
) -> Result<(TcpStream, Option<Duration>), Attempt> {
    let retry = |what: &str, e: std::io::Error| Attempt::Retry(format!("{what}: {e}"));
    let socket = TcpSocket::new_v4().map_err(|e| retry("socket", e))?;
    socket.bind(SocketAddr::V4(SocketAddrV4::new(address, 0))).map_err(|e| retry("bind", e))?;
    let mut stream = socket.connect(reflector).await.map_err(|e| retry("connect", e))?;
    stream.set_nodelay(true).map_err(|e| retry("TCP_NODELAY", e))?;
    stream.write_all(open).await.map_err(|e| retry("send OPEN", e))?;
    inbox.clear();
    let mut keepalive_every = None;
    let mut open_received = false;
    loop {
        while let Some(frame) = inbox.next_frame().map_err(Attempt::Fatal)? {
            let frame = inbox.frame(frame);
            match frame[18] {
                message_type::OPEN if !open_received => {
                    keepalive_every = accept_open(frame).map_err(Attempt::Fatal)?;
                    open_received = true;
                    stream.write_all(keepalive).await.map_err(|e| retry("send KEEPALIVE", e))?;
                }
                message_type::KEEPALIVE if open_received => return Ok((stream, keepalive_every)),
                message_type::NOTIFICATION => return Err(Attempt::Fatal(describe_notification(frame))),
                other => return Err(Attempt::Fatal(format!("unexpected message type {other} before the session was established"))),
            }
        }
        match inbox.fill(&mut stream).await {
            Ok(0) => return Err(Attempt::Retry("the reflector closed the connection".into())),
            Ok(_) => {}
            Err(e) => return Err(retry("receive", e)),
        }
    }
}

/// Received bytes not yet processed: a buffer, reads appended at `end`, frames taken from
/// `start`. Always has room for one more whole message.
struct Inbox {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Inbox {
    fn new() -> Inbox {
        Inbox { buf: vec![0; READ_BUFFER], start: 0, end: 0 }
    }

    fn clear(&mut self) {
        (self.start, self.end) = (0, 0);
    }

    /// One read from the socket into the free space; Ok(0) at end of stream.
    async fn fill(&mut self, read: &mut (impl tokio::io::AsyncRead + Unpin)) -> std::io::Result<usize> {
        if self.start == self.end {
            self.clear();
        } else if self.buf.len() - self.end < MAX_MESSAGE_LEN {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        let n = read.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// The position of the next complete message, if one is in.
    fn next_frame(&mut self) -> Result<Option<std::ops::Range<usize>>, String> {
        match frame_length(&self.buf[self.start..self.end]) {
            Ok(Some(len)) => {
                let range = self.start..self.start + len;
                self.start += len;
                Ok(Some(range))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(format!("bad message header from the reflector: {e}")),
        }
    }

    fn frame(&self, range: std::ops::Range<usize>) -> &[u8] {
        &self.buf[range]
    }
}

/// Writes what the coordinator asks for, and a KEEPALIVE whenever the interval passes. Runs
/// apart from the reader so a large write never stops reading.
async fn writer(mut write: OwnedWriteHalf, mut commands: mpsc::UnboundedReceiver<Command>, keepalive: Arc<[u8]>) -> std::io::Result<()> {
    let mut every: Option<Duration> = None;
    let mut next = tokio::time::Instant::now();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => return Ok(()),
                Some(Command::Send(bytes)) => write.write_all(&bytes).await?,
                Some(Command::Keepalives(interval)) => {
                    every = Some(interval);
                    next = tokio::time::Instant::now() + interval;
                }
            },
            _ = tokio::time::sleep_until(next), if every.is_some() => {
                write.write_all(&keepalive).await?;
                next += every.unwrap_or(KEEPALIVE_EVERY);
            }
        }
    }
}

/// Reads an established session until it ends: UPDATEs go into the receiver's table, whose
/// progress toward the phase's goal is checked after each one.
async fn receive(mut read: OwnedReadHalf, mut inbox: Inbox, receiver: &Receiver, shared: &Shared) -> Result<(), String> {
    loop {
        {
            let mut state = receiver.lock();
            while let Some(frame) = inbox.next_frame()? {
                let frame = inbox.frame(frame);
                match frame[18] {
                    message_type::UPDATE => {
                        state.table.apply_update(&frame[HEADER_LEN..]).map_err(|e| e.to_string())?;
                        state.last_update = Some(Instant::now());
                        state.note_progress(shared);
                        state.report_wrong_routes(&receiver.name, shared);
                    }
                    message_type::KEEPALIVE | message_type::ROUTE_REFRESH => {}
                    message_type::NOTIFICATION => return Err(describe_notification(frame)),
                    other => return Err(format!("unexpected message type {other} in an established session")),
                }
            }
        }
        match inbox.fill(&mut read).await {
            Ok(0) if shared.stopping.load(Ordering::SeqCst) => return Ok(()),
            Ok(0) => return Err("the reflector closed the session".into()),
            Ok(_) => {}
            Err(_) if shared.stopping.load(Ordering::SeqCst) => return Ok(()),
            Err(e) => return Err(format!("receive: {e}")),
        }
    }
}

/// Checks the reflector's OPEN; returns the KEEPALIVE interval (None when the negotiated
/// hold time is zero, RFC 4271 §4.4).
fn accept_open(frame: &[u8]) -> Result<Option<Duration>, String> {
    let received = decode_message(frame, &CodecContext::default()).map_err(|e| format!("bad OPEN from the reflector: {e}"))?;
    let Message::Open(open) = received.message else {
        return Err("expected an OPEN from the reflector".into());
    };
    let four_octet = open.capabilities.iter().find_map(|c| match c {
        Capability::FourOctetAs(asn) => Some(*asn),
        _ => None,
    });
    let peer_as = four_octet.unwrap_or(u32::from(open.my_as));
    if peer_as != AS {
        return Err(format!("the reflector's OPEN says AS {peer_as}, expected {AS}"));
    }
    let hold = open.hold_time.min(HOLD_TIME);
    Ok((hold > 0).then(|| KEEPALIVE_EVERY.min(Duration::from_secs(u64::from(hold / 3).max(1)))))
}

/// "NOTIFICATION 6/2 (Cease)" from a received NOTIFICATION frame.
fn describe_notification(frame: &[u8]) -> String {
    let (code, subcode) = (frame.get(HEADER_LEN).copied().unwrap_or(0), frame.get(HEADER_LEN + 1).copied().unwrap_or(0));
    let name = match code {
        error_code::MESSAGE_HEADER => "Message Header Error",
        error_code::OPEN_MESSAGE => "OPEN Message Error",
        error_code::UPDATE_MESSAGE => "UPDATE Message Error",
        error_code::HOLD_TIMER_EXPIRED => "Hold Timer Expired",
        error_code::FSM => "Finite State Machine Error",
        error_code::CEASE => "Cease",
        error_code::ROUTE_REFRESH_MESSAGE => "ROUTE-REFRESH Message Error",
        _ => "unknown error code",
    };
    format!("NOTIFICATION {code}/{subcode} ({name}) from the reflector")
}

/// The monitor's own thread and runtime, so its CPU time can be read apart.
struct MonitorThread {
    tid: u32,
    session: Option<oneshot::Sender<SessionSpec>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MonitorThread {
    fn start() -> anyhow::Result<MonitorThread> {
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (session_tx, session_rx) = oneshot::channel::<SessionSpec>();
        let (stop, mut stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("bench-monitor".into()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = tid_tx.send(Err(anyhow::anyhow!("monitor runtime: {e}")));
                    return;
                }
            };
            let _ = tid_tx.send(procstat::current_thread_id());
            runtime.block_on(async move {
                tokio::select! {
                    spec = session_rx => {
                        if let Ok(spec) = spec {
                            tokio::spawn(session(spec));
                        }
                        let _ = stop_rx.await;
                    }
                    _ = &mut stop_rx => {}
                }
            });
            runtime.shutdown_timeout(Duration::from_secs(2));
        })?;
        let tid = tid_rx.recv().map_err(|_| anyhow::anyhow!("the monitor thread did not start"))??;
        Ok(MonitorThread { tid, session: Some(session_tx), stop: Some(stop), thread: Some(thread) })
    }

    fn spawn_session(&mut self, spec: SessionSpec) -> anyhow::Result<()> {
        match self.session.take() {
            Some(sender) => sender.send(spec).map_err(|_| anyhow::anyhow!("the monitor thread has stopped")),
            None => anyhow::bail!("the monitor session was already started"),
        }
    }

    fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for MonitorThread {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Why a wait ended early.
enum Stop {
    Failed(Vec<String>),
    TimedOut(String),
}

/// Drives one run through its phases and fills the measurement.
struct Coordinator<'a> {
    options: &'a GeneratorOptions,
    layout: Layout,
    shared: Arc<Shared>,
    monitor: Arc<Receiver>,
    testers: Vec<Arc<Receiver>>,
    /// Per tester, the channel to its writer.
    commands: Vec<mpsc::UnboundedSender<Command>>,
    deadline: Instant,
    reflector_alive: &'a dyn Fn() -> Result<(), String>,
    measurement: Measurement,
}

impl Coordinator<'_> {
    async fn drive(&mut self, start: Instant, messages: &Prepared) -> Verdict {
        match self.phases(start, messages).await {
            Ok(()) => Verdict::Passed,
            Err(Stop::Failed(reasons)) => Verdict::Failed(reasons),
            Err(Stop::TimedOut(what)) => Verdict::TimedOut(what),
        }
    }

    async fn phases(&mut self, start: Instant, messages: &Prepared) -> Result<(), Stop> {
        let sessions = self.testers.len() + 1;
        self.wait("every session is established", || {
            let up = self.shared.established.load(Ordering::SeqCst);
            if up == sessions {
                return Ok(());
            }
            let retries = self.shared.reconnects.load(Ordering::Relaxed);
            match self.shared.last_retry.lock().expect("last retry").as_ref() {
                Some(last) => {
                    Err(format!("{up} of {sessions} sessions established; {retries} connection attempts retried, the last: {last}"))
                }
                None => Err(format!("{up} of {sessions} sessions established")),
            }
        })
        .await?;
        let last = self.shared.last_established.lock().expect("last established").unwrap_or(start);
        self.measurement.establish = Some(last.saturating_duration_since(start));

        // Fan-in and fan-out: every tester announces everything at once.
        let total = self.layout.total();
        let others = total - self.layout.per_tester;
        let t0 = self.begin_phase(Some(total), |_| Some(others));
        for (commands, bytes) in self.commands.iter().zip(&messages.announce) {
            let _ = commands.send(Command::Send(bytes.clone()));
        }
        self.wait_for_goals("fan-in and fan-out").await?;
        self.measurement.fan_in = self.monitor.lock().reached_at.map(|t| t.saturating_duration_since(t0));
        self.measurement.fan_out = self.latest_tester(t0);
        self.quiet().await;
        self.check_all(None)?;

        if self.options.scenario.workload == Workload::Churn {
            let churned = self.layout.range_of(0);
            // Tester 0 withdraws everything; the others, and the monitor, must lose it all.
            let t1 = self.begin_phase(Some(total - self.layout.per_tester), |i| (i != 0).then_some(others - self.layout.per_tester));
            let _ = self.commands[0].send(Command::Send(messages.withdraw[0].clone()));
            self.wait_for_goals("tester 0's withdrawal reaches every client").await?;
            self.measurement.withdraw = self.latest_all(t1);
            self.quiet().await;
            self.check_all(Some(churned.clone()))?;

            // And announces it all again.
            let t2 = self.begin_phase(Some(total), |i| (i != 0).then_some(others));
            let _ = self.commands[0].send(Command::Send(messages.announce[0].clone()));
            self.wait_for_goals("tester 0's re-announcement reaches every client").await?;
            self.measurement.reannounce = self.latest_all(t2);
            self.quiet().await;
            self.check_all(None)?;
        }
        Ok(())
    }

    /// Sets each receiver's goal for a new phase and returns its start instant.
    fn begin_phase(&self, monitor_goal: Option<u32>, tester_goal: impl Fn(u32) -> Option<u32>) -> Instant {
        self.shared.reached.store(0, Ordering::SeqCst);
        self.monitor.set_goal(monitor_goal, &self.shared);
        for (i, tester) in self.testers.iter().enumerate() {
            tester.set_goal(tester_goal(i as u32), &self.shared);
        }
        Instant::now()
    }

    /// Waits until every receiver with a goal reached it.
    async fn wait_for_goals(&self, what: &str) -> Result<(), Stop> {
        let waiting = std::iter::once(&self.monitor).chain(&self.testers).filter(|r| r.lock().goal.is_some()).count();
        self.wait(what, || {
            let reached = self.shared.reached.load(Ordering::SeqCst);
            if reached >= waiting {
                return Ok(());
            }
            Err(format!("{reached} of {waiting} receivers done; {}", self.laggards()))
        })
        .await
    }

    /// The receivers furthest from their goal, for a timeout message.
    fn laggards(&self) -> String {
        let mut behind: Vec<(i64, String)> = std::iter::once(&self.monitor)
            .chain(&self.testers)
            .filter_map(|r| {
                let state = r.lock();
                let goal = state.goal?;
                let held = state.table.held_count();
                (state.reached_at.is_none())
                    .then(|| ((i64::from(goal) - i64::from(held)).abs(), format!("{} holds {held} of {goal}", r.name)))
            })
            .collect();
        behind.sort_by_key(|(gap, _)| std::cmp::Reverse(*gap));
        let shown: Vec<String> = behind.iter().take(3).map(|(_, s)| s.clone()).collect();
        format!("furthest behind: {}", shown.join(", "))
    }

    fn latest_tester(&self, since: Instant) -> Option<Duration> {
        let mut latest = since;
        for tester in &self.testers {
            latest = latest.max(tester.lock().reached_at?);
        }
        Some(latest - since)
    }

    /// When the last receiver that had a goal reached it.
    fn latest_all(&self, since: Instant) -> Option<Duration> {
        let mut latest = since;
        for receiver in std::iter::once(&self.monitor).chain(&self.testers) {
            let state = receiver.lock();
            if state.goal.is_some() {
                latest = latest.max(state.reached_at?);
            }
        }
        Some(latest - since)
    }

    /// Polls `done` whenever a session reports progress (and every [`CHECK_EVERY`]), until it
    /// holds, a session fails, the reflector dies or the deadline passes.
    async fn wait(&self, what: &str, done: impl Fn() -> Result<(), String>) -> Result<(), Stop> {
        loop {
            let failures = self.shared.failures.lock().expect("failures").clone();
            if !failures.is_empty() {
                return Err(Stop::Failed(summarize(failures)));
            }
            let why_not = match done() {
                Ok(()) => return Ok(()),
                Err(why) => why,
            };
            if let Err(dead) = (self.reflector_alive)() {
                return Err(Stop::Failed(vec![format!("while waiting until {what}: {dead}")]));
            }
            let now = Instant::now();
            if now >= self.deadline {
                return Err(Stop::TimedOut(format!("{what}: {why_not}")));
            }
            let _ = tokio::time::timeout(CHECK_EVERY.min(self.deadline - now), self.shared.wake.notified()).await;
        }
    }

    /// Waits (untimed) until no UPDATE arrived for [`QUIET`], so late messages reach the checks.
    async fn quiet(&self) {
        let until = (Instant::now() + QUIET_AT_MOST).min(self.deadline);
        loop {
            let last = std::iter::once(&self.monitor).chain(&self.testers).filter_map(|r| r.lock().last_update).max();
            let now = Instant::now();
            if now >= until || last.is_none_or(|t| now.saturating_duration_since(t) >= QUIET) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The correctness checks: every receiver holds exactly what it must (all prefixes but its
    /// own, minus `withdrawn` when tester 0 has withdrawn them), and no announcement had a wrong
    /// next hop or an unknown prefix.
    fn check_all(&self, withdrawn: Option<std::ops::Range<u32>>) -> Result<(), Stop> {
        let mut problems = Vec::new();
        let total = self.layout.total();
        for (i, receiver) in std::iter::once(&self.monitor).chain(&self.testers).enumerate() {
            let tester = i.checked_sub(1).map(|t| t as u32);
            let state = receiver.lock();
            let own = tester.map(|t| self.layout.range_of(t));
            let mut expected = total - own.as_ref().map_or(0, |r| r.len() as u32);
            if let Some(gone) = &withdrawn {
                if tester != Some(0) {
                    expected -= gone.len() as u32;
                    let still = state.table.held_in(gone.clone());
                    if still > 0 {
                        problems.push(format!("{} still holds {still} of tester 0's withdrawn prefixes", receiver.name));
                    }
                }
            }
            let held = state.table.held_count();
            if held != expected {
                problems.push(format!("{} holds {held} prefixes, expected {expected}", receiver.name));
            }
            let c = &state.table.counters;
            if c.wrong_next_hop > 0 {
                problems.push(format!("{} got {} announcements with a wrong next hop", receiver.name, c.wrong_next_hop));
            }
            if c.unknown_prefix > 0 {
                problems.push(format!("{} got {} announcements of unknown prefixes", receiver.name, c.unknown_prefix));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Stop::Failed(summarize(problems)))
        }
    }
}

/// The first lines of a long list of problems, and how many more there were.
fn summarize(mut lines: Vec<String>) -> Vec<String> {
    if lines.len() > MAX_LINES {
        let more = lines.len() - MAX_LINES;
        lines.truncate(MAX_LINES);
        lines.push(format!("... and {more} more"));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepared_messages_are_full_updates_of_the_right_tester() {
        let layout = Layout::new(2, 1500).unwrap();
        let prepared = Prepared::encode(&layout).unwrap();
        // Walk tester 1's announcements as the monitor would receive them.
        let mut table = RouteTable::new(layout, u32::from(MONITOR), 0..0);
        let mut rest = &prepared.announce[1][..];
        let mut messages = 0;
        while !rest.is_empty() {
            let len = frame_length(rest).unwrap().unwrap();
            assert!(len <= MAX_MESSAGE_LEN);
            table.apply_update(&rest[HEADER_LEN..len]).unwrap();
            rest = &rest[len..];
            messages += 1;
        }
        assert_eq!(table.held_count(), 1500);
        assert_eq!(table.held_in(layout.range_of(1)), 1500);
        // 1500 /32s take 7500 octets of NLRI: two messages are as few as 4096-octet UPDATEs allow.
        assert_eq!(messages, 2);
        let mut withdrawn = &prepared.withdraw[1][..];
        while !withdrawn.is_empty() {
            let len = frame_length(withdrawn).unwrap().unwrap();
            table.apply_update(&withdrawn[HEADER_LEN..len]).unwrap();
            withdrawn = &withdrawn[len..];
        }
        assert_eq!(table.held_count(), 0);
    }

    #[test]
    fn open_carries_the_capabilities_and_notifications_are_named() {
        let layout = Layout::new(2, 1).unwrap();
        let prepared = Prepared::encode(&layout).unwrap();
        let bytes = prepared.open(layout.tester_address(0)).unwrap();
        let Message::Open(open) = decode_message(&bytes, &CodecContext::default()).unwrap().message else { panic!("not an OPEN") };
        assert_eq!((open.my_as, open.hold_time, open.bgp_id), (64511, 180, Ipv4Addr::new(127, 1, 0, 2)));
        assert!(open.capabilities.contains(&Capability::FourOctetAs(64511)));
        assert!(open.capabilities.contains(&Capability::RouteRefresh));
        assert!(open.capabilities.contains(&Capability::Multiprotocol(Family::IPV4_UNICAST)));
        // Read back as the reflector's OPEN: hold 180 s gives a KEEPALIVE every 60 s.
        assert_eq!(accept_open(&bytes).unwrap(), Some(Duration::from_secs(60)));
        let mut notification = Vec::new();
        let cease = bgp::wire::Notification { code: 6, subcode: 2, data: Vec::new() };
        encode_message(&Message::Notification(cease), &codec_context(), &mut notification).unwrap();
        assert_eq!(describe_notification(&notification), "NOTIFICATION 6/2 (Cease) from the reflector");
    }
}
