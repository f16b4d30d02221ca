/* SPDX-License-Identifier: MIT */
/*
 * Multi-process tests: the target runs in a forked child with its own
 * context, verifies the data in its own memory and reports through its
 * exit code. The peer-death tests SIGKILL one side mid-stream: the other
 * must get RETRY_EXC_ERR then flushes within a bounded time, never hang.
 *
 * Every test forks before the parent opens a context (see pwtest.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pwtest.h"

enum mp_kind {
	MP_WRITE_READ,
	MP_ATOMIC,
	MP_SEND,
	MP_1TIB,
	MP_IDLE,	/* serves and waits to be killed */
};

struct mp_cfg {
	enum mp_kind kind;
	enum pwt_mode mode;
};

#define DONE_MAGIC	0x646f6e6521ull	/* "done!" */
#define TGT_LEN		(16 * PWT_MIB)
#define HALF		(TGT_LEN / 2)
#define NSEND		200
#define SEND_MAX	65536u
#define NATOMIC		1000
#define NCAS		100

struct done_msg {
	uint64_t magic;
	uint64_t arg;
};

/* Scattered offsets of the 1 TiB target region (@len bytes under TSan). */
static uint64_t tib_off(unsigned int i, uint64_t len)
{
	const uint64_t off[] = {
		0, 4096 * 1000 + 17, len / 1024 * 137 + 12345, len / 2 - 2000,
		len - 4000,
	};

	return off[i];
}
#define TIB_N	5
#define TIB_LEN	4000

static uint32_t send_size(unsigned int i)
{
	return (i * 7919u) % (SEND_MAX + 1);
}

/*
 * End of a target: tell the parent the data verified ('K'), then wait for
 * its release before tearing down, so that the parent's last WR is
 * acknowledged before this QP goes away.
 */
static void child_verdict(int fd)
{
	uint8_t v = 'K';

	pwt_ctl_send(fd, &v, 1);
	pwt_ctl_recv(fd, &v, 1, 40000);
}

static void parent_verdict(struct pwt_child *c)
{
	uint8_t v = 0;
	ssize_t n = pwt_read_full(c->fd, &v, 1, 40000);

	if (n != 1)
		PWT_CHILD_OK(c, 5000);	/* reports the child's failure */
	PWT_ASSERTF(n == 1 && v == 'K', "no verdict from the target (%zd)", n);
}

static void parent_release(struct pwt_child *c)
{
	uint8_t v = 'X';

	pwt_ctl_send(c->fd, &v, 1);
	PWT_CHILD_OK(c, 20000);
}

/* ------------------------------------------------------------------ */
/* The target (child)                                                   */
/* ------------------------------------------------------------------ */

static void wait_done(struct pwt_side *s, struct pwt_buf *msg, uint64_t want_arg)
{
	struct done_msg d;

	PWT_EXPECT_RECV(s->rcq, 0xd0, PW_WC_RECV, sizeof(d), false, 0, s->qp->qp_num);
	memcpy(&d, msg->addr, sizeof(d));
	PWT_EQ(d.magic, DONE_MAGIC);
	PWT_EQ(d.arg, want_arg);
}

static void target_send(struct pwt_side *s, struct pwt_buf *buf)
{
	enum { NRECV = 32 };
	unsigned int posted = 0;

	for (; posted < NRECV; posted++)
		PWT_OK(pwt_post_recv1(s->qp, posted, buf->addr + (size_t)posted * SEND_MAX,
				      SEND_MAX, buf->lkey));
	for (unsigned int i = 0; i < NSEND; i++) {
		uint8_t *slot = buf->addr + (size_t)(i % NRECV) * SEND_MAX;
		bool imm = i & 1;

		PWT_EXPECT_RECV(s->rcq, i, PW_WC_RECV, send_size(i), imm, imm ? i : 0,
				s->qp->qp_num);
		PWT_PATTERN(slot, send_size(i), 1000 + i, 0);
		if (posted < NSEND) {
			PWT_OK(pwt_post_recv1(s->qp, posted, slot, SEND_MAX, buf->lkey));
			posted++;
		}
	}
}

static int target_main(int fd, void *arg)
{
	const struct mp_cfg *cfg = arg;
	struct pw_qp_init_attr attr;
	struct pw_conn_param param;
	struct pwt_remote r;
	struct pwt_side s;
	struct pwt_buf buf, msg;
	struct pw_listener *l;
	uint8_t *big = NULL;
	struct pw_mr *bigmr = NULL;
	size_t rss0 = 0;
	uint64_t *ctr = NULL;
	uint16_t port;

	pwt_side_open(&s);
	l = pw_listen(s.ctx, "127.0.0.1", 0);
	PWT_NONNULL(l);
	port = pw_listener_port(l);
	memset(&r, 0, sizeof(r));
	pwt_buf_alloc(&msg, &s, 4096, PWT_ACCESS_ALL, PWT_PINNED);

	switch (cfg->kind) {
	case MP_WRITE_READ:
	case MP_IDLE:
		pwt_buf_alloc(&buf, &s, TGT_LEN, PWT_ACCESS_ALL, cfg->mode);
		/* Upper half: data for the initiator's READs. Lower half:
		 * untouched, so ODP faults happen on the remote writes. */
		pwt_fill_at(buf.addr + HALF, HALF, 77, HALF);
		break;
	case MP_ATOMIC:
		pwt_buf_alloc(&buf, &s, 4096, PWT_ACCESS_ALL, cfg->mode);
		ctr = (uint64_t *)(void *)(buf.addr + 512);
		ctr[0] = 0;
		ctr[1] = 0;
		ctr[2] = 0x77;
		ctr[3] = 0x5e5e5e5e5e5e5e5eull;
		break;
	case MP_SEND:
		pwt_buf_alloc(&buf, &s, 32 * (size_t)SEND_MAX, PWT_ACCESS_ALL, cfg->mode);
		break;
	case MP_1TIB:
		memset(&buf, 0, sizeof(buf));
		buf.len = pwt_map_huge((void **)&big, PWT_TIB);
		rss0 = pwt_rss_bytes();
		bigmr = pw_reg_mr(s.pd, big, buf.len, PWT_ACCESS_ALL | PW_ACCESS_ON_DEMAND);
		PWT_NONNULL(bigmr);
		PWT_ASSERT(pwt_rss_bytes() < rss0 + PWT_MIB);
		buf.addr = big;
		buf.rkey = bigmr->rkey;
		buf.lkey = bigmr->lkey;
		break;
	}
	r.addr = pwt_va(buf.addr);
	r.len = buf.len;
	r.rkey = buf.rkey;
	if (ctr)
		r.addr2 = pwt_va(ctr);

	memset(&attr, 0, sizeof(attr));
	attr.send_cq = s.scq;
	attr.recv_cq = s.rcq;
	memset(&param, 0, sizeof(param));
	param.private_data = &r;
	param.private_data_len = sizeof(r);
	param.timeout_ms = 30000;
	pwt_ctl_send(fd, &port, sizeof(port));
	s.qp = pw_accept(l, s.pd, &attr, &param);
	PWT_NONNULL(s.qp);
	if (cfg->kind != MP_SEND)
		PWT_OK(pwt_post_recv1(s.qp, 0xd0, msg.addr, 4096, msg.lkey));

	switch (cfg->kind) {
	case MP_WRITE_READ:
		wait_done(&s, &msg, HALF);
		PWT_PATTERN(buf.addr, HALF, 5, 0);
		PWT_PATTERN(buf.addr + HALF, HALF, 77, HALF);
		break;
	case MP_ATOMIC:
		wait_done(&s, &msg, NATOMIC);
		PWT_EQ(ctr[0], 3 * NATOMIC);
		PWT_EQ(ctr[1], NCAS);
		PWT_EQ(ctr[2], 0x77);
		PWT_EQ(ctr[3], 0x5e5e5e5e5e5e5e5eull);
		break;
	case MP_SEND:
		target_send(&s, &buf);
		break;
	case MP_1TIB:
		wait_done(&s, &msg, TIB_N);
		for (unsigned int i = 0; i < TIB_N; i++)
			PWT_PATTERN(big + tib_off(i, buf.len), TIB_LEN, 100 + i, 0);
		PWT_ZERO(big + tib_off(1, buf.len) - 17, 17);
		PWT_ASSERTF(pwt_rss_bytes() < rss0 + 256 * PWT_MIB,
			    "target RSS grew by %zu bytes", pwt_rss_bytes() - rss0);
		break;
	case MP_IDLE:
		/* Killed by the parent. */
		for (;;)
			pause();
	}
	child_verdict(fd);

	PWT_OK(pw_destroy_qp(s.qp));
	s.qp = NULL;
	if (bigmr) {
		PWT_OK(pw_dereg_mr(bigmr));
		pwt_unmap(big, buf.len);
	} else {
		pwt_buf_free(&buf);
	}
	pwt_buf_free(&msg);
	PWT_OK(pw_close_listener(l));
	pwt_side_close(&s);
	return 0;
}

/* ------------------------------------------------------------------ */
/* The initiator (parent)                                               */
/* ------------------------------------------------------------------ */

struct mp_conn {
	struct pwt_child c;
	struct pwt_side a;
	struct pwt_remote r;
	struct mp_cfg cfg;
};

static void mp_start(struct mp_conn *m, enum mp_kind kind, enum pwt_mode mode,
		     const struct pw_qp_init_attr *aa)
{
	struct pw_conn_param param = { .private_data = NULL, .private_data_len = 0,
				       .timeout_ms = 20000 };
	uint16_t port = 0;

	memset(m, 0, sizeof(*m));
	m->cfg.kind = kind;
	m->cfg.mode = mode;
	pwt_fork(&m->c, target_main, &m->cfg);
	pwt_ctl_recv(m->c.fd, &port, sizeof(port), 20000);
	pwt_side_open(&m->a);
	if (aa)
		m->a.attr = *aa;
	m->a.attr.send_cq = m->a.scq;
	m->a.attr.recv_cq = m->a.rcq;
	m->a.qp = pw_connect(m->a.pd, &m->a.attr, "127.0.0.1", port, &param);
	PWT_NONNULL(m->a.qp);
	pwt_remote_from_qp(m->a.qp, &m->r);
}

static void send_done(struct mp_conn *m, struct pwt_buf *msgbuf, uint64_t arg)
{
	struct done_msg d = { DONE_MAGIC, arg };

	memcpy(msgbuf->addr, &d, sizeof(d));
	PWT_OK(pwt_post_send1(m->a.qp, PW_WR_SEND, 0xd0, msgbuf->addr, sizeof(d),
			      msgbuf->lkey, 0, PW_SEND_SIGNALED));
	parent_verdict(&m->c);
	PWT_EXPECT_OK(m->a.scq, 0xd0, PW_WC_SEND, sizeof(d), m->a.qp->qp_num);
}

static void mp_finish(struct mp_conn *m)
{
	parent_release(&m->c);
	pwt_side_close(&m->a);
}

/* Chunk sizes for the writes: odd, page-sized and large. */
static const uint32_t chunk[] = { 1, 4095, 4096, 65537, 1 << 20, 3, 777777 };

static void t_write_read(const char *arg)
{
	enum pwt_mode m = pwt_parse_mode(arg);
	struct mp_conn mc;
	struct pwt_buf src, sink, msgbuf;
	uint32_t lens[64];
	size_t off = 0;
	uint64_t id = 0, done = 0;

	mp_start(&mc, MP_WRITE_READ, m, NULL);
	PWT_EQ(mc.r.len, TGT_LEN);
	pwt_buf_alloc(&src, &mc.a, HALF, PWT_ACCESS_ALL, m);
	pwt_buf_alloc(&sink, &mc.a, HALF, PWT_ACCESS_ALL, m);
	pwt_buf_alloc(&msgbuf, &mc.a, 4096, PWT_ACCESS_ALL, m);
	pwt_fill(src.addr, HALF, 5);

	/* The lower half in chunks of many sizes, 16 in flight at most. */
	for (int k = 0; off < HALF; k++) {
		uint32_t len = chunk[k % PWT_ARRAY_SIZE(chunk)];

		PWT_ASSERT(id < PWT_ARRAY_SIZE(lens));
		if (len > HALF - off)
			len = (uint32_t)(HALF - off);
		if (id - done >= 16) {
			PWT_EXPECT_OK(mc.a.scq, done, PW_WC_RDMA_WRITE, lens[done],
				      mc.a.qp->qp_num);
			done++;
		}
		lens[id] = len;
		PWT_OK(pwt_post_rdma(mc.a.qp, PW_WR_RDMA_WRITE, id++, src.addr + off,
				     len, src.lkey, mc.r.addr + off, mc.r.rkey,
				     PW_SEND_SIGNALED));
		off += len;
	}
	for (; done < id; done++)
		PWT_EXPECT_OK(mc.a.scq, done, PW_WC_RDMA_WRITE, lens[done],
			      mc.a.qp->qp_num);

	/* The upper half back in 1 MiB READs. */
	for (uint64_t i = 0; i < HALF / PWT_MIB; i++)
		PWT_OK(pwt_post_rdma(mc.a.qp, PW_WR_RDMA_READ, 0x1000 + i,
				     sink.addr + i * PWT_MIB, PWT_MIB, sink.lkey,
				     mc.r.addr + HALF + i * PWT_MIB, mc.r.rkey,
				     PW_SEND_SIGNALED));
	for (uint64_t i = 0; i < HALF / PWT_MIB; i++)
		PWT_EXPECT_OK(mc.a.scq, 0x1000 + i, PW_WC_RDMA_READ, PWT_MIB,
			      mc.a.qp->qp_num);
	PWT_PATTERN(sink.addr, HALF, 77, HALF);

	send_done(&mc, &msgbuf, HALF);
	pwt_buf_free(&src);
	pwt_buf_free(&sink);
	pwt_buf_free(&msgbuf);
	mp_finish(&mc);
}

static void t_atomic(const char *arg)
{
	enum pwt_mode m = pwt_parse_mode(arg);
	struct mp_conn mc;
	struct pwt_buf res, msgbuf;
	uint64_t *out, v;

	mp_start(&mc, MP_ATOMIC, m, NULL);
	pwt_buf_alloc(&res, &mc.a, NATOMIC * 8, PWT_ACCESS_ALL, m);
	pwt_buf_alloc(&msgbuf, &mc.a, 4096, PWT_ACCESS_ALL, m);
	out = (uint64_t *)(void *)res.addr;

	for (unsigned int i = 0; i < NATOMIC; i++) {
		PWT_OK(pwt_post_atomic(mc.a.qp, PW_WR_ATOMIC_FETCH_AND_ADD, i, &out[i],
				       res.lkey, mc.r.addr2, mc.r.rkey, 3, 0,
				       PW_SEND_SIGNALED));
		if (i % 16 == 15)
			for (unsigned int j = i - 15; j <= i; j++)
				PWT_EXPECT_OK(mc.a.scq, j, PW_WC_FETCH_ADD, 8, mc.a.qp->qp_num);
	}
	for (unsigned int i = NATOMIC / 16 * 16; i < NATOMIC; i++)
		PWT_EXPECT_OK(mc.a.scq, i, PW_WC_FETCH_ADD, 8, mc.a.qp->qp_num);
	for (unsigned int i = 0; i < NATOMIC; i++)
		PWT_EQ(out[i], 3ull * i);

	/* A CAS chain: each one sees the previous one's swap. */
	for (unsigned int i = 0; i < NCAS; i++) {
		PWT_OK(pwt_post_atomic(mc.a.qp, PW_WR_ATOMIC_CMP_AND_SWP, 0x10000 + i,
				       &out[0], res.lkey, mc.r.addr2 + 8, mc.r.rkey,
				       i, i + 1, PW_SEND_SIGNALED));
		PWT_EXPECT_OK(mc.a.scq, 0x10000 + i, PW_WC_COMP_SWAP, 8, mc.a.qp->qp_num);
		PWT_EQ(out[0], i);
	}
	/* A failing compare returns the current value and changes nothing. */
	PWT_OK(pwt_post_atomic(mc.a.qp, PW_WR_ATOMIC_CMP_AND_SWP, 0x20000, &out[1],
			       res.lkey, mc.r.addr2 + 16, mc.r.rkey, 1, 2,
			       PW_SEND_SIGNALED));
	PWT_EXPECT_OK(mc.a.scq, 0x20000, PW_WC_COMP_SWAP, 8, mc.a.qp->qp_num);
	v = out[1];
	PWT_EQ(v, 0x77);

	send_done(&mc, &msgbuf, NATOMIC);
	pwt_buf_free(&res);
	pwt_buf_free(&msgbuf);
	mp_finish(&mc);
}

static void t_send(const char *arg)
{
	enum pwt_mode m = pwt_parse_mode(arg);
	struct mp_conn mc;
	struct pwt_buf src;

	mp_start(&mc, MP_SEND, m, NULL);
	pwt_buf_alloc(&src, &mc.a, 16 * (size_t)SEND_MAX, PWT_ACCESS_ALL, m);
	/* Sixteen source slots, reused once their SEND completed. */
	for (unsigned int i = 0; i < NSEND; i++) {
		uint8_t *slot = src.addr + (size_t)(i % 16) * SEND_MAX;
		bool imm = i & 1;

		if (i >= 16)
			PWT_EXPECT_OK(mc.a.scq, i - 16, PW_WC_SEND, send_size(i - 16),
				      mc.a.qp->qp_num);
		pwt_fill(slot, send_size(i), 1000 + i);
		PWT_OK(pwt_post_send1(mc.a.qp, imm ? PW_WR_SEND_WITH_IMM : PW_WR_SEND,
				      i, slot, send_size(i), src.lkey, i,
				      PW_SEND_SIGNALED));
	}
	for (unsigned int i = NSEND - 16; i < NSEND; i++)
		PWT_EXPECT_OK(mc.a.scq, i, PW_WC_SEND, send_size(i), mc.a.qp->qp_num);
	parent_verdict(&mc.c);
	pwt_buf_free(&src);
	mp_finish(&mc);
}

static void t_odp_1tib(const char *arg)
{
	struct mp_conn mc;
	struct pwt_buf src, sink, msgbuf;

	(void)arg;
	mp_start(&mc, MP_1TIB, PWT_ODP, NULL);
	PWT_ASSERT(mc.r.len == PWT_TIB ||
		   (pwt_under_tsan() && mc.r.len >= 64 * PWT_GIB));
	pwt_buf_alloc(&src, &mc.a, TIB_N * TIB_LEN, PWT_ACCESS_ALL, PWT_ODP);
	pwt_buf_alloc(&sink, &mc.a, TIB_N * TIB_LEN, PWT_ACCESS_ALL, PWT_ODP);
	pwt_buf_alloc(&msgbuf, &mc.a, 4096, PWT_ACCESS_ALL, PWT_PINNED);
	for (unsigned int i = 0; i < TIB_N; i++) {
		pwt_fill(src.addr + i * TIB_LEN, TIB_LEN, 100 + i);
		PWT_OK(pwt_post_rdma(mc.a.qp, PW_WR_RDMA_WRITE, i, src.addr + i * TIB_LEN,
				     TIB_LEN, src.lkey, mc.r.addr + tib_off(i, mc.r.len), mc.r.rkey,
				     PW_SEND_SIGNALED));
		PWT_OK(pwt_post_rdma(mc.a.qp, PW_WR_RDMA_READ, 0x100 + i,
				     sink.addr + i * TIB_LEN, TIB_LEN, sink.lkey,
				     mc.r.addr + tib_off(i, mc.r.len), mc.r.rkey, PW_SEND_SIGNALED));
	}
	for (unsigned int i = 0; i < TIB_N; i++) {
		PWT_EXPECT_OK(mc.a.scq, i, PW_WC_RDMA_WRITE, TIB_LEN, mc.a.qp->qp_num);
		PWT_EXPECT_OK(mc.a.scq, 0x100 + i, PW_WC_RDMA_READ, TIB_LEN,
			      mc.a.qp->qp_num);
		PWT_PATTERN(sink.addr + i * TIB_LEN, TIB_LEN, 100 + i, 0);
	}
	send_done(&mc, &msgbuf, TIB_N);
	pwt_buf_free(&src);
	pwt_buf_free(&sink);
	pwt_buf_free(&msgbuf);
	mp_finish(&mc);
}

/* ------------------------------------------------------------------ */
/* Peer death                                                           */
/* ------------------------------------------------------------------ */

#define KILL_CHUNK	(256 * 1024u)
#define KILL_DEPTH	64
#define KILL_BOUND_MS	10000

/* Completion @wc of a stream must be the next WR, in posting order. */
static void stream_wc(struct mp_conn *mc, const struct pw_wc *wc, uint64_t *completed)
{
	PWT_EQ(wc->wr_id, *completed);
	PWT_EQ(wc->qp_num, mc->a.qp->qp_num);
	(*completed)++;
}

/*
 * Streams @op WRs with the send queue kept full and SIGKILLs the target
 * mid-stream. What must follow: exactly one RETRY_EXC_ERR (the oldest
 * outstanding WR), then only WR_FLUSH_ERR, every posted WR completed
 * exactly once and in order, the posted receives flushed, all within
 * KILL_BOUND_MS, and later posts flushed at once.
 *
 * The target is SIGSTOPped (and seen stopped) before the SIGKILL, with
 * the queue refilled and quiet: otherwise the target may have ACKed
 * everything outstanding just before dying, and a QP that dies with no
 * WR outstanding has no WR to report RETRY_EXC_ERR on.
 */
static void kill_stream(enum pw_wr_opcode op)
{
	struct pw_qp_init_attr aa;
	struct mp_conn mc;
	struct pwt_buf loc;
	struct pw_wc wc;
	uint64_t posted = 0, completed = 0, t_kill;
	int st;
	bool stopped = false;

	memset(&aa, 0, sizeof(aa));
	aa.cap.max_send_wr = KILL_DEPTH;
	mp_start(&mc, MP_IDLE, PWT_PINNED, &aa);
	pwt_buf_alloc(&loc, &mc.a, TGT_LEN, PWT_ACCESS_ALL, PWT_PINNED);
	pwt_fill(loc.addr, TGT_LEN, 9);
	for (unsigned int i = 0; i < 4; i++)
		PWT_OK(pwt_post_recv1(mc.a.qp, 0x500 + i, loc.addr, 64, loc.lkey));

	/* Stream; after 40 chunks (10 MiB) stop the target, keep the queue
	 * full until no completion comes for 100 ms. */
	for (;;) {
		while (posted - completed < KILL_DEPTH) {
			size_t off = (posted % (TGT_LEN / KILL_CHUNK)) * KILL_CHUNK;

			PWT_OK(pwt_post_rdma(mc.a.qp, op, posted, loc.addr + off,
					     KILL_CHUNK, loc.lkey, mc.r.addr + off,
					     mc.r.rkey, PW_SEND_SIGNALED));
			posted++;
		}
		if (!pwt_poll_wc(mc.a.scq, &wc, stopped ? 100 : PWT_TIMEOUT_MS)) {
			PWT_ASSERTF(stopped, "no completion for %d ms while streaming",
				    PWT_TIMEOUT_MS);
			break;
		}
		PWT_ASSERTF(wc.status == PW_WC_SUCCESS, "WR %" PRIu64 " failed (%s) before the kill",
			    wc.wr_id, pw_wc_status_str(wc.status));
		stream_wc(&mc, &wc, &completed);
		if (!stopped && completed == 40) {
			PWT_OK(kill(mc.c.pid, SIGSTOP));
			PWT_EQ(waitpid(mc.c.pid, &st, WUNTRACED), mc.c.pid);
			PWT_ASSERT(WIFSTOPPED(st));
			stopped = true;
		}
	}
	PWT_EQ(posted - completed, KILL_DEPTH);

	PWT_OK(kill(mc.c.pid, SIGKILL));
	t_kill = pwt_now_ms();
	PWT_WAIT_WC(mc.a.scq, &wc);
	PWT_ASSERTF(wc.status == PW_WC_RETRY_EXC_ERR,
		    "first completion after the kill: %s, want RETRY_EXC_ERR",
		    pw_wc_status_str(wc.status));
	stream_wc(&mc, &wc, &completed);
	while (completed < posted) {
		PWT_WAIT_WC(mc.a.scq, &wc);
		PWT_ASSERTF(wc.status == PW_WC_WR_FLUSH_ERR,
			    "after RETRY_EXC_ERR: %s, want WR_FLUSH_ERR",
			    pw_wc_status_str(wc.status));
		stream_wc(&mc, &wc, &completed);
	}
	PWT_WAIT_STATE(mc.a.qp, PW_QPS_ERR);
	for (unsigned int i = 0; i < 4; i++)
		PWT_EXPECT_ERR(mc.a.rcq, 0x500 + i, PW_WC_WR_FLUSH_ERR, mc.a.qp->qp_num);
	PWT_ASSERTF(pwt_now_ms() - t_kill < KILL_BOUND_MS,
		    "completing and flushing took %" PRIu64 " ms", pwt_now_ms() - t_kill);
	/* Posting now flushes at once. */
	PWT_OK(pwt_post_rdma(mc.a.qp, op, 0xffff, loc.addr, 64, loc.lkey, mc.r.addr,
			     mc.r.rkey, PW_SEND_SIGNALED));
	PWT_EXPECT_ERR(mc.a.scq, 0xffff, PW_WC_WR_FLUSH_ERR, mc.a.qp->qp_num);
	PWT_NO_WC(mc.a.scq, 50);
	PWT_NO_WC(mc.a.rcq, 0);

	st = pwt_child_wait(&mc.c, 10000);
	PWT_ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	pwt_buf_free(&loc);
	pwt_side_close(&mc.a);
}

static void t_kill_write(const char *arg)
{
	(void)arg;
	kill_stream(PW_WR_RDMA_WRITE);
}

static void t_kill_read(const char *arg)
{
	(void)arg;
	kill_stream(PW_WR_RDMA_READ);
}

/* The initiator child streams writes into the parent until it is killed. */
static int initiator_main(int fd, void *arg)
{
	struct pw_conn_param param = { .private_data = NULL, .private_data_len = 0,
				       .timeout_ms = 20000 };
	struct pwt_remote r;
	struct pwt_side s;
	struct pwt_buf loc;
	uint64_t posted = 0, completed = 0;
	uint16_t port;

	(void)arg;
	pwt_ctl_recv(fd, &port, sizeof(port), 20000);
	pwt_side_open(&s);
	s.attr.send_cq = s.scq;
	s.attr.recv_cq = s.rcq;
	s.attr.cap.max_send_wr = KILL_DEPTH;
	s.qp = pw_connect(s.pd, &s.attr, "127.0.0.1", port, &param);
	PWT_NONNULL(s.qp);
	pwt_remote_from_qp(s.qp, &r);
	pwt_buf_alloc(&loc, &s, TGT_LEN, PWT_ACCESS_ALL, PWT_PINNED);
	for (;;) {
		struct pw_wc wc;

		while (posted - completed < KILL_DEPTH) {
			size_t off = (posted % (TGT_LEN / KILL_CHUNK)) * KILL_CHUNK;

			PWT_OK(pwt_post_rdma(s.qp, PW_WR_RDMA_WRITE, posted, loc.addr + off,
					     KILL_CHUNK, loc.lkey, r.addr + off, r.rkey,
					     PW_SEND_SIGNALED));
			posted++;
		}
		PWT_WAIT_WC(s.scq, &wc);
		PWT_ASSERT(wc.status == PW_WC_SUCCESS);
		if (++completed == 40) {
			uint8_t v = 'S';

			pwt_ctl_send(fd, &v, 1);
		}
	}
}

/*
 * The initiator dies mid-stream: the target's QP goes to error with its
 * receives flushed, and its listener keeps serving new connections.
 */
static void t_kill_initiator(const char *arg)
{
	struct pwt_child c;
	struct pwt_pair p;
	struct pwt_acceptor acc;
	struct pwt_img tgt;
	struct pwt_remote r;
	struct pw_qp *qa, *qb;
	uint64_t t_kill;
	uint8_t v = 0;
	int st;

	(void)arg;
	pwt_fork(&c, initiator_main, NULL);
	/* The parent plays side b (target); side a connects later. */
	memset(&p, 0, sizeof(p));
	pwt_side_open(&p.b);
	p.l = pw_listen(p.b.ctx, "127.0.0.1", 0);
	PWT_NONNULL(p.l);
	p.port = pw_listener_port(p.l);
	pwt_img_alloc(&tgt, &p.b, TGT_LEN, PWT_ODP, 0);

	memset(&r, 0, sizeof(r));
	r.addr = pwt_va(tgt.buf.addr);
	r.len = TGT_LEN;
	r.rkey = tgt.buf.rkey;
	memset(&acc, 0, sizeof(acc));
	acc.l = p.l;
	acc.pd = p.b.pd;
	acc.attr.send_cq = p.b.scq;
	acc.attr.recv_cq = p.b.rcq;
	acc.param.private_data = &r;
	acc.param.private_data_len = sizeof(r);
	acc.param.timeout_ms = 20000;
	pwt_accept_start(&acc);
	pwt_ctl_send(c.fd, &p.port, sizeof(p.port));
	p.b.qp = pwt_accept_join(&acc);
	PWT_NONNULL(p.b.qp);
	for (unsigned int i = 0; i < 8; i++)
		PWT_OK(pwt_post_recv1(p.b.qp, 0x600 + i, NULL, 0, 0));

	pwt_ctl_recv(c.fd, &v, 1, 30000);
	PWT_EQ(v, 'S');
	pwt_sleep_ms(20);
	PWT_OK(kill(c.pid, SIGKILL));
	t_kill = pwt_now_ms();
	PWT_WAIT_STATE(p.b.qp, PW_QPS_ERR);
	for (unsigned int i = 0; i < 8; i++)
		PWT_EXPECT_ERR(p.b.rcq, 0x600 + i, PW_WC_WR_FLUSH_ERR, p.b.qp->qp_num);
	PWT_ASSERTF(pwt_now_ms() - t_kill < KILL_BOUND_MS, "flush took %" PRIu64 " ms",
		    pwt_now_ms() - t_kill);
	PWT_NO_WC(p.b.rcq, 0);
	st = pwt_child_wait(&c, 10000);
	PWT_ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);

	/* A new initiator on the same listener. */
	pwt_side_open(&p.a);
	pwt_connect_qp(&p.a, &p.b, p.l, NULL, NULL, &qa, &qb);
	{
		struct pwt_img src;

		pwt_img_alloc_src(&src, &p.a, 8192, PWT_PINNED, 11);
		PWT_OK(pwt_post_rdma(qa, PW_WR_RDMA_WRITE, 1, src.buf.addr, 8192,
				     src.buf.lkey, pwt_va(tgt.buf.addr + 4096),
				     tgt.buf.rkey, PW_SEND_SIGNALED));
		PWT_EXPECT_OK(p.a.scq, 1, PW_WC_RDMA_WRITE, 8192, qa->qp_num);
		PWT_MEMEQ(tgt.buf.addr + 4096, src.want, 8192);
		pwt_img_free(&src);
	}
	PWT_OK(pw_destroy_qp(qa));
	PWT_OK(pw_destroy_qp(qb));
	pwt_img_free(&tgt);
	pwt_pair_close(&p);
}

static const struct pwt_case cases[] = {
	{ "write_read", t_write_read },
	{ "atomic", t_atomic },
	{ "send", t_send },
	{ "odp_1tib", t_odp_1tib },
	{ "kill_write", t_kill_write },
	{ "kill_read", t_kill_read },
	{ "kill_initiator", t_kill_initiator },
};

int main(int argc, char **argv)
{
	return pwt_main(argc, argv, cases, PWT_ARRAY_SIZE(cases));
}
