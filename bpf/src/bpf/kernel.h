/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The few kernel types leco's programs read, declared by hand instead of a
 * 2.8 MB vmlinux.h. Kernel-internal structs carry preserve_access_index so
 * libbpf relocates every field by name against the running kernel's BTF
 * (CO-RE): only the members we touch are listed, and their offsets here are
 * irrelevant. The bpf_sock* context structs are UAPI and must match
 * include/uapi/linux/bpf.h exactly, because the verifier rewrites accesses
 * to them by offset.
 */
#ifndef LECO_KERNEL_H
#define LECO_KERNEL_H

typedef signed char __s8;
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef __u32 dev_t;
typedef _Bool bool;
struct task_struct;
struct sk_filter;
enum { false = 0, true = 1 };

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_SK_STORAGE = 24,
	BPF_MAP_TYPE_RINGBUF = 27,
	BPF_MAP_TYPE_TASK_STORAGE = 29,
};

enum {
	BPF_F_NO_PREALLOC = 1,
	BPF_F_NO_COMMON_LRU = 2,
};

enum {
	BPF_LOCAL_STORAGE_GET_F_CREATE = 1,
};

/* bpf_ringbuf_submit() flags */
enum {
	BPF_RB_NO_WAKEUP = 1,
	BPF_RB_FORCE_WAKEUP = 2,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
};

#define AF_INET 2
#define AF_INET6 10
#define AF_PACKET 17
#define IPPROTO_ICMP 1
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_ICMPV6 58
#define IPPROTO_SCTP 132
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define SOCK_RAW 3
#define MSG_PEEK 2
#define MSG_TRUNC 0x20
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_HLEN 14
#define EPERM 1
#define SOL_SOCKET 1
#define SO_ERROR 4
#define IFNAMSIZ 16
/* enum sock_flags: the peer's FIN has been received */
#define SOCK_DONE 1

/* include/net/tcp_states.h */
enum {
	TCP_ESTABLISHED = 1,
	TCP_SYN_SENT = 2,
	TCP_SYN_RECV = 3,
	TCP_FIN_WAIT1 = 4,
	TCP_FIN_WAIT2 = 5,
	TCP_TIME_WAIT = 6,
	TCP_CLOSE = 7,
	TCP_CLOSE_WAIT = 8,
	TCP_LAST_ACK = 9,
	TCP_LISTEN = 10,
	TCP_CLOSING = 11,
	TCP_NEW_SYN_RECV = 12,
};

typedef struct {
	long long counter;
} atomic64_t;

typedef struct {
	__u32 val;
} kuid_t;

struct in6_addr {
	__u8 s6_addr[16];
};

struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

typedef struct {
	struct net *net;
} __attribute__((preserve_access_index)) possible_net_t;

struct nsproxy {
	struct net *net_ns;
} __attribute__((preserve_access_index));

struct task_struct {
	struct nsproxy *nsproxy;
} __attribute__((preserve_access_index));

/* The kernel nests these in anonymous unions; libbpf matches named members
 * through anonymous ones, so a flat declaration relocates the same. */
struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	possible_net_t skc_net;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
	atomic64_t skc_cookie;
	unsigned long skc_flags; /* sk_flags */
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
	__u16 sk_type;
	int sk_err;
	int sk_err_soft; /* an error TCP keeps while it retries, e.g. ICMP unreachable */
	kuid_t sk_uid;
	struct sk_filter *sk_filter; /* the socket's own filter (SO_ATTACH_FILTER) */
} __attribute__((preserve_access_index));

/* The kernel's own per-connection byte counters (RFC 4898, as `ss -i`
 * shows them): payload bytes, counted whatever path moved them. */
struct tcp_sock {
	__u64 bytes_received; /* sum(delta(rcv_nxt)): payload, plus 1 for a FIN */
	__u64 bytes_sent;     /* payload transmitted, retransmissions included */
	__u64 bytes_retrans;  /* payload retransmitted */
} __attribute__((preserve_access_index));

struct net_device {
	char name[IFNAMSIZ];
	int ifindex;
	possible_net_t nd_net;
} __attribute__((preserve_access_index));

struct sk_buff {
	unsigned int len;
	int skb_iif; /* the device it arrived on; 0 for what this host sends */
	struct sock *sk;
	struct net_device *dev;
	unsigned char *head;
	unsigned char *data;
	__u16 transport_header;
	__u16 network_header;
	__u16 mac_header;
	__be16 protocol;
} __attribute__((preserve_access_index));


/* Why the kernel freed a packet unsent or undelivered (kfree_skb). The
 * values here are only names: bpf_core_enum_value() reads the running
 * kernel's, which change between versions. */
enum skb_drop_reason {
	SKB_DROP_REASON_SOCKET_FILTER = 5,
	SKB_DROP_REASON_NETFILTER_DROP = 12,
	SKB_DROP_REASON_BPF_CGROUP_EGRESS = 55,
	SKB_DROP_REASON_SECURITY_HOOK = 63,
};

/* UAPI (include/uapi/linux/bpf.h): layout must stay exact. */
#define __bpf_md_ptr(type, name) \
	union {                  \
		type name;       \
		__u64 : 64;      \
	} __attribute__((aligned(8)))

struct bpf_sock {
	__u32 bound_dev_if;
	__u32 family;
	__u32 type;
	__u32 protocol;
	__u32 mark;
	__u32 priority;
	__u32 src_ip4;
	__u32 src_ip6[4];
	__u32 src_port;
	__be16 dst_port;
	__u16 : 16;
	__u32 dst_ip4;
	__u32 dst_ip6[4];
	__u32 state;
	__s32 rx_queue_mapping;
};

/* Up to the last member read (sk). */
struct __sk_buff {
	__u32 len;
	__u32 pkt_type;
	__u32 mark;
	__u32 queue_mapping;
	__u32 protocol;
	__u32 vlan_present;
	__u32 vlan_tci;
	__u32 vlan_proto;
	__u32 priority;
	__u32 ingress_ifindex;
	__u32 ifindex;
	__u32 tc_index;
	__u32 cb[5];
	__u32 hash;
	__u32 tc_classid;
	__u32 data;
	__u32 data_end;
	__u32 napi_id;
	__u32 family;
	__u32 remote_ip4;
	__u32 local_ip4;
	__u32 remote_ip6[4];
	__u32 local_ip6[4];
	__u32 remote_port;
	__u32 local_port;
	__u32 data_meta;
	__bpf_md_ptr(struct bpf_flow_keys *, flow_keys);
	__u64 tstamp;
	__u32 wire_len;
	__u32 gso_segs;
	__bpf_md_ptr(struct bpf_sock *, sk);
};

struct bpf_sock_addr {
	__u32 user_family;
	__u32 user_ip4;
	__u32 user_ip6[4];
	__u32 user_port;
	__u32 family;
	__u32 type;
	__u32 protocol;
	__u32 msg_src_ip4;
	__u32 msg_src_ip6[4];
	__bpf_md_ptr(struct bpf_sock *, sk);
};

struct bpf_sockopt {
	__bpf_md_ptr(struct bpf_sock *, sk);
	__bpf_md_ptr(void *, optval);
	__bpf_md_ptr(void *, optval_end);
	__s32 level;
	__s32 optname;
	__s32 optlen;
	__s32 retval;
};

#endif /* LECO_KERNEL_H */
