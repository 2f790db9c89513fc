//! FSM tests: replayable tables (events in, exact actions, state and next deadline out) for
//! the transitions and timers, and direct tests of OPEN checks, negotiation and collision
//! resolution.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::negotiate::hold_and_keepalive;
use super::*;
use crate::types::{Family, AS_TRANS};
use crate::wire::codes::{cease_subcode, error_code, fsm_subcode, open_subcode};
use crate::wire::{AddPathFamily, Capability, GracefulRestart, Message, Notification, Open, RouteRefresh, Update};

const LOCAL_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const PEER_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const LOCAL_AS: u32 = 65001;
const PEER_AS: u32 = 65002;

/// eBGP, hold 90, connect retry 5 s (so the idle hold is 5 s too), IPv4 unicast.
fn config() -> PeerConfig {
    PeerConfig { connect_retry: Duration::from_secs(5), ..PeerConfig::new(LOCAL_AS, LOCAL_ID, PEER_AS) }
}

fn passive_config() -> PeerConfig {
    PeerConfig { passive: true, ..config() }
}

/// A well-formed OPEN from the peer with the given hold time.
fn peer_open(hold_time: u16) -> Open {
    Open {
        version: 4,
        my_as: PEER_AS as u16,
        hold_time,
        bgp_id: PEER_ID,
        capabilities: vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::RouteRefresh,
            Capability::FourOctetAs(PEER_AS),
        ],
    }
}

fn notif(code: u8, subcode: u8) -> Notification {
    Notification { code, subcode, data: Vec::new() }
}

fn send_notif(code: u8, subcode: u8) -> Action {
    Action::Send(Message::Notification(notif(code, subcode)))
}

fn down(reason: DownReason) -> Action {
    Action::Down { reason }
}

fn sent(code: u8, subcode: u8) -> DownReason {
    DownReason::NotificationSent(notif(code, subcode))
}

fn update() -> Update {
    Update { nlri: vec!["192.0.2.0/24".parse::<crate::types::Prefix>().unwrap().into()], ..Update::default() }
}

fn rr(family: Family, subtype: u8) -> Input {
    msg(Message::RouteRefresh(RouteRefresh { family, subtype }))
}

/// One row of a replayable table: at `at` seconds after the start, feed `input`; expect
/// exactly `actions`, then `state`, then `next_deadline` at `deadline` seconds (None: no timer).
struct Step {
    at: u64,
    input: Input,
    actions: Vec<Action>,
    state: State,
    deadline: Option<u64>,
}

#[allow(clippy::large_enum_variant)] // test rows, a handful per table
enum Input {
    Ev(Event),
    Poll,
}

fn step(at: u64, input: Input, actions: Vec<Action>, state: State, deadline: Option<u64>) -> Step {
    Step { at, input, actions, state, deadline }
}

fn ev(event: Event) -> Input {
    Input::Ev(event)
}

fn msg(message: Message) -> Input {
    Input::Ev(Event::Message(message))
}

fn replay(session: &mut Session, t0: Instant, steps: Vec<Step>) {
    for (i, s) in steps.into_iter().enumerate() {
        let now = t0 + Duration::from_secs(s.at);
        let actions = match s.input {
            Input::Ev(event) => session.process(event, now),
            Input::Poll => session.poll_timers(now),
        };
        assert_eq!(actions, s.actions, "step {i} (t={}s): actions", s.at);
        assert_eq!(session.state(), s.state, "step {i} (t={}s): state", s.at);
        let deadline = session.next_deadline().map(|d| d.duration_since(t0).as_secs());
        let exact = session.next_deadline().map(|d| d.duration_since(t0).subsec_nanos());
        assert!(exact.is_none_or(|n| n == 0), "step {i}: deadline not on a whole second");
        assert_eq!(deadline, s.deadline, "step {i} (t={}s): next deadline", s.at);
    }
}

/// Drive a fresh session to Established at t0 with a peer proposing `peer_hold`.
fn established(config: PeerConfig, peer_hold: u16) -> (Session, Instant) {
    let t0 = Instant::now();
    let mut session = Session::new(config);
    session.process(Event::ManualStart, t0);
    session.process(Event::TcpConnectionConfirmed, t0);
    session.process(Event::Message(Message::Open(peer_open(peer_hold))), t0);
    let actions = session.process(Event::Message(Message::Keepalive), t0);
    assert!(matches!(actions.as_slice(), [Action::Established(_)]), "{actions:?}");
    (session, t0)
}

/// Drive a fresh session to OpenSent at t0.
fn open_sent(config: PeerConfig) -> (Session, Instant) {
    let t0 = Instant::now();
    let mut session = Session::new(config);
    session.process(Event::ManualStart, t0);
    session.process(Event::TcpConnectionConfirmed, t0);
    assert_eq!(session.state(), State::OpenSent);
    (session, t0)
}

// ---- replayable tables -------------------------------------------------------------------

#[test]
fn table_active_peer_up_keepalives_hold_expiry_and_restart() {
    let cfg = config();
    let local = local_open(&cfg);
    let negotiated = negotiate(&cfg, peer_open(30));
    assert_eq!((negotiated.hold_time, negotiated.keepalive), (30, 10));
    let t0 = Instant::now();
    let mut s = Session::new(cfg);
    assert_eq!(s.state(), State::Idle);
    assert_eq!(s.next_deadline(), None);
    use State::*;
    replay(
        &mut s,
        t0,
        vec![
            step(0, ev(Event::ManualStart), vec![Action::Connect], Connect, Some(5)),
            step(0, ev(Event::TcpConnected), vec![Action::Send(Message::Open(local))], OpenSent, Some(240)),
            step(1, msg(Message::Open(peer_open(30))), vec![Action::Send(Message::Keepalive)], OpenConfirm, Some(11)),
            step(2, msg(Message::Keepalive), vec![Action::Established(negotiated)], Established, Some(11)),
            step(11, Input::Poll, vec![Action::Send(Message::Keepalive)], Established, Some(21)),
            step(12, msg(Message::Update(update())), vec![Action::Deliver(update())], Established, Some(21)),
            step(21, Input::Poll, vec![Action::Send(Message::Keepalive)], Established, Some(31)),
            step(31, Input::Poll, vec![Action::Send(Message::Keepalive)], Established, Some(41)),
            step(41, Input::Poll, vec![Action::Send(Message::Keepalive)], Established, Some(42)),
            // Hold timer (restarted by the UPDATE at 12) expires at 42.
            step(
                42,
                Input::Poll,
                vec![
                    send_notif(error_code::HOLD_TIMER_EXPIRED, 0),
                    Action::CloseConnection,
                    down(DownReason::HoldTimerExpired),
                ],
                Idle,
                Some(47),
            ),
            // Idle refuses connections while waiting out the idle hold.
            step(44, ev(Event::TcpConnectionConfirmed), vec![Action::CloseConnection], Idle, Some(47)),
            // Automatic restart after min(connect_retry, 30 s).
            step(47, Input::Poll, vec![Action::Connect], Connect, Some(52)),
        ],
    );
    assert!(s.negotiated().is_none());
}

#[test]
fn table_passive_peer_never_connects_and_returns_to_active() {
    let cfg = passive_config();
    let local = local_open(&cfg);
    let t0 = Instant::now();
    let mut s = Session::new(cfg);
    use State::*;
    let closed = || vec![Action::CloseConnection, down(DownReason::ConnectionClosed)];
    replay(
        &mut s,
        t0,
        vec![
            step(0, ev(Event::ManualStart), vec![], Active, None),
            step(500, Input::Poll, vec![], Active, None),
            step(500, ev(Event::TcpConnectionConfirmed), vec![Action::Send(Message::Open(local.clone()))], OpenSent, Some(740)),
            step(501, msg(Message::Open(peer_open(30))), vec![Action::Send(Message::Keepalive)], OpenConfirm, Some(511)),
            step(
                502,
                msg(Message::Notification(notif(error_code::CEASE, cease_subcode::ADMINISTRATIVE_RESET))),
                vec![
                    Action::CloseConnection,
                    down(DownReason::NotificationReceived(notif(error_code::CEASE, cease_subcode::ADMINISTRATIVE_RESET))),
                ],
                Active,
                None,
            ),
            step(503, ev(Event::TcpConnectionConfirmed), vec![Action::Send(Message::Open(local.clone()))], OpenSent, Some(743)),
            // OpenSent + connection lost: back to Active (RFC 4271 §8.2.2), no ConnectRetry.
            step(504, ev(Event::TcpConnectionFails), closed(), Active, None),
            step(505, ev(Event::TcpConnectionConfirmed), vec![Action::Send(Message::Open(local))], OpenSent, Some(745)),
            step(506, msg(Message::Open(peer_open(90))), vec![Action::Send(Message::Keepalive)], OpenConfirm, Some(536)),
            step(507, ev(Event::TcpConnectionFails), closed(), Active, None),
            step(1000, Input::Poll, vec![], Active, None),
            step(1001, ev(Event::ManualStop), vec![], Idle, None),
        ],
    );
}

#[test]
fn table_connect_retry_and_failed_connects() {
    let cfg = config();
    let local = local_open(&cfg);
    let t0 = Instant::now();
    let mut s = Session::new(cfg);
    use State::*;
    replay(
        &mut s,
        t0,
        vec![
            step(0, ev(Event::ManualStart), vec![Action::Connect], Connect, Some(5)),
            // ManualStart outside Idle is ignored.
            step(1, ev(Event::ManualStart), vec![], Connect, Some(5)),
            // ConnectRetry expiry in Connect: retry and restart the timer.
            step(5, Input::Poll, vec![Action::Connect], Connect, Some(10)),
            // Connect failed: Active, retry when ConnectRetry expires.
            step(6, ev(Event::TcpConnectionFails), vec![], Active, Some(11)),
            // A stale failure report in Active changes nothing.
            step(8, ev(Event::TcpConnectionFails), vec![], Active, Some(11)),
            step(11, Input::Poll, vec![Action::Connect], Connect, Some(16)),
            // An inbound connection is accepted in Connect too.
            step(12, ev(Event::TcpConnectionConfirmed), vec![Action::Send(Message::Open(local.clone()))], OpenSent, Some(252)),
            step(13, ev(Event::TcpConnectionFails), vec![Action::CloseConnection, down(DownReason::ConnectionClosed)], Active, Some(18)),
            step(18, Input::Poll, vec![Action::Connect], Connect, Some(23)),
            // ManualStop aborts the pending connect; no Down (no BGP on it yet).
            step(19, ev(Event::ManualStop), vec![Action::CloseConnection], Idle, None),
            step(100, Input::Poll, vec![], Idle, None),
            step(100, ev(Event::TcpConnectionConfirmed), vec![Action::CloseConnection], Idle, None),
            step(101, ev(Event::ManualStart), vec![Action::Connect], Connect, Some(106)),
            step(102, ev(Event::TcpConnectionFails), vec![], Active, Some(107)),
            // An inbound connection while Active (active peer).
            step(103, ev(Event::TcpConnectionConfirmed), vec![Action::Send(Message::Open(local))], OpenSent, Some(343)),
        ],
    );
}

#[test]
fn table_open_sent_hold_timer_is_four_minutes() {
    let t0 = Instant::now();
    let mut s = Session::new(config());
    let local = s.local_open();
    use State::*;
    replay(
        &mut s,
        t0,
        vec![
            step(0, ev(Event::ManualStart), vec![Action::Connect], Connect, Some(5)),
            step(3, ev(Event::TcpConnected), vec![Action::Send(Message::Open(local))], OpenSent, Some(243)),
            step(242, Input::Poll, vec![], OpenSent, Some(243)),
            step(
                243,
                Input::Poll,
                vec![
                    send_notif(error_code::HOLD_TIMER_EXPIRED, 0),
                    Action::CloseConnection,
                    down(DownReason::HoldTimerExpired),
                ],
                Idle,
                Some(248),
            ),
        ],
    );
}

#[test]
fn table_hold_time_zero_runs_no_timers() {
    let t0 = Instant::now();
    let cfg = config();
    let negotiated = negotiate(&cfg, peer_open(0));
    assert_eq!((negotiated.hold_time, negotiated.keepalive), (0, 0));
    let mut s = Session::new(cfg);
    let local = s.local_open();
    use State::*;
    replay(
        &mut s,
        t0,
        vec![
            step(0, ev(Event::ManualStart), vec![Action::Connect], Connect, Some(5)),
            step(0, ev(Event::TcpConnected), vec![Action::Send(Message::Open(local))], OpenSent, Some(240)),
            step(1, msg(Message::Open(peer_open(0))), vec![Action::Send(Message::Keepalive)], OpenConfirm, None),
            step(2, msg(Message::Keepalive), vec![Action::Established(negotiated)], Established, None),
            step(100_000, Input::Poll, vec![], Established, None),
            step(100_001, msg(Message::Keepalive), vec![], Established, None),
        ],
    );
}

#[test]
fn table_hold_restarts_in_open_confirm_and_expires_there() {
    let t0 = Instant::now();
    let mut s = Session::new(config());
    let local = s.local_open();
    use State::*;
    replay(
        &mut s,
        t0,
        vec![
            step(0, ev(Event::ManualStart), vec![Action::Connect], Connect, Some(5)),
            step(0, ev(Event::TcpConnected), vec![Action::Send(Message::Open(local))], OpenSent, Some(240)),
            // Peer proposes 9: hold 9, keepalive 3.
            step(0, msg(Message::Open(peer_open(9))), vec![Action::Send(Message::Keepalive)], OpenConfirm, Some(3)),
            step(3, Input::Poll, vec![Action::Send(Message::Keepalive)], OpenConfirm, Some(6)),
            step(6, Input::Poll, vec![Action::Send(Message::Keepalive)], OpenConfirm, Some(9)),
            step(
                9,
                Input::Poll,
                vec![
                    send_notif(error_code::HOLD_TIMER_EXPIRED, 0),
                    Action::CloseConnection,
                    down(DownReason::HoldTimerExpired),
                ],
                Idle,
                Some(14),
            ),
        ],
    );
}

#[test]
fn table_manual_stop_in_established_sends_cease_and_stays_down() {
    let (mut s, t0) = established(config(), 90);
    use State::*;
    replay(
        &mut s,
        t0,
        vec![
            // Keepalive 30, hold 90.
            step(1, ev(Event::TcpConnectionConfirmed), vec![], Established, Some(30)),
            step(2, ev(Event::ManualStart), vec![], Established, Some(30)),
            step(
                3,
                ev(Event::ManualStop),
                vec![
                    send_notif(error_code::CEASE, cease_subcode::ADMINISTRATIVE_SHUTDOWN),
                    Action::CloseConnection,
                    down(DownReason::ManualStop),
                ],
                Idle,
                None,
            ),
            step(1000, Input::Poll, vec![], Idle, None),
            step(1000, msg(Message::Keepalive), vec![], Idle, None),
            step(1000, msg(Message::Notification(notif(6, 2))), vec![], Idle, None),
            step(1000, ev(Event::DecodeError(notif(1, 2))), vec![], Idle, None),
            step(1000, ev(Event::ManualStop), vec![], Idle, None),
        ],
    );
}

#[test]
fn table_route_refresh_and_hold_restart_in_established() {
    let (mut s, t0) = established(config(), 90);
    use State::*;
    let v4 = Family::IPV4_UNICAST;
    replay(
        &mut s,
        t0,
        vec![
            step(10, rr(v4, 0), vec![Action::RouteRefreshRequested(v4)], Established, Some(30)),
            // Not negotiated: ignored (RFC 2918 §4).
            step(20, rr(Family::IPV6_UNICAST, 0), vec![], Established, Some(30)),
            // BoRR / EoRR markers and unknown subtypes are not requests.
            step(25, rr(v4, 1), vec![], Established, Some(30)),
            step(26, rr(v4, 2), vec![], Established, Some(30)),
            step(27, rr(v4, 9), vec![], Established, Some(30)),
            step(30, Input::Poll, vec![Action::Send(Message::Keepalive)], Established, Some(60)),
            step(60, Input::Poll, vec![Action::Send(Message::Keepalive)], Established, Some(90)),
            step(90, Input::Poll, vec![Action::Send(Message::Keepalive)], Established, Some(117)),
            // Hold was restarted by the last ROUTE-REFRESH at 27: expires at 117.
            step(
                117,
                Input::Poll,
                vec![
                    send_notif(error_code::HOLD_TIMER_EXPIRED, 0),
                    Action::CloseConnection,
                    down(DownReason::HoldTimerExpired),
                ],
                Idle,
                Some(122),
            ),
        ],
    );
}

#[test]
fn table_errors_in_connect_and_active_go_idle_without_down() {
    let t0 = Instant::now();
    let mut s = Session::new(config());
    use State::*;
    replay(
        &mut s,
        t0,
        vec![
            step(0, ev(Event::ManualStart), vec![Action::Connect], Connect, Some(5)),
            // Runtime inconsistency: a message before TCP is up.
            step(1, msg(Message::Keepalive), vec![Action::CloseConnection], Idle, Some(6)),
            step(6, Input::Poll, vec![Action::Connect], Connect, Some(11)),
            step(7, ev(Event::TcpConnectionFails), vec![], Active, Some(12)),
            step(8, msg(Message::Notification(notif(6, 2))), vec![Action::CloseConnection], Idle, Some(13)),
            // DecodeError / collision dump with no BGP connection: nothing to send on.
            step(9, ev(Event::DecodeError(notif(1, 1))), vec![], Idle, Some(13)),
            step(13, Input::Poll, vec![Action::Connect], Connect, Some(18)),
            step(14, ev(Event::DecodeError(notif(1, 1))), vec![], Connect, Some(18)),
            step(14, ev(Event::OpenCollisionDump), vec![], Connect, Some(18)),
            step(15, ev(Event::TcpConnectionFails), vec![], Active, Some(20)),
            step(16, ev(Event::ManualStop), vec![], Idle, None),
        ],
    );
}

// ---- unexpected messages, decode errors, notifications ------------------------------------

/// Expect NOTIFICATION `code/subcode` sent, close, Down, and the restart scheduled.
fn assert_dropped_with(actions: Vec<Action>, code: u8, subcode: u8) {
    assert_eq!(actions, vec![send_notif(code, subcode), Action::CloseConnection, down(sent(code, subcode))]);
}

#[test]
fn unexpected_messages_in_open_sent_are_fsm_error_1() {
    for message in [
        Message::Keepalive,
        Message::Update(update()),
        Message::RouteRefresh(RouteRefresh { family: Family::IPV4_UNICAST, subtype: 0 }),
    ] {
        let (mut s, t0) = open_sent(config());
        let actions = s.process(Event::Message(message.clone()), t0);
        assert_dropped_with(actions, error_code::FSM, fsm_subcode::UNEXPECTED_IN_OPENSENT);
        assert_eq!(s.state(), State::Idle, "{message:?}");
        assert_eq!(s.next_deadline(), Some(t0 + Duration::from_secs(5)));
    }
}

#[test]
fn unexpected_messages_in_open_confirm_are_fsm_error_2() {
    for message in [
        Message::Open(peer_open(90)),
        Message::Update(update()),
        Message::RouteRefresh(RouteRefresh { family: Family::IPV4_UNICAST, subtype: 0 }),
    ] {
        let (mut s, t0) = open_sent(config());
        s.process(Event::Message(Message::Open(peer_open(90))), t0);
        assert_eq!(s.state(), State::OpenConfirm);
        assert_eq!(s.peer_bgp_id(), Some(PEER_ID));
        let actions = s.process(Event::Message(message), t0);
        assert_dropped_with(actions, error_code::FSM, fsm_subcode::UNEXPECTED_IN_OPENCONFIRM);
        assert_eq!(s.state(), State::Idle);
        assert_eq!(s.peer_bgp_id(), None);
    }
}

#[test]
fn open_in_established_is_fsm_error_3() {
    let (mut s, t0) = established(config(), 90);
    let actions = s.process(Event::Message(Message::Open(peer_open(90))), t0);
    assert_dropped_with(actions, error_code::FSM, fsm_subcode::UNEXPECTED_IN_ESTABLISHED);
    assert_eq!(s.state(), State::Idle);
    assert!(s.negotiated().is_none());
}

#[test]
fn decode_error_sends_the_codec_notification() {
    let bad_attr = Notification { code: error_code::UPDATE_MESSAGE, subcode: 1, data: vec![1, 2, 3] };
    let (mut s, t0) = established(config(), 90);
    let actions = s.process(Event::DecodeError(bad_attr.clone()), t0);
    assert_eq!(
        actions,
        vec![
            Action::Send(Message::Notification(bad_attr.clone())),
            Action::CloseConnection,
            down(DownReason::NotificationSent(bad_attr)),
        ]
    );
    assert_eq!(s.state(), State::Idle);

    let header = notif(error_code::MESSAGE_HEADER, 2);
    let (mut s, t0) = open_sent(config());
    let actions = s.process(Event::DecodeError(header.clone()), t0);
    assert_eq!(actions[0], Action::Send(Message::Notification(header)));
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn notification_received_closes_without_sending() {
    let n = notif(error_code::CEASE, cease_subcode::PEER_DECONFIGURED);
    let (mut s, t0) = established(config(), 90);
    let actions = s.process(Event::Message(Message::Notification(n.clone())), t0);
    assert_eq!(actions, vec![Action::CloseConnection, down(DownReason::NotificationReceived(n.clone()))]);
    assert_eq!(s.state(), State::Idle);

    let (mut s, t0) = open_sent(config());
    let actions = s.process(Event::Message(Message::Notification(n.clone())), t0);
    assert_eq!(actions, vec![Action::CloseConnection, down(DownReason::NotificationReceived(n))]);
}

#[test]
fn connection_lost_in_established_goes_idle_then_restarts() {
    let (mut s, t0) = established(config(), 90);
    let actions = s.process(Event::TcpConnectionFails, t0 + Duration::from_secs(1));
    assert_eq!(actions, vec![Action::CloseConnection, down(DownReason::ConnectionClosed)]);
    assert_eq!(s.state(), State::Idle);
    assert_eq!(s.next_deadline(), Some(t0 + Duration::from_secs(6)));
    assert_eq!(s.poll_timers(t0 + Duration::from_secs(6)), vec![Action::Connect]);
    assert_eq!(s.state(), State::Connect);
}

#[test]
fn idle_hold_is_capped_at_thirty_seconds() {
    let cfg = PeerConfig { connect_retry: DEFAULT_CONNECT_RETRY, ..config() };
    let (mut s, t0) = established(cfg, 90);
    s.process(Event::TcpConnectionFails, t0);
    assert_eq!(s.next_deadline(), Some(t0 + IDLE_HOLD_AFTER_RESET));
    // ManualStop cancels the automatic restart.
    assert_eq!(s.process(Event::ManualStop, t0), vec![]);
    assert_eq!(s.next_deadline(), None);
    assert_eq!(s.poll_timers(t0 + Duration::from_secs(3600)), vec![]);
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn collision_dump_sends_cease_7() {
    for to_open_confirm in [false, true] {
        let (mut s, t0) = open_sent(config());
        if to_open_confirm {
            s.process(Event::Message(Message::Open(peer_open(90))), t0);
        }
        let actions = s.process(Event::OpenCollisionDump, t0);
        assert_dropped_with(actions, error_code::CEASE, cease_subcode::CONNECTION_COLLISION_RESOLUTION);
    }
    // The passive candidate session of a collision: back to Active.
    let (mut s, t0) = established(passive_config(), 90);
    let actions = s.process(Event::OpenCollisionDump, t0);
    assert_dropped_with(actions, error_code::CEASE, cease_subcode::CONNECTION_COLLISION_RESOLUTION);
    assert_eq!(s.state(), State::Active);
}

// ---- OPEN checks -----------------------------------------------------------------------

fn open_error(subcode: u8) -> Notification {
    notif(error_code::OPEN_MESSAGE, subcode)
}

#[test]
fn open_unsupported_version_carries_our_version() {
    let open = Open { version: 3, ..peer_open(90) };
    let err = check_open(&config(), &open).unwrap_err();
    assert_eq!(err, Notification { code: 2, subcode: 1, data: vec![0, 4] });
    let (mut s, t0) = open_sent(config());
    let actions = s.process(Event::Message(Message::Open(Open { version: 5, ..peer_open(90) })), t0);
    assert_eq!(
        actions,
        vec![Action::Send(Message::Notification(err.clone())), Action::CloseConnection, down(DownReason::NotificationSent(err))]
    );
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn open_bad_peer_as() {
    // 2-octet field mismatch, no capability.
    let open = Open { my_as: 65003, capabilities: vec![], ..peer_open(90) };
    assert_eq!(check_open(&config(), &open), Err(open_error(open_subcode::BAD_PEER_AS)));
    // Capability wins over a matching 2-octet field.
    let open = Open { capabilities: vec![Capability::FourOctetAs(65003)], ..peer_open(90) };
    assert_eq!(check_open(&config(), &open), Err(open_error(open_subcode::BAD_PEER_AS)));
    // 4-octet remote AS, peer without the capability can only send AS_TRANS.
    let cfg = PeerConfig { remote_as: 4_200_000_002, ..config() };
    let open = Open { my_as: AS_TRANS, capabilities: vec![], ..peer_open(90) };
    assert_eq!(check_open(&cfg, &open), Err(open_error(open_subcode::BAD_PEER_AS)));
    // ... and with it, AS_TRANS in the field is fine.
    let open = Open { my_as: AS_TRANS, capabilities: vec![Capability::FourOctetAs(4_200_000_002)], ..peer_open(90) };
    assert_eq!(check_open(&cfg, &open), Ok(()));
    // Without the capability the 2-octet field is compared.
    let open = Open { capabilities: vec![], ..peer_open(90) };
    assert_eq!(check_open(&config(), &open), Ok(()));
}

#[test]
fn open_bad_bgp_identifier() {
    let open = Open { bgp_id: Ipv4Addr::UNSPECIFIED, ..peer_open(90) };
    assert_eq!(check_open(&config(), &open), Err(open_error(open_subcode::BAD_BGP_IDENTIFIER)));
    // iBGP: same identifier as ours is refused.
    let ibgp = PeerConfig { remote_as: LOCAL_AS, ..config() };
    let open = Open { my_as: LOCAL_AS as u16, bgp_id: LOCAL_ID, capabilities: vec![], ..peer_open(90) };
    assert_eq!(check_open(&ibgp, &open), Err(open_error(open_subcode::BAD_BGP_IDENTIFIER)));
    // eBGP: allowed (RFC 6286).
    let open = Open { bgp_id: LOCAL_ID, ..peer_open(90) };
    assert_eq!(check_open(&config(), &open), Ok(()));
}

#[test]
fn open_unacceptable_hold_time() {
    for hold in [1, 2] {
        let (mut s, t0) = open_sent(config());
        let actions = s.process(Event::Message(Message::Open(peer_open(hold))), t0);
        assert_dropped_with(actions, error_code::OPEN_MESSAGE, open_subcode::UNACCEPTABLE_HOLD_TIME);
    }
    for hold in [0, 3, 65535] {
        assert_eq!(check_open(&config(), &peer_open(hold)), Ok(()), "hold {hold}");
    }
}

#[test]
fn open_checks_run_in_rfc_order() {
    // Every field wrong: the version error is reported first, then AS, then identifier.
    let open = Open { version: 3, my_as: 1, hold_time: 1, bgp_id: Ipv4Addr::UNSPECIFIED, capabilities: vec![] };
    assert_eq!(check_open(&config(), &open).unwrap_err().subcode, open_subcode::UNSUPPORTED_VERSION);
    let open = Open { version: 4, ..open };
    assert_eq!(check_open(&config(), &open).unwrap_err().subcode, open_subcode::BAD_PEER_AS);
    let open = Open { my_as: PEER_AS as u16, ..open };
    assert_eq!(check_open(&config(), &open).unwrap_err().subcode, open_subcode::BAD_BGP_IDENTIFIER);
    let open = Open { bgp_id: PEER_ID, ..open };
    assert_eq!(check_open(&config(), &open).unwrap_err().subcode, open_subcode::UNACCEPTABLE_HOLD_TIME);
}

// ---- negotiation -------------------------------------------------------------------------

#[test]
fn hold_time_negotiation() {
    let with = |hold_time: u16, keepalive_interval: Option<u16>| PeerConfig { hold_time, keepalive_interval, ..config() };
    assert_eq!(hold_and_keepalive(&with(90, None), 30), (30, 10));
    assert_eq!(hold_and_keepalive(&with(90, None), 180), (90, 30));
    assert_eq!(hold_and_keepalive(&with(0, None), 90), (0, 0));
    assert_eq!(hold_and_keepalive(&with(90, None), 0), (0, 0));
    assert_eq!(hold_and_keepalive(&with(90, Some(5)), 90), (90, 5));
    // Configured keepalive never exceeds a third of the negotiated hold time.
    assert_eq!(hold_and_keepalive(&with(90, Some(60)), 90), (90, 30));
    assert_eq!(hold_and_keepalive(&with(90, Some(20)), 15), (15, 5));
    assert_eq!(hold_and_keepalive(&with(90, None), 3), (3, 1));
    assert_eq!(hold_and_keepalive(&with(90, None), 4), (4, 1));
    assert_eq!(hold_and_keepalive(&with(90, Some(0)), 90), (90, 30));
}

#[test]
fn configured_keepalive_drives_the_timer() {
    let (mut s, t0) = established(PeerConfig { keepalive_interval: Some(7), ..config() }, 90);
    assert_eq!(s.negotiated().unwrap().keepalive, 7);
    assert_eq!(s.next_deadline(), Some(t0 + Duration::from_secs(7)));
    assert_eq!(s.poll_timers(t0 + Duration::from_secs(7)), vec![Action::Send(Message::Keepalive)]);
    // Polled late: the next keepalive is counted from when it was sent.
    assert_eq!(s.poll_timers(t0 + Duration::from_secs(20)), vec![Action::Send(Message::Keepalive)]);
    assert_eq!(s.next_deadline(), Some(t0 + Duration::from_secs(27)));
}

#[test]
fn local_open_two_and_four_octet_as() {
    let open = local_open(&config());
    assert_eq!(
        open,
        Open {
            version: 4,
            my_as: 65001,
            hold_time: 90,
            bgp_id: LOCAL_ID,
            capabilities: vec![
                Capability::Multiprotocol(Family::IPV4_UNICAST),
                Capability::RouteRefresh,
                Capability::FourOctetAs(65001),
            ],
        }
    );
    let gr = GracefulRestart { restarting: false, notification: false, restart_time: 120, families: vec![(Family::IPV4_UNICAST, true)] };
    let add_path = vec![AddPathFamily { family: Family::IPV4_UNICAST, receive: true, send: false }];
    let cfg = PeerConfig {
        local_as: 4_200_000_001,
        hold_time: 30,
        families: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
        graceful_restart: Some(gr.clone()),
        add_path: add_path.clone(),
        ..config()
    };
    let open = Session::new(cfg).local_open();
    assert_eq!(open.my_as, AS_TRANS);
    assert_eq!(open.hold_time, 30);
    assert_eq!(
        open.capabilities,
        vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::Multiprotocol(Family::IPV6_UNICAST),
            Capability::RouteRefresh,
            Capability::FourOctetAs(4_200_000_001),
            Capability::GracefulRestart(gr),
            Capability::AddPath(add_path),
        ]
    );
    // 65535 still fits the 2-octet field.
    assert_eq!(local_open(&PeerConfig { local_as: 65535, ..config() }).my_as, 65535);
    assert_eq!(local_open(&PeerConfig { local_as: 65536, ..config() }).my_as, AS_TRANS);
}

#[test]
fn four_octet_as_negotiation() {
    let cfg = PeerConfig { remote_as: 4_200_000_002, ..config() };
    let open = Open { my_as: AS_TRANS, capabilities: vec![Capability::FourOctetAs(4_200_000_002)], ..peer_open(90) };
    let n = negotiate(&cfg, open);
    assert_eq!(n.peer_as, 4_200_000_002);
    assert!(n.four_octet_as && n.codec.four_octet_as);

    let open = Open { capabilities: vec![], ..peer_open(90) };
    let n = negotiate(&config(), open.clone());
    assert_eq!(n.peer_as, PEER_AS);
    assert!(!n.four_octet_as && !n.codec.four_octet_as);
    assert!(!n.route_refresh);
    assert_eq!(n.peer_open, open);
    assert_eq!(n.peer_id, PEER_ID);
}

#[test]
fn family_intersection() {
    let both = PeerConfig { families: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST], ..config() };
    let peer = |families: &[Family]| Open {
        capabilities: families.iter().map(|f| Capability::Multiprotocol(*f)).collect(),
        ..peer_open(90)
    };
    assert_eq!(negotiate(&both, peer(&[Family::IPV6_UNICAST])).families, vec![Family::IPV6_UNICAST]);
    assert_eq!(
        negotiate(&both, peer(&[Family::IPV6_UNICAST, Family::IPV4_UNICAST])).families,
        vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]
    );
    // No MP capability from the peer: IPv4 unicast implied.
    assert_eq!(negotiate(&both, peer(&[])).families, vec![Family::IPV4_UNICAST]);
    let v6_only = PeerConfig { families: vec![Family::IPV6_UNICAST], ..config() };
    assert_eq!(negotiate(&v6_only, peer(&[])).families, Vec::<Family>::new());
    // None configured on our side: IPv4 unicast implied too.
    let none = PeerConfig { families: vec![], ..config() };
    assert_eq!(negotiate(&none, peer(&[Family::IPV4_UNICAST, Family::IPV6_UNICAST])).families, vec![Family::IPV4_UNICAST]);
    // Unknown families are never negotiated unless both sides have them.
    let odd = Family { afi: 25, safi: 70 };
    assert_eq!(negotiate(&both, peer(&[odd, Family::IPV4_UNICAST])).families, vec![Family::IPV4_UNICAST]);
}

#[test]
fn add_path_negotiation() {
    let entry = |family, receive, send| AddPathFamily { family, receive, send };
    let cfg = PeerConfig {
        families: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
        add_path: vec![entry(Family::IPV4_UNICAST, true, true), entry(Family::IPV6_UNICAST, true, false)],
        ..config()
    };
    let mut open = peer_open(90);
    open.capabilities.push(Capability::AddPath(vec![entry(Family::IPV4_UNICAST, false, true)]));
    open.capabilities.push(Capability::AddPath(vec![entry(Family::IPV6_UNICAST, true, true)]));
    let n = negotiate(&cfg, open);
    assert_eq!(n.codec.add_path_receive, vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]);
    assert_eq!(n.codec.add_path_send, Vec::<Family>::new());

    let mut open = peer_open(90);
    open.capabilities.push(Capability::AddPath(vec![entry(Family::IPV4_UNICAST, true, false)]));
    let n = negotiate(&cfg, open);
    assert_eq!(n.codec.add_path_receive, Vec::<Family>::new());
    assert_eq!(n.codec.add_path_send, vec![Family::IPV4_UNICAST]);

    // Peer without ADD-PATH: nothing.
    let n = negotiate(&cfg, peer_open(90));
    assert_eq!(n.codec, CodecContext { four_octet_as: true, ..CodecContext::default() });
}

#[test]
fn route_refresh_and_graceful_restart_capabilities() {
    assert!(negotiate(&config(), peer_open(90)).route_refresh);
    let enhanced_only = Open { capabilities: vec![Capability::EnhancedRouteRefresh], ..peer_open(90) };
    assert!(negotiate(&config(), enhanced_only).route_refresh);

    let gr = GracefulRestart { restarting: true, notification: true, restart_time: 300, families: vec![] };
    let mut open = peer_open(90);
    assert_eq!(negotiate(&config(), open.clone()).graceful_restart, None);
    open.capabilities.push(Capability::Unknown { code: 200, data: vec![1] });
    open.capabilities.push(Capability::GracefulRestart(gr.clone()));
    assert_eq!(negotiate(&config(), open).graceful_restart, Some(gr));
}

#[test]
fn established_carries_negotiated_values() {
    let cfg = PeerConfig { families: vec![Family::IPV6_UNICAST, Family::IPV4_UNICAST], ..config() };
    let (s, _) = established(cfg, 45);
    let n = s.negotiated().unwrap();
    assert_eq!((n.peer_as, n.peer_id, n.hold_time, n.keepalive), (PEER_AS, PEER_ID, 45, 15));
    assert_eq!(n.families, vec![Family::IPV4_UNICAST]);
    assert!(n.route_refresh && n.four_octet_as);
}

// ---- collisions --------------------------------------------------------------------------

#[test]
fn collision_higher_local_id_keeps_locally_initiated() {
    let high = Ipv4Addr::new(10, 0, 0, 2);
    let low = Ipv4Addr::new(10, 0, 0, 1);
    assert_eq!(resolve_collision(high, low, true), CollisionWinner::Existing);
    assert_eq!(resolve_collision(high, low, false), CollisionWinner::New);
}

#[test]
fn collision_lower_local_id_keeps_peer_initiated() {
    let high = Ipv4Addr::new(10, 0, 0, 2);
    let low = Ipv4Addr::new(10, 0, 0, 1);
    assert_eq!(resolve_collision(low, high, true), CollisionWinner::New);
    assert_eq!(resolve_collision(low, high, false), CollisionWinner::Existing);
}

#[test]
fn collision_compares_ids_as_numbers() {
    // 9.255.255.255 < 10.0.0.0 numerically (not as text); 2.0.0.10 < 10.0.0.2.
    assert_eq!(resolve_collision(Ipv4Addr::new(9, 255, 255, 255), Ipv4Addr::new(10, 0, 0, 0), true), CollisionWinner::New);
    assert_eq!(resolve_collision(Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(2, 0, 0, 10), true), CollisionWinner::Existing);
    assert_eq!(resolve_collision(Ipv4Addr::new(128, 0, 0, 0), Ipv4Addr::new(127, 255, 255, 255), false), CollisionWinner::New);
}

#[test]
fn collision_equal_ids() {
    let id = Ipv4Addr::new(10, 0, 0, 1);
    assert_eq!(resolve_collision(id, id, true), CollisionWinner::Existing);
    assert_eq!(resolve_collision(id, id, false), CollisionWinner::Existing);
    // RFC 6286: the larger AS's connection survives.
    assert_eq!(resolve_collision_with_as(id, 65002, id, 65001, true), CollisionWinner::Existing);
    assert_eq!(resolve_collision_with_as(id, 65002, id, 65001, false), CollisionWinner::New);
    assert_eq!(resolve_collision_with_as(id, 65001, id, 65002, true), CollisionWinner::New);
    // Different identifiers: AS numbers do not matter.
    assert_eq!(resolve_collision_with_as(Ipv4Addr::new(10, 0, 0, 9), 1, id, 65002, true), CollisionWinner::Existing);
}

// ---- config validation -------------------------------------------------------------------

#[test]
fn config_validation_names_the_field() {
    assert_eq!(config().validate(), Ok(()));
    let field = |cfg: PeerConfig| cfg.validate().unwrap_err().field;
    assert_eq!(field(PeerConfig { local_as: 0, ..config() }), "local_as");
    assert_eq!(field(PeerConfig { remote_as: 0, ..config() }), "remote_as");
    assert_eq!(field(PeerConfig { local_id: Ipv4Addr::UNSPECIFIED, ..config() }), "local_id");
    assert_eq!(field(PeerConfig { hold_time: 2, ..config() }), "hold_time");
    assert_eq!(field(PeerConfig { keepalive_interval: Some(0), ..config() }), "keepalive_interval");
    assert_eq!(field(PeerConfig { connect_retry: Duration::ZERO, ..config() }), "connect_retry");
    let gr = GracefulRestart { restarting: false, notification: false, restart_time: 5000, families: vec![] };
    assert_eq!(field(PeerConfig { graceful_restart: Some(gr), ..config() }), "graceful_restart.restart_time");
    let err = PeerConfig { hold_time: 1, ..config() }.validate().unwrap_err();
    assert_eq!(err.to_string(), "neighbor AS65002: field `hold_time`: 1 s: must be 0 or at least 3 (RFC 4271 §4.2)");
    assert_eq!(PeerConfig { hold_time: 0, keepalive_interval: Some(0), ..config() }.validate(), Ok(()));
}
