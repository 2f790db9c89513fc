//! Polling for a condition instead of sleeping a fixed time: waits are as short as the
//! processes allow, and a timeout reports the last reason the condition was not met.

use std::time::{Duration, Instant};

use crate::process::Dead;
use crate::Error;

/// Polling period of [`wait_until`].
pub const POLL: Duration = Duration::from_millis(100);

/// Why a [`wait_until`] probe did not succeed: not yet (keep polling) or never (stop now,
/// e.g. a process the condition depends on has exited).
#[derive(Debug)]
pub enum Poll {
    NotYet(String),
    Fatal(String),
}

impl From<String> for Poll {
    fn from(why: String) -> Poll {
        Poll::NotYet(why)
    }
}

impl From<Dead> for Poll {
    fn from(dead: Dead) -> Poll {
        Poll::Fatal(dead.0)
    }
}

impl From<Error> for Poll {
    fn from(e: Error) -> Poll {
        Poll::NotYet(e.0)
    }
}

/// Polls `probe` every [`POLL`] until it returns `Ok`; fails after `timeout` with the last
/// reason it gave, or at once on [`Poll::Fatal`].
pub fn wait_until<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Result<T, Poll>) -> crate::Result<T> {
    let start = Instant::now();
    loop {
        match probe() {
            Ok(v) => return Ok(v),
            Err(Poll::Fatal(why)) => return Err(Error(format!("gave up waiting until {what}: {why}"))),
            Err(Poll::NotYet(last)) => {
                if start.elapsed() >= timeout {
                    return Err(Error(format!("timed out after {timeout:?} waiting until {what}: {last}")));
                }
            }
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_once_the_probe_succeeds() {
        let mut calls = 0;
        let v = wait_until("three calls", Duration::from_secs(5), || {
            calls += 1;
            if calls < 3 {
                Err(Poll::NotYet(format!("only {calls}")))
            } else {
                Ok(calls)
            }
        })
        .unwrap();
        assert_eq!(v, 3);
    }

    #[test]
    fn times_out_with_the_last_reason_and_stops_on_fatal() {
        let err = wait_until::<()>("never", Duration::from_millis(150), || Err("still no".to_string().into())).unwrap_err();
        assert!(err.0.contains("timed out") && err.0.contains("still no"), "{err}");
        let start = Instant::now();
        let err = wait_until::<()>("dead", Duration::from_secs(30), || Err(Poll::Fatal("it exited".into()))).unwrap_err();
        assert!(err.0.contains("gave up") && err.0.contains("it exited"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
