//! `leco-service load`: the privileged half of the privilege split. Loads
//! and attaches the eBPF programs, then hands every descriptor that keeps
//! them alive and readable to a holder that outlives this process: systemd's
//! file descriptor store, or pins in a bpffs directory (`--pin`). `run`
//! serves from them without any capability.
//!
//! # Doing nothing when a complete load is there, redoing a partial one
//!
//! A restart of the service runs `load` again, and it must then keep the
//! running programs (and with them the kernel's flow table: connections seen
//! before the restart are still known after it). So `load` first finds out
//! whether a complete load exists, and "complete" is decided only from
//! things written last, checked against the kernel:
//!
//! - **Pins** (`--pin DIR`): the manifest (see `leco_bpf::Manifest`) is
//!   pinned after every object it names. The pins are complete when the
//!   manifest is there and every object it names is pinned with the kernel
//!   id it records. Anything else (no manifest, a pin missing or replaced,
//!   another leco version) is a partial load: its pins are removed — which
//!   detaches its programs — and the load is done again.
//!
//! - **File descriptor store**: systemd gives the store only to the main
//!   process, never to `ExecStartPre=` commands, so `load` cannot look into
//!   it. It keeps a state file instead (in the unit's `RuntimeDirectory=`,
//!   kept across restarts), written (atomically, by rename) only after the
//!   last descriptor — the manifest — was stored and systemd confirmed it
//!   processed everything (`BARRIER=1`). The file records the manifest map's
//!   kernel id and text. A load is complete when that map still exists with
//!   that text and every object the manifest names still exists with its
//!   kernel id (looked up by id as root). Objects of leco's only live while
//!   the store (or a running `run`) holds them, so existing objects mean a
//!   stored load. Otherwise — no file, objects gone, another version — every
//!   name leco may use is removed from the store (`FDSTOREREMOVE=1`), which
//!   drops the leftovers of a partial load and detaches their programs, and
//!   the load is done again. `run` checks the same manifest on its side.
//!
//! # Never leaving programs behind on failure
//!
//! Until handed over, the programs live in this process only (dropping the
//! capture detaches them). A failure while storing or pinning removes what
//! was already handed over before returning the error.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use leco_bpf::handoff::{all_names, pin_state, unpin};
use leco_bpf::{Capture, Handover, Manifest, PinState};

use super::confine::{confine, Confined, Needs};
use super::sdnotify::Notifier;
use crate::names::resolved;
use caps::Capability;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

/// Where the objects go.
#[derive(Debug, Clone)]
pub enum Target {
    /// systemd's file descriptor store, remembered in `state`.
    Store {
        /// The state file (see the module docs).
        state: PathBuf,
    },
    /// Pins in a bpffs directory.
    Pins {
        /// The directory (created if needed).
        dir: PathBuf,
        /// User the pins are given to: the one `run --pin` runs as.
        owner: Option<String>,
    },
}

/// The state file's default: in the unit's runtime directory.
pub fn default_state_file() -> PathBuf {
    let dir = std::env::var("RUNTIME_DIRECTORY")
        .ok()
        .and_then(|d| d.split(':').next().map(PathBuf::from))
        .filter(|d| d.is_absolute())
        .unwrap_or_else(|| PathBuf::from("/run/leco"));
    dir.join("fdstore.state")
}

/// What `load` did.
#[derive(Debug)]
pub enum Outcome {
    /// A complete load was there; nothing changed.
    AlreadyLoaded(Manifest),
    /// Loaded, attached and handed over.
    Loaded(Manifest),
}

impl Outcome {
    /// One line for the journal.
    pub fn describe(&self, target: &Target) -> String {
        let (verb, m) = match self {
            Outcome::AlreadyLoaded(m) => ("already loaded, nothing to do:", m),
            Outcome::Loaded(m) => ("loaded and attached", m),
        };
        let held = match self {
            Outcome::AlreadyLoaded(_) => "held by",
            Outcome::Loaded(_) => "handed to",
        };
        let ids: Vec<String> = m
            .program_ids()
            .iter()
            .map(|(p, id)| format!("{p}={id}"))
            .collect();
        let place = match target {
            Target::Store { .. } => "systemd's file descriptor store".to_owned(),
            Target::Pins { dir, .. } => format!("pins in {}", dir.display()),
        };
        format!(
            "{verb} {} programs, {held} {place} (program ids {})",
            ids.len(),
            ids.join(" ")
        )
    }
}

/// `leco-service load`: makes sure a complete load is handed over to
/// `target`, and says in one line what it did.
pub fn run(options: &leco_bpf::Options, target: &Target) -> anyhow::Result<()> {
    let (outcome, confined) = load(options, target)?;
    eprintln!("leco-service: {}", outcome.describe(target));
    eprintln!("leco-service: the loader ran {confined}");
    Ok(())
}

/// Makes sure a complete load is handed over to `target` (see the module
/// docs), confined to what that needs (see [`super::confine`]); what was
/// done, and the confinement it was done in.
pub fn load(options: &leco_bpf::Options, target: &Target) -> anyhow::Result<(Outcome, Confined)> {
    // Before anything about systemd or pins: without privileges nothing
    // else matters, and that is what to say.
    leco_bpf::check_privileges()?;
    match target {
        Target::Pins { dir, owner } => {
            let owner = owner.as_deref().map(user_ids).transpose()?;
            // Pins given away live in a directory root may not write in
            // (and a load given away before may be there).
            let given = owner.is_some() || owned_by_someone_else(dir);
            let confined = confine(&Needs {
                writable: vec![nearest_existing(dir)],
                objects_by_id: false,
                foreign_files: given,
                chown: given,
            })?;
            Ok((load_pinned(options, dir, owner)?, confined))
        }
        Target::Store { state } => {
            // Before the network goes: an abstract socket name is only
            // found from the namespace the socket was made in.
            let notifier = Notifier::from_env()?;
            // Before confinement too: resolved's socket is root's only.
            let socket = Path::new(resolved::MONITOR_SOCKET);
            let subscribed = resolved::subscribe_blocking(socket);
            // After subscribing: nothing looked up in between is missed.
            let dumped = subscribed
                .as_ref()
                .ok()
                .and_then(|_| resolved::dump_cache_blocking(socket).ok());
            let mut confined = confine(&Needs {
                writable: state.parent().map(nearest_existing).into_iter().collect(),
                objects_by_id: true,
                // The runtime directory belongs to user leco.
                foreign_files: true,
                chown: false,
            })?;
            let outcome = load_stored(options, state, &notifier, &mut confined)?;
            hand_over_resolved(&notifier, subscribed, dumped);
            Ok((outcome, confined))
        }
    }
}

/// Whether `dir` exists and belongs to another user than this process's.
fn owned_by_someone_else(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(dir).is_ok_and(|m| m.uid() != nix::unistd::geteuid().as_raw())
}

/// `path`, or its nearest ancestor that exists: where creating it writes.
fn nearest_existing(path: &Path) -> PathBuf {
    path.ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"))
        .to_path_buf()
}

fn user_ids(name: &str) -> anyhow::Result<(u32, u32)> {
    let user = nix::unistd::User::from_name(name)
        .with_context(|| format!("looking up user {name}"))?
        .with_context(|| format!("no user {name} (--owner)"))?;
    Ok((user.uid.as_raw(), user.gid.as_raw()))
}

fn load_pinned(
    options: &leco_bpf::Options,
    dir: &Path,
    owner: Option<(u32, u32)>,
) -> anyhow::Result<Outcome> {
    match pin_state(dir) {
        PinState::Complete(m) if m.compatible().is_ok() => {
            return Ok(Outcome::AlreadyLoaded(m));
        }
        PinState::Complete(m) => tracing::warn!(
            "the pins in {} were made by leco {}: replacing them",
            dir.display(),
            m.version
        ),
        PinState::Incomplete(why) => tracing::warn!(
            "the pins in {} are not a complete load ({why}): loading again",
            dir.display()
        ),
        PinState::Absent => {}
    }
    // Leftovers go first, so that a failure below leaves nothing attached.
    unpin(dir).with_context(|| format!("removing old pins from {}", dir.display()))?;
    let capture = Capture::load(options)?;
    warn_degraded(&capture);
    let handover = capture.handover()?;
    handover
        .pin(dir, owner)
        .with_context(|| format!("pinning in {}", dir.display()))?;
    Ok(Outcome::Loaded(handover.manifest().clone()))
}

fn warn_degraded(capture: &Capture) {
    for d in capture.degraded() {
        tracing::warn!("{d}");
    }
}

/// How long systemd may take to confirm it processed the descriptors.
const BARRIER_TIMEOUT: Duration = Duration::from_secs(10);

fn load_stored(
    options: &leco_bpf::Options,
    state: &Path,
    notifier: &Notifier,
    confined: &mut Confined,
) -> anyhow::Result<Outcome> {
    let stored = stored_load(state);
    // Only the look-up of objects by id needed it.
    confined.give_up(Capability::CAP_SYS_ADMIN)?;
    match stored {
        Ok(m) => return Ok(Outcome::AlreadyLoaded(m)),
        Err(Stored::None) => {}
        Err(Stored::Stale(why)) => {
            tracing::warn!("the stored load is not complete ({why}): loading again");
        }
    }
    // From here on the state file must not vouch for the store.
    remove_state(state)?;
    clear_store(notifier).context("clearing systemd's file descriptor store")?;

    let capture = Capture::load(options)?;
    warn_degraded(&capture);
    let handover = capture.handover()?;
    if let Err(e) = store(notifier, &handover) {
        // Whatever made it into the store would keep the programs attached.
        if let Err(again) = clear_store(notifier) {
            tracing::error!("could not take the partial load back out of the store: {again:#}");
        }
        return Err(e);
    }
    write_state(state, &handover)
        .with_context(|| format!("writing the state file {}", state.display()))?;
    Ok(Outcome::Loaded(handover.manifest().clone()))
}

/// Stores the subscription to systemd-resolved's lookups for `run`, in
/// place of an older one; without one (resolved not running, or the store
/// refusing it), `run` learns names from the wire only, and says so.
fn hand_over_resolved(
    notifier: &Notifier,
    subscribed: io::Result<UnixStream>,
    dumped: Option<Vec<u8>>,
) {
    let stored = subscribed.map_err(anyhow::Error::from).and_then(|c| {
        notifier.remove(resolved::FDSTORE_NAME)?;
        notifier.remove(resolved::CACHE_FDSTORE_NAME)?;
        notifier.store(resolved::FDSTORE_NAME, c.as_fd())?;
        // What resolved had cached (systemd 254 and later): `run` starts
        // warm from it.
        if let Some(dump) = dumped {
            let memfd = memfd_with(&dump).context("a memfd for resolved's cache")?;
            notifier.store(resolved::CACHE_FDSTORE_NAME, memfd.as_fd())?;
        }
        notifier.barrier(BARRIER_TIMEOUT)?;
        Ok(())
    });
    match stored {
        Ok(()) => eprintln!("leco-service: subscribed to systemd-resolved's lookups, for `run`"),
        Err(e) => eprintln!(
            "leco-service: not following systemd-resolved's lookups ({}: {e:#})",
            resolved::MONITOR_SOCKET
        ),
    }
}

/// A memfd holding `bytes`.
fn memfd_with(bytes: &[u8]) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: a NUL-terminated name; the fd returned is owned here.
    let fd = unsafe { libc::memfd_create(c"leco-resolved-cache".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just created, owned by nothing else.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let mut f = fs::File::from(fd);
    f.write_all(bytes)?;
    Ok(f.into())
}

fn store(notifier: &Notifier, handover: &Handover) -> anyhow::Result<()> {
    for (name, fd) in handover.objects() {
        notifier
            .store(name, fd)
            .with_context(|| format!("storing {name}"))?;
    }
    notifier.barrier(BARRIER_TIMEOUT)?;
    Ok(())
}

fn clear_store(notifier: &Notifier) -> anyhow::Result<()> {
    for name in all_names() {
        notifier.remove(&name)?;
    }
    notifier.barrier(BARRIER_TIMEOUT)?;
    Ok(())
}

// ---- the state file ---------------------------------------------------------

const STATE_MAGIC: &str = "leco-fdstore-state 1";

/// Why no stored load is usable.
enum Stored {
    /// No state file: nothing stored by a finished load.
    None,
    /// A state file whose load is gone or damaged.
    Stale(String),
}

/// The load the state file vouches for, if it is still complete.
fn stored_load(state: &Path) -> Result<Manifest, Stored> {
    let text = match read_nofollow(state) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Stored::None),
        Err(e) => return Err(Stored::Stale(format!("reading {}: {e}", state.display()))),
    };
    let stale = |why: &str| Stored::Stale(format!("{}: {why}", state.display()));
    let mut parts = text.splitn(3, '\n');
    if parts.next() != Some(STATE_MAGIC) {
        return Err(stale("not a state file of this leco"));
    }
    let id: u32 = parts
        .next()
        .and_then(|l| l.strip_prefix("manifest-map "))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| stale("no manifest-map line"))?;
    let recorded = parts.next().unwrap_or_default();
    let manifest = Manifest::from_map_id(id)
        .map_err(|e| Stored::Stale(format!("its manifest (map id {id}) is gone ({e})")))?;
    if manifest.to_text() != recorded {
        return Err(Stored::Stale(format!(
            "map id {id} is not the manifest it recorded"
        )));
    }
    manifest
        .compatible()
        .map_err(|e| Stored::Stale(e.to_string()))?;
    manifest.check_alive().map_err(Stored::Stale)?;
    Ok(manifest)
}

fn read_nofollow(path: &Path) -> io::Result<String> {
    let mut text = String::new();
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?
        .read_to_string(&mut text)?;
    Ok(text)
}

fn remove_state(state: &Path) -> anyhow::Result<()> {
    match fs::remove_file(state) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", state.display()))
        }
        _ => Ok(()),
    }
}

/// Writes the state file atomically. The runtime directory belongs to the
/// service's (unprivileged) user: the temporary file is created exclusively
/// and without following links, and the rename replaces a link rather than
/// writing through it.
fn write_state(state: &Path, handover: &Handover) -> anyhow::Result<()> {
    let Some(dir) = state.parent() else {
        bail!("{} has no directory", state.display());
    };
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".fdstore.state.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let text = format!(
        "{STATE_MAGIC}\nmanifest-map {}\n{}",
        handover.manifest_id(),
        handover.manifest().to_text()
    );
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    drop(f);
    fs::rename(&tmp, state)?;
    Ok(())
}
