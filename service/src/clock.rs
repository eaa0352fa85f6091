//! The kernel stamps events with CLOCK_BOOTTIME; clients want wall time.

use std::time::Duration;

fn now(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec; both clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Converts boot-time stamps to realtime microseconds. The offset moves when
/// the wall clock is set, so it is re-read on every tick.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    offset_us: i128,
}

impl WallClock {
    /// The offset as of now.
    pub fn now() -> WallClock {
        let real = now(libc::CLOCK_REALTIME).as_micros() as i128;
        let boot = now(libc::CLOCK_BOOTTIME).as_micros() as i128;
        WallClock {
            offset_us: real - boot,
        }
    }

    /// Realtime microseconds since the epoch for a CLOCK_BOOTTIME stamp.
    pub fn realtime_us(&self, boottime: Duration) -> u64 {
        u64::try_from(boottime.as_micros() as i128 + self.offset_us).unwrap_or(0)
    }
}

/// Realtime microseconds since the epoch, now.
pub fn realtime_us() -> u64 {
    now(libc::CLOCK_REALTIME).as_micros() as u64
}

/// CLOCK_BOOTTIME now.
pub fn boottime() -> Duration {
    now(libc::CLOCK_BOOTTIME)
}

/// `HH:MM:SS` in local time for realtime microseconds.
pub fn local_hms(realtime_us: u64) -> String {
    let secs = (realtime_us / 1_000_000) as libc::time_t;
    // SAFETY: tm is plain data; localtime_r writes it and is thread-safe.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call.
    if unsafe { libc::localtime_r(&secs, &mut tm) }.is_null() {
        return "--:--:--".into();
    }
    format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_stamps_land_near_now() {
        let wall = WallClock::now();
        let real_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_micros() as u64;
        let got = wall.realtime_us(boottime());
        assert!(got.abs_diff(real_now) < 1_000_000, "{got} vs {real_now}");
        assert_eq!(local_hms(real_now).len(), 8);
    }
}
