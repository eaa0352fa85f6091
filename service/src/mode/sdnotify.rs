//! The two halves of systemd's file descriptor passing, written out rather
//! than linked from libsystemd: `sd_notify` with `FDSTORE=1` (descriptors to
//! the service manager's store, as SCM_RIGHTS on `$NOTIFY_SOCKET`) and
//! `sd_listen_fds_with_names` (descriptors back, as `LISTEN_FDS` from fd 3
//! on, named by `LISTEN_FDNAMES`, for the process `LISTEN_PID`).

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};

/// Why the notification socket cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// `$NOTIFY_SOCKET` is unset: not started by systemd (or the unit does
    /// not ask for notifications).
    #[error(
        "NOTIFY_SOCKET is not set: run `leco-service load` from the systemd unit \
         (ExecStartPre=+…, with NotifyAccess=exec or all, and FileDescriptorStoreMax=), or pin the \
         objects instead with --pin DIR"
    )]
    NoSocket,
    /// `$NOTIFY_SOCKET` names no usable socket address.
    #[error("NOTIFY_SOCKET={0:?} is not a unix socket path or abstract name")]
    BadAddress(String),
    /// Sending failed.
    #[error("telling systemd `{what}`: {source}")]
    Send {
        /// The message, shortened.
        what: String,
        /// What the kernel said.
        source: io::Error,
    },
}

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    address: UnixAddr,
}

impl Notifier {
    /// The socket `$NOTIFY_SOCKET` names (a path, or `@name` for an abstract
    /// socket).
    pub fn from_env() -> Result<Notifier, NotifyError> {
        let raw = std::env::var("NOTIFY_SOCKET").map_err(|_| NotifyError::NoSocket)?;
        let bad = || NotifyError::BadAddress(raw.clone());
        let address = match raw.strip_prefix('@') {
            Some(name) => UnixAddr::new_abstract(name.as_bytes()).map_err(|_| bad())?,
            None if raw.starts_with('/') => UnixAddr::new(raw.as_str()).map_err(|_| bad())?,
            None => return Err(bad()),
        };
        let socket = UnixDatagram::unbound().map_err(|source| NotifyError::Send {
            what: "(creating a socket)".into(),
            source,
        })?;
        Ok(Notifier { socket, address })
    }

    fn send(&self, message: &str, fd: Option<BorrowedFd<'_>>) -> Result<(), NotifyError> {
        let raw = fd.map(|f| [f.as_raw_fd()]);
        let cmsgs: Vec<ControlMessage<'_>> = raw
            .as_ref()
            .map(|r| ControlMessage::ScmRights(r))
            .into_iter()
            .collect();
        sendmsg(
            self.socket.as_raw_fd(),
            &[IoSlice::new(message.as_bytes())],
            &cmsgs,
            MsgFlags::empty(),
            Some(&self.address),
        )
        .map(drop)
        .map_err(|e| NotifyError::Send {
            what: message.replace('\n', " "),
            source: e.into(),
        })
    }

    /// Puts `fd` into the store under `name` (`FDSTORE=1`, `FDNAME=`).
    /// `FDPOLL=0`: systemd otherwise polls stored descriptors and closes any
    /// that reports EPOLLERR, which a BPF hash or array map always does.
    pub fn store(&self, name: &str, fd: BorrowedFd<'_>) -> Result<(), NotifyError> {
        self.send(&format!("FDSTORE=1\nFDPOLL=0\nFDNAME={name}"), Some(fd))
    }

    /// Closes and forgets every stored descriptor named `name`
    /// (`FDSTOREREMOVE=1`); a name with none is no error.
    pub fn remove(&self, name: &str) -> Result<(), NotifyError> {
        self.send(&format!("FDSTOREREMOVE=1\nFDNAME={name}"), None)
    }

    /// Waits until the service manager has processed every message sent
    /// before (`BARRIER=1`, systemd 246+): it closes the pipe end sent with
    /// it. Without this, a message from a process that has already exited
    /// may be dropped, as systemd can no longer tell which unit sent it.
    pub fn barrier(&self, timeout: Duration) -> Result<(), NotifyError> {
        let failed = |source: io::Error| NotifyError::Send {
            what: "BARRIER=1".into(),
            source,
        };
        let (read, write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| failed(e.into()))?;
        self.send("BARRIER=1", Some(write.as_fd()))?;
        drop(write);
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        let mut pfd = libc::pollfd {
            fd: read.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the call; `read` stays open across it.
        match unsafe { libc::poll(&mut pfd, 1, ms) } {
            0 => Err(failed(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no answer within {timeout:?} (does the unit set NotifyAccess=exec or all?)"
                ),
            ))),
            n if n > 0 => Ok(()),
            _ => Err(failed(io::Error::last_os_error())),
        }
    }
}

/// What the service manager passed to this process.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The variables are malformed.
    #[error("bad {var}={value:?} from the service manager")]
    Malformed {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// A descriptor it announced is not open.
    #[error("LISTEN_FDS announces fd {0}, which is not open")]
    NotOpen(i32),
}

/// First descriptor passed (`SD_LISTEN_FDS_START`).
const FIRST_FD: i32 = 3;

/// Takes the descriptors the service manager passed to this process, with
/// their names (`unknown` when it gave none), and unsets the variables so
/// that no child inherits them. Empty when none were passed, or when they
/// were meant for another process (`LISTEN_PID`).
///
/// Call it before any thread starts: it changes the environment.
pub fn take_listen_fds() -> Result<Vec<(String, OwnedFd)>, ListenError> {
    let pid = std::env::var("LISTEN_PID").ok();
    let count = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").ok();
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
    let (Some(pid), Some(count)) = (pid, count) else {
        return Ok(Vec::new());
    };
    let malformed = |var, value: &str| ListenError::Malformed {
        var,
        value: value.to_owned(),
    };
    let pid: u32 = pid.parse().map_err(|_| malformed("LISTEN_PID", &pid))?;
    if pid != std::process::id() {
        tracing::warn!(
            "ignoring LISTEN_FDS meant for process {pid} (this is {})",
            std::process::id()
        );
        return Ok(Vec::new());
    }
    let n: i32 = count
        .parse()
        .ok()
        .filter(|n| (0..=4096).contains(n))
        .ok_or_else(|| malformed("LISTEN_FDS", &count))?;
    let names: Vec<String> = match names {
        Some(ns) => {
            let v: Vec<String> = ns.split(':').map(str::to_owned).collect();
            if v.len() != n as usize {
                return Err(malformed("LISTEN_FDNAMES", &ns));
            }
            v
        }
        None => vec!["unknown".to_owned(); n as usize],
    };
    let mut out = Vec::with_capacity(names.len());
    for (fd, name) in (FIRST_FD..).zip(names) {
        // SAFETY: fcntl on an int has no memory effects; it only tells
        // whether the descriptor is open.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags < 0 {
            return Err(ListenError::NotOpen(fd));
        }
        // SAFETY: as above; keep it from leaking into children.
        unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
        // SAFETY: the service manager handed this descriptor to this process
        // (LISTEN_PID checked), and nothing else in it claims fds 3.. at this
        // point: taking ownership is what the protocol means.
        out.push((name, unsafe { OwnedFd::from_raw_fd(fd) }));
    }
    Ok(out)
}
