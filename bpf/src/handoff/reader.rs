//! The reader's side: taking over named descriptors, checking them against
//! their manifest, and wrapping the maps for reading.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{libbpf_sys, AsRawLibbpf, Map, MapCore, MapHandle, MapInfo, MapType};

use super::error::{io_err, libbpf_err, HandoffError};
use super::our_layout;
use crate::manifest::{
    map_name, Entry, LoadSettings, Manifest, MapRole, MANIFEST_BYTES, MANIFEST_MAP_NAME,
    MANIFEST_NAME,
};
use crate::maps::KernelMaps;
use crate::skel::LecoSkelBuilder;

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
            take(MapRole::BlockedIn)?,
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

    /// The manifest alone, the rest closed: what [`super::pin_state`]
    /// reports of a complete pin directory.
    pub(super) fn into_manifest(self) -> Manifest {
        self.manifest
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
pub(super) fn read_manifest(fd: BorrowedFd<'_>) -> Result<Manifest, HandoffError> {
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
    blocked_in: OwnedFd,
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
    let blocked_in = adopt(
        &mut m.blocked_in,
        blocked_in,
        MapRole::BlockedIn,
        MapType::LruHash,
    )?;
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
    Ok(KernelMaps::from_handles(
        events, flows, counters, blocked_in,
    ))
}
