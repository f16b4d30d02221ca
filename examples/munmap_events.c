/* SPDX-License-Identifier: MIT */
/*
 * munmap_events: what happens to a registered, demand-paged (ODP) region
 * when its owner changes the mapping under it, seen from both sides.
 *
 * One process plays two hosts: a "target" context that owns a region and
 * a "peer" context that RDMA-WRITEs and READs it over a loopback
 * connection (ephemeral port). Step by step:
 *
 *   Part 1, a default ODP region (the STALL fault policy):
 *     - the peer writes every page and reads it back;
 *     - the target munmap()s two pages: it gets PW_EVENT_MR_UNMAPPED
 *       for exactly that range; the rest of the region keeps working on
 *       the same connection;
 *     - the peer's WRITE and its READ into the hole complete with
 *       PW_WC_REM_ACCESS_ERR; as with any RC error, the QP goes to the
 *       error state and both sides get PW_EVENT_QP_FATAL (so a new
 *       connection is made after each);
 *     - madvise(MADV_DONTNEED) is no unmap: no event, the peer reads
 *       zeros there (the kernel's semantics) and can write again;
 *     - mapping the hole again does not revive the old MR (a dead range
 *       stays dead, nothing reaches the new pages); registering the new
 *       pages gives a key that works.
 *
 *   Part 2, a region registered with PW_ACCESS_ODP_FOLLOW_VA, served by
 *   a QP with the NOTIFY fault policy:
 *     - the target munmap()s a page; the peer is told (an INVALIDATE,
 *       counted in pw_query_stats()), and its WRITE there completes with
 *       PW_WC_REM_ACCESS_ERR, since nothing is mapped there;
 *     - the target maps the page again: the same key reaches the new
 *       page, as hardware ODP does.
 *
 * Every completion status, event, byte count and byte of data is checked
 * against what docs/semantics.md says; the program prints one line per
 * observation and exits 0 only if all of them were as expected.
 * No arguments.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <pagewire/pagewire.h>

#define NPAGES		16		/* pages of each target region */
#define WAIT_MS		5000		/* longest wait for anything */
#define QUIET_MS	50		/* how long "no more events" waits */

static size_t pg;			/* the page size */
static unsigned int checks, failures;

/* One observation: print it, count it, remember a failure. */
static bool check(bool ok, const char *fmt, ...)
{
	va_list ap;

	checks++;
	if (!ok)
		failures++;
	printf("  %s ", ok ? "ok  " : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	return ok;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "munmap_events: %s failed: %s%s%s\n", what,
		strerror(err), *pw_last_error() ? ": " : "", pw_last_error());
	exit(1);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The byte at @off of the data written in round @round. */
static uint8_t pattern(unsigned int round, size_t off)
{
	return (uint8_t)(round * 37 + off * 11 + (off >> 12) + 1);
}

static void fill(uint8_t *p, size_t len, unsigned int round, size_t off)
{
	for (size_t i = 0; i < len; i++)
		p[i] = pattern(round, off + i);
}

/* Offset of the first byte that is not the pattern (0 = zeros), or -1. */
static long mismatch(const uint8_t *p, size_t len, unsigned int round,
		     size_t off)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != (round ? pattern(round, off + i) : 0))
			return (long)i;
	return -1;
}

/* "page 4" or "pages 4-5", in @buf */
static const char *pages(char *buf, size_t size, size_t page, size_t npages)
{
	if (npages == 1)
		snprintf(buf, size, "page %zu", page);
	else
		snprintf(buf, size, "pages %zu-%zu", page, page + npages - 1);
	return buf;
}

/* ------------------------------------------------------------------ */
/* The two sides                                                        */
/* ------------------------------------------------------------------ */

/* The target's region as the peer learns it from the private data. */
struct region_info {
	uint64_t addr;
	uint64_t len;
	uint32_t rkey;
	uint32_t reserved;	/* no padding: every byte sent is set */
};

struct target {
	struct pw_context *ctx;
	struct pw_pd *pd;
	struct pw_cq *cq;
	struct pw_listener *listener;
	struct pw_qp *qp;
	uint8_t *buf;		/* NPAGES pages */
	struct pw_mr *mr;	/* what the peer is told about */
};

struct peer {
	struct pw_context *ctx;
	struct pw_pd *pd;
	struct pw_comp_channel *ch;
	struct pw_cq *cq;
	struct pw_cm_channel *cm;
	struct pw_qp *qp;
	uint8_t *buf;		/* NPAGES pages of local staging */
	struct pw_mr *mr;
	struct region_info remote;
};

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		die("fcntl", errno);
}

static void *map_pages(size_t n)
{
	void *p = mmap(NULL, n * pg, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		die("mmap", errno);
	return p;
}

static void setup(struct target *t, struct peer *p)
{
	/* STALL whatever PW_FAULT_POLICY says: part 1 is about it. */
	struct pw_context_attr tattr = { .fault_policy = PW_FAULT_STALL };

	t->ctx = pw_open(&tattr);
	p->ctx = pw_open(NULL);
	if (!t->ctx || !p->ctx)
		die("pw_open", errno);
	t->pd = pw_alloc_pd(t->ctx);
	p->pd = pw_alloc_pd(p->ctx);
	t->cq = pw_create_cq(t->ctx, 16, NULL, NULL, 0);
	p->ch = pw_create_comp_channel(p->ctx);
	p->cq = pw_create_cq(p->ctx, 16, NULL, p->ch, 0);
	p->cm = pw_create_cm_channel(p->ctx);
	if (!t->pd || !p->pd || !t->cq || !p->ch || !p->cq || !p->cm)
		die("setup", errno);
	/* Bounded waits: the async and connection fds never block. */
	set_nonblock(pw_get_async_fd(t->ctx));
	set_nonblock(pw_get_async_fd(p->ctx));
	set_nonblock(p->cm->fd);

	t->listener = pw_listen(t->ctx, "127.0.0.1", 0);
	if (!t->listener)
		die("pw_listen", errno);

	p->buf = map_pages(NPAGES);
	p->mr = pw_reg_mr(p->pd, p->buf, NPAGES * pg,
			  PW_ACCESS_LOCAL_WRITE | PW_ACCESS_ON_DEMAND);
	if (!p->mr)
		die("pw_reg_mr", errno);
}

/* ------------------------------------------------------------------ */
/* Async events                                                         */
/* ------------------------------------------------------------------ */

struct expect_ev {
	enum pw_event_type type;
	void *element;		/* the MR or the QP */
	uint64_t offset, length;	/* MR events */
	enum pw_qp_cause cause;		/* QP events */
};

/*
 * Take the async events of @ctx for at most @ms milliseconds (or until
 * @max were taken), print each, acknowledge it. Return how many.
 */
static int take_events(struct pw_context *ctx, const char *who,
		       struct pw_async_event *evs, int max, int ms)
{
	struct pollfd pfd = { .fd = pw_get_async_fd(ctx), .events = POLLIN };
	uint64_t end = now_ms() + (uint64_t)ms;
	int n = 0;

	while (n < max) {
		struct pw_async_event ev;
		int left = (int)(end > now_ms() ? end - now_ms() : 0);

		if (pw_get_async_event(ctx, &ev) == 0) {
			if (ev.event_type == PW_EVENT_MR_UNMAPPED ||
			    ev.event_type == PW_EVENT_MR_REMAPPED)
				printf("       %s: async event \"%s\": offset 0x%" PRIx64
				       ", length 0x%" PRIx64 "\n", who,
				       pw_event_type_str(ev.event_type),
				       ev.offset, ev.length);
			else
				printf("       %s: async event \"%s\": %s\n", who,
				       pw_event_type_str(ev.event_type),
				       pw_qp_cause_str(ev.cause));
			evs[n++] = ev;
			pw_ack_async_event(&ev);
			continue;
		}
		if (!left || poll(&pfd, 1, left) <= 0)
			break;
	}
	return n;
}

/* Exactly the events @want (in that order) arrive at @ctx, and no more. */
static void expect_events(struct pw_context *ctx, const char *who,
			  const struct expect_ev *want, int nwant)
{
	struct pw_async_event got[8];
	int n = take_events(ctx, who, got, nwant, WAIT_MS);
	bool ok = n == nwant;

	/* Anything beyond them? */
	n += take_events(ctx, who, got + n, 8 - n, QUIET_MS);
	for (int i = 0; ok && i < nwant; i++) {
		const struct pw_async_event *e = &got[i];
		bool mr_ev = want[i].type == PW_EVENT_MR_UNMAPPED ||
			     want[i].type == PW_EVENT_MR_REMAPPED;

		ok = e->event_type == want[i].type &&
		     (mr_ev ? (void *)e->element.mr == want[i].element &&
			      e->offset == want[i].offset &&
			      e->length == want[i].length
			    : (void *)e->element.qp == want[i].element &&
			      e->cause == want[i].cause);
	}
	if (nwant)
		check(ok && n == nwant, "%s: %d async event%s as expected",
		      who, nwant, nwant > 1 ? "s" : "");
	else
		check(n == 0, "%s: no async event", who);
}

/* ------------------------------------------------------------------ */
/* Connections                                                          */
/* ------------------------------------------------------------------ */

/* Take the next connection event of the peer, waiting at most WAIT_MS. */
static struct pw_cm_event *cm_event(struct peer *p)
{
	struct pollfd pfd = { .fd = p->cm->fd, .events = POLLIN };
	struct pw_cm_event *ev;

	for (uint64_t end = now_ms() + WAIT_MS;;) {
		if (pw_get_cm_event(p->cm, &ev) == 0)
			return ev;
		uint64_t now = now_ms();
		if (now >= end || poll(&pfd, 1, (int)(end - now)) < 0)
			return NULL;
	}
}

/*
 * Connect the peer to the target. The peer connects asynchronously (its
 * engine runs the handshake) so that this one thread can accept on the
 * target's side; the target's region is described in its private data.
 */
static void connect_pair(struct target *t, struct peer *p,
			 uint32_t fault_policy)
{
	struct region_info info = {
		.addr = (uintptr_t)t->buf, .len = NPAGES * pg,
		.rkey = t->mr->rkey,
	};
	struct pw_qp_init_attr pattr = { .send_cq = p->cq, .recv_cq = p->cq };
	struct pw_qp_init_attr tattr = { .send_cq = t->cq, .recv_cq = t->cq,
					 .fault_policy = fault_policy };
	struct pw_conn_param pcp = { .timeout_ms = WAIT_MS };
	struct pw_conn_param tcp = { .private_data = &info,
				     .private_data_len = sizeof(info),
				     .timeout_ms = WAIT_MS };
	struct pw_cm_event *ev;

	p->qp = pw_connect_async(p->pd, &pattr, "127.0.0.1",
				 pw_listener_port(t->listener), &pcp, p->cm);
	if (!p->qp)
		die("pw_connect_async", errno);
	t->qp = pw_accept(t->listener, t->pd, &tattr, &tcp);
	if (!t->qp)
		die("pw_accept", errno);
	ev = cm_event(p);
	if (!ev)
		die("waiting for ESTABLISHED", ETIMEDOUT);
	if (ev->event != PW_CM_EVENT_ESTABLISHED ||
	    ev->private_data_len != sizeof(p->remote)) {
		fprintf(stderr, "munmap_events: connection event %s (%s)\n",
			pw_cm_event_str(ev->event), strerror(-ev->status));
		exit(1);
	}
	memcpy(&p->remote, ev->private_data, sizeof(p->remote));
	pw_ack_cm_event(ev);
}

/* Drop the connection (after an error completion, or at the end). */
static void disconnect_pair(struct target *t, struct peer *p)
{
	struct pw_cm_event *ev;

	/* The peer's connection events since ESTABLISHED, for the record. */
	while (pw_get_cm_event(p->cm, &ev) == 0) {
		printf("       peer: connection event \"%s\"%s%s\n",
		       pw_cm_event_str(ev->event), ev->status ? ": " : "",
		       ev->status ? strerror(-ev->status) : "");
		pw_ack_cm_event(ev);
	}
	if (pw_destroy_qp(p->qp) || pw_destroy_qp(t->qp))
		die("pw_destroy_qp", EBUSY);
	p->qp = t->qp = NULL;
}

/* ------------------------------------------------------------------ */
/* The peer's operations                                                */
/* ------------------------------------------------------------------ */

/* Wait for one completion: arm the CQ, poll, sleep on the channel. */
static void wait_wc(struct peer *p, struct pw_wc *wc)
{
	struct pw_cq *ev_cq;
	void *ev_ctx;

	for (uint64_t end = now_ms() + WAIT_MS;;) {
		int n = pw_poll_cq(p->cq, 1, wc);

		if (n < 0)
			die("pw_poll_cq", -n);
		if (n)
			return;
		if (pw_req_notify_cq(p->cq, 0))
			die("pw_req_notify_cq", EINVAL);
		n = pw_poll_cq(p->cq, 1, wc);	/* one that came meanwhile */
		if (n)
			return;
		uint64_t now = now_ms();
		if (now >= end || pw_get_cq_event(p->ch, &ev_cq, &ev_ctx,
						  (int)(end - now)))
			die("waiting for a completion", ETIMEDOUT);
		pw_ack_cq_events(ev_cq, 1);
	}
}

/*
 * The peer WRITEs (from its staging buffer, filled with @round's
 * pattern) or READs (into it) @npages pages at page @page of the region
 * with key @rkey, and expects @want. Return true if it got it.
 */
static bool peer_op(struct peer *p, enum pw_wr_opcode op, uint32_t rkey,
		    size_t page, size_t npages, unsigned int round,
		    enum pw_wc_status want)
{
	size_t off = page * pg, len = npages * pg;
	struct pw_sge sge = { .addr = (uintptr_t)(p->buf + off),
			      .length = (uint32_t)len, .lkey = p->mr->lkey };
	struct pw_send_wr wr = { .wr_id = page, .sg_list = &sge, .num_sge = 1,
				 .opcode = op, .send_flags = PW_SEND_SIGNALED };
	struct pw_wc wc;
	char what[32], bytes[32];
	int err;

	wr.wr.rdma.remote_addr = p->remote.addr + off;
	wr.wr.rdma.rkey = rkey;
	if (op == PW_WR_RDMA_WRITE)
		fill(p->buf + off, len, round, off);
	else
		memset(p->buf + off, 0xee, len);	/* not what READ brings */
	err = pw_post_send(p->qp, &wr, NULL);
	if (err)
		die("pw_post_send", -err);
	wait_wc(p, &wc);
	if (wc.status == PW_WC_SUCCESS)
		snprintf(bytes, sizeof(bytes), ", %u bytes", wc.byte_len);
	else
		bytes[0] = 0;
	return check(wc.status == want &&
		     (want != PW_WC_SUCCESS || wc.byte_len == len),
		     "peer: %s of %s: \"%s\"%s%s",
		     op == PW_WR_RDMA_WRITE ? "WRITE" : "READ",
		     pages(what, sizeof(what), page, npages),
		     pw_wc_status_str(wc.status), bytes,
		     wc.status == want ? "" : " (unexpected)");
}

/* The peer READs pages and compares them with round @round (0: zeros). */
static void peer_read_check(struct peer *p, uint32_t rkey, size_t page,
			    size_t npages, unsigned int round)
{
	if (!peer_op(p, PW_WR_RDMA_READ, rkey, page, npages, 0, PW_WC_SUCCESS))
		return;
	long bad = mismatch(p->buf + page * pg, npages * pg, round, page * pg);
	check(bad < 0, "peer: the bytes read are %s%s", round ? "the data written" :
	      "zeros", bad < 0 ? "" : " - NOT, they differ");
}

/* The target's own memory holds @round's pattern (0: zeros) there. */
static void target_check(const struct target *t, size_t page, size_t npages,
			 unsigned int round)
{
	long bad = mismatch(t->buf + page * pg, npages * pg, round, page * pg);
	char what[32];

	check(bad < 0, "target: %s hold%s %s",
	      pages(what, sizeof(what), page, npages), npages > 1 ? "" : "s",
	      bad >= 0 ? "something else" : round ? "the peer's data" : "zeros");
}

static struct pw_stats peer_stats(struct peer *p)
{
	struct pw_stats st;

	if (pw_query_stats(p->ctx, &st, sizeof(st)))
		die("pw_query_stats", EINVAL);
	return st;
}

/*
 * Wait (at most WAIT_MS) until the peer's context has received @n NOTIFY
 * INVALIDATEs in all; they travel on their own, after munmap() returned.
 */
static uint64_t wait_notifications(struct peer *p, uint64_t n)
{
	for (uint64_t end = now_ms() + WAIT_MS;;) {
		struct pw_stats st = peer_stats(p);

		if (st.notifications_received >= n || now_ms() >= end)
			return st.notifications_received;
		usleep(1000);
	}
}

/* ------------------------------------------------------------------ */
/* The steps                                                            */
/* ------------------------------------------------------------------ */

static void part1(struct target *t, struct peer *p)
{
	const unsigned int access = PW_ACCESS_LOCAL_WRITE | PW_ACCESS_REMOTE_WRITE |
				    PW_ACCESS_REMOTE_READ | PW_ACCESS_ON_DEMAND;
	const size_t hole = 4, nhole = 2;	/* pages 4-5 get unmapped */
	const size_t dn = 10, ndn = 2;		/* pages 10-11 get MADV_DONTNEED */
	uint32_t old_rkey;

	printf("Part 1: an ODP region of %d pages (default registration, STALL policy)\n",
	       NPAGES);
	t->buf = map_pages(NPAGES);
	t->mr = pw_reg_mr(t->pd, t->buf, NPAGES * pg, access);
	if (!t->mr)
		die("pw_reg_mr", errno);
	/*
	 * Without the notifier (docs/semantics.md, "Degraded mode") the
	 * library does not see munmap() at all: nothing to show then.
	 */
	struct pw_stats st;
	if (pw_query_stats(t->ctx, &st, sizeof(st)) == 0 && st.notifier_off) {
		fprintf(stderr, "munmap_events: the notifier is off here (PW_NOTIFIER=off, "
			"or no userfaultfd): munmap() of registered memory goes unseen\n");
		exit(1);
	}
	connect_pair(t, p, PW_FAULT_POLICY_DEFAULT);

	printf("1. the peer writes every page (each faults in on first touch)\n");
	peer_op(p, PW_WR_RDMA_WRITE, p->remote.rkey, 0, NPAGES, 1, PW_WC_SUCCESS);
	target_check(t, 0, NPAGES, 1);
	peer_read_check(p, p->remote.rkey, 0, NPAGES, 1);

	printf("2. the target munmap()s pages %zu-%zu\n", hole, hole + nhole - 1);
	if (munmap(t->buf + hole * pg, nhole * pg))
		die("munmap", errno);
	expect_events(t->ctx, "target", (struct expect_ev[]){
		{ PW_EVENT_MR_UNMAPPED, t->mr, hole * pg, nhole * pg, 0 } }, 1);
	expect_events(p->ctx, "peer", NULL, 0);

	printf("3. the rest of the region works on the same connection\n");
	peer_read_check(p, p->remote.rkey, 0, hole, 1);
	peer_read_check(p, p->remote.rkey, hole + nhole, NPAGES - hole - nhole, 1);

	printf("4. the peer writes into the hole\n");
	peer_op(p, PW_WR_RDMA_WRITE, p->remote.rkey, hole, 1, 2,
		PW_WC_REM_ACCESS_ERR);
	/* Nothing around the hole was written. */
	target_check(t, 0, hole, 1);
	target_check(t, hole + nhole, NPAGES - hole - nhole, 1);
	/* An RC error ends the connection: both QPs are in error. */
	expect_events(p->ctx, "peer", (struct expect_ev[]){
		{ PW_EVENT_QP_FATAL, p->qp, 0, 0, PW_QP_CAUSE_REMOTE_NAK } }, 1);
	expect_events(t->ctx, "target", (struct expect_ev[]){
		{ PW_EVENT_QP_FATAL, t->qp, 0, 0, PW_QP_CAUSE_RESPONDER } }, 1);
	check(pw_qp_state(p->qp) == PW_QPS_ERR, "peer: the QP is in the error state");
	disconnect_pair(t, p);

	printf("5. on a new connection, the peer reads from the hole\n");
	connect_pair(t, p, PW_FAULT_POLICY_DEFAULT);
	peer_op(p, PW_WR_RDMA_READ, p->remote.rkey, hole + 1, 1, 0,
		PW_WC_REM_ACCESS_ERR);
	expect_events(p->ctx, "peer", (struct expect_ev[]){
		{ PW_EVENT_QP_FATAL, p->qp, 0, 0, PW_QP_CAUSE_REMOTE_NAK } }, 1);
	expect_events(t->ctx, "target", (struct expect_ev[]){
		{ PW_EVENT_QP_FATAL, t->qp, 0, 0, PW_QP_CAUSE_RESPONDER } }, 1);
	disconnect_pair(t, p);

	printf("6. the target drops pages %zu-%zu with madvise(MADV_DONTNEED)\n",
	       dn, dn + ndn - 1);
	connect_pair(t, p, PW_FAULT_POLICY_DEFAULT);
	if (madvise(t->buf + dn * pg, ndn * pg, MADV_DONTNEED))
		die("madvise", errno);
	expect_events(t->ctx, "target", NULL, 0);
	peer_read_check(p, p->remote.rkey, dn, ndn, 0);
	peer_op(p, PW_WR_RDMA_WRITE, p->remote.rkey, dn, ndn, 3, PW_WC_SUCCESS);
	target_check(t, dn, ndn, 3);
	peer_read_check(p, p->remote.rkey, dn, ndn, 3);

	printf("7. the target maps the hole again; the old key stays dead there\n");
	if (mmap(t->buf + hole * pg, nhole * pg, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
		die("mmap", errno);
	peer_op(p, PW_WR_RDMA_WRITE, p->remote.rkey, hole, nhole, 4,
		PW_WC_REM_ACCESS_ERR);
	target_check(t, hole, nhole, 0);
	expect_events(p->ctx, "peer", (struct expect_ev[]){
		{ PW_EVENT_QP_FATAL, p->qp, 0, 0, PW_QP_CAUSE_REMOTE_NAK } }, 1);
	expect_events(t->ctx, "target", (struct expect_ev[]){
		{ PW_EVENT_QP_FATAL, t->qp, 0, 0, PW_QP_CAUSE_RESPONDER } }, 1);
	disconnect_pair(t, p);

	printf("8. the target registers the region anew: the new key works everywhere\n");
	/* A dead range stays dead for its MR's lifetime: replace the MR. */
	old_rkey = t->mr->rkey;
	if (pw_dereg_mr(t->mr))
		die("pw_dereg_mr", EBUSY);
	t->mr = pw_reg_mr(t->pd, t->buf, NPAGES * pg, access);
	if (!t->mr)
		die("pw_reg_mr", errno);
	connect_pair(t, p, PW_FAULT_POLICY_DEFAULT);
	check(p->remote.rkey != old_rkey, "peer: got a new rkey 0x%x (was 0x%x)",
	      p->remote.rkey, old_rkey);
	peer_op(p, PW_WR_RDMA_WRITE, p->remote.rkey, 0, NPAGES, 5, PW_WC_SUCCESS);
	target_check(t, 0, NPAGES, 5);
	peer_read_check(p, p->remote.rkey, 0, NPAGES, 5);
	expect_events(p->ctx, "peer", NULL, 0);
	expect_events(t->ctx, "target", NULL, 0);
	disconnect_pair(t, p);

	if (pw_dereg_mr(t->mr))
		die("pw_dereg_mr", EBUSY);
	munmap(t->buf, NPAGES * pg);
	t->mr = NULL;
}

static void part2(struct target *t, struct peer *p)
{
	const size_t hole = 6;
	struct pw_qp_attr qa;
	uint64_t n0, n1, f0, f1;

	printf("Part 2: an ODP region registered with PW_ACCESS_ODP_FOLLOW_VA, "
	       "served with the NOTIFY policy\n");
	t->buf = map_pages(NPAGES);
	t->mr = pw_reg_mr(t->pd, t->buf, NPAGES * pg, PW_ACCESS_LOCAL_WRITE |
			  PW_ACCESS_REMOTE_WRITE | PW_ACCESS_REMOTE_READ |
			  PW_ACCESS_ON_DEMAND | PW_ACCESS_ODP_FOLLOW_VA);
	if (!t->mr)
		die("pw_reg_mr", errno);
	connect_pair(t, p, PW_FAULT_NOTIFY);
	if (pw_query_qp(t->qp, &qa, sizeof(qa)))
		die("pw_query_qp", EINVAL);
	check(qa.fault_policy == PW_FAULT_NOTIFY &&
	      (qa.features & PW_QP_FEATURE_NOTIFY),
	      "target: the QP uses the NOTIFY protocol");

	printf("9. the peer writes every page\n");
	peer_op(p, PW_WR_RDMA_WRITE, p->remote.rkey, 0, NPAGES, 6, PW_WC_SUCCESS);
	target_check(t, 0, NPAGES, 6);

	printf("10. the target munmap()s page %zu: the peer is told\n", hole);
	n0 = wait_notifications(p, 0);
	if (munmap(t->buf + hole * pg, pg))
		die("munmap", errno);
	n1 = wait_notifications(p, n0 + 1);
	check(n1 == n0 + 1, "peer: %" PRIu64 " INVALIDATE received "
	      "(pw_stats.notifications_received)", n1 - n0);
	/* FOLLOW_VA: the range is not dead, only dropped, so no event. */
	expect_events(t->ctx, "target", NULL, 0);
	peer_read_check(p, p->remote.rkey, 0, hole, 6);
	/*
	 * The peer knows the page is invalid, so its WRITE asks the target
	 * to fault it in first (FAULT_IN); nothing is mapped there, so the
	 * answer is a remote access error, as without NOTIFY.
	 */
	f0 = peer_stats(p).fault_in_sent;
	peer_op(p, PW_WR_RDMA_WRITE, p->remote.rkey, hole, 1, 7,
		PW_WC_REM_ACCESS_ERR);
	f1 = peer_stats(p).fault_in_sent;
	check(f1 == f0 + 1, "peer: %" PRIu64 " FAULT_IN sent before the WRITE "
	      "(pw_stats.fault_in_sent)", f1 - f0);
	target_check(t, 0, hole, 6);
	target_check(t, hole + 1, NPAGES - hole - 1, 6);
	expect_events(p->ctx, "peer", (struct expect_ev[]){
		{ PW_EVENT_QP_FATAL, p->qp, 0, 0, PW_QP_CAUSE_REMOTE_NAK } }, 1);
	expect_events(t->ctx, "target", (struct expect_ev[]){
		{ PW_EVENT_QP_FATAL, t->qp, 0, 0, PW_QP_CAUSE_RESPONDER } }, 1);
	disconnect_pair(t, p);

	printf("11. the target maps page %zu again: the same key reaches it\n", hole);
	if (mmap(t->buf + hole * pg, pg, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
		die("mmap", errno);
	connect_pair(t, p, PW_FAULT_NOTIFY);
	peer_read_check(p, p->remote.rkey, hole, 1, 0);
	peer_op(p, PW_WR_RDMA_WRITE, p->remote.rkey, hole, 1, 8, PW_WC_SUCCESS);
	target_check(t, hole, 1, 8);
	peer_read_check(p, p->remote.rkey, hole, 1, 8);
	peer_read_check(p, p->remote.rkey, hole + 1, NPAGES - hole - 1, 6);
	expect_events(p->ctx, "peer", NULL, 0);
	expect_events(t->ctx, "target", NULL, 0);
	disconnect_pair(t, p);

	if (pw_dereg_mr(t->mr))
		die("pw_dereg_mr", EBUSY);
	munmap(t->buf, NPAGES * pg);
	t->mr = NULL;
}

static void teardown(struct target *t, struct peer *p)
{
	pw_close_listener(t->listener);
	pw_dereg_mr(p->mr);
	munmap(p->buf, NPAGES * pg);
	pw_destroy_cq(t->cq);
	pw_destroy_cq(p->cq);
	pw_destroy_comp_channel(p->ch);
	pw_destroy_cm_channel(p->cm);
	pw_dealloc_pd(t->pd);
	pw_dealloc_pd(p->pd);
	if (pw_close(t->ctx) || pw_close(p->ctx))
		die("pw_close", EBUSY);
}

int main(int argc, char **argv)
{
	struct target t = { 0 };
	struct peer p = { 0 };

	(void)argv;
	if (argc > 1) {
		fprintf(stderr, "usage: munmap_events (no arguments)\n");
		return 2;
	}
	pg = (size_t)sysconf(_SC_PAGESIZE);
	setvbuf(stdout, NULL, _IOLBF, 0);
	setup(&t, &p);
	part1(&t, &p);
	part2(&t, &p);
	teardown(&t, &p);
	if (failures) {
		printf("munmap_events: FAILED: %u of %u observations were not as expected\n",
		       failures, checks);
		return 1;
	}
	printf("munmap_events: OK, all %u observations as expected\n", checks);
	return 0;
}
