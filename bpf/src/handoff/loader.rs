//! The loader's side: duplicating the descriptors of a load, writing their
//! manifest, pinning them and clearing pins of earlier loads.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use libbpf_rs::{libbpf_sys, MapCore, MapFlags, MapHandle, MapInfo, MapType};

use super::error::{io_err, libbpf_err, HandoffError};
use super::reader::Received;
use super::{our_layout, OUR_VERSION};
use crate::capture::Capture;
use crate::manifest::{
    link_name, map_name, Entry, LoadSettings, Manifest, MapRole, MANIFEST_BYTES, MANIFEST_MAP_NAME,
    MANIFEST_NAME,
};

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
    /// and writes their manifest (see [`crate::handoff`]).
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
        Ok(r) => PinState::Complete(r.into_manifest()),
        Err(HandoffError::NoManifest { present: 0 }) => PinState::Absent,
        Err(e) => PinState::Incomplete(e.to_string()),
    }
}

/// Every name a handover of this build may use, for clearing a store of
/// leftovers whatever load made them.
pub fn all_names() -> Vec<String> {
    let mut names: Vec<String> = MapRole::ALL.into_iter().map(map_name).collect();
    names.extend(crate::capture::program_names().map(link_name));
    names.push(MANIFEST_NAME.to_owned());
    names
}
