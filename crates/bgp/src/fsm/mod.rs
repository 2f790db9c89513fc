//! RFC 4271 §8 session state machine (sans-IO).
//!
//! One [`Session`] drives one BGP connection attempt to one neighbor. The runtime feeds it
//! [`Event`]s (TCP outcomes, decoded messages, operator commands) and calls
//! [`Session::poll_timers`] at [`Session::next_deadline`]; the session answers with
//! [`Action`]s (connect, send, close, deliver, up/down). It never touches a socket or reads
//! the clock: every entry point takes `now`.
//!
//! Choices where RFC 4271 leaves room, and why:
//! - **Automatic restart.** After a session ends (any error, hold expiry, NOTIFICATION, lost
//!   connection after OPEN) an active peer sits in Idle for an idle hold time of
//!   `min(connect_retry, 30 s)` and then restarts on its own (RFC 4271 Event 3,
//!   AutomaticStart, with the IdleHoldTimer of §8.1.1). 30 s is GoBGP's default
//!   "idle hold time after reset"; the `min` keeps lab setups with short retry timers fast.
//!   A passive peer goes straight back to Active and waits for the next inbound connection.
//!   Only `ManualStop` keeps a peer down.
//! - **Failed connect.** A `TcpConnectionFails` in Connect moves to Active with the
//!   ConnectRetry timer running (RFC 4271's DelayOpen branch) rather than to Idle, so an
//!   unreachable neighbor is retried every ConnectRetry while inbound connections are
//!   still accepted in the meantime.
//! - **`Action::Connect`** means "abort any pending attempt and start a new one"; the
//!   runtime must not report the outcome of an aborted attempt.
//! - **`Action::Down`** is emitted exactly when the FSM leaves OpenSent, OpenConfirm or
//!   Established, i.e. when a connection that carried BGP messages ends. A failed TCP connect
//!   is not a `Down` (the runtime reported it itself).
//! - **`Action::CloseConnection`** is emitted whenever the FSM drops its connection, even if
//!   the runtime told us it was already closed, so the runtime has one clean-up path.
//! - **Collisions (§6.8)** involve two connections, so they are resolved outside: one
//!   `Session` per connection. The runtime runs a second session for an inbound connection
//!   that arrives while the first is in progress (built from the same config with
//!   `passive = true`), reads the peer's identifier with [`Session::peer_bgp_id`] once the
//!   OPEN arrived, calls [`resolve_collision`], and hands the loser
//!   [`Event::OpenCollisionDump`] (Cease 6/7 then close). `TcpConnected` /
//!   `TcpConnectionConfirmed` reaching a session that already has a connection are ignored.
//! - **DelayOpen** and peer oscillation damping (§8.1.1 optional attributes) are not
//!   implemented; we always send OPEN as soon as TCP is up.

mod negotiate;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::types::Family;
use crate::wire::codes::{cease_subcode, error_code, fsm_subcode};
use crate::wire::{AddPathFamily, CodecContext, GracefulRestart, Message, Notification, Open, Update};

pub use negotiate::{check_open, local_open, negotiate};

/// The only BGP version we speak (RFC 4271).
pub const BGP_VERSION: u8 = 4;
/// Hold timer used in OpenSent before the hold time is negotiated: RFC 4271 §8.2.2 suggests
/// a "large value" of 4 minutes.
pub const OPEN_SENT_HOLD_TIME: Duration = Duration::from_secs(240);
/// Upper bound of the idle hold time after a session ends (GoBGP's default idle hold time
/// after reset).
pub const IDLE_HOLD_AFTER_RESET: Duration = Duration::from_secs(30);
/// GoBGP's default proposed hold time, seconds.
pub const DEFAULT_HOLD_TIME: u16 = 90;
/// GoBGP's default ConnectRetry interval.
pub const DEFAULT_CONNECT_RETRY: Duration = Duration::from_secs(120);

/// What the runtime configures per neighbor (from GoBGP-style config). Everything the FSM
/// needs to build its OPEN and to judge the peer's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    /// Our AS; sent in the 4-octet AS capability, and in the OPEN's 2-octet field when it fits.
    pub local_as: u32,
    /// Our BGP identifier (router id).
    pub local_id: Ipv4Addr,
    /// The AS the peer must announce; a mismatch is NOTIFICATION 2/2 (Bad Peer AS).
    pub remote_as: u32,
    /// Hold time we propose, seconds (0, or at least 3).
    pub hold_time: u16,
    /// Keepalive interval, seconds; `None` means one third of the negotiated hold time.
    /// Never more than one third of the negotiated hold time.
    pub keepalive_interval: Option<u16>,
    /// ConnectRetry interval (RFC 4271 §10).
    pub connect_retry: Duration,
    /// Passive peers never initiate a connection: no `Action::Connect`, ever.
    pub passive: bool,
    /// Families advertised with the Multiprotocol capability (none: IPv4 unicast implied).
    pub families: Vec<Family>,
    /// Graceful restart capability we advertise, if any.
    pub graceful_restart: Option<GracefulRestart>,
    /// ADD-PATH capability entries we advertise.
    pub add_path: Vec<AddPathFamily>,
}

impl PeerConfig {
    /// A config with GoBGP's defaults: hold 90 s, keepalive hold/3, connect retry 120 s,
    /// active, IPv4 unicast, no graceful restart, no ADD-PATH.
    pub fn new(local_as: u32, local_id: Ipv4Addr, remote_as: u32) -> PeerConfig {
        PeerConfig {
            local_as,
            local_id,
            remote_as,
            hold_time: DEFAULT_HOLD_TIME,
            keepalive_interval: None,
            connect_retry: DEFAULT_CONNECT_RETRY,
            passive: false,
            families: vec![Family::IPV4_UNICAST],
            graceful_restart: None,
            add_path: Vec::new(),
        }
    }

    /// iBGP session: both ends in the same AS.
    pub fn is_ibgp(&self) -> bool {
        self.local_as == self.remote_as
    }

    /// Reject settings the FSM cannot honour, naming the field. The runtime calls this when
    /// it loads a neighbor; [`Session::new`] itself accepts anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field: &'static str, reason: String| ConfigError { remote_as: self.remote_as, field, reason };
        if self.local_as == 0 {
            return Err(err("local_as", "AS 0 is reserved (RFC 7607)".into()));
        }
        if self.remote_as == 0 {
            return Err(err("remote_as", "AS 0 is reserved (RFC 7607)".into()));
        }
        if self.local_id.is_unspecified() {
            return Err(err("local_id", "the BGP identifier must not be 0.0.0.0".into()));
        }
        if self.hold_time == 1 || self.hold_time == 2 {
            return Err(err("hold_time", format!("{} s: must be 0 or at least 3 (RFC 4271 §4.2)", self.hold_time)));
        }
        if self.keepalive_interval == Some(0) && self.hold_time != 0 {
            return Err(err("keepalive_interval", "0 s with a non-zero hold time would never send KEEPALIVE".into()));
        }
        if self.connect_retry.is_zero() {
            return Err(err("connect_retry", "must be greater than 0".into()));
        }
        if let Some(gr) = &self.graceful_restart {
            if gr.restart_time > 0x0fff {
                return Err(err("graceful_restart.restart_time", format!("{} s does not fit in 12 bits (max 4095)", gr.restart_time)));
            }
        }
        Ok(())
    }
}

/// A neighbor setting the FSM refuses; names the neighbor (by AS) and the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("neighbor AS{remote_as}: field `{field}`: {reason}")]
pub struct ConfigError {
    pub remote_as: u32,
    pub field: &'static str,
    pub reason: String,
}

/// RFC 4271 §8.2.2 session states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Refusing connections; waiting for a start (manual, or automatic after the idle hold).
    Idle,
    /// Waiting for our outbound TCP connection to complete.
    Connect,
    /// Waiting for an inbound connection (and, for active peers, for ConnectRetry to expire).
    Active,
    /// OPEN sent, waiting for the peer's.
    OpenSent,
    /// OPENs exchanged, waiting for the first KEEPALIVE.
    OpenConfirm,
    /// Session up: UPDATEs flow.
    Established,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Idle => "Idle",
            State::Connect => "Connect",
            State::Active => "Active",
            State::OpenSent => "OpenSent",
            State::OpenConfirm => "OpenConfirm",
            State::Established => "Established",
        })
    }
}

/// Inputs to the FSM (RFC 4271 §8.1). Timer events (Events 9-13) are not here: they fire
/// from [`Session::poll_timers`].
// Events are handed over one at a time and consumed at once, never stored in bulk, so the
// size of the `Message` variant costs nothing worth a Box on every UPDATE.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Event 1: ManualStart. The operator (or configuration) wants the session up.
    ManualStart,
    /// Event 2: ManualStop. Take the session down and keep it down.
    ManualStop,
    /// Event 17: TcpConnectionConfirmed. An inbound connection from this peer was accepted.
    TcpConnectionConfirmed,
    /// Event 16: Tcp_CR_Acked / TcpConnectionValid. Our outbound connect succeeded.
    TcpConnected,
    /// Event 18: TcpConnectionFails. The connect failed or the connection closed.
    TcpConnectionFails,
    /// Events 19 (BGPOpen), 24-25 (NotifMsg), 26 (KeepAliveMsg), 27 (UpdateMsg) and
    /// ROUTE-REFRESH (RFC 2918): a decoded message.
    Message(Message),
    /// Events 21 (BGPHeaderErr), 22 (BGPOpenMsgErr), 28 (UpdateMsgErr): the codec rejected a
    /// message; send this NOTIFICATION and close.
    DecodeError(Notification),
    /// Event 23: OpenCollisionDump. Collision resolution chose to drop this connection:
    /// send Cease 6/7 and close.
    OpenCollisionDump,
}

/// What the runtime must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open a TCP connection to the peer (aborting any pending attempt).
    Connect,
    /// Encode and send this message.
    Send(Message),
    /// Close the TCP connection after flushing queued output.
    CloseConnection,
    /// The session came up.
    Established(Negotiated),
    /// An UPDATE received in Established.
    Deliver(Update),
    /// The peer asked us to resend our routes of a family (RFC 2918).
    RouteRefreshRequested(Family),
    /// The session left OpenSent, OpenConfirm or Established.
    Down { reason: DownReason },
}

/// Why a session went down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DownReason {
    /// Event 2: ManualStop (we sent Cease / Administrative Shutdown if OPEN was sent).
    ManualStop,
    /// We detected an error and sent this NOTIFICATION.
    NotificationSent(Notification),
    /// The peer sent this NOTIFICATION.
    NotificationReceived(Notification),
    /// Event 10: no message within the hold time (we sent 4/0).
    HoldTimerExpired,
    /// The TCP connection closed or failed under us.
    ConnectionClosed,
}

impl fmt::Display for DownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DownReason::ManualStop => f.write_str("manual stop"),
            DownReason::NotificationSent(n) => write!(f, "sent NOTIFICATION {}/{}", n.code, n.subcode),
            DownReason::NotificationReceived(n) => write!(f, "received NOTIFICATION {}/{}", n.code, n.subcode),
            DownReason::HoldTimerExpired => f.write_str("hold timer expired"),
            DownReason::ConnectionClosed => f.write_str("connection closed"),
        }
    }
}

/// What both ends agreed on once the OPENs were exchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// The peer's real AS (from the 4-octet AS capability when present).
    pub peer_as: u32,
    pub peer_id: Ipv4Addr,
    /// min(ours, theirs), seconds; 0 means no KEEPALIVEs and no hold timer.
    pub hold_time: u16,
    /// Seconds between our KEEPALIVEs; 0 when the hold time is 0.
    pub keepalive: u16,
    /// Both advertised the 4-octet AS capability (we always do).
    pub four_octet_as: bool,
    /// Families both advertised (IPv4 unicast implied when a side sends no MP capability),
    /// in our configured order.
    pub families: Vec<Family>,
    /// The peer advertised ROUTE-REFRESH (or Enhanced Route Refresh).
    pub route_refresh: bool,
    /// The peer's graceful restart capability.
    pub graceful_restart: Option<GracefulRestart>,
    /// What the codec must use on this session.
    pub codec: CodecContext,
    /// The peer's OPEN as received.
    pub peer_open: Open,
}

/// RFC 4271 §6.8: which connection survives a collision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CollisionWinner {
    /// Keep the connection that was there first; close the new one.
    Existing,
    /// Keep the new connection; close the existing one.
    New,
}

/// RFC 4271 §6.8 collision resolution: the connection initiated by the speaker with the
/// higher BGP identifier (compared as host-order u32) survives. A collision is one
/// connection we initiated and one the peer initiated, so `existing_initiated_locally`
/// tells which one is which. Equal identifiers (possible on eBGP, RFC 6286) cannot be
/// decided without the AS numbers: this keeps the existing connection; use
/// [`resolve_collision_with_as`] when they are at hand.
pub fn resolve_collision(local_id: Ipv4Addr, remote_id: Ipv4Addr, existing_initiated_locally: bool) -> CollisionWinner {
    let (local, remote) = (u32::from(local_id), u32::from(remote_id));
    if local == remote {
        return CollisionWinner::Existing;
    }
    survivor(local > remote, existing_initiated_locally)
}

/// Collision resolution with the RFC 6286 §2.3 tie-break: when the identifiers are equal,
/// the connection initiated by the speaker with the larger AS number survives.
pub fn resolve_collision_with_as(
    local_id: Ipv4Addr,
    local_as: u32,
    remote_id: Ipv4Addr,
    remote_as: u32,
    existing_initiated_locally: bool,
) -> CollisionWinner {
    let (local, remote) = (u32::from(local_id), u32::from(remote_id));
    if local != remote {
        return survivor(local > remote, existing_initiated_locally);
    }
    if local_as == remote_as {
        return CollisionWinner::Existing;
    }
    survivor(local_as > remote_as, existing_initiated_locally)
}

fn survivor(keep_locally_initiated: bool, existing_initiated_locally: bool) -> CollisionWinner {
    if keep_locally_initiated == existing_initiated_locally {
        CollisionWinner::Existing
    } else {
        CollisionWinner::New
    }
}

/// Armed timers as absolute deadlines (`None`: stopped). Kept apart so that leaving a
/// connected state can stop them all at once.
#[derive(Clone, Debug, Default)]
struct Timers {
    /// RFC 4271 ConnectRetryTimer.
    connect_retry: Option<Instant>,
    /// RFC 4271 HoldTimer.
    hold: Option<Instant>,
    /// RFC 4271 KeepaliveTimer.
    keepalive: Option<Instant>,
    /// RFC 4271 §8.1.1 IdleHoldTimer: automatic restart after a session ended.
    idle_hold: Option<Instant>,
}

/// The FSM of one BGP connection to one neighbor: state, timers and what was negotiated.
#[derive(Clone, Debug)]
pub struct Session {
    config: PeerConfig,
    state: State,
    /// The operator wants this session up (ManualStart seen, no ManualStop since). Decides
    /// whether an ended session restarts on its own.
    enabled: bool,
    timers: Timers,
    /// Set when the peer's OPEN is accepted (OpenConfirm), cleared when the session ends.
    negotiated: Option<Negotiated>,
}

impl Session {
    /// A session in Idle; nothing happens until `Event::ManualStart`.
    pub fn new(config: PeerConfig) -> Self {
        Session { config, state: State::Idle, enabled: false, timers: Timers::default(), negotiated: None }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn config(&self) -> &PeerConfig {
        &self.config
    }

    /// What was negotiated: available from OpenConfirm on (so collision resolution can use the
    /// peer's identifier) and in Established; `None` otherwise.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// The peer's BGP identifier once its OPEN was accepted (OpenConfirm, Established).
    pub fn peer_bgp_id(&self) -> Option<Ipv4Addr> {
        self.negotiated.as_ref().map(|n| n.peer_id)
    }

    /// The OPEN this session sends.
    pub fn local_open(&self) -> Open {
        local_open(&self.config)
    }

    /// When the runtime must call [`Session::poll_timers`] next; `None` when no timer runs.
    pub fn next_deadline(&self) -> Option<Instant> {
        let t = &self.timers;
        [t.connect_retry, t.hold, t.keepalive, t.idle_hold].into_iter().flatten().min()
    }

    /// Feed one event; returns the actions to carry out in order.
    pub fn process(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::ManualStart => self.on_manual_start(now, &mut out),
            Event::ManualStop => self.on_manual_stop(now, &mut out),
            Event::TcpConnected | Event::TcpConnectionConfirmed => self.on_tcp_up(now, &mut out),
            Event::TcpConnectionFails => self.on_tcp_fails(now, &mut out),
            Event::Message(message) => self.on_message(message, now, &mut out),
            Event::DecodeError(notification) => {
                if self.has_bgp_connection() {
                    self.drop_session(now, Some(notification.clone()), DownReason::NotificationSent(notification), &mut out);
                }
            }
            Event::OpenCollisionDump => {
                if self.has_bgp_connection() {
                    let n = notification(error_code::CEASE, cease_subcode::CONNECTION_COLLISION_RESOLUTION);
                    self.drop_session(now, Some(n.clone()), DownReason::NotificationSent(n), &mut out);
                }
            }
        }
        out
    }

    /// Fire every timer whose deadline is at or before `now` (Events 3, 9, 10, 11), each at
    /// most once per call, the hold timer first since its expiry ends the session.
    pub fn poll_timers(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let due = |t: Option<Instant>| t.is_some_and(|d| d <= now);
        if due(self.timers.hold) {
            // Event 10: HoldTimer_Expires.
            self.timers.hold = None;
            if self.has_bgp_connection() {
                let n = notification(error_code::HOLD_TIMER_EXPIRED, 0);
                self.drop_session(now, Some(n), DownReason::HoldTimerExpired, &mut out);
            }
        }
        if due(self.timers.keepalive) {
            // Event 11: KeepaliveTimer_Expires.
            self.timers.keepalive = None;
            if matches!(self.state, State::OpenConfirm | State::Established) {
                out.push(Action::Send(Message::Keepalive));
                self.start_keepalive_timer(now);
            }
        }
        if due(self.timers.connect_retry) {
            // Event 9: ConnectRetryTimer_Expires.
            self.timers.connect_retry = None;
            if matches!(self.state, State::Connect | State::Active) && !self.config.passive {
                out.push(Action::Connect);
                self.state = State::Connect;
                self.timers.connect_retry = Some(now + self.config.connect_retry);
            }
        }
        if due(self.timers.idle_hold) {
            // Event 3: AutomaticStart, after the idle hold time.
            self.timers.idle_hold = None;
            if self.state == State::Idle && self.enabled {
                self.start(now, &mut out);
            }
        }
        out
    }

    /// States in which a TCP connection exists and BGP messages have been sent on it.
    fn has_bgp_connection(&self) -> bool {
        matches!(self.state, State::OpenSent | State::OpenConfirm | State::Established)
    }

    fn idle_hold_time(&self) -> Duration {
        self.config.connect_retry.min(IDLE_HOLD_AFTER_RESET)
    }

    /// Leave Idle: connect (active peers) or wait for the peer (passive).
    fn start(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.timers = Timers::default();
        if self.config.passive {
            self.state = State::Active;
        } else {
            self.state = State::Connect;
            self.timers.connect_retry = Some(now + self.config.connect_retry);
            out.push(Action::Connect);
        }
    }

    fn on_manual_start(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.enabled = true;
        // RFC 4271: ManualStart is ignored outside Idle.
        if self.state == State::Idle {
            self.start(now, out);
        }
    }

    fn on_manual_stop(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.enabled = false;
        match self.state {
            State::Idle => self.timers = Timers::default(),
            State::Connect => {
                // Abort the pending connect.
                out.push(Action::CloseConnection);
                self.timers = Timers::default();
                self.state = State::Idle;
            }
            State::Active => {
                self.timers = Timers::default();
                self.state = State::Idle;
            }
            State::OpenSent | State::OpenConfirm | State::Established => {
                let n = notification(error_code::CEASE, cease_subcode::ADMINISTRATIVE_SHUTDOWN);
                self.drop_session(now, Some(n), DownReason::ManualStop, out);
            }
        }
    }

    /// Events 16/17: a TCP connection to the peer is up.
    fn on_tcp_up(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.state {
            // Idle refuses connections (a stale outbound one is dropped the same way).
            State::Idle => out.push(Action::CloseConnection),
            State::Connect | State::Active => {
                self.timers = Timers::default();
                out.push(Action::Send(Message::Open(self.local_open())));
                self.timers.hold = Some(now + OPEN_SENT_HOLD_TIME);
                self.state = State::OpenSent;
            }
            // A second connection: collision handling belongs to the runtime (module docs).
            State::OpenSent | State::OpenConfirm | State::Established => {}
        }
    }

    /// Event 18.
    fn on_tcp_fails(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.state {
            // Stale report: no attempt is pending in these states.
            State::Idle | State::Active => {}
            State::Connect => {
                self.state = State::Active;
                self.timers = Timers::default();
                self.timers.connect_retry = Some(now + self.config.connect_retry);
            }
            State::OpenSent => {
                // RFC 4271 §8.2.2: OpenSent goes back to Active and keeps listening.
                out.push(Action::CloseConnection);
                out.push(Action::Down { reason: DownReason::ConnectionClosed });
                self.negotiated = None;
                self.timers = Timers::default();
                self.state = State::Active;
                if !self.config.passive {
                    self.timers.connect_retry = Some(now + self.config.connect_retry);
                }
            }
            State::OpenConfirm | State::Established => {
                self.drop_session(now, None, DownReason::ConnectionClosed, out);
            }
        }
    }

    fn on_message(&mut self, message: Message, now: Instant, out: &mut Vec<Action>) {
        if let Message::Notification(n) = message {
            // Events 24/25: close without answering.
            match self.state {
                State::Idle => {}
                _ => self.drop_session(now, None, DownReason::NotificationReceived(n), out),
            }
            return;
        }
        match (self.state, message) {
            // No connection in Idle: nothing to answer on.
            (State::Idle, _) => {}
            // A message before TCP is up is a runtime inconsistency: drop it all (RFC 4271
            // "any other event" in Connect/Active goes to Idle).
            (State::Connect | State::Active, _) => self.drop_session(now, None, DownReason::ConnectionClosed, out),
            (State::OpenSent, Message::Open(open)) => match check_open(&self.config, &open) {
                Ok(()) => self.accept_open(open, now, out),
                Err(n) => self.drop_session(now, Some(n.clone()), DownReason::NotificationSent(n), out),
            },
            (State::OpenSent, _) => self.fsm_error(fsm_subcode::UNEXPECTED_IN_OPENSENT, now, out),
            (State::OpenConfirm, Message::Keepalive) => {
                // Event 26: the peer accepted our OPEN.
                self.restart_hold_timer(now);
                self.state = State::Established;
                if let Some(negotiated) = &self.negotiated {
                    out.push(Action::Established(negotiated.clone()));
                }
            }
            (State::OpenConfirm, _) => self.fsm_error(fsm_subcode::UNEXPECTED_IN_OPENCONFIRM, now, out),
            (State::Established, Message::Keepalive) => self.restart_hold_timer(now),
            (State::Established, Message::Update(update)) => {
                self.restart_hold_timer(now);
                out.push(Action::Deliver(update));
            }
            (State::Established, Message::RouteRefresh(rr)) => {
                self.restart_hold_timer(now);
                // RFC 2918 §4: ignore families not negotiated; RFC 7313 §5: only subtype 0 is
                // a request (1/2 are the sender's BoRR/EoRR markers, others are ignored).
                let negotiated = self.negotiated.as_ref().is_some_and(|n| n.families.contains(&rr.family));
                if rr.subtype == 0 && negotiated {
                    out.push(Action::RouteRefreshRequested(rr.family));
                }
            }
            (State::Established, _) => self.fsm_error(fsm_subcode::UNEXPECTED_IN_ESTABLISHED, now, out),
        }
    }

    /// Event 19 in OpenSent: the OPEN passed the checks.
    fn accept_open(&mut self, open: Open, now: Instant, out: &mut Vec<Action>) {
        let negotiated = negotiate(&self.config, open);
        out.push(Action::Send(Message::Keepalive));
        self.timers = Timers::default();
        self.negotiated = Some(negotiated);
        self.restart_hold_timer(now);
        self.start_keepalive_timer(now);
        self.state = State::OpenConfirm;
    }

    fn restart_hold_timer(&mut self, now: Instant) {
        let hold = self.negotiated.as_ref().map_or(0, |n| n.hold_time);
        self.timers.hold = (hold > 0).then(|| now + Duration::from_secs(hold.into()));
    }

    fn start_keepalive_timer(&mut self, now: Instant) {
        let keepalive = self.negotiated.as_ref().map_or(0, |n| n.keepalive);
        self.timers.keepalive = (keepalive > 0).then(|| now + Duration::from_secs(keepalive.into()));
    }

    /// A message not allowed in this state: NOTIFICATION 5/x (RFC 6608) and close.
    fn fsm_error(&mut self, subcode: u8, now: Instant, out: &mut Vec<Action>) {
        let n = notification(error_code::FSM, subcode);
        self.drop_session(now, Some(n.clone()), DownReason::NotificationSent(n), out);
    }

    /// End the connection: optionally send a NOTIFICATION, close, report `Down` if BGP had
    /// started on it, then go to Idle (or restart, see the module docs).
    fn drop_session(&mut self, now: Instant, send: Option<Notification>, reason: DownReason, out: &mut Vec<Action>) {
        if let Some(n) = send {
            out.push(Action::Send(Message::Notification(n)));
        }
        out.push(Action::CloseConnection);
        if self.has_bgp_connection() {
            out.push(Action::Down { reason });
        }
        self.negotiated = None;
        self.timers = Timers::default();
        if !self.enabled {
            self.state = State::Idle;
        } else if self.config.passive {
            self.state = State::Active;
        } else {
            self.state = State::Idle;
            self.timers.idle_hold = Some(now + self.idle_hold_time());
        }
    }
}

fn notification(code: u8, subcode: u8) -> Notification {
    Notification { code, subcode, data: Vec::new() }
}
