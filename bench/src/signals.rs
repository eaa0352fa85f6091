//! Cleanup when the bench is interrupted (Ctrl-C, SIGTERM, SIGHUP): drop
//! guards do not run when a signal kills the process, yet leaving
//! leco-service attached or `kernel.bpf_stats_enabled` on would slow the
//! whole machine after the bench is gone.

use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};

const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// The running leco-service, 0 when none.
static SERVICE_PID: AtomicI32 = AtomicI32::new(0);
/// The value to write back to the sysctl, 0 when nothing to restore.
static STATS_OLD: AtomicU8 = AtomicU8::new(0);

/// Installs the handler for the rest of the process's life.
pub fn install() {
    let handler = on_stop as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for sig in SIGNALS {
        // SAFETY: the handler makes async-signal-safe calls only.
        unsafe { libc::signal(sig, handler) };
    }
}

/// Records the leco-service to stop if the bench is interrupted.
pub fn service_started(pid: u32) {
    SERVICE_PID.store(pid as i32, Ordering::SeqCst);
}

/// Forgets it once it has been stopped (its pid may be reused).
pub fn service_gone() {
    SERVICE_PID.store(0, Ordering::SeqCst);
}

/// Records the sysctl's old value, if it is one ASCII digit (the handler
/// cannot allocate to write anything longer).
pub fn stats_changed(old: &str) {
    if let [b] = old.as_bytes() {
        if b.is_ascii_digit() {
            STATS_OLD.store(*b, Ordering::SeqCst);
        }
    }
}

/// Forgets it once restored.
pub fn stats_restored() {
    STATS_OLD.store(0, Ordering::SeqCst);
}

extern "C" fn on_stop(sig: libc::c_int) {
    let pid = SERVICE_PID.load(Ordering::SeqCst);
    let old = STATS_OLD.load(Ordering::SeqCst);
    // SAFETY: kill, open, write, close, signal and raise are
    // async-signal-safe; the path is NUL-terminated and `old` outlives the
    // write.
    unsafe {
        if pid > 0 {
            // SIGTERM lets it detach its programs and exit cleanly.
            libc::kill(pid, libc::SIGTERM);
        }
        if old != 0 {
            let fd = libc::open(
                c"/proc/sys/kernel/bpf_stats_enabled".as_ptr(),
                libc::O_WRONLY,
            );
            if fd >= 0 {
                libc::write(fd, (&old as *const u8).cast(), 1);
                libc::close(fd);
            }
        }
        // Die of the signal, as without a handler.
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}
