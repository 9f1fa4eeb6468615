//! Live sessions: how many (for shutdown and limits), from which IPs, and a way to
//! reach each one by client id (for `POST /api/disconnect`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::alarm::Alarm;

/// The registry of live sessions.
#[derive(Debug, Default)]
pub struct Sessions {
    live: AtomicUsize,
    idle: Notify,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    reachable: Mutex<Reachable>,
}

/// The sessions the API, shutdown and the heartbeat can reach.
#[derive(Debug, Default)]
struct Reachable {
    /// Each session's alarm, keyed by its own id (shared, not copied).
    alarms: HashMap<Arc<str>, Reach>,
    /// Shutdown has begun: a session registered from now on is told at once.
    stopping: bool,
    /// The heartbeat slot the next session with a heartbeat gets.
    next_slot: u8,
    /// The heartbeat timer is running.
    beating: bool,
}

/// One registered session.
#[derive(Debug)]
struct Reach {
    alarm: Arc<Alarm>,
    /// Which of the [`SLOTS`] beats of a heartbeat period are this session's
    /// (`None`: it has no heartbeat).
    slot: Option<u8>,
}

/// A heartbeat period is cut into this many beats, each for the sessions of
/// its slot, so pings go out spread over the period rather than all at once.
const SLOTS: u8 = 16;

/// Why a new connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The server holds `max_connections` already.
    TooManyConnections,
    /// The client's IP holds `max_connections_per_ip` already.
    TooManyFromIp,
}

/// Held by a running session; dropping it ends the session's count.
#[derive(Debug)]
pub struct SessionGuard {
    sessions: Arc<Sessions>,
    ip: Option<IpAddr>,
}

impl Sessions {
    /// Counts a new session, unless a limit is reached (`0` means no limit).
    pub fn try_enter(
        self: &Arc<Self>,
        ip: Option<IpAddr>,
        max_total: usize,
        max_per_ip: usize,
    ) -> Result<SessionGuard, Refusal> {
        let mut per_ip = self.per_ip.lock().expect("registry lock");
        if max_total > 0 && self.live() >= max_total {
            return Err(Refusal::TooManyConnections);
        }
        if let Some(ip) = ip {
            let count = per_ip.entry(ip).or_default();
            if max_per_ip > 0 && *count >= max_per_ip {
                return Err(Refusal::TooManyFromIp);
            }
            *count += 1;
        }
        self.live.fetch_add(1, Ordering::AcqRel);
        Ok(SessionGuard {
            sessions: self.clone(),
            ip,
        })
    }

    /// Sessions currently running.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Waits until no session is left.
    pub async fn all_closed(&self) {
        loop {
            let idle = self.idle.notified();
            if self.live() == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Makes `client` reachable by [`Sessions::kick`] and [`Sessions::stop_all`]
    /// through its `alarm`.
    pub fn register(&self, client: &Arc<str>, alarm: &Arc<Alarm>) {
        self.insert(client, alarm, None);
    }

    /// Registers `client` as [`Sessions::register`] does, and beats its alarm
    /// once every `period` (the server's ping interval), starting the one
    /// heartbeat timer all sessions share if it is not running yet.
    pub fn register_with_heartbeat(
        self: &Arc<Self>,
        client: &Arc<str>,
        alarm: &Arc<Alarm>,
        period: std::time::Duration,
    ) {
        let (slot, start) = {
            let mut reachable = self.reachable.lock().expect("registry lock");
            let slot = reachable.next_slot;
            reachable.next_slot = (slot + 1) % SLOTS;
            (slot, !std::mem::replace(&mut reachable.beating, true))
        };
        if start {
            self.start_heartbeat(period);
        }
        self.insert(client, alarm, Some(slot));
    }

    fn insert(&self, client: &Arc<str>, alarm: &Arc<Alarm>, slot: Option<u8>) {
        let mut reachable = self.reachable.lock().expect("registry lock");
        if reachable.stopping {
            alarm.stop();
        }
        let reach = Reach {
            alarm: alarm.clone(),
            slot,
        };
        reachable.alarms.insert(client.clone(), reach);
    }

    /// The shared heartbeat timer: one beat every `period / SLOTS`, each to
    /// one slot's sessions. Ends with the registry.
    fn start_heartbeat(self: &Arc<Self>, period: std::time::Duration) {
        let sessions = Arc::downgrade(self);
        let beat = (period / u32::from(SLOTS)).max(std::time::Duration::from_millis(1));
        tokio::spawn(async move {
            let mut every = tokio::time::interval(beat);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            for slot in (0..SLOTS).cycle() {
                every.tick().await;
                let Some(sessions) = sessions.upgrade() else {
                    return;
                };
                sessions.beat(slot);
            }
        });
    }

    /// Beats the alarms of `slot`'s sessions.
    fn beat(&self, slot: u8) {
        let reachable = self.reachable.lock().expect("registry lock");
        for reach in reachable.alarms.values() {
            if reach.slot == Some(slot) {
                reach.alarm.beat();
            }
        }
    }

    /// Forgets `client`.
    pub fn unregister(&self, client: &str) {
        self.reachable
            .lock()
            .expect("registry lock")
            .alarms
            .remove(client);
    }

    /// Asks `client`'s session to disconnect; false if there is no such client.
    pub fn kick(&self, client: &str) -> bool {
        match self
            .reachable
            .lock()
            .expect("registry lock")
            .alarms
            .get(client)
        {
            Some(reach) => {
                // The alarm stays raised, so a session busy elsewhere still sees it.
                reach.alarm.kick();
                true
            }
            None => false,
        }
    }

    /// Tells every session, and every one registered later, that the server
    /// is shutting down.
    pub fn stop_all(&self) {
        let mut reachable = self.reachable.lock().expect("registry lock");
        reachable.stopping = true;
        for reach in reachable.alarms.values() {
            reach.alarm.stop();
        }
    }
}

impl SessionGuard {
    /// The registry the session is counted in.
    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }

    /// The client's IP address, when known.
    pub fn ip(&self) -> Option<IpAddr> {
        self.ip
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            let mut per_ip = self.sessions.per_ip.lock().expect("registry lock");
            if let Some(count) = per_ip.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    per_ip.remove(&ip);
                }
            }
        }
        if self.sessions.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.sessions.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enforces_total_and_per_ip_limits() {
        let sessions = Arc::new(Sessions::default());
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let first = sessions.try_enter(Some(a), 3, 2).unwrap();
        let _second = sessions.try_enter(Some(a), 3, 2).unwrap();
        assert_eq!(
            sessions.try_enter(Some(a), 3, 2).unwrap_err(),
            Refusal::TooManyFromIp
        );
        let _third = sessions.try_enter(Some(b), 3, 2).unwrap();
        assert_eq!(
            sessions.try_enter(Some(b), 3, 2).unwrap_err(),
            Refusal::TooManyConnections
        );
        drop(first);
        assert!(sessions.try_enter(Some(a), 3, 2).is_ok());
    }

    #[test]
    fn kicks_registered_clients_only() {
        let sessions = Sessions::default();
        let alarm = Arc::new(Alarm::default());
        sessions.register(&"c1".into(), &alarm);
        assert!(sessions.kick("c1"));
        assert!(alarm.raised().kicked());
        assert!(!sessions.kick("c2"));
        sessions.unregister("c1");
        assert!(!sessions.kick("c1"));
    }

    #[test]
    fn stop_reaches_sessions_registered_before_and_after() {
        let sessions = Sessions::default();
        let before = Arc::new(Alarm::default());
        sessions.register(&"c1".into(), &before);
        sessions.stop_all();
        assert!(before.raised().stopping());
        let after = Arc::new(Alarm::default());
        sessions.register(&"c2".into(), &after);
        assert!(after.raised().stopping() && !after.raised().kicked());
    }

    #[tokio::test(start_paused = true)]
    async fn beats_each_session_once_a_period() {
        let sessions = Arc::new(Sessions::default());
        let period = std::time::Duration::from_secs(16);
        let alarms: Vec<Arc<Alarm>> = (0..40).map(|_| Arc::new(Alarm::default())).collect();
        for (i, alarm) in alarms.iter().enumerate() {
            sessions.register_with_heartbeat(&format!("c{i}").into(), alarm, period);
        }
        let quiet = Arc::new(Alarm::default());
        sessions.register(&"quiet".into(), &quiet);
        let mut beats = vec![0; alarms.len()];
        for _ in 0..32 {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            for (count, alarm) in beats.iter_mut().zip(&alarms) {
                *count += u32::from(alarm.take_beat());
            }
        }
        // Two periods: two beats each (the first one may fall either side).
        assert!(beats.iter().all(|&n| (1..=2).contains(&n)), "{beats:?}");
        assert!(!quiet.take_beat());
    }
}
