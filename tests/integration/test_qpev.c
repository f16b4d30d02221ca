/* SPDX-License-Identifier: MIT */
/*
 * Why a QP went to the error state, told through the async event path
 * even with nothing outstanding (PW_EVENT_QP_FATAL with a cause,
 * PW_EVENT_QP_PEER_DISCONNECTED), and completion accuracy: a WRITE the
 * peer acknowledged is never reported flushed because a later WR failed
 * or because the QP refused one of the peer's requests.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pwraw.h"
#include "pwtest.h"

/* The next async event of @ctx within @ms (the fd made non-blocking). */
static int next_event(struct pw_context *ctx, struct pw_async_event *ev, int ms)
{
	struct pollfd pfd = { .fd = pw_get_async_fd(ctx), .events = POLLIN };
	int fl = fcntl(pfd.fd, F_GETFL);

	PWT_EQ(fcntl(pfd.fd, F_SETFL, fl | O_NONBLOCK), 0);
	if (pw_get_async_event(ctx, ev) == 0)
		return 0;
	if (poll(&pfd, 1, ms) != 1)
		return -ETIMEDOUT;
	return pw_get_async_event(ctx, ev);
}

#define EXPECT_QP_EVENT(ctx, qp, type, cause)				\
	expect_qp_event_at(__FILE__, __LINE__, (ctx), (qp), (type), (cause))
static void expect_qp_event_at(const char *file, int line, struct pw_context *ctx,
			       struct pw_qp *qp, enum pw_event_type type,
			       enum pw_qp_cause cause)
{
	struct pw_async_event ev;
	int rc = next_event(ctx, &ev, PWT_TIMEOUT_MS);

	if (rc)
		pwt_fail(file, line, "no async event (want %s, %s): %d", pw_event_type_str(type),
			 pw_qp_cause_str(cause), rc);
	if (ev.event_type != type || ev.element.qp != qp || ev.cause != cause)
		pwt_fail(file, line, "async event %s, QP %p, cause '%s'; want %s, QP %p, '%s'",
			 pw_event_type_str(ev.event_type), (void *)ev.element.qp,
			 pw_qp_cause_str(ev.cause), pw_event_type_str(type), (void *)qp,
			 pw_qp_cause_str(cause));
	pw_ack_async_event(&ev);
}

#define EXPECT_NO_EVENT(ctx, ms) expect_no_event_at(__FILE__, __LINE__, (ctx), (ms))
static void expect_no_event_at(const char *file, int line, struct pw_context *ctx, int ms)
{
	struct pw_async_event ev;

	if (next_event(ctx, &ev, ms) == 0)
		pwt_fail(file, line, "unexpected async event %s, cause '%s'",
			 pw_event_type_str(ev.event_type), pw_qp_cause_str(ev.cause));
}

/* ------------------------------------------------------------------ */
/* events                                                              */
/* ------------------------------------------------------------------ */

/*
 * pw_disconnect: the local QP goes to error at once with no event (the
 * application knows why), the peer learns it was a disconnect, not a
 * failure, and its posted receives are flushed.
 */
static void t_disconnect(const char *arg)
{
	struct pwt_pair p;

	(void)arg;
	pwt_pair_open(&p, NULL);
	PWT_OK(pwt_post_recv1(p.b.qp, 1, NULL, 0, 0));
	PWT_OK(pwt_post_recv1(p.b.qp, 2, NULL, 0, 0));
	PWT_OK(pw_disconnect(p.a.qp));
	PWT_EQ(pw_qp_state(p.a.qp), PW_QPS_ERR);
	EXPECT_QP_EVENT(p.b.ctx, p.b.qp, PW_EVENT_QP_PEER_DISCONNECTED,
			PW_QP_CAUSE_PEER_DISCONNECTED);
	PWT_WAIT_STATE(p.b.qp, PW_QPS_ERR);
	PWT_EXPECT_ERR(p.b.rcq, 1, PW_WC_WR_FLUSH_ERR, p.b.qp->qp_num);
	PWT_EXPECT_ERR(p.b.rcq, 2, PW_WC_WR_FLUSH_ERR, p.b.qp->qp_num);
	EXPECT_NO_EVENT(p.a.ctx, 200);
	/* posting on a disconnected QP flushes, as on any QP in error */
	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 9, NULL, 0, 0, 0, 0,
			     PW_SEND_SIGNALED));
	PWT_EXPECT_ERR(p.a.scq, 9, PW_WC_WR_FLUSH_ERR, p.a.qp->qp_num);
	PWT_EQ(pw_disconnect(NULL), -EINVAL);
	pwt_pair_close(&p);
}

/* pw_destroy_qp tells the peer the same way. */
static void t_destroy(const char *arg)
{
	struct pwt_pair p;

	(void)arg;
	pwt_pair_open(&p, NULL);
	PWT_OK(pw_destroy_qp(p.a.qp));
	p.a.qp = NULL;
	EXPECT_QP_EVENT(p.b.ctx, p.b.qp, PW_EVENT_QP_PEER_DISCONNECTED,
			PW_QP_CAUSE_PEER_DISCONNECTED);
	EXPECT_NO_EVENT(p.a.ctx, 100);
	pwt_pair_close(&p);
}

/*
 * A bad rkey: the requester's WR fails (its completion) and its QP's
 * event says the peer refused; the responder, with nothing outstanding,
 * learns from its event alone that it refused a request.
 */
static void t_responder(const char *arg)
{
	struct pwt_pair p;
	struct pwt_buf src;

	(void)arg;
	pwt_pair_open(&p, NULL);
	pwt_buf_alloc(&src, &p.a, 4096, PWT_ACCESS_ALL, PWT_PINNED);
	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 1, src.addr, 64, src.lkey, 0x1000,
			     0xbad0bad0, PW_SEND_SIGNALED));
	PWT_EXPECT_ERR(p.a.scq, 1, PW_WC_REM_ACCESS_ERR, p.a.qp->qp_num);
	EXPECT_QP_EVENT(p.a.ctx, p.a.qp, PW_EVENT_QP_FATAL, PW_QP_CAUSE_REMOTE_NAK);
	EXPECT_QP_EVENT(p.b.ctx, p.b.qp, PW_EVENT_QP_FATAL, PW_QP_CAUSE_RESPONDER);
	PWT_EQ(pw_qp_state(p.b.qp), PW_QPS_ERR);
	pwt_buf_free(&src);
	pwt_pair_close(&p);
}

/* A local protection error (a bad lkey): LOCAL_WR. */
static void t_local_wr(const char *arg)
{
	struct pwt_pair p;

	(void)arg;
	pwt_pair_open(&p, NULL);
	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 1, (void *)0x1000, 64, 0x77777,
			     0x1000, 0x1, PW_SEND_SIGNALED));
	PWT_EXPECT_ERR(p.a.scq, 1, PW_WC_LOC_PROT_ERR, p.a.qp->qp_num);
	EXPECT_QP_EVENT(p.a.ctx, p.a.qp, PW_EVENT_QP_FATAL, PW_QP_CAUSE_LOCAL_WR);
	pwt_pair_close(&p);
}

/* A peer that sends garbage after the handshake: PROTOCOL. */
static void t_protocol(const char *arg)
{
	struct pwt_side b;
	struct pw_listener *l;
	struct pw_qp *qp;
	int fd;

	(void)arg;
	pwt_side_open(&b);
	l = pw_listen(b.ctx, "127.0.0.1", 0);
	PWT_NONNULL(l);
	uint8_t junk[PW_WIRE_HDR_LEN];

	fd = pwr_open_accepted(l, &b, &qp, 500, 0x4242, 0);
	memset(junk, 'A', sizeof(junk));
	pwt_write_all(fd, junk, sizeof(junk));
	EXPECT_QP_EVENT(b.ctx, qp, PW_EVENT_QP_FATAL, PW_QP_CAUSE_PROTOCOL);
	close(fd);
	PWT_OK(pw_destroy_qp(qp));
	PWT_OK(pw_close_listener(l));
	pwt_side_close(&b);
}

/*
 * A peer whose connection closes without a DISCONNECT (its process
 * exits without destroying the QP, or it predates the LINK feature):
 * PEER_CLOSED.
 */
static int exit_main(int fd, void *arg)
{
	struct pwt_side s;
	uint16_t port;
	struct pw_qp_init_attr at;

	(void)arg;
	pwt_ctl_recv(fd, &port, sizeof(port), PWT_TIMEOUT_MS);
	pwt_side_open(&s);
	memset(&at, 0, sizeof(at));
	at.send_cq = s.scq;
	at.recv_cq = s.rcq;
	s.qp = pw_connect(s.pd, &at, "127.0.0.1", port, NULL);
	PWT_NONNULL(s.qp);
	pwt_ctl_send(fd, "c", 1);
	pwt_ctl_recv(fd, &port, 1, PWT_TIMEOUT_MS);
	_exit(0);	/* no pw_destroy_qp: the kernel closes the socket */
}

static void t_peer_exit(const char *arg)
{
	struct pwt_child c;
	struct pwt_side b;
	struct pw_listener *l;
	struct pw_qp_init_attr at;
	uint16_t port;
	char v;

	(void)arg;
	pwt_fork(&c, exit_main, NULL);
	pwt_side_open(&b);
	l = pw_listen(b.ctx, "127.0.0.1", 0);
	PWT_NONNULL(l);
	port = pw_listener_port(l);
	pwt_ctl_send(c.fd, &port, sizeof(port));
	memset(&at, 0, sizeof(at));
	at.send_cq = b.scq;
	at.recv_cq = b.rcq;
	b.qp = pw_accept(l, b.pd, &at, NULL);
	PWT_NONNULL(b.qp);
	pwt_ctl_recv(c.fd, &v, 1, PWT_TIMEOUT_MS);
	pwt_ctl_send(c.fd, "x", 1);
	PWT_CHILD_OK(&c, 10000);
	EXPECT_QP_EVENT(b.ctx, b.qp, PW_EVENT_QP_FATAL, PW_QP_CAUSE_PEER_CLOSED);
	PWT_OK(pw_close_listener(l));
	pwt_side_close(&b);
}

static void t_no_link_close(const char *arg)
{
	struct pwt_pair_opts o;
	struct pwt_pair p;

	(void)arg;
	memset(&o, 0, sizeof(o));
	o.a_ctx.flags = PW_CONTEXT_NO_LINK;
	pwt_pair_open(&p, &o);
	PWT_OK(pw_destroy_qp(p.a.qp));
	p.a.qp = NULL;
	EXPECT_QP_EVENT(p.b.ctx, p.b.qp, PW_EVENT_QP_FATAL, PW_QP_CAUSE_PEER_CLOSED);
	pwt_pair_close(&p);
}

struct destroyer {
	struct pw_qp *qp;
	atomic_bool done;
	pthread_t th;
};

static void *destroy_main(void *arg)
{
	struct destroyer *d = arg;

	PWT_OK(pw_destroy_qp(d->qp));
	atomic_store(&d->done, true);
	return NULL;
}

/* pw_destroy_qp waits for the acknowledgement of the QP's taken event. */
static void t_destroy_waits_ack(const char *arg)
{
	struct pw_async_event ev;
	struct destroyer d;
	struct pwt_pair p;

	(void)arg;
	pwt_pair_open(&p, NULL);
	PWT_OK(pw_disconnect(p.a.qp));
	PWT_OK(next_event(p.b.ctx, &ev, PWT_TIMEOUT_MS));
	PWT_EQ(ev.event_type, PW_EVENT_QP_PEER_DISCONNECTED);
	PWT_ASSERT(ev.element.qp == p.b.qp);
	d.qp = p.b.qp;
	atomic_init(&d.done, false);
	PWT_EQ(pthread_create(&d.th, NULL, destroy_main, &d), 0);
	pwt_sleep_ms(200);	/* a negative check: still waiting */
	PWT_ASSERTF(!atomic_load(&d.done), "pw_destroy_qp returned before the ack");
	pw_ack_async_event(&ev);
	PWT_EQ(pthread_join(d.th, NULL), 0);
	PWT_ASSERT(atomic_load(&d.done));
	p.b.qp = NULL;
	pwt_pair_close(&p);
}

/* ------------------------------------------------------------------ */
/* completion accuracy                                                  */
/* ------------------------------------------------------------------ */

/*
 * We refuse the peer's request (a bad rkey) while four WRITEs of ours are
 * out: the two the peer then acknowledges complete successfully, the two
 * it never acknowledges are flushed. The peer is raw, so the order of
 * events on the wire is exact.
 */
static void t_refused(const char *arg)
{
	struct pwt_side b;
	struct pwt_buf src;
	struct pw_listener *l;
	struct pw_qp *qp;
	struct pw_hdr h, w[4];
	uint8_t pl[64];
	int fd, rc;

	(void)arg;
	pwt_side_open(&b);
	l = pw_listen(b.ctx, "127.0.0.1", 0);
	PWT_NONNULL(l);
	fd = pwr_open_accepted(l, &b, &qp, 700, 0x77, 0);
	pwt_buf_alloc(&src, &b, 4096, PWT_ACCESS_ALL, PWT_PINNED);
	for (int i = 0; i < 4; i++)
		PWT_OK(pwt_post_rdma(qp, PW_WR_RDMA_WRITE, 10 + (uint64_t)i, src.addr, 64,
				     src.lkey, 0x10000 + (uint64_t)i * 64, 0x1234,
				     PW_SEND_SIGNALED));
	for (int i = 0; i < 4; i++) {
		rc = pwr_read_msg(fd, &w[i], pl, sizeof(pl), NULL, PWT_TIMEOUT_MS);
		PWT_ASSERTF(rc == 1 && w[i].opcode == PW_OP_WRITE, "WRITE %d: %d", i, rc);
	}
	/* our request, to a key that does not exist: refused */
	h = pwr_hdr(PW_OP_WRITE, 700);
	h.rkey = 0xdead;
	h.raddr = 0x1000;
	h.payload_len = 8;
	pwr_send_hdr(fd, &h);
	pwt_write_all(fd, "12345678", 8);
	rc = pwr_read_msg(fd, &h, NULL, 0, NULL, PWT_TIMEOUT_MS);
	PWT_ASSERTF(rc == 1 && h.opcode == PW_OP_NAK && h.syndrome == PW_SYN_REMOTE_ACCESS,
		    "no REMOTE_ACCESS NAK: %d, opcode %u", rc, h.opcode);
	EXPECT_QP_EVENT(b.ctx, qp, PW_EVENT_QP_FATAL, PW_QP_CAUSE_RESPONDER);
	/* the first two were executed: ACK them now */
	PWT_NO_WC(b.scq, 100);
	h = pwr_hdr(PW_OP_ACK, w[1].psn);
	pwr_send_hdr(fd, &h);
	PWT_EXPECT_OK(b.scq, 10, PW_WC_RDMA_WRITE, 64, qp->qp_num);
	PWT_EXPECT_OK(b.scq, 11, PW_WC_RDMA_WRITE, 64, qp->qp_num);
	PWT_NO_WC(b.scq, 100);
	/* and the peer goes: the other two were never acknowledged */
	shutdown(fd, SHUT_WR);
	PWT_EXPECT_ERR(b.scq, 12, PW_WC_WR_FLUSH_ERR, qp->qp_num);
	PWT_EXPECT_ERR(b.scq, 13, PW_WC_WR_FLUSH_ERR, qp->qp_num);
	PWT_NO_WC(b.scq, 50);
	close(fd);
	PWT_OK(pw_destroy_qp(qp));
	pwt_buf_free(&src);
	PWT_OK(pw_close_listener(l));
	pwt_side_close(&b);
}

/*
 * A WRITE whose source MR is deregistered while it waits behind a long
 * one: it fails with LOC_PROT_ERR; the WRITEs before it, sent and executed
 * by the peer, complete successfully (their ACK was still on its way) and
 * their data is there; what was posted after is flushed, in order. The
 * target is a child, stopped while the WRITEs are posted, so that they
 * are certain to wait.
 */
#define AB_BIG	(32 * PWT_MIB)
#define AB_LEN	(AB_BIG + 3 * 4096)

static int abort_target(int fd, void *arg)
{
	struct pwt_remote r;
	struct pwt_side s;
	struct pwt_buf dst;
	struct pw_listener *l;
	struct pw_qp_init_attr at;
	struct pw_conn_param cp;
	uint16_t port;
	char v;

	(void)arg;
	pwt_side_open(&s);
	pwt_buf_alloc(&dst, &s, AB_LEN, PWT_ACCESS_ALL, PWT_PINNED);
	memset(dst.addr, 0, AB_LEN);
	l = pw_listen(s.ctx, "127.0.0.1", 0);
	PWT_NONNULL(l);
	port = pw_listener_port(l);
	memset(&r, 0, sizeof(r));
	r.addr = pwt_va(dst.addr);
	r.rkey = dst.rkey;
	memset(&at, 0, sizeof(at));
	at.send_cq = s.scq;
	at.recv_cq = s.rcq;
	memset(&cp, 0, sizeof(cp));
	cp.private_data = &r;
	cp.private_data_len = sizeof(r);
	pwt_ctl_send(fd, &port, sizeof(port));
	s.qp = pw_accept(l, s.pd, &at, &cp);
	PWT_NONNULL(s.qp);
	pwt_ctl_recv(fd, &v, 1, 60000);
	PWT_WAIT_STATE(s.qp, PW_QPS_ERR);
	/* the three WRITEs reported done, and not the failed one */
	PWT_PATTERN(dst.addr, AB_BIG + 2 * 4096, 17, 0);
	PWT_ZERO(dst.addr + AB_BIG + 2 * 4096, 4096);
	pwt_ctl_send(fd, "K", 1);
	PWT_OK(pw_destroy_qp(s.qp));
	s.qp = NULL;
	pwt_buf_free(&dst);
	PWT_OK(pw_close_listener(l));
	pwt_side_close(&s);
	return 0;
}

static void t_abort(const char *arg)
{
	struct pw_qp_init_attr at;
	struct pwt_remote r;
	struct pwt_child c;
	struct pwt_side a;
	struct pwt_buf src, gone;
	struct pw_wc wc;
	uint16_t port;
	int st;
	char v;

	(void)arg;
	pwt_fork(&c, abort_target, NULL);
	pwt_ctl_recv(c.fd, &port, sizeof(port), PWT_TIMEOUT_MS);
	pwt_side_open(&a);
	memset(&at, 0, sizeof(at));
	at.send_cq = a.scq;
	at.recv_cq = a.rcq;
	a.qp = pw_connect(a.pd, &at, "127.0.0.1", port, NULL);
	PWT_NONNULL(a.qp);
	pwt_remote_from_qp(a.qp, &r);
	pwt_buf_alloc(&src, &a, AB_LEN, PWT_ACCESS_ALL, PWT_PINNED);
	pwt_fill(src.addr, src.len, 17);
	pwt_buf_alloc(&gone, &a, 4096, PWT_ACCESS_ALL, PWT_PINNED);
	pwt_fill(gone.addr, 4096, 18);

	PWT_EQ(kill(c.pid, SIGSTOP), 0);
	PWT_EQ(waitpid(c.pid, &st, WUNTRACED), c.pid);
	/* the long one fills the socket: the rest wait behind it */
	PWT_OK(pwt_post_rdma(a.qp, PW_WR_RDMA_WRITE, 1, src.addr, (uint32_t)AB_BIG,
			     src.lkey, r.addr, r.rkey, PW_SEND_SIGNALED));
	for (int i = 0; i < 2; i++)
		PWT_OK(pwt_post_rdma(a.qp, PW_WR_RDMA_WRITE, 2 + (uint64_t)i,
				     src.addr + AB_BIG + (size_t)i * 4096, 4096, src.lkey,
				     r.addr + AB_BIG + (size_t)i * 4096, r.rkey,
				     PW_SEND_SIGNALED));
	PWT_OK(pwt_post_rdma(a.qp, PW_WR_RDMA_WRITE, 4, gone.addr, 4096, gone.lkey,
			     r.addr + AB_BIG + 2 * 4096, r.rkey, PW_SEND_SIGNALED));
	PWT_OK(pw_dereg_mr(gone.mr));
	gone.mr = NULL;
	PWT_OK(pwt_post_rdma(a.qp, PW_WR_RDMA_WRITE, 5, src.addr, 8, src.lkey,
			     r.addr, r.rkey, PW_SEND_SIGNALED));
	PWT_EQ(kill(c.pid, SIGCONT), 0);
	for (int i = 1; i <= 3; i++)
		PWT_EXPECT_OK(a.scq, (uint64_t)i, PW_WC_RDMA_WRITE,
			      i == 1 ? (uint32_t)AB_BIG : 4096, a.qp->qp_num);
	PWT_EXPECT_ERR(a.scq, 4, PW_WC_LOC_PROT_ERR, a.qp->qp_num);
	PWT_EXPECT_ERR(a.scq, 5, PW_WC_WR_FLUSH_ERR, a.qp->qp_num);
	PWT_ASSERT(pwt_poll_wc(a.scq, &wc, 50) == 0);
	EXPECT_QP_EVENT(a.ctx, a.qp, PW_EVENT_QP_FATAL, PW_QP_CAUSE_LOCAL_WR);
	pwt_ctl_send(c.fd, "v", 1);
	pwt_ctl_recv(c.fd, &v, 1, PWT_TIMEOUT_MS);
	PWT_EQ(v, 'K');
	PWT_CHILD_OK(&c, 10000);
	munmap(gone.addr, gone.map_len);
	pwt_buf_free(&src);
	pwt_side_close(&a);
}

static const struct pwt_case cases[] = {
	{ "disconnect", t_disconnect },
	{ "destroy", t_destroy },
	{ "responder", t_responder },
	{ "local_wr", t_local_wr },
	{ "protocol", t_protocol },
	{ "peer_exit", t_peer_exit },
	{ "no_link_close", t_no_link_close },
	{ "destroy_waits_ack", t_destroy_waits_ack },
	{ "refused", t_refused },
	{ "abort", t_abort },
};

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	return pwt_main(argc, argv, cases, PWT_ARRAY_SIZE(cases));
}
