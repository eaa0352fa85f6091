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
	LECO_BLOCKED = 6,  /* this machine's policy stopped an attempt (reason):
			    * the first at once, then at most once per update
			    * interval while attempts go on, and a TCP connect's
			    * last when its socket closes */
	LECO_DNS = 7,      /* a DNS answer reached a socket that asked for it
			    * (struct leco_dns, not struct leco_event) */
};

/* What stopped a blocked attempt: how the kernel named the drop. */
enum leco_reason {
	LECO_R_NONE = 0,
	LECO_R_FIREWALL = 1, /* netfilter (nftables, iptables): drop or reject */
	LECO_R_CGROUP = 2,   /* a cgroup BPF program denied it (egress, connect, sendmsg) */
	LECO_R_LSM = 3,      /* a security module's packet hook */
};

/* Socket cookies count up from 1 and never reach bit 63: flows of inbound
 * attempts blocked before any socket (blocked_in) carry a cookie made of
 * what they aggregate: bit 63, bit 62 for IPv6, the namespace in bits
 * 24-55, the protocol in 16-23 and the local port in 0-15. */
#define LECO_BLOCKED_IN_COOKIE (1ULL << 63)
#define LECO_BLOCKED_IN_V6 (1ULL << 62)

/* What a flow is. The IP protocol's number where there is one, so that
 * records of an older leco (a flow table kept across an upgrade) read the
 * same. */
enum leco_proto {
	LECO_P_ICMP = 1,     /* ping sockets and raw ICMP sockets */
	LECO_P_TCP = 6,
	LECO_P_UDP = 17,
	LECO_P_ICMPV6 = 58,
	LECO_P_SCTP = 132,
	LECO_P_RAW = 254,    /* a raw IP socket of any other protocol: ip_proto */
	LECO_P_PACKET = 255, /* an AF_PACKET socket: laddr holds the interface's
			      * name, raddr/rport the frame's IP destination */
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
	LECO_F_BLOCKED = 8,     /* this machine's policy stopped it (reason, attempts) */
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

/* One flow: a TCP socket, or a (socket, peer) pair for every other kind.
 * Peer is zero for TCP. */
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
	__u8 laddr[16]; /* IPv4 in the first 4 bytes, network order; LECO_P_PACKET:
			 * the interface's name, NUL-padded */
	__u8 raddr[16];
	__u32 netns;
	__u16 lport; /* host order */
	__u16 rport;
	__u8 proto; /* enum leco_proto */
	__u8 family; /* AF_INET / AF_INET6 of the addresses; 0: none (a frame
		      * that is not IP) */
	__u8 direction; /* enum leco_direction */
	__u8 state; /* TCP state, 0 for the others */
	__u8 flags; /* enum leco_flag */
	__u8 ip_proto; /* the IP protocol (raw sockets, IP frames of a packet socket) */
	__s16 error; /* errno, 0 if none */
	__u32 attempts; /* blocked: how many times policy stopped it */
	__u8 reason;    /* blocked: enum leco_reason */
	__u8 _pad2[7];
};

struct leco_event {
	__u64 cookie;
	__u64 ts_ns; /* CLOCK_BOOTTIME when it happened */
	struct leco_flow flow;
	__u8 kind; /* enum leco_kind */
	__u8 _pad[7];
};

/* Bytes of a DNS answer kept: EDNS's usual UDP size. A longer message is
 * cut (its first answers are kept); a longer TCP segment too. */
#define LECO_DNS_MAX 1232

/* Zeroed bytes after a DNS message, sent only when the record would
 * otherwise be exactly as long as a struct leco_event. */
#define LECO_DNS_SPARE 8

/* A DNS answer (source port 53) that reached a socket which had asked
 * that server: a UDP datagram whole, or one TCP segment of a DNS stream
 * (user space puts them together by sequence number). Sent rarely, so a
 * record of its own, as long as its message (data[len]; LECO_DNS_SPARE
 * more where that length would be sizeof(struct leco_event)), told from
 * struct leco_event by its size. */
struct leco_dns {
	__u64 cookie;    /* the asking socket */
	__u64 ts_ns;     /* CLOCK_BOOTTIME when it arrived */
	__u64 cgroup_id; /* the asking socket's owner's cgroup */
	__u32 len;       /* bytes in data */
	__u32 tcp_seq;   /* TCP: the segment's first sequence number */
	__u8 proto;      /* IPPROTO_UDP or IPPROTO_TCP */
	__u8 kind;       /* LECO_DNS */
	__u8 _pad[6];
	__u8 data[LECO_DNS_MAX + LECO_DNS_SPARE];
};

/* Owner of a listening TCP socket, so an accepted flow has an owner before the
 * accept(2) that names the real acceptor. */
struct leco_listen_key {
	__u32 netns;
	__u16 port;
	__u16 _pad;
};

/* Peer of the datagram this thread is sending or receiving right now: the
 * hooks that see the address (cgroup sock_addr, the datagram copy, the
 * device queue) run earlier in the same system call than the
 * sock_*_length tracepoint that sees the byte count and the owner, which
 * takes it (and zeroes the cookie: used up). */
struct leco_peer {
	__u64 cookie; /* the socket, for the hooks that can ask its cookie */
	__u64 sk;     /* else the socket's address, valid within the system call */
	__u64 at_ns;  /* when it was left (frames: a stale one may be replaced) */
	__u8 addr[16];
	__u16 port;
	__u8 family; /* 0: nothing left; AF_PACKET: a frame that is not IP */
	__u8 ip_proto;
	__u8 blocked; /* enum leco_reason: policy stopped this datagram */
	__u8 _pad[3];
	char ifname[16]; /* the device a frame was queued on (AF_PACKET) */
};

#endif /* LECO_H */
