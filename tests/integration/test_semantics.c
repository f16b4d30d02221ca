/* SPDX-License-Identifier: MIT */
/*
 * Tests of the notifier's guarantees: docs/semantics.md, "VM events and the
 * notifier", one scenario per CTest test (semantics.<scenario>).
 *
 * The process that owns the memory (the target) does the VM operation
 * (munmap, mmap, madvise, mremap, fork, pw_dereg_mr) itself, in this
 * process; the peer is a real second process (forked before the target
 * opens its context) with its own context and QPs that does the RDMA
 * WRITEs and READs on command, over a control socket, or streams WRITEs
 * while the target changes its mappings. Every check is exact: data byte
 * for byte, the completion status of each WR, and each async event (type,
 * MR, offset, length), acknowledged. A remote access error puts both QPs
 * in error (RC), so every check after one runs on a fresh connection.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pwtest.h"

#if defined(__SANITIZE_THREAD__)
#define SEM_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SEM_TSAN 1
#endif
#endif
#ifndef SEM_TSAN
#define SEM_TSAN 0
#endif

/*
 * Under TSan: the engine writes registered memory with recvmsg(), which
 * TSan sees (it cannot see a NIC's DMA), and the test reads that memory
 * once the peer has told it, over the control socket, that its WRITE
 * completed: an order through another process, which TSan cannot see.
 * Likewise a store of the test into memory the engine sent before (a
 * READ response), once the peer said the READ completed. The test's own
 * accesses of registered memory in those places are hidden from it (the
 * library's accesses and every other access of the test stay checked).
 */
#if SEM_TSAN
void AnnotateIgnoreReadsBegin(const char *file, int line);
void AnnotateIgnoreReadsEnd(const char *file, int line);
void AnnotateIgnoreWritesBegin(const char *file, int line);
void AnnotateIgnoreWritesEnd(const char *file, int line);
#define SEM_READS(stmt)							\
	do {								\
		AnnotateIgnoreReadsBegin(__FILE__, __LINE__);		\
		stmt;							\
		AnnotateIgnoreReadsEnd(__FILE__, __LINE__);		\
	} while (0)
#define SEM_WRITES(stmt)						\
	do {								\
		AnnotateIgnoreWritesBegin(__FILE__, __LINE__);		\
		stmt;							\
		AnnotateIgnoreWritesEnd(__FILE__, __LINE__);		\
	} while (0)
#else
#define SEM_READS(stmt)	do { stmt; } while (0)
#define SEM_WRITES(stmt) do { stmt; } while (0)
#endif
#undef PWT_MEMEQ
#define PWT_MEMEQ(got, want, len)					\
	SEM_READS(pwt_memeq_at(__FILE__, __LINE__, #got, (got), (want), (len)))
#undef PWT_PATTERN
#define PWT_PATTERN(p, len, seed, base)					\
	SEM_READS(pwt_pattern_at(__FILE__, __LINE__, #p, (p), (len), (seed), (base)))
#undef PWT_ZERO
#define PWT_ZERO(p, len) SEM_READS(pwt_zero_at(__FILE__, __LINE__, #p, (p), (len)))

#define PG		((size_t)4096)
#define SEM_MIN(a, b)	((a) < (b) ? (a) : (b))
#define ODP_ALL		(PWT_ACCESS_ALL | PW_ACCESS_ON_DEMAND)
#define EVENT_WAIT_MS	5000
#define DL_HANG_MS	10000		/* watchdogs: no progress for this long */
#define MARK_SEED	0x6d61726bu	/* "mark": what the target puts in new memory */

/* ------------------------------------------------------------------ */
/* The peer process: commands over the control socket                  */
/* ------------------------------------------------------------------ */

enum pc_op {
	PC_CONNECT = 1,	/* a new QP to the target (the old one is destroyed) */
	PC_WRITE,	/* one signaled WRITE of pattern (seed, base) */
	PC_READ,	/* one signaled READ; the data comes back */
	PC_STREAM,	/* WRITEs, a window of them, until STOP, an error or max */
	PC_RSTREAM,	/* the same with READs, their data checked */
	PC_STOP,	/* (streaming) stop posting, drain, report */
	PC_EXIT,	/* exit(0) at once, whatever is in flight */
	PC_QUIT,	/* tear everything down and exit 0 */
};

struct pcmd {
	uint32_t op;
	uint32_t len;		/* bytes (a stream: per WR) */
	uint64_t raddr;
	uint32_t rkey;
	uint32_t seed;
	uint64_t base;		/* pattern index of the first byte */
	uint32_t count;		/* stream: blocks, WR i writes block i % count */
	uint32_t window;	/* stream: WRs in flight */
	uint64_t max;		/* stream: WRs to post at most, 0 = no limit */
	uint16_t port;		/* connect */
	uint16_t pad[3];
};

/* A reply: a completion status (or -errno), and a stream's report. */
struct prep {
	int32_t status;
	uint32_t len;		/* READ data bytes that follow */
	uint64_t posted, ok, access, flush, other;
	uint32_t first_err;	/* the stream's first error status */
	uint32_t other_status;
	uint64_t mismatched;	/* READ stream: successful READs with other data */
};

#define PEER_SRC_LEN	(64 * PWT_MIB)	/* ODP: a stream's blocks */
#define PEER_SINK_LEN	(2 * PWT_MIB)
#define PEER_PUB_LEN	(4 * PWT_MIB)	/* pinned: what the target READs */
#define PEER_PUB_SEED	4242

struct peer {
	int fd;
	struct pwt_side s;
	struct pwt_buf src, sink, pub;
	uint64_t wr_id;
};

static void drain_cq(struct pw_cq *cq)
{
	struct pw_wc wc;

	while (pw_poll_cq(cq, 1, &wc) > 0)
		;
}

static void peer_reply(struct peer *p, const struct prep *r, const void *data)
{
	pwt_ctl_send(p->fd, r, sizeof(*r));
	if (r->len)
		pwt_ctl_send(p->fd, data, r->len);
}

static void peer_connect(struct peer *p, uint16_t port)
{
	struct pwt_remote r;
	struct pw_conn_param param;
	struct prep rep;

	if (p->s.qp) {
		PWT_OK(pw_destroy_qp(p->s.qp));
		p->s.qp = NULL;
		drain_cq(p->s.scq);
		drain_cq(p->s.rcq);
	}
	memset(&r, 0, sizeof(r));
	r.addr = pwt_va(p->pub.addr);
	r.len = p->pub.len;
	r.rkey = p->pub.rkey;
	memset(&param, 0, sizeof(param));
	param.private_data = &r;
	param.private_data_len = sizeof(r);
	param.timeout_ms = PWT_TIMEOUT_MS;
	memset(&p->s.attr, 0, sizeof(p->s.attr));
	p->s.attr.send_cq = p->s.scq;
	p->s.attr.recv_cq = p->s.rcq;
	p->s.qp = pw_connect(p->s.pd, &p->s.attr, "127.0.0.1", port, &param);
	PWT_NONNULL(p->s.qp);
	memset(&rep, 0, sizeof(rep));
	peer_reply(p, &rep, NULL);
}

/*
 * One signaled WR and its completion: the next one on the CQ, for this
 * WR and QP; on success with the right opcode and length.
 */
static int32_t peer_one(struct peer *p, enum pw_wr_opcode op, void *laddr,
			uint32_t lkey, const struct pcmd *c)
{
	uint64_t id = ++p->wr_id;
	struct pw_wc wc;
	int rc;

	PWT_ASSERTF(p->s.qp, "peer: no connection");
	rc = pwt_post_rdma(p->s.qp, op, id, laddr, c->len, lkey, c->raddr,
			   c->rkey, PW_SEND_SIGNALED);
	if (rc)
		return rc;
	PWT_WAIT_WC(p->s.scq, &wc);
	PWT_EQ(wc.wr_id, id);
	PWT_EQ(wc.qp_num, p->s.qp->qp_num);
	if (wc.status == PW_WC_SUCCESS) {
		PWT_EQ(wc.opcode, op == PW_WR_RDMA_WRITE ? PW_WC_RDMA_WRITE :
			   PW_WC_RDMA_READ);
		PWT_EQ(wc.byte_len, c->len);
	}
	return (int32_t)wc.status;
}

static void peer_write(struct peer *p, const struct pcmd *c)
{
	struct prep rep;

	PWT_ASSERT(c->len <= p->src.len);
	memset(&rep, 0, sizeof(rep));
	pwt_fill_at(p->src.addr, c->len, c->seed, c->base);
	rep.status = peer_one(p, PW_WR_RDMA_WRITE, p->src.addr, p->src.lkey, c);
	peer_reply(p, &rep, NULL);
}

static void peer_read(struct peer *p, const struct pcmd *c)
{
	struct prep rep;

	PWT_ASSERT(c->len <= p->sink.len);
	memset(&rep, 0, sizeof(rep));
	/* not zero: a READ that returns zeros must have read zeros */
	memset(p->sink.addr, 0xee, c->len);
	rep.status = peer_one(p, PW_WR_RDMA_READ, p->sink.addr, p->sink.lkey, c);
	if (rep.status == PW_WC_SUCCESS)
		rep.len = c->len;
	peer_reply(p, &rep, p->sink.addr);
}

static bool ctl_readable(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	return poll(&pfd, 1, 0) == 1;
}

/*
 * WRITEs of c->len bytes, c->window in flight, WR i into block i %
 * c->count (source and target offset i % count * len, pattern (seed,
 * that offset)). Tells the target 'G' (a reply) at the first completion,
 * stops posting on STOP, on the first error or after c->max WRs, drains,
 * waits for STOP if it has not come, and reports every completion:
 * in order, successes only before the first error, flushes only after.
 * @rd: READs of the blocks instead, each into its own sink slot; a
 * successful READ whose data is not pattern (seed, offset) is counted.
 */
static void peer_stream(struct peer *p, const struct pcmd *c, bool rd)
{
	uint64_t base = p->wr_id + 1, posted = 0, done = 0;
	bool stop = false, failed = false, told = false;
	struct pcmd in;
	struct prep rep;

	PWT_ASSERT(p->s.qp && c->count && c->window && c->len);
	PWT_ASSERT((uint64_t)c->count * c->len <= p->src.len);
	PWT_ASSERT(!rd || (uint64_t)c->window * c->len <= p->sink.len);
	for (uint32_t k = 0; k < c->count; k++)
		pwt_fill_at(p->src.addr + (size_t)k * c->len, c->len, c->seed,
			    (uint64_t)k * c->len);
	memset(&rep, 0, sizeof(rep));
	for (;;) {
		struct pw_wc wc;

		while (!stop && !failed && posted - done < c->window &&
		       (!c->max || posted < c->max)) {
			size_t k = (size_t)(posted % c->count);

			if (rd)
				PWT_OK(pwt_post_rdma(p->s.qp, PW_WR_RDMA_READ, base + posted,
						     p->sink.addr + (posted % c->window) * c->len,
						     c->len, p->sink.lkey, c->raddr + k * c->len,
						     c->rkey, PW_SEND_SIGNALED));
			else
				PWT_OK(pwt_post_rdma(p->s.qp, PW_WR_RDMA_WRITE, base + posted,
						     p->src.addr + k * c->len, c->len,
						     p->src.lkey, c->raddr + k * c->len,
						     c->rkey, PW_SEND_SIGNALED));
			posted++;
		}
		if (done == posted)
			break;
		PWT_WAIT_WC(p->s.scq, &wc);
		PWT_EQ(wc.wr_id, base + done);
		PWT_EQ(wc.qp_num, p->s.qp->qp_num);
		done++;
		if (wc.status == PW_WC_SUCCESS) {
			PWT_ASSERTF(!failed, "stream WRITE %" PRIu64 " succeeded after an error",
				    done - 1);
			PWT_EQ(wc.opcode, rd ? PW_WC_RDMA_READ : PW_WC_RDMA_WRITE);
			PWT_EQ(wc.byte_len, c->len);
			rep.ok++;
			if (rd) {
				uint64_t i = done - 1, k = i % c->count;

				if (memcmp(p->sink.addr + (i % c->window) * c->len,
					   p->src.addr + k * c->len, c->len))
					rep.mismatched++;
			}
		} else if (!failed) {
			failed = true;
			rep.first_err = wc.status;
			if (wc.status == PW_WC_REM_ACCESS_ERR) {
				rep.access++;
			} else {
				rep.other++;
				rep.other_status = wc.status;
			}
		} else if (wc.status == PW_WC_WR_FLUSH_ERR) {
			rep.flush++;
		} else {
			rep.other++;
			rep.other_status = wc.status;
		}
		if (!told) {
			struct prep g;

			memset(&g, 0, sizeof(g));
			peer_reply(p, &g, NULL);
			told = true;
		}
		if (!stop && ctl_readable(p->fd)) {
			pwt_ctl_recv(p->fd, &in, sizeof(in), PWT_TIMEOUT_MS);
			if (in.op == PC_EXIT)
				exit(0);
			PWT_EQ(in.op, PC_STOP);
			stop = true;
		}
	}
	if (!stop) {
		pwt_ctl_recv(p->fd, &in, sizeof(in), 40000);
		if (in.op == PC_EXIT)
			exit(0);
		PWT_EQ(in.op, PC_STOP);
	}
	rep.posted = posted;
	p->wr_id += posted;
	peer_reply(p, &rep, NULL);
}

static int peer_main(int fd, void *arg)
{
	struct peer p;

	(void)arg;
	memset(&p, 0, sizeof(p));
	p.fd = fd;
	pwt_side_open(&p.s);
	pwt_buf_alloc(&p.src, &p.s, PEER_SRC_LEN, PWT_ACCESS_ALL, PWT_ODP);
	pwt_buf_alloc(&p.sink, &p.s, PEER_SINK_LEN, PWT_ACCESS_ALL, PWT_PINNED);
	pwt_buf_alloc(&p.pub, &p.s, PEER_PUB_LEN, PWT_ACCESS_ALL, PWT_PINNED);
	pwt_fill(p.pub.addr, PEER_PUB_LEN, PEER_PUB_SEED);
	for (;;) {
		struct pcmd c;
		ssize_t n = pwt_read_full(fd, &c, sizeof(c), 50000);
		struct prep rep;

		if (n == 0)
			break;		/* the target is gone */
		PWT_ASSERTF(n == (ssize_t)sizeof(c), "peer: command: %zd bytes", n);
		switch (c.op) {
		case PC_CONNECT:
			peer_connect(&p, c.port);
			break;
		case PC_WRITE:
			peer_write(&p, &c);
			break;
		case PC_READ:
			peer_read(&p, &c);
			break;
		case PC_STREAM:
		case PC_RSTREAM:
			peer_stream(&p, &c, c.op == PC_RSTREAM);
			break;
		case PC_EXIT:
			exit(0);
		case PC_QUIT:
			if (p.s.qp)
				PWT_OK(pw_destroy_qp(p.s.qp));
			p.s.qp = NULL;
			pwt_buf_free(&p.src);
			pwt_buf_free(&p.sink);
			pwt_buf_free(&p.pub);
			pwt_side_close(&p.s);
			memset(&rep, 0, sizeof(rep));
			pwt_ctl_send(fd, &rep, sizeof(rep));
			return 0;
		default:
			pwt_fail(__FILE__, __LINE__, "peer: unknown command %u", c.op);
		}
	}
	return 1;
}

/* ------------------------------------------------------------------ */
/* The target: this process                                            */
/* ------------------------------------------------------------------ */

struct tgt {
	struct pwt_child peer;
	struct pwt_side s;		/* s.qp: the current connection's QP */
	struct pw_listener *l;
	uint16_t port;
	struct pwt_remote pr;		/* the peer's pinned buffer */
	uint8_t *tsan_page;		/* see tgt_send() */
};

static void tgt_open(struct tgt *t)
{
	int fd;

	pwt_side_open(&t->s);
	t->l = pw_listen(t->s.ctx, "127.0.0.1", 0);
	PWT_NONNULL(t->l);
	t->port = pw_listener_port(t->l);
	fd = pw_get_async_fd(t->s.ctx);
	PWT_ASSERTF(fd >= 0, "pw_get_async_fd: %d", fd);
	/* pw_get_async_event() then returns -EAGAIN when there is none */
	PWT_EQ(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
	if (SEM_TSAN)
		t->tsan_page = pwt_map(PG);
}

static void tgt_close(struct tgt *t)
{
	if (t->s.qp)
		PWT_OK(pw_destroy_qp(t->s.qp));
	t->s.qp = NULL;
	PWT_OK(pw_close_listener(t->l));
	pwt_side_close(&t->s);
	if (t->tsan_page)
		pwt_unmap(t->tsan_page, PG);
	t->tsan_page = NULL;
}

/* Fork the peer first (pwtest.h: before this process opens a context). */
static void tgt_start(struct tgt *t)
{
	PWT_EQ(sysconf(_SC_PAGESIZE), PG);
	memset(t, 0, sizeof(*t));
	pwt_fork(&t->peer, peer_main, NULL);
	tgt_open(t);
}

static void tgt_recv(const char *file, int line, struct tgt *t, struct prep *r)
{
	ssize_t n = pwt_read_full(t->peer.fd, r, sizeof(*r), 40000);

	if (n != (ssize_t)sizeof(*r)) {
		pwt_child_ok_at(file, line, &t->peer, 5000); /* its failure */
		pwt_fail(file, line, "no reply from the peer (%zd)", n);
	}
}

/*
 * A command to the peer. Under TSan first a registration and its
 * deregistration: the key table's write lock, which the engine takes for
 * reading before it touches registered memory for the peer's op. That
 * orders this thread's stores into registered memory (and mmap) before
 * the engine's sendmsg() of it as a READ response; TSan cannot see the
 * order the test really has, through the peer process.
 */
static void tgt_send(struct tgt *t, const struct pcmd *c)
{
	if (t->tsan_page && (c->op == PC_WRITE || c->op == PC_READ || c->op == PC_STREAM ||
			     c->op == PC_RSTREAM)) {
		struct pw_mr *mr = pw_reg_mr(t->s.pd, t->tsan_page, PG, ODP_ALL);

		PWT_NONNULL(mr);
		PWT_OK(pw_dereg_mr(mr));
	}
	pwt_ctl_send(t->peer.fd, c, sizeof(*c));
}

/* A fresh connection: the old QPs (in error, say) are destroyed. */
#define TGT_CONNECT(t) tgt_connect_at(__FILE__, __LINE__, (t))
static void tgt_connect_at(const char *file, int line, struct tgt *t)
{
	struct pw_qp_init_attr attr;
	struct pw_conn_param param;
	struct pcmd c;
	struct prep r;

	if (t->s.qp) {
		PWT_OK(pw_destroy_qp(t->s.qp));
		t->s.qp = NULL;
		drain_cq(t->s.scq);
		drain_cq(t->s.rcq);
	}
	memset(&c, 0, sizeof(c));
	c.op = PC_CONNECT;
	c.port = t->port;
	tgt_send(t, &c);
	memset(&attr, 0, sizeof(attr));
	attr.send_cq = t->s.scq;
	attr.recv_cq = t->s.rcq;
	memset(&param, 0, sizeof(param));
	param.timeout_ms = PWT_TIMEOUT_MS;
	t->s.qp = pw_accept(t->l, t->s.pd, &attr, &param);
	if (!t->s.qp)
		pwt_fail(file, line, "pw_accept: %s", strerror(errno));
	tgt_recv(file, line, t, &r);
	PWT_EQ(r.status, 0);
	pwt_remote_from_qp(t->s.qp, &t->pr);
}

static void tgt_finish(struct tgt *t)
{
	struct pcmd c;
	struct prep r;

	memset(&c, 0, sizeof(c));
	c.op = PC_QUIT;
	tgt_send(t, &c);
	tgt_recv(__FILE__, __LINE__, t, &r);
	PWT_CHILD_OK(&t->peer, 20000);
	tgt_close(t);
}

static const char *status_str(int32_t st)
{
	return st < 0 ? pwt_strerr(st) : pw_wc_status_str((enum pw_wc_status)st);
}

/* The peer WRITEs pattern (seed, base) there; returns its completion status. */
static int32_t peer_write_status(struct tgt *t, const void *addr, uint32_t rkey,
				 size_t len, uint32_t seed, uint64_t base)
{
	struct pcmd c;
	struct prep r;

	memset(&c, 0, sizeof(c));
	c.op = PC_WRITE;
	c.len = (uint32_t)len;
	c.raddr = pwt_va(addr);
	c.rkey = rkey;
	c.seed = seed;
	c.base = base;
	tgt_send(t, &c);
	tgt_recv(__FILE__, __LINE__, t, &r);
	return r.status;
}

/*
 * The peer WRITEs pattern (seed, base) to [addr, addr + len) with rkey;
 * its completion must be @want. A remote error puts the target's QP in
 * error too (IBA), which is checked.
 */
#define PEER_WRITE(t, addr, rkey, len, seed, base, want)			\
	peer_write_at(__FILE__, __LINE__, (t), (addr), (rkey), (len), (seed),	\
		      (base), (want))
static void peer_write_at(const char *file, int line, struct tgt *t,
			  const void *addr, uint32_t rkey, size_t len,
			  uint32_t seed, uint64_t base, enum pw_wc_status want)
{
	struct pcmd c;
	struct prep r;

	memset(&c, 0, sizeof(c));
	c.op = PC_WRITE;
	c.len = (uint32_t)len;
	c.raddr = pwt_va(addr);
	c.rkey = rkey;
	c.seed = seed;
	c.base = base;
	tgt_send(t, &c);
	tgt_recv(file, line, t, &r);
	if (r.status != (int32_t)want)
		pwt_fail(file, line, "peer WRITE of %zu bytes at %p: %s, want %s",
			 len, addr, status_str(r.status), pw_wc_status_str(want));
	if (want != PW_WC_SUCCESS)
		pwt_wait_state_at(file, line, t->s.qp, PW_QPS_ERR, PWT_TIMEOUT_MS);
}

/* The peer READs [addr, addr + len) into @out (on success); must be @want. */
#define PEER_READ(t, addr, rkey, len, out, want)				\
	peer_read_at(__FILE__, __LINE__, (t), (addr), (rkey), (len), (out), (want))
static void peer_read_at(const char *file, int line, struct tgt *t,
			 const void *addr, uint32_t rkey, size_t len, void *out,
			 enum pw_wc_status want)
{
	struct pcmd c;
	struct prep r;

	memset(&c, 0, sizeof(c));
	c.op = PC_READ;
	c.len = (uint32_t)len;
	c.raddr = pwt_va(addr);
	c.rkey = rkey;
	tgt_send(t, &c);
	tgt_recv(file, line, t, &r);
	if (r.status != (int32_t)want)
		pwt_fail(file, line, "peer READ of %zu bytes at %p: %s, want %s",
			 len, addr, status_str(r.status), pw_wc_status_str(want));
	if (r.status == PW_WC_SUCCESS) {
		if (r.len != len)
			pwt_fail(file, line, "READ reply of %u bytes, want %zu", r.len, len);
		pwt_ctl_recv(t->peer.fd, out, len, 20000);
	} else if (r.len) {
		pwt_fail(file, line, "data with a failed READ");
	}
	if (want != PW_WC_SUCCESS)
		pwt_wait_state_at(file, line, t->s.qp, PW_QPS_ERR, PWT_TIMEOUT_MS);
}

/* The peer READs the range, which must equal @want_data byte for byte. */
#define PEER_READ_EQ(t, addr, rkey, len, want_data)				\
	peer_read_eq_at(__FILE__, __LINE__, (t), (addr), (rkey), (len), (want_data))
static void peer_read_eq_at(const char *file, int line, struct tgt *t,
			    const void *addr, uint32_t rkey, size_t len,
			    const void *want_data)
{
	uint8_t *got = malloc(len);

	PWT_ASSERT(got);
	peer_read_at(file, line, t, addr, rkey, len, got, PW_WC_SUCCESS);
	pwt_memeq_at(file, line, "data the peer READ", got, want_data, len);
	free(got);
}

static void stream_start_op(struct tgt *t, uint32_t op, const void *addr,
			    uint32_t rkey, size_t len, uint32_t count,
			    uint32_t window, uint32_t seed, uint64_t max)
{
	struct pcmd c;
	struct prep r;

	memset(&c, 0, sizeof(c));
	c.op = op;
	c.len = (uint32_t)len;
	c.raddr = pwt_va(addr);
	c.rkey = rkey;
	c.seed = seed;
	c.count = count;
	c.window = window;
	c.max = max;
	tgt_send(t, &c);
	/* 'G': the first completion is in, WRITEs are in flight */
	tgt_recv(__FILE__, __LINE__, t, &r);
	PWT_EQ(r.status, 0);
}

static void stream_start(struct tgt *t, const void *addr, uint32_t rkey,
			 size_t len, uint32_t count, uint32_t window,
			 uint32_t seed, uint64_t max)
{
	stream_start_op(t, PC_STREAM, addr, rkey, len, count, window, seed, max);
}

static void stream_stop(struct tgt *t, struct prep *r)
{
	struct pcmd c;

	memset(&c, 0, sizeof(c));
	c.op = PC_STOP;
	tgt_send(t, &c);
	tgt_recv(__FILE__, __LINE__, t, r);
	PWT_EQ(r->posted, r->ok + r->access + r->flush + r->other);
}

/* ---- async events ---- */

/*
 * pw_get_async_event() for the MR events these tests are about: QP events
 * (a QP a test failed on purpose, a peer that went) are acknowledged and
 * passed over; tests/integration/test_live.c checks those.
 */
static int get_mr_event(struct pw_context *ctx, struct pw_async_event *ev)
{
	int rc;

	while ((rc = pw_get_async_event(ctx, ev)) == 0 &&
	       (ev->event_type == PW_EVENT_QP_FATAL ||
		ev->event_type == PW_EVENT_QP_PEER_DISCONNECTED))
		pw_ack_async_event(ev);
	return rc;
}

/* Wait up to @ms for an MR event: 0, or -EAGAIN when none came. */
static int wait_mr_event(struct pw_context *ctx, struct pw_async_event *ev, int ms)
{
	uint64_t end = pwt_now_ms() + (uint64_t)ms;

	for (;;) {
		struct pollfd pfd = { .fd = pw_get_async_fd(ctx), .events = POLLIN };
		uint64_t now = pwt_now_ms();
		int rc;

		rc = get_mr_event(ctx, ev);
		if (rc != -EAGAIN || now >= end)
			return rc;
		(void)poll(&pfd, 1, (int)(end - now));
	}
}

#define EXPECT_EVENT(ctx, type, mr, off, len)					\
	expect_event_at(__FILE__, __LINE__, (ctx), (type), (mr), (off), (len))
static void expect_event_at(const char *file, int line, struct pw_context *ctx,
			    enum pw_event_type type, struct pw_mr *mr,
			    uint64_t off, uint64_t len)
{
	struct pw_async_event ev;
	int rc;

	rc = wait_mr_event(ctx, &ev, EVENT_WAIT_MS);
	if (rc == -EAGAIN)
		pwt_fail(file, line, "no async event within %d ms (want %s, offset %#" PRIx64
			 ", length %#" PRIx64 ")", EVENT_WAIT_MS, pw_event_type_str(type),
			 off, len);
	if (rc)
		pwt_fail(file, line, "pw_get_async_event: %d (%s)", rc, pwt_strerr(rc));
	if (ev.event_type != type || ev.element.mr != mr || ev.offset != off ||
	    ev.length != len)
		pwt_fail(file, line, "async event %s MR %p offset %#" PRIx64 " length %#" PRIx64
			 "; want %s MR %p offset %#" PRIx64 " length %#" PRIx64,
			 pw_event_type_str(ev.event_type), (void *)ev.element.mr,
			 ev.offset, ev.length, pw_event_type_str(type), (void *)mr,
			 off, len);
	pw_ack_async_event(&ev);
}

/* No event within @ms, and none queued (-EAGAIN). */
#define EXPECT_NO_EVENT(ctx, ms) expect_no_event_at(__FILE__, __LINE__, (ctx), (ms))
static void expect_no_event_at(const char *file, int line, struct pw_context *ctx,
			       int ms)
{
	struct pw_async_event ev;
	int rc;

	if ((rc = wait_mr_event(ctx, &ev, ms)) != -EAGAIN) {
		if (rc == 0)
			pwt_fail(file, line, "unexpected async event %s MR %p offset %#" PRIx64
				 " length %#" PRIx64, pw_event_type_str(ev.event_type),
				 (void *)ev.element.mr, ev.offset, ev.length);
		pwt_fail(file, line, "async fd readable, but pw_get_async_event: %d", rc);
	}
}

struct evwant {
	enum pw_event_type type;
	struct pw_mr *mr;
	uint64_t off, len;
};

/* Exactly these @n events, in any order, then no more. */
#define EXPECT_EVENTS(ctx, w, n) expect_events_at(__FILE__, __LINE__, (ctx), (w), (n))
static void expect_events_at(const char *file, int line, struct pw_context *ctx,
			     const struct evwant *w, size_t n)
{
	bool got[16] = { false };

	PWT_ASSERT(n <= 16);
	for (size_t k = 0; k < n; k++) {
		struct pw_async_event ev;
		size_t i;

		if (wait_mr_event(ctx, &ev, EVENT_WAIT_MS) == -EAGAIN)
			pwt_fail(file, line, "%zu of %zu async events within %d ms", k, n,
				 EVENT_WAIT_MS);
		for (i = 0; i < n; i++)
			if (!got[i] && w[i].type == ev.event_type && w[i].mr == ev.element.mr &&
			    w[i].off == ev.offset && w[i].len == ev.length)
				break;
		if (i == n)
			pwt_fail(file, line, "unexpected async event %s MR %p offset %#" PRIx64
				 " length %#" PRIx64, pw_event_type_str(ev.event_type),
				 (void *)ev.element.mr, ev.offset, ev.length);
		got[i] = true;
		pw_ack_async_event(&ev);
	}
	expect_no_event_at(file, line, ctx, 100);
}

/* ---- memory ---- */

/* New anonymous memory at exactly @addr (nothing may be there). */
static uint8_t *map_at(void *addr, size_t len)
{
	void *p = mmap(addr, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);

	PWT_ASSERTF(p == addr, "mmap at %p: got %p (%s)", addr, p,
		    p == MAP_FAILED ? strerror(errno) : "another address");
	return p;
}

static struct pw_mr *reg(struct tgt *t, void *addr, size_t len, unsigned int access)
{
	struct pw_mr *mr = pw_reg_mr(t->s.pd, addr, len, access);

	PWT_NONNULL(mr);
	return mr;
}

static uint8_t *xmalloc(size_t len)
{
	uint8_t *p = malloc(len);

	PWT_ASSERT(p);
	return p;
}

/* ------------------------------------------------------------------ */
/* munmap                                                              */
/* ------------------------------------------------------------------ */

/*
 * munmap of one page in the middle of an 8-page ODP MR the peer wrote:
 * the owner gets PW_EVENT_MR_UNMAPPED for exactly that page and nothing
 * else; the other pages keep working on the same connection (exact
 * data); the peer's WRITE, a 1-byte WRITE, a READ, and a WRITE and a READ
 * straddling the page's edge all fail with REM_ACCESS_ERR (each on a
 * fresh connection); the target's own WRITE from and READ into that page
 * fail with LOC_PROT_ERR; afterwards, on a fresh connection, the other
 * pages work with exact data again. pw_dereg_mr() drops the MR's event
 * still queued, and waits for the acknowledgement of one taken.
 */
struct dereg_arg {
	struct pw_mr *mr;
	atomic_bool done;
};

static void *dereg_thread(void *arg)
{
	struct dereg_arg *d = arg;

	PWT_OK(pw_dereg_mr(d->mr));
	atomic_store(&d->done, true);
	return NULL;
}

static void t_munmap_odp(const char *arg)
{
	const size_t n = 8, hole = 3, len = n * PG;
	struct tgt t;
	struct pw_mr *mr;
	uint8_t *buf, *want;
	uint64_t ev0;

	(void)arg;
	tgt_start(&t);
	buf = pwt_map(len);
	want = xmalloc(len);
	mr = reg(&t, buf, len, ODP_ALL);
	TGT_CONNECT(&t);
	/* every page faulted in by the peer's WRITE, and read back */
	PEER_WRITE(&t, buf, mr->rkey, len, 1, 0, PW_WC_SUCCESS);
	PWT_PATTERN(buf, len, 1, 0);
	pwt_fill(want, len, 1);
	PEER_READ_EQ(&t, buf, mr->rkey, len, want);
	ev0 = pwt_stats(t.s.ctx).notifier_events;

	PWT_EQ(munmap(buf + hole * PG, PG), 0);
	EXPECT_EVENT(t.s.ctx, PW_EVENT_MR_UNMAPPED, mr, hole * PG, PG);
	EXPECT_NO_EVENT(t.s.ctx, 100);
	PWT_ASSERT(pwt_stats(t.s.ctx).notifier_events > ev0);

	/* the other pages, on the same connection */
	PEER_WRITE(&t, buf, mr->rkey, hole * PG, 2, 0, PW_WC_SUCCESS);
	PEER_WRITE(&t, buf + (hole + 1) * PG, mr->rkey, (n - hole - 1) * PG, 2,
		   (hole + 1) * PG, PW_WC_SUCCESS);
	pwt_fill(want, len, 2);
	PWT_MEMEQ(buf, want, hole * PG);
	PWT_MEMEQ(buf + (hole + 1) * PG, want + (hole + 1) * PG, (n - hole - 1) * PG);
	PEER_READ_EQ(&t, buf, mr->rkey, hole * PG, want);
	PEER_READ_EQ(&t, buf + (hole + 1) * PG, mr->rkey, (n - hole - 1) * PG,
		     want + (hole + 1) * PG);
	PWT_EQ(pw_qp_state(t.s.qp), PW_QPS_RTS);

	/* the unmapped page: dead for every access */
	PEER_WRITE(&t, buf + hole * PG, mr->rkey, PG, 3, 0, PW_WC_REM_ACCESS_ERR);
	TGT_CONNECT(&t);
	PEER_WRITE(&t, buf + hole * PG + 100, mr->rkey, 1, 3, 0, PW_WC_REM_ACCESS_ERR);
	TGT_CONNECT(&t);
	PEER_READ(&t, buf + hole * PG, mr->rkey, PG, NULL, PW_WC_REM_ACCESS_ERR);
	TGT_CONNECT(&t);
	PEER_WRITE(&t, buf + hole * PG - 8, mr->rkey, 16, 3, 0, PW_WC_REM_ACCESS_ERR);
	TGT_CONNECT(&t);
	PEER_READ(&t, buf + (hole + 1) * PG - 8, mr->rkey, 16, NULL, PW_WC_REM_ACCESS_ERR);
	/* locally too: a WRITE source and a READ sink there */
	TGT_CONNECT(&t);
	PWT_OK(pwt_post_rdma(t.s.qp, PW_WR_RDMA_WRITE, 0x10, buf + hole * PG, 64,
			     mr->lkey, t.pr.addr, t.pr.rkey, PW_SEND_SIGNALED));
	PWT_EXPECT_ERR(t.s.scq, 0x10, PW_WC_LOC_PROT_ERR, t.s.qp->qp_num);
	TGT_CONNECT(&t);
	PWT_OK(pwt_post_rdma(t.s.qp, PW_WR_RDMA_READ, 0x11, buf + hole * PG, 64,
			     mr->lkey, t.pr.addr, t.pr.rkey, PW_SEND_SIGNALED));
	PWT_EXPECT_ERR(t.s.scq, 0x11, PW_WC_LOC_PROT_ERR, t.s.qp->qp_num);

	/* a fresh connection: the other pages, exact */
	TGT_CONNECT(&t);
	for (size_t i = 0; i < n; i++)
		if (i != hole)
			PEER_WRITE(&t, buf + i * PG, mr->rkey, PG, 4, i * PG, PW_WC_SUCCESS);
	pwt_fill(want, len, 4);
	for (size_t i = 0; i < n; i++) {
		if (i == hole)
			continue;
		PWT_MEMEQ(buf + i * PG, want + i * PG, PG);
		PEER_READ_EQ(&t, buf + i * PG, mr->rkey, PG, want + i * PG);
	}
	EXPECT_NO_EVENT(t.s.ctx, 0);

	/* an event still queued is dropped by pw_dereg_mr() */
	{
		struct pollfd pfd = { .fd = pw_get_async_fd(t.s.ctx), .events = POLLIN };

		PWT_EQ(munmap(buf + 6 * PG, PG), 0);
		/* queued: the fd is readable */
		PWT_EQ(poll(&pfd, 1, EVENT_WAIT_MS), 1);
		PWT_OK(pw_dereg_mr(mr));
		EXPECT_NO_EVENT(t.s.ctx, 50);
	}
	pwt_unmap(buf, hole * PG);
	pwt_unmap(buf + (hole + 1) * PG, (n - hole - 1) * PG);	/* 6: a hole */

	/* one taken waits for its acknowledgement */
	{
		struct pw_async_event ev;
		struct dereg_arg d;
		pthread_t th;
		uint64_t t0;

		buf = pwt_map(2 * PG);
		memset(&d, 0, sizeof(d));
		d.mr = mr = reg(&t, buf, 2 * PG, ODP_ALL);
		PWT_EQ(munmap(buf, PG), 0);
		PWT_OK(wait_mr_event(t.s.ctx, &ev, EVENT_WAIT_MS));
		PWT_ASSERT(ev.element.mr == mr && ev.event_type == PW_EVENT_MR_UNMAPPED &&
			   ev.offset == 0 && ev.length == PG);
		PWT_EQ(pthread_create(&th, NULL, dereg_thread, &d), 0);
		pwt_sleep_ms(100);	/* a negative check: still waiting */
		PWT_ASSERTF(!atomic_load(&d.done), "pw_dereg_mr returned before the ack");
		pw_ack_async_event(&ev);
		t0 = pwt_now_ms();
		while (!atomic_load(&d.done)) {
			PWT_ASSERTF(pwt_now_ms() - t0 < 5000, "pw_dereg_mr still waits after the ack");
			sched_yield();
		}
		PWT_EQ(pthread_join(th, NULL), 0);
		pwt_unmap(buf + PG, PG);
	}
	free(want);
	tgt_finish(&t);
}

/*
 * 40 separate single pages of a 96-page ODP MR unmapped one by one
 * (every other page): each gives its own UNMAPPED event, and right after
 * each one the page next to it, never unmapped, still takes a WRITE with
 * exact data (docs/semantics.md: "that part is dead for good", nothing
 * more). At the end every page never unmapped reads back exactly and the
 * holes are dead.
 */
static void t_munmap_many_holes(const char *arg)
{
	const size_t n = 96, holes = 40, len = n * PG;
	struct tgt t;
	struct pw_mr *mr;
	uint8_t *buf, *want;
	int32_t st;

	(void)arg;
	tgt_start(&t);
	buf = pwt_map(len);
	want = xmalloc(len);
	mr = reg(&t, buf, len, ODP_ALL);
	TGT_CONNECT(&t);
	PEER_WRITE(&t, buf, mr->rkey, len, 5, 0, PW_WC_SUCCESS);
	PWT_PATTERN(buf, len, 5, 0);
	pwt_fill(want, len, 5);
	for (size_t h = 0; h < holes; h++) {
		size_t next = 2 * h + 1;

		PWT_EQ(munmap(buf + 2 * h * PG, PG), 0);
		EXPECT_EVENT(t.s.ctx, PW_EVENT_MR_UNMAPPED, mr, 2 * h * PG, PG);
		st = peer_write_status(&t, buf + next * PG, mr->rkey, PG, 6, next * PG);
		PWT_ASSERTF(st == PW_WC_SUCCESS, "after %zu holes: a WRITE to page %zu, never "
			    "unmapped: %s", h + 1, next, status_str(st));
		pwt_fill_at(want + next * PG, PG, 6, next * PG);
		PWT_MEMEQ(buf + next * PG, want + next * PG, PG);
	}
	EXPECT_NO_EVENT(t.s.ctx, 100);
	for (size_t i = 1; i < 2 * holes; i += 2)
		PEER_READ_EQ(&t, buf + i * PG, mr->rkey, PG, want + i * PG);
	PEER_READ_EQ(&t, buf + 2 * holes * PG, mr->rkey, len - 2 * holes * PG,
		     want + 2 * holes * PG);
	PEER_WRITE(&t, buf + 2 * (holes - 1) * PG, mr->rkey, PG, 7, 0, PW_WC_REM_ACCESS_ERR);
	TGT_CONNECT(&t);
	PEER_WRITE(&t, buf, mr->rkey, 8, 7, 0, PW_WC_REM_ACCESS_ERR);
	PWT_OK(pw_dereg_mr(mr));
	for (size_t i = 1; i < 2 * holes; i += 2)
		pwt_unmap(buf + i * PG, PG);
	pwt_unmap(buf + 2 * holes * PG, len - 2 * holes * PG);
	free(want);
	tgt_finish(&t);
}

/*
 * After munmap of a whole registered range the MR is dead there: check
 * on a fresh mapping of @len at the same address that the peer's WRITE
 * and READ fail and the new memory keeps the target's marker.
 */
static void dead_on_new_mapping(struct tgt *t, struct pw_mr *mr, uint8_t *buf,
				size_t len)
{
	PWT_ASSERT(map_at(buf, len) == buf);
	pwt_fill(buf, len, MARK_SEED);
	PEER_WRITE(t, buf + PG, mr->rkey, PG, 11, 0, PW_WC_REM_ACCESS_ERR);
	TGT_CONNECT(t);
	PEER_WRITE(t, buf, mr->rkey, len, 11, 0, PW_WC_REM_ACCESS_ERR);
	TGT_CONNECT(t);
	PEER_WRITE(t, buf + len - 1, mr->rkey, 1, 11, 0, PW_WC_REM_ACCESS_ERR);
	TGT_CONNECT(t);
	/* no READ returns the new mapping's bytes either */
	PEER_READ(t, buf, mr->rkey, PG, NULL, PW_WC_REM_ACCESS_ERR);
	TGT_CONNECT(t);
	PWT_PATTERN(buf, len, MARK_SEED, 0);
}

/*
 * munmap of a whole registered range, then new memory at the same
 * address (MAP_FIXED_NOREPLACE: the same VA or a failure), filled with a
 * marker. Default ODP MR and pinned MR: PW_EVENT_MR_UNMAPPED for all of
 * it, the peer's WRITEs and READ fail with REM_ACCESS_ERR, and the new
 * mapping keeps its marker byte for byte (also after pw_dereg_mr). The
 * same for mmap(MAP_FIXED) straight over part of a live range (UNMAPPED
 * for that part, the rest still works). PW_ACCESS_ODP_FOLLOW_VA: no
 * event, a WRITE fails while nothing is mapped, and lands exactly in the
 * new mapping once there is one (and in the one after that).
 */
static void t_munmap_then_mmap_same_va(const char *arg)
{
	const size_t len = 4 * PG;
	struct tgt t;
	struct pw_mr *mr;
	uint8_t *buf, *want;
	uint64_t ev0;

	(void)arg;
	tgt_start(&t);
	want = xmalloc(len);
	TGT_CONNECT(&t);
	for (int pinned = 0; pinned < 2; pinned++) {
		buf = pwt_map(len);
		mr = reg(&t, buf, len, pinned ? PWT_ACCESS_ALL : ODP_ALL);
		PEER_WRITE(&t, buf, mr->rkey, len, 10, 0, PW_WC_SUCCESS);
		PWT_PATTERN(buf, len, 10, 0);
		PWT_EQ(munmap(buf, len), 0);
		EXPECT_EVENT(t.s.ctx, PW_EVENT_MR_UNMAPPED, mr, 0, len);
		dead_on_new_mapping(&t, mr, buf, len);
		EXPECT_NO_EVENT(t.s.ctx, 50);
		PWT_OK(pw_dereg_mr(mr));
		PWT_PATTERN(buf, len, MARK_SEED, 0);
		pwt_unmap(buf, len);
	}

	/* mmap(MAP_FIXED) over page 1 of a live MR: an unmap of that page */
	buf = pwt_map(len);
	mr = reg(&t, buf, len, ODP_ALL);
	PEER_WRITE(&t, buf, mr->rkey, len, 12, 0, PW_WC_SUCCESS);
	PWT_ASSERT(mmap(buf + PG, PG, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == buf + PG);
	EXPECT_EVENT(t.s.ctx, PW_EVENT_MR_UNMAPPED, mr, PG, PG);
	PWT_ZERO(buf + PG, PG);
	pwt_fill(buf + PG, PG, MARK_SEED);
	PEER_WRITE(&t, buf + PG, mr->rkey, PG, 13, 0, PW_WC_REM_ACCESS_ERR);
	TGT_CONNECT(&t);
	PEER_WRITE(&t, buf + 2 * PG, mr->rkey, 2 * PG, 13, 2 * PG, PW_WC_SUCCESS);
	pwt_fill(want, len, 12);
	pwt_fill_at(want + PG, PG, MARK_SEED, 0);
	pwt_fill_at(want + 2 * PG, 2 * PG, 13, 2 * PG);
	PWT_MEMEQ(buf, want, len);
	PEER_READ_EQ(&t, buf + 2 * PG, mr->rkey, 2 * PG, want + 2 * PG);
	PEER_READ_EQ(&t, buf, mr->rkey, PG, want);
	PWT_OK(pw_dereg_mr(mr));
	PWT_MEMEQ(buf, want, len);
	pwt_unmap(buf, len);

	/* FOLLOW_VA: the MR reaches whatever is mapped there now */
	buf = pwt_map(len);
	mr = reg(&t, buf, len, ODP_ALL | PW_ACCESS_ODP_FOLLOW_VA);
	PEER_WRITE(&t, buf, mr->rkey, len, 20, 0, PW_WC_SUCCESS);
	PWT_PATTERN(buf, len, 20, 0);
	for (int round = 0; round < 2; round++) {
		ev0 = pwt_stats(t.s.ctx).notifier_events;
		PWT_EQ(munmap(buf, len), 0);
		EXPECT_NO_EVENT(t.s.ctx, 100);
		/* the handler saw it (round 1: the range faulted in again after
		 * the first unmap was registered anew) */
		PWT_ASSERTF(pwt_stats(t.s.ctx).notifier_events > ev0,
			    "round %d: the notifier did not see the munmap", round);
		PEER_WRITE(&t, buf + PG, mr->rkey, PG, 21, 0, PW_WC_REM_ACCESS_ERR);
		TGT_CONNECT(&t);
		PWT_ASSERT(map_at(buf, len) == buf);
		pwt_fill(buf, len, MARK_SEED + 1 + (uint32_t)round);
		pwt_fill(want, len, MARK_SEED + 1 + (uint32_t)round);
		PEER_WRITE(&t, buf + PG + 100, mr->rkey, 1000, 22 + (uint32_t)round, 0,
			   PW_WC_SUCCESS);
		pwt_fill_at(want + PG + 100, 1000, 22 + (uint32_t)round, 0);
		PWT_MEMEQ(buf, want, len);
		PEER_READ_EQ(&t, buf, mr->rkey, len, want);
	}
	EXPECT_NO_EVENT(t.s.ctx, 0);
	PWT_OK(pw_dereg_mr(mr));
	PWT_MEMEQ(buf, want, len);
	pwt_unmap(buf, len);
	free(want);
	tgt_finish(&t);
}

/*
 * One call replaces a registered range while the peer streams into it:
 * mremap() of prefilled memory over it, or mmap(MAP_FIXED) of fresh zero
 * memory. docs/semantics.md, "Known window": a WRITE placed inside the
 * call (before the UNMAP event is read) can land in the new pages; once
 * the call has returned, nothing lands there, and the MR is dead there
 * (one UNMAPPED event; a WRITE there fails). 200 rounds:
 * WRITE streams (the new pages, copied as the call returns, must be
 * unchanged once every WRITE has completed) and READ streams (every READ
 * succeeds with the old data or fails). Counted and printed, not failed:
 * the rounds where WRITEs landed inside the call, and the successful
 * READs that returned the new pages' bytes (the same window; the docs
 * speak of WRITEs only).
 */
static void t_mmap_over_inflight(const char *arg)
{
	const size_t len = 16 * PG;
	const int rounds = 200;
	int landed_in_call = 0;
	uint64_t reads = 0, reads_new = 0;
	uint8_t *snap = xmalloc(len);
	struct tgt t;

	(void)arg;
	tgt_start(&t);
	for (int r = 0; r < rounds; r++) {
		bool by_mremap = r % 2 == 0, reading = r % 4 >= 2;
		struct pw_mr *mr;
		struct prep rep;
		uint8_t *buf = pwt_map(len), *tmp = NULL;

		mr = reg(&t, buf, len, ODP_ALL);
		TGT_CONNECT(&t);
		/* the old content: what READs must return */
		pwt_fill(buf, len, 30);
		if (by_mremap) {
			tmp = pwt_map(len);
			pwt_fill(tmp, len, MARK_SEED);
		}
		stream_start_op(&t, reading ? PC_RSTREAM : PC_STREAM, buf, mr->rkey, len, 1,
				8, 30, 0);
		if (by_mremap)
			PWT_ASSERT(mremap(tmp, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, buf) ==
				   (void *)buf);
		else
			PWT_ASSERT(mmap(buf, len, PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == buf);
		SEM_READS(memcpy(snap, buf, len));
		EXPECT_EVENT(t.s.ctx, PW_EVENT_MR_UNMAPPED, mr, 0, len);
		stream_stop(&t, &rep);
		PWT_EQ(rep.other, 0);
		PWT_ASSERT(rep.ok >= 1);
		PWT_ASSERT(rep.access <= 1);
		/* dead there (on a fresh connection if the stream hit it) */
		if (rep.access)
			TGT_CONNECT(&t);
		PEER_WRITE(&t, buf + PG, mr->rkey, PG, 31, 0, PW_WC_REM_ACCESS_ERR);
		/* after the call: nothing landed */
		PWT_MEMEQ(buf, snap, len);
		if (reading) {
			reads += rep.ok;
			reads_new += rep.mismatched;
		} else {
			for (size_t i = 0; i < len; i++)
				if (snap[i] != (by_mremap ? pwt_pattern_byte(MARK_SEED, i) : 0)) {
					landed_in_call++;
					break;
				}
		}
		PWT_OK(pw_dereg_mr(mr));
		pwt_unmap(buf, len);
	}
	printf("WRITEs landed in the new pages inside the call in %d of %d rounds; "
	       "%" PRIu64 " of %" PRIu64 " successful READs returned other than the old "
	       "data\n", landed_in_call, rounds / 2, reads_new, reads);
	free(snap);
	tgt_finish(&t);
}

/*
 * An MR registered right after munmap() (even rounds) or an mremap()
 * move (odd rounds) returned, over new memory mapped at the same
 * address: the old MR gets its one event (UNMAPPED / REMAPPED); the new
 * MR gets none and its whole range takes a WRITE with exact data. The
 * call returns once the handler has read its event(s) (mremap: REMAP,
 * then UNMAP of the old range), and the new MR did not exist then:
 * docs/semantics.md, an MR's range is watched from its registration on,
 * and only a range unmapped under an MR is dead. 1000 rounds; the count
 * of rounds where the new MR was hit is reported.
 */
static void t_reg_after_unmap(const char *arg)
{
	const size_t len = 4 * PG;
	const int rounds = 1000;
	int hit[2] = { 0, 0 };
	struct tgt t;

	(void)arg;
	tgt_start(&t);
	TGT_CONNECT(&t);
	for (int r = 0; r < rounds; r++) {
		bool move = r & 1;
		uint8_t *buf = pwt_map(len), *dst = NULL;
		struct pw_mr *a, *b;
		struct pw_async_event ev;
		bool got_a, got_b;
		int32_t st;
		int rc = 0;

		a = reg(&t, buf, len, ODP_ALL);
		if (move) {
			dst = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			PWT_ASSERT(dst != MAP_FAILED);
			PWT_ASSERT(mremap(buf, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, dst) ==
				   (void *)dst);
		} else {
			PWT_EQ(munmap(buf, len), 0);
		}
		PWT_ASSERT(map_at(buf, len) == buf);
		b = reg(&t, buf, len, ODP_ALL);
		/* its placement waits until the handler applied what it read */
		st = peer_write_status(&t, buf, b->rkey, len, 200 + (uint32_t)r, 0);
		/* A's event, and none for B (before or after it) */
		got_a = got_b = false;
		while (!got_a || (rc = get_mr_event(t.s.ctx, &ev)) == 0) {
			if (!got_a)
				PWT_ASSERTF(wait_mr_event(t.s.ctx, &ev, EVENT_WAIT_MS) == 0,
					    "round %d: no event for the old MR", r);
			if (ev.element.mr == a) {
				PWT_ASSERT(!got_a);
				PWT_EQ(ev.event_type, move ? PW_EVENT_MR_REMAPPED :
					   PW_EVENT_MR_UNMAPPED);
				PWT_EQ(ev.offset, 0);
				PWT_EQ(ev.length, len);
				got_a = true;
			} else {
				PWT_ASSERTF(ev.element.mr == b, "an event for an unknown MR");
				fprintf(stderr, "round %d (%s): the MR registered after the call "
					"got %s offset %#" PRIx64 " length %#" PRIx64 "\n", r,
					move ? "mremap" : "munmap",
					pw_event_type_str(ev.event_type), ev.offset, ev.length);
				got_b = true;
			}
			pw_ack_async_event(&ev);
		}
		PWT_EQ(rc, -EAGAIN);
		if (st == PW_WC_SUCCESS) {
			PWT_PATTERN(buf, len, 200 + (uint32_t)r, 0);
		} else {
			PWT_EQ(st, PW_WC_REM_ACCESS_ERR);
			TGT_CONNECT(&t);
		}
		if (got_b || st != PW_WC_SUCCESS)
			hit[move]++;
		PWT_OK(pw_dereg_mr(a));
		PWT_OK(pw_dereg_mr(b));
		pwt_unmap(buf, len);
		if (dst)
			pwt_unmap(dst, len);
	}
	PWT_ASSERTF(hit[0] + hit[1] == 0, "an MR registered after the call returned was "
		    "killed by its event: %d of %d munmap rounds, %d of %d mremap rounds",
		    hit[0], rounds / 2, hit[1], rounds / 2);
	tgt_finish(&t);
}

/* ------------------------------------------------------------------ */
/* madvise                                                             */
/* ------------------------------------------------------------------ */

/*
 * madvise(MADV_DONTNEED) on pages 2..4 of an 8-page ODP MR the peer
 * wrote (default and FOLLOW_VA): the target reads zeros there (the
 * kernel's semantics); the peer's READ returns zeros there and the data
 * elsewhere, and faulted the dropped pages again; a later WRITE there
 * lands and the target sees it; the same connection keeps working; the
 * notifier saw the event and posted none. A pinned MR's range refuses
 * MADV_DONTNEED (EINVAL: locked) and keeps its data.
 */
static void t_madv_dontneed(const char *arg)
{
	const size_t n = 8, len = n * PG;
	struct tgt t;
	uint8_t *buf, *want;

	(void)arg;
	tgt_start(&t);
	want = xmalloc(len);
	TGT_CONNECT(&t);
	for (int fv = 0; fv < 2; fv++) {
		struct pw_mr *mr;
		uint64_t ev0, f0;

		buf = pwt_map(len);
		mr = reg(&t, buf, len, ODP_ALL | (fv ? PW_ACCESS_ODP_FOLLOW_VA : 0));
		PEER_WRITE(&t, buf, mr->rkey, len, 30, 0, PW_WC_SUCCESS);
		PWT_PATTERN(buf, len, 30, 0);
		ev0 = pwt_stats(t.s.ctx).notifier_events;
		f0 = pwt_stats(t.s.ctx).faults;
		PWT_EQ(madvise(buf + 2 * PG, 3 * PG, MADV_DONTNEED), 0);
		pwt_fill(want, len, 30);
		memset(want + 2 * PG, 0, 3 * PG);
		/*
		 * the peer first: its READ faults the dropped pages in. It
		 * also waits for the handler (madvise returned once the
		 * event was read, and accesses wait for it to be handled).
		 */
		PEER_READ_EQ(&t, buf, mr->rkey, len, want);
		PWT_ASSERT(pwt_stats(t.s.ctx).notifier_events > ev0);
		PWT_ASSERTF(pwt_stats(t.s.ctx).faults > f0,
			    "the dropped pages were not faulted again");
		PWT_MEMEQ(buf, want, len);
		PEER_WRITE(&t, buf + 3 * PG + 10, mr->rkey, 100, 31, 0, PW_WC_SUCCESS);
		pwt_fill_at(want + 3 * PG + 10, 100, 31, 0);
		PWT_MEMEQ(buf, want, len);
		PEER_READ_EQ(&t, buf, mr->rkey, len, want);
		/* dropped pages the target touched first (zero page, then COW) */
		PWT_EQ(madvise(buf, PG, MADV_DONTNEED), 0);
		PWT_ZERO(buf, PG);
		SEM_WRITES(buf[5] = 0x55);
		memset(want, 0, PG);
		want[5] = 0x55;
		PEER_READ_EQ(&t, buf, mr->rkey, PG, want);
		PEER_WRITE(&t, buf + 6, mr->rkey, 6, 32, 0, PW_WC_SUCCESS);
		pwt_fill_at(want + 6, 6, 32, 0);
		PWT_MEMEQ(buf, want, len);
		PWT_EQ(pw_qp_state(t.s.qp), PW_QPS_RTS);
		EXPECT_NO_EVENT(t.s.ctx, 100);
		PWT_OK(pw_dereg_mr(mr));
		pwt_unmap(buf, len);
	}

	/* pinned: the kernel refuses to drop locked pages */
	if (!pwt_mlock_works()) {
		pwt_skip_part("mlock does not lock pages here: MADV_DONTNEED on a pinned MR");
	} else {
		struct pw_mr *pmr;

		buf = pwt_map(2 * PG);
		pmr = reg(&t, buf, 2 * PG, PWT_ACCESS_ALL);
		PEER_WRITE(&t, buf, pmr->rkey, 2 * PG, 33, 0, PW_WC_SUCCESS);
		errno = 0;
		PWT_EQ(madvise(buf, PG, MADV_DONTNEED), -1);
		PWT_EQ(errno, EINVAL);
		PWT_PATTERN(buf, 2 * PG, 33, 0);
		pwt_fill(want, 2 * PG, 33);
		PEER_READ_EQ(&t, buf, pmr->rkey, 2 * PG, want);
		EXPECT_NO_EVENT(t.s.ctx, 50);
		PWT_OK(pw_dereg_mr(pmr));
		pwt_unmap(buf, 2 * PG);
	}
	free(want);
	tgt_finish(&t);
}

/* ------------------------------------------------------------------ */
/* mremap                                                              */
/* ------------------------------------------------------------------ */

/*
 * mremap(MREMAP_MAYMOVE | MREMAP_FIXED) of pages 2..5 of an 8-page MR
 * (default ODP, then pinned) to another address: exactly one
 * PW_EVENT_MR_REMAPPED, for that part; the pages arrived with their data;
 * the peer's WRITE and READ of the old range fail with REM_ACCESS_ERR and
 * nothing reaches the new location; the rest of the MR works. Then an
 * mremap that shrinks the MR's tail mapping: PW_EVENT_MR_UNMAPPED for the
 * part that went. FOLLOW_VA: no event; the old range is an access error
 * while nothing is mapped there, the moved pages are never reached, and
 * new memory mapped at the old range is.
 */
static void t_mremap(const char *arg)
{
	const size_t n = 8, len = n * PG;
	struct tgt t;
	uint8_t *buf, *dst, *want;
	struct pw_mr *mr;
	uint64_t ev0;

	(void)arg;
	tgt_start(&t);
	want = xmalloc(len);
	TGT_CONNECT(&t);
	for (int pinned = 0; pinned < 2; pinned++) {
		buf = pwt_map(len);
		mr = reg(&t, buf, len, pinned ? PWT_ACCESS_ALL : ODP_ALL);
		PEER_WRITE(&t, buf, mr->rkey, len, 40, 0, PW_WC_SUCCESS);
		PWT_PATTERN(buf, len, 40, 0);
		dst = mmap(NULL, 4 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		PWT_ASSERT(dst != MAP_FAILED);
		PWT_ASSERT(mremap(buf + 2 * PG, 4 * PG, 4 * PG, MREMAP_MAYMOVE | MREMAP_FIXED,
				  dst) == (void *)dst);
		EXPECT_EVENT(t.s.ctx, PW_EVENT_MR_REMAPPED, mr, 2 * PG, 4 * PG);
		EXPECT_NO_EVENT(t.s.ctx, 100);
		PWT_PATTERN(dst, 4 * PG, 40, 2 * PG);

		PEER_WRITE(&t, buf + 3 * PG, mr->rkey, PG, 41, 0, PW_WC_REM_ACCESS_ERR);
		TGT_CONNECT(&t);
		PEER_READ(&t, buf + 2 * PG, mr->rkey, PG, NULL, PW_WC_REM_ACCESS_ERR);
		TGT_CONNECT(&t);
		PEER_WRITE(&t, buf + 2 * PG, mr->rkey, 4 * PG, 41, 0, PW_WC_REM_ACCESS_ERR);
		TGT_CONNECT(&t);
		PWT_PATTERN(dst, 4 * PG, 40, 2 * PG);

		/* the rest of the MR */
		PEER_WRITE(&t, buf, mr->rkey, 2 * PG, 42, 0, PW_WC_SUCCESS);
		PEER_WRITE(&t, buf + 6 * PG, mr->rkey, 2 * PG, 42, 6 * PG, PW_WC_SUCCESS);
		pwt_fill(want, len, 42);
		PWT_MEMEQ(buf, want, 2 * PG);
		PWT_MEMEQ(buf + 6 * PG, want + 6 * PG, 2 * PG);
		PEER_READ_EQ(&t, buf, mr->rkey, 2 * PG, want);
		PEER_READ_EQ(&t, buf + 6 * PG, mr->rkey, 2 * PG, want + 6 * PG);

		/* shrinking the tail mapping unmaps its last page */
		PWT_ASSERT(mremap(buf + 6 * PG, 2 * PG, PG, 0) == (void *)(buf + 6 * PG));
		EXPECT_EVENT(t.s.ctx, PW_EVENT_MR_UNMAPPED, mr, 7 * PG, PG);
		PEER_WRITE(&t, buf + 7 * PG, mr->rkey, 8, 43, 0, PW_WC_REM_ACCESS_ERR);
		TGT_CONNECT(&t);
		PEER_WRITE(&t, buf + 6 * PG, mr->rkey, PG, 43, 0, PW_WC_SUCCESS);
		PWT_PATTERN(buf + 6 * PG, PG, 43, 0);
		PWT_PATTERN(dst, 4 * PG, 40, 2 * PG);
		EXPECT_NO_EVENT(t.s.ctx, 50);
		PWT_OK(pw_dereg_mr(mr));
		pwt_unmap(buf, 2 * PG);
		pwt_unmap(buf + 6 * PG, PG);
		pwt_unmap(dst, 4 * PG);
	}

	/* FOLLOW_VA: the old range follows the address */
	buf = pwt_map(len);
	mr = reg(&t, buf, len, ODP_ALL | PW_ACCESS_ODP_FOLLOW_VA);
	PEER_WRITE(&t, buf, mr->rkey, len, 45, 0, PW_WC_SUCCESS);
	dst = mmap(NULL, 2 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	PWT_ASSERT(dst != MAP_FAILED);
	ev0 = pwt_stats(t.s.ctx).notifier_events;
	PWT_ASSERT(mremap(buf + PG, 2 * PG, 2 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, dst) ==
		   (void *)dst);
	EXPECT_NO_EVENT(t.s.ctx, 100);
	PWT_ASSERT(pwt_stats(t.s.ctx).notifier_events > ev0);
	PEER_WRITE(&t, buf + PG, mr->rkey, PG, 46, 0, PW_WC_REM_ACCESS_ERR);
	TGT_CONNECT(&t);
	PWT_PATTERN(dst, 2 * PG, 45, PG);
	PWT_ASSERT(map_at(buf + PG, 2 * PG) == buf + PG);
	pwt_fill(buf + PG, 2 * PG, MARK_SEED);
	PEER_WRITE(&t, buf + PG + 5, mr->rkey, 50, 47, 0, PW_WC_SUCCESS);
	pwt_fill(want, len, 45);
	pwt_fill_at(want + PG, 2 * PG, MARK_SEED, 0);
	pwt_fill_at(want + PG + 5, 50, 47, 0);
	PWT_MEMEQ(buf, want, len);
	PEER_READ_EQ(&t, buf, mr->rkey, len, want);
	PWT_PATTERN(dst, 2 * PG, 45, PG);
	PWT_OK(pw_dereg_mr(mr));
	pwt_unmap(buf, len);
	pwt_unmap(dst, 2 * PG);
	free(want);
	tgt_finish(&t);
}

/* ------------------------------------------------------------------ */
/* fork                                                                */
/* ------------------------------------------------------------------ */

/*
 * The forked child: a plain process with a copy of the parent's memory
 * (no pwtest checks here: a failure would kill the parent's peer).
 * Exit codes name the failed check.
 */
static int fork_child(int rfd, const uint8_t *odp, const uint8_t *pin,
		      const uint8_t *pre, size_t len, bool open_ctx)
{
	struct pw_context *ctx;
	struct pw_pd *pd;
	struct pw_mr *mr;
	struct pw_async_event ev;
	struct pollfd pfd;
	char c;

	signal(SIGALRM, SIG_DFL);
	alarm(20);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (memcmp(odp, pre, len))
		return 10;
	if (memcmp(pin, pre + len, len))
		return 11;
	/* the parent's peer writes now */
	if (read(rfd, &c, 1) != 1)
		return 12;
	if (memcmp(odp, pre, len))
		return 13;
	if (memcmp(pin, pre + len, len))
		return 14;
	if (pwt_mlock_works() && pwt_vmlck_bytes() != 0)
		return 15;	/* mlock is not inherited */
	if (!open_ctx)
		return 0;
	/* docs: the child may pw_open() afresh; its notifier is its own */
	ctx = pw_open(NULL);
	if (!ctx)
		return 20;
	pd = pw_alloc_pd(ctx);
	if (!pd)
		return 21;
	mr = pw_reg_mr(pd, (void *)(uintptr_t)odp, len, ODP_ALL);
	if (!mr)
		return 22;
	if (munmap((void *)(uintptr_t)(odp + PG), PG))
		return 23;
	/* no QP in this context: only MR events */
	pfd.fd = pw_get_async_fd(ctx);
	pfd.events = POLLIN;
	if (poll(&pfd, 1, EVENT_WAIT_MS) != 1)
		return 24;
	if (pw_get_async_event(ctx, &ev))
		return 25;
	if (ev.event_type != PW_EVENT_MR_UNMAPPED || ev.element.mr != mr ||
	    ev.offset != PG || ev.length != PG)
		return 26;
	pw_ack_async_event(&ev);
	if (pw_dereg_mr(mr))
		return 27;
	if (pw_dealloc_pd(pd))
		return 28;
	if (pw_close(ctx))
		return 29;
	return 0;
}

static void wait_pid_ok(pid_t pid, int timeout_ms)
{
	struct pwt_child c = { .pid = pid, .fd = -1 };

	PWT_CHILD_OK(&c, timeout_ms);
}

/*
 * fork() of a target with an ODP and a pinned MR, both written by the
 * peer before (pages in the page table / locked). The child's copy keeps
 * the pre-fork data while the peer writes into both MRs after the fork;
 * the parent sees every new byte, and its own stores reach the peer's
 * READs; the connection stays up, no event. The child (mlock not
 * inherited) may pw_open() afresh and gets its own events (not under
 * TSan, which refuses new threads in the child of a threaded process).
 * Then 20 forks while the peer streams WRITEs: every WRITE succeeds and
 * the data is exact.
 */
static void t_fork_parent_sees_writes(const char *arg)
{
	const size_t n = 8, len = n * PG, slen = 16 * 64 * PWT_KIB;
	struct tgt t;
	struct pw_mr *omr, *pmr, *smr;
	uint8_t *odp, *pin, *pre, *want, *sbuf;
	uint64_t ev0;
	struct prep rep;
	int pfd[2];
	pid_t pid;

	(void)arg;
	(void)pwt_mlock_works();	/* probed before the fork */
	tgt_start(&t);
	odp = pwt_map(len);
	pin = pwt_map(len);
	want = xmalloc(2 * len);
	pre = xmalloc(2 * len);
	omr = reg(&t, odp, len, ODP_ALL);
	pmr = reg(&t, pin, len, PWT_ACCESS_ALL);
	TGT_CONNECT(&t);
	PEER_WRITE(&t, odp, omr->rkey, len, 70, 0, PW_WC_SUCCESS);
	PEER_WRITE(&t, pin, pmr->rkey, len, 71, 0, PW_WC_SUCCESS);
	PWT_PATTERN(odp, len, 70, 0);
	PWT_PATTERN(pin, len, 71, 0);
	SEM_READS(memcpy(pre, odp, len));
	SEM_READS(memcpy(pre + len, pin, len));

	ev0 = pwt_stats(t.s.ctx).notifier_events;
	PWT_EQ(pipe2(pfd, O_CLOEXEC), 0);
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	PWT_ASSERT(pid >= 0);
	if (pid == 0)
		_exit(fork_child(pfd[0], odp, pin, pre, len, !SEM_TSAN));
	close(pfd[0]);

	PEER_WRITE(&t, odp, omr->rkey, len, 72, 0, PW_WC_SUCCESS);
	/* no FORK event: the notifier does not subscribe to it (notifier.c) */
	PWT_EQ(pwt_stats(t.s.ctx).notifier_events, ev0);
	PEER_WRITE(&t, pin, pmr->rkey, len, 73, 0, PW_WC_SUCCESS);
	PEER_WRITE(&t, odp + 3 * PG + 7, omr->rkey, 1000, 74, 0, PW_WC_SUCCESS);
	PEER_WRITE(&t, pin + 5 * PG - 9, pmr->rkey, 20, 74, 0, PW_WC_SUCCESS);
	pwt_fill(want, len, 72);
	pwt_fill_at(want + 3 * PG + 7, 1000, 74, 0);
	pwt_fill(want + len, len, 73);
	pwt_fill_at(want + len + 5 * PG - 9, 20, 74, 0);
	PWT_MEMEQ(odp, want, len);
	PWT_MEMEQ(pin, want + len, len);
	PEER_READ_EQ(&t, odp, omr->rkey, len, want);
	PEER_READ_EQ(&t, pin, pmr->rkey, len, want + len);
	/* the parent's own stores after the fork reach the peer */
	SEM_WRITES(pwt_fill(odp + 6 * PG, PG, 75));
	SEM_WRITES(pwt_fill(pin + 2 * PG, PG, 76));
	pwt_fill_at(want + 6 * PG, PG, 75, 0);
	pwt_fill_at(want + len + 2 * PG, PG, 76, 0);
	PEER_READ_EQ(&t, odp, omr->rkey, len, want);
	PEER_READ_EQ(&t, pin, pmr->rkey, len, want + len);
	PWT_EQ(pw_qp_state(t.s.qp), PW_QPS_RTS);
	EXPECT_NO_EVENT(t.s.ctx, 0);
	/* the child checks its copy now */
	PWT_EQ(write(pfd[1], "c", 1), 1);
	close(pfd[1]);
	wait_pid_ok(pid, 20000);

	/* forks while the peer streams into an ODP MR */
	sbuf = pwt_map(slen);
	smr = reg(&t, sbuf, slen, ODP_ALL);
	stream_start(&t, sbuf, smr->rkey, 64 * PWT_KIB, 16, 8, 77, 0);
	for (int i = 0; i < 20; i++) {
		fflush(stdout);
		fflush(stderr);
		pid = fork();
		PWT_ASSERT(pid >= 0);
		if (pid == 0)
			_exit(0);
		wait_pid_ok(pid, 10000);
	}
	stream_stop(&t, &rep);
	PWT_EQ(rep.access + rep.flush + rep.other, 0);
	PWT_ASSERT(rep.ok >= 1);
	PWT_PATTERN(sbuf, (size_t)SEM_MIN(rep.ok, 16) * 64 * PWT_KIB, 77, 0);
	PWT_EQ(pw_qp_state(t.s.qp), PW_QPS_RTS);
	EXPECT_NO_EVENT(t.s.ctx, 0);

	PWT_OK(pw_dereg_mr(smr));
	PWT_OK(pw_dereg_mr(omr));
	PWT_OK(pw_dereg_mr(pmr));
	pwt_unmap(sbuf, slen);
	pwt_unmap(odp, len);
	pwt_unmap(pin, len);
	free(want);
	free(pre);
	tgt_finish(&t);
}

struct fvm_state {
	atomic_bool stop;
	atomic_uint_fast64_t forks, unmaps;
	atomic_int stage;		/* what the munmap thread is doing */
};

static void *fvm_forker(void *arg)
{
	struct fvm_state *f = arg;

	while (!atomic_load(&f->stop)) {
		pid_t pid;

		fflush(stdout);
		fflush(stderr);
		pid = fork();
		PWT_ASSERTF(pid >= 0, "fork: %s", strerror(errno));
		if (pid == 0)
			_exit(0);
		wait_pid_ok(pid, 10000);
		atomic_fetch_add(&f->forks, 1);
	}
	return NULL;
}

static void *fvm_watchdog(void *arg)
{
	struct fvm_state *f = arg;
	uint64_t nf = 0, nu = 0, since = pwt_now_ms();

	while (!atomic_load(&f->stop)) {
		uint64_t a = atomic_load(&f->forks), b = atomic_load(&f->unmaps);

		if (a != nf || b != nu) {
			nf = a;
			nu = b;
			since = pwt_now_ms();
		} else if (pwt_now_ms() - since > DL_HANG_MS) {
			pwt_fail(__FILE__, __LINE__, "hang: no fork() and no progress of the other "
				 "thread for %d ms (%" PRIu64 " forks, %" PRIu64 " of its steps done; "
				 "it %s)",
				 DL_HANG_MS, a, b, atomic_load(&f->stage) ? "is in munmap() or "
				 "pw_reg_mr()" : "waits for its event or is in pw_dereg_mr()");
		}
		pwt_sleep_ms(20);
	}
	return NULL;
}

/*
 * fork() in one thread while another munmaps part of a registered ODP
 * MR (a new one each round) and the peer writes into the MR: at least
 * 2000 unmaps, each with its UNMAPPED event, and 500 forks without pause
 * (each child exits at once). fork() holds the C library's locks
 * (malloc's, stdio's) across the system call, and the notifier, which
 * allocates when it posts an event, must never be something fork() waits
 * for (it was, through the FORK event: notifier.c). A watchdog fails the
 * test when neither makes progress for 10 s.
 */
static void t_fork_vs_munmap(const char *arg)
{
	struct fvm_state f;
	pthread_t forker, wd;
	struct tgt t;

	(void)arg;
	tgt_start(&t);
	alarm(50);
	memset(&f, 0, sizeof(f));
	TGT_CONNECT(&t);
	PWT_EQ(pthread_create(&forker, NULL, fvm_forker, &f), 0);
	PWT_EQ(pthread_create(&wd, NULL, fvm_watchdog, &f), 0);
	for (int i = 0; i < 2000 || atomic_load(&f.forks) < 500; i++) {
		uint8_t *buf = pwt_map(4 * PG);
		struct pw_mr *mr = reg(&t, buf, 4 * PG, ODP_ALL);
		struct prep rep;

		if (i % 100 == 0)
			stream_start(&t, buf, mr->rkey, 2 * PG, 1, 4, 300 + (uint32_t)i, 0);
		atomic_store(&f.stage, 1);
		PWT_EQ(munmap(buf + 2 * PG, 2 * PG), 0);
		atomic_store(&f.stage, 0);
		EXPECT_EVENT(t.s.ctx, PW_EVENT_MR_UNMAPPED, mr, 2 * PG, 2 * PG);
		atomic_fetch_add(&f.unmaps, 1);
		if (i % 100 == 0) {
			stream_stop(&t, &rep);
			PWT_EQ(rep.ok, rep.posted);
			PWT_PATTERN(buf, 2 * PG, 300 + (uint32_t)i, 0);
		}
		PWT_OK(pw_dereg_mr(mr));
		pwt_unmap(buf, 2 * PG);
	}
	atomic_store(&f.stop, true);
	PWT_EQ(pthread_join(forker, NULL), 0);
	PWT_EQ(pthread_join(wd, NULL), 0);
	printf("%" PRIu64 " unmaps, %" PRIu64 " forks\n", (uint64_t)atomic_load(&f.unmaps),
	       (uint64_t)atomic_load(&f.forks));
	tgt_finish(&t);
}

static const char *disk_dir(void);
static int temp_file(const char *dir, size_t len);

/*
 * fork() in one thread while another registers and deregisters, again
 * and again, an ODP MR over a regular file's mapping (FOLLOW_VA; the
 * notifier, refused for the whole range, tries mapping by mapping from
 * /proc/self/maps) and one over a range with a hole in it, while an
 * anonymous MR stays registered (every fork copies a watched range).
 * The slow path reads /proc/self/maps with stdio under the notifier's
 * lock, and fork() holds stdio's lock: the notifier must never be
 * something fork() waits for. At least 2000 registrations and 500
 * forks; the peer checks the anonymous MR still works. A watchdog fails
 * the test when neither makes progress for 10 s.
 */
static void t_fork_vs_reg(const char *arg)
{
	const char *dir = disk_dir();
	struct fvm_state f;
	pthread_t forker, wd;
	struct pw_mr *anon_mr;
	uint8_t *anon, *fm, *holed;
	struct tgt t;
	int fd;

	(void)arg;
	tgt_start(&t);
	if (!dir) {
		pwt_skip_part("no writable directory on a non-tmpfs filesystem");
		tgt_finish(&t);
		return;
	}
	alarm(50);
	memset(&f, 0, sizeof(f));
	TGT_CONNECT(&t);
	anon = pwt_map(4 * PG);
	anon_mr = reg(&t, anon, 4 * PG, ODP_ALL);
	fd = temp_file(dir, 4 * PG);
	fm = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	PWT_ASSERT(fm != MAP_FAILED);
	holed = pwt_map(4 * PG);
	PWT_EQ(munmap(holed + PG, PG), 0);
	PWT_EQ(pthread_create(&forker, NULL, fvm_forker, &f), 0);
	PWT_EQ(pthread_create(&wd, NULL, fvm_watchdog, &f), 0);
	for (int i = 0; i < 1000 || atomic_load(&f.forks) < 500; i++) {
		struct pw_mr *a, *b;

		atomic_store(&f.stage, 1);
		a = reg(&t, fm, 4 * PG, ODP_ALL | PW_ACCESS_ODP_FOLLOW_VA);
		b = reg(&t, holed, 4 * PG, ODP_ALL);
		atomic_store(&f.stage, 0);
		PWT_OK(pw_dereg_mr(a));
		PWT_OK(pw_dereg_mr(b));
		atomic_fetch_add(&f.unmaps, 2);
	}
	atomic_store(&f.stop, true);
	PWT_EQ(pthread_join(forker, NULL), 0);
	PWT_EQ(pthread_join(wd, NULL), 0);
	printf("%" PRIu64 " registrations, %" PRIu64 " forks\n",
	       (uint64_t)atomic_load(&f.unmaps), (uint64_t)atomic_load(&f.forks));
	PEER_WRITE(&t, anon, anon_mr->rkey, 4 * PG, 310, 0, PW_WC_SUCCESS);
	PWT_PATTERN(anon, 4 * PG, 310, 0);
	EXPECT_NO_EVENT(t.s.ctx, 0);
	PWT_OK(pw_dereg_mr(anon_mr));
	pwt_unmap(anon, 4 * PG);
	pwt_unmap(holed, 4 * PG);
	pwt_unmap(fm, 4 * PG);
	close(fd);
	tgt_finish(&t);
}

/* ------------------------------------------------------------------ */
/* pinned MRs                                                          */
/* ------------------------------------------------------------------ */

/*
 * A pinned MR (8 pages) with page 5 unmapped: PW_EVENT_MR_UNMAPPED for
 * exactly it; the peer's WRITE and READ there fail with REM_ACCESS_ERR;
 * the other pages work with exact data; pw_dereg_mr() afterwards unlocks
 * what is still mapped (VmLck back to where it was).
 * Then one buffer under four MRs: pinned A and B over the same 8 pages,
 * pinned C over pages 4..11, ODP D over all 12: every key reaches the
 * memory; an unmap under all of them gives each MR its own event (offsets
 * from each MR's start); as MRs are deregistered one by one, the others
 * are still watched (events for them alone), and D keeps working.
 */
static void t_pinned_munmap(const char *arg)
{
	const size_t n = 8, len = n * PG;
	struct tgt t;
	struct pw_mr *mr, *a, *b, *c, *d;
	uint8_t *buf, *want;
	size_t lck0;
	bool lck = pwt_mlock_works();

	(void)arg;
	tgt_start(&t);
	want = xmalloc(12 * PG);
	TGT_CONNECT(&t);
	lck0 = pwt_vmlck_bytes();
	buf = pwt_map(len);
	mr = reg(&t, buf, len, PWT_ACCESS_ALL);
	if (lck)
		PWT_ASSERT(pwt_vmlck_bytes() >= lck0 + len);
	PEER_WRITE(&t, buf, mr->rkey, len, 50, 0, PW_WC_SUCCESS);
	PWT_PATTERN(buf, len, 50, 0);
	PWT_EQ(munmap(buf + 5 * PG, PG), 0);
	EXPECT_EVENT(t.s.ctx, PW_EVENT_MR_UNMAPPED, mr, 5 * PG, PG);
	PEER_WRITE(&t, buf + 5 * PG, mr->rkey, PG, 51, 0, PW_WC_REM_ACCESS_ERR);
	TGT_CONNECT(&t);
	PEER_READ(&t, buf + 5 * PG + 8, mr->rkey, 8, NULL, PW_WC_REM_ACCESS_ERR);
	TGT_CONNECT(&t);
	PEER_WRITE(&t, buf, mr->rkey, 5 * PG, 52, 0, PW_WC_SUCCESS);
	PEER_WRITE(&t, buf + 6 * PG, mr->rkey, 2 * PG, 52, 6 * PG, PW_WC_SUCCESS);
	pwt_fill(want, len, 52);
	PWT_MEMEQ(buf, want, 5 * PG);
	PWT_MEMEQ(buf + 6 * PG, want + 6 * PG, 2 * PG);
	PEER_READ_EQ(&t, buf, mr->rkey, 5 * PG, want);
	PEER_READ_EQ(&t, buf + 6 * PG, mr->rkey, 2 * PG, want + 6 * PG);
	PWT_OK(pw_dereg_mr(mr));
	if (lck)
		PWT_EQ(pwt_vmlck_bytes(), lck0);
	pwt_unmap(buf, 5 * PG);
	pwt_unmap(buf + 6 * PG, 2 * PG);
	EXPECT_NO_EVENT(t.s.ctx, 50);

	/* overlapping and repeated registrations */
	buf = pwt_map(12 * PG);
	a = reg(&t, buf, 8 * PG, PWT_ACCESS_ALL);
	b = reg(&t, buf, 8 * PG, PWT_ACCESS_ALL);
	c = reg(&t, buf + 4 * PG, 8 * PG, PWT_ACCESS_ALL);
	d = reg(&t, buf, 12 * PG, ODP_ALL);
	PWT_ASSERT(a->rkey != b->rkey && a->rkey != c->rkey && b->rkey != c->rkey &&
		   d->rkey != a->rkey && d->rkey != b->rkey && d->rkey != c->rkey);
	PEER_WRITE(&t, buf, a->rkey, PG, 60, 0, PW_WC_SUCCESS);
	PEER_WRITE(&t, buf + PG, b->rkey, PG, 61, 0, PW_WC_SUCCESS);
	PEER_WRITE(&t, buf + 4 * PG, c->rkey, 4 * PG, 62, 0, PW_WC_SUCCESS);
	PEER_WRITE(&t, buf + 8 * PG, d->rkey, 4 * PG, 63, 0, PW_WC_SUCCESS);
	memset(want, 0, 12 * PG);
	pwt_fill_at(want, PG, 60, 0);
	pwt_fill_at(want + PG, PG, 61, 0);
	pwt_fill_at(want + 4 * PG, 4 * PG, 62, 0);
	pwt_fill_at(want + 8 * PG, 4 * PG, 63, 0);
	PWT_MEMEQ(buf, want, 12 * PG);
	/* each key reads what the others wrote */
	PEER_READ_EQ(&t, buf, b->rkey, 8 * PG, want);
	PEER_READ_EQ(&t, buf, d->rkey, 12 * PG, want);
	PEER_READ_EQ(&t, buf + 4 * PG, c->rkey, 8 * PG, want + 4 * PG);
	PEER_READ_EQ(&t, buf + PG, a->rkey, 7 * PG, want + PG);
	{
		/* page 6: under all four */
		const struct evwant w[] = {
			{ PW_EVENT_MR_UNMAPPED, a, 6 * PG, PG },
			{ PW_EVENT_MR_UNMAPPED, b, 6 * PG, PG },
			{ PW_EVENT_MR_UNMAPPED, c, 2 * PG, PG },
			{ PW_EVENT_MR_UNMAPPED, d, 6 * PG, PG },
		};

		PWT_EQ(munmap(buf + 6 * PG, PG), 0);
		EXPECT_EVENTS(t.s.ctx, w, PWT_ARRAY_SIZE(w));
	}
	PEER_WRITE(&t, buf + 6 * PG, b->rkey, 8, 64, 0, PW_WC_REM_ACCESS_ERR);
	TGT_CONNECT(&t);
	PEER_WRITE(&t, buf + 6 * PG, c->rkey, 8, 64, 0, PW_WC_REM_ACCESS_ERR);
	TGT_CONNECT(&t);
	PEER_WRITE(&t, buf + 6 * PG, d->rkey, 8, 64, 0, PW_WC_REM_ACCESS_ERR);
	TGT_CONNECT(&t);
	PWT_OK(pw_dereg_mr(b));
	{
		const struct evwant w[] = {
			{ PW_EVENT_MR_UNMAPPED, a, PG, PG },
			{ PW_EVENT_MR_UNMAPPED, d, PG, PG },
		};

		PWT_EQ(munmap(buf + PG, PG), 0);
		EXPECT_EVENTS(t.s.ctx, w, PWT_ARRAY_SIZE(w));
	}
	{
		/* C's own part (beyond A's): still watched after B went */
		const struct evwant w[] = {
			{ PW_EVENT_MR_UNMAPPED, c, 5 * PG, PG },
			{ PW_EVENT_MR_UNMAPPED, d, 9 * PG, PG },
		};

		PWT_EQ(munmap(buf + 9 * PG, PG), 0);
		EXPECT_EVENTS(t.s.ctx, w, PWT_ARRAY_SIZE(w));
	}
	PWT_OK(pw_dereg_mr(a));
	{
		const struct evwant w[] = {
			{ PW_EVENT_MR_UNMAPPED, c, 0, PG },
			{ PW_EVENT_MR_UNMAPPED, d, 4 * PG, PG },
		};

		PWT_EQ(munmap(buf + 4 * PG, PG), 0);
		EXPECT_EVENTS(t.s.ctx, w, PWT_ARRAY_SIZE(w));
	}
	PWT_OK(pw_dereg_mr(c));
	PWT_EQ(munmap(buf + 11 * PG, PG), 0);
	EXPECT_EVENT(t.s.ctx, PW_EVENT_MR_UNMAPPED, d, 11 * PG, PG);
	PWT_EQ(munmap(buf + 3 * PG, PG), 0);
	EXPECT_EVENT(t.s.ctx, PW_EVENT_MR_UNMAPPED, d, 3 * PG, PG);
	/* D still works where its pages are */
	PEER_WRITE(&t, buf, d->rkey, PG, 65, 0, PW_WC_SUCCESS);
	PEER_WRITE(&t, buf + 10 * PG, d->rkey, PG, 65, 10 * PG, PW_WC_SUCCESS);
	PWT_PATTERN(buf, PG, 65, 0);
	PWT_PATTERN(buf + 10 * PG, PG, 65, 10 * PG);
	PWT_MEMEQ(buf + 2 * PG, want + 2 * PG, PG);
	PWT_MEMEQ(buf + 5 * PG, want + 5 * PG, PG);
	PWT_MEMEQ(buf + 7 * PG, want + 7 * PG, PG);
	PWT_MEMEQ(buf + 8 * PG, want + 8 * PG, PG);
	PWT_OK(pw_dereg_mr(d));
	if (lck)
		PWT_EQ(pwt_vmlck_bytes(), lck0);
	/* nothing is watched any more */
	PWT_EQ(munmap(buf + 2 * PG, PG), 0);
	PWT_EQ(munmap(buf + 5 * PG, PG), 0);
	PWT_EQ(munmap(buf + 7 * PG, 2 * PG), 0);
	PWT_EQ(munmap(buf, PG), 0);
	PWT_EQ(munmap(buf + 10 * PG, PG), 0);
	EXPECT_NO_EVENT(t.s.ctx, 100);
	free(want);
	tgt_finish(&t);
}

/* ------------------------------------------------------------------ */
/* pw_dereg_mr while WRITEs stream in                                  */
/* ------------------------------------------------------------------ */

#define DI_BLOCK	PWT_MIB
/* TSan makes the test's byte-wise fills and checks ~10x slower: 16 MiB */
#define DI_NBLOCK	(SEM_TSAN ? 16u : 64u)

/*
 * The peer streams 1 MiB WRITEs over 64 blocks of the MR (8 in flight,
 * pass after pass) and the target deregisters the MR mid-stream (ODP:
 * the first pass faults, so WRITEs may be stalled on faults; then pinned),
 * three times each, 0, 4 and 8 ms after the first completion. Every
 * completion is SUCCESS until exactly one REM_ACCESS_ERR, then
 * WR_FLUSH_ERR only; right after pw_dereg_mr() returns the target fills
 * the buffer with a marker, and once the peer has all its completions
 * the marker is intact (nothing landed later); what the buffer held at
 * dereg time has every block that a successful WRITE reached, exactly.
 */
static void t_dereg_inflight(const char *arg)
{
	const size_t len = (size_t)DI_NBLOCK * DI_BLOCK;
	struct tgt t;
	uint8_t *snap;

	(void)arg;
	tgt_start(&t);
	snap = xmalloc(len);
	for (int round = 0; round < 6; round++) {
		bool pinned = round >= 3;
		uint32_t seed = 80 + (uint32_t)round;
		uint8_t *buf = pwt_map(len);
		struct pw_mr *mr = reg(&t, buf, len, pinned ? PWT_ACCESS_ALL : ODP_ALL);
		struct prep rep;

		TGT_CONNECT(&t);
		stream_start(&t, buf, mr->rkey, DI_BLOCK, DI_NBLOCK, 8, seed, 0);
		/* not synchronization: later into the stream in each round */
		pwt_sleep_ms(4 * (unsigned int)(round % 3));
		PWT_OK(pw_dereg_mr(mr));
		SEM_READS(memcpy(snap, buf, len));
		pwt_fill(buf, len, MARK_SEED);
		stream_stop(&t, &rep);
		PWT_EQ(rep.first_err, PW_WC_REM_ACCESS_ERR);
		PWT_EQ(rep.access, 1);
		PWT_EQ(rep.other, 0);
		PWT_EQ(rep.flush, rep.posted - rep.ok - 1);
		PWT_ASSERT(rep.ok >= 1);
		PWT_PATTERN(buf, len, MARK_SEED, 0);
		for (uint64_t k = 0; k < SEM_MIN(rep.ok, (uint64_t)DI_NBLOCK); k++)
			PWT_PATTERN(snap + k * DI_BLOCK, DI_BLOCK, seed, k * DI_BLOCK);
		PWT_WAIT_STATE(t.s.qp, PW_QPS_ERR);
		printf("%s: %" PRIu64 " WRITEs succeeded, then 1 REM_ACCESS_ERR and %" PRIu64
		       " flushed\n", pinned ? "pinned" : "odp", rep.ok, rep.flush);
		pwt_unmap(buf, len);
	}
	free(snap);
	tgt_finish(&t);
}

/* ------------------------------------------------------------------ */
/* Peer death                                                          */
/* ------------------------------------------------------------------ */

#define EXIT_BOUND_MS	5000
#define EXIT_CHUNK	(256 * PWT_KIB)

/*
 * The peer dies (exit(0) on command, or SIGKILL) while it streams WRITEs
 * into the target's ODP MR and the target has a SEND outstanding (the
 * peer posted no receive: RNR, retried forever) with 8 READs behind it
 * and 4 receives posted. Within EXIT_BOUND_MS: the SEND completes with
 * RETRY_EXC_ERR, the READs and the receives with WR_FLUSH_ERR, the QP is
 * in error, and nothing else comes.
 */
static void exit_peer_dies(bool killed)
{
	const size_t len = 16 * PWT_MIB;
	struct tgt t;
	struct pwt_buf loc;
	struct pw_mr *mr;
	uint8_t *buf;
	uint64_t t0, ms;
	uint32_t qpn;
	int st;

	tgt_start(&t);
	buf = pwt_map(len);
	mr = reg(&t, buf, len, ODP_ALL);
	pwt_buf_alloc(&loc, &t.s, 4 * PWT_MIB, PWT_ACCESS_ALL, PWT_PINNED);
	TGT_CONNECT(&t);
	qpn = t.s.qp->qp_num;
	for (unsigned int i = 0; i < 4; i++)
		PWT_OK(pwt_post_recv1(t.s.qp, 0x500 + i, loc.addr + i * 64, 64, loc.lkey));
	stream_start(&t, buf, mr->rkey, EXIT_CHUNK, (uint32_t)(len / EXIT_CHUNK), 16, 90, 0);
	PWT_OK(pwt_post_send1(t.s.qp, PW_WR_SEND, 100, loc.addr, 64, loc.lkey, 0,
			      PW_SEND_SIGNALED));
	for (unsigned int i = 0; i < 8; i++)
		PWT_OK(pwt_post_rdma(t.s.qp, PW_WR_RDMA_READ, 101 + i,
				     loc.addr + PWT_MIB + i * EXIT_CHUNK, EXIT_CHUNK, loc.lkey,
				     t.pr.addr + i * EXIT_CHUNK, t.pr.rkey, PW_SEND_SIGNALED));
	/* the SEND waits for a receive, and everything behind it */
	PWT_NO_WC(t.s.scq, 100);
	if (killed) {
		PWT_OK(kill(t.peer.pid, SIGKILL));
	} else {
		struct pcmd c;

		memset(&c, 0, sizeof(c));
		c.op = PC_EXIT;
		tgt_send(&t, &c);
	}
	t0 = pwt_now_ms();
	PWT_EXPECT_ERR(t.s.scq, 100, PW_WC_RETRY_EXC_ERR, qpn);
	for (unsigned int i = 0; i < 8; i++)
		PWT_EXPECT_ERR(t.s.scq, 101 + i, PW_WC_WR_FLUSH_ERR, qpn);
	for (unsigned int i = 0; i < 4; i++)
		PWT_EXPECT_ERR(t.s.rcq, 0x500 + i, PW_WC_WR_FLUSH_ERR, qpn);
	PWT_WAIT_STATE(t.s.qp, PW_QPS_ERR);
	ms = pwt_now_ms() - t0;
	PWT_ASSERTF(ms < EXIT_BOUND_MS, "the errors took %" PRIu64 " ms", ms);
	printf("peer %s: errors after %" PRIu64 " ms\n", killed ? "killed" : "exited", ms);
	PWT_NO_WC(t.s.scq, 50);
	PWT_NO_WC(t.s.rcq, 0);
	st = pwt_child_wait(&t.peer, 10000);
	if (killed)
		PWT_ASSERTF(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "peer status %#x", st);
	else
		PWT_ASSERTF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "peer status %#x", st);
	EXPECT_NO_EVENT(t.s.ctx, 0);
	PWT_OK(pw_dereg_mr(mr));
	pwt_unmap(buf, len);
	pwt_buf_free(&loc);
	tgt_close(&t);
}

/* The target in a child: an ODP MR, no receive posted; exits on 'E'. */
static int exit_target_main(int fd, void *arg)
{
	const size_t len = 16 * PWT_MIB;
	struct pw_qp_init_attr attr;
	struct pw_conn_param param;
	struct pwt_remote r;
	struct pwt_side s;
	struct pw_listener *l;
	struct pw_mr *mr;
	uint8_t *buf, v = 0;
	uint16_t port;

	(void)arg;
	pwt_side_open(&s);
	l = pw_listen(s.ctx, "127.0.0.1", 0);
	PWT_NONNULL(l);
	port = pw_listener_port(l);
	buf = pwt_map(len);
	mr = pw_reg_mr(s.pd, buf, len, ODP_ALL);
	PWT_NONNULL(mr);
	memset(&r, 0, sizeof(r));
	r.addr = pwt_va(buf);
	r.len = len;
	r.rkey = mr->rkey;
	memset(&attr, 0, sizeof(attr));
	attr.send_cq = s.scq;
	attr.recv_cq = s.rcq;
	memset(&param, 0, sizeof(param));
	param.private_data = &r;
	param.private_data_len = sizeof(r);
	param.timeout_ms = 20000;
	pwt_ctl_send(fd, &port, sizeof(port));
	s.qp = pw_accept(l, s.pd, &attr, &param);
	PWT_NONNULL(s.qp);
	pwt_ctl_recv(fd, &v, 1, 50000);
	if (v == 'E')
		exit(0);
	return 1;
}

/*
 * The reverse: the target (the MR's owner, a child) dies, by exit(0) or
 * SIGKILL, while this process's WRITEs stream into it and a SEND it has
 * no receive for is outstanding with WRITEs and READs behind it. The 8
 * WRITEs before the SEND complete; after the death, within EXIT_BOUND_MS,
 * the SEND completes RETRY_EXC_ERR and all the rest and the receives
 * WR_FLUSH_ERR.
 */
static void exit_target_dies(bool killed)
{
	struct pw_conn_param param = { .private_data = NULL, .private_data_len = 0,
				       .timeout_ms = 20000 };
	struct pwt_child c;
	struct pwt_side a;
	struct pwt_buf loc;
	struct pwt_remote r;
	uint64_t t0, ms, id = 0;
	uint16_t port = 0;
	uint32_t qpn;
	int st;

	pwt_fork(&c, exit_target_main, NULL);
	pwt_ctl_recv(c.fd, &port, sizeof(port), 20000);
	pwt_side_open(&a);
	a.attr.send_cq = a.scq;
	a.attr.recv_cq = a.rcq;
	a.qp = pw_connect(a.pd, &a.attr, "127.0.0.1", port, &param);
	PWT_NONNULL(a.qp);
	qpn = a.qp->qp_num;
	pwt_remote_from_qp(a.qp, &r);
	pwt_buf_alloc(&loc, &a, 8 * PWT_MIB, PWT_ACCESS_ALL, PWT_PINNED);
	pwt_fill(loc.addr, 8 * PWT_MIB, 91);
	for (unsigned int i = 0; i < 4; i++)
		PWT_OK(pwt_post_recv1(a.qp, 0x600 + i, loc.addr + i * 64, 64, loc.lkey));
	for (unsigned int i = 0; i < 8; i++, id++)
		PWT_OK(pwt_post_rdma(a.qp, PW_WR_RDMA_WRITE, id, loc.addr + id * EXIT_CHUNK,
				     EXIT_CHUNK, loc.lkey, r.addr + id * EXIT_CHUNK, r.rkey,
				     PW_SEND_SIGNALED));
	PWT_OK(pwt_post_send1(a.qp, PW_WR_SEND, id++, loc.addr, 64, loc.lkey, 0,
			      PW_SEND_SIGNALED));
	for (unsigned int i = 0; i < 8; i++, id++)
		PWT_OK(pwt_post_rdma(a.qp, PW_WR_RDMA_WRITE, id, loc.addr + id * EXIT_CHUNK,
				     EXIT_CHUNK, loc.lkey, r.addr + id * EXIT_CHUNK, r.rkey,
				     PW_SEND_SIGNALED));
	for (unsigned int i = 0; i < 4; i++, id++)
		PWT_OK(pwt_post_rdma(a.qp, PW_WR_RDMA_READ, id, loc.addr + id * EXIT_CHUNK,
				     EXIT_CHUNK, loc.lkey, r.addr + i * EXIT_CHUNK, r.rkey,
				     PW_SEND_SIGNALED));
	for (uint64_t i = 0; i < 8; i++)
		PWT_EXPECT_OK(a.scq, i, PW_WC_RDMA_WRITE, EXIT_CHUNK, qpn);
	PWT_NO_WC(a.scq, 100);
	if (killed) {
		PWT_OK(kill(c.pid, SIGKILL));
	} else {
		uint8_t v = 'E';

		pwt_ctl_send(c.fd, &v, 1);
	}
	t0 = pwt_now_ms();
	PWT_EXPECT_ERR(a.scq, 8, PW_WC_RETRY_EXC_ERR, qpn);
	for (uint64_t i = 9; i < id; i++)
		PWT_EXPECT_ERR(a.scq, i, PW_WC_WR_FLUSH_ERR, qpn);
	for (unsigned int i = 0; i < 4; i++)
		PWT_EXPECT_ERR(a.rcq, 0x600 + i, PW_WC_WR_FLUSH_ERR, qpn);
	PWT_WAIT_STATE(a.qp, PW_QPS_ERR);
	ms = pwt_now_ms() - t0;
	PWT_ASSERTF(ms < EXIT_BOUND_MS, "the errors took %" PRIu64 " ms", ms);
	printf("target %s: errors after %" PRIu64 " ms\n", killed ? "killed" : "exited", ms);
	PWT_NO_WC(a.scq, 50);
	PWT_NO_WC(a.rcq, 0);
	st = pwt_child_wait(&c, 10000);
	if (killed)
		PWT_ASSERTF(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "target status %#x", st);
	else
		PWT_ASSERTF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "target status %#x", st);
	pwt_buf_free(&loc);
	pwt_side_close(&a);
}

/*
 * A process that dies mid-transfer (exit or SIGKILL, either side):
 * docs/semantics.md, "process exit or crash": the other side's oldest
 * outstanding WR gets RETRY_EXC_ERR, the rest WR_FLUSH_ERR, at once.
 */
static void t_peer_exit(const char *arg)
{
	(void)arg;
	exit_peer_dies(false);
	exit_peer_dies(true);
	exit_target_dies(false);
	exit_target_dies(true);
}

/* ------------------------------------------------------------------ */
/* Implicit ODP                                                        */
/* ------------------------------------------------------------------ */

/*
 * An implicit MR (NULL, SIZE_MAX) follows the address space: a WRITE
 * into a mapping lands; after munmap there is no event for it and a
 * WRITE or READ there fails with REM_ACCESS_ERR; after a new mmap at the
 * same address a WRITE lands in the new mapping and a READ returns it
 * (the documented price of the opt-in). An explicit default MR over the
 * same pages, meanwhile, gets its UNMAPPED event and stays dead there.
 */
static void t_implicit_odp(const char *arg)
{
	const size_t len = 4 * PG;
	struct tgt t;
	struct pw_mr *imr, *emr;
	uint8_t *buf, *want;

	(void)arg;
	tgt_start(&t);
	want = xmalloc(len);
	imr = reg(&t, NULL, SIZE_MAX, ODP_ALL);
	PWT_ASSERT(imr->addr == NULL && imr->length == SIZE_MAX);
	buf = pwt_map(len);
	emr = reg(&t, buf, len, ODP_ALL);
	TGT_CONNECT(&t);
	PEER_WRITE(&t, buf, imr->rkey, len, 100, 0, PW_WC_SUCCESS);
	PWT_PATTERN(buf, len, 100, 0);
	PEER_WRITE(&t, buf + PG, emr->rkey, PG, 101, PG, PW_WC_SUCCESS);
	pwt_fill(want, len, 100);
	pwt_fill_at(want + PG, PG, 101, PG);
	PWT_MEMEQ(buf, want, len);
	PEER_READ_EQ(&t, buf, imr->rkey, len, want);

	PWT_EQ(munmap(buf + PG, 2 * PG), 0);
	EXPECT_EVENT(t.s.ctx, PW_EVENT_MR_UNMAPPED, emr, PG, 2 * PG);
	EXPECT_NO_EVENT(t.s.ctx, 100);
	PEER_WRITE(&t, buf + PG, imr->rkey, PG, 102, 0, PW_WC_REM_ACCESS_ERR);
	TGT_CONNECT(&t);
	PEER_READ(&t, buf + 2 * PG, imr->rkey, 8, NULL, PW_WC_REM_ACCESS_ERR);
	TGT_CONNECT(&t);

	PWT_ASSERT(map_at(buf + PG, 2 * PG) == buf + PG);
	pwt_fill(buf + PG, 2 * PG, MARK_SEED);
	PEER_WRITE(&t, buf + PG + 100, imr->rkey, 500, 103, 0, PW_WC_SUCCESS);
	pwt_fill_at(want + PG, 2 * PG, MARK_SEED, 0);
	pwt_fill_at(want + PG + 100, 500, 103, 0);
	PWT_MEMEQ(buf, want, len);
	PEER_READ_EQ(&t, buf, imr->rkey, len, want);
	/* the explicit MR stays dead there */
	PEER_WRITE(&t, buf + 2 * PG, emr->rkey, 8, 104, 0, PW_WC_REM_ACCESS_ERR);
	TGT_CONNECT(&t);
	PWT_MEMEQ(buf, want, len);
	PEER_WRITE(&t, buf + 3 * PG, emr->rkey, PG, 105, 3 * PG, PW_WC_SUCCESS);
	pwt_fill_at(want + 3 * PG, PG, 105, 3 * PG);
	PWT_MEMEQ(buf, want, len);
	PEER_READ_EQ(&t, buf, imr->rkey, len, want);
	PWT_OK(pw_dereg_mr(emr));
	PWT_OK(pw_dereg_mr(imr));
	pwt_unmap(buf, len);
	free(want);
	tgt_finish(&t);
}

/* ------------------------------------------------------------------ */
/* PW_NOTIFIER=off                                                     */
/* ------------------------------------------------------------------ */

/*
 * The target runs with PW_NOTIFIER=off (set here before its first
 * pw_open; the peer keeps its notifier): exactly one stderr line starting
 * "pagewire: notifier off" naming PW_NOTIFIER=off, for two contexts;
 * pw_stats.notifier_off is 1; ODP faults work with exact data;
 * pw_mr_invalidate() makes the next access fault again; munmap gives no
 * event and nothing is counted, and the MRs (ODP and pinned) follow the
 * address: an access error while nothing is mapped, a new mapping is
 * reached; a regular file's mapping registers without FOLLOW_VA.
 */
static void t_notifier_off(const char *arg)
{
	const size_t n = 8, len = n * PG;
	char path[] = "/tmp/pagewire-sem-stderr-XXXXXX", out[4096], *line;
	struct pw_context *ctx2;
	struct pw_mr *mr, *pmr, *fmr, *fpmr;
	struct pw_stats st;
	struct tgt t;
	uint8_t *buf, *pin, *fm, *want, *fbuf;
	uint64_t f0;
	int tfd, saved, lines = 0, ffd;
	ssize_t got;
	char fpath[] = "/tmp/pagewire-sem-file-XXXXXX";

	(void)arg;
	PWT_EQ(sysconf(_SC_PAGESIZE), PG);
	memset(&t, 0, sizeof(t));
	pwt_fork(&t.peer, peer_main, NULL);
	PWT_EQ(setenv("PW_NOTIFIER", "off", 1), 0);
	tfd = mkstemp(path);
	PWT_ASSERTF(tfd >= 0, "mkstemp: %s", strerror(errno));
	unlink(path);
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	PWT_ASSERT(saved >= 0);
	PWT_ASSERT(dup2(tfd, STDERR_FILENO) == STDERR_FILENO);
	tgt_open(&t);
	ctx2 = pw_open(NULL);
	fflush(stderr);
	PWT_ASSERT(dup2(saved, STDERR_FILENO) == STDERR_FILENO);
	close(saved);
	PWT_NONNULL(ctx2);
	PWT_OK(pw_close(ctx2));
	got = pread(tfd, out, sizeof(out) - 1, 0);
	PWT_ASSERT(got >= 0);
	out[got] = 0;
	close(tfd);
	for (line = out; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
		if (!strncmp(line, "pagewire: notifier off", 22)) {
			lines++;
			PWT_ASSERTF(strstr(line, "PW_NOTIFIER=off"), "the line: %s", line);
		}
	PWT_ASSERTF(lines == 1, "%d 'pagewire: notifier off' lines on stderr:\n%s", lines, out);
	st = pwt_stats(t.s.ctx);
	PWT_EQ(st.notifier_off, 1);

	want = xmalloc(len);
	buf = pwt_map(len);
	mr = reg(&t, buf, len, ODP_ALL);
	TGT_CONNECT(&t);
	f0 = pwt_stats(t.s.ctx).faults;
	PEER_WRITE(&t, buf, mr->rkey, len, 110, 0, PW_WC_SUCCESS);
	PWT_PATTERN(buf, len, 110, 0);
	PWT_ASSERT(pwt_stats(t.s.ctx).faults > f0);
	pwt_fill(want, len, 110);
	PEER_READ_EQ(&t, buf, mr->rkey, len, want);
	/* pw_mr_invalidate(): the next access faults again */
	f0 = pwt_stats(t.s.ctx).faults;
	PWT_OK(pw_mr_invalidate(mr, 2 * PG, 2 * PG));
	PEER_WRITE(&t, buf + 2 * PG, mr->rkey, 2 * PG, 111, 2 * PG, PW_WC_SUCCESS);
	PWT_ASSERT(pwt_stats(t.s.ctx).faults > f0);
	pwt_fill_at(want + 2 * PG, 2 * PG, 111, 2 * PG);
	PWT_MEMEQ(buf, want, len);

	/* munmap is not noticed: the MR follows the address */
	PWT_EQ(munmap(buf + 5 * PG, PG), 0);
	EXPECT_NO_EVENT(t.s.ctx, 200);
	PWT_EQ(pwt_stats(t.s.ctx).notifier_events, 0);
	PEER_WRITE(&t, buf + 5 * PG, mr->rkey, PG, 112, 0, PW_WC_REM_ACCESS_ERR);
	TGT_CONNECT(&t);
	PWT_ASSERT(map_at(buf + 5 * PG, PG) == buf + 5 * PG);
	pwt_fill(buf + 5 * PG, PG, MARK_SEED);
	PEER_WRITE(&t, buf + 5 * PG + 8, mr->rkey, 16, 113, 0, PW_WC_SUCCESS);
	pwt_fill_at(want + 5 * PG, PG, MARK_SEED, 0);
	pwt_fill_at(want + 5 * PG + 8, 16, 113, 0);
	PWT_MEMEQ(buf, want, len);
	/* pw_mr_invalidate() before munmap: the new mapping is faulted in */
	PWT_OK(pw_mr_invalidate(mr, 6 * PG, PG));
	PWT_EQ(munmap(buf + 6 * PG, PG), 0);
	PWT_ASSERT(map_at(buf + 6 * PG, PG) == buf + 6 * PG);
	f0 = pwt_stats(t.s.ctx).faults;
	PEER_WRITE(&t, buf + 6 * PG, mr->rkey, PG, 114, 0, PW_WC_SUCCESS);
	PWT_ASSERT(pwt_stats(t.s.ctx).faults > f0);
	pwt_fill_at(want + 6 * PG, PG, 114, 0);
	PWT_MEMEQ(buf, want, len);
	PEER_READ_EQ(&t, buf, mr->rkey, len, want);

	/* a pinned MR follows the address too */
	pin = pwt_map(2 * PG);
	pmr = reg(&t, pin, 2 * PG, PWT_ACCESS_ALL);
	PWT_EQ(munmap(pin + PG, PG), 0);
	PEER_WRITE(&t, pin + PG, pmr->rkey, PG, 115, 0, PW_WC_REM_ACCESS_ERR);
	TGT_CONNECT(&t);
	PWT_ASSERT(map_at(pin + PG, PG) == pin + PG);
	PEER_WRITE(&t, pin + PG, pmr->rkey, PG, 116, 0, PW_WC_SUCCESS);
	PWT_PATTERN(pin + PG, PG, 116, 0);

	/* a regular file's mapping registers without the flag */
	ffd = mkstemp(fpath);
	PWT_ASSERTF(ffd >= 0, "mkstemp: %s", strerror(errno));
	unlink(fpath);
	PWT_EQ(ftruncate(ffd, 2 * PG), 0);
	fm = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, ffd, 0);
	PWT_ASSERT(fm != MAP_FAILED);
	fmr = reg(&t, fm, PG, ODP_ALL);
	fpmr = reg(&t, fm + PG, PG, PWT_ACCESS_ALL);
	PEER_WRITE(&t, fm, fmr->rkey, PG, 117, 0, PW_WC_SUCCESS);
	PEER_WRITE(&t, fm + PG, fpmr->rkey, PG, 118, 0, PW_WC_SUCCESS);
	fbuf = xmalloc(2 * PG);
	PWT_EQ(pread(ffd, fbuf, 2 * PG, 0), (ssize_t)(2 * PG));
	PWT_PATTERN(fbuf, PG, 117, 0);
	PWT_PATTERN(fbuf + PG, PG, 118, 0);
	EXPECT_NO_EVENT(t.s.ctx, 0);

	PWT_OK(pw_dereg_mr(fmr));
	PWT_OK(pw_dereg_mr(fpmr));
	PWT_OK(pw_dereg_mr(pmr));
	PWT_OK(pw_dereg_mr(mr));
	pwt_unmap(fm, 2 * PG);
	close(ffd);
	pwt_unmap(pin, 2 * PG);
	pwt_unmap(buf, len);
	free(fbuf);
	free(want);
	tgt_finish(&t);
}

/* ------------------------------------------------------------------ */
/* File-backed and shared memory                                       */
/* ------------------------------------------------------------------ */

/* A directory on a real (not tmpfs) filesystem: $TMPDIR, /tmp or ".". */
static const char *disk_dir(void)
{
	const char *cand[] = { getenv("TMPDIR"), "/tmp", "." };

	for (size_t i = 0; i < PWT_ARRAY_SIZE(cand); i++) {
		struct statfs sf;

		if (cand[i] && *cand[i] && statfs(cand[i], &sf) == 0 &&
		    sf.f_type != TMPFS_MAGIC && access(cand[i], W_OK) == 0)
			return cand[i];
	}
	return NULL;
}

static int temp_file(const char *dir, size_t len)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/pagewire-semantics-XXXXXX", dir);
	fd = mkstemp(path);
	PWT_ASSERTF(fd >= 0, "mkstemp in %s: %s", dir, strerror(errno));
	unlink(path);
	PWT_EQ(ftruncate(fd, (off_t)len), 0);
	return fd;
}

/* The file's bytes must equal @want. */
static void file_eq(int fd, const uint8_t *want, size_t len)
{
	uint8_t *got = xmalloc(len);

	PWT_EQ(pread(fd, got, len, 0), (ssize_t)len);
	PWT_MEMEQ(got, want, len);
	free(got);
}

/*
 * A regular file's MAP_SHARED mapping (on a real filesystem): pw_reg_mr
 * refuses ODP and pinned MRs with EOPNOTSUPP and says why; with
 * PW_ACCESS_ODP_FOLLOW_VA both work, the peer READs the file's bytes and
 * its WRITEs reach the file (pread); munmap gives no event, an access
 * error, and the file keeps its bytes; the file mapped there again is
 * reached. memfd (shmem) gets the full semantics without the flag: ODP
 * and pinned MRs, data through the file, MADV_DONTNEED keeps the data
 * (shmem), MADV_REMOVE gives zeros, munmap gives UNMAPPED (to each MR
 * over it) and a dead range that never reaches the file, even when the
 * file is mapped there again. MAP_SHARED|MAP_ANONYMOUS and a tmpfs file
 * (/dev/shm) are watched too.
 */
static void t_file_backed(const char *arg)
{
	const size_t n = 8, len = n * PG;
	const char *dir = disk_dir();
	struct tgt t;
	struct pw_mr *omr, *pmr, *mr;
	uint8_t *fm, *want;
	int fd;

	(void)arg;
	tgt_start(&t);
	want = xmalloc(len);
	TGT_CONNECT(&t);
	if (!dir) {
		pwt_skip_part("no writable directory on a non-tmpfs filesystem");
	} else {
		fd = temp_file(dir, len);
		pwt_fill(want, len, 120);
		PWT_EQ(pwrite(fd, want, len, 0), (ssize_t)len);
		fm = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		PWT_ASSERT(fm != MAP_FAILED);
		errno = 0;
		PWT_ASSERT(pw_reg_mr(t.s.pd, fm, len, ODP_ALL) == NULL);
		PWT_EQ(errno, EOPNOTSUPP);
		PWT_ASSERT(*pw_last_error());
		errno = 0;
		PWT_ASSERT(pw_reg_mr(t.s.pd, fm, len, PWT_ACCESS_ALL) == NULL);
		PWT_EQ(errno, EOPNOTSUPP);
		PWT_ASSERT(*pw_last_error());
		EXPECT_NO_EVENT(t.s.ctx, 0);

		omr = reg(&t, fm, 4 * PG, ODP_ALL | PW_ACCESS_ODP_FOLLOW_VA);
		pmr = reg(&t, fm + 4 * PG, 4 * PG, PWT_ACCESS_ALL | PW_ACCESS_ODP_FOLLOW_VA);
		PEER_READ_EQ(&t, fm, omr->rkey, 4 * PG, want);
		PEER_READ_EQ(&t, fm + 4 * PG, pmr->rkey, 4 * PG, want + 4 * PG);
		PEER_WRITE(&t, fm + 100, omr->rkey, 3000, 121, 0, PW_WC_SUCCESS);
		PEER_WRITE(&t, fm + 4 * PG + 5, pmr->rkey, 5000, 122, 0, PW_WC_SUCCESS);
		pwt_fill_at(want + 100, 3000, 121, 0);
		pwt_fill_at(want + 4 * PG + 5, 5000, 122, 0);
		file_eq(fd, want, len);
		PWT_MEMEQ(fm, want, len);
		/* not watched: munmap is no event; nothing mapped is an error */
		PWT_EQ(munmap(fm + PG, PG), 0);
		EXPECT_NO_EVENT(t.s.ctx, 100);
		PEER_WRITE(&t, fm + PG, omr->rkey, PG, 123, 0, PW_WC_REM_ACCESS_ERR);
		TGT_CONNECT(&t);
		file_eq(fd, want, len);
		/* the file mapped there again is reached */
		PWT_ASSERT(mmap(fm + PG, PG, PROT_READ | PROT_WRITE, MAP_SHARED |
				MAP_FIXED_NOREPLACE, fd, (off_t)PG) == fm + PG);
		PEER_WRITE(&t, fm + PG + 1, omr->rkey, 10, 124, 0, PW_WC_SUCCESS);
		pwt_fill_at(want + PG + 1, 10, 124, 0);
		file_eq(fd, want, len);
		PEER_READ_EQ(&t, fm, omr->rkey, 4 * PG, want);
		PWT_OK(pw_dereg_mr(omr));
		PWT_OK(pw_dereg_mr(pmr));
		pwt_unmap(fm, len);
		close(fd);
	}

	/* memfd: shmem, watched */
	fd = memfd_create("pagewire-semantics", MFD_CLOEXEC);
	PWT_ASSERTF(fd >= 0, "memfd_create: %s", strerror(errno));
	PWT_EQ(ftruncate(fd, (off_t)len), 0);
	fm = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	PWT_ASSERT(fm != MAP_FAILED);
	mr = reg(&t, fm, len, ODP_ALL);
	pmr = reg(&t, fm + 6 * PG, 2 * PG, PWT_ACCESS_ALL);
	PEER_WRITE(&t, fm, mr->rkey, len, 130, 0, PW_WC_SUCCESS);
	pwt_fill(want, len, 130);
	file_eq(fd, want, len);
	PWT_MEMEQ(fm, want, len);
	PEER_READ_EQ(&t, fm + 6 * PG, pmr->rkey, 2 * PG, want + 6 * PG);
	/* DONTNEED on shmem drops the mapping's pages, the file keeps them */
	PWT_EQ(madvise(fm + 2 * PG, 2 * PG, MADV_DONTNEED), 0);
	PEER_READ_EQ(&t, fm, mr->rkey, len, want);
	/* MADV_REMOVE frees them: zeros */
	PWT_EQ(madvise(fm + 4 * PG, PG, MADV_REMOVE), 0);
	memset(want + 4 * PG, 0, PG);
	PEER_READ_EQ(&t, fm, mr->rkey, len, want);
	PWT_MEMEQ(fm, want, len);
	PEER_WRITE(&t, fm + 4 * PG + 10, mr->rkey, 20, 131, 0, PW_WC_SUCCESS);
	pwt_fill_at(want + 4 * PG + 10, 20, 131, 0);
	file_eq(fd, want, len);
	EXPECT_NO_EVENT(t.s.ctx, 50);
	/* munmap: dead, and the file page keeps its bytes */
	PWT_EQ(munmap(fm + PG, PG), 0);
	EXPECT_EVENT(t.s.ctx, PW_EVENT_MR_UNMAPPED, mr, PG, PG);
	PEER_WRITE(&t, fm + PG, mr->rkey, PG, 132, 0, PW_WC_REM_ACCESS_ERR);
	TGT_CONNECT(&t);
	file_eq(fd, want, len);
	/* the same file page mapped there again: still dead for this MR */
	PWT_ASSERT(mmap(fm + PG, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED_NOREPLACE,
			fd, (off_t)PG) == fm + PG);
	PEER_WRITE(&t, fm + PG, mr->rkey, PG, 133, 0, PW_WC_REM_ACCESS_ERR);
	TGT_CONNECT(&t);
	PEER_READ(&t, fm + PG, mr->rkey, PG, NULL, PW_WC_REM_ACCESS_ERR);
	TGT_CONNECT(&t);
	file_eq(fd, want, len);
	{
		const struct evwant w[] = {
			{ PW_EVENT_MR_UNMAPPED, mr, 7 * PG, PG },
			{ PW_EVENT_MR_UNMAPPED, pmr, PG, PG },
		};

		PWT_EQ(munmap(fm + 7 * PG, PG), 0);
		EXPECT_EVENTS(t.s.ctx, w, PWT_ARRAY_SIZE(w));
	}
	PEER_WRITE(&t, fm + 7 * PG, pmr->rkey, 8, 134, 0, PW_WC_REM_ACCESS_ERR);
	TGT_CONNECT(&t);
	PEER_WRITE(&t, fm + 6 * PG, pmr->rkey, PG, 135, 0, PW_WC_SUCCESS);
	pwt_fill_at(want + 6 * PG, PG, 135, 0);
	file_eq(fd, want, len);
	PWT_OK(pw_dereg_mr(pmr));
	PWT_OK(pw_dereg_mr(mr));
	pwt_unmap(fm, 7 * PG);
	close(fd);

	/* MAP_SHARED | MAP_ANONYMOUS: shmem */
	fm = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	PWT_ASSERT(fm != MAP_FAILED);
	mr = reg(&t, fm, 4 * PG, ODP_ALL);
	PEER_WRITE(&t, fm, mr->rkey, 4 * PG, 136, 0, PW_WC_SUCCESS);
	PWT_PATTERN(fm, 4 * PG, 136, 0);
	PWT_EQ(munmap(fm + 2 * PG, PG), 0);
	EXPECT_EVENT(t.s.ctx, PW_EVENT_MR_UNMAPPED, mr, 2 * PG, PG);
	PEER_WRITE(&t, fm + 2 * PG, mr->rkey, PG, 137, 0, PW_WC_REM_ACCESS_ERR);
	TGT_CONNECT(&t);
	PWT_OK(pw_dereg_mr(mr));
	pwt_unmap(fm, 2 * PG);
	pwt_unmap(fm + 3 * PG, PG);

	/* a tmpfs file: shmem too, no flag needed */
	{
		struct statfs sf;

		if (statfs("/dev/shm", &sf) == 0 && sf.f_type == TMPFS_MAGIC &&
		    access("/dev/shm", W_OK) == 0) {
			fd = temp_file("/dev/shm", 4 * PG);
			fm = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
			PWT_ASSERT(fm != MAP_FAILED);
			mr = reg(&t, fm, 4 * PG, ODP_ALL);
			PEER_WRITE(&t, fm, mr->rkey, 4 * PG, 138, 0, PW_WC_SUCCESS);
			pwt_fill(want, 4 * PG, 138);
			file_eq(fd, want, 4 * PG);
			PWT_EQ(munmap(fm + 3 * PG, PG), 0);
			EXPECT_EVENT(t.s.ctx, PW_EVENT_MR_UNMAPPED, mr, 3 * PG, PG);
			PEER_WRITE(&t, fm + 3 * PG, mr->rkey, 8, 139, 0, PW_WC_REM_ACCESS_ERR);
			TGT_CONNECT(&t);
			file_eq(fd, want, 4 * PG);
			PWT_OK(pw_dereg_mr(mr));
			pwt_unmap(fm, 3 * PG);
			close(fd);
		}
	}
	free(want);
	tgt_finish(&t);
}

/* ------------------------------------------------------------------ */
/* No deadlock with an application lock held around munmap            */
/* ------------------------------------------------------------------ */

#define DL_ITERS	1000

enum dl_stage { DL_REG, DL_STREAM, DL_MUNMAP, DL_EVENT, DL_STOP, DL_DEREG, DL_NSTAGE };

static const char *const dl_stage_name[DL_NSTAGE] = {
	"pw_reg_mr", "starting the stream", "munmap under the application lock",
	"waiting for the UNMAPPED event", "stopping the stream", "pw_dereg_mr",
};

struct dl_state {
	pthread_mutex_t app;		/* the application's own lock */
	atomic_bool stop;
	atomic_int iter;
	atomic_int stage;
	atomic_uint_fast64_t other_rounds;
	struct pw_context *ctx;
	struct pw_pd *pd;
	uint8_t *priv;			/* the other thread's own page */
};

/*
 * Another application thread: takes the application lock again and
 * again, and calls pagewire with it held (stats, a registration and its
 * deregistration of its own page).
 */
static void *dl_other(void *arg)
{
	struct dl_state *d = arg;

	while (!atomic_load(&d->stop)) {
		struct pw_stats st;
		struct pw_mr *mr;

		pthread_mutex_lock(&d->app);
		PWT_OK(pw_query_stats(d->ctx, &st, sizeof(st)));
		mr = pw_reg_mr(d->pd, d->priv, PG, ODP_ALL);
		PWT_NONNULL(mr);
		PWT_OK(pw_dereg_mr(mr));
		pthread_mutex_unlock(&d->app);
		atomic_fetch_add(&d->other_rounds, 1);
		sched_yield();
	}
	return NULL;
}

/* Fails the test when an iteration makes no progress for DL_HANG_MS. */
static void *dl_watchdog(void *arg)
{
	struct dl_state *d = arg;
	int it = -1, stg = -1;
	uint64_t since = pwt_now_ms();

	while (!atomic_load(&d->stop)) {
		int i = atomic_load(&d->iter), s = atomic_load(&d->stage);

		if (i != it || s != stg) {
			it = i;
			stg = s;
			since = pwt_now_ms();
		} else if (pwt_now_ms() - since > DL_HANG_MS) {
			pwt_fail(__FILE__, __LINE__, "hang: iteration %d stuck for %d ms in %s",
				 i, DL_HANG_MS, dl_stage_name[s]);
		}
		pwt_sleep_ms(20);
	}
	return NULL;
}

/*
 * libfabric #5554: the main thread holds an application mutex while it
 * munmaps pages 2..3 of an ODP MR whose pages 0..1 the peer is writing
 * (4 WRITEs in flight); another thread keeps taking that mutex and calls
 * pagewire with it held. 1000 iterations, each with a new MR: the munmap
 * returns, the UNMAPPED event comes, every WRITE succeeds with exact
 * data. A watchdog thread fails the test when an iteration is stuck for
 * 10 s (and names the stage), the alarm when the test hangs.
 */
static void t_deadlock_free(const char *arg)
{
	struct dl_state d;
	pthread_t other, wd;
	struct tgt t;
	uint64_t t0 = pwt_now_ms(), writes = 0;

	(void)arg;
	alarm(50);
	tgt_start(&t);
	memset(&d, 0, sizeof(d));
	pthread_mutex_init(&d.app, NULL);
	d.ctx = t.s.ctx;
	d.pd = t.s.pd;
	d.priv = pwt_map(PG);
	TGT_CONNECT(&t);
	PWT_EQ(pthread_create(&wd, NULL, dl_watchdog, &d), 0);
	PWT_EQ(pthread_create(&other, NULL, dl_other, &d), 0);
	for (int i = 0; i < DL_ITERS; i++) {
		uint32_t seed = 1000 + (uint32_t)i;
		struct pw_mr *mr;
		struct prep rep;
		uint8_t *buf;

		atomic_store(&d.iter, i);
		atomic_store(&d.stage, DL_REG);
		buf = pwt_map(4 * PG);
		mr = reg(&t, buf, 4 * PG, ODP_ALL);
		atomic_store(&d.stage, DL_STREAM);
		stream_start(&t, buf, mr->rkey, 2 * PG, 1, 4, seed, 0);
		atomic_store(&d.stage, DL_MUNMAP);
		pthread_mutex_lock(&d.app);
		PWT_EQ(munmap(buf + 2 * PG, 2 * PG), 0);
		pthread_mutex_unlock(&d.app);
		atomic_store(&d.stage, DL_EVENT);
		EXPECT_EVENT(t.s.ctx, PW_EVENT_MR_UNMAPPED, mr, 2 * PG, 2 * PG);
		atomic_store(&d.stage, DL_STOP);
		stream_stop(&t, &rep);
		PWT_EQ(rep.ok, rep.posted);
		writes += rep.ok;
		PWT_PATTERN(buf, 2 * PG, seed, 0);
		atomic_store(&d.stage, DL_DEREG);
		PWT_OK(pw_dereg_mr(mr));
		pwt_unmap(buf, 2 * PG);
	}
	atomic_store(&d.stop, true);
	PWT_EQ(pthread_join(other, NULL), 0);
	PWT_EQ(pthread_join(wd, NULL), 0);
	PWT_ASSERT(atomic_load(&d.other_rounds) > 0);
	printf("%d iterations, %" PRIu64 " WRITEs, %" PRIu64 " rounds of the other thread, "
	       "%" PRIu64 " ms\n", DL_ITERS, writes, (uint64_t)atomic_load(&d.other_rounds),
	       pwt_now_ms() - t0);
	EXPECT_NO_EVENT(t.s.ctx, 0);
	pwt_unmap(d.priv, PG);
	pthread_mutex_destroy(&d.app);
	tgt_finish(&t);
}

/* ------------------------------------------------------------------ */
/* Stress                                                              */
/* ------------------------------------------------------------------ */

#define ST_NSLOT	16
#define ST_PAGES	16
#define ST_SLOT		(ST_PAGES * PG)
#define ST_NQP		4		/* peer QPs, and target VM threads */
#define ST_MS		12000
#define ST_MAXLEN	(16 * 1024)

/* Shared with the peer (MAP_SHARED, created before the fork). */
struct st_shared {
	uint64_t addr[ST_NSLOT];		/* fixed for the run */
	_Atomic uint64_t key[ST_NSLOT];		/* rkey of the slot's MR, 0: none */
	atomic_int stop;
	int over;	/* mappings replaced in one call: READs may see new pages */
	struct {
		_Atomic uint64_t ops, ok, zeros, access, reconnects, foreign;
	} pc[ST_NQP];
};

struct st_pthr {
	struct st_shared *sh;
	struct pw_pd *pd;
	struct pw_cq *cq;
	struct pw_qp *qp;
	struct pwt_buf src, sink;
	uint16_t port;
	int q;
};

static uint64_t st_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void st_connect(struct st_pthr *p)
{
	struct pw_qp_init_attr attr;
	struct pw_conn_param param;

	if (p->qp) {
		PWT_OK(pw_destroy_qp(p->qp));
		drain_cq(p->cq);
	}
	memset(&attr, 0, sizeof(attr));
	attr.send_cq = p->cq;
	attr.recv_cq = p->cq;
	memset(&param, 0, sizeof(param));
	param.timeout_ms = PWT_TIMEOUT_MS;
	/*
	 * The target's accept loop wakes every second to check its stop
	 * flag, and pw_accept() closes a connection whose handshake is still
	 * under way when its own timeout ends (a known listener limit: a
	 * later pw_accept() should take it over). Under a loaded CI that
	 * resets a connect now and then: try again, a few times.
	 */
	for (int tries = 0;; tries++) {
		p->qp = pw_connect(p->pd, &attr, "127.0.0.1", p->port, &param);
		if (p->qp || errno != ECONNRESET || tries == 4)
			break;
	}
	PWT_NONNULL(p->qp);
}

/*
 * One peer QP: a WRITE of a fresh pattern at a random place in one of
 * its slots, and a READ of it right behind. Both succeed and every byte
 * read is the pattern's or zero (MADV_DONTNEED in between; with
 * mappings replaced in one call, a READ inside that call may return the
 * new pages, which is counted); or the WRITE
 * succeeds and the READ fails with REM_ACCESS_ERR; or the WRITE fails
 * with REM_ACCESS_ERR and the READ is flushed. Then a new connection.
 */
static void *st_peer_thread(void *arg)
{
	struct st_pthr *p = arg;
	uint64_t rnd = 0x9e3779b97f4a7c15ull * (uint64_t)(p->q + 1), n = 0;

	st_connect(p);
	while (!atomic_load(&p->sh->stop)) {
		unsigned int slot = (unsigned int)p->q +
				    ST_NQP * (unsigned int)(st_rand(&rnd) % (ST_NSLOT / ST_NQP));
		uint32_t rkey = (uint32_t)atomic_load(&p->sh->key[slot]);
		uint64_t off = st_rand(&rnd) % ST_SLOT, len, zeros = 0;
		uint32_t seed = ((uint32_t)p->q << 28) | (uint32_t)++n;
		struct pw_wc w1, w2;

		if (!rkey) {
			sched_yield();
			continue;
		}
		len = 1 + st_rand(&rnd) % SEM_MIN((uint64_t)ST_MAXLEN, ST_SLOT - off);
		pwt_fill(p->src.addr, len, seed);
		memset(p->sink.addr, 0xee, len);
		PWT_OK(pwt_post_rdma(p->qp, PW_WR_RDMA_WRITE, 2 * n, p->src.addr, (uint32_t)len,
				     p->src.lkey, p->sh->addr[slot] + off, rkey, PW_SEND_SIGNALED));
		PWT_OK(pwt_post_rdma(p->qp, PW_WR_RDMA_READ, 2 * n + 1, p->sink.addr,
				     (uint32_t)len, p->sink.lkey, p->sh->addr[slot] + off, rkey,
				     PW_SEND_SIGNALED));
		PWT_WAIT_WC(p->cq, &w1);
		PWT_WAIT_WC(p->cq, &w2);
		PWT_EQ(w1.wr_id, 2 * n);
		PWT_EQ(w2.wr_id, 2 * n + 1);
		atomic_fetch_add(&p->sh->pc[p->q].ops, 1);
		if (w1.status == PW_WC_SUCCESS && w2.status == PW_WC_SUCCESS) {
			for (uint64_t i = 0; i < len; i++) {
				uint8_t b = p->sink.addr[i], want = pwt_pattern_byte(seed, i);

				if (b != want && b != 0 && p->sh->over) {
					/* the window of a call that maps over the range */
					atomic_fetch_add(&p->sh->pc[p->q].foreign, 1);
					break;
				}
				if (b != want && b != 0)
					pwt_fail(__FILE__, __LINE__, "QP %d slot %u: byte %" PRIu64
						 " of %" PRIu64 " at offset %" PRIu64 " read 0x%02x, "
						 "wrote 0x%02x", p->q, slot, i, len, off, b, want);
				zeros += b != want;
			}
			atomic_fetch_add(&p->sh->pc[p->q].ok, 1);
			atomic_fetch_add(&p->sh->pc[p->q].zeros, zeros);
			continue;
		}
		if (!(w1.status == PW_WC_SUCCESS && w2.status == PW_WC_REM_ACCESS_ERR) &&
		    !(w1.status == PW_WC_REM_ACCESS_ERR && w2.status == PW_WC_WR_FLUSH_ERR))
			pwt_fail(__FILE__, __LINE__, "QP %d slot %u: WRITE %s, READ %s", p->q, slot,
				 pw_wc_status_str(w1.status), pw_wc_status_str(w2.status));
		atomic_fetch_add(&p->sh->pc[p->q].access, 1);
		atomic_fetch_add(&p->sh->pc[p->q].reconnects, 1);
		st_connect(p);
	}
	PWT_OK(pw_destroy_qp(p->qp));
	p->qp = NULL;
	return NULL;
}

static int st_peer_main(int fd, void *arg)
{
	struct st_shared *sh = arg;
	struct st_pthr thr[ST_NQP];
	pthread_t th[ST_NQP];
	struct pwt_side s;
	uint16_t port;

	pwt_ctl_recv(fd, &port, sizeof(port), 20000);
	pwt_side_open(&s);
	for (int q = 0; q < ST_NQP; q++) {
		memset(&thr[q], 0, sizeof(thr[q]));
		thr[q].sh = sh;
		thr[q].pd = s.pd;
		thr[q].q = q;
		thr[q].port = port;
		thr[q].cq = pw_create_cq(s.ctx, 16, NULL, NULL, 0);
		PWT_NONNULL(thr[q].cq);
		pwt_buf_alloc(&thr[q].src, &s, ST_MAXLEN, PWT_ACCESS_ALL, PWT_PINNED);
		pwt_buf_alloc(&thr[q].sink, &s, ST_MAXLEN, PWT_ACCESS_ALL, PWT_PINNED);
		PWT_EQ(pthread_create(&th[q], NULL, st_peer_thread, &thr[q]), 0);
	}
	for (int q = 0; q < ST_NQP; q++) {
		PWT_EQ(pthread_join(th[q], NULL), 0);
		pwt_buf_free(&thr[q].src);
		pwt_buf_free(&thr[q].sink);
		PWT_OK(pw_destroy_cq(thr[q].cq));
	}
	pwt_side_close(&s);
	return 0;
}

struct st_slot {
	uint8_t *addr;
	struct pw_mr *mr;		/* NULL: retired */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool pend, seen;		/* an event expected / arrived */
	enum pw_event_type pend_type;
	uint64_t pend_off, pend_len;
};

struct st_tgt {
	struct st_shared *sh;
	struct pwt_side s;
	struct pw_listener *l;
	struct st_slot slot[ST_NSLOT];
	atomic_bool stop_threads;
	int actions[8];			/* enum st_action, chosen at random */
	int nactions;
	uint64_t deadline;
	struct pw_qp *qps[4096];
	int nqps;
	_Atomic uint64_t madv, unmaps, moves, overs, retired, events, accepted;
	_Atomic uint64_t landed_in_call;
};

/* Accepts the peer's (re)connections; destroys the ones in error. */
static void *st_acceptor(void *arg)
{
	struct st_tgt *T = arg;

	while (!atomic_load(&T->stop_threads)) {
		struct pw_qp_init_attr attr;
		struct pw_conn_param param;
		struct pw_qp *qp;
		int k = 0;

		memset(&attr, 0, sizeof(attr));
		attr.send_cq = T->s.scq;
		attr.recv_cq = T->s.rcq;
		memset(&param, 0, sizeof(param));
		param.timeout_ms = 1000;
		qp = pw_accept(T->l, T->s.pd, &attr, &param);
		if (!qp) {
			PWT_ASSERTF(errno == ETIMEDOUT, "pw_accept: %s", strerror(errno));
		} else {
			PWT_ASSERT(T->nqps < (int)PWT_ARRAY_SIZE(T->qps));
			T->qps[T->nqps++] = qp;
			atomic_fetch_add(&T->accepted, 1);
		}
		for (int i = 0; i < T->nqps; i++) {
			if (pw_qp_state(T->qps[i]) == PW_QPS_ERR)
				PWT_OK(pw_destroy_qp(T->qps[i]));
			else
				T->qps[k++] = T->qps[i];
		}
		T->nqps = k;
	}
	return NULL;
}

/* Every event must be the one a VM thread expects for its slot. */
static void *st_events(void *arg)
{
	struct st_tgt *T = arg;

	while (!atomic_load(&T->stop_threads)) {
		struct pollfd pfd = { .fd = pw_get_async_fd(T->s.ctx), .events = POLLIN };
		struct pw_async_event ev;

		if (poll(&pfd, 1, 50) != 1)
			continue;
		while (get_mr_event(T->s.ctx, &ev) == 0) {
			bool found = false;

			for (int i = 0; i < ST_NSLOT && !found; i++) {
				struct st_slot *s = &T->slot[i];

				pthread_mutex_lock(&s->lock);
				if (s->mr && s->mr == ev.element.mr) {
					found = true;
					if (!s->pend || s->seen ||
					    ev.event_type != s->pend_type ||
					    ev.offset != s->pend_off || ev.length != s->pend_len)
						pwt_fail(__FILE__, __LINE__, "slot %d: event %s offset %#"
							 PRIx64 " length %#" PRIx64 "; expected %s "
							 "offset %#" PRIx64 " length %#" PRIx64, i,
							 pw_event_type_str(ev.event_type), ev.offset,
							 ev.length, s->pend ?
							 pw_event_type_str(s->pend_type) : "none",
							 s->pend_off, s->pend_len);
					s->seen = true;
					pthread_cond_broadcast(&s->cond);
				}
				pthread_mutex_unlock(&s->lock);
			}
			PWT_ASSERTF(found, "an event for MR %p, not a slot's",
				    (void *)ev.element.mr);
			pw_ack_async_event(&ev);
			atomic_fetch_add(&T->events, 1);
		}
	}
	return NULL;
}

static void st_expect(struct st_slot *s, enum pw_event_type type, uint64_t off,
		      uint64_t len)
{
	pthread_mutex_lock(&s->lock);
	s->pend = true;
	s->pend_type = type;
	s->seen = false;
	s->pend_off = off;
	s->pend_len = len;
	pthread_mutex_unlock(&s->lock);
}

/*
 * After an unmap of [off, off + len) of slot @i, which now holds new
 * memory with the content @want (NULL: someone else's memory, the slot
 * retires): the event came; the old MR goes (its key first, for the
 * peer); the new memory holds exactly @want (nothing landed, and nothing
 * can any more); a new MR over the slot is published.
 */
static void st_replace(struct st_tgt *T, int i, uint64_t off, uint64_t len,
		       const uint8_t *want, const char *how)
{
	struct st_slot *s = &T->slot[i];
	struct pw_mr *old, *mr;
	struct timespec ts;

	PWT_EQ(clock_gettime(CLOCK_REALTIME, &ts), 0);
	ts.tv_sec += EVENT_WAIT_MS / 1000;
	pthread_mutex_lock(&s->lock);
	while (!s->seen)
		PWT_ASSERTF(pthread_cond_timedwait(&s->cond, &s->lock, &ts) != ETIMEDOUT ||
			    s->seen, "slot %d: no event for %s of [%#" PRIx64 ", +%#" PRIx64
			    ") within %d ms", i, how, off, len, EVENT_WAIT_MS);
	old = s->mr;
	s->mr = NULL;
	s->pend = false;
	pthread_mutex_unlock(&s->lock);
	atomic_store(&T->sh->key[i], 0);
	PWT_OK(pw_dereg_mr(old));
	if (!want) {
		atomic_fetch_add(&T->retired, 1);
		return;
	}
	for (uint64_t k = 0; k < len; k++)
		if (s->addr[off + k] != want[k])
			pwt_fail(__FILE__, __LINE__, "slot %d, after %s of [%#" PRIx64 ", +%#"
				 PRIx64 "): byte %" PRIu64 " of the new memory is 0x%02x, "
				 "want 0x%02x: a remote WRITE landed there", i, how, off, len,
				 k, s->addr[off + k], want[k]);
	mr = pw_reg_mr(T->s.pd, s->addr, ST_SLOT, ODP_ALL);
	PWT_NONNULL(mr);
	pthread_mutex_lock(&s->lock);
	s->mr = mr;
	pthread_mutex_unlock(&s->lock);
	atomic_store(&T->sh->key[i], mr->rkey);
}

enum st_action { ST_MADV, ST_UNMAP, ST_MOVE, ST_OVER_MREMAP, ST_OVER_MMAP };

struct st_vm {
	struct st_tgt *T;
	int t;
	uint8_t *pool;			/* ST_SLOT reserved (PROT_NONE), its own */
	uint8_t want[ST_SLOT];		/* what new memory must hold */
};

/*
 * A thread's own address range for the other end of its mremap()s, kept
 * mapped at all times (MAP_FIXED over itself), so that the test makes no
 * mmap(NULL) that could take a slot's hole between munmap and mmap.
 */
static void st_pool_reset(struct st_vm *v, uint64_t len, int prot)
{
	PWT_ASSERT(mmap(v->pool, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) ==
		   v->pool);
}

/* New memory at @at (MAP_FIXED_NOREPLACE); false if something took the hole. */
static bool st_map_back(uint8_t *at, uint64_t len)
{
	void *p = mmap(at, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);

	if (p == at)
		return true;
	PWT_ASSERTF(p != MAP_FAILED || errno == EEXIST, "mmap: %s", strerror(errno));
	if (p != MAP_FAILED)
		PWT_EQ(munmap(p, len), 0);	/* taken as a hint */
	return false;
}

/*
 * A target thread, on random page ranges of its own 4 slots, in a loop,
 * one of @T->actions: MADV_DONTNEED; munmap, then new memory at the same
 * address (MAP_FIXED_NOREPLACE: if something else took the hole in
 * between, the slot retires); mremap of the range elsewhere, then new
 * memory at the old address; mremap of prefilled memory straight over
 * the range, or mmap(MAP_FIXED) straight over it, which replace the
 * mapping in one call (what they hold as the call returns must stay).
 */
static void *st_vm_thread(void *arg)
{
	struct st_vm *v = arg;
	struct st_tgt *T = v->T;
	uint64_t rnd = 0x2545f4914f6cdd1dull * (uint64_t)(v->t + 1);
	uint32_t gen = 0;

	while (pwt_now_ms() < T->deadline) {
		int i = v->t * (ST_NSLOT / ST_NQP) + (int)(st_rand(&rnd) % (ST_NSLOT / ST_NQP));
		struct st_slot *s = &T->slot[i];
		uint64_t p0 = st_rand(&rnd) % ST_PAGES, np = 1 + st_rand(&rnd) % (ST_PAGES - p0);
		uint64_t off = p0 * PG, len = np * PG;
		uint32_t mseed = MARK_SEED + ((uint32_t)i << 20) + ++gen;
		uint8_t *at = s->addr + off, *p;

		if (!s->mr) {		/* retired (only this thread changes it) */
			sched_yield();
			continue;
		}
		switch (T->actions[st_rand(&rnd) % (uint64_t)T->nactions]) {
		case ST_MADV:
			PWT_EQ(madvise(at, len, MADV_DONTNEED), 0);
			atomic_fetch_add(&T->madv, 1);
			break;
		case ST_UNMAP:
			st_expect(s, PW_EVENT_MR_UNMAPPED, off, len);
			PWT_EQ(munmap(at, len), 0);
			if (!st_map_back(at, len)) {
				st_replace(T, i, off, len, NULL, "munmap");
				break;
			}
			pwt_fill(at, len, mseed);
			pwt_fill(v->want, len, mseed);
			st_replace(T, i, off, len, v->want, "munmap, mmap");
			atomic_fetch_add(&T->unmaps, 1);
			break;
		case ST_MOVE:
			p = v->pool;
			st_expect(s, PW_EVENT_MR_REMAPPED, off, len);
			if (mremap(at, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, p) != p) {
				/* EFAULT: the range spans several mappings */
				PWT_ASSERTF(errno == EFAULT, "mremap: %s", strerror(errno));
				pthread_mutex_lock(&s->lock);
				s->pend = false;
				pthread_mutex_unlock(&s->lock);
				st_pool_reset(v, ST_SLOT, PROT_NONE);
				break;
			}
			st_pool_reset(v, len, PROT_NONE);
			if (!st_map_back(at, len)) {
				st_replace(T, i, off, len, NULL, "mremap away");
				break;
			}
			pwt_fill(at, len, mseed);
			pwt_fill(v->want, len, mseed);
			st_replace(T, i, off, len, v->want, "mremap away, mmap");
			atomic_fetch_add(&T->moves, 1);
			break;
		case ST_OVER_MREMAP:
			p = v->pool;
			st_pool_reset(v, len, PROT_READ | PROT_WRITE);
			pwt_fill(p, len, mseed);
			st_expect(s, PW_EVENT_MR_UNMAPPED, off, len);
			PWT_ASSERT(mremap(p, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, at) ==
				   (void *)at);
			/* the pool has a hole now: a library mmap may take it */
			p = mmap(v->pool, len, PROT_NONE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
			if (p != v->pool) {
				PWT_ASSERTF(p != MAP_FAILED || errno == EEXIST, "mmap: %s",
					    strerror(errno));
				if (p != MAP_FAILED)
					PWT_EQ(munmap(p, len), 0);
				if (len < ST_SLOT)
					PWT_EQ(munmap(v->pool + len, ST_SLOT - len), 0);
				v->pool = mmap(NULL, ST_SLOT, PROT_NONE,
					       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
				PWT_ASSERT(v->pool != MAP_FAILED);
			}
			/*
			 * docs/semantics.md, "Known window": a WRITE placed
			 * inside the call may land (counted); none after it
			 * returned, which st_replace checks against this copy.
			 */
			SEM_READS(memcpy(v->want, at, len));
			for (uint64_t k = 0; k < len; k++)
				if (v->want[k] != pwt_pattern_byte(mseed, k)) {
					atomic_fetch_add(&T->landed_in_call, 1);
					break;
				}
			st_replace(T, i, off, len, v->want, "mremap over");
			atomic_fetch_add(&T->overs, 1);
			break;
		case ST_OVER_MMAP:
			st_expect(s, PW_EVENT_MR_UNMAPPED, off, len);
			PWT_ASSERT(mmap(at, len, PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == at);
			/* as above: only the window inside the call */
			SEM_READS(memcpy(v->want, at, len));
			for (uint64_t k = 0; k < len; k++)
				if (v->want[k]) {
					atomic_fetch_add(&T->landed_in_call, 1);
					break;
				}
			st_replace(T, i, off, len, v->want, "mmap over");
			atomic_fetch_add(&T->overs, 1);
			break;
		}
	}
	return NULL;
}

/*
 * 4 target threads madvise(MADV_DONTNEED) and munmap + mmap again 16
 * registered ODP slots of 64 KiB (each slot its MR; an unmapped slot gets
 * a new MR once its event came, and the new memory is checked to hold
 * exactly what the target put there) for ST_MS, while 4 QPs of the peer
 * WRITE and READ back at random places (reconnecting after each access
 * error). Every completion is a success with verified data or an access
 * error (see st_peer_thread); every event is the one expected, exactly
 * one per unmap; nothing crashes or hangs.
 * Argument "mremap": the VM threads also move ranges away (mremap; see
 * t_reg_after_unmap); "mmap_over": they also replace mappings in one
 * call (mremap or mmap over the range; see t_mmap_over_inflight).
 */
static void t_stress(const char *arg)
{
	struct st_shared *sh;
	struct st_tgt *T;
	struct pwt_child peer;
	struct st_vm *v;
	pthread_t vm[ST_NQP], acc, evt;
	uint64_t ops = 0, ok = 0, zeros = 0, access = 0;
	int afd;

	PWT_EQ(sysconf(_SC_PAGESIZE), PG);
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	PWT_ASSERT(sh != MAP_FAILED);
	memset(sh, 0, sizeof(*sh));
	T = calloc(1, sizeof(*T));
	PWT_ASSERT(T);
	T->sh = sh;
	v = calloc(ST_NQP, sizeof(*v));
	PWT_ASSERT(v);
	T->actions[T->nactions++] = ST_MADV;
	T->actions[T->nactions++] = ST_MADV;
	T->actions[T->nactions++] = ST_UNMAP;
	if (arg && !strcmp(arg, "mremap")) {
		T->actions[T->nactions++] = ST_MOVE;
	} else if (arg && !strcmp(arg, "mmap_over")) {
		T->actions[T->nactions++] = ST_OVER_MREMAP;
		T->actions[T->nactions++] = ST_OVER_MMAP;
		sh->over = 1;
	} else {
		PWT_ASSERTF(!arg, "stress: unknown variant %s", arg);
	}
	for (int i = 0; i < ST_NSLOT; i++) {
		T->slot[i].addr = pwt_map(ST_SLOT);
		sh->addr[i] = pwt_va(T->slot[i].addr);
		pthread_mutex_init(&T->slot[i].lock, NULL);
		pthread_cond_init(&T->slot[i].cond, NULL);
	}
	pwt_fork(&peer, st_peer_main, sh);
	pwt_side_open(&T->s);
	T->l = pw_listen(T->s.ctx, "127.0.0.1", 0);
	PWT_NONNULL(T->l);
	afd = pw_get_async_fd(T->s.ctx);
	PWT_EQ(fcntl(afd, F_SETFL, fcntl(afd, F_GETFL) | O_NONBLOCK), 0);
	for (int i = 0; i < ST_NSLOT; i++) {
		T->slot[i].mr = pw_reg_mr(T->s.pd, T->slot[i].addr, ST_SLOT, ODP_ALL);
		PWT_NONNULL(T->slot[i].mr);
		atomic_store(&sh->key[i], T->slot[i].mr->rkey);
	}
	PWT_EQ(pthread_create(&acc, NULL, st_acceptor, T), 0);
	PWT_EQ(pthread_create(&evt, NULL, st_events, T), 0);
	{
		uint16_t port = pw_listener_port(T->l);

		pwt_ctl_send(peer.fd, &port, sizeof(port));
	}
	T->deadline = pwt_now_ms() + ST_MS;
	for (int t = 0; t < ST_NQP; t++) {
		v[t].T = T;
		v[t].t = t;
		v[t].pool = mmap(NULL, ST_SLOT, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		PWT_ASSERT(v[t].pool != MAP_FAILED);
		PWT_EQ(pthread_create(&vm[t], NULL, st_vm_thread, &v[t]), 0);
	}
	for (int t = 0; t < ST_NQP; t++) {
		PWT_EQ(pthread_join(vm[t], NULL), 0);
		PWT_EQ(munmap(v[t].pool, ST_SLOT), 0);
	}
	atomic_store(&sh->stop, 1);
	PWT_CHILD_OK(&peer, 20000);
	atomic_store(&T->stop_threads, true);
	PWT_EQ(pthread_join(acc, NULL), 0);
	PWT_EQ(pthread_join(evt, NULL), 0);
	for (int i = 0; i < T->nqps; i++)
		PWT_OK(pw_destroy_qp(T->qps[i]));

	for (int q = 0; q < ST_NQP; q++) {
		printf("peer QP %d: %" PRIu64 " WRITE+READ, %" PRIu64 " verified, %" PRIu64
		       " access errors, %" PRIu64 " zero bytes read back, %" PRIu64 " READs "
		       "returned new pages\n", q, (uint64_t)sh->pc[q].ops,
		       (uint64_t)sh->pc[q].ok, (uint64_t)sh->pc[q].access,
		       (uint64_t)sh->pc[q].zeros, (uint64_t)sh->pc[q].foreign);
		PWT_ASSERTF(sh->pc[q].ok > 0, "peer QP %d verified nothing", q);
		ops += sh->pc[q].ops;
		ok += sh->pc[q].ok;
		zeros += sh->pc[q].zeros;
		access += sh->pc[q].access;
	}
	printf("target: %" PRIu64 " madvise, %" PRIu64 " munmap+mmap, %" PRIu64 " mremap away+"
	       "mmap, %" PRIu64 " replaced in one call, %" PRIu64 " slots retired, %" PRIu64
	       " events, %" PRIu64 " connections accepted; WRITEs landed inside %" PRIu64
	       " one-call replacements\n",
	       (uint64_t)T->madv, (uint64_t)T->unmaps, (uint64_t)T->moves,
	       (uint64_t)T->overs, (uint64_t)T->retired, (uint64_t)T->events,
	       (uint64_t)T->accepted, (uint64_t)T->landed_in_call);
	PWT_EQ(T->events, T->unmaps + T->moves + T->overs + T->retired);
	PWT_ASSERT(T->madv > 0 && T->unmaps > 0);
	PWT_ASSERT(T->moves > 0 || !arg || strcmp(arg, "mremap"));
	PWT_ASSERT(T->overs > 0 || !arg || strcmp(arg, "mmap_over"));
	PWT_EQ(ops, ok + access);
	printf("peer: %" PRIu64 " verified, %" PRIu64 " access errors, %" PRIu64 " zero bytes\n",
	       ok, access, zeros);

	for (int i = 0; i < ST_NSLOT; i++) {
		if (T->slot[i].mr)
			PWT_OK(pw_dereg_mr(T->slot[i].mr));
		PWT_EQ(munmap(T->slot[i].addr, ST_SLOT), 0);
		pthread_mutex_destroy(&T->slot[i].lock);
		pthread_cond_destroy(&T->slot[i].cond);
	}
	PWT_OK(pw_close_listener(T->l));
	pwt_side_close(&T->s);
	free(T);
	free(v);
	munmap(sh, sizeof(*sh));
}


static const struct pwt_case cases[] = {
	{ "munmap_odp", t_munmap_odp },
	{ "munmap_many_holes", t_munmap_many_holes },
	{ "munmap_then_mmap_same_va", t_munmap_then_mmap_same_va },
	{ "mmap_over_inflight", t_mmap_over_inflight },
	{ "reg_after_unmap", t_reg_after_unmap },
	{ "madv_dontneed", t_madv_dontneed },
	{ "mremap", t_mremap },
	{ "fork_parent_sees_writes", t_fork_parent_sees_writes },
	{ "fork_vs_munmap", t_fork_vs_munmap },
	{ "fork_vs_reg", t_fork_vs_reg },
	{ "pinned_munmap", t_pinned_munmap },
	{ "dereg_inflight", t_dereg_inflight },
	{ "peer_exit", t_peer_exit },
	{ "implicit_odp", t_implicit_odp },
	{ "notifier_off", t_notifier_off },
	{ "file_backed", t_file_backed },
	{ "deadlock_free", t_deadlock_free },
	{ "stress", t_stress },
};

int main(int argc, char **argv)
{
	return pwt_main(argc, argv, cases, PWT_ARRAY_SIZE(cases));
}
