//! Reading a configuration file: a regular file of a few KiB of UTF-8.

use std::fs::{File, FileType, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::ConfigError;

/// The system-wide configuration file.
pub const SYSTEM_CONFIG: &str = "/etc/leco/config.kdl";

/// The user's configuration file: `$XDG_CONFIG_HOME/leco/config.kdl`
/// (`~/.config/leco/config.kdl` when unset), whether it exists or not;
/// `None` without a home.
pub fn user_config() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| Path::new(d).is_absolute())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })
        .map(|dir| dir.join("leco/config.kdl"))
}

/// The file a per-user program (the overlay, the notification bridge)
/// reads when none is named: the user's ([`user_config`]), else
/// [`SYSTEM_CONFIG`]; `None` when neither exists (then the built-in
/// defaults apply).
pub fn locate() -> Option<PathBuf> {
    user_config()
        .into_iter()
        .chain(std::iter::once(PathBuf::from(SYSTEM_CONFIG)))
        .find(|p| p.is_file())
}

/// Larger files are refused unread: a configuration is a few KiB, and this
/// keeps a mistaken `-c` on a log or an image from eating memory.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Reads a configuration file as text; a missing, unreadable, oversized,
/// non-UTF-8 or non-regular file (a FIFO, a device, a directory) is an error
/// naming it (the UTF-8 one with the place of the first bad byte).
pub fn read_file(path: &Path) -> Result<String, ConfigError> {
    let file = open_regular(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ConfigError::whole(path, format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ConfigError::whole(
            path,
            format!("larger than {MAX_FILE_BYTES} bytes; a configuration file is a few KiB"),
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let before = String::from_utf8_lossy(&e.as_bytes()[..valid]);
        ConfigError::at(
            path,
            &before,
            valid,
            "not valid UTF-8; a configuration file is UTF-8 text",
        )
    })
}

/// Opens `path` for reading when it is a regular file. Anything else is
/// refused before a byte is read: opening a FIFO waits for a writer,
/// forever when none comes, and a device need never end. The type is
/// checked on the path, so that nothing else is even opened, and again on
/// what was opened, non-blocking, in case the path was replaced in between.
fn open_regular(path: &Path) -> Result<File, ConfigError> {
    let cannot_open = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => ConfigError::whole(path, "no such file"),
        _ => ConfigError::whole(path, format!("cannot open: {e}")),
    };
    let regular = |kind: FileType| match not_regular(kind) {
        Some(what) => Err(ConfigError::whole(
            path,
            format!("not a regular file ({what})"),
        )),
        None => Ok(()),
    };
    regular(std::fs::metadata(path).map_err(cannot_open)?.file_type())?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(cannot_open)?;
    regular(file.metadata().map_err(cannot_open)?.file_type())?;
    Ok(file)
}

/// What a file of type `kind` is, in a few words, unless it is a regular
/// file.
fn not_regular(kind: FileType) -> Option<&'static str> {
    if kind.is_file() {
        None
    } else if kind.is_dir() {
        Some("a directory")
    } else if kind.is_fifo() {
        Some("a FIFO")
    } else if kind.is_socket() {
        Some("a socket")
    } else if kind.is_char_device() {
        Some("a character device")
    } else if kind.is_block_device() {
        Some("a block device")
    } else {
        Some("neither a file nor a directory")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn read_file_names_the_problem() {
        let dir = std::env::temp_dir().join(format!("leco-kdlconf-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("c.kdl");
        std::fs::write(&path, "a 1\n").expect("write");
        assert_eq!(read_file(&path), Ok("a 1\n".into()));

        std::fs::write(&path, b"a {\n  x \xff\n}\n").expect("write");
        let message = read_file(&path).expect_err("not UTF-8").to_string();
        assert_eq!(
            message,
            format!(
                "{}:2:5: not valid UTF-8; a configuration file is UTF-8 text",
                path.display()
            )
        );

        std::fs::write(&path, vec![b' '; (MAX_FILE_BYTES + 1) as usize]).expect("write");
        let message = read_file(&path).expect_err("too large").to_string();
        assert!(message.ends_with("larger than 1048576 bytes; a configuration file is a few KiB"));

        let missing = dir.join("missing.kdl");
        let message = read_file(&missing).expect_err("missing").to_string();
        assert_eq!(message, format!("{}: no such file", missing.display()));
        std::fs::remove_dir_all(&dir).expect("remove temp dir");
    }

    #[test]
    fn only_regular_files_are_read() {
        let dir = leco_testkit::scratch_dir("kdlconf-fifo");
        let fifo = dir.join("fifo.kdl");
        leco_testkit::mkfifo(&fifo);
        let cases = [
            (fifo.clone(), "not a regular file (a FIFO)"),
            (dir.clone(), "not a regular file (a directory)"),
            (
                "/dev/zero".into(),
                "not a regular file (a character device)",
            ),
        ];
        for (path, why) in cases {
            let read = path.clone();
            let message = leco_testkit::within(Duration::from_secs(5), "read_file", move || {
                read_file(&read)
            })
            .expect_err("refused")
            .to_string();
            assert_eq!(message, format!("{}: {why}", path.display()));
        }
        // Through a symbolic link, a regular file is read.
        let target = dir.join("real.kdl");
        std::fs::write(&target, "a 1\n").expect("write");
        let link = dir.join("link.kdl");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert_eq!(read_file(&link), Ok("a 1\n".into()));
        std::fs::remove_dir_all(&dir).expect("remove temp dir");
    }
}
