//! The programs of `bpf/leco.bpf.c`, one row each: where it attaches and
//! whether the capture can do without it. Loading, attaching, naming the
//! links of a hand-over, the kernel's refusals and the degraded mode all
//! read this table; a test keeps it equal to the programs in the object.
//!
//! Adding a hook is its C function plus one row here.

/// Where a program attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hook {
    /// A BTF tracepoint, `SEC("tp_btf/NAME")`.
    Tracepoint {
        /// The tracepoint as `group/name` (`sock/inet_sock_set_state`).
        event: &'static str,
        /// Which kernels have it, for the message when one lacks it.
        needs: &'static str,
    },
    /// A cgroup hook, `SEC("cgroup/NAME")` or `SEC("cgroup_skb/NAME")`,
    /// attached to the root of the cgroup v2 hierarchy (so it sees every
    /// process).
    Cgroup {
        /// The section, `cgroup/NAME` or `cgroup_skb/NAME`.
        section: &'static str,
    },
}

/// Programs that load and attach together: a kernel that refuses one of an
/// optional group still gets the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    /// Without these there is no capture.
    Core,
    /// The cgroup hooks (sock_addr, sock, skb, with task and socket
    /// storage), the newest kernel features used, and the tracepoint that
    /// corrects what the skb hook counts.
    Cgroup,
    /// The drop watcher: kfree_skb with the kernel's drop reason.
    Drops,
    /// The drop watcher's part that needs the receiving socket.
    DropsAtSocket,
}

impl Group {
    /// The groups a capture can do without, in the order a kernel that
    /// refuses one of their programs gives them up.
    pub(crate) const OPTIONAL: [Group; 3] = [Group::Cgroup, Group::Drops, Group::DropsAtSocket];
}

impl Group {
    /// What is not seen while this group is missing.
    pub(crate) fn lost(self) -> &'static str {
        match self {
            Group::Core => "nothing is captured",
            Group::Cgroup => {
                "UDP datagrams are counted as read, on a flow named by the socket's own peer \
                 (unconnected sockets: none); unconnected UDP peers sent to and UDP socket \
                 closes are not seen; UDP flows end by idle timeout; connects and sends a \
                 cgroup program denies are not seen"
            }
            Group::Drops => {
                "attempts this machine's firewall or a cgroup egress program stopped are not \
                 told as blocked: a TCP connect shows as failed (no reply), a UDP send and \
                 inbound attempts not at all"
            }
            Group::DropsAtSocket => {
                "packets a cgroup ingress program denies are not told as blocked (UDP ones \
                 are counted as received)"
            }
        }
    }
}

/// One program of the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Program {
    /// Its name: the C function's.
    pub(crate) name: &'static str,
    /// Where it attaches.
    pub(crate) hook: Hook,
    /// What it loads with.
    pub(crate) group: Group,
}

impl Program {
    const fn tracepoint(name: &'static str, event: &'static str, needs: &'static str) -> Program {
        Program {
            name,
            hook: Hook::Tracepoint { event, needs },
            group: Group::Core,
        }
    }

    /// A tracepoint of an optional group.
    const fn tracepoint_in(
        group: Group,
        name: &'static str,
        event: &'static str,
        needs: &'static str,
    ) -> Program {
        Program {
            group,
            ..Program::tracepoint(name, event, needs)
        }
    }

    const fn cgroup(name: &'static str, section: &'static str) -> Program {
        Program {
            name,
            hook: Hook::Cgroup { section },
            group: Group::Cgroup,
        }
    }

    /// The hook as messages name it: `sock/sock_send_length`,
    /// `cgroup/sendmsg4`.
    pub(crate) fn hook_name(&self) -> &'static str {
        match self.hook {
            Hook::Tracepoint { event, .. } => event,
            Hook::Cgroup { section } => section,
        }
    }

    /// The ELF section libbpf finds it in (and attaches it by).
    #[cfg(test)]
    pub(crate) fn section(&self) -> String {
        match self.hook {
            Hook::Tracepoint { event, .. } => {
                format!("tp_btf/{}", event.rsplit('/').next().unwrap_or(event))
            }
            Hook::Cgroup { section } => section.to_owned(),
        }
    }
}

/// Every program of leco.bpf.c.
pub(crate) const PROGRAMS: &[Program] = &[
    Program::tracepoint(
        "on_inet_sock_set_state",
        "sock/inet_sock_set_state",
        "Linux 4.16+ with CONFIG_INET",
    ),
    Program::tracepoint("on_sock_send_length", "sock/sock_send_length", "Linux 6.3+"),
    Program::tracepoint("on_sock_recv_length", "sock/sock_recv_length", "Linux 6.3+"),
    Program::tracepoint(
        "on_tcp_rcv_space_adjust",
        "tcp/tcp_rcv_space_adjust",
        "Linux 4.16+",
    ),
    Program::tracepoint(
        "on_skb_copy_datagram_iovec",
        "skb/skb_copy_datagram_iovec",
        "Linux 4.16+",
    ),
    Program::tracepoint("on_net_dev_queue", "net/net_dev_queue", "Linux 4.16+"),
    Program::tracepoint(
        "on_inet_sk_error_report",
        "sock/inet_sk_error_report",
        "Linux 5.15+",
    ),
    Program::cgroup("on_getpeername4", "cgroup/getpeername4"),
    Program::cgroup("on_getpeername6", "cgroup/getpeername6"),
    Program::cgroup("on_sendmsg4", "cgroup/sendmsg4"),
    Program::cgroup("on_sendmsg6", "cgroup/sendmsg6"),
    Program::cgroup("on_udp_ingress", "cgroup_skb/ingress"),
    Program::tracepoint_in(
        Group::Cgroup,
        "on_udp_fail_queue_rcv_skb",
        "udp/udp_fail_queue_rcv_skb",
        "Linux 6.10+ (the tracepoint with its sk_buff)",
    ),
    Program::cgroup("on_sock_release", "cgroup/sock_release"),
    Program::cgroup("on_connect4", "cgroup/connect4"),
    Program::cgroup("on_connect6", "cgroup/connect6"),
    Program::cgroup("on_getsockopt", "cgroup/getsockopt"),
    Program::tracepoint_in(
        Group::Drops,
        "on_kfree_skb",
        "skb/kfree_skb",
        "Linux 5.17+ (the tracepoint with its drop reason)",
    ),
    Program::tracepoint_in(
        Group::DropsAtSocket,
        "on_kfree_skb_rx",
        "skb/kfree_skb",
        "Linux 6.13+ (the tracepoint with its receiving socket)",
    ),
];

/// The name of every program of the object, in the table's order: what a
/// benchmark or a test looks for among the kernel's programs.
pub fn program_names() -> impl Iterator<Item = &'static str> + Clone {
    PROGRAMS.iter().map(|p| p.name)
}

/// The row of program `name`.
pub(crate) fn find(name: &str) -> Option<&'static Program> {
    PROGRAMS.iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::mem::MaybeUninit;

    use libbpf_rs::skel::{OpenSkel, SkelBuilder};

    use super::*;
    use crate::skel::LecoSkelBuilder;

    /// The table lists exactly the object's programs, each in the section
    /// it attaches by. Opening the object needs no privileges.
    #[test]
    fn the_table_is_the_object() {
        let mut storage = MaybeUninit::uninit();
        let open = LecoSkelBuilder::default()
            .open(&mut storage)
            .expect("the embedded object opens");
        let in_object: BTreeMap<String, String> = open
            .open_object()
            .progs()
            .map(|p| {
                (
                    p.name().to_string_lossy().into_owned(),
                    p.section().to_string_lossy().into_owned(),
                )
            })
            .collect();
        let in_table: BTreeMap<String, String> = PROGRAMS
            .iter()
            .map(|p| (p.name.to_owned(), p.section()))
            .collect();
        assert_eq!(
            in_table, in_object,
            "bpf/src/programs.rs and the programs of leco.bpf.c differ"
        );
    }

    #[test]
    fn rows_are_found_by_name() {
        let p = find("on_sendmsg4").expect("a row");
        assert_eq!((p.hook_name(), p.group), ("cgroup/sendmsg4", Group::Cgroup));
        assert_eq!(
            find("on_sock_send_length").map(Program::section),
            Some("tp_btf/sock_send_length".to_owned())
        );
        assert_eq!(find("on_nothing"), None);
    }
}
