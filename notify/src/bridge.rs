//! The bridge itself: leco-service's events in (leco-follow, system
//! bus), decisions ([`Policy`]), notifications out (the session bus), and
//! "Mute this program" back into the configuration. Either side may come
//! and go: the follower reconnects to the service and its bus by itself,
//! and the session's server is looked up again when it failed.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use leco_follow::{BusAddress, BusEvent, BusStatus};
use leco_proto::{Connection, EventKind};
use tokio::sync::mpsc;

use crate::config::{add_mute, NotifyConfig};
use crate::desktop::{ActionInvokedStream, Desktop, MUTE_ACTION};
use crate::policy::{Decision, Policy};

/// Events waiting for the bridge, at most; past it they are dropped
/// (a notification bridge may miss some of a storm, never stall it).
const QUEUE: usize = 1_024;

/// Shown notifications remembered for their actions, at most.
const SHOWN_MAX: usize = 256;

/// Least time between two tries to reach the notification server.
const RETRY: Duration = Duration::from_secs(5);

/// Where the bridge's events come from and where mutes are written.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The bus leco-service is on.
    pub service_bus: BusAddress,
    /// The configuration file "Mute this program" adds to.
    pub mute_file: Option<PathBuf>,
    /// What that file starts as when it does not exist yet: the file this
    /// run read (the system's), so that a mute keeps its other settings.
    pub seed: Option<PathBuf>,
}

/// Hands the follower's news to the bridge's loop.
struct Channel(mpsc::Sender<BusEvent>);

impl leco_follow::Sink for Channel {
    fn send(&mut self, ev: BusEvent) -> bool {
        match self.0.try_send(ev) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::debug!("events arrive faster than notifications go: one dropped");
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// The notification server reached, and its actions.
struct Session {
    desktop: Desktop,
    actions: ActionInvokedStream,
}

async fn connect_session() -> zbus::Result<Session> {
    let conn = zbus::Connection::session().await?;
    let desktop = Desktop::new(&conn).await?;
    let actions = desktop.proxy().receive_action_invoked().await?;
    Ok(Session { desktop, actions })
}

/// The bridge's state between events.
struct Bridge {
    policy: Policy,
    setup: Setup,
    session: Option<Session>,
    tried: Option<Instant>,
    /// Shown notifications and their programs, for "Mute this program".
    shown: VecDeque<(u32, String)>,
    /// The "+N more" notification showing, if any.
    more_id: u32,
    /// Since when (realtime µs) the service's events were not followed,
    /// while it or the bus was away.
    missed_since: Option<u64>,
}

/// Runs the bridge until SIGINT/SIGTERM; `ready` is called once it
/// follows the service.
pub async fn run(config: NotifyConfig, setup: Setup, ready: impl FnOnce()) {
    let (tx, mut rx) = mpsc::channel(QUEUE);
    tokio::spawn(leco_follow::follow(setup.service_bus.clone(), Channel(tx)));
    let mut bridge = Bridge {
        policy: Policy::new(config),
        setup,
        session: None,
        tried: None,
        shown: VecDeque::new(),
        more_id: 0,
        missed_since: None,
    };
    bridge.reach().await;
    ready();
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            ev = rx.recv() => match ev {
                Some(ev) => bridge.event(ev).await,
                None => break,
            },
            action = next_action(&mut bridge.session) => match action {
                Some((id, key)) => bridge.action(id, &key),
                None => {
                    tracing::info!("the session bus connection ended; reconnecting when needed");
                    bridge.session = None;
                }
            },
        }
    }
}

/// The next action invoked; `None` when the session's connection ended,
/// never while there is none.
async fn next_action(session: &mut Option<Session>) -> Option<(u32, String)> {
    let Some(s) = session else {
        return std::future::pending().await;
    };
    loop {
        let signal = s.actions.next().await?;
        if let Ok(args) = signal.args() {
            return Some((args.id, args.action_key));
        }
    }
}

impl Bridge {
    /// Reaches the notification server, unless it was tried a moment ago.
    async fn reach(&mut self) -> bool {
        if self.session.is_some() {
            return true;
        }
        if self.tried.is_some_and(|t| t.elapsed() < RETRY) {
            return false;
        }
        self.tried = Some(Instant::now());
        match connect_session().await {
            Ok(s) => {
                tracing::info!("notifying through the session's notification server");
                self.session = Some(s);
                true
            }
            Err(e) => {
                tracing::warn!("no notification server on the session bus: {e}");
                false
            }
        }
    }

    async fn event(&mut self, ev: BusEvent) {
        match ev {
            BusEvent::Event(kind, conn) => self.consider(kind, &conn).await,
            BusEvent::Status(s) => {
                report(&s);
                if s != BusStatus::Connected && self.missed_since.is_none() {
                    self.missed_since = Some(now_us());
                }
            }
            // What happened before this start is not news; what happened
            // while the service or the bus was away is: its snapshot has
            // what was new then.
            BusEvent::Snapshot(conns) => {
                let Some(since) = self.missed_since.take() else {
                    return;
                };
                for c in conns.iter().filter(|c| c.first_seen_us >= since) {
                    let kind = match (c.novelty, c.reason) {
                        (Some(_), _) => EventKind::New,
                        (None, Some(r)) if r.is_local_policy() => EventKind::Blocked,
                        _ => continue,
                    };
                    self.consider(kind, c).await;
                }
            }
        }
    }

    /// Decides about event `kind` of `conn`, and tells the desktop.
    async fn consider(&mut self, kind: EventKind, conn: &Connection) {
        let decision = self.policy.decide(kind, conn, Instant::now());
        if decision == Decision::Skip || !self.reach().await {
            return;
        }
        let Some(s) = &self.session else { return };
        let sent = match decision {
            Decision::Skip => return,
            Decision::Show(note) => s.desktop.show(&note).await.map(|id| {
                tracing::info!("notified: {} ({})", note.summary, id);
                if self.shown.len() >= SHOWN_MAX {
                    self.shown.pop_front();
                }
                self.shown.push_back((id, note.program));
            }),
            Decision::Fold { more, fresh } => {
                let replaces = if fresh { 0 } else { self.more_id };
                s.desktop.more(more, replaces).await.map(|id| {
                    tracing::info!("notified: +{more} more ({id})");
                    self.more_id = id;
                })
            }
        };
        if let Err(e) = sent {
            tracing::warn!("a notification could not be sent: {e}");
            self.session = None;
        }
    }

    fn action(&mut self, id: u32, key: &str) {
        if key != MUTE_ACTION {
            return;
        }
        let Some(program) = self
            .shown
            .iter()
            .find(|(shown, _)| *shown == id)
            .map(|(_, p)| p.clone())
        else {
            return;
        };
        self.policy.mute(&program);
        match &self.setup.mute_file {
            Some(path) => match seed(path, self.setup.seed.as_deref())
                .and_then(|()| add_mute(path, &program).map_err(|e| e.to_string()))
            {
                Ok(()) => tracing::info!("muted {program} (in {})", path.display()),
                Err(e) => tracing::warn!("muted {program} until leco-notify stops: {e}"),
            },
            None => tracing::warn!(
                "muted {program} until leco-notify stops: no configuration file to keep it in \
                 (no home directory)"
            ),
        }
    }
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Starts the file at `path` as a copy of `from`, when it does not exist.
fn seed(path: &std::path::Path, from: Option<&std::path::Path>) -> Result<(), String> {
    let Some(from) = from.filter(|_| !path.exists()) else {
        return Ok(());
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::copy(from, path)
        .map(drop)
        .map_err(|e| format!("starting {} from {}: {e}", path.display(), from.display()))
}

fn report(status: &BusStatus) {
    match status.message() {
        None => tracing::info!("following leco-service"),
        Some(m) => tracing::warn!("{m}"),
    }
}

/// Completes at SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
