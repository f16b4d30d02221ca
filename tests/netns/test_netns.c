/* SPDX-License-Identifier: MIT */
/*
 * Multi-host tests: targets and initiators on "hosts" that are network
 * namespaces joined by veth pairs, with faults on the links between them.
 * Run as root; without root, iproute2, veth or iptables (and for
 * loss_delay, libnetfilter_queue) each case exits 77 with the reason. See
 * nsenv.h for the process layout and netem.h for the loss and delay (this
 * kernel has no sch_netem).
 *
 *   itest_netns loss_delay      1% loss and 5 ms delay each way on two
 *                               links, two initiators, every byte verified
 *   itest_netns link_cut        the link dropped for 10 s under a WR
 *                               stream: RETRY_EXC_ERR then flushes within
 *                               the configured dead-peer bound (3 s)
 *   itest_netns link_blip       a 1 s cut under an 8 s bound: the stream
 *                               survives, data verified
 *   itest_netns peer_kill       the target SIGKILLed mid-stream; then a
 *                               fresh target on a third host works
 *   itest_netns conn_reset ss   `ss -K` on the initiator's socket
 *   itest_netns conn_reset rst  iptables REJECT --reject-with tcp-reset
 *   itest_netns dead_peer_default  a cut with nothing configured: the
 *                               default bound (30 s) holds
 *
 * Every case prints what it measured (bytes verified, drops, RTT,
 * detection times, statuses).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "netem.h"
#include "nsenv.h"
#include "pwtest.h"

/* Hosts */
#define H_A	0	/* initiator */
#define H_B	1	/* target */
#define H_C	2	/* a third host: second initiator or fresh target */

/* A case's own limit (the pwtest watchdog is shortened to it); the
 * supervisor kills the run a little later, CTest later still. */
#define CASE_LIMIT_S	100

#define SLOT		(1u << 20)	/* receive slot: the largest SEND */
#define DONE_IMM	0xd0d0d0d0u
#define DONE_MAGIC	0x646f6e6521ull
#define HELLO_MAGIC	0x68656c6cu

/* ------------------------------------------------------------------ */
/* Control messages between the runner and the hosts                   */
/* ------------------------------------------------------------------ */

enum msg_type {
	M_PORT = 'P',		/* target -> runner: v[0] = port */
	M_ACCEPTED = 'a',	/* target -> runner: v[0] = conn index */
	M_ACCEPT = 'A',		/* runner -> target: accept one more */
	M_MARK = 'T',		/* runner -> target: fault now, time from here */
	M_VERIFIED = 'V',	/* target -> runner: conn, region bytes, sends, send bytes */
	M_QP_ERR = 'E',		/* target -> runner: conn, ms since mark, flushed recvs */
	M_EXIT = 'X',		/* runner -> host: tear down and exit */
	M_FAULT = 'F',		/* initiator -> runner: inject the fault now */
	M_FAULT_DONE = 'f',	/* runner -> initiator: injected (or target stopped) */
	M_QUIET = 'Q',		/* initiator -> runner: queue full and quiet: fault now */
	M_INJECTED = 'i',	/* runner -> initiator: the fault is in */
	M_STREAM = 'S',		/* initiator -> runner: stream result */
	M_GO = 'G',		/* runner -> initiator: go on (reconnect) */
	M_DONE = 'D',		/* initiator -> runner: finished, figures */
	M_READY = 'R',		/* netem -> runner: queue bound */
	M_ERROR = 'e',		/* netem -> runner: could not start, text */
	M_STOP = 's',		/* runner -> netem: stop */
	M_STATS = 'N',		/* netem -> runner: struct netem_stats in v[] */
};

struct msg {
	uint32_t type;
	uint32_t n;
	uint64_t v[10];
	char text[160];
};

static void msg_send(int fd, uint32_t type, const uint64_t *v, unsigned int n)
{
	struct msg m;

	memset(&m, 0, sizeof(m));
	m.type = type;
	m.n = n;
	if (n)
		memcpy(m.v, v, n * sizeof(*v));
	pwt_ctl_send(fd, &m, sizeof(m));
}

static void msg_send0(int fd, uint32_t type)
{
	msg_send(fd, type, NULL, 0);
}

/* In a host: the next message, which must be @type. */
static void host_recv(int fd, struct msg *m, uint32_t type, int timeout_ms)
{
	pwt_ctl_recv(fd, m, sizeof(*m), timeout_ms);
	PWT_ASSERTF(m->type == type, "control message '%c', want '%c'", (int)m->type,
		    (int)type);
}

/*
 * In the runner: the next message from host @c, which must be @type.
 * When the host died instead, its exit status is the failure reported.
 */
static void run_recv(struct pwt_child *c, const char *who, struct msg *m,
		     uint32_t type, int timeout_ms)
{
	ssize_t n = pwt_read_full(c->fd, m, sizeof(*m), timeout_ms);

	if (n != (ssize_t)sizeof(*m)) {
		pid_t pid = c->pid;
		int st;

		if (n == -ETIMEDOUT)
			pwt_fail(__FILE__, __LINE__, "%s: no '%c' within %d ms", who,
				 (int)type, timeout_ms);
		st = pwt_child_wait(c, 5000);
		pwt_fail(__FILE__, __LINE__, "%s (pid %d) ended before '%c': %s %d", who,
			 (int)pid, (int)type,
			 WIFSIGNALED(st) ? "signal" : "exit status",
			 WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
	}
	if (m->type != type)
		pwt_fail(__FILE__, __LINE__, "%s: control message '%c', want '%c'", who,
			 (int)m->type, (int)type);
}

/* ------------------------------------------------------------------ */
/* Hosts                                                               */
/* ------------------------------------------------------------------ */

struct host_start {
	int host;
	int (*fn)(int fd, void *arg);
	void *arg;
};

static int host_tramp(int fd, void *arg)
{
	struct host_start *hs = arg;

	ns_enter(hs->host);	/* before any pagewire context */
	return hs->fn(fd, hs->arg);
}

static void host_fork(struct pwt_child *c, int host, int (*fn)(int fd, void *arg),
		      void *arg)
{
	struct host_start hs = { host, fn, arg };

	pwt_fork(c, host_tramp, &hs);
}

static void host_exit(struct pwt_child *c)
{
	msg_send0(c->fd, M_EXIT);
	PWT_CHILD_OK(c, 30000);
}

/* What an initiator tells the target in its private data. */
struct hello {
	uint32_t magic;
	uint32_t seed;
};

/* The SEND that ends an initiator's work on a QP. */
struct done_msg {
	uint64_t magic;
	uint64_t seed;
	uint64_t region_bytes;	/* region[0, this) holds pattern seed */
	uint64_t sends;		/* SENDs before this one */
	uint64_t send_bytes;
};

static uint32_t msg_seed(uint32_t seed, uint64_t i)
{
	return (seed << 16) + (uint32_t)i + 1;
}

/* SEND sizes: 0 to 1 MiB, the extremes included. */
static uint32_t send_size(uint64_t i)
{
	static const uint32_t fixed[] = { SLOT, 1, 0, 4096, 65536 + 7, SLOT - 1 };

	if (i < PWT_ARRAY_SIZE(fixed))
		return fixed[i];
	return (uint32_t)((i * 104729u) % (SLOT + 1));
}

/* ------------------------------------------------------------------ */
/* The target                                                          */
/* ------------------------------------------------------------------ */

#define TGT_MAX_CONN	4

struct tgt_cfg {
	int naccept;		/* connections accepted at start */
	size_t region;		/* bytes of each connection's region */
	enum pwt_mode mode[TGT_MAX_CONN];
	uint32_t peer_timeout_ms; /* pw_context_attr; 0: default */
	int nrecv;		/* receive slots per connection */
};

struct tconn {
	struct pw_qp *qp;
	struct pwt_buf region;
	struct pwt_buf slots;
	uint32_t seed;
	uint64_t sends, send_bytes;
	int recv_out;		/* receives posted and not completed */
	int flushed;
	bool err_reported;
};

struct target {
	const struct tgt_cfg *cfg;
	struct pwt_side s;
	struct pw_listener *l;
	struct tconn conn[TGT_MAX_CONN];
	int nconn;
	uint64_t mark_us;
	int fd;
};

static void tgt_post_recv(struct target *t, int ci, int slot)
{
	struct tconn *c = &t->conn[ci];

	PWT_OK(pwt_post_recv1(c->qp, ((uint64_t)ci << 16) | (unsigned int)slot,
			      c->slots.addr + (size_t)slot * SLOT, SLOT, c->slots.lkey));
	c->recv_out++;
}

static void tgt_accept(struct target *t)
{
	struct pw_qp_init_attr attr;
	struct pw_conn_param param;
	struct pwt_remote r;
	struct hello h;
	int ci = t->nconn;
	struct tconn *c = &t->conn[ci];

	PWT_ASSERT(ci < TGT_MAX_CONN);
	memset(c, 0, sizeof(*c));
	pwt_buf_alloc(&c->region, &t->s, t->cfg->region, PWT_ACCESS_ALL, t->cfg->mode[ci]);
	pwt_buf_alloc(&c->slots, &t->s, (size_t)t->cfg->nrecv * SLOT, PWT_ACCESS_ALL,
		      PWT_PINNED);
	memset(&r, 0, sizeof(r));
	r.addr = pwt_va(c->region.addr);
	r.len = c->region.len;
	r.rkey = c->region.rkey;
	memset(&attr, 0, sizeof(attr));
	attr.send_cq = t->s.scq;
	attr.recv_cq = t->s.rcq;
	attr.cap.max_recv_wr = (uint32_t)t->cfg->nrecv + 4;
	memset(&param, 0, sizeof(param));
	param.private_data = &r;
	param.private_data_len = sizeof(r);
	param.timeout_ms = 60000;
	c->qp = pw_accept(t->l, t->s.pd, &attr, &param);
	PWT_NONNULL(c->qp);
	PWT_EQ(c->qp->peer_private_data_len, sizeof(h));
	memcpy(&h, c->qp->peer_private_data, sizeof(h));
	PWT_EQ(h.magic, HELLO_MAGIC);
	c->seed = h.seed;
	for (int i = 0; i < t->cfg->nrecv; i++)
		tgt_post_recv(t, ci, i);
	t->nconn++;
}

static int tgt_conn_of(struct target *t, uint32_t qp_num)
{
	for (int i = 0; i < t->nconn; i++)
		if (t->conn[i].qp->qp_num == qp_num)
			return i;
	pwt_fail(__FILE__, __LINE__, "completion for unknown QP %u", qp_num);
}

static void tgt_on_recv(struct target *t, const struct pw_wc *wc)
{
	int ci = tgt_conn_of(t, wc->qp_num);
	struct tconn *c = &t->conn[ci];
	int slot = (int)(wc->wr_id & 0xffff);
	uint8_t *p = c->slots.addr + (size_t)slot * SLOT;

	PWT_EQ(wc->wr_id >> 16, ci);
	c->recv_out--;
	if (wc->status != PW_WC_SUCCESS) {
		PWT_ASSERTF(wc->status == PW_WC_WR_FLUSH_ERR,
			    "target receive: %s, want success or WR_FLUSH_ERR",
			    pw_wc_status_str(wc->status));
		c->flushed++;
		return;
	}
	PWT_ASSERT(wc->wc_flags & PW_WC_WITH_IMM);
	if (wc->imm_data == DONE_IMM) {
		struct done_msg d;
		uint64_t v[4];

		PWT_EQ(wc->byte_len, sizeof(d));
		memcpy(&d, p, sizeof(d));
		PWT_EQ(d.magic, DONE_MAGIC);
		PWT_EQ(d.seed, c->seed);
		PWT_EQ(d.sends, c->sends);
		PWT_EQ(d.send_bytes, c->send_bytes);
		PWT_ASSERT(d.region_bytes <= c->region.len);
		/* every byte the initiator wrote, as the target sees it */
		PWT_PATTERN(c->region.addr, d.region_bytes, c->seed, 0);
		v[0] = (uint64_t)ci;
		v[1] = d.region_bytes;
		v[2] = c->sends;
		v[3] = c->send_bytes;
		msg_send(t->fd, M_VERIFIED, v, 4);
	} else {
		PWT_EQ(wc->imm_data, c->sends);
		PWT_EQ(wc->byte_len, send_size(c->sends));
		PWT_PATTERN(p, wc->byte_len, msg_seed(c->seed, c->sends), 0);
		c->sends++;
		c->send_bytes += wc->byte_len;
	}
	tgt_post_recv(t, ci, slot);
}

static int target_main(int fd, void *arg)
{
	const struct tgt_cfg *cfg = arg;
	struct pw_context_attr ca;
	struct target t;
	uint64_t port;

	memset(&t, 0, sizeof(t));
	t.cfg = cfg;
	t.fd = fd;
	memset(&ca, 0, sizeof(ca));
	ca.peer_timeout_ms = cfg->peer_timeout_ms;
	pwt_side_open_attr(&t.s, &ca);
	t.l = pw_listen(t.s.ctx, NULL, 0);
	PWT_NONNULL(t.l);
	port = pw_listener_port(t.l);
	msg_send(fd, M_PORT, &port, 1);
	for (int i = 0; i < cfg->naccept; i++) {
		uint64_t ci = (uint64_t)i;

		tgt_accept(&t);
		msg_send(fd, M_ACCEPTED, &ci, 1);
	}

	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		struct pw_wc wc[16];
		int n = pw_poll_cq(t.s.rcq, 16, wc);

		PWT_ASSERTF(n >= 0, "pw_poll_cq: %s", pwt_strerr(n));
		for (int i = 0; i < n; i++)
			tgt_on_recv(&t, &wc[i]);
		for (int i = 0; i < t.nconn; i++) {
			struct tconn *c = &t.conn[i];
			uint64_t v[3];

			if (c->err_reported || pw_qp_state(c->qp) != PW_QPS_ERR ||
			    c->recv_out)
				continue;
			v[0] = (uint64_t)i;
			v[1] = t.mark_us ? (pwt_now_us() - t.mark_us) / 1000 : 0;
			v[2] = (uint64_t)c->flushed;
			msg_send(fd, M_QP_ERR, v, 3);
			c->err_reported = true;
		}
		if (n)
			continue;
		if (poll(&pfd, 1, 1) == 1) {
			struct msg m;

			pwt_ctl_recv(fd, &m, sizeof(m), 5000);
			if (m.type == M_EXIT)
				break;
			if (m.type == M_MARK) {
				t.mark_us = pwt_now_us();
			} else if (m.type == M_ACCEPT) {
				uint64_t ci = (uint64_t)t.nconn;

				tgt_accept(&t);
				msg_send(fd, M_ACCEPTED, &ci, 1);
			} else {
				PWT_ASSERTF(0, "target: control message '%c'", (int)m.type);
			}
		}
	}
	for (int i = 0; i < t.nconn; i++) {
		PWT_OK(pw_destroy_qp(t.conn[i].qp));
		pwt_buf_free(&t.conn[i].region);
		pwt_buf_free(&t.conn[i].slots);
	}
	PWT_OK(pw_close_listener(t.l));
	pwt_side_close(&t.s);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Initiator helpers                                                   */
/* ------------------------------------------------------------------ */

struct ini {
	struct pwt_side s;
	struct pwt_remote r;
	uint32_t seed;
	int fd;
};

static void ini_open(struct ini *in, int fd, uint32_t seed)
{
	memset(in, 0, sizeof(*in));
	in->fd = fd;
	in->seed = seed;
	pwt_side_open(&in->s);
}

/* A QP to @ip:@port on the given CQs; the target's region in *@r. */
static struct pw_qp *ini_qp(struct ini *in, const char *ip, uint16_t port,
			    uint32_t peer_timeout_ms, uint32_t depth, struct pw_cq *scq,
			    struct pw_cq *rcq, struct pwt_remote *r)
{
	struct hello h = { HELLO_MAGIC, in->seed };
	struct pw_conn_param param = { .private_data = &h, .private_data_len = sizeof(h),
				       .timeout_ms = 30000 };
	struct pw_qp_init_attr attr;
	uint64_t t0 = pwt_now_ms();
	struct pw_qp *qp;

	memset(&attr, 0, sizeof(attr));
	attr.send_cq = scq;
	attr.recv_cq = rcq;
	attr.cap.max_send_wr = depth + 8;
	attr.rnr_retry = 7;	/* infinite: SENDs may outrun reposts */
	attr.peer_timeout_ms = peer_timeout_ms;
	qp = pw_connect(in->s.pd, &attr, ip, port, &param);
	PWT_ASSERTF(qp, "pw_connect %s:%u after %" PRIu64 " ms: %s (%s)", ip, port,
		    pwt_now_ms() - t0, strerror(errno), pw_last_error());
	if (peer_timeout_ms)
		PWT_EQ(attr.peer_timeout_ms, peer_timeout_ms);
	pwt_remote_from_qp(qp, r);
	return qp;
}

/* The initiator's main QP to @ip:@port (replacing the previous one). */
static void ini_connect(struct ini *in, const char *ip, uint16_t port,
			uint32_t peer_timeout_ms, uint32_t depth)
{
	if (in->s.qp)
		PWT_OK(pw_destroy_qp(in->s.qp));
	in->s.qp = NULL;
	in->s.qp = ini_qp(in, ip, port, peer_timeout_ms, depth, in->s.scq, in->s.rcq, &in->r);
}

/* The final SEND on a QP; its completion means the target has it. */
static void ini_done(struct ini *in, struct pwt_buf *buf, uint64_t region_bytes,
		     uint64_t sends, uint64_t send_bytes)
{
	struct done_msg d = { DONE_MAGIC, in->seed, region_bytes, sends, send_bytes };

	memcpy(buf->addr, &d, sizeof(d));
	PWT_OK(pwt_post_send1(in->s.qp, PW_WR_SEND_WITH_IMM, 0xd0e, buf->addr, sizeof(d),
			      buf->lkey, DONE_IMM, PW_SEND_SIGNALED));
	PWT_EXPECT_OK(in->s.scq, 0xd0e, PW_WC_SEND, sizeof(d), in->s.qp->qp_num);
}

/*
 * Writes src[0, len) to the region in chunks of @sizes (round robin),
 * then reads the region back into sink and compares; at most @depth in
 * flight. Returns bytes moved.
 */
static uint64_t ini_write_read(struct ini *in, struct pwt_buf *src, struct pwt_buf *sink,
			       size_t len, const uint32_t *sizes, size_t nsizes,
			       unsigned int depth)
{
	struct pw_qp *qp = in->s.qp;
	uint32_t lens[64];

	PWT_ASSERT(depth <= 64 && len <= in->r.len && len <= src->len && len <= sink->len);
	for (int pass = 0; pass < 2; pass++) {
		enum pw_wr_opcode op = pass ? PW_WR_RDMA_READ : PW_WR_RDMA_WRITE;
		enum pw_wc_opcode wop = pass ? PW_WC_RDMA_READ : PW_WC_RDMA_WRITE;
		uint64_t id = 0, done = 0;
		size_t off = 0;

		for (size_t k = 0; off < len; k++) {
			uint32_t l = sizes[(k + (size_t)pass * 3) % nsizes];

			if (l > len - off)
				l = (uint32_t)(len - off);
			if (id - done >= depth) {
				PWT_EXPECT_OK(in->s.scq, done, wop, lens[done % 64], qp->qp_num);
				done++;
			}
			lens[id % 64] = l;
			PWT_OK(pwt_post_rdma(qp, op, id++,
					     (pass ? sink->addr : src->addr) + off, l,
					     pass ? sink->lkey : src->lkey, in->r.addr + off,
					     in->r.rkey, PW_SEND_SIGNALED));
			off += l;
		}
		for (; done < id; done++)
			PWT_EXPECT_OK(in->s.scq, done, wop, lens[done % 64], qp->qp_num);
	}
	PWT_MEMEQ(sink->addr, src->addr, len);
	return 2 * (uint64_t)len;
}

/* Round-trip time of small READs (the link's, plus the engines'). */
static void ini_rtt(struct ini *in, struct pwt_buf *sink, unsigned int n,
		    uint64_t *min_us, uint64_t *med_us)
{
	uint64_t t[64];

	PWT_ASSERT(n <= 64);
	for (unsigned int i = 0; i < n; i++) {
		uint64_t t0 = pwt_now_us();

		PWT_OK(pwt_post_rdma(in->s.qp, PW_WR_RDMA_READ, 0x7700 + i, sink->addr, 8,
				     sink->lkey, in->r.addr, in->r.rkey, PW_SEND_SIGNALED));
		PWT_EXPECT_OK(in->s.scq, 0x7700 + i, PW_WC_RDMA_READ, 8, in->s.qp->qp_num);
		t[i] = pwt_now_us() - t0;
	}
	for (unsigned int i = 1; i < n; i++)
		for (unsigned int j = i; j > 0 && t[j - 1] > t[j]; j--) {
			uint64_t x = t[j];

			t[j] = t[j - 1];
			t[j - 1] = x;
		}
	*min_us = t[0];
	*med_us = t[n / 2];
}

/*
 * A stream of WRITEs and READs of @chunk bytes over the region (even WRs
 * write src, odd ones read into sink and compare with src), @depth in
 * flight, completions checked in order. After @trigger_ok successes it
 * asks the runner for the fault (M_FAULT) and goes on streaming. With
 * @total it ends after at least that many WRs, all successful, and not
 * before the runner answered (for a short cut: once the link is back, so
 * that the cut surely hit the stream); with 0, at the first error, once
 * every outstanding WR has completed: the first with an error, the rest
 * with WR_FLUSH_ERR.
 *
 * With @quiesce, M_FAULT asks the runner to SIGSTOP the target first;
 * once the queue is full and no completion came for QUIET_MS, M_QUIET
 * asks for the fault itself. Otherwise the fault may find every WR
 * already completed: a reset races with the responses that were in the
 * socket before it (they are still read), and a QP that fails with
 * nothing outstanding has no WR to report RETRY_EXC_ERR on (later posts
 * just flush, as verbs does).
 */
#define QUIET_MS	200

struct stream_cfg {
	uint32_t chunk;
	unsigned int depth;
	uint64_t trigger_ok;
	uint64_t total;
	bool quiesce;
	int wait_ms;		/* longest wait for a completion */
};

struct stream_res {
	uint64_t posted, ok, flushed, verified;
	enum pw_wc_status first_err;
	bool errored;
	uint64_t t_fault_us, t_first_err_us, t_last_us, max_gap_us;
};

static void stream_post(struct ini *in, struct pwt_buf *src, struct pwt_buf *sink,
			const struct stream_cfg *cfg, uint64_t n)
{
	uint64_t nchunks = in->r.len / cfg->chunk;
	size_t off = (size_t)((n / 2) % nchunks) * cfg->chunk;

	if (n % 2 == 0)
		PWT_OK(pwt_post_rdma(in->s.qp, PW_WR_RDMA_WRITE, n, src->addr + off,
				     cfg->chunk, src->lkey, in->r.addr + off, in->r.rkey,
				     PW_SEND_SIGNALED));
	else
		PWT_OK(pwt_post_rdma(in->s.qp, PW_WR_RDMA_READ, n, sink->addr + off,
				     cfg->chunk, sink->lkey, in->r.addr + off, in->r.rkey,
				     PW_SEND_SIGNALED));
}

static void stream_wc(struct ini *in, struct pwt_buf *src, struct pwt_buf *sink,
		      const struct stream_cfg *cfg, struct stream_res *res,
		      const struct pw_wc *wc, uint64_t completed)
{
	uint64_t nchunks = in->r.len / cfg->chunk;

	PWT_ASSERTF(wc->wr_id == completed, "completion for WR %" PRIu64 ", want %" PRIu64
		    " (%s)", wc->wr_id, completed, pw_wc_status_str(wc->status));
	PWT_EQ(wc->qp_num, in->s.qp->qp_num);
	if (wc->status == PW_WC_SUCCESS) {
		PWT_ASSERTF(!res->errored, "WR %" PRIu64 " succeeded after a WR failed",
			    wc->wr_id);
		PWT_EQ(wc->opcode, wc->wr_id % 2 ? PW_WC_RDMA_READ : PW_WC_RDMA_WRITE);
		PWT_EQ(wc->byte_len, cfg->chunk);
		if (wc->wr_id % 2) {
			size_t off = (size_t)((wc->wr_id / 2) % nchunks) * cfg->chunk;

			PWT_MEMEQ(sink->addr + off, src->addr + off, cfg->chunk);
			res->verified += cfg->chunk;
		}
		res->ok++;
	} else if (!res->errored) {
		res->errored = true;
		res->first_err = wc->status;
		res->t_first_err_us = pwt_now_us();
		PWT_ASSERTF(cfg->total == 0, "WR %" PRIu64 " failed: %s", wc->wr_id,
			    pw_wc_status_str(wc->status));
	} else {
		PWT_ASSERTF(wc->status == PW_WC_WR_FLUSH_ERR,
			    "WR %" PRIu64 " after the first error: %s, want WR_FLUSH_ERR",
			    wc->wr_id, pw_wc_status_str(wc->status));
		res->flushed++;
	}
}

enum stream_phase {
	SP_RUN,		/* before the fault */
	SP_ASKED,	/* M_FAULT sent, no answer yet */
	SP_QUIET,	/* target stopped: waiting for the queue to go quiet */
	SP_FAULT,	/* the fault is in */
};

static void stream_run(struct ini *in, struct pwt_buf *src, struct pwt_buf *sink,
		       const struct stream_cfg *cfg, struct stream_res *res)
{
	enum stream_phase ph = SP_RUN;
	uint64_t completed = 0, nchunks = in->r.len / cfg->chunk, last_us;
	struct msg m;

	memset(res, 0, sizeof(*res));
	PWT_ASSERT(2 * nchunks >= cfg->depth && src->len >= in->r.len &&
		   sink->len >= in->r.len);
	last_us = pwt_now_us();
	for (;;) {
		struct pw_wc wc;
		uint64_t now;
		int got;

		while (!res->errored && res->posted - completed < cfg->depth &&
		       (!cfg->total || res->posted < cfg->total || ph == SP_ASKED))
			stream_post(in, src, sink, cfg, res->posted++);
		/* short polls while the runner may have something for us */
		got = pwt_poll_wc(in->s.scq, &wc, ph == SP_ASKED || ph == SP_QUIET ?
				  10 : cfg->wait_ms);
		now = pwt_now_us();
		if (got) {
			if (ph != SP_RUN && now - last_us > res->max_gap_us)
				res->max_gap_us = now - last_us;
			last_us = now;
			stream_wc(in, src, sink, cfg, res, &wc, completed);
			completed++;
			res->t_last_us = now;
		} else if (now - last_us > (uint64_t)cfg->wait_ms * 1000) {
			pwt_fail(__FILE__, __LINE__,
				 "no completion for %d ms (%" PRIu64 " posted, %" PRIu64
				 " completed, %" PRIu64 " ms after the fault)",
				 cfg->wait_ms, res->posted, completed,
				 ph == SP_FAULT ? (now - res->t_fault_us) / 1000 : 0);
		}

		if (ph == SP_RUN && cfg->trigger_ok && res->ok == cfg->trigger_ok) {
			res->t_fault_us = now;
			msg_send0(in->fd, M_FAULT);
			ph = SP_ASKED;
		} else if (ph == SP_ASKED) {
			struct pollfd pfd = { .fd = in->fd, .events = POLLIN };

			if (poll(&pfd, 1, 0) == 1) {
				host_recv(in->fd, &m, M_FAULT_DONE, 1000);
				ph = cfg->quiesce ? SP_QUIET : SP_FAULT;
			}
		} else if (ph == SP_QUIET && !got && res->posted - completed == cfg->depth &&
			   now - last_us >= QUIET_MS * 1000u) {
			/* nothing moves: now the fault, with the queue full */
			res->t_fault_us = pwt_now_us();
			msg_send0(in->fd, M_QUIET);
			host_recv(in->fd, &m, M_INJECTED, 30000);
			ph = SP_FAULT;
			last_us = pwt_now_us();
		}
		if (res->errored && completed == res->posted)
			break;
		if (cfg->total && completed >= cfg->total && completed == res->posted &&
		    ph != SP_ASKED)
			break;
	}
	PWT_ASSERTF(!cfg->trigger_ok || ph == SP_FAULT || (ph == SP_ASKED && !cfg->quiesce),
		    "the stream ended before the fault (phase %d)", (int)ph);
	if (ph == SP_ASKED)
		host_recv(in->fd, &m, M_FAULT_DONE, 30000);
}

/*
 * After a stream that ended in an error: the QP is in error, the first
 * error was RETRY_EXC_ERR, the posted receives are flushed, and a new
 * post flushes at once. The figures for the runner go to v[0..7].
 */
static void stream_check_dead(struct ini *in, struct pwt_buf *src,
			      const struct stream_res *res, int nrecv, uint64_t *v)
{
	PWT_ASSERT(res->errored);
	PWT_ASSERTF(res->first_err == PW_WC_RETRY_EXC_ERR,
		    "first error completion: %s, want RETRY_EXC_ERR",
		    pw_wc_status_str(res->first_err));
	PWT_WAIT_STATE(in->s.qp, PW_QPS_ERR);
	for (int i = 0; i < nrecv; i++)
		PWT_EXPECT_ERR(in->s.rcq, 0x500 + (uint64_t)i, PW_WC_WR_FLUSH_ERR,
			       in->s.qp->qp_num);
	PWT_OK(pwt_post_rdma(in->s.qp, PW_WR_RDMA_WRITE, 0xffff, src->addr, 64, src->lkey,
			     in->r.addr, in->r.rkey, PW_SEND_SIGNALED));
	PWT_EXPECT_ERR(in->s.scq, 0xffff, PW_WC_WR_FLUSH_ERR, in->s.qp->qp_num);
	PWT_NO_WC(in->s.scq, 20);
	PWT_NO_WC(in->s.rcq, 0);

	v[0] = res->posted;
	v[1] = res->ok;
	v[2] = res->flushed;
	v[3] = (uint64_t)res->first_err;
	v[4] = (res->t_first_err_us - res->t_fault_us) / 1000;
	v[5] = (res->t_last_us - res->t_fault_us) / 1000;
	v[6] = res->verified;
	v[7] = res->posted - res->ok;	/* outstanding at the failure */
}

static void ini_post_recvs(struct ini *in, struct pwt_buf *buf, int n)
{
	for (int i = 0; i < n; i++)
		PWT_OK(pwt_post_recv1(in->s.qp, 0x500 + (uint64_t)i, buf->addr, 64,
				      buf->lkey));
}

/* A fresh QP to @ip:@port: 1 MiB written, read back, verified both ends. */
static void ini_fresh_qp(struct ini *in, const char *ip, uint16_t port,
			 struct pwt_buf *src, struct pwt_buf *sink, struct pwt_buf *msgbuf,
			 uint32_t peer_timeout_ms)
{
	static const uint32_t sizes[] = { 65536, 4096, 1, 262144 + 3 };
	uint64_t t0 = pwt_now_ms(), v[2];

	ini_connect(in, ip, port, peer_timeout_ms, 16);
	memset(sink->addr, 0, PWT_MIB);
	ini_write_read(in, src, sink, PWT_MIB, sizes, PWT_ARRAY_SIZE(sizes), 16);
	ini_done(in, msgbuf, PWT_MIB, 0, 0);
	v[0] = 2 * PWT_MIB;
	v[1] = pwt_now_ms() - t0;
	msg_send(in->fd, M_DONE, v, 2);
}

/* ------------------------------------------------------------------ */
/* The netem helper host                                               */
/* ------------------------------------------------------------------ */

static int netem_host(int fd, void *arg)
{
	const struct netem_cfg *cfg = arg;
	struct netem_stats st;
	struct netem *ne;
	struct msg m;
	uint64_t v[7];
	int rc;

	memset(&m, 0, sizeof(m));
	ne = netem_open(cfg, m.text, sizeof(m.text));
	if (!ne) {
		m.type = M_ERROR;
		pwt_ctl_send(fd, &m, sizeof(m));
		return 0;
	}
	/* a link does not wait for the CPU: ahead of the hosts (2 cores) */
	setpriority(PRIO_PROCESS, 0, -10);	/* failing only adds jitter */
	msg_send0(fd, M_READY);
	rc = netem_loop(ne, fd);
	PWT_ASSERTF(rc == 0, "netem: %s", pwt_strerr(rc));
	host_recv(fd, &m, M_STOP, 1000);
	netem_get_stats(ne, &st);
	netem_close(ne);
	v[0] = st.packets;
	v[1] = st.dropped;
	v[2] = st.accepted;
	v[3] = st.max_held;
	v[4] = st.late_max_us;
	v[5] = st.enobufs;
	v[6] = st.kernel_dropped;
	msg_send(fd, M_STATS, v, 7);
	return 0;
}

struct netem_host {
	struct pwt_child c;
	struct netem_cfg cfg;
	int host;
};

/*
 * Starts the helper on @host and sends what arrives there on the
 * interfaces @ifs (NULL-terminated) through it. Returns false (and the
 * reason in @why) when the helper cannot run here.
 */
static bool netem_start(struct netem_host *nh, int host, const char *const *ifs,
			uint32_t delay_us, uint32_t loss_ppm, char *why, size_t whylen)
{
	struct msg m;

	memset(nh, 0, sizeof(*nh));
	nh->host = host;
	nh->cfg.queue_num = 7;
	nh->cfg.delay_us = delay_us;
	nh->cfg.loss_ppm = loss_ppm;
	nh->cfg.seed = pwt_now_us() * 2654435761u + (uint64_t)host;
	host_fork(&nh->c, host, netem_host, &nh->cfg);
	pwt_ctl_recv(nh->c.fd, &m, sizeof(m), 10000);
	if (m.type == M_ERROR) {
		snprintf(why, whylen, "%s", m.text);
		PWT_CHILD_OK(&nh->c, 5000);
		return false;
	}
	PWT_EQ(m.type, M_READY);
	for (; *ifs; ifs++)
		NS_SH("ip netns exec %s %s -w -A INPUT -i %s -j NFQUEUE --queue-num %u",
		      ns_name(host), ns_iptables(), *ifs, nh->cfg.queue_num);
	return true;
}

static void netem_stop(struct netem_host *nh, struct netem_stats *st)
{
	struct msg m;

	msg_send0(nh->c.fd, M_STOP);
	run_recv(&nh->c, "netem", &m, M_STATS, 10000);
	memset(st, 0, sizeof(*st));
	st->packets = m.v[0];
	st->dropped = m.v[1];
	st->accepted = m.v[2];
	st->max_held = m.v[3];
	st->late_max_us = m.v[4];
	st->enobufs = m.v[5];
	st->kernel_dropped = m.v[6];
	PWT_CHILD_OK(&nh->c, 5000);
}

/* ------------------------------------------------------------------ */
/* loss_delay                                                          */
/* ------------------------------------------------------------------ */

#define LD_DELAY_US	5000
#define LD_LOSS_PPM	10000		/* 1% */
#define LD_REGION	(12 * PWT_MIB)
#define LD_SENDS	20		/* about 11 MB, sizes 0..1 MiB */
#define LD_SEND_DEPTH	8

struct ld_ini_arg {
	uint32_t seed;
	const char *ip;
	uint16_t port;
	enum pwt_mode mode;	/* of the initiator's buffers */
};

static int ld_initiator(int fd, void *arg)
{
	static const uint32_t sizes[] = { SLOT, 4096, 1, 65537, 777777, 4095, 3, SLOT,
					  262144, 100000 };
	const struct ld_ini_arg *a = arg;
	struct pwt_buf src, sink, msgs, msgbuf;
	uint64_t rtt_min, rtt_med, t0, moved, send_bytes = 0, v[8];
	struct ini in;

	ini_open(&in, fd, a->seed);
	pwt_buf_alloc(&src, &in.s, LD_REGION, PWT_ACCESS_ALL, a->mode);
	pwt_buf_alloc(&sink, &in.s, LD_REGION, PWT_ACCESS_ALL, a->mode);
	pwt_buf_alloc(&msgs, &in.s, (size_t)LD_SEND_DEPTH * SLOT, PWT_ACCESS_ALL, a->mode);
	pwt_buf_alloc(&msgbuf, &in.s, 4096, PWT_ACCESS_ALL, PWT_PINNED);
	pwt_fill(src.addr, LD_REGION, a->seed);
	ini_connect(&in, a->ip, a->port, 0, 16);
	PWT_EQ(in.r.len, LD_REGION);

	ini_rtt(&in, &sink, 21, &rtt_min, &rtt_med);
	t0 = pwt_now_ms();
	moved = ini_write_read(&in, &src, &sink, LD_REGION, sizes, PWT_ARRAY_SIZE(sizes), 16);

	/* SENDs of 0..1 MiB with immediates; the target checks each. */
	for (uint64_t i = 0; i < LD_SENDS; i++) {
		uint8_t *slot = msgs.addr + (size_t)(i % LD_SEND_DEPTH) * SLOT;

		if (i >= LD_SEND_DEPTH)
			PWT_EXPECT_OK(in.s.scq, 0x1000 + i - LD_SEND_DEPTH, PW_WC_SEND,
				      send_size(i - LD_SEND_DEPTH), in.s.qp->qp_num);
		pwt_fill(slot, send_size(i), msg_seed(a->seed, i));
		PWT_OK(pwt_post_send1(in.s.qp, PW_WR_SEND_WITH_IMM, 0x1000 + i, slot,
				      send_size(i), msgs.lkey, (uint32_t)i, PW_SEND_SIGNALED));
		send_bytes += send_size(i);
	}
	for (uint64_t i = LD_SENDS - LD_SEND_DEPTH; i < LD_SENDS; i++)
		PWT_EXPECT_OK(in.s.scq, 0x1000 + i, PW_WC_SEND, send_size(i), in.s.qp->qp_num);
	ini_done(&in, &msgbuf, LD_REGION, LD_SENDS, send_bytes);

	v[0] = rtt_min;
	v[1] = rtt_med;
	v[2] = moved;
	v[3] = send_bytes;
	v[4] = pwt_now_ms() - t0;
	msg_send(fd, M_DONE, v, 5);
	host_recv(fd, (struct msg[1]){ { 0 } }, M_EXIT, 60000);
	pwt_buf_free(&src);
	pwt_buf_free(&sink);
	pwt_buf_free(&msgs);
	pwt_buf_free(&msgbuf);
	pwt_side_close(&in.s);
	return 0;
}

/* TcpRetransSegs of host @h's namespace (/proc/net/snmp seen from it). */
static uint64_t tcp_retrans(int h)
{
	char out[4096], *hdr, *val, *sh = NULL, *sv = NULL;
	int col = 0;

	PWT_ASSERTF(ns_sh(out, sizeof(out), "ip netns exec %s cat /proc/net/snmp",
			  ns_name(h)) == 0, "reading /proc/net/snmp in %s: %s", ns_name(h), out);
	hdr = strstr(out, "\nTcp: ");
	PWT_ASSERT(hdr);
	val = strstr(hdr + 1, "\nTcp: ");
	PWT_ASSERT(val);
	*val++ = '\0';
	for (char *t = strtok_r(hdr + 1, " \n", &sh); t; t = strtok_r(NULL, " \n", &sh), col++)
		if (strcmp(t, "RetransSegs") == 0)
			break;
	for (char *t = strtok_r(val, " \n", &sv); t; t = strtok_r(NULL, " \n", &sv))
		if (col-- == 0)
			return strtoull(t, NULL, 10);
	pwt_fail(__FILE__, __LINE__, "no RetransSegs in /proc/net/snmp");
}

static void t_loss_delay(const char *arg)
{
	static const char *const if_a[] = { "to-b", NULL };
	static const char *const if_b[] = { "to-a", "to-c", NULL };
	static const char *const if_c[] = { "to-b", NULL };
	struct tgt_cfg tc = { .naccept = 2, .region = LD_REGION,
			      .mode = { PWT_ODP, PWT_PINNED }, .nrecv = 8 };
	struct ld_ini_arg ia[2];
	struct netem_host nh[3];
	struct netem_stats st[3];
	struct pwt_child tgt, ini[2];
	struct msg m;
	char why[200];
	uint64_t drops = 0, pkts = 0, verified = 0, retrans[3], t0 = pwt_now_ms();
	const int nh_host[3] = { H_A, H_B, H_C };

	(void)arg;
	alarm(CASE_LIMIT_S);
	if (!netem_start(&nh[0], H_A, if_a, LD_DELAY_US, LD_LOSS_PPM, why, sizeof(why))) {
		pwt_skip_part(strdup(why));
		return;
	}
	PWT_ASSERTF(netem_start(&nh[1], H_B, if_b, LD_DELAY_US, LD_LOSS_PPM, why, sizeof(why)),
		    "netem on b: %s", why);
	PWT_ASSERTF(netem_start(&nh[2], H_C, if_c, LD_DELAY_US, LD_LOSS_PPM, why, sizeof(why)),
		    "netem on c: %s", why);
	printf("mechanism: user-space netem on NFQUEUE (this kernel has no sch_netem): "
	       "%u us delay and %.2f%% random loss per direction, on arrival at each host "
	       "(iptables INPUT -j NFQUEUE via %s)\n",
	       LD_DELAY_US, LD_LOSS_PPM / 10000.0, ns_iptables());

	host_fork(&tgt, H_B, target_main, &tc);
	run_recv(&tgt, "target", &m, M_PORT, 20000);
	for (int i = 0; i < 2; i++) {
		ia[i].seed = 11 + (uint32_t)i;
		ia[i].ip = ns_ip(i, H_B);
		ia[i].port = (uint16_t)m.v[0];
		ia[i].mode = i ? PWT_ODP : PWT_PINNED;
		host_fork(&ini[i], i ? H_C : H_A, ld_initiator, &ia[i]);
	}
	for (int i = 0; i < 2; i++)
		run_recv(&tgt, "target", &m, M_ACCEPTED, 60000);
	for (int i = 0; i < 2; i++) {
		run_recv(&ini[i], "initiator", &m, M_DONE, 80000);
		printf("initiator %c (region %s on the target): RTT of 8-byte READs min %.2f ms, "
		       "median %.2f ms; %" PRIu64 " MiB written+read back and %" PRIu64
		       " bytes of SENDs in %" PRIu64 " ms\n",
		       i ? 'c' : 'a', pwt_mode_name(tc.mode[i]), m.v[0] / 1000.0,
		       m.v[1] / 1000.0, m.v[2] >> 20, m.v[3], m.v[4]);
		PWT_ASSERTF(m.v[0] >= 2 * LD_DELAY_US,
			    "RTT %" PRIu64 " us < 2 x %u us: the delay did not apply", m.v[0],
			    LD_DELAY_US);
		verified += m.v[2];
	}
	for (int i = 0; i < 2; i++) {
		run_recv(&tgt, "target", &m, M_VERIFIED, 30000);
		PWT_EQ(m.v[1], LD_REGION);
		PWT_EQ(m.v[2], LD_SENDS);
		verified += m.v[1] + m.v[3];
	}
	host_exit(&ini[0]);
	host_exit(&ini[1]);
	host_exit(&tgt);
	for (int i = 0; i < 3; i++) {
		netem_stop(&nh[i], &st[i]);
		printf("netem on %s: %" PRIu64 " packets, %" PRIu64 " dropped (%.2f%%), "
		       "%" PRIu64 " delayed, at most %" PRIu64 " held, released at most %" PRIu64
		       " us late; kernel queue drops %" PRIu64 ", overruns %" PRIu64 "\n",
		       ns_name(nh_host[i]), st[i].packets, st[i].dropped,
		       st[i].packets ? 100.0 * (double)st[i].dropped / (double)st[i].packets : 0.0,
		       st[i].accepted, st[i].max_held, st[i].late_max_us, st[i].kernel_dropped,
		       st[i].enobufs);
		drops += st[i].dropped;
		pkts += st[i].packets;
	}
	for (int i = 0; i < 3; i++)
		retrans[i] = tcp_retrans(nh_host[i]);
	printf("TCP segments retransmitted (TcpRetransSegs): a %" PRIu64 ", b %" PRIu64
	       ", c %" PRIu64 "\n", retrans[0], retrans[1], retrans[2]);
	printf("loss_delay: %" PRIu64 " bytes verified (initiators' read-backs, target's "
	       "regions and SENDs), %" PRIu64 " of %" PRIu64 " packets dropped, %" PRIu64
	       " ms\n", verified, drops, pkts, pwt_now_ms() - t0);
	PWT_ASSERTF(drops > 0, "the emulated loss dropped nothing");
	PWT_ASSERTF(retrans[0] + retrans[1] + retrans[2] > 0, "no TCP retransmission");
	for (int i = 0; i < 3; i++)
		PWT_ASSERTF(st[i].dropped > 0 && st[i].accepted > 0,
			    "netem on host %d: %" PRIu64 " dropped, %" PRIu64 " delayed", i,
			    st[i].dropped, st[i].accepted);
}

/* ------------------------------------------------------------------ */
/* Faults under a stream: cut, blip, kill, reset                        */
/* ------------------------------------------------------------------ */

#define ST_REGION	(16 * PWT_MIB)

enum fault_kind {
	F_CUT,		/* link dropped for 10 s */
	F_BLIP,		/* link dropped for 1 s */
	F_KILL,		/* target SIGKILLed */
	F_RESET_SS,	/* ss -K on the initiator's socket */
	F_RESET_RST,	/* iptables REJECT --reject-with tcp-reset at the target */
	F_DEFAULT,	/* a cut with the default dead-peer bound */
};

struct fault_arg {
	enum fault_kind kind;
	uint32_t bound_ms;	/* the initiator's QP's peer_timeout_ms (0: default) */
	const char *ip;		/* the target */
	uint16_t port;
	const char *ip2;	/* where to connect afterwards */
	uint16_t port2;
	uint32_t chunk;
	unsigned int depth;
	uint64_t trigger_ok;
	uint64_t total;		/* F_BLIP: WRs in the stream */
	bool quiesce;		/* target stopped before the fault (stream_run) */
	bool idle_qp;		/* and a second QP, idle, to the same target */
};

static int fault_initiator(int fd, void *arg)
{
	const struct fault_arg *a = arg;
	struct pwt_buf src, sink, msgbuf, rbuf;
	struct pw_qp *idle = NULL;
	struct pw_cq *icq = NULL;
	struct pwt_remote ir;
	struct stream_cfg sc;
	struct stream_res res;
	struct ini in;
	struct msg m;

	ini_open(&in, fd, 21);
	pwt_buf_alloc(&src, &in.s, ST_REGION, PWT_ACCESS_ALL, PWT_PINNED);
	pwt_buf_alloc(&sink, &in.s, ST_REGION, PWT_ACCESS_ALL, PWT_PINNED);
	pwt_buf_alloc(&msgbuf, &in.s, 4096, PWT_ACCESS_ALL, PWT_PINNED);
	pwt_buf_alloc(&rbuf, &in.s, 4096, PWT_ACCESS_ALL, PWT_PINNED);
	pwt_fill(src.addr, ST_REGION, in.seed);
	ini_connect(&in, a->ip, a->port, a->bound_ms, a->depth);
	PWT_EQ(in.r.len, ST_REGION);
	ini_post_recvs(&in, &rbuf, 4);
	if (a->idle_qp) {
		/* a second QP that carries nothing: only keepalive can tell */
		icq = pw_create_cq(in.s.ctx, 16, NULL, NULL, 0);
		PWT_NONNULL(icq);
		idle = ini_qp(&in, a->ip, a->port, a->bound_ms, 4, icq, icq, &ir);
		for (int i = 0; i < 2; i++)
			PWT_OK(pwt_post_recv1(idle, 0x600 + (uint64_t)i, rbuf.addr, 64, rbuf.lkey));
	}

	memset(&sc, 0, sizeof(sc));
	sc.chunk = a->chunk;
	sc.depth = a->depth;
	sc.trigger_ok = a->trigger_ok;
	sc.total = a->total;
	sc.quiesce = a->quiesce;
	sc.wait_ms = (int)(a->bound_ms ? a->bound_ms : 30000) + 15000;
	stream_run(&in, &src, &sink, &sc, &res);

	if (a->kind == F_BLIP) {
		uint64_t v[4];

		/* every chunk was written (each at least once): the region
		 * holds src in full; the target checks it too */
		PWT_ASSERT(a->total / 2 >= ST_REGION / a->chunk);
		PWT_ASSERT(res.ok >= a->total && res.ok == res.posted);
		ini_done(&in, &msgbuf, ST_REGION, 0, 0);
		v[0] = res.ok;
		v[1] = res.verified;
		v[2] = res.max_gap_us / 1000;
		v[3] = (res.t_last_us - res.t_fault_us) / 1000;
		msg_send(fd, M_STREAM, v, 4);
	} else {
		uint64_t v[9] = { 0 };

		stream_check_dead(&in, &src, &res, 4, v);
		if (idle) {
			uint64_t bound = a->bound_ms ? a->bound_ms : 30000;
			uint64_t deadline = res.t_fault_us / 1000 + bound + 10000;

			while (pw_qp_state(idle) != PW_QPS_ERR) {
				PWT_ASSERTF(pwt_now_ms() < deadline,
					    "the idle QP is still up %" PRIu64 " ms after the cut",
					    pwt_now_ms() - res.t_fault_us / 1000);
				pwt_sleep_ms(5);
			}
			v[8] = pwt_now_ms() - res.t_fault_us / 1000;
			for (int i = 0; i < 2; i++)
				PWT_EXPECT_ERR(icq, 0x600 + (uint64_t)i, PW_WC_WR_FLUSH_ERR,
					       idle->qp_num);
			PWT_NO_WC(icq, 0);
			PWT_OK(pw_destroy_qp(idle));
			PWT_OK(pw_destroy_cq(icq));
		}
		msg_send(fd, M_STREAM, v, 9);
		if (a->ip2) {
			host_recv(fd, &m, M_GO, 60000);
			ini_fresh_qp(&in, a->ip2, a->port2, &src, &sink, &msgbuf, a->bound_ms);
		}
	}
	host_recv(fd, &m, M_EXIT, 60000);
	pwt_buf_free(&src);
	pwt_buf_free(&sink);
	pwt_buf_free(&msgbuf);
	pwt_buf_free(&rbuf);
	pwt_side_close(&in.s);
	return 0;
}

/* Both ends drop what arrives from the other: a cut cable, no signal. */
static void link_cut(int l, int h1, int h2, bool on)
{
	NS_SH("ip netns exec %s %s -w %s INPUT -i %s -j DROP", ns_name(h1), ns_iptables(),
	      on ? "-I" : "-D", ns_if(l, h1));
	NS_SH("ip netns exec %s %s -w %s INPUT -i %s -j DROP", ns_name(h2), ns_iptables(),
	      on ? "-I" : "-D", ns_if(l, h2));
}

static void print_stream(const char *what, const struct msg *m)
{
	printf("%s: %" PRIu64 " WRs posted, %" PRIu64 " succeeded (%" PRIu64
	       " bytes of READs verified), then %" PRIu64 " outstanding: first %s after %"
	       PRIu64 " ms, %" PRIu64 " WR_FLUSH_ERR, the last after %" PRIu64 " ms\n",
	       what, m->v[0], m->v[1], m->v[6], m->v[7],
	       pw_wc_status_str((enum pw_wc_status)m->v[3]), m->v[4], m->v[2], m->v[5]);
}

/* A stream from a (QP bound @bound_ms) to b, the link cut for @cut_ms. */
static void cut_case(uint32_t bound_ms, uint32_t tgt_bound_ms, unsigned int cut_ms,
		     const char *name)
{
	struct tgt_cfg tc = { .naccept = 2, .region = ST_REGION,
			      .mode = { PWT_PINNED, PWT_ODP, PWT_ODP }, .nrecv = 4,
			      .peer_timeout_ms = tgt_bound_ms };
	struct fault_arg fa;
	struct pwt_child tgt, ini;
	struct msg m;
	uint64_t t_cut, restore_at, now, det_ini, det_idle, det_tgt[2] = { 0, 0 };
	uint32_t eff_bound = bound_ms ? bound_ms : 30000;
	uint32_t eff_tgt = tgt_bound_ms ? tgt_bound_ms : 30000;

	host_fork(&tgt, H_B, target_main, &tc);
	run_recv(&tgt, "target", &m, M_PORT, 20000);
	memset(&fa, 0, sizeof(fa));
	fa.kind = bound_ms ? F_CUT : F_DEFAULT;
	fa.bound_ms = bound_ms;
	fa.ip = ns_ip(0, H_B);
	fa.port = (uint16_t)m.v[0];
	fa.ip2 = fa.ip;
	fa.port2 = fa.port;
	fa.chunk = 256 * 1024;
	fa.depth = 32;
	fa.trigger_ok = 64;	/* 16 MiB moved before the cut */
	fa.idle_qp = true;
	host_fork(&ini, H_A, fault_initiator, &fa);
	run_recv(&tgt, "target", &m, M_ACCEPTED, 30000);
	run_recv(&tgt, "target", &m, M_ACCEPTED, 30000);

	run_recv(&ini, "initiator", &m, M_FAULT, 60000);
	t_cut = pwt_now_ms();
	link_cut(0, H_A, H_B, true);
	msg_send0(tgt.fd, M_MARK);
	msg_send0(ini.fd, M_FAULT_DONE);
	if (cut_ms)
		printf("%s: link a-b cut (iptables DROP at both ends) for %u ms\n", name, cut_ms);
	else
		printf("%s: link a-b cut (iptables DROP at both ends) until both ends gave up\n",
		       name);
	printf("%s: dead-peer bound: initiator QPs %u ms%s, target context %u ms%s\n", name,
	       eff_bound,
	       bound_ms ? " (pw_qp_init_attr.peer_timeout_ms)" : " (default)", eff_tgt,
	       tgt_bound_ms ? " (pw_context_attr.peer_timeout_ms)" : " (default)");

	run_recv(&ini, "initiator", &m, M_STREAM, (int)eff_bound + 30000);
	print_stream(name, &m);
	det_ini = m.v[4];
	det_idle = m.v[8];
	printf("%s: the idle QP (nothing outstanding: keepalive) in error %" PRIu64
	       " ms after the cut, its receives flushed\n", name, det_idle);
	PWT_ASSERTF(det_ini <= eff_bound + 5000 && m.v[5] <= eff_bound + 5000,
		    "initiator: first error %" PRIu64 " ms, last flush %" PRIu64
		    " ms after the cut; bound %u ms + 5 s", det_ini, m.v[5], eff_bound);
	PWT_ASSERTF(det_idle <= eff_bound + 5000,
		    "initiator's idle QP failed %" PRIu64 " ms after the cut, bound %u ms + 5 s",
		    det_idle, eff_bound);
	/* and not before the peer was silent for a good part of the bound */
	PWT_ASSERTF(det_ini >= eff_bound / 3 && det_idle >= eff_bound / 3,
		    "initiator gave up after only %" PRIu64 " / %" PRIu64 " ms", det_ini,
		    det_idle);
	for (int i = 0; i < 2; i++) {
		run_recv(&tgt, "target", &m, M_QP_ERR, (int)eff_tgt + 30000);
		PWT_ASSERT(m.v[0] < 2);
		det_tgt[m.v[0]] = m.v[1];
		printf("%s: target QP %" PRIu64 " (%s) in error %" PRIu64 " ms after the cut, %"
		       PRIu64 " receives flushed\n", name, m.v[0],
		       m.v[0] ? "idle" : "the stream's", m.v[1], m.v[2]);
		PWT_EQ(m.v[2], tc.nrecv);
		PWT_ASSERTF(m.v[1] <= eff_tgt + 5000,
			    "target detected the cut after %" PRIu64 " ms, bound %u ms + 5 s",
			    m.v[1], eff_tgt);
		PWT_ASSERTF(m.v[1] >= eff_tgt / 3, "target gave up after only %" PRIu64 " ms",
			    m.v[1]);
	}

	restore_at = t_cut + cut_ms;
	now = pwt_now_ms();
	if (now < restore_at)
		pwt_sleep_ms((unsigned int)(restore_at - now));
	link_cut(0, H_A, H_B, false);
	printf("%s: link restored after %" PRIu64 " ms\n", name, pwt_now_ms() - t_cut);
	msg_send0(tgt.fd, M_ACCEPT);
	msg_send0(ini.fd, M_GO);
	run_recv(&tgt, "target", &m, M_ACCEPTED, 40000);
	run_recv(&ini, "initiator", &m, M_DONE, 40000);
	run_recv(&tgt, "target", &m, M_VERIFIED, 20000);
	PWT_EQ(m.v[1], PWT_MIB);
	printf("%s: new QP after the restore: 1 MiB written, read back and verified at both "
	       "ends\n%s: detection (bound %u / %u ms): initiator %" PRIu64 " ms (WRs "
	       "outstanding), %" PRIu64 " ms (idle QP); target %" PRIu64 " ms, %" PRIu64
	       " ms (idle QP)\n", name, name, eff_bound, eff_tgt, det_ini, det_idle, det_tgt[0],
	       det_tgt[1]);
	host_exit(&ini);
	host_exit(&tgt);
}

static void t_link_cut(const char *arg)
{
	(void)arg;
	alarm(CASE_LIMIT_S);
	cut_case(3000, 3000, 10000, "link_cut");
}

static void t_dead_peer_default(const char *arg)
{
	(void)arg;
	alarm(CASE_LIMIT_S);
	unsetenv("PW_PEER_TIMEOUT_MS");
	cut_case(0, 0, 0, "dead_peer_default");	/* restored once detected */
}

static void t_link_blip(const char *arg)
{
	struct tgt_cfg tc = { .naccept = 1, .region = ST_REGION, .mode = { PWT_ODP },
			      .nrecv = 4, .peer_timeout_ms = 8000 };
	struct fault_arg fa;
	struct pwt_child tgt, ini;
	struct msg m;
	uint64_t t_cut;

	(void)arg;
	alarm(CASE_LIMIT_S);
	host_fork(&tgt, H_B, target_main, &tc);
	run_recv(&tgt, "target", &m, M_PORT, 20000);
	memset(&fa, 0, sizeof(fa));
	fa.kind = F_BLIP;
	fa.bound_ms = 8000;
	fa.ip = ns_ip(0, H_B);
	fa.port = (uint16_t)m.v[0];
	fa.chunk = 256 * 1024;
	fa.depth = 32;
	fa.trigger_ok = 40;
	fa.total = 2 * 2 * (ST_REGION / fa.chunk);	/* the region twice over */
	host_fork(&ini, H_A, fault_initiator, &fa);
	run_recv(&tgt, "target", &m, M_ACCEPTED, 30000);

	run_recv(&ini, "initiator", &m, M_FAULT, 60000);
	t_cut = pwt_now_ms();
	link_cut(0, H_A, H_B, true);
	pwt_sleep_ms(1000);
	link_cut(0, H_A, H_B, false);
	msg_send0(ini.fd, M_FAULT_DONE);	/* the stream goes on until this */
	printf("link_blip: link a-b cut for %" PRIu64 " ms under a stream; dead-peer bound "
	       "8000 ms at both ends\n", pwt_now_ms() - t_cut);

	run_recv(&ini, "initiator", &m, M_STREAM, 60000);
	printf("link_blip: all %" PRIu64 " WRs succeeded (%" PRIu64 " bytes of READs "
	       "verified); longest wait for a completion %" PRIu64 " ms; stream ended %"
	       PRIu64 " ms after the cut\n", m.v[0], m.v[1], m.v[2], m.v[3]);
	PWT_ASSERTF(m.v[2] >= 500, "longest stall %" PRIu64 " ms: did the cut bite?", m.v[2]);
	run_recv(&tgt, "target", &m, M_VERIFIED, 20000);
	PWT_EQ(m.v[1], ST_REGION);
	printf("link_blip: the target verified its %" PRIu64 " MiB region\n", m.v[1] >> 20);
	host_exit(&ini);
	host_exit(&tgt);	/* a QP error would have failed the target */
}

#define KILL_BOUND_MS	5000

/* SIGSTOP a host and see it stopped. */
static void host_stop(struct pwt_child *c)
{
	int st;

	PWT_OK(kill(c->pid, SIGSTOP));
	PWT_EQ(waitpid(c->pid, &st, WUNTRACED), c->pid);
	PWT_ASSERT(WIFSTOPPED(st));
}

/*
 * The initiator reached the fault point: stop the target and wait until
 * the initiator's queue is full and quiet, so that the fault meets WRs
 * still outstanding (otherwise they may all complete first).
 */
static void stop_and_quiesce(struct pwt_child *tgt, struct pwt_child *ini,
			     struct msg *m)
{
	run_recv(ini, "initiator", m, M_FAULT, 60000);
	host_stop(tgt);
	msg_send0(ini->fd, M_FAULT_DONE);
	run_recv(ini, "initiator", m, M_QUIET, 30000);
}

static void t_peer_kill(const char *arg)
{
	struct tgt_cfg tc1 = { .naccept = 1, .region = ST_REGION, .mode = { PWT_PINNED },
			       .nrecv = 4 };
	struct tgt_cfg tc2 = { .naccept = 1, .region = ST_REGION, .mode = { PWT_ODP },
			       .nrecv = 4 };
	struct fault_arg fa;
	struct pwt_child t1, t2, ini;
	struct msg m;
	int st;

	(void)arg;
	alarm(CASE_LIMIT_S);
	host_fork(&t1, H_B, target_main, &tc1);
	host_fork(&t2, H_C, target_main, &tc2);
	memset(&fa, 0, sizeof(fa));
	fa.kind = F_KILL;
	run_recv(&t1, "target b", &m, M_PORT, 20000);
	fa.ip = ns_ip(0, H_B);
	fa.port = (uint16_t)m.v[0];
	run_recv(&t2, "target c", &m, M_PORT, 20000);
	fa.ip2 = ns_ip(1, H_C);
	fa.port2 = (uint16_t)m.v[0];
	fa.chunk = PWT_MIB;
	fa.depth = 16;
	fa.trigger_ok = 24;
	fa.quiesce = true;
	host_fork(&ini, H_A, fault_initiator, &fa);
	run_recv(&t1, "target b", &m, M_ACCEPTED, 30000);

	stop_and_quiesce(&t1, &ini, &m);
	PWT_OK(kill(t1.pid, SIGKILL));
	msg_send0(ini.fd, M_INJECTED);
	printf("peer_kill: target on b SIGKILLed mid-stream (1 MiB WRITEs and READs, 16 in "
	       "flight; the target SIGSTOPped first and the queue full and quiet for %d ms); "
	       "initiator's dead-peer bound: default\n", QUIET_MS);
	run_recv(&ini, "initiator", &m, M_STREAM, 60000);
	print_stream("peer_kill", &m);
	PWT_ASSERTF(m.v[5] <= KILL_BOUND_MS, "completing and flushing took %" PRIu64 " ms",
		    m.v[5]);
	st = pwt_child_wait(&t1, 10000);
	PWT_ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);

	msg_send0(ini.fd, M_GO);
	run_recv(&t2, "target c", &m, M_ACCEPTED, 40000);
	run_recv(&ini, "initiator", &m, M_DONE, 40000);
	run_recv(&t2, "target c", &m, M_VERIFIED, 20000);
	PWT_EQ(m.v[1], PWT_MIB);
	printf("peer_kill: new QP to a fresh target on host c: 1 MiB written, read back and "
	       "verified at both ends\n");
	host_exit(&ini);
	host_exit(&t2);
}

static void t_conn_reset(const char *arg)
{
	bool ss = arg && strcmp(arg, "ss") == 0;
	struct tgt_cfg tc = { .naccept = 1, .region = ST_REGION, .mode = { PWT_PINNED, PWT_ODP },
			      .nrecv = 4, .peer_timeout_ms = 3000 };
	struct fault_arg fa;
	struct pwt_child tgt, ini;
	struct msg m;
	char out[2048];
	uint64_t t_cont;

	alarm(CASE_LIMIT_S);
	PWT_ASSERTF(ss || (arg && strcmp(arg, "rst") == 0), "conn_reset ss|rst, got '%s'",
		    arg ? arg : "(none)");
	if (ss && ns_sh(out, sizeof(out), "ss -V") != 0) {
		pwt_skip_part("iproute2's ss is not installed");
		return;
	}
	host_fork(&tgt, H_B, target_main, &tc);
	run_recv(&tgt, "target", &m, M_PORT, 20000);
	memset(&fa, 0, sizeof(fa));
	fa.kind = ss ? F_RESET_SS : F_RESET_RST;
	fa.ip = ns_ip(0, H_B);
	fa.port = (uint16_t)m.v[0];
	fa.ip2 = fa.ip;
	fa.port2 = fa.port;
	fa.chunk = PWT_MIB;
	fa.depth = 24;		/* 12 MiB of WRITEs: more than the target's window */
	fa.trigger_ok = 24;
	fa.quiesce = true;
	/* were the window not full, a keepalive probe draws the reset */
	fa.bound_ms = 3000;
	host_fork(&ini, H_A, fault_initiator, &fa);
	run_recv(&tgt, "target", &m, M_ACCEPTED, 30000);

	stop_and_quiesce(&tgt, &ini, &m);
	if (ss) {
		NS_SH("ip netns exec %s ss -K -t -n dst %s dport = :%u", ns_name(H_A), fa.ip,
		      fa.port);
		/* INET_DIAG_DESTROY missing: ss -K kills nothing, silently */
		if (ns_sh(out, sizeof(out), "ip netns exec %s ss -t -n -H dst %s dport = :%u",
			  ns_name(H_A), fa.ip, fa.port) == 0 && strstr(out, "ESTAB")) {
			pwt_skip_part("ss -K did not destroy the socket: kernel without "
				      "CONFIG_INET_DIAG_DESTROY");
			return;		/* pwt_main's exit kills the hosts */
		}
		printf("conn_reset: `ip netns exec %s ss -K dst %s dport = :%u` destroyed the "
		       "initiator's socket mid-stream (%u x 1 MiB outstanding, target "
		       "SIGSTOPped first)\n", ns_name(H_A), fa.ip, fa.port, fa.depth);
	} else {
		/* the initiator's next segment (a zero-window probe: the
		 * stopped target's window is full) meets a reset */
		NS_SH("ip netns exec %s %s -w -I INPUT -i %s -p tcp -j REJECT --reject-with "
		      "tcp-reset", ns_name(H_B), ns_iptables(), ns_if(0, H_B));
		printf("conn_reset: target host b answers the initiator's segments with TCP "
		       "resets (iptables REJECT --reject-with tcp-reset) mid-stream (%u x 1 MiB "
		       "outstanding, target SIGSTOPped first)\n", fa.depth);
	}
	msg_send0(ini.fd, M_INJECTED);
	run_recv(&ini, "initiator", &m, M_STREAM, 60000);
	print_stream("conn_reset", &m);
	PWT_ASSERTF(m.v[5] <= KILL_BOUND_MS, "completing and flushing took %" PRIu64 " ms",
		    m.v[5]);
	if (!ss) {
		/* the target never saw the resets (its own were rejected too):
		 * once the rule goes, its next segment meets the initiator's
		 * RST, or its dead-peer bound ends the QP */
		NS_SH("ip netns exec %s %s -w -D INPUT -i %s -p tcp -j REJECT --reject-with "
		      "tcp-reset", ns_name(H_B), ns_iptables(), ns_if(0, H_B));
	}
	t_cont = pwt_now_ms();
	PWT_OK(kill(tgt.pid, SIGCONT));
	run_recv(&tgt, "target", &m, M_QP_ERR, 30000);
	printf("conn_reset: target QP in error %" PRIu64 " ms after it was resumed, %" PRIu64
	       " receives flushed\n", pwt_now_ms() - t_cont, m.v[2]);
	PWT_EQ(m.v[2], tc.nrecv);
	PWT_ASSERTF(pwt_now_ms() - t_cont <= tc.peer_timeout_ms + 5000, "target took %" PRIu64
		    " ms", pwt_now_ms() - t_cont);

	msg_send0(tgt.fd, M_ACCEPT);
	msg_send0(ini.fd, M_GO);
	run_recv(&tgt, "target", &m, M_ACCEPTED, 40000);
	run_recv(&ini, "initiator", &m, M_DONE, 40000);
	run_recv(&tgt, "target", &m, M_VERIFIED, 20000);
	PWT_EQ(m.v[1], PWT_MIB);
	printf("conn_reset: new QP afterwards: 1 MiB written, read back and verified\n");
	host_exit(&ini);
	host_exit(&tgt);
}

/* ------------------------------------------------------------------ */

static const struct pwt_case cases[] = {
	{ "loss_delay", t_loss_delay },
	{ "link_cut", t_link_cut },
	{ "link_blip", t_link_blip },
	{ "peer_kill", t_peer_kill },
	{ "conn_reset", t_conn_reset },
	{ "dead_peer_default", t_dead_peer_default },
};

struct run_args {
	int argc;
	char **argv;
};

static int runner(void *arg)
{
	struct run_args *ra = arg;

	return pwt_main(ra->argc, ra->argv, cases, PWT_ARRAY_SIZE(cases));
}

int main(int argc, char **argv)
{
	struct run_args ra = { argc, argv };
	struct ns_topo t;
	char name[64];
	bool known = false;

	if (argc < 2)
		return runner(&ra);	/* usage */
	for (size_t i = 0; i < PWT_ARRAY_SIZE(cases); i++)
		known |= strcmp(cases[i].name, argv[1]) == 0;
	if (!known)
		return runner(&ra);	/* "unknown test" */

	setvbuf(stdout, NULL, _IOLBF, 0);
	memset(&t, 0, sizeof(t));
	t.nhosts = 2;
	t.nlinks = 1;
	t.link[0].a = H_A;
	t.link[0].b = H_B;
	t.need_iptables = true;
	if (strcmp(argv[1], "loss_delay") == 0) {
		/* a and c initiators, b the target: links a-b and c-b */
		t.nhosts = 3;
		t.nlinks = 2;
		t.link[1].a = H_C;
		t.link[1].b = H_B;
		if (!netem_available()) {
			printf("SKIP netns.loss_delay: this build has no libnetfilter_queue "
			       "(Debian: libnetfilter-queue-dev), which the delay and loss "
			       "emulation needs (no sch_netem in this kernel)\n");
			return PWT_SKIP_CODE;
		}
	} else if (strcmp(argv[1], "peer_kill") == 0) {
		/* b the target killed, c the fresh target: links a-b, a-c */
		t.nhosts = 3;
		t.nlinks = 2;
		t.link[1].a = H_A;
		t.link[1].b = H_C;
		t.need_iptables = false;
	}
	snprintf(name, sizeof(name), "netns.%s%s%s", argv[1], argc > 2 ? "." : "",
		 argc > 2 ? argv[2] : "");
	return ns_supervise(&t, name, CASE_LIMIT_S + 20, runner, &ra);
}
