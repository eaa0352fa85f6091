//! Handing the loaded objects from a privileged loader to an unprivileged
//! reader, and taking them over on the other side.
//!
//! A [`Capture`] (root) makes a [`Handover`]: one file descriptor per kernel
//! object that must outlive it — the maps user space reads (event ring
//! buffer, flow table, counters) and the link of every attached program —
//! each under a fixed name, then a [`Manifest`] naming them all by kernel id,
//! always last. The descriptors go to systemd's file descriptor store (the
//! service does that) or are pinned in a bpffs directory
//! ([`Handover::pin`]). Holding a link holds its program and the maps the
//! program uses, so the programs stay attached for exactly as long as the
//! store or the pins hold them, and no longer.
//!
//! The reader ([`Received`]) gets named descriptors back (`LISTEN_FDS`, or
//! [`Received::from_pins`]) and trusts nothing it cannot check: without a
//! manifest the handover is unfinished; every object the manifest names must
//! be there with the manifest's kernel id (so leftovers of another load are
//! told apart); map types and the flow layout must be this build's. Reading
//! a map through a descriptor someone else opened needs no capability
//! (Linux 6.5+), so the reader can run with none.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{libbpf_sys, AsRawLibbpf, Map, MapCore, MapFlags, MapHandle, MapInfo, MapType};

use crate::capture::Capture;
use crate::manifest::{
    link_name, map_name, Entry, LoadSettings, Manifest, MapRole, MANIFEST_BYTES, MANIFEST_MAP_NAME,
    MANIFEST_NAME,
};
use crate::maps::KernelMaps;
use crate::skel::{types, LecoSkelBuilder};

/// Why a handover cannot be made, found or used. One line each, naming what
/// is missing and what to do.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    /// Objects were handed over, but no manifest with them.
    #[error(
        "the eBPF objects handed over come without their manifest ({present} objects, no \
         `{MANIFEST_NAME}`): the load that made them did not finish; run `leco-service load` again"
    )]
    NoManifest {
        /// How many objects were there.
        present: usize,
    },
    /// More than one manifest: leftovers of another load.
    #[error(
        "{count} manifests were handed over (`{MANIFEST_NAME}`): leftovers of another load; \
         stop the service completely and start it again"
    )]
    ManyManifests {
        /// How many.
        count: usize,
    },
    /// The manifest names objects that are absent (or are other objects).
    #[error("incomplete handover: {what}; run `leco-service load` again")]
    Incomplete {
        /// What is missing or wrong, e.g. `leco-map-flows (map id 12) is missing`.
        what: String,
    },
    /// The manifest cannot be read.
    #[error("unreadable handover manifest: {0}")]
    Manifest(String),
    /// The objects were made by a leco this reader cannot read.
    #[error(
        "the eBPF objects were loaded by leco {theirs} with another data layout than this \
         leco {ours}: stop the service completely and start it again, so that this version \
         loads its own programs"
    )]
    Incompatible {
        /// Version that loaded them.
        theirs: String,
        /// This build's version.
        ours: &'static str,
    },
    /// A kernel or file system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// What the kernel said.
        source: io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> HandoffError {
    let context = context.into();
    move |source| HandoffError::Io { context, source }
}

fn libbpf_err(context: impl Into<String>) -> impl FnOnce(libbpf_rs::Error) -> HandoffError {
    let context = context.into();
    move |e| HandoffError::Io {
        context,
        source: io::Error::other(e.to_string()),
    }
}

/// This build's flow table layout: (key size, value size).
fn our_layout() -> (u32, u32) {
    let size = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    (
        size(std::mem::size_of::<types::leco_flow_key>()),
        size(std::mem::size_of::<types::leco_flow>()),
    )
}

const OUR_VERSION: &str = env!("CARGO_PKG_VERSION");

impl Manifest {
    /// Whether a reader of this build can read the objects it names.
    pub fn compatible(&self) -> Result<(), HandoffError> {
        if self.layout == our_layout() && self.version == OUR_VERSION {
            Ok(())
        } else {
            Err(HandoffError::Incompatible {
                theirs: self.version.clone(),
                ours: OUR_VERSION,
            })
        }
    }

    /// Whether every object named is still loaded, checked by kernel id
    /// (`BPF_*_GET_FD_BY_ID`, so it needs root): what a loader that cannot
    /// see where the objects are held uses to tell a complete earlier load
    /// from a vanished one. `Err` says what is gone.
    pub fn check_alive(&self) -> Result<(), String> {
        for e in &self.entries {
            match e {
                Entry::Map {
                    id, kernel_name, ..
                } => {
                    let m = MapHandle::from_map_id(*id)
                        .map_err(|_| format!("map {} (id {id}) is gone", e.handover_name()))?;
                    if m.name().as_bytes() != kernel_name.as_bytes() {
                        return Err(format!("map id {id} is now another map ({:?})", m.name()));
                    }
                }
                Entry::Link { id, prog_id, .. } => {
                    let fd = link_by_id(*id)
                        .map_err(|_| format!("link {} (id {id}) is gone", e.handover_name()))?;
                    let info = libbpf_rs::query::LinkInfo::from_fd(fd.as_fd())
                        .map_err(|e| format!("reading link id {id}: {e}"))?;
                    if info.prog_id != *prog_id {
                        return Err(format!("link id {id} now attaches another program"));
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads the manifest map with kernel id `id` (needs root).
    pub fn from_map_id(id: u32) -> Result<Manifest, HandoffError> {
        let m = MapHandle::from_map_id(id).map_err(libbpf_err(format!("opening map id {id}")))?;
        read_manifest(m.as_fd())
    }
}

fn link_by_id(id: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall wrapper; a non-negative result is a new fd we own.
    let fd = unsafe { libbpf_sys::bpf_link_get_fd_by_id(id) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

// ---- the loader's side ------------------------------------------------------

/// Descriptors of every object of one load, named, manifest last: what a
/// loader hands over. Dropping it closes them (the objects live on while
/// the store, pins or a reader hold them).
#[derive(Debug)]
pub struct Handover {
    objects: Vec<(String, OwnedFd)>,
    manifest: Manifest,
    manifest_id: u32,
}

impl Capture {
    /// Duplicates the descriptors that keep this load alive and readable,
    /// and writes their manifest (see the module docs).
    pub fn handover(&self) -> Result<Handover, HandoffError> {
        let mut objects = Vec::new();
        let mut entries = Vec::new();
        for (role, fd) in self.map_fds() {
            let info = MapInfo::new(fd).map_err(libbpf_err("reading a map's kernel id"))?;
            let kernel_name = info
                .name()
                .map_err(libbpf_err("reading a map's name"))?
                .to_owned();
            let e = Entry::Map {
                role,
                id: info.info.id,
                kernel_name,
            };
            objects.push((
                e.handover_name(),
                fd.try_clone_to_owned()
                    .map_err(io_err("duplicating a map fd"))?,
            ));
            entries.push(e);
        }
        for (program, fd) in self.link_fds() {
            let info = libbpf_rs::query::LinkInfo::from_fd(fd)
                .map_err(libbpf_err(format!("reading the link of {program}")))?;
            let e = Entry::Link {
                program: program.to_owned(),
                id: info.id,
                prog_id: info.prog_id,
            };
            objects.push((
                e.handover_name(),
                fd.try_clone_to_owned()
                    .map_err(io_err("duplicating a link fd"))?,
            ));
            entries.push(e);
        }
        let o = self.options();
        let manifest = Manifest {
            version: OUR_VERSION.to_owned(),
            layout: our_layout(),
            settings: LoadSettings {
                update_interval: o.update_interval,
                wakeup_latency: o.wakeup_latency,
                ring_bytes: o.ring_bytes,
                max_flows: o.flow_capacity(),
                hooks_only: o.hooks_only,
            },
            entries,
            degraded: self.degraded().to_vec(),
        };
        let (fd, manifest_id) = write_manifest(&manifest)?;
        objects.push((MANIFEST_NAME.to_owned(), fd));
        Ok(Handover {
            objects,
            manifest,
            manifest_id,
        })
    }
}

/// Creates the frozen map that carries `manifest`; returns it and its id.
fn write_manifest(manifest: &Manifest) -> Result<(OwnedFd, u32), HandoffError> {
    let text = manifest.to_text();
    let mut value = vec![0u8; MANIFEST_BYTES as usize];
    if text.len() >= value.len() {
        return Err(HandoffError::Manifest(format!(
            "{} bytes do not fit its {MANIFEST_BYTES}-byte map",
            text.len()
        )));
    }
    value[..text.len()].copy_from_slice(text.as_bytes());
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        ..Default::default()
    };
    let map = MapHandle::create(
        MapType::Array,
        Some(MANIFEST_MAP_NAME),
        4,
        MANIFEST_BYTES,
        1,
        &opts,
    )
    .map_err(libbpf_err("creating the manifest map"))?;
    map.update(&0u32.to_ne_bytes(), &value, MapFlags::ANY)
        .map_err(libbpf_err("writing the manifest"))?;
    // Nobody, the reader included, may rewrite what was loaded.
    map.freeze()
        .map_err(libbpf_err("freezing the manifest map"))?;
    let id = map
        .info()
        .map_err(libbpf_err("reading the manifest map's id"))?
        .info
        .id;
    let fd = map
        .as_fd()
        .try_clone_to_owned()
        .map_err(io_err("duplicating the manifest fd"))?;
    Ok((fd, id))
}

impl Handover {
    /// The objects, each with its handover name, manifest last: the order
    /// to store or pin them in.
    pub fn objects(&self) -> impl Iterator<Item = (&str, BorrowedFd<'_>)> {
        self.objects.iter().map(|(n, fd)| (n.as_str(), fd.as_fd()))
    }

    /// What this handover holds.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Kernel id of the manifest map, to find it again by id.
    pub fn manifest_id(&self) -> u32 {
        self.manifest_id
    }

    /// Pins every object in the bpffs directory `dir` (created if needed),
    /// the manifest last, after removing leftovers of an earlier load. With
    /// `owner` (uid, gid), the directory and pins become theirs, so that a
    /// reader running as that user may open them. On failure nothing of this
    /// handover stays pinned: the programs are not left attached.
    pub fn pin(&self, dir: &Path, owner: Option<(u32, u32)>) -> Result<(), HandoffError> {
        fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        unpin(dir)?;
        let chown = |p: &Path| -> Result<(), HandoffError> {
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(p, Some(uid), Some(gid))
                    .map_err(io_err(format!("giving {} to uid {uid}", p.display())))?;
            }
            Ok(())
        };
        let mode = if owner.is_some() { 0o750 } else { 0o700 };
        fs::set_permissions(dir, fs::Permissions::from_mode(mode))
            .map_err(io_err(format!("restricting {}", dir.display())))?;
        chown(dir)?;
        let result = self.objects.iter().try_for_each(|(name, fd)| {
            let path = dir.join(name);
            pin_fd(fd.as_fd(), &path)?;
            chown(&path)
        });
        if result.is_err() {
            let _ = unpin(dir);
        }
        result
    }
}

fn pin_fd(fd: BorrowedFd<'_>, path: &Path) -> Result<(), HandoffError> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| HandoffError::Manifest(format!("{} has a NUL byte", path.display())))?;
    // SAFETY: `fd` is open for the call and `c` is NUL-terminated.
    if unsafe { libbpf_sys::bpf_obj_pin(fd.as_raw_fd(), c.as_ptr()) } < 0 {
        return Err(HandoffError::Io {
            context: format!("pinning {}", path.display()),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is NUL-terminated; a non-negative result is a new fd.
    let fd = unsafe { libbpf_sys::bpf_obj_get(c.as_ptr()) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just returned by the kernel, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Removes every pin of leco's (`leco-*`) from `dir`; returns how many.
/// Programs whose links were pinned there detach unless something else
/// holds them. A missing directory has none.
pub fn unpin(dir: &Path) -> Result<usize, HandoffError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err(format!("listing {}", dir.display()))(e)),
    };
    let mut removed = 0;
    // The manifest first: a directory is never complete-looking while
    // its objects are being removed.
    let manifest = dir.join(MANIFEST_NAME);
    if fs::remove_file(&manifest).is_ok() {
        removed += 1;
    }
    for e in entries.flatten() {
        if e.file_name().as_bytes().starts_with(b"leco-") && e.path() != manifest {
            fs::remove_file(e.path())
                .map_err(io_err(format!("unpinning {}", e.path().display())))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// What a pin directory holds.
#[derive(Debug)]
pub enum PinState {
    /// No pins of leco's.
    Absent,
    /// Pins of an unfinished or damaged load (or of another version): to be
    /// redone, never used. Says what is wrong.
    Incomplete(String),
    /// Every object of one load, with its manifest.
    Complete(Manifest),
}

/// Inspects the pins in `dir` (see [`PinState`]).
pub fn pin_state(dir: &Path) -> PinState {
    match Received::from_pins(dir) {
        Ok(r) => PinState::Complete(r.manifest),
        Err(HandoffError::NoManifest { present: 0 }) => PinState::Absent,
        Err(e) => PinState::Incomplete(e.to_string()),
    }
}

// ---- the reader's side ------------------------------------------------------

/// The objects of a finished load, taken over and checked: the maps to read,
/// the settings baked in, and the links (held so that the programs feed the
/// maps for as long as this lives).
#[derive(Debug)]
pub struct Received {
    maps: KernelMaps,
    manifest: Manifest,
    links: Vec<OwnedFd>,
    ignored: Vec<String>,
}

impl Received {
    /// Takes over named descriptors (as systemd passes them with
    /// `LISTEN_FDNAMES`). Descriptors with names that are not leco's, or of
    /// objects the manifest does not name, are closed (see [`Received::ignored`]).
    pub fn from_fds(fds: Vec<(String, OwnedFd)>) -> Result<Received, HandoffError> {
        let mut manifests: Vec<OwnedFd> = Vec::new();
        let mut by_name: HashMap<String, Vec<OwnedFd>> = HashMap::new();
        for (name, fd) in fds {
            if name == MANIFEST_NAME {
                manifests.push(fd);
            } else {
                by_name.entry(name).or_default().push(fd);
            }
        }
        let manifest = match manifests.len() {
            0 => {
                return Err(HandoffError::NoManifest {
                    present: by_name
                        .keys()
                        .filter(|n| n.starts_with("leco-"))
                        .map(|n| by_name[n].len())
                        .sum(),
                })
            }
            1 => read_manifest(manifests[0].as_fd())?,
            count => return Err(HandoffError::ManyManifests { count }),
        };
        manifest.compatible()?;

        let mut problems = Vec::new();
        let mut maps: HashMap<MapRole, OwnedFd> = HashMap::new();
        let mut links = Vec::new();
        for entry in &manifest.entries {
            let name = entry.handover_name();
            let candidates = by_name.remove(&name).unwrap_or_default();
            let found = candidates.len();
            let mut mine = candidates
                .into_iter()
                .filter(|fd| object_id(fd.as_fd(), entry) == Some(entry.id()));
            match (mine.next(), entry) {
                (Some(fd), Entry::Map { role, .. }) => {
                    maps.insert(*role, fd);
                }
                (Some(fd), Entry::Link { .. }) => links.push(fd),
                (None, _) if found == 0 => {
                    problems.push(format!("{name} (id {}) is missing", entry.id()))
                }
                (None, _) => problems.push(format!(
                    "{name} is another object than the manifest's (id {})",
                    entry.id()
                )),
            }
        }
        if !problems.is_empty() {
            return Err(HandoffError::Incomplete {
                what: problems.join("; "),
            });
        }
        let mut ignored: Vec<String> = by_name.into_keys().collect();
        ignored.sort();
        let mut take = |role| {
            maps.remove(&role).ok_or_else(|| HandoffError::Incomplete {
                what: format!("{} is missing", map_name(role)),
            })
        };
        let maps = adopt_maps(
            take(MapRole::Events)?,
            take(MapRole::Flows)?,
            take(MapRole::Counters)?,
        )?;
        Ok(Received {
            maps,
            manifest,
            links,
            ignored,
        })
    }

    /// Takes over the objects pinned in `dir` by [`Handover::pin`].
    pub fn from_pins(dir: &Path) -> Result<Received, HandoffError> {
        let manifest_path = dir.join(MANIFEST_NAME);
        let manifest_fd = match obj_get(&manifest_path) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let present = fs::read_dir(dir)
                    .map(|d| {
                        d.flatten()
                            .filter(|e| e.file_name().as_bytes().starts_with(b"leco-"))
                            .count()
                    })
                    .unwrap_or(0);
                return Err(HandoffError::NoManifest { present });
            }
            Err(e) => return Err(io_err(format!("opening {}", manifest_path.display()))(e)),
        };
        let manifest = read_manifest(manifest_fd.as_fd())?;
        let mut fds = vec![(MANIFEST_NAME.to_owned(), manifest_fd)];
        for entry in &manifest.entries {
            let name = entry.handover_name();
            match obj_get(&dir.join(&name)) {
                Ok(fd) => fds.push((name, fd)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(format!("opening {}", dir.join(&name).display()))(e)),
            }
        }
        Received::from_fds(fds)
    }

    /// The maps, to read.
    pub fn maps(&self) -> &KernelMaps {
        &self.maps
    }

    /// The maps to read, and the links that keep the programs feeding them
    /// for as long as they are held.
    pub fn into_parts(self) -> (KernelMaps, HeldLinks) {
        (self.maps, HeldLinks(self.links))
    }

    /// What the loader wrote down.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The settings baked in at load time.
    pub fn settings(&self) -> LoadSettings {
        self.manifest.settings
    }

    /// Names of descriptors that were handed over but are not part of this
    /// load (closed).
    pub fn ignored(&self) -> &[String] {
        &self.ignored
    }
}

/// Links of a handover, held: the programs stay attached at least as long.
#[derive(Debug)]
pub struct HeldLinks(Vec<OwnedFd>);

impl HeldLinks {
    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The kernel id of the object behind `fd`, if it is the kind `entry` says.
fn object_id(fd: BorrowedFd<'_>, entry: &Entry) -> Option<u32> {
    match entry {
        Entry::Map { .. } => MapInfo::new(fd).ok().map(|i| i.info.id),
        Entry::Link { .. } => libbpf_rs::query::LinkInfo::from_fd(fd).ok().map(|i| i.id),
    }
}

/// Reads a manifest map through `fd`.
fn read_manifest(fd: BorrowedFd<'_>) -> Result<Manifest, HandoffError> {
    let info = MapInfo::new(fd)
        .map_err(|e| HandoffError::Manifest(format!("it is not a BPF map ({e})")))?;
    let name = info.name().unwrap_or_default();
    if name != MANIFEST_MAP_NAME
        || info.map_type() != MapType::Array
        || info.info.value_size != MANIFEST_BYTES
        || info.info.key_size != 4
    {
        return Err(HandoffError::Manifest(format!(
            "it is another map ({name:?}, {:?})",
            info.map_type()
        )));
    }
    let mut value = vec![0u8; MANIFEST_BYTES as usize];
    let key = 0u32;
    // SAFETY: the key is a u32 as the map's key_size (4) says, and `value`
    // has the map's value_size bytes, both live across the call.
    let r = unsafe {
        libbpf_sys::bpf_map_lookup_elem(
            fd.as_raw_fd(),
            std::ptr::from_ref(&key).cast(),
            value.as_mut_ptr().cast(),
        )
    };
    if r < 0 {
        return Err(io_err("reading the manifest")(io::Error::last_os_error()));
    }
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    let text = std::str::from_utf8(&value[..end])
        .map_err(|_| HandoffError::Manifest("it is not UTF-8".into()))?;
    Manifest::parse(text)
}

/// Wraps received map descriptors in libbpf-rs handles, after checking each
/// is the map it is named for.
///
/// libbpf-rs 0.27 offers no constructor of a `MapHandle` from a plain fd, so
/// the skeleton is opened (not loaded: no privilege needed) and each of its
/// maps is pointed at a received descriptor (`bpf_map__reuse_fd`, which also
/// reads the real type and sizes from the kernel); a handle duplicated from
/// it outlives the skeleton.
fn adopt_maps(
    events: OwnedFd,
    flows: OwnedFd,
    counters: OwnedFd,
) -> Result<KernelMaps, HandoffError> {
    let mut storage = MaybeUninit::uninit();
    let mut open = LecoSkelBuilder::default()
        .open(&mut storage)
        .map_err(libbpf_err("opening the embedded eBPF object"))?;
    let m = &mut open.maps;
    let adopt = |slot: &mut libbpf_rs::OpenMapMut<'_>,
                 fd: OwnedFd,
                 role: MapRole,
                 want: MapType|
     -> Result<MapHandle, HandoffError> {
        let name = map_name(role);
        slot.reuse_fd(fd.as_fd())
            .map_err(libbpf_err(format!("taking over {name}")))?;
        let ptr = slot.as_libbpf_object();
        // SAFETY: `ptr` is the open object's own bpf_map, which lives as long
        // as `open`, beyond this use; reuse_fd just gave it a descriptor.
        let map = Map::new(unsafe { ptr.as_ref() });
        let handle =
            MapHandle::try_from(&map).map_err(libbpf_err(format!("taking over {name}")))?;
        if handle.map_type() != want {
            return Err(HandoffError::Incomplete {
                what: format!(
                    "{name} is a {:?} map, not a {want:?} one",
                    handle.map_type()
                ),
            });
        }
        Ok(handle)
    };
    let events = adopt(&mut m.events, events, MapRole::Events, MapType::RingBuf)?;
    let flows = adopt(&mut m.flows, flows, MapRole::Flows, MapType::LruHash)?;
    let counters = adopt(&mut m.bss, counters, MapRole::Counters, MapType::Array)?;
    if (flows.key_size(), flows.value_size()) != our_layout() {
        return Err(HandoffError::Incomplete {
            what: format!(
                "{} has {}-byte keys and {}-byte values, this build reads {:?}",
                map_name(MapRole::Flows),
                flows.key_size(),
                flows.value_size(),
                our_layout()
            ),
        });
    }
    Ok(KernelMaps::from_handles(events, flows, counters))
}

/// Every name a handover of this build may use, for clearing a store of
/// leftovers whatever load made them.
pub fn all_names() -> Vec<String> {
    let mut names: Vec<String> = MapRole::ALL.into_iter().map(map_name).collect();
    names.extend(crate::capture::program_names().map(link_name));
    names.push(MANIFEST_NAME.to_owned());
    names
}
