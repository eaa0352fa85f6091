//! Noticing edits of the configuration file without waking up for nothing:
//! inotify on the file's directory, because editors save by writing a new
//! file and renaming it over the old one (a watch on the file itself would
//! follow the old inode into oblivion).

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

/// A watch on one file, through its directory.
#[derive(Debug)]
pub struct ConfigWatch {
    inotify: Inotify,
    name: OsString,
    path: PathBuf,
}

impl ConfigWatch {
    /// Watches `path` (which need not exist yet; its directory must).
    pub fn new(path: &Path) -> io::Result<ConfigWatch> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::other(format!("{} names no file", path.display())))?
            .to_os_string();
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        inotify.add_watch(
            &dir,
            AddWatchFlags::IN_CLOSE_WRITE
                | AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_CREATE
                | AddWatchFlags::IN_DELETE
                | AddWatchFlags::IN_MOVED_FROM,
        )?;
        Ok(ConfigWatch {
            inotify,
            name,
            path: path.to_path_buf(),
        })
    }

    /// The watched file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads what happened in the directory; true when the watched file was
    /// written, replaced, created or removed.
    pub fn changed(&self) -> bool {
        let mut hit = false;
        // Read until the queue is empty so that the fd stops polling ready.
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
            hit |= events
                .iter()
                .any(|e| e.name.as_deref() == Some(self.name.as_os_str()));
        }
        hit
    }
}

impl AsFd for ConfigWatch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_a_rename_over_the_file_and_ignores_neighbours() {
        let dir = std::env::temp_dir().join(format!("leco-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("config.kdl");
        std::fs::write(&file, "a").expect("write");
        let w = ConfigWatch::new(&file).expect("watch");
        assert!(!w.changed());
        std::fs::write(dir.join("other"), "x").expect("write other");
        assert!(!w.changed());
        std::fs::write(dir.join(".config.kdl.swp"), "b").expect("write tmp");
        std::fs::rename(dir.join(".config.kdl.swp"), &file).expect("rename");
        assert!(w.changed());
        assert!(!w.changed());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
