//! A per-app firewall for tests: a cgroup BPF program that says no to
//! everything (`r0 = 0; exit`), attached to one scratch cgroup, as tools
//! that cut an application off the network do. Loaded with the bpf(2)
//! system call directly: two instructions need no object file. Detached
//! when dropped.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

// From include/uapi/linux/bpf.h.
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_TYPE_CGROUP_SKB: u32 = 8;
const BPF_PROG_TYPE_CGROUP_SOCK_ADDR: u32 = 18;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// Where a denying program attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deny {
    /// Every packet that reaches the cgroup's sockets (cgroup_skb/ingress).
    Ingress,
    /// Every packet the cgroup's sockets send (cgroup_skb/egress).
    Egress,
    /// Every IPv4 connect(2) (cgroup/connect4).
    Connect4,
    /// Every IPv4 sendmsg(2) with an address (cgroup/sendmsg4).
    Sendmsg4,
}

impl Deny {
    fn attach_type(self) -> u32 {
        match self {
            Deny::Ingress => 0,   // BPF_CGROUP_INET_INGRESS
            Deny::Egress => 1,    // BPF_CGROUP_INET_EGRESS
            Deny::Connect4 => 10, // BPF_CGROUP_INET4_CONNECT
            Deny::Sendmsg4 => 14, // BPF_CGROUP_UDP4_SENDMSG
        }
    }

    fn prog_type(self) -> u32 {
        match self {
            Deny::Ingress | Deny::Egress => BPF_PROG_TYPE_CGROUP_SKB,
            Deny::Connect4 | Deny::Sendmsg4 => BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
        }
    }
}

/// A denying program attached to a cgroup.
#[derive(Debug)]
pub struct CgroupDenial {
    prog: OwnedFd,
    cgroup: File,
    deny: Deny,
}

impl CgroupDenial {
    /// Loads a program that denies `deny` and attaches it to the cgroup
    /// directory `cgroup` (alongside any others: BPF_F_ALLOW_MULTI).
    pub fn attach(cgroup: &Path, deny: Deny) -> io::Result<CgroupDenial> {
        // mov r0, 0; exit
        let insns: [u64; 2] = [
            u64::from_le_bytes([0xb7, 0, 0, 0, 0, 0, 0, 0]),
            u64::from_le_bytes([0x95, 0, 0, 0, 0, 0, 0, 0]),
        ];
        let license = b"GPL\0";
        let mut attr = [0u8; 128];
        put(&mut attr, 0, deny.prog_type());
        put(&mut attr, 4, insns.len() as u32);
        attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
        attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
        attr[48..57].copy_from_slice(b"leco_deny");
        put(&mut attr, 68, deny.attach_type()); // expected_attach_type
        let fd = bpf(BPF_PROG_LOAD, &mut attr)?;
        // SAFETY: bpf(2) returned a new descriptor that nothing else owns.
        let prog = unsafe { OwnedFd::from_raw_fd(fd) };
        let cgroup = File::open(cgroup)?;
        let mut attr = [0u8; 128];
        put(&mut attr, 0, cgroup.as_raw_fd() as u32);
        put(&mut attr, 4, prog.as_raw_fd() as u32);
        put(&mut attr, 8, deny.attach_type());
        put(&mut attr, 12, BPF_F_ALLOW_MULTI);
        bpf(BPF_PROG_ATTACH, &mut attr)?;
        Ok(CgroupDenial { prog, cgroup, deny })
    }
}

impl Drop for CgroupDenial {
    fn drop(&mut self) {
        let mut attr = [0u8; 128];
        put(&mut attr, 0, self.cgroup.as_raw_fd() as u32);
        put(&mut attr, 4, self.prog.as_raw_fd() as u32);
        put(&mut attr, 8, self.deny.attach_type());
        let _ = bpf(BPF_PROG_DETACH, &mut attr);
    }
}

fn put(attr: &mut [u8], at: usize, v: u32) {
    attr[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> io::Result<i32> {
    // SAFETY: attr is a zeroed bpf_attr of the size passed, valid for the
    // kernel to read and write.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as i32)
}
