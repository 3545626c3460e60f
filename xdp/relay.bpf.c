// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only
//
// turnpike's XDP fast path for TURN channel data (IPv4, UDP clients).
//
// User space (src/net/xdp/) owns every entry of the maps below: it installs one when a channel
// is bound and its permission is live, replaces it when a lifetime is refreshed and deletes it
// on channel or permission expiry, unbind, a reload that denies the peer, or the end of the
// allocation. This program only applies them:
//
//   client -> server  ChannelData  ==> relay -> peer   UDP datagram (C2P map)
//   peer   -> relay   UDP datagram ==> server -> client ChannelData  (P2C map)
//
// Anything it does not recognise exactly (not IPv4, IP options, fragments, no entry, an entry
// past its expiry, odd ChannelData lengths, a route it cannot resolve, an egress interface it is
// not attached to) goes on to the kernel stack unchanged (XDP_PASS), i.e. to turnpike's
// user-space path, which judges it with the full rules.
//
// Dual-licensed so the kernel accepts the GPL-only helper bpf_fib_lookup.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define MAX_CHANNELS 65536
#define AF_INET 2
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff
// The TTL of relayed packets: a relay is an endpoint that sends new datagrams (as the
// user-space path does, with the kernel's default), not a router.
#define RELAY_TTL 64

// Keys and values: addresses and ports in network byte order, as on the wire. The layouts
// are mirrored by src/net/xdp/maps.rs.
struct c2p_key {
	__u32 client_ip;
	__u32 server_ip;
	__u16 client_port;
	__u16 server_port;
	__u16 channel; // as on the wire (network order)
	__u16 pad;
};

struct c2p_val {
	__u32 relay_ip;
	__u32 peer_ip;
	__u16 relay_port;
	__u16 peer_port;
	__u32 slot; // index in COUNTERS
	__u64 expires_ns; // CLOCK_MONOTONIC (bpf_ktime_get_ns)
};

struct p2c_key {
	__u32 peer_ip;
	__u32 relay_ip;
	__u16 peer_port;
	__u16 relay_port;
};

struct p2c_val {
	__u32 server_ip;
	__u32 client_ip;
	__u16 server_port;
	__u16 client_port;
	__u16 channel; // network order
	__u16 pad;
	__u32 slot;
	__u32 pad2;
	__u64 expires_ns;
};

// Per channel: packets and payload bytes relayed each way. Index 0: client to peer, 1: peer
// to client (the order of turnpike's Direction).
struct counters {
	__u64 packets[2];
	__u64 bytes[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_CHANNELS);
	__type(key, struct c2p_key);
	__type(value, struct c2p_val);
} C2P SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_CHANNELS);
	__type(key, struct p2c_key);
	__type(value, struct p2c_val);
} P2C SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_CHANNELS);
	__type(key, __u32);
	__type(value, struct counters);
} COUNTERS SEC(".maps");

// The interfaces the program is attached to, by ifindex: the egress devices it may redirect
// to. A route out of any other interface is left to the kernel stack.
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, struct bpf_devmap_val);
} TX_PORTS SEC(".maps");

// Why packets were handed to the kernel stack although an entry matched (or how many were
// rewritten), per CPU: see enum outcome.
enum outcome {
	OUT_C2P = 0,
	OUT_P2C,
	OUT_EXPIRED,
	OUT_NO_ROUTE,
	OUT_SHAPE,
	OUT_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, OUT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} OUTCOMES SEC(".maps");

static __always_inline void count_outcome(__u32 which)
{
	__u64 *n = bpf_map_lookup_elem(&OUTCOMES, &which);
	if (n)
		*n += 1;
}

static __always_inline void count_channel(__u32 slot, int dir, __u64 bytes)
{
	struct counters *c = bpf_map_lookup_elem(&COUNTERS, &slot);
	if (!c)
		return;
	if (dir == 0) {
		__sync_fetch_and_add(&c->packets[0], 1);
		__sync_fetch_and_add(&c->bytes[0], bytes);
	} else {
		__sync_fetch_and_add(&c->packets[1], 1);
		__sync_fetch_and_add(&c->bytes[1], bytes);
	}
}

static __always_inline __u16 csum_fold(__u64 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

static __always_inline __u16 ip_checksum(struct iphdr *ip)
{
	__u16 *w = (__u16 *)ip;
	__u64 sum = 0;
#pragma unroll
	for (int i = 0; i < (int)(sizeof(struct iphdr) / 2); i++)
		sum += w[i];
	return csum_fold(sum);
}

// The 32-bit words of what a UDP checksum covers besides the payload: the pseudo header
// (addresses, protocol and length) and the UDP header with its checksum field as zero.
struct udp_words {
	__u32 saddr;
	__u32 daddr;
	__u32 proto_len;
	__u32 ports;
	__u32 len_zero;
};

static __always_inline void udp_words(struct udp_words *w, __u32 saddr, __u32 daddr,
				      __u16 sport, __u16 dport, __u16 ulen)
{
	w->saddr = saddr;
	w->daddr = daddr;
	w->proto_len = bpf_htonl(((__u32)IPPROTO_UDP << 16) | ulen);
	// Ports as they sit in memory, source first.
	__u16 ports[2] = {sport, dport};
	__builtin_memcpy(&w->ports, ports, 4);
	w->len_zero = bpf_htonl((__u32)ulen << 16);
}

// The headers the rewrite builds before it moves them into place.
struct headers {
	struct ethhdr eth;
	struct iphdr ip;
	struct udphdr udp;
} __attribute__((packed));

// The attached interfaces' ifindexes, in the configured order (0 ends the list).
#define MAX_IFACES 8
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_IFACES);
	__type(key, __u32);
	__type(value, __u32);
} IFACES SEC(".maps");

static __always_inline int lookup_via(struct xdp_md *ctx, struct bpf_fib_lookup *fib, __u32 src,
				      __u32 dst, __u16 tot_len, __u32 oif)
{
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->family = AF_INET;
	fib->l4_protocol = IPPROTO_UDP;
	fib->tot_len = tot_len;
	fib->ipv4_src = src;
	fib->ipv4_dst = dst;
	fib->ifindex = oif;
	// An output lookup, as for a datagram the host sends itself (the relay is an endpoint).
	// The kernel answers only for an interface with forwarding on
	// (net.ipv4.conf.IFACE.forwarding=1); turnpike warns at start when it is off.
	return bpf_fib_lookup(ctx, fib, sizeof(*fib), BPF_FIB_LOOKUP_OUTPUT) ==
	       BPF_FIB_LKUP_RET_SUCCESS;
}

// Whether the program can send out of the interface a lookup answered: the ingress interface
// (XDP_TX) or another attached one (XDP_REDIRECT through TX_PORTS). Any other egress (policy
// routing can name one the lookup was not bound to) leaves the packet to user space: a
// redirect to an interface missing from the devmap would drop it.
static __always_inline int can_send(struct xdp_md *ctx, struct bpf_fib_lookup *fib)
{
	__u32 out = fib->ifindex;
	return out == ctx->ingress_ifindex || bpf_map_lookup_elem(&TX_PORTS, &out) != NULL;
}

// The next hop for src -> dst: the route out of the ingress interface if there is one, else
// out of the first other attached interface that has one (an output lookup is bound to the
// interface it names). Returns 0 with fib->ifindex, dmac and smac set, or -1.
static __always_inline int route(struct xdp_md *ctx, struct bpf_fib_lookup *fib, __u32 src,
				 __u32 dst, __u16 tot_len)
{
	__u32 ingress = ctx->ingress_ifindex;
	if (lookup_via(ctx, fib, src, dst, tot_len, ingress))
		return can_send(ctx, fib) ? 0 : -1;
	for (__u32 i = 0; i < MAX_IFACES; i++) {
		__u32 *oif = bpf_map_lookup_elem(&IFACES, &i);
		if (!oif || *oif == 0)
			break;
		if (*oif == ingress)
			continue;
		if (lookup_via(ctx, fib, src, dst, tot_len, *oif))
			return can_send(ctx, fib) ? 0 : -1;
	}
	return -1;
}

static __always_inline int send(struct xdp_md *ctx, struct bpf_fib_lookup *fib)
{
	if (fib->ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect_map(&TX_PORTS, fib->ifindex, 0);
}

static __always_inline void fill_headers(struct headers *h, struct bpf_fib_lookup *fib,
					 struct iphdr *old_ip, __u32 saddr, __u32 daddr,
					 __u16 sport, __u16 dport, __u16 ulen, __u16 check)
{
	__builtin_memcpy(h->eth.h_dest, fib->dmac, ETH_ALEN);
	__builtin_memcpy(h->eth.h_source, fib->smac, ETH_ALEN);
	h->eth.h_proto = bpf_htons(ETH_P_IP);
	struct iphdr ip = *old_ip;
	ip.tot_len = bpf_htons(ulen + sizeof(struct iphdr));
	ip.ttl = RELAY_TTL;
	ip.saddr = saddr;
	ip.daddr = daddr;
	ip.check = 0;
	ip.check = ip_checksum(&ip);
	h->ip = ip;
	h->udp.source = sport;
	h->udp.dest = dport;
	h->udp.len = bpf_htons(ulen);
	h->udp.check = check;
}

// A new UDP checksum from the old one: take out what changed (the old pseudo header and UDP
// header words, plus `extra` removed bytes), put in the new ones. The payload's bytes stay the
// same and move by a multiple of 4, so their sum does not change.
static __always_inline __u16 udp_checksum_update(__u16 old, struct udp_words *from,
						 __u32 from_size, struct udp_words *to,
						 __u32 to_size)
{
	if (old == 0)
		return 0; // no checksum (IPv4 allows it): none after either
	__s64 sum = bpf_csum_diff((__be32 *)from, from_size, (__be32 *)to, to_size,
				  (__u32)(__u16)~old);
	if (sum < 0)
		return 0xffff; // cannot happen with these sizes; a full checksum field is safe
	__u16 folded = csum_fold((__u64)sum);
	return folded == 0 ? 0xffff : folded;
}

// Old words with the 4-byte ChannelData header appended (client -> peer removes it, peer ->
// client adds it).
struct udp_words_chan {
	struct udp_words w;
	__u32 chan;
};

static __always_inline int client_to_peer(struct xdp_md *ctx, struct iphdr *ip,
					  struct udphdr *udp, __u8 *payload, void *end)
{
	if ((void *)(payload + 4) > end)
		return XDP_PASS;
	struct c2p_key key = {
		.client_ip = ip->saddr,
		.server_ip = ip->daddr,
		.client_port = udp->source,
		.server_port = udp->dest,
	};
	__builtin_memcpy(&key.channel, payload, 2);
	struct c2p_val *v = bpf_map_lookup_elem(&C2P, &key);
	if (!v)
		return -1; // not ours: maybe a peer's datagram that starts like ChannelData
	if (bpf_ktime_get_ns() >= v->expires_ns) {
		count_outcome(OUT_EXPIRED);
		return XDP_PASS;
	}
	__u16 ulen = bpf_ntohs(udp->len);
	__u16 data_len = ((__u16)payload[2] << 8) | payload[3];
	__u32 frame = (__u32)ulen - sizeof(struct udphdr);
	// Exactly the header and the data, or padded to 4 with zeros (as over streams).
	__u32 padded = 4 + (((__u32)data_len + 3) & ~3u);
	if (frame < 4 + (__u32)data_len || frame > padded) {
		count_outcome(OUT_SHAPE);
		return XDP_PASS;
	}
	__u32 pad = frame - 4 - data_len;
	if (pad) {
		// The padding is the datagram's last 1-3 bytes: load its last 4 (the frame is at
		// least the 4-byte header long) and check the padding is zero.
		__u8 tail[4];
		__u32 off = sizeof(struct ethhdr) + sizeof(struct iphdr) + ulen - 4;
		if (bpf_xdp_load_bytes(ctx, off, tail, 4))
			return XDP_PASS;
		if (tail[3] != 0 || (pad > 1 && tail[2] != 0) || (pad > 2 && tail[1] != 0)) {
			count_outcome(OUT_SHAPE);
			return XDP_PASS;
		}
	}
	__u16 new_ulen = sizeof(struct udphdr) + data_len;
	struct bpf_fib_lookup fib;
	if (route(ctx, &fib, v->relay_ip, v->peer_ip, new_ulen + sizeof(struct iphdr))) {
		count_outcome(OUT_NO_ROUTE);
		return XDP_PASS;
	}
	struct udp_words_chan from;
	udp_words(&from.w, ip->saddr, ip->daddr, udp->source, udp->dest, ulen);
	__builtin_memcpy(&from.chan, payload, 4);
	struct udp_words to;
	udp_words(&to, v->relay_ip, v->peer_ip, v->relay_port, v->peer_port, new_ulen);
	__u16 check = udp_checksum_update(udp->check, &from.w, sizeof(from), &to, sizeof(to));
	// Padding bytes are zero: they added nothing to the sum, and the data's last odd byte
	// pairs with a zero either way.
	struct headers h;
	fill_headers(&h, &fib, ip, v->relay_ip, v->peer_ip, v->relay_port, v->peer_port,
		     new_ulen, check);
	__u32 slot = v->slot;
	if (bpf_xdp_adjust_head(ctx, 4))
		return XDP_PASS;
	void *data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + sizeof(h) > end)
		return XDP_DROP; // the headers were just there: cannot happen
	__builtin_memcpy(data, &h, sizeof(h));
	count_channel(slot, 0, data_len);
	count_outcome(OUT_C2P);
	return send(ctx, &fib);
}

static __always_inline int peer_to_client(struct xdp_md *ctx)
{
	// The headers were checked by the caller; their pointers are derived again so that the
	// verifier follows them through the other path's helper calls.
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + sizeof(struct ethhdr);
	struct udphdr *udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > end)
		return XDP_PASS;
	struct p2c_key key = {
		.peer_ip = ip->saddr,
		.relay_ip = ip->daddr,
		.peer_port = udp->source,
		.relay_port = udp->dest,
	};
	struct p2c_val *v = bpf_map_lookup_elem(&P2C, &key);
	if (!v)
		return XDP_PASS;
	if (bpf_ktime_get_ns() >= v->expires_ns) {
		count_outcome(OUT_EXPIRED);
		return XDP_PASS;
	}
	__u16 ulen = bpf_ntohs(udp->len);
	__u32 data_len = (__u32)ulen - sizeof(struct udphdr);
	if (ulen + 4 + sizeof(struct iphdr) > 0xffff) {
		count_outcome(OUT_SHAPE);
		return XDP_PASS;
	}
	__u16 new_ulen = ulen + 4;
	struct bpf_fib_lookup fib;
	if (route(ctx, &fib, v->server_ip, v->client_ip, new_ulen + sizeof(struct iphdr))) {
		count_outcome(OUT_NO_ROUTE);
		return XDP_PASS;
	}
	__u16 chan_hdr[2] = {v->channel, bpf_htons((__u16)data_len)};
	struct udp_words from;
	udp_words(&from, ip->saddr, ip->daddr, udp->source, udp->dest, ulen);
	struct udp_words_chan to;
	udp_words(&to.w, v->server_ip, v->client_ip, v->server_port, v->client_port, new_ulen);
	__builtin_memcpy(&to.chan, chan_hdr, 4);
	__u16 check = udp_checksum_update(udp->check, &from, sizeof(from), &to.w, sizeof(to));
	struct headers h;
	fill_headers(&h, &fib, ip, v->server_ip, v->client_ip, v->server_port, v->client_port,
		     new_ulen, check);
	__u32 slot = v->slot;
	if (bpf_xdp_adjust_head(ctx, -4))
		return XDP_PASS;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + sizeof(h) + 4 > end)
		return XDP_DROP; // the headers were just there: cannot happen
	__builtin_memcpy(data, &h, sizeof(h));
	__builtin_memcpy(data + sizeof(h), chan_hdr, 4);
	count_channel(slot, 1, data_len);
	count_outcome(OUT_P2C);
	return send(ctx, &fib);
}

SEC("xdp")
int turnpike_relay(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end)
		return XDP_PASS;
	// No options, no fragments, UDP, and a length that agrees with the UDP header (bytes
	// after it are Ethernet padding).
	if (ip->version != 4 || ip->ihl != 5 || ip->protocol != IPPROTO_UDP ||
	    (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)))
		return XDP_PASS;
	struct udphdr *udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > end)
		return XDP_PASS;
	__u16 tot_len = bpf_ntohs(ip->tot_len);
	__u16 ulen = bpf_ntohs(udp->len);
	if (ulen < sizeof(struct udphdr) || tot_len != ulen + sizeof(struct iphdr) ||
	    (void *)ip + tot_len > end)
		return XDP_PASS;
	__u8 *payload = (void *)(udp + 1);
	// Channel numbers 0x4000-0x7FFF (RFC 8656 narrowed them to 0x4FFF; RFC 5766 clients such
	// as coturn's still use the rest, and the core accepts them): first byte 0x40-0x7F.
	if ((void *)(payload + 1) <= end && (payload[0] & 0xc0) == 0x40) {
		int rc = client_to_peer(ctx, ip, udp, payload, end);
		if (rc >= 0)
			return rc;
	}
	return peer_to_client(ctx);
}

char LICENSE[] SEC("license") = "GPL";
