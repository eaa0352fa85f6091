//! cgroup paths: resolving the kernel's cgroup id to a path, and reading a
//! path for the systemd unit, container or Flatpak app it belongs to.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use leco_proto::{SafeText, MAX_TEXT_BYTES};

/// What a cgroup path says about the processes in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupInfo {
    /// Path below the cgroup v2 root, starting with `/`.
    pub path: SafeText,
    /// Innermost systemd unit (`foo.service`, `session-2.scope`), else the
    /// innermost slice.
    pub unit: Option<SafeText>,
    /// Container as `runtime:id12`.
    pub container: Option<SafeText>,
    /// Flatpak application id.
    pub app_id: Option<SafeText>,
}

impl CgroupInfo {
    /// Reads a cgroup path (relative to the v2 root). Users name cgroups
    /// of their own (a delegated subtree), so the path is made safe to
    /// show first, and what is read from it is taken from the safe text.
    pub fn from_path(path: &str) -> CgroupInfo {
        let path = SafeText::bounded(path.as_bytes(), MAX_TEXT_BYTES);
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let innermost = |pred: &dyn Fn(&str) -> bool| {
            parts
                .iter()
                .rev()
                .find(|p| pred(p))
                .map(|p| SafeText::from(*p))
        };
        let unit = innermost(&|p| p.ends_with(".service") || p.ends_with(".scope"))
            .or_else(|| innermost(&|p| p.ends_with(".slice")));
        let container = parts
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, p)| container_of(p, i.checked_sub(1).map(|j| parts[j])));
        let app_id = parts.iter().rev().find_map(|p| flatpak_app(p));
        CgroupInfo {
            unit,
            container: container.map(SafeText::from),
            app_id: app_id.map(SafeText::from),
            path,
        }
    }
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `docker-<id>.scope`, `libpod-<id>.scope`, `cri-containerd-<id>.scope`,
/// `crio-<id>.scope`, or a bare id under a `docker`/`kubepods…` parent
/// (cgroupfs driver).
fn container_of(part: &str, parent: Option<&str>) -> Option<String> {
    const SCOPES: [(&str, &str); 4] = [
        ("docker-", "docker"),
        ("libpod-", "podman"),
        ("cri-containerd-", "containerd"),
        ("crio-", "cri-o"),
    ];
    let short = |id: &str| id[..12].to_owned();
    if let Some(stem) = part.strip_suffix(".scope") {
        for (prefix, runtime) in SCOPES {
            if let Some(id) = stem.strip_prefix(prefix) {
                if is_container_id(id) {
                    return Some(format!("{runtime}:{}", short(id)));
                }
            }
        }
    }
    if is_container_id(part) {
        let runtime = match parent {
            Some("docker") => "docker",
            Some(p) if p.starts_with("kubepods") || p.starts_with("pod") => "containerd",
            Some("libpod_parent") => "podman",
            _ => return None,
        };
        return Some(format!("{runtime}:{}", short(part)));
    }
    None
}

/// `app-flatpak-org.mozilla.firefox-12345.scope` → `org.mozilla.firefox`.
fn flatpak_app(part: &str) -> Option<String> {
    let rest = part.strip_prefix("app-flatpak-")?.strip_suffix(".scope")?;
    let (app, instance) = rest.rsplit_once('-')?;
    (!app.is_empty() && instance.bytes().all(|b| b.is_ascii_digit())).then(|| app.to_owned())
}

/// Maps cgroup ids (inode numbers) to paths, remembering what it found.
#[derive(Debug)]
pub struct CgroupResolver {
    root: Option<PathBuf>,
    known: HashMap<u64, Option<CgroupInfo>>,
}

/// Directories searched at most per resolution: the walk is a fallback for
/// processes gone before we could read /proc, and must stay cheap.
const WALK_LIMIT: usize = 20_000;
const KNOWN_LIMIT: usize = 4_096;

impl CgroupResolver {
    /// A resolver for the cgroup v2 hierarchy mounted at `root`.
    pub fn new(root: Option<PathBuf>) -> CgroupResolver {
        CgroupResolver {
            root,
            known: HashMap::new(),
        }
    }

    /// The cgroup `id`, using `hint` (a path from /proc/PID/cgroup) if it
    /// names that very cgroup.
    pub fn resolve(&mut self, id: u64, hint: Option<&str>) -> Option<CgroupInfo> {
        if id == 0 {
            return None;
        }
        if let Some(known) = self.known.get(&id) {
            return known.clone();
        }
        let root = self.root.clone()?;
        if self.known.len() >= KNOWN_LIMIT {
            self.known.clear();
        }
        if let Some(h) = hint {
            if inode(&root.join(h.trim_start_matches('/'))) == Some(id) {
                let info = CgroupInfo::from_path(h);
                self.known.insert(id, Some(info.clone()));
                return Some(info);
            }
        }
        let found = walk_for(&root, id);
        let info = found.map(|p| CgroupInfo::from_path(&p));
        self.known.insert(id, info.clone());
        info
    }
}

fn inode(p: &Path) -> Option<u64> {
    fs::metadata(p).ok().map(|m| m.ino())
}

fn walk_for(root: &Path, id: u64) -> Option<String> {
    if inode(root) == Some(id) {
        return Some("/".into());
    }
    let mut stack = vec![root.to_path_buf()];
    let mut seen = 0;
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if !ft.is_dir() {
                continue;
            }
            seen += 1;
            if seen > WALK_LIMIT {
                return None;
            }
            let path = e.path();
            if e.metadata().map(|m| m.ino()).ok() == Some(id) {
                let rel = path.strip_prefix(root).ok()?;
                return Some(format!("/{}", rel.display()));
            }
            stack.push(path);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_service() {
        let i = CgroupInfo::from_path("/system.slice/NetworkManager.service");
        assert_eq!(i.unit.as_deref(), Some("NetworkManager.service"));
        assert_eq!((i.container, i.app_id), (None, None));
    }

    #[test]
    fn user_app_scope_is_the_innermost_unit() {
        let i = CgroupInfo::from_path(
            "/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-firefox-4242.scope",
        );
        assert_eq!(i.unit.as_deref(), Some("app-gnome-firefox-4242.scope"));
    }

    #[test]
    fn hostile_names_are_escaped() {
        let i = CgroupInfo::from_path("/user.slice/evil\u{1b}[2J\u{202e}.scope");
        assert_eq!(&*i.path, "/user.slice/evil\\u{1b}[2J\\u{202e}.scope");
        assert_eq!(i.unit.as_deref(), Some("evil\\u{1b}[2J\\u{202e}.scope"));
    }

    #[test]
    fn flatpak_app_id() {
        let i = CgroupInfo::from_path(
            "/user.slice/user-1000.slice/user@1000.service/app.slice/app-flatpak-org.mozilla.firefox-98765.scope",
        );
        assert_eq!(i.app_id.as_deref(), Some("org.mozilla.firefox"));
        assert_eq!(flatpak_app("app-flatpak-x-y.scope"), None);
    }

    #[test]
    fn containers() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let docker = CgroupInfo::from_path(&format!("/system.slice/docker-{id}.scope"));
        assert_eq!(docker.container.as_deref(), Some("docker:0123456789ab"));
        let podman = CgroupInfo::from_path(&format!("/machine.slice/libpod-{id}.scope/container"));
        assert_eq!(podman.container.as_deref(), Some("podman:0123456789ab"));
        let k8s = CgroupInfo::from_path(&format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-{id}.scope"
        ));
        assert_eq!(k8s.container.as_deref(), Some("containerd:0123456789ab"));
        let cgroupfs = CgroupInfo::from_path(&format!("/docker/{id}"));
        assert_eq!(cgroupfs.container.as_deref(), Some("docker:0123456789ab"));
        assert_eq!(
            CgroupInfo::from_path("/system.slice/docker.service").container,
            None
        );
    }

    #[test]
    fn resolves_a_real_directory_by_inode_with_and_without_hint() {
        let tmp = std::env::temp_dir().join(format!("leco-cg-{}", std::process::id()));
        let leaf = tmp.join("a.slice/b.scope");
        fs::create_dir_all(&leaf).expect("mkdir");
        let id = inode(&leaf).expect("inode");
        let mut r = CgroupResolver::new(Some(tmp.clone()));
        let walked = r.resolve(id, None).expect("found by walking");
        assert_eq!(&*walked.path, "/a.slice/b.scope");
        assert_eq!(walked.unit.as_deref(), Some("b.scope"));
        let mut r = CgroupResolver::new(Some(tmp.clone()));
        assert_eq!(
            r.resolve(id, Some("/a.slice/b.scope")).map(|i| i.path),
            Some("/a.slice/b.scope".into())
        );
        assert_eq!(
            r.resolve(id, Some("/wrong")).map(|i| i.path),
            Some("/a.slice/b.scope".into())
        );
        fs::remove_dir_all(&tmp).expect("cleanup");
    }
}
