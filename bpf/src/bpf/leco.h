/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The records leco's programs share with user space. libbpf-cargo turns
 * these into Rust types (the skeleton's `types` module), so the layout is
 * written once, here. Explicit padding keeps both sides byte-identical and
 * lets the programs zero every byte they send.
 */
#ifndef LECO_H
#define LECO_H

enum leco_kind {
	LECO_NEW = 1,      /* a flow is seen for the first time (TCP: established/accepted) */
	LECO_UPDATE = 2,   /* traffic on a known flow, at most once per update interval */
	LECO_CLOSED = 3,   /* a TCP flow ended without an error */
	LECO_FAILED = 4,   /* a TCP flow ended with an error, or a UDP peer reported one */
	LECO_RELEASED = 5, /* a socket ended without a flow record (a UDP socket was
			    * released; a TCP socket closed whose flow the table no
			    * longer had): every flow of its cookie ends */
};

enum leco_direction {
	LECO_DIR_UNKNOWN = 0, /* the flow predates leco: user space guesses from ports */
	LECO_DIR_OUT = 1,
	LECO_DIR_IN = 2,
};

enum leco_flag {
	LECO_F_ANNOUNCED = 1,   /* its LECO_NEW has been sent */
	LECO_F_PROVISIONAL = 2, /* owner copied from the listener, not yet the acceptor */
	LECO_F_ESTABLISHED = 4, /* TCP reached ESTABLISHED */
};

/* Who did it, captured in process context at the moment it was known. */
struct leco_owner {
	__u32 pid; /* thread id */
	__u32 tgid; /* process id */
	__u32 uid;
	__u32 gid;
	__u64 cgroup_id; /* cgroup v2 id: the inode number of its directory */
	char comm[16];
};

/* One flow: a TCP socket, or a (UDP socket, peer) pair. Peer is zero for TCP. */
struct leco_flow_key {
	__u64 cookie;
	__u8 raddr[16];
	__u16 rport;
	__u8 _pad[6];
};

struct leco_flow {
	__u64 id; /* unique per boot: a global sequence, never reused */
	struct leco_owner owner;
	__u64 first_ns; /* CLOCK_BOOTTIME */
	__u64 last_ns;
	__u64 last_emit_ns;
	__u64 rx_bytes;
	__u64 tx_bytes;
	__u8 laddr[16]; /* IPv4 in the first 4 bytes, network order */
	__u8 raddr[16];
	__u32 netns;
	__u16 lport; /* host order */
	__u16 rport;
	__u8 proto; /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 family; /* AF_INET / AF_INET6 */
	__u8 direction; /* enum leco_direction */
	__u8 state; /* TCP state, 0 for UDP */
	__u8 flags; /* enum leco_flag */
	__u8 _pad;
	__s16 error; /* errno, 0 if none */
	__u8 _pad2[4];
};

struct leco_event {
	__u64 cookie;
	__u64 ts_ns; /* CLOCK_BOOTTIME when it happened */
	struct leco_flow flow;
	__u8 kind; /* enum leco_kind */
	__u8 _pad[7];
};

/* Owner of a listening TCP socket, so an accepted flow has an owner before the
 * accept(2) that names the real acceptor. */
struct leco_listen_key {
	__u32 netns;
	__u16 port;
	__u16 _pad;
};

/* Peer of the unconnected UDP send or receive this thread is in the middle of:
 * the cgroup sock_addr hooks see the address, the sock_*_length tracepoint
 * that follows in the same syscall sees the byte count. */
struct leco_udp_peer {
	__u64 cookie;
	__u8 addr[16];
	__u16 port;
	__u8 family;
	__u8 _pad[5];
};

#endif /* LECO_H */
