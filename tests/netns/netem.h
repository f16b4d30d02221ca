/* SPDX-License-Identifier: MIT */
/*
 * netem - delay and random loss for the netns tests, in user space.
 *
 * Why not `tc qdisc add ... netem`: the kernels these tests run on are
 * built without sch_netem (CONFIG_NET_SCH_NETEM unset), and without the
 * other usual ways (sch_fq with TCP_TX_DELAY, act_bpf, nft's `queue`).
 * What they do have is NFQUEUE (nfnetlink_queue with the xtables target),
 * so this helper does netem's job on that: an iptables rule
 *
 *     iptables -A INPUT -i <veth> -j NFQUEUE --queue-num N
 *
 * in a namespace hands every IPv4 packet arriving on the veth to this
 * helper, which runs in the same namespace. Each packet is either dropped
 * at once (verdict DROP, with probability loss_ppm / 10^6, an independent
 * draw per packet as netem's `loss random`) or held for delay_us and then
 * accepted; held packets are released in arrival order. Only the packet
 * metadata is copied to user space (NFQNL_COPY_META), the queue's maxlen
 * is raised well above what a TCP window can have in flight, and the
 * netlink socket gets a large receive buffer.
 *
 * The delay is applied where packets arrive, not in OUTPUT of the sender:
 * a packet held in OUTPUT is still charged to its socket (TCP small
 * queues), which would throttle the sender to a few packets per delay
 * and measure that instead of a long, lossy link. Held at the receiver,
 * the sender sees exactly a path with that one-way delay. A helper on
 * each end gives the delay and the loss in each direction.
 *
 * TCP segments arrive as large GSO packets over veth; without
 * NFQA_CFG_F_GSO the queue splits them into MTU-sized packets first, so
 * the loss is per wire-sized packet, as on a real link.
 */
#ifndef PW_NETEM_H
#define PW_NETEM_H

#include <stdbool.h>
#include <stdint.h>

struct netem_cfg {
	uint16_t queue_num;
	uint32_t delay_us;
	uint32_t loss_ppm;	/* parts per million */
	uint64_t seed;
};

struct netem_stats {
	uint64_t packets;	/* handed to us */
	uint64_t dropped;	/* verdict DROP (the loss) */
	uint64_t accepted;	/* verdict ACCEPT after the delay */
	uint64_t max_held;	/* most packets held at once */
	uint64_t late_max_us;	/* latest release past its due time */
	uint64_t enobufs;	/* netlink overruns seen (packets lost to them) */
	uint64_t kernel_dropped; /* queue_dropped + user_dropped of the queue */
};

struct netem;

/* Whether this build has the helper (libnetfilter_queue was found). */
bool netem_available(void);

/*
 * Binds queue @cfg->queue_num in the calling process's network
 * namespace. Returns NULL with a reason in @err on failure.
 */
struct netem *netem_open(const struct netem_cfg *cfg, char *err, size_t errlen);

/*
 * Delays and drops packets until @stop_fd becomes readable (or hangs
 * up); then releases whatever it holds. Returns 0 or a negative errno.
 */
int netem_loop(struct netem *ne, int stop_fd);

void netem_get_stats(struct netem *ne, struct netem_stats *st);
void netem_close(struct netem *ne);

#endif /* PW_NETEM_H */
