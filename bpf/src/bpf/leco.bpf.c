// SPDX-License-Identifier: GPL-2.0
/*
 * leco's kernel side: follow every flow (TCP, UDP, ICMP, raw IP, AF_PACKET)
 * with its owner and byte counts, using only BTF tracepoints and cgroup
 * hooks (no kprobes, no fentry: many kernels, ours included, have neither).
 *
 *   inet_sock_set_state   TCP life cycle: connect (process context), listen,
 *                         passive establish (softirq), close/failure
 *   cgroup/getpeername{4,6}  inside accept(2): the accepting process
 *   sock_{send,recv}_length  datagram bytes per flow, in process context;
 *                         for TCP the moment to read the kernel's counters
 *   tcp_rcv_space_adjust  every TCP read, splice(2) included: the same
 *   inet_sk_error_report  errors (ICMP unreachable on connected UDP, ...)
 *   cgroup/sendmsg{4,6}   peer of unconnected UDP datagrams sent
 *   cgroup_skb/ingress    every UDP datagram received, with its sender, as
 *                         it reaches its socket (the only place a datagram
 *                         read without asking for its address is named)
 *   udp_fail_queue_rcv_skb  one the socket's full buffer refused after all
 *   skb_copy_datagram_iovec  peer of ICMP, raw and packet datagrams read
 *   net_dev_queue         peer (and device) of ICMP, raw and packet sends
 *   cgroup/sock_release   a socket closes: its datagram flows end, and so
 *                         does a TCP flow made after its socket's end
 *   kfree_skb             packets this machine's policy dropped (netfilter,
 *                         cgroup egress programs, LSM packet hooks), by
 *                         their drop reason: blocked attempts, out and in
 *   cgroup/connect{4,6}   connects a cgroup program denied (and, with
 *                         sendmsg{4,6}, sends it denied)
 *   cgroup/getsockopt     the error a failed connect left, as the program
 *                         took it (SO_ERROR clears it from the socket)
 */
#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "leco.h"

char LICENSE[] SEC("license") = "GPL";

/* Set by user space before load. */
const volatile __u64 update_interval_ns = 1000000000ULL;
const volatile __u64 wakeup_interval_ns = 2000000ULL;
/* Benchmarks only: attach every program but have it return at once, to
 * measure what the hooks themselves cost (the floor under leco's work). */
const volatile bool hooks_only = false;

/* Read by user space through the .bss map. */
__u64 ringbuf_drops = 0;
__u64 flow_seq = 0;
__u64 last_wakeup_ns = 0;
/* Written by user space once on_udp_ingress is attached: from then on UDP
 * datagrams are counted as they arrive, not as they are read. Until then
 * (or on a kernel that refused the cgroup programs) reads count them. */
__u64 udp_rx_at_ingress = 0; /* a flag; 64 bits keep .bss a multiple of 8 */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	/* Sized from user space (Options::ring_bytes). Small is fast: a ring
	 * that fits in cache costs the writers far fewer misses. */
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 32768);
	__type(key, struct leco_flow_key);
	__type(value, struct leco_flow);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct leco_listen_key);
	__type(value, struct leco_owner);
} listeners SEC(".maps");

/* Per-thread scratch: the peer of the datagram this thread is sending or
 * receiving right now, as the system call's own hooks saw it (UDP's
 * sock_addr hooks, the datagram copy). Task storage is found through the task itself, so
 * it costs less than a hash lookup, and it dies with the thread. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct leco_peer);
} call_peers SEC(".maps");

/* The same for frames seen at the device queue, kept apart because that
 * hook also runs in the softirq a loopback send triggers on the sending
 * thread (an echo reply, a port-unreachable error, from the kernel's own
 * sockets) and must not overwrite what the send itself left. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct leco_peer);
} frame_peers SEC(".maps");

/*
 * A UDP socket as leco knows it, kept with the socket (it dies with it).
 * Datagrams arrive in softirq, where the current task is anyone's, so their
 * flows take the owner from here: the last process that sent or read on
 * the socket. Until one has, the flows they make wait, unannounced, in
 * wait[] for the first send or read to claim them (a server's first
 * datagram arrives before its first read returns; a socket may have been
 * made by another process, as systemd does for socket activation, or
 * before leco started). Flows past wait[] are announced without an owner,
 * and user space gives them the one the waiting flows get.
 */
#define UDP_WAITING 4
struct leco_udp_sock {
	struct leco_owner owner; /* tgid 0 until a send or read; written last */
	__u32 netns;
	__u32 waiting; /* flows made without an owner (may pass UDP_WAITING) */
	__u32 claimed; /* wait[] slots done with */
	__u32 _pad;
	struct {
		__u8 addr[16];
		__u16 port;
		__u16 _pad;
		__u32 ready; /* written last: the slot names a flow */
	} wait[UDP_WAITING];
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct leco_udp_sock);
} udp_socks SEC(".maps");

/*
 * Inbound attempts this machine's policy dropped before any socket was
 * reached (a port scan, a blocked service): one flow per remote address,
 * protocol and local port aimed at (LECO_BLOCKED_IN_COOKIE), counting
 * attempts, so that a flood makes a bounded number of records. Kept apart
 * from the flow table so that a flood from many addresses evicts only
 * these.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct leco_flow_key);
	__type(value, struct leco_flow);
} blocked_in SEC(".maps");

/* Where a DNS answer is put together before it is sent up: as long as the
 * message (some 100 bytes), not the 1,272 bytes a reserved record would
 * take of the ring. Softirq does not nest on a CPU, so one per CPU does. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct leco_dns);
} dns_scratch SEC(".maps");

/*
 * The DNS server a UDP socket last asked (a send or connect to port 53),
 * and who asked, kept with the socket. On loopback the answer can reach
 * the socket before the query's send returns, and so before the send's
 * own hook has made the flow: the answer's arrival makes it from here, an
 * outgoing flow of the asker (not an incoming one of nobody), and the
 * answer is read. Port 53 only: other sockets never get this storage.
 */
struct leco_dns_ask {
	struct leco_owner owner;
	__u8 addr[16]; /* the server, as the socket's flow keys name it */
	__u32 netns;
	__u32 ready; /* written last */
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct leco_dns_ask);
} dns_asks SEC(".maps");

/*
 * The error a TCP connect failed with, as the program took it with
 * getsockopt(SO_ERROR) (every event loop does): taking it clears it from
 * the socket, and an ICMP error that came while connect(2) held the socket
 * is only ever there (sk_err_soft) until then. Kept with the socket for
 * its close to report.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __s32);
} taken_errors SEC(".maps");

static __always_inline void owner_from_current(struct leco_owner *o)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 uid_gid = bpf_get_current_uid_gid();

	o->pid = (__u32)pid_tgid;
	o->tgid = pid_tgid >> 32;
	o->uid = (__u32)uid_gid;
	o->gid = uid_gid >> 32;
	o->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(o->comm, sizeof(o->comm));
}

/*
 * Socket fields are read directly, not with BPF_CORE_READ: a tp_btf
 * argument is a BTF pointer, so the verifier allows plain (still CO-RE
 * relocated) loads, which cost far less than a bpf_probe_read_kernel()
 * call each. These helpers take only such pointers.
 */
static __always_inline __u32 sock_netns(const struct sock *sk)
{
	return sk->__sk_common.skc_net.net->ns.inum;
}

static __always_inline void read_local_addr(__u8 dst[16], const struct sock *sk, __u16 family)
{
	if (family == AF_INET) {
		__be32 a = sk->__sk_common.skc_rcv_saddr;

		__builtin_memcpy(dst, &a, 4);
	} else {
		__builtin_memcpy(dst, &sk->__sk_common.skc_v6_rcv_saddr, 16);
	}
}

static __always_inline void read_remote_addr(__u8 dst[16], const struct sock *sk, __u16 family)
{
	if (family == AF_INET) {
		__be32 a = sk->__sk_common.skc_daddr;

		__builtin_memcpy(dst, &a, 4);
	} else {
		__builtin_memcpy(dst, &sk->__sk_common.skc_v6_daddr, 16);
	}
}

/* Addresses, ports and namespace of a socket as the kernel has them now. */
static __always_inline void flow_addrs_from_sock(struct leco_flow *f, const struct sock *sk)
{
	__u16 family = sk->__sk_common.skc_family;

	f->family = family;
	read_local_addr(f->laddr, sk, family);
	read_remote_addr(f->raddr, sk, family);
	f->lport = sk->__sk_common.skc_num;
	f->rport = bpf_ntohs(sk->__sk_common.skc_dport);
	f->netns = sock_netns(sk);
}

static __always_inline bool is_inet(const struct sock *sk)
{
	__u16 family = sk->__sk_common.skc_family;

	return family == AF_INET || family == AF_INET6;
}

/* What kind of flow a socket makes (enum leco_proto), 0 for the sockets
 * leco does not follow (unix, netlink, MPTCP's own, ...). */
static __always_inline __u8 flow_proto(const struct sock *sk)
{
	__u16 family = sk->__sk_common.skc_family;
	__u16 proto, type;

	if (family == AF_PACKET)
		return LECO_P_PACKET;
	if (family != AF_INET && family != AF_INET6)
		return 0;
	proto = sk->sk_protocol;
	type = sk->sk_type;
	if (type == SOCK_RAW)
		return proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6 ? proto : LECO_P_RAW;
	switch (proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_ICMP: /* ping sockets */
	case IPPROTO_ICMPV6:
	case IPPROTO_SCTP:
		return proto;
	}
	return 0;
}

/*
 * TCP's bytes are the kernel's own per-connection counters, not the sum of
 * what read(2) and write(2) returned: splice(2), sendfile(2), MSG_ZEROCOPY,
 * io_uring and kTLS all move bytes that no single socket call reports, and
 * the counters see every one. rx: payload received in order (the counter
 * adds one for the peer's FIN, taken off again); tx: payload sent once
 * (retransmissions taken off). Both are what crossed the network.
 */
static __always_inline void tcp_counts(struct sock *sk, struct leco_flow *f)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	__u64 rx;

	if (!tp)
		return;
	rx = tp->bytes_received;
	if ((sk->__sk_common.skc_flags & (1UL << SOCK_DONE)) && rx > 0)
		rx -= 1;
	f->rx_bytes = rx;
	f->tx_bytes = tp->bytes_sent - tp->bytes_retrans;
}

/*
 * Waking the reader costs an irq_work (a self-IPI: microseconds in a VM),
 * more than everything else a hook does. So the kernel wakes it at most once
 * per wakeup_interval_ns; the reader, once woken, drains again after that
 * interval until a drain comes back empty. Latency stays under the interval
 * and the wake-ups per second under its inverse, at any event rate.
 */
static __always_inline __u64 wakeup_flag(__u64 now)
{
	if (now - last_wakeup_ns < wakeup_interval_ns)
		return BPF_RB_NO_WAKEUP;
	last_wakeup_ns = now;
	return 0; /* the default: wake if the reader has caught up */
}

static __always_inline void emit(__u8 kind, __u64 cookie, const struct leco_flow *f, __u64 now)
{
	struct leco_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		__sync_fetch_and_add(&ringbuf_drops, 1);
		return;
	}
	e->cookie = cookie;
	e->ts_ns = now;
	if (f)
		__builtin_memcpy(&e->flow, f, sizeof(e->flow));
	else
		__builtin_memset(&e->flow, 0, sizeof(e->flow));
	e->kind = kind;
	__builtin_memset(e->_pad, 0, sizeof(e->_pad));
	bpf_ringbuf_submit(e, wakeup_flag(now));
}

static __always_inline __u64 next_flow_id(void)
{
	return __sync_fetch_and_add(&flow_seq, 1) + 1;
}

/* A flow first seen now on socket `sk`: its id, addresses, times and kind.
 * The caller names its owner (current, or the listener's). */
static __always_inline void flow_begin(struct leco_flow *f, const struct sock *sk, __u8 proto,
				       __u64 now)
{
	f->id = next_flow_id();
	flow_addrs_from_sock(f, sk);
	f->first_ns = now;
	f->last_ns = now;
	f->proto = proto;
}

/* ---- TCP life cycle ---------------------------------------------------- */

static __always_inline void tcp_listen(const struct sock *sk, int newstate)
{
	struct leco_listen_key lk = {
		.netns = sock_netns(sk),
		.port = sk->__sk_common.skc_num,
	};

	if (newstate == TCP_LISTEN) {
		/* listen(2): process context, current is the owner. */
		struct leco_owner o = {};

		owner_from_current(&o);
		bpf_map_update_elem(&listeners, &lk, &o, BPF_ANY);
	} else {
		bpf_map_delete_elem(&listeners, &lk);
	}
}

static __always_inline void tcp_connect(struct sock *sk, __u64 cookie, __u64 now)
{
	/* connect(2): process context, so current is the connecting process.
	 * The local port is not bound yet; it is read again on establish. */
	struct leco_flow_key key = { .cookie = cookie };
	struct leco_flow f = {};

	flow_begin(&f, sk, LECO_P_TCP, now);
	owner_from_current(&f.owner);
	f.direction = LECO_DIR_OUT;
	f.state = TCP_SYN_SENT;
	bpf_map_update_elem(&flows, &key, &f, BPF_ANY);
}

static __always_inline void tcp_passive_established(struct sock *sk, __u64 cookie, __u64 now)
{
	/* The handshake completes in softirq, where current is whatever task
	 * happened to run: never trust it here. Borrow the listener's owner
	 * until accept(2) or the first read/write names the real one. */
	struct leco_flow_key key = { .cookie = cookie };
	struct leco_flow f = {};
	struct leco_listen_key lk = {
		.netns = sock_netns(sk),
		.port = sk->__sk_common.skc_num,
	};
	struct leco_owner *lo = bpf_map_lookup_elem(&listeners, &lk);

	if (lo)
		__builtin_memcpy(&f.owner, lo, sizeof(f.owner));
	else
		f.owner.uid = sk->sk_uid.val;
	flow_begin(&f, sk, LECO_P_TCP, now);
	f.direction = LECO_DIR_IN;
	f.state = TCP_ESTABLISHED;
	f.flags = LECO_F_PROVISIONAL | LECO_F_ESTABLISHED;
	bpf_map_update_elem(&flows, &key, &f, BPF_ANY);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_inet_sock_set_state, struct sock *sk, int oldstate, int newstate)
{
	if (hooks_only)
		return 0;
	if (sk->sk_protocol != IPPROTO_TCP || !is_inet(sk))
		return 0;

	/* Only these transitions matter; the rest (FIN_WAIT*, CLOSE_WAIT, the
	 * clone of a child from its listener, ...) return before any lookup. */
	switch (newstate) {
	case TCP_LISTEN:
		tcp_listen(sk, newstate);
		return 0;
	case TCP_SYN_SENT:
	case TCP_ESTABLISHED:
		break;
	case TCP_CLOSE:
		if (oldstate == TCP_LISTEN) {
			tcp_listen(sk, newstate);
			return 0;
		}
		break;
	default:
		return 0;
	}

	__u64 cookie = bpf_get_socket_cookie(sk);
	__u64 now = bpf_ktime_get_boot_ns();
	struct leco_flow_key key = { .cookie = cookie };
	struct leco_flow *f;

	if (newstate == TCP_SYN_SENT) {
		tcp_connect(sk, cookie, now);
		return 0;
	}
	if (newstate == TCP_ESTABLISHED && oldstate == TCP_SYN_RECV) {
		tcp_passive_established(sk, cookie, now);
		return 0;
	}

	f = bpf_map_lookup_elem(&flows, &key);
	if (!f) {
		/* A full table evicted it (or it predates leco, and nobody knows
		 * it): whoever still counts it live must hear that it ended. Only
		 * the close asks; a missed establish is picked up by the first
		 * read or write. */
		if (newstate == TCP_CLOSE && oldstate != TCP_CLOSE)
			emit(LECO_RELEASED, cookie, NULL, now);
		return 0;
	}

	f->state = newstate;
	f->last_ns = now;
	if (newstate == TCP_ESTABLISHED) {
		/* Outgoing connect completed: now the local port is known. A
		 * connect blocked before (a rule since removed) went through. */
		f->lport = sk->__sk_common.skc_num;
		read_local_addr(f->laddr, sk, f->family);
		f->flags &= ~LECO_F_BLOCKED;
		f->flags |= LECO_F_ESTABLISHED | LECO_F_ANNOUNCED;
		f->last_emit_ns = now;
		emit(LECO_NEW, cookie, f, now);
		return 0;
	}
	if (newstate == TCP_CLOSE) {
		bool opened = f->flags & LECO_F_ESTABLISHED;
		int err = sk->sk_err;

		/* A connect that kept retrying keeps what stopped it as a soft
		 * error (an ICMP unreachable that came while connect(2) held the
		 * socket); connect(2) may have taken the hard one already. */
		if (!err && !opened)
			err = sk->sk_err_soft;
		if (!err && !opened) {
			__s32 *taken = bpf_sk_storage_get(&taken_errors, sk, NULL, 0);

			if (taken)
				err = *taken;
		}
		if (err)
			f->error = err;
		tcp_counts(sk, f);
		/* A connect that never opened failed, error or not: no reply
		 * came before the program gave up. */
		emit(f->error || !opened ? LECO_FAILED : LECO_CLOSED, cookie, f, now);
		bpf_map_delete_elem(&flows, &key);
	}
	return 0;
}

/* ---- the accepting process ------------------------------------------------ */

/*
 * accept(2) asks for the peer's address (almost every server does: std,
 * Go, Python, nginx...) through inet_getname(), which runs the cgroup
 * getpeername hook in the accepting process, on the new socket. That names
 * the acceptor at the moment of accept, for the price of a hook that only
 * fires on accept and getpeername(2). (A raw_syscalls/sys_exit hook would
 * do too, but it puts every system call of the machine on the slow path.)
 * Accepts that ask for no address are named by their first read or write.
 */
static __always_inline int claim_accepted(struct bpf_sock_addr *ctx)
{
	struct leco_flow_key key = { .cookie = bpf_get_socket_cookie(ctx) };
	struct leco_flow *f = bpf_map_lookup_elem(&flows, &key);

	if (!f || !(f->flags & LECO_F_PROVISIONAL))
		return 1;
	owner_from_current(&f->owner);
	f->flags &= ~LECO_F_PROVISIONAL;
	if (!(f->flags & LECO_F_ANNOUNCED)) {
		__u64 now = bpf_ktime_get_boot_ns();

		f->flags |= LECO_F_ANNOUNCED;
		f->last_emit_ns = now;
		emit(LECO_NEW, key.cookie, f, now);
	}
	return 1;
}

SEC("cgroup/getpeername4")
int on_getpeername4(struct bpf_sock_addr *ctx)
{
	if (hooks_only)
		return 1;
	return claim_accepted(ctx);
}

SEC("cgroup/getpeername6")
int on_getpeername6(struct bpf_sock_addr *ctx)
{
	if (hooks_only)
		return 1;
	return claim_accepted(ctx);
}

/* ---- bytes ------------------------------------------------------------- */

/* The peer a hook earlier in this system call left for socket `sk` (cookie
 * `cookie`), if any (used up by taking it). */
static __always_inline struct leco_peer *take_peer(void *map, const struct sock *sk, __u64 cookie)
{
	struct leco_peer *p = bpf_task_storage_get(map, bpf_get_current_task_btf(), NULL, 0);

	if (!p || !p->family || (p->cookie != cookie && p->sk != (__u64)sk))
		return NULL;
	/* Used up: it names no socket any more (its fields stay readable). */
	p->cookie = 0;
	p->sk = 0;
	return p;
}

/* A TCP socket read or written: the counters, and the owner where it is
 * not known yet. */
static __always_inline int account_tcp(struct sock *sk)
{
	__u64 cookie = bpf_get_socket_cookie(sk);
	__u64 now = bpf_ktime_get_boot_ns();
	struct leco_flow_key key = { .cookie = cookie };
	struct leco_flow *f = bpf_map_lookup_elem(&flows, &key);

	if (!f) {
		/* First sight: a connection older than leco (or one a full
		 * table evicted). This is process context and current owns it.
		 * But a write that a reset answered at once (a stale
		 * keep-alive, on loopback inside the very write) is counted
		 * after its flow ended: a flow made now would be a closed
		 * socket's, and nothing would ever end it. */
		if (sk->__sk_common.skc_state == TCP_CLOSE)
			return 0;
		struct leco_flow nf = {};

		flow_begin(&nf, sk, LECO_P_TCP, now);
		owner_from_current(&nf.owner);
		nf.last_emit_ns = now;
		nf.flags = LECO_F_ANNOUNCED | LECO_F_ESTABLISHED;
		nf.state = sk->__sk_common.skc_state;
		tcp_counts(sk, &nf);
		if (bpf_map_update_elem(&flows, &key, &nf, BPF_NOEXIST) == 0) {
			emit(LECO_NEW, cookie, &nf, now);
			return 0;
		}
		/* Another CPU created it first: count on that one. */
		f = bpf_map_lookup_elem(&flows, &key);
		if (!f)
			return 0;
	}
	tcp_counts(sk, f);
	f->last_ns = now;
	if (f->flags & LECO_F_PROVISIONAL) {
		/* Accepted without asking for the peer's address (or through
		 * io_uring...): the first process to use it is its owner. */
		owner_from_current(&f->owner);
		f->flags &= ~LECO_F_PROVISIONAL;
	}
	if (!(f->flags & LECO_F_ANNOUNCED)) {
		f->flags |= LECO_F_ANNOUNCED;
		f->last_emit_ns = now;
		emit(LECO_NEW, cookie, f, now);
	} else if (now - f->last_emit_ns >= update_interval_ns) {
		f->last_emit_ns = now;
		emit(LECO_UPDATE, cookie, f, now);
	}
	return 0;
}

/* A datagram (UDP, ICMP, raw IP, a packet socket's frame) sent or received:
 * one flow per socket and peer. */
static __always_inline int account_datagram(struct sock *sk, __u8 proto, int bytes, bool tx)
{
	__u64 cookie = bpf_get_socket_cookie(sk);
	__u64 now = bpf_ktime_get_boot_ns();
	struct leco_flow_key key = { .cookie = cookie };
	struct leco_peer *peer;
	__u8 peer_family = 0, ip_proto = 0;

	/* An unconnected socket's peer was left by a hook earlier in this
	 * very syscall: the sock_addr hooks for UDP, the device queue for
	 * what else is sent, the datagram copy for what else is read. */
	if (proto == LECO_P_UDP || !tx)
		peer = take_peer(&call_peers, sk, cookie);
	else
		peer = take_peer(&frame_peers, sk, cookie);
	if (peer) {
		__builtin_memcpy(key.raddr, peer->addr, sizeof(key.raddr));
		key.rport = peer->port;
		peer_family = peer->family;
		ip_proto = peer->ip_proto;
	} else if (proto != LECO_P_PACKET) {
		read_remote_addr(key.raddr, sk, sk->__sk_common.skc_family);
		key.rport = bpf_ntohs(sk->__sk_common.skc_dport);
	}

	struct leco_flow *f = bpf_map_lookup_elem(&flows, &key);

	if (!f) {
		/* First sight, in process context: current owns it. */
		struct leco_flow nf = {};

		flow_begin(&nf, sk, proto, now);
		owner_from_current(&nf.owner);
		nf.last_emit_ns = now;
		nf.flags = LECO_F_ANNOUNCED;
		if (proto == LECO_P_PACKET) {
			/* No local address or port; the interface instead. */
			if (peer)
				__builtin_memcpy(nf.laddr, peer->ifname, sizeof(nf.laddr));
			else
				__builtin_memset(nf.laddr, 0, sizeof(nf.laddr));
			nf.lport = 0;
			nf.family = peer_family == AF_PACKET ? 0 : peer_family;
		} else if (peer_family) {
			/* The peer's family, as the sock_addr hook saw it
			 * (IPv4-mapped on a dual-stack socket: AF_INET6). */
			nf.family = peer_family;
		}
		__builtin_memcpy(nf.raddr, key.raddr, sizeof(nf.raddr));
		nf.rport = key.rport;
		if (proto == LECO_P_RAW)
			nf.ip_proto = sk->sk_protocol;
		else if (proto == LECO_P_PACKET)
			nf.ip_proto = ip_proto;
		nf.direction = tx ? LECO_DIR_OUT : LECO_DIR_IN;
		if (tx)
			nf.tx_bytes = bytes;
		else
			nf.rx_bytes = bytes;
		if (bpf_map_update_elem(&flows, &key, &nf, BPF_NOEXIST) == 0) {
			emit(LECO_NEW, cookie, &nf, now);
			return 0;
		}
		f = bpf_map_lookup_elem(&flows, &key);
		if (!f)
			return 0;
	}

	if (tx)
		__sync_fetch_and_add(&f->tx_bytes, bytes);
	else
		__sync_fetch_and_add(&f->rx_bytes, bytes);
	f->last_ns = now;
	if (f->flags & LECO_F_PROVISIONAL) {
		/* A UDP flow its datagrams made before the socket's owner was
		 * known: this process context names it. */
		owner_from_current(&f->owner);
		f->netns = sock_netns(sk);
		f->flags &= ~LECO_F_PROVISIONAL;
		f->last_emit_ns = now;
		emit(f->flags & LECO_F_ANNOUNCED ? LECO_UPDATE : LECO_NEW, cookie, f, now);
		f->flags |= LECO_F_ANNOUNCED;
		return 0;
	}
	if (now - f->last_emit_ns >= update_interval_ns) {
		f->last_emit_ns = now;
		emit(LECO_UPDATE, cookie, f, now);
	}
	return 0;
}

/* ---- UDP sockets' owners ------------------------------------------------ */

/* Announces the flows waiting in `s`'s wait[] (of socket `cookie`): with
 * `owner` as theirs, or (the socket is going away unused) with none. */
static __always_inline void announce_waiting(struct leco_udp_sock *s, __u64 cookie,
					     const struct leco_owner *owner, __u64 now)
{
	__u32 n = s->waiting;

	if (n > UDP_WAITING)
		n = UDP_WAITING;
	for (__u32 i = 0; i < UDP_WAITING; i++) {
		struct leco_flow_key key = { .cookie = cookie };
		struct leco_flow *f;

		if (i < s->claimed)
			continue;
		/* A slot taken but not written yet is for the next call. */
		if (i >= n || !s->wait[i].ready)
			break;
		s->claimed = i + 1;
		__builtin_memcpy(key.raddr, s->wait[i].addr, sizeof(key.raddr));
		key.rport = s->wait[i].port;
		f = bpf_map_lookup_elem(&flows, &key);
		if (!f || (f->flags & LECO_F_ANNOUNCED))
			continue;
		if (owner) {
			__builtin_memcpy(&f->owner, owner, sizeof(f->owner));
			f->netns = s->netns;
			f->flags &= ~LECO_F_PROVISIONAL;
		}
		f->flags |= LECO_F_ANNOUNCED;
		f->last_emit_ns = now;
		emit(LECO_NEW, cookie, f, now);
	}
}

/* UDP socket `sk` is used in a system call: current owns it from now on,
 * and takes the flows its datagrams made while no owner was known. A read
 * records the owner for datagrams of peers still to come (`create`); a send
 * only refreshes one already there: its peer's replies find the flow the
 * send made, and a socket nobody reads has no other use for an owner, so
 * most sending sockets never get this storage at all. */
static __always_inline void udp_claim(struct sock *sk, bool create)
{
	struct leco_udp_sock *s = bpf_sk_storage_get(&udp_socks, sk, NULL,
						     create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	if (!s)
		return;
	if (s->owner.tgid != tgid) {
		struct leco_owner o = {};

		owner_from_current(&o);
		s->netns = sock_netns(sk);
		s->owner.pid = o.pid;
		s->owner.uid = o.uid;
		s->owner.gid = o.gid;
		s->owner.cgroup_id = o.cgroup_id;
		__builtin_memcpy(s->owner.comm, o.comm, sizeof(o.comm));
		/* Last, and a full barrier: whoever sees the tgid sees the rest.
		 * (A change of owner may still be read half done by an arrival on
		 * another CPU: sockets shared by two processes at once, rare.) */
		__sync_lock_test_and_set(&s->owner.tgid, o.tgid);
	}
	if (s->claimed < s->waiting && s->claimed < UDP_WAITING)
		announce_waiting(s, bpf_get_socket_cookie(sk), &s->owner, bpf_ktime_get_boot_ns());
}

/* ---- attempts this machine's policy stopped --------------------------- */

/* Flow `f` (of socket `cookie`, or an inbound aggregate) was stopped once
 * more: counted, and told at once the first time, then at most once per
 * update interval. */
static __always_inline void mark_blocked(struct leco_flow *f, __u64 cookie, __u8 reason,
					 __u64 now)
{
	__sync_fetch_and_add(&f->attempts, 1);
	f->reason = reason;
	f->last_ns = now;
	if (!(f->flags & LECO_F_BLOCKED))
		f->flags |= LECO_F_BLOCKED | LECO_F_ANNOUNCED;
	else if (now - f->last_emit_ns < update_interval_ns)
		return;
	f->last_emit_ns = now;
	emit(LECO_BLOCKED, cookie, f, now);
}

/* A send on datagram socket `sk` failed with EPERM, in process context: if
 * a hook of this call left why (kfree_skb: netfilter, a cgroup egress
 * program; cgroup/sendmsg: a cgroup program denied it), its flow to that
 * peer is blocked, owned by current. */
static __always_inline void account_blocked_send(struct sock *sk)
{
	__u64 cookie, now;
	struct leco_flow_key key = {};
	struct leco_peer *peer;
	struct leco_flow *f;
	__u8 proto, reason;

	proto = flow_proto(sk);
	if (!proto || proto == LECO_P_TCP || proto == LECO_P_PACKET)
		return;
	cookie = bpf_get_socket_cookie(sk);
	peer = take_peer(&call_peers, sk, cookie);
	if (!peer || !peer->blocked)
		return;
	reason = peer->blocked;
	peer->blocked = 0;
	key.cookie = cookie;
	__builtin_memcpy(key.raddr, peer->addr, sizeof(key.raddr));
	key.rport = peer->port;
	now = bpf_ktime_get_boot_ns();
	f = bpf_map_lookup_elem(&flows, &key);
	if (!f) {
		struct leco_flow nf = {};

		flow_begin(&nf, sk, proto, now);
		owner_from_current(&nf.owner);
		if (peer->family)
			nf.family = peer->family;
		__builtin_memcpy(nf.raddr, key.raddr, sizeof(nf.raddr));
		nf.rport = key.rport;
		if (proto == LECO_P_RAW)
			nf.ip_proto = sk->sk_protocol;
		nf.direction = LECO_DIR_OUT;
		nf.attempts = 1;
		nf.reason = reason;
		nf.flags = LECO_F_ANNOUNCED | LECO_F_BLOCKED;
		nf.last_emit_ns = now;
		if (bpf_map_update_elem(&flows, &key, &nf, BPF_NOEXIST) == 0) {
			emit(LECO_BLOCKED, cookie, &nf, now);
			return;
		}
		f = bpf_map_lookup_elem(&flows, &key);
		if (!f)
			return;
	}
	mark_blocked(f, cookie, reason, now);
}

static __always_inline int account(struct sock *sk, int bytes, bool tx)
{
	__u8 proto;

	if (bytes <= 0) {
		/* EPERM from a send: policy stopped it, if a hook of this call
		 * (kfree_skb, sendmsg) said why. */
		if (bytes == -EPERM && tx)
			account_blocked_send(sk);
		return 0;
	}
	proto = flow_proto(sk);
	if (proto == LECO_P_TCP)
		return account_tcp(sk);
	if (proto == LECO_P_UDP && udp_rx_at_ingress) {
		udp_claim(sk, !tx);
		if (!tx)
			return 0; /* counted as it arrived (on_udp_ingress) */
	}
	if (proto)
		return account_datagram(sk, proto, bytes, tx);
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(on_sock_send_length, struct sock *sk, int ret, int flags)
{
	if (hooks_only)
		return 0;
	return account(sk, ret, true);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(on_sock_recv_length, struct sock *sk, int ret, int flags)
{
	if (hooks_only)
		return 0;
	if (flags & MSG_PEEK)
		return 0; /* the same bytes will be read again */
	/* TCP reads are seen by tcp_rcv_space_adjust, splice(2) included. */
	if (sk->sk_protocol == IPPROTO_TCP && sk->sk_type == SOCK_STREAM)
		return 0;
	return account(sk, ret, false);
}

/*
 * Every TCP read that moved data runs this (recvmsg, splice, io_uring,
 * zero-copy receive), in the reader's process context, once per call: the
 * one place that sees a splice(2) download, which no socket call reports.
 */
SEC("tp_btf/tcp_rcv_space_adjust")
int BPF_PROG(on_tcp_rcv_space_adjust, struct sock *sk)
{
	if (hooks_only)
		return 0;
	if (!is_inet(sk))
		return 0;
	return account_tcp(sk);
}

/* ---- peers of datagrams the sockets' own calls do not name ---------------- */

/* Far longer than a send takes from the device queue to its byte count. */
#define FRAME_PEER_TTL_NS 10000000ULL

/* The addresses of an IPv4 or IPv6 packet at `ip`: the source (`from`) or
 * the destination, and the transport ports if UDP or TCP follows at once. */
static __always_inline bool peer_from_ip(struct leco_peer *p, const unsigned char *ip, bool from)
{
	__u8 h[48];

	if (bpf_probe_read_kernel(h, sizeof(h), ip))
		return false;
	__builtin_memset(p->addr, 0, sizeof(p->addr));
	p->port = 0;
	if ((h[0] >> 4) == 4) {
		__u32 ihl = (h[0] & 0xf) * 4;

		p->family = AF_INET;
		p->ip_proto = h[9];
		__builtin_memcpy(p->addr, from ? &h[12] : &h[16], 4);
		if (ihl == 20 && (h[9] == IPPROTO_UDP || h[9] == IPPROTO_TCP))
			p->port = ((__u16)h[from ? 20 : 22] << 8) | h[from ? 21 : 23];
		return true;
	}
	if ((h[0] >> 4) == 6) {
		p->family = AF_INET6;
		p->ip_proto = h[6];
		__builtin_memcpy(p->addr, from ? &h[8] : &h[24], 16);
		/* 48 bytes hold the ports only of an IPv6 header without
		 * extension headers: enough for what is named here. */
		if (h[6] == IPPROTO_UDP || h[6] == IPPROTO_TCP)
			p->port = ((__u16)h[from ? 40 : 42] << 8) | h[from ? 41 : 43];
		return true;
	}
	return false;
}

/*
 * ping, raw and packet sockets read their datagrams through this copy (UDP
 * does not: it copies linear datagrams itself). TCP copies run it too,
 * once per buffer a read takes: they return at the first test.
 */
SEC("tp_btf/skb_copy_datagram_iovec")
int BPF_PROG(on_skb_copy_datagram_iovec, const struct sk_buff *skb, int len)
{
	struct sock *sk;
	struct leco_peer *p;
	__u8 proto;

	if (hooks_only)
		return 0;
	sk = skb->sk;
	if (!sk || sk->sk_protocol == IPPROTO_TCP)
		return 0;
	proto = flow_proto(sk);
	if (!proto || proto == LECO_P_UDP || proto == LECO_P_TCP || proto == LECO_P_SCTP)
		return 0;
	p = bpf_task_storage_get(&call_peers, bpf_get_current_task_btf(), NULL,
				 BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!p)
		return 0;
	if (!peer_from_ip(p, skb->head + skb->network_header, true)) {
		p->family = 0;
		return 0;
	}
	/* A socket read from an skb has no cookie to ask for here: the
	 * byte count that follows in this call matches it by address. */
	p->blocked = 0;
	p->cookie = 0;
	p->sk = (__u64)sk;
	return 0;
}

/*
 * ping, raw and packet sockets name their destination in each sendto(2),
 * which no hook of theirs shows: the packet does, when the device queue
 * takes it, still in the sender's system call. Every packet of the machine
 * passes here; those of TCP and UDP sockets, and forwarded ones (no
 * socket), return at the first tests.
 */
SEC("tp_btf/net_dev_queue")
int BPF_PROG(on_net_dev_queue, struct sk_buff *skb)
{
	struct sock *sk;
	struct leco_peer *p;
	__u8 proto;
	__u64 now;

	if (hooks_only)
		return 0;
	sk = skb->sk;
	if (!sk)
		return 0;
	proto = sk->sk_protocol;
	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP)
		return 0;
	proto = flow_proto(sk);
	if (!proto || proto == LECO_P_SCTP)
		return 0;
	p = bpf_task_storage_get(&frame_peers, bpf_get_current_task_btf(), NULL,
				 BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!p)
		return 0;
	now = bpf_ktime_get_boot_ns();
	/* Only the first frame of a send names its peer: a reply the kernel
	 * sends at once from its own socket in this thread's softirq must
	 * not replace it before the send's byte count takes it. One a failed
	 * send left long ago may be. */
	if (p->sk && p->sk != (__u64)sk && now - p->at_ns < FRAME_PEER_TTL_NS)
		return 0;
	if (proto == LECO_P_PACKET) {
		__u8 eth[ETH_HLEN];
		__u16 type;

		if (bpf_probe_read_kernel(eth, sizeof(eth), skb->data))
			return 0;
		type = ((__u16)eth[12] << 8) | eth[13];
		if ((type != ETH_P_IP && type != ETH_P_IPV6) ||
		    !peer_from_ip(p, skb->data + ETH_HLEN, false)) {
			__builtin_memset(p->addr, 0, sizeof(p->addr));
			p->port = 0;
			p->ip_proto = 0;
			/* A frame that is not IP still has its device. */
			p->family = AF_PACKET;
		}
		__builtin_memcpy(p->ifname, skb->dev->name, sizeof(p->ifname));
	} else if (!peer_from_ip(p, skb->head + skb->network_header, false)) {
		p->family = 0;
		p->sk = 0;
		return 0;
	}
	p->blocked = 0;
	p->cookie = 0;
	p->sk = (__u64)sk;
	p->at_ns = now;
	return 0;
}

/* ---- errors ------------------------------------------------------------ */

SEC("tp_btf/inet_sk_error_report")
int BPF_PROG(on_inet_sk_error_report, struct sock *sk)
{
	if (hooks_only)
		return 0;
	if (!is_inet(sk))
		return 0;

	__u16 proto = sk->sk_protocol;
	int err = sk->sk_err;
	struct leco_flow_key key = { .cookie = bpf_get_socket_cookie(sk) };
	struct leco_flow *f;

	if (!err || (proto != IPPROTO_TCP && proto != IPPROTO_UDP))
		return 0;
	if (proto == IPPROTO_UDP) {
		/* Errors reach connected UDP sockets only: the peer is the
		 * socket's own. */
		read_remote_addr(key.raddr, sk, sk->__sk_common.skc_family);
		key.rport = bpf_ntohs(sk->__sk_common.skc_dport);
	}
	f = bpf_map_lookup_elem(&flows, &key);
	if (!f)
		return 0;
	if (proto == IPPROTO_UDP && f->error != err) {
		__u64 now = bpf_ktime_get_boot_ns();

		f->error = err;
		f->last_emit_ns = now;
		emit(LECO_FAILED, key.cookie, f, now);
		return 0;
	}
	/* TCP: reported with the close that follows. */
	f->error = err;
	return 0;
}

/* ---- unconnected UDP peers sent to --------------------------------------- */

static __always_inline struct leco_peer *peer_slot(void)
{
	return bpf_task_storage_get(&call_peers, bpf_get_current_task_btf(), NULL,
				    BPF_LOCAL_STORAGE_GET_F_CREATE);
}

/* What the cgroup programs that ran before this one (in the sender's own
 * cgroups: ours, at the root, runs last) decided: a denial is a blocked
 * attempt. */
static __always_inline __u8 cgroup_verdict(void)
{
	return bpf_get_retval() < 0 ? LECO_R_CGROUP : LECO_R_NONE;
}

/* A UDP send or connect of `ctx` to port 53: the socket asks that server
 * (see dns_asks). Every other call returns at the compares. */
static __always_inline void note_dns_ask(struct bpf_sock_addr *ctx, bool v6)
{
	struct task_struct *t;
	struct leco_dns_ask *a;
	__u32 ip[4] = {};

	if ((__u16)ctx->user_port != bpf_htons(53) || ctx->protocol != IPPROTO_UDP)
		return;
	a = bpf_sk_storage_get(&dns_asks, ctx->sk, NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!a)
		return;
	if (v6) {
		ip[0] = ctx->user_ip6[0];
		ip[1] = ctx->user_ip6[1];
		ip[2] = ctx->user_ip6[2];
		ip[3] = ctx->user_ip6[3];
	} else if (ctx->family == AF_INET6) {
		/* An IPv6 socket sending to an IPv4 address: its flows name
		 * the peer IPv4-mapped. */
		ip[2] = bpf_htonl(0xffff);
		ip[3] = ctx->user_ip4;
	} else {
		ip[0] = ctx->user_ip4;
	}
	__sync_lock_test_and_set(&a->ready, 0);
	owner_from_current(&a->owner);
	__builtin_memcpy(a->addr, ip, sizeof(a->addr));
	t = bpf_get_current_task_btf();
	a->netns = t->nsproxy->net_ns->ns.inum;
	__sync_lock_test_and_set(&a->ready, 1);
}

static __always_inline int remember_peer4(struct bpf_sock_addr *ctx)
{
	struct leco_peer *p = peer_slot();
	__u32 ip = ctx->user_ip4;

	if (p) {
		p->cookie = bpf_get_socket_cookie(ctx);
		p->sk = 0;
		p->port = bpf_ntohs((__u16)ctx->user_port);
		p->blocked = cgroup_verdict();
		__builtin_memset(p->addr, 0, sizeof(p->addr));
		if (ctx->family == AF_INET6) {
			/* A dual-stack socket sending to an IPv4 address
			 * (udpv6_sendmsg hands it to udp_sendmsg): its flows,
			 * and the replies it receives, name the peer
			 * IPv4-mapped. */
			p->family = AF_INET6;
			p->addr[10] = 0xff;
			p->addr[11] = 0xff;
			__builtin_memcpy(&p->addr[12], &ip, 4);
		} else {
			p->family = AF_INET;
			__builtin_memcpy(p->addr, &ip, 4);
		}
	}
	return 1; /* observe only: never block */
}

static __always_inline int remember_peer6(struct bpf_sock_addr *ctx)
{
	struct leco_peer *p = peer_slot();
	__u32 ip[4];

	if (!p)
		return 1;
	/* The verifier wants one 4-byte load per word of the context. */
	ip[0] = ctx->user_ip6[0];
	ip[1] = ctx->user_ip6[1];
	ip[2] = ctx->user_ip6[2];
	ip[3] = ctx->user_ip6[3];
	p->cookie = bpf_get_socket_cookie(ctx);
	p->sk = 0;
	p->port = bpf_ntohs((__u16)ctx->user_port);
	p->family = AF_INET6;
	p->blocked = cgroup_verdict();
	__builtin_memcpy(p->addr, ip, 16);
	return 1;
}

SEC("cgroup/sendmsg4")
int on_sendmsg4(struct bpf_sock_addr *ctx)
{
	if (hooks_only)
		return 1;
	note_dns_ask(ctx, false);
	return remember_peer4(ctx);
}

SEC("cgroup/sendmsg6")
int on_sendmsg6(struct bpf_sock_addr *ctx)
{
	if (hooks_only)
		return 1;
	note_dns_ask(ctx, true);
	return remember_peer6(ctx);
}

/* ---- UDP datagrams received ---------------------------------------------- */

/* IPv6 extension headers a UDP header may follow (a fragment header is
 * gone by the time a datagram reaches its socket). */
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_DEST 60

/* The flow key of a UDP datagram at `skb` (its data at the IP header) for
 * socket `cookie` of family `family`, and the offset of its UDP header;
 * false if it is not one. The headers are read in place: the IP layer has
 * pulled them into the linear part by the time a datagram reaches its
 * socket. An IPv4 sender of an IPv6 socket is named IPv4-mapped, as that
 * socket's own sends name it. */
static __always_inline bool udp_sender(struct __sk_buff *skb, __u32 family,
				       struct leco_flow_key *key, __u32 *udp_off)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	__u8 *h = data;
	__u8 *port;
	__u32 off;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		if (data + 20 > end)
			return false;
		off = (h[0] & 0xf) * 4;
		if (family == AF_INET6) {
			key->raddr[10] = 0xff;
			key->raddr[11] = 0xff;
			__builtin_memcpy(&key->raddr[12], &h[12], 4);
		} else {
			__builtin_memcpy(key->raddr, &h[12], 4);
		}
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		__u8 next;

		if (data + 40 > end)
			return false;
		__builtin_memcpy(key->raddr, &h[8], 16);
		off = 40;
		next = h[6];
		for (int i = 0; i < 3 && next != IPPROTO_UDP; i++) {
			__u8 *ext;

			if (next != NEXTHDR_HOP && next != NEXTHDR_ROUTING && next != NEXTHDR_DEST)
				return false;
			if (off > 512)
				return false;
			ext = data + off;
			if ((void *)(ext + 2) > end)
				return false;
			next = ext[0];
			off += ((__u32)ext[1] + 1) * 8;
		}
		if (next != IPPROTO_UDP)
			return false;
	} else {
		return false;
	}
	if (off > 1024)
		return false;
	port = data + off;
	if ((void *)(port + 2) > end)
		return false;
	key->rport = ((__u16)port[0] << 8) | port[1];
	*udp_off = off;
	return true;
}

/* What socket `sk` asked the DNS server `key` names, if it did. */
static __always_inline struct leco_dns_ask *asked(struct bpf_sock *sk,
						  const struct leco_flow_key *key)
{
	struct leco_dns_ask *a = bpf_sk_storage_get(&dns_asks, sk, NULL, 0);
	__u64 want[2], have[2];

	if (!a || !a->ready)
		return NULL;
	__builtin_memcpy(want, key->raddr, sizeof(want));
	__builtin_memcpy(have, a->addr, sizeof(have));
	return want[0] == have[0] && want[1] == have[1] ? a : NULL;
}

/* A datagram of `len` payload bytes from `key`'s peer reached socket `sk`. */
static __always_inline void udp_arrival(struct __sk_buff *skb, struct bpf_sock *sk,
					struct leco_flow_key *key, __u64 len)
{
	__u64 now = bpf_ktime_get_boot_ns();
	struct leco_flow *f = bpf_map_lookup_elem(&flows, key);
	struct leco_dns_ask *a;
	struct leco_udp_sock *s;
	__u32 owner;

	if (f && !(f->flags & LECO_F_PROVISIONAL)) {
		/* The common case: a known flow, owned. */
		__sync_fetch_and_add(&f->rx_bytes, len);
		f->last_ns = now;
		if (now - f->last_emit_ns >= update_interval_ns) {
			f->last_emit_ns = now;
			emit(LECO_UPDATE, key->cookie, f, now);
		}
		return;
	}
	s = bpf_sk_storage_get(&udp_socks, sk, NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);
	owner = s ? s->owner.tgid : 0;
	if (!f) {
		struct leco_flow nf = {};
		__u32 slot = UDP_WAITING;

		nf.id = next_flow_id();
		nf.first_ns = now;
		nf.last_ns = now;
		nf.proto = LECO_P_UDP;
		nf.family = sk->family;
		if (sk->family == AF_INET) {
			__u32 a = sk->src_ip4;

			__builtin_memcpy(nf.laddr, &a, 4);
		} else {
			__u32 a[4];

			a[0] = sk->src_ip6[0];
			a[1] = sk->src_ip6[1];
			a[2] = sk->src_ip6[2];
			a[3] = sk->src_ip6[3];
			__builtin_memcpy(nf.laddr, a, 16);
		}
		nf.lport = sk->src_port;
		__builtin_memcpy(nf.raddr, key->raddr, sizeof(nf.raddr));
		nf.rport = key->rport;
		nf.direction = LECO_DIR_IN;
		nf.rx_bytes = len;
		if (key->rport == 53 && (a = asked(sk, key))) {
			/* A DNS answer faster than its query's send call. */
			__builtin_memcpy(&nf.owner, &a->owner, sizeof(nf.owner));
			nf.netns = a->netns;
			nf.direction = LECO_DIR_OUT;
			nf.flags = LECO_F_ANNOUNCED;
		} else if (owner) {
			__builtin_memcpy(&nf.owner, &s->owner, sizeof(nf.owner));
			nf.netns = s->netns;
			nf.flags = LECO_F_ANNOUNCED;
		} else {
			nf.owner.uid = bpf_get_socket_uid(skb);
			nf.flags = LECO_F_PROVISIONAL;
			if (s)
				slot = __sync_fetch_and_add(&s->waiting, 1);
			if (slot >= UDP_WAITING)
				nf.flags |= LECO_F_ANNOUNCED;
		}
		nf.last_emit_ns = now;
		if (bpf_map_update_elem(&flows, key, &nf, BPF_NOEXIST) == 0) {
			if (nf.flags & LECO_F_ANNOUNCED)
				emit(LECO_NEW, key->cookie, &nf, now);
		} else {
			/* Another CPU made it first: count on that one. */
			f = bpf_map_lookup_elem(&flows, key);
			if (f)
				__sync_fetch_and_add(&f->rx_bytes, len);
		}
		if (s && slot < UDP_WAITING) {
			__builtin_memcpy(s->wait[slot].addr, key->raddr, sizeof(key->raddr));
			s->wait[slot].port = key->rport;
			__sync_lock_test_and_set(&s->wait[slot].ready, 1);
		}
		return;
	}

	/* Made before the socket's owner was known. */
	__sync_fetch_and_add(&f->rx_bytes, len);
	f->last_ns = now;
	if (owner) {
		/* Known now (one past wait[], or whose claim lost a race). */
		__builtin_memcpy(&f->owner, &s->owner, sizeof(f->owner));
		f->netns = s->netns;
		f->flags &= ~LECO_F_PROVISIONAL;
		f->last_emit_ns = now;
		emit(f->flags & LECO_F_ANNOUNCED ? LECO_UPDATE : LECO_NEW, key->cookie, f, now);
		f->flags |= LECO_F_ANNOUNCED;
		return;
	}
	if ((f->flags & LECO_F_ANNOUNCED) && now - f->last_emit_ns >= update_interval_ns) {
		f->last_emit_ns = now;
		emit(LECO_UPDATE, key->cookie, f, now);
	}
}

/* ---- DNS answers ---------------------------------------------------------- */

/* The DNS message (or TCP segment of one) at `off` in `skb`, which reached
 * socket `cookie` of an owner in cgroup `cgroup_id`, to user space: the
 * names connections are made to. Runs only for answers from port 53 to a
 * socket that asked that server. */
static __always_inline void dns_answer(struct __sk_buff *skb, __u64 cookie, __u64 cgroup_id,
				       __u32 off, __u8 proto, __u32 seq)
{
	struct leco_dns *d;
	__u32 zero = 0;
	__u32 len, size;

	if (skb->len <= off)
		return;
	len = skb->len - off;
	if (len > LECO_DNS_MAX)
		len = LECO_DNS_MAX;
	if (len < 2)
		return;
	d = bpf_map_lookup_elem(&dns_scratch, &zero);
	if (!d)
		return;
	if (bpf_skb_load_bytes(skb, off, d->data, len))
		return;
	/* Every byte sent is written: the scratch holds this CPU's last one. */
	__builtin_memset(d->data + len, 0, LECO_DNS_SPARE);
	__builtin_memset(d, 0, offsetof(struct leco_dns, data));
	d->cookie = cookie;
	d->ts_ns = bpf_ktime_get_boot_ns();
	d->cgroup_id = cgroup_id;
	d->len = len;
	d->tcp_seq = seq;
	d->proto = proto;
	d->kind = LECO_DNS;
	/* As long as the message, but never as long as a struct leco_event:
	 * user space tells the two apart by their sizes. */
	size = offsetof(struct leco_dns, data) + len;
	if (size == sizeof(struct leco_event))
		size += LECO_DNS_SPARE;
	if (size > sizeof(*d))
		return; /* never: for the verifier */
	if (bpf_ringbuf_output(&events, d, size, wakeup_flag(d->ts_ns)))
		__sync_fetch_and_add(&ringbuf_drops, 1);
}

/* A datagram from port 53 (`key`'s peer) reached its socket, its payload
 * at `off`: an answer, if the socket's flow to that server sent it
 * something or is on its way to (an outgoing flow, made by the answer's
 * own arrival from the socket's ask). */
static __always_inline void udp_dns(struct __sk_buff *skb, struct leco_flow_key *key, __u32 off)
{
	struct leco_flow *f = bpf_map_lookup_elem(&flows, key);

	if (f && f->owner.tgid && (f->tx_bytes || f->direction == LECO_DIR_OUT))
		dns_answer(skb, key->cookie, f->owner.cgroup_id, off, IPPROTO_UDP, 0);
}

/* A segment of TCP socket `sk`, connected to port 53: its payload to user
 * space, with its sequence number. The socket connected there: it asked. */
static __always_inline void tcp_dns(struct __sk_buff *skb)
{
	struct leco_flow_key key = { .cookie = bpf_get_socket_cookie(skb) };
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct leco_flow *f;
	__u8 *h = data;
	__u8 *t;
	__u32 off;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		if (data + 20 > end || h[9] != IPPROTO_TCP)
			return;
		off = (h[0] & 0xf) * 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		/* Extension headers on a DNS stream: not worth walking. */
		if (data + 40 > end || h[6] != IPPROTO_TCP)
			return;
		off = 40;
	} else {
		return;
	}
	if (off > 60)
		return;
	t = data + off;
	if ((void *)(t + 20) > end)
		return;
	f = bpf_map_lookup_elem(&flows, &key);
	if (!f)
		return;
	dns_answer(skb, key.cookie, f->owner.cgroup_id, off + (t[12] >> 4) * 4, IPPROTO_TCP,
		   ((__u32)t[4] << 24) | ((__u32)t[5] << 16) | ((__u32)t[6] << 8) | t[7]);
}

/*
 * Every UDP datagram that reaches a socket, as the socket's filters see it:
 * the one place with both the datagram (its sender) and the socket, for
 * reads that ask for no address (recv, read, recvmmsg without msg_name)
 * and connected sockets alike. Neither alternative would do: UDP copies
 * linear datagrams itself, so skb_copy_datagram_iovec misses them; and
 * sk_data_ready passes only the socket, once per batch of datagrams
 * queued (6.18's UDP enqueues through per-node lists and wakes once per
 * splice). DNS answers (UDP and TCP from port 53) are sent up from here
 * too: the socket that asked is known, and so its owner's cgroup. Every
 * other TCP segment received runs this too, in softirq: it returns once
 * it has the socket's protocol and peer port (loads, bpf_sk_fullsock(),
 * two compares), before any map or packet is touched.
 */
SEC("cgroup_skb/ingress")
int on_udp_ingress(struct __sk_buff *skb)
{
	struct leco_flow_key key = {};
	struct bpf_sock *sk;
	__u32 off;

	if (hooks_only)
		return 1;
	sk = skb->sk;
	if (!sk)
		return 1;
	sk = bpf_sk_fullsock(sk);
	if (!sk || !udp_rx_at_ingress)
		return 1;
	if (sk->protocol == IPPROTO_TCP) {
		if (sk->dst_port == bpf_htons(53))
			tcp_dns(skb);
		return 1;
	}
	if (sk->protocol != IPPROTO_UDP)
		return 1;
	if (sk->family != AF_INET && sk->family != AF_INET6)
		return 1;
	if (!udp_sender(skb, sk->family, &key, &off))
		return 1;
	key.cookie = bpf_get_socket_cookie(skb);
	udp_arrival(skb, sk, &key, skb->len > off + 8 ? skb->len - off - 8 : 0);
	if (key.rport == 53)
		udp_dns(skb, &key, off + 8);
	return 1; /* observe only: never drop */
}

/* The flow key of a UDP datagram at the socket `sk` it reached (its IP and
 * transport headers in place): the sender, IPv4-mapped on an IPv6 socket
 * as that socket's own sends name it. False if it cannot be read. */
static __always_inline bool queued_udp_sender(const struct sk_buff *skb, struct sock *sk,
					      struct leco_flow_key *key)
{
	struct leco_peer p = {};
	__u8 port[2];

	if (!peer_from_ip(&p, skb->head + skb->network_header, true))
		return false;
	if (bpf_probe_read_kernel(port, sizeof(port), skb->head + skb->transport_header))
		return false;
	if (p.family == AF_INET && sk->__sk_common.skc_family == AF_INET6) {
		key->raddr[10] = 0xff;
		key->raddr[11] = 0xff;
		__builtin_memcpy(&key->raddr[12], p.addr, 4);
	} else {
		__builtin_memcpy(key->raddr, p.addr, sizeof(key->raddr));
	}
	key->rport = ((__u16)port[0] << 8) | port[1];
	key->cookie = bpf_get_socket_cookie(sk);
	return true;
}

/*
 * A datagram counted on arrival that the socket's full receive buffer (or
 * the protocol's memory limit) then refused: it never reached the reader.
 * Rare, and runs only then.
 */
SEC("tp_btf/udp_fail_queue_rcv_skb")
int BPF_PROG(on_udp_fail_queue_rcv_skb, int rc, struct sock *sk, struct sk_buff *skb)
{
	struct leco_flow_key key = {};
	struct leco_flow *f;

	if (hooks_only || !udp_rx_at_ingress)
		return 0;
	if (!queued_udp_sender(skb, sk, &key))
		return 0;
	f = bpf_map_lookup_elem(&flows, &key);
	/* The UDP header is pulled by now: the length is the payload's. */
	if (f)
		__sync_fetch_and_sub(&f->rx_bytes, skb->len);
	return 0;
}

/*
 * A datagram socket's flows end with it (an AF_PACKET socket's, which no
 * hook sees close, by idleness).
 *
 * A TCP socket released in any other state than TCP_CLOSE still has its
 * close ahead (FIN_WAIT, LAST_ACK...), and inet_sock_set_state ends its
 * flow then, with the error if one comes. A flow still there when an
 * already closed socket is released was made after the close (a byte count
 * racing the reset that ended it): this is its last chance to end.
 */
static __always_inline void end_closed_tcp(struct bpf_sock *ctx)
{
	struct leco_flow_key key = { .cookie = bpf_get_socket_cookie(ctx) };
	struct leco_flow *f;

	if (ctx->state != TCP_CLOSE)
		return;
	f = bpf_map_lookup_elem(&flows, &key);
	if (!f)
		return;
	emit(f->error ? LECO_FAILED : LECO_CLOSED, key.cookie, f, bpf_ktime_get_boot_ns());
	bpf_map_delete_elem(&flows, &key);
}

SEC("cgroup/sock_release")
int on_sock_release(struct bpf_sock *ctx)
{
	if (hooks_only)
		return 1;
	if (ctx->family != AF_INET && ctx->family != AF_INET6)
		return 1;
	if (ctx->protocol == IPPROTO_TCP && ctx->type == SOCK_STREAM) {
		end_closed_tcp(ctx);
		return 1;
	}
	__u64 cookie = bpf_get_socket_cookie(ctx);
	__u64 now = bpf_ktime_get_boot_ns();

	if (ctx->protocol == IPPROTO_UDP) {
		/* Flows of datagrams nobody ever read, still waiting for an
		 * owner: shown (without one) before they end, not lost. */
		struct leco_udp_sock *s = bpf_sk_storage_get(&udp_socks, ctx, NULL, 0);

		if (s && s->claimed < s->waiting && s->claimed < UDP_WAITING)
			announce_waiting(s, cookie, NULL, now);
	}
	emit(LECO_RELEASED, cookie, NULL, now);
	return 1;
}

/* ---- what this machine's policy dropped (kfree_skb) ---------------------- */

/* A quiet spell after which an inbound attempt from the same remote to the
 * same port is a new one (a client retrying, a scan) rather than more of
 * the last. */
#define BLOCKED_IN_QUIET_NS (60ULL * 1000000000ULL)

/* The policy that dropped a packet, from the kernel's drop reason; 0 for
 * every other drop (a full queue, a bad checksum, no socket...), which is
 * not an attempt stopped here. */
static __always_inline __u8 policy_reason(int why)
{
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_DROP_REASON_NETFILTER_DROP) &&
	    why == bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_NETFILTER_DROP))
		return LECO_R_FIREWALL;
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_DROP_REASON_BPF_CGROUP_EGRESS) &&
	    why == bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_BPF_CGROUP_EGRESS))
		return LECO_R_CGROUP;
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_DROP_REASON_SECURITY_HOOK) &&
	    why == bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_SECURITY_HOOK))
		return LECO_R_LSM;
	return LECO_R_NONE;
}

/* The cookie of a socket reached through a packet (an RCU pointer, which
 * bpf_get_socket_cookie() does not take): read where the kernel keeps it,
 * 0 if nobody has asked for it yet. */
static __always_inline __u64 sk_cookie(const struct sock *sk)
{
	return sk->__sk_common.skc_cookie.counter;
}

/* Not a request or time-wait socket, whose struct is shorter than a sock. */
static __always_inline bool full_sock(const struct sock *sk)
{
	__u8 state = sk->__sk_common.skc_state;

	return state != TCP_TIME_WAIT && state != TCP_NEW_SYN_RECV;
}

/* The transport of an inbound packet at `l4`: whether it is an attempt
 * (a TCP SYN, a UDP datagram, an echo request) and its ports. */
static __always_inline bool inbound_attempt(const __u8 *l4, __u8 proto, __u16 *lport,
					    __u16 *rport)
{
	switch (proto) {
	case IPPROTO_TCP:
		/* SYN without ACK: an attempt to connect, not a segment of an
		 * open connection. */
		if ((l4[13] & 0x12) != 0x02)
			return false;
		break;
	case IPPROTO_UDP:
		break;
	case IPPROTO_ICMP:
		return l4[0] == 8; /* echo request */
	case IPPROTO_ICMPV6:
		return l4[0] == 128; /* echo request */
	default:
		return false;
	}
	*rport = ((__u16)l4[0] << 8) | l4[1];
	*lport = ((__u16)l4[2] << 8) | l4[3];
	return true;
}

/* A packet that arrived (`skb` has an input device) was dropped by policy:
 * counted on the aggregate of its remote, protocol and local port, which
 * says so at once the first time and then at most once per interval. Its
 * owner is `owner` when the socket aimed at is known, else a TCP
 * listener's. */
static __always_inline void blocked_inbound(struct sk_buff *skb, __u8 reason,
					    const struct leco_owner *owner)
{
	struct leco_flow_key key = {};
	struct leco_flow *f;
	__u16 lport = 0, rport = 0;
	__u8 h[64], laddr[16] = {};
	__u8 proto, family;
	__u32 netns = 0;
	__u64 now;

	if (bpf_probe_read_kernel(h, sizeof(h), skb->head + skb->network_header))
		return;
	if ((h[0] >> 4) == 4) {
		/* Options are rare on the attempts counted here: skipped. */
		if ((h[0] & 0xf) != 5)
			return;
		family = AF_INET;
		proto = h[9];
		if (!inbound_attempt(&h[20], proto, &lport, &rport))
			return;
		__builtin_memcpy(key.raddr, &h[12], 4);
		__builtin_memcpy(laddr, &h[16], 4);
	} else if ((h[0] >> 4) == 6) {
		family = AF_INET6;
		proto = h[6];
		if (!inbound_attempt(&h[40], proto, &lport, &rport))
			return;
		__builtin_memcpy(key.raddr, &h[8], 16);
		__builtin_memcpy(laddr, &h[24], 16);
	} else {
		return;
	}
	if (skb->dev)
		netns = skb->dev->nd_net.net->ns.inum;
	key.cookie = LECO_BLOCKED_IN_COOKIE | (family == AF_INET6 ? LECO_BLOCKED_IN_V6 : 0) |
		     ((__u64)netns << 24) | ((__u64)proto << 16) | lport;
	now = bpf_ktime_get_boot_ns();
	f = bpf_map_lookup_elem(&blocked_in, &key);
	if (f && now - f->last_ns < BLOCKED_IN_QUIET_NS) {
		f->rport = rport;
		mark_blocked(f, key.cookie, reason, now);
		return;
	}

	struct leco_flow nf = {};

	nf.id = next_flow_id();
	nf.first_ns = now;
	nf.last_ns = now;
	nf.last_emit_ns = now;
	nf.proto = proto; /* the IP protocol is the leco one for these four */
	nf.family = family;
	__builtin_memcpy(nf.laddr, laddr, sizeof(nf.laddr));
	nf.lport = lport;
	__builtin_memcpy(nf.raddr, key.raddr, sizeof(nf.raddr));
	nf.rport = rport;
	nf.netns = netns;
	nf.direction = LECO_DIR_IN;
	nf.attempts = 1;
	nf.reason = reason;
	nf.flags = LECO_F_ANNOUNCED | LECO_F_BLOCKED;
	if (owner) {
		__builtin_memcpy(&nf.owner, owner, sizeof(nf.owner));
	} else if (proto == IPPROTO_TCP) {
		/* No socket was reached; the service aimed at has an owner. */
		struct leco_listen_key lk = { .netns = netns, .port = lport };
		struct leco_owner *lo = bpf_map_lookup_elem(&listeners, &lk);

		if (lo)
			__builtin_memcpy(&nf.owner, lo, sizeof(nf.owner));
	}
	bpf_map_update_elem(&blocked_in, &key, &nf, BPF_ANY);
	emit(LECO_BLOCKED, key.cookie, &nf, now);
}

/* A TCP segment socket `sk` sent was dropped by policy: before the
 * connection opened, its connect is blocked (every SYN retried counts);
 * after, it is no attempt of its own. */
static __always_inline void blocked_tcp(struct sock *sk, __u8 reason)
{
	struct leco_flow_key key = { .cookie = sk_cookie(sk) };
	struct leco_flow *f;

	/* No cookie yet: no flow either (a connect's made one). */
	if (!key.cookie)
		return;
	f = bpf_map_lookup_elem(&flows, &key);
	if (!f || (f->flags & LECO_F_ESTABLISHED))
		return;
	mark_blocked(f, key.cookie, reason, bpf_ktime_get_boot_ns());
}

/* A datagram socket's packet was dropped by policy, in its sender's system
 * call (output is synchronous): its destination and why, for the send's
 * byte count (-EPERM) that follows to make the flow blocked. */
static __always_inline void blocked_datagram(struct sock *sk, struct sk_buff *skb, __u8 reason)
{
	struct leco_peer *p = peer_slot();

	if (!p || !peer_from_ip(p, skb->head + skb->network_header, false))
		return;
	/* Matched by address if no hook asked for the cookie yet. */
	p->cookie = sk_cookie(sk);
	p->sk = (__u64)sk;
	p->blocked = reason;
}

/*
 * Every packet the kernel frees unsent or undelivered, with why. Drops
 * are rare next to packets delivered (consume_skb, which this is not), and
 * every drop but policy's returns at the first compare.
 */
SEC("tp_btf/kfree_skb")
int BPF_PROG(on_kfree_skb, struct sk_buff *skb, void *location, enum skb_drop_reason why)
{
	struct sock *sk;
	__u8 reason;

	if (hooks_only)
		return 0;
	reason = policy_reason(why);
	if (!reason)
		return 0;
	/* Arrived on a device (loopback included): inbound, or forwarded. */
	if (skb->skb_iif) {
		blocked_inbound(skb, reason, NULL);
		return 0;
	}
	sk = skb->sk;
	if (!sk || !full_sock(sk) || !is_inet(sk))
		return 0;
	if (sk->sk_protocol == IPPROTO_TCP) {
		if (sk->sk_type == SOCK_STREAM)
			blocked_tcp(sk, reason);
		return 0;
	}
	blocked_datagram(sk, skb, reason);
	return 0;
}

/*
 * A packet a cgroup ingress program denied at its socket (a per-app
 * firewall that cuts a service off): the kernel names that drop as it
 * names a socket's own filter's, so it is policy only when the socket has
 * no filter of its own. The receiving socket is the tracepoint's last
 * argument (Linux 6.13+), hence a program of its own: kernels without it
 * keep the rest of the drop watcher.
 */
SEC("tp_btf/kfree_skb")
int BPF_PROG(on_kfree_skb_rx, struct sk_buff *skb, void *location, enum skb_drop_reason why,
	     struct sock *rx_sk)
{
	struct leco_udp_sock *s = NULL;
	__u16 proto;

	if (hooks_only)
		return 0;
	if (!bpf_core_enum_value_exists(enum skb_drop_reason, SKB_DROP_REASON_SOCKET_FILTER) ||
	    why != bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_SOCKET_FILTER))
		return 0;
	if (!rx_sk || !skb->skb_iif || !full_sock(rx_sk) || !is_inet(rx_sk) || rx_sk->sk_filter)
		return 0;
	proto = rx_sk->sk_protocol;
	if (proto == IPPROTO_UDP && udp_rx_at_ingress) {
		struct leco_flow_key key = {};
		struct leco_flow *f;

		/* The socket was reached: its flow from this sender (made as the
		 * datagram arrived, on_udp_ingress running before the verdict
		 * was known) is the blocked one, and the datagram was never
		 * received. */
		s = bpf_sk_storage_get(&udp_socks, rx_sk, NULL, 0);
		if (queued_udp_sender(skb, rx_sk, &key)) {
			f = bpf_map_lookup_elem(&flows, &key);
			if (f) {
				__u64 len = skb->len > 8 ? skb->len - 8 : 0;

				__sync_fetch_and_sub(&f->rx_bytes, len < f->rx_bytes ? len : f->rx_bytes);
				if (s && s->owner.tgid && (f->flags & LECO_F_PROVISIONAL)) {
					__builtin_memcpy(&f->owner, &s->owner, sizeof(f->owner));
					f->flags &= ~LECO_F_PROVISIONAL;
				}
				mark_blocked(f, key.cookie, LECO_R_CGROUP, bpf_ktime_get_boot_ns());
				return 0;
			}
		}
	} else if (proto != IPPROTO_TCP && proto != IPPROTO_UDP) {
		return 0;
	}
	blocked_inbound(skb, LECO_R_CGROUP, s && s->owner.tgid ? &s->owner : NULL);
	return 0;
}

/* ---- connects a cgroup program denied ------------------------------------ */

/*
 * connect(2) with a cgroup connect program of the caller's cgroups saying
 * no (a per-app firewall): EPERM before any packet or state change, so
 * only this hook sees it. Ours runs last (it is at the root) and reads the
 * verdict; it never changes it. One helper call for connects allowed.
 */
static __always_inline int denied_connect(struct bpf_sock_addr *ctx, bool v6)
{
	struct leco_flow_key key = {};
	struct bpf_sock *sk;
	struct leco_flow *f;
	__u32 proto = ctx->protocol;
	__u64 now;

	if (!cgroup_verdict())
		return 1;
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return 1;
	sk = ctx->sk;
	if (!sk)
		return 1;
	key.cookie = bpf_get_socket_cookie(ctx);
	now = bpf_ktime_get_boot_ns();

	struct leco_flow nf = {};

	if (v6) {
		__u32 ip[4];

		ip[0] = ctx->user_ip6[0];
		ip[1] = ctx->user_ip6[1];
		ip[2] = ctx->user_ip6[2];
		ip[3] = ctx->user_ip6[3];
		__builtin_memcpy(nf.raddr, ip, 16);
		ip[0] = sk->src_ip6[0];
		ip[1] = sk->src_ip6[1];
		ip[2] = sk->src_ip6[2];
		ip[3] = sk->src_ip6[3];
		__builtin_memcpy(nf.laddr, ip, 16);
		nf.family = AF_INET6;
	} else {
		__u32 ip = ctx->user_ip4;

		__builtin_memcpy(nf.raddr, &ip, 4);
		ip = sk->src_ip4;
		__builtin_memcpy(nf.laddr, &ip, 4);
		nf.family = AF_INET;
	}
	nf.rport = bpf_ntohs((__u16)ctx->user_port);
	if (proto == IPPROTO_UDP) {
		__builtin_memcpy(key.raddr, nf.raddr, sizeof(key.raddr));
		key.rport = nf.rport;
	}
	f = bpf_map_lookup_elem(&flows, &key);
	if (f) {
		mark_blocked(f, key.cookie, LECO_R_CGROUP, now);
		return 1;
	}
	nf.id = next_flow_id();
	owner_from_current(&nf.owner);
	nf.first_ns = now;
	nf.last_ns = now;
	nf.last_emit_ns = now;
	nf.proto = proto;
	nf.lport = sk->src_port;
	nf.direction = LECO_DIR_OUT;
	nf.state = proto == IPPROTO_TCP ? TCP_CLOSE : 0;
	nf.attempts = 1;
	nf.reason = LECO_R_CGROUP;
	nf.flags = LECO_F_ANNOUNCED | LECO_F_BLOCKED;
	if (bpf_map_update_elem(&flows, &key, &nf, BPF_NOEXIST) == 0)
		emit(LECO_BLOCKED, key.cookie, &nf, now);
	return 1;
}

SEC("cgroup/connect4")
int on_connect4(struct bpf_sock_addr *ctx)
{
	if (hooks_only)
		return 1;
	note_dns_ask(ctx, false);
	return denied_connect(ctx, false);
}

SEC("cgroup/connect6")
int on_connect6(struct bpf_sock_addr *ctx)
{
	if (hooks_only)
		return 1;
	note_dns_ask(ctx, true);
	return denied_connect(ctx, true);
}

/* ---- errors the program took ---------------------------------------------- */

/* getsockopt(SO_ERROR) on a TCP socket that has one: kept for its close.
 * Every other getsockopt returns at the first compares. */
SEC("cgroup/getsockopt")
int on_getsockopt(struct bpf_sockopt *ctx)
{
	struct bpf_sock *sk;
	__s32 *taken, err;
	void *val, *end;

	if (hooks_only)
		return 1;
	if (ctx->level != SOL_SOCKET || ctx->optname != SO_ERROR)
		return 1;
	sk = ctx->sk;
	if (!sk || sk->protocol != IPPROTO_TCP)
		return 1;
	val = ctx->optval;
	end = ctx->optval_end;
	if (val + sizeof(err) > end)
		return 1;
	err = *(__s32 *)val;
	if (err <= 0)
		return 1;
	taken = bpf_sk_storage_get(&taken_errors, sk, NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (taken)
		*taken = err;
	return 1;
}
