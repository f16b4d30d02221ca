/* SPDX-License-Identifier: MIT */
/*
 * netem - delay and random loss on NFQUEUE, for kernels without
 * sch_netem. See netem.h for why and how.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "netem.h"

#ifdef PW_HAVE_NFQ

#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <sys/socket.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif
#ifndef NETLINK_NO_ENOBUFS
#define NETLINK_NO_ENOBUFS 5
#endif

/* Packets the kernel may hold for us; a ring a bit larger. */
#define NETEM_MAXLEN	65536u
#define NETEM_RING	(NETEM_MAXLEN * 2)
#define NETEM_RCVBUF	(32 << 20)

struct held {
	uint32_t id;
	uint64_t due_us;
};

struct netem {
	struct netem_cfg cfg;
	struct nfq_handle *h;
	struct nfq_q_handle *qh;
	int fd;
	uint64_t rng;
	struct held *ring;
	uint32_t head, tail;	/* free-running */
	struct netem_stats st;
	int err;		/* first verdict error */
};

bool netem_available(void)
{
	return true;
}

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t rng_next(struct netem *ne)
{
	/* xorshift64* */
	ne->rng ^= ne->rng >> 12;
	ne->rng ^= ne->rng << 25;
	ne->rng ^= ne->rng >> 27;
	return ne->rng * 0x2545f4914f6cdd1dull;
}

static void verdict(struct netem *ne, uint32_t id, uint32_t v, bool batch)
{
	int rc = batch ? nfq_set_verdict_batch(ne->qh, id, v)
		       : nfq_set_verdict(ne->qh, id, v, 0, NULL);

	if (rc < 0 && !ne->err)
		ne->err = errno ? -errno : -EIO;
}

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg,
		     struct nfq_data *nfa, void *data)
{
	struct netem *ne = data;
	struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
	uint32_t id;

	(void)qh;
	(void)msg;
	if (!ph)
		return 0;
	id = ntohl(ph->packet_id);
	ne->st.packets++;
	if (ne->cfg.loss_ppm && rng_next(ne) % 1000000u < ne->cfg.loss_ppm) {
		ne->st.dropped++;
		verdict(ne, id, NF_DROP, false);
		return 0;
	}
	if (ne->tail - ne->head == NETEM_RING) {
		/* cannot happen with maxlen < ring; accept rather than lose */
		verdict(ne, id, NF_ACCEPT, false);
		ne->st.accepted++;
		return 0;
	}
	ne->ring[ne->tail % NETEM_RING].id = id;
	ne->ring[ne->tail % NETEM_RING].due_us = now_us() + ne->cfg.delay_us;
	ne->tail++;
	if (ne->tail - ne->head > ne->st.max_held)
		ne->st.max_held = ne->tail - ne->head;
	return 0;
}

/*
 * Accepts every held packet due by @now (all of them with @all). Held
 * ids increase in ring order and every older id got its verdict, so one
 * batch verdict up to the newest due id releases exactly those.
 */
static void release(struct netem *ne, uint64_t now, bool all)
{
	uint32_t n = 0, last = 0;

	while (ne->head != ne->tail) {
		const struct held *p = &ne->ring[ne->head % NETEM_RING];

		if (!all && p->due_us > now)
			break;
		if (!all && now - p->due_us > ne->st.late_max_us)
			ne->st.late_max_us = now - p->due_us;
		last = p->id;
		ne->head++;
		n++;
	}
	if (n) {
		verdict(ne, last, NF_ACCEPT, true);
		ne->st.accepted += n;
	}
}

struct netem *netem_open(const struct netem_cfg *cfg, char *err, size_t errlen)
{
	struct netem *ne = calloc(1, sizeof(*ne));
	int one = 1, sz = NETEM_RCVBUF;

	if (!ne) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	ne->cfg = *cfg;
	ne->rng = cfg->seed ? cfg->seed : 0x9e3779b97f4a7c15ull;
	ne->ring = calloc(NETEM_RING, sizeof(*ne->ring));
	ne->h = nfq_open();
	if (!ne->ring || !ne->h) {
		snprintf(err, errlen, "nfq_open: %s (no nfnetlink_queue in this kernel?)",
			 strerror(errno));
		goto fail;
	}
	ne->qh = nfq_create_queue(ne->h, cfg->queue_num, on_packet, ne);
	if (!ne->qh) {
		snprintf(err, errlen, "nfq_create_queue %u: %s", cfg->queue_num,
			 strerror(errno));
		goto fail;
	}
	if (nfq_set_mode(ne->qh, NFQNL_COPY_META, 0) < 0 ||
	    nfq_set_queue_maxlen(ne->qh, NETEM_MAXLEN) < 0) {
		snprintf(err, errlen, "nfq_set_mode/maxlen: %s", strerror(errno));
		goto fail;
	}
	ne->fd = nfq_fd(ne->h);
	if (setsockopt(ne->fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) < 0)
		setsockopt(ne->fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	/* An overrun then loses packets (counted by the kernel) instead of
	 * failing the socket. */
	setsockopt(ne->fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof(one));
	return ne;
fail:
	netem_close(ne);
	return NULL;
}

int netem_loop(struct netem *ne, int stop_fd)
{
	static char buf[65536] __attribute__((aligned(8)));

	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = ne->fd, .events = POLLIN },
			{ .fd = stop_fd, .events = POLLIN },
		};
		struct timespec ts, *tsp = NULL;
		uint64_t now = now_us();
		int r;

		release(ne, now, false);
		if (ne->err)
			return ne->err;
		if (ne->head != ne->tail) {
			uint64_t due = ne->ring[ne->head % NETEM_RING].due_us;
			uint64_t wait = due > now ? due - now : 0;

			ts.tv_sec = (time_t)(wait / 1000000u);
			ts.tv_nsec = (long)(wait % 1000000u) * 1000L;
			tsp = &ts;
		}
		r = ppoll(pfd, 2, tsp, NULL);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (pfd[1].revents)
			break;
		if (!(pfd[0].revents & POLLIN))
			continue;
		for (;;) {
			ssize_t n = recv(ne->fd, buf, sizeof(buf), MSG_DONTWAIT);

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno == ENOBUFS) {
				ne->st.enobufs++;
				continue;
			}
			if (n <= 0)
				break;
			nfq_handle_packet(ne->h, buf, (int)n);
		}
	}
	release(ne, 0, true);
	return ne->err;
}

/* queue_dropped and user_dropped of our queue (this namespace's view). */
static uint64_t kernel_dropped(uint16_t qnum)
{
	FILE *f = fopen("/proc/self/net/netfilter/nfnetlink_queue", "r");
	unsigned int num, portid, total, mode, range, qd, ud;
	char line[256];
	uint64_t sum = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%u %u %u %u %u %u %u", &num, &portid, &total, &mode,
			   &range, &qd, &ud) == 7 && num == qnum)
			sum = (uint64_t)qd + ud;
	fclose(f);
	return sum;
}

void netem_get_stats(struct netem *ne, struct netem_stats *st)
{
	ne->st.kernel_dropped = kernel_dropped(ne->cfg.queue_num);
	*st = ne->st;
}

void netem_close(struct netem *ne)
{
	if (!ne)
		return;
	if (ne->qh)
		nfq_destroy_queue(ne->qh);
	if (ne->h)
		nfq_close(ne->h);
	free(ne->ring);
	free(ne);
}

#else /* !PW_HAVE_NFQ */

bool netem_available(void)
{
	return false;
}

struct netem *netem_open(const struct netem_cfg *cfg, char *err, size_t errlen)
{
	(void)cfg;
	snprintf(err, errlen, "built without libnetfilter_queue (Debian: libnetfilter-queue-dev)");
	errno = ENOTSUP;
	return NULL;
}

int netem_loop(struct netem *ne, int stop_fd)
{
	(void)ne;
	(void)stop_fd;
	return -ENOTSUP;
}

void netem_get_stats(struct netem *ne, struct netem_stats *st)
{
	(void)ne;
	memset(st, 0, sizeof(*st));
}

void netem_close(struct netem *ne)
{
	(void)ne;
}

#endif /* PW_HAVE_NFQ */
