//! Reconnecting after the broker went away (a restart, a crash): how long to wait between
//! attempts, when to give up, and what the client is told meanwhile. The connection does the
//! reconnecting ([`super::Connection::reconnect`]); the producer and consumer decide what to send
//! again once it is back.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Called on every [`ReconnectEvent`] (e.g. to tell a person on stderr).
pub type ReconnectListener = Arc<dyn Fn(&ReconnectEvent<'_>) + Send + Sync>;

/// How a [`super::Producer`] or [`super::Consumer`] reconnects once its connection is lost:
/// attempts with a backoff that starts at `initial_backoff` and doubles up to `max_backoff`,
/// until the broker answers (the auth token, if any, is sent again) or `give_up_after` has
/// passed since the connection was lost.
#[derive(Clone)]
pub struct Reconnect {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// `None`: keep trying until the caller stops waiting (a follow consumer until Ctrl-C).
    pub give_up_after: Option<Duration>,
    /// Told when the broker is found unavailable and when it is back (instead of a warning in
    /// the log).
    pub listener: Option<ReconnectListener>,
}

impl Default for Reconnect {
    /// 100 ms doubling to 5 s, giving up after 60 s.
    fn default() -> Self {
        Reconnect {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            give_up_after: Some(Duration::from_secs(60)),
            listener: None,
        }
    }
}

impl Reconnect {
    /// The default backoff, never giving up.
    pub fn forever() -> Reconnect {
        Reconnect { give_up_after: None, ..Reconnect::default() }
    }

    /// Tells the listener, or else the log.
    pub(crate) fn notify(&self, event: &ReconnectEvent<'_>) {
        match (&self.listener, event) {
            (Some(listener), _) => {
                tracing::debug!("{event}");
                listener(event);
            }
            (None, ReconnectEvent::Unavailable { .. }) => tracing::warn!("{event}"),
            (None, ReconnectEvent::Reconnected { .. }) => tracing::info!("{event}"),
        }
    }

    /// The waits between attempts: `initial_backoff` doubling up to `max_backoff`.
    pub(crate) fn backoff(&self) -> impl Iterator<Item = Duration> {
        let max = self.max_backoff.max(Duration::from_millis(1));
        std::iter::successors(Some(self.initial_backoff.min(max)), move |d| {
            Some(d.saturating_mul(2).min(max))
        })
    }
}

impl fmt::Debug for Reconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reconnect")
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("give_up_after", &self.give_up_after)
            .field("listener", &self.listener.as_ref().map(|_| "..."))
            .finish()
    }
}

/// What happens while a client reconnects. `Display` gives the line a person should see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconnectEvent<'a> {
    /// The connection was lost and the broker does not answer (yet); said once per outage.
    Unavailable { addr: &'a str, reason: &'a str },
    /// Connected (and authenticated) again, `after` the connection was lost.
    Reconnected { addr: &'a str, after: Duration },
}

impl fmt::Display for ReconnectEvent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReconnectEvent::Unavailable { addr, reason } => {
                write!(f, "broker {addr} unavailable ({reason}); reconnecting...")
            }
            ReconnectEvent::Reconnected { addr, after } => {
                write!(f, "reconnected to broker {addr} after {:.1} s", after.as_secs_f64())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let r = Reconnect::default();
        let waits: Vec<u64> = r.backoff().take(8).map(|d| d.as_millis() as u64).collect();
        assert_eq!(waits, vec![100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    }

    #[test]
    fn events_read_as_a_person_expects() {
        let lost =
            ReconnectEvent::Unavailable { addr: "127.0.0.1:7070", reason: "connection refused" };
        assert_eq!(
            lost.to_string(),
            "broker 127.0.0.1:7070 unavailable (connection refused); reconnecting..."
        );
        let back = ReconnectEvent::Reconnected {
            addr: "127.0.0.1:7070",
            after: Duration::from_millis(1300),
        };
        assert_eq!(back.to_string(), "reconnected to broker 127.0.0.1:7070 after 1.3 s");
    }
}
