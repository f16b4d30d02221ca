/* SPDX-License-Identifier: MIT */
/*
 * Connection events (as librdmacm's): a channel per side, non-blocking
 * connects whose outcome arrives as an event, CONNECT_REQUEST answered
 * with pw_accept_request / pw_reject, DISCONNECTED and TIMEWAIT_EXIT on
 * both sides, and pw_query_qp's view of a connection.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pwraw.h"
#include "pwtest.h"

/* One side: a context and its connection channel. */
struct cside {
	struct pwt_side s;
	struct pw_cm_channel *ch;
};

/* @attr: pw_open() attributes, NULL for the defaults */
static void cside_open_attr(struct cside *c, const struct pw_context_attr *attr)
{
	pwt_side_open_attr(&c->s, attr);
	c->ch = pw_create_cm_channel(c->s.ctx);
	PWT_NONNULL(c->ch);
	PWT_EQ(fcntl(c->ch->fd, F_SETFL, fcntl(c->ch->fd, F_GETFL) | O_NONBLOCK), 0);
}

static void cside_open(struct cside *c)
{
	cside_open_attr(c, NULL);
}

static void cside_close(struct cside *c)
{
	PWT_OK(pw_destroy_cm_channel(c->ch));
	pwt_side_close(&c->s);
}

/* The next event of @ch within @ms, or NULL. */
static struct pw_cm_event *next_ev(struct pw_cm_channel *ch, int ms)
{
	struct pw_cm_event *ev;
	struct pollfd pfd = { .fd = ch->fd, .events = POLLIN };
	uint64_t end = pwt_now_ms() + (uint64_t)ms;

	for (;;) {
		int rc = pw_get_cm_event(ch, &ev);
		uint64_t now = pwt_now_ms();

		if (rc == 0)
			return ev;
		PWT_EQ(rc, -EAGAIN);
		if (now >= end)
			return NULL;
		(void)poll(&pfd, 1, (int)(end - now));
	}
}

#define EXPECT_EV(ch, type, qp) expect_ev_at(__FILE__, __LINE__, (ch), (type), (qp))
static struct pw_cm_event *expect_ev_at(const char *file, int line,
					struct pw_cm_channel *ch,
					enum pw_cm_event_type type, struct pw_qp *qp)
{
	struct pw_cm_event *ev = next_ev(ch, PWT_TIMEOUT_MS);

	if (!ev)
		pwt_fail(file, line, "no %s event", pw_cm_event_str(type));
	if (ev->event != type || (qp && ev->qp != qp))
		pwt_fail(file, line, "event %s (status %d, QP %p), want %s (QP %p)",
			 pw_cm_event_str(ev->event), ev->status, (void *)ev->qp,
			 pw_cm_event_str(type), (void *)qp);
	return ev;
}

/*
 * The client disconnects @cq: DISCONNECTED (status 0) on both sides, then
 * TIMEWAIT_EXIT on both, each acknowledged.
 */
static void disconnect_both(struct cside *cli, struct pw_qp *cq,
			    struct cside *srv, struct pw_qp *sq)
{
	struct pw_cm_event *ev;

	PWT_OK(pw_disconnect(cq));
	ev = EXPECT_EV(cli->ch, PW_CM_EVENT_DISCONNECTED, cq);
	PWT_EQ(ev->status, 0);
	PWT_OK(pw_ack_cm_event(ev));
	ev = EXPECT_EV(srv->ch, PW_CM_EVENT_DISCONNECTED, sq);
	PWT_EQ(ev->status, 0);
	PWT_OK(pw_ack_cm_event(ev));
	PWT_OK(pw_ack_cm_event(EXPECT_EV(cli->ch, PW_CM_EVENT_TIMEWAIT_EXIT, cq)));
	PWT_OK(pw_ack_cm_event(EXPECT_EV(srv->ch, PW_CM_EVENT_TIMEWAIT_EXIT, sq)));
}

static uint16_t addr_port(const struct sockaddr_storage *ss)
{
	return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

static bool is_loopback(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET &&
	       ((const struct sockaddr_in *)ss)->sin_addr.s_addr == htonl(INADDR_LOOPBACK);
}

static struct pw_qp_init_attr qattr(struct pwt_side *s)
{
	struct pw_qp_init_attr a;

	memset(&a, 0, sizeof(a));
	a.send_cq = s->scq;
	a.recv_cq = s->rcq;
	return a;
}

/*
 * The server rejects with private data: it saw the client's private data
 * and address first; the client gets REJECTED with the server's.
 */
static void t_reject(const char *arg)
{
	static const char hello[] = "may I?", no[] = "not today";
	struct pw_conn_param cp = { .private_data = hello, .private_data_len = sizeof(hello) };
	struct pw_qp_init_attr ca;
	struct cside cli, srv;
	struct pw_listener *l;
	struct pw_cm_event *ev;
	struct pw_qp *qp;
	int tag;

	(void)arg;
	cside_open(&cli);
	cside_open(&srv);
	l = pw_listen_channel(srv.ch, "127.0.0.1", 0, &tag);
	PWT_NONNULL(l);
	PWT_EQ(pw_listener_fd(l), srv.ch->fd);
	ca = qattr(&cli.s);
	qp = pw_connect_async(cli.s.pd, &ca, "127.0.0.1", pw_listener_port(l), &cp, cli.ch);
	PWT_NONNULL(qp);
	PWT_EQ(pw_qp_state(qp), PW_QPS_INIT);

	ev = EXPECT_EV(srv.ch, PW_CM_EVENT_CONNECT_REQUEST, NULL);
	PWT_ASSERT(ev->listener == l && ev->context == &tag && ev->request && !ev->qp);
	PWT_EQ(ev->private_data_len, sizeof(hello));
	PWT_MEMEQ(ev->private_data, hello, sizeof(hello));
	PWT_ASSERT(is_loopback(&ev->peer_addr));
	PWT_OK(pw_reject(ev->request, no, sizeof(no)));
	PWT_OK(pw_ack_cm_event(ev));

	ev = EXPECT_EV(cli.ch, PW_CM_EVENT_REJECTED, qp);
	PWT_EQ(ev->status, -ECONNREFUSED);
	PWT_EQ(ev->private_data_len, sizeof(no));
	PWT_MEMEQ(ev->private_data, no, sizeof(no));
	PWT_OK(pw_ack_cm_event(ev));
	PWT_EQ(pw_qp_state(qp), PW_QPS_ERR);
	PWT_ASSERT(next_ev(cli.ch, 100) == NULL);
	PWT_ASSERT(next_ev(srv.ch, 0) == NULL);
	PWT_OK(pw_destroy_qp(qp));
	PWT_EQ(pw_destroy_cm_channel(srv.ch), -EBUSY);	/* the listener reports to it */
	PWT_OK(pw_close_listener(l));
	cside_close(&srv);
	cside_close(&cli);
}

/*
 * Nobody listens: REJECTED at once; a server that never answers:
 * UNREACHABLE at the handshake timeout; one speaking nonsense:
 * CONNECT_ERROR. The blocking pw_connect says the same as errno.
 */
static void t_unreachable(const char *arg)
{
	struct pw_conn_param cp = { .timeout_ms = 300 };
	struct pw_qp_init_attr ca;
	struct pw_cm_event *ev;
	struct cside cli;
	struct pw_qp *qp;
	uint16_t port;
	uint64_t t0, ms;
	int lfd, afd;

	(void)arg;
	cside_open(&cli);
	ca = qattr(&cli.s);
	t0 = pwt_now_ms();
	qp = pw_connect_async(cli.s.pd, &ca, "127.0.0.1", pwt_unused_port(), NULL, cli.ch);
	PWT_NONNULL(qp);
	ev = EXPECT_EV(cli.ch, PW_CM_EVENT_REJECTED, qp);
	ms = pwt_now_ms() - t0;
	PWT_EQ(ev->status, -ECONNREFUSED);
	PWT_EQ(ev->private_data_len, 0);
	PWT_OK(pw_ack_cm_event(ev));
	PWT_OK(pw_destroy_qp(qp));
	printf("closed port: REJECTED after %" PRIu64 " ms\n", ms);
	PWT_ASSERTF(ms < 1000, "closed port: %" PRIu64 " ms", ms);

	/* a listening socket that never accepts or answers */
	lfd = pwt_tcp_listen(&port);
	t0 = pwt_now_ms();
	qp = pw_connect_async(cli.s.pd, &ca, "127.0.0.1", port, &cp, cli.ch);
	PWT_NONNULL(qp);
	ev = EXPECT_EV(cli.ch, PW_CM_EVENT_UNREACHABLE, qp);
	ms = pwt_now_ms() - t0;
	PWT_EQ(ev->status, -ETIMEDOUT);
	PWT_OK(pw_ack_cm_event(ev));
	PWT_OK(pw_destroy_qp(qp));
	PWT_ASSERTF(ms >= 250 && ms < 3000, "silent server: %" PRIu64 " ms", ms);

	/* nonsense for an answer (a fresh server: the old one's backlog is stale) */
	close(lfd);
	lfd = pwt_tcp_listen(&port);
	qp = pw_connect_async(cli.s.pd, &ca, "127.0.0.1", port, &cp, cli.ch);
	PWT_NONNULL(qp);
	afd = accept(lfd, NULL, NULL);
	PWT_ASSERT(afd >= 0);
	{
		static const char junk[] = "HTTP/1.1 400 Bad Request\r\n\r\nand more, past 48 bytes";

		pwt_write_all(afd, junk, sizeof(junk));
	}
	ev = EXPECT_EV(cli.ch, PW_CM_EVENT_CONNECT_ERROR, qp);
	PWT_EQ(ev->status, -EPROTO);
	PWT_OK(pw_ack_cm_event(ev));
	PWT_OK(pw_destroy_qp(qp));
	close(afd);
	close(lfd);

	/* the same through the blocking call */
	PWT_ASSERT(pw_connect(cli.s.pd, &ca, "127.0.0.1", pwt_unused_port(), NULL) == NULL);
	PWT_EQ(errno, ECONNREFUSED);
	PWT_ASSERT(pw_connect(cli.s.pd, &ca, "no.such.host.invalid", 1, NULL) == NULL);
	PWT_EQ(errno, EHOSTUNREACH);
	PWT_ASSERT(pw_connect_async(cli.s.pd, &ca, "127.0.0.1", 1, NULL, NULL) == NULL);
	PWT_EQ(errno, EINVAL);
	cside_close(&cli);
}

/*
 * The whole life: request, accept with private data, ESTABLISHED on both
 * sides (the client's with the server's private data), data both ways,
 * pw_disconnect on one side: DISCONNECTED (status 0), then TIMEWAIT_EXIT,
 * on both. Receives may be posted before ESTABLISHED, sends may not.
 */
static void t_lifecycle(const char *arg)
{
	static const char sp[] = "welcome";
	struct pw_conn_param scp = { .private_data = sp, .private_data_len = sizeof(sp) };
	struct pw_qp_init_attr ca, sa;
	struct cside cli, srv;
	struct pw_listener *l;
	struct pw_cm_event *ev;
	struct pw_qp *cq, *sq;
	struct pwt_buf cb, sb;
	struct pw_send_wr *bad;
	struct pw_wc wc;

	(void)arg;
	cside_open(&cli);
	cside_open(&srv);
	pwt_buf_alloc(&cb, &cli.s, 4096, PWT_ACCESS_ALL, PWT_PINNED);
	pwt_buf_alloc(&sb, &srv.s, 4096, PWT_ACCESS_ALL, PWT_PINNED);
	l = pw_listen_channel(srv.ch, "127.0.0.1", 0, NULL);
	PWT_NONNULL(l);
	ca = qattr(&cli.s);
	ca.qp_context = &cli;
	cq = pw_connect_async(cli.s.pd, &ca, "127.0.0.1", pw_listener_port(l), NULL, cli.ch);
	PWT_NONNULL(cq);
	/* a receive before the connection is up; no send */
	PWT_OK(pwt_post_recv1(cq, 77, cb.addr, 4096, cb.lkey));
	PWT_EQ(pwt_post_rdma(cq, PW_WR_RDMA_WRITE, 1, cb.addr, 8, cb.lkey, 0, 0, 0),
	       -EINVAL);
	(void)bad;

	ev = EXPECT_EV(srv.ch, PW_CM_EVENT_CONNECT_REQUEST, NULL);
	sa = qattr(&srv.s);
	sa.qp_context = &srv;
	sq = pw_accept_request(ev->request, srv.s.pd, &sa, &scp);
	PWT_NONNULL(sq);
	PWT_OK(pw_ack_cm_event(ev));
	ev = EXPECT_EV(srv.ch, PW_CM_EVENT_ESTABLISHED, sq);
	PWT_ASSERT(ev->context == &srv && ev->status == 0);
	PWT_OK(pw_ack_cm_event(ev));
	ev = EXPECT_EV(cli.ch, PW_CM_EVENT_ESTABLISHED, cq);
	PWT_ASSERT(ev->context == &cli && ev->status == 0);
	PWT_EQ(ev->private_data_len, sizeof(sp));
	PWT_MEMEQ(ev->private_data, sp, sizeof(sp));
	PWT_OK(pw_ack_cm_event(ev));
	PWT_EQ(pw_qp_state(cq), PW_QPS_RTS);
	PWT_EQ(pw_qp_state(sq), PW_QPS_RTS);
	PWT_EQ(cq->peer_private_data_len, sizeof(sp));

	/* the server's SEND lands in the receive posted before ESTABLISHED */
	pwt_fill(sb.addr, 64, 5);
	PWT_OK(pwt_post_send1(sq, PW_WR_SEND, 2, sb.addr, 64, sb.lkey, 0, PW_SEND_SIGNALED));
	PWT_EXPECT_OK(srv.s.scq, 2, PW_WC_SEND, 64, sq->qp_num);
	PWT_EXPECT_RECV(cli.s.rcq, 77, PW_WC_RECV, 64, false, 0, cq->qp_num);
	PWT_PATTERN(cb.addr, 64, 5, 0);
	/* and a WRITE the other way */
	pwt_fill(cb.addr + 1024, 64, 6);
	PWT_OK(pwt_post_rdma(cq, PW_WR_RDMA_WRITE, 3, cb.addr + 1024, 64, cb.lkey,
			     pwt_va(sb.addr + 1024), sb.rkey, PW_SEND_SIGNALED));
	PWT_EXPECT_OK(cli.s.scq, 3, PW_WC_RDMA_WRITE, 64, cq->qp_num);
	PWT_PATTERN(sb.addr + 1024, 64, 6, 0);

	disconnect_both(&cli, cq, &srv, sq);
	PWT_ASSERT(next_ev(cli.ch, 100) == NULL);
	PWT_ASSERT(next_ev(srv.ch, 0) == NULL);
	PWT_ASSERT(pwt_poll_wc(cli.s.scq, &wc, 0) == 0);
	PWT_OK(pw_destroy_qp(cq));
	PWT_OK(pw_destroy_qp(sq));
	PWT_OK(pw_close_listener(l));
	pwt_buf_free(&sb);
	pwt_buf_free(&cb);
	cside_close(&srv);
	cside_close(&cli);
}

/* The server destroys its QP: the client gets DISCONNECTED, TIMEWAIT_EXIT. */
static void t_destroy(const char *arg)
{
	struct pw_qp_init_attr ca, sa;
	struct cside cli, srv;
	struct pw_listener *l;
	struct pw_cm_event *ev;
	struct pw_qp *cq, *sq;

	(void)arg;
	cside_open(&cli);
	cside_open(&srv);
	l = pw_listen_channel(srv.ch, "127.0.0.1", 0, NULL);
	PWT_NONNULL(l);
	ca = qattr(&cli.s);
	cq = pw_connect_async(cli.s.pd, &ca, "127.0.0.1", pw_listener_port(l), NULL, cli.ch);
	PWT_NONNULL(cq);
	ev = EXPECT_EV(srv.ch, PW_CM_EVENT_CONNECT_REQUEST, NULL);
	sa = qattr(&srv.s);
	sq = pw_accept_request(ev->request, srv.s.pd, &sa, NULL);
	PWT_NONNULL(sq);
	PWT_OK(pw_ack_cm_event(ev));
	PWT_OK(pw_ack_cm_event(EXPECT_EV(cli.ch, PW_CM_EVENT_ESTABLISHED, cq)));
	PWT_OK(pw_ack_cm_event(EXPECT_EV(srv.ch, PW_CM_EVENT_ESTABLISHED, sq)));
	/* an event left unacknowledged is dropped with its QP */
	PWT_OK(pw_destroy_qp(sq));
	ev = EXPECT_EV(cli.ch, PW_CM_EVENT_DISCONNECTED, cq);
	PWT_EQ(ev->status, 0);
	PWT_OK(pw_ack_cm_event(ev));
	PWT_OK(pw_ack_cm_event(EXPECT_EV(cli.ch, PW_CM_EVENT_TIMEWAIT_EXIT, cq)));
	PWT_ASSERT(next_ev(srv.ch, 100) == NULL);
	PWT_OK(pw_destroy_qp(cq));
	PWT_OK(pw_close_listener(l));
	cside_close(&srv);
	cside_close(&cli);
}

/*
 * 200 non-blocking connects in flight from one thread, one event loop
 * for both channels: all established, each verified with a WRITE read
 * back, then all disconnected.
 */
#define MANY 200

static void t_many(const char *arg)
{
	struct pw_context_attr big = { .max_half_open = 256 };
	struct pw_qp *cq[MANY], *sq[MANY];
	int est_c = 0, est_s = 0, disc = 0, req = 0;
	struct cside cli, srv;
	struct pw_listener *l;
	struct pwt_buf cb, sb;
	uint64_t t0, t_est;

	(void)arg;
	memset(cq, 0, sizeof(cq));
	memset(sq, 0, sizeof(sq));
	cside_open(&cli);
	pwt_side_open_attr(&srv.s, &big);
	srv.ch = pw_create_cm_channel(srv.s.ctx);
	PWT_NONNULL(srv.ch);
	PWT_EQ(fcntl(srv.ch->fd, F_SETFL, fcntl(srv.ch->fd, F_GETFL) | O_NONBLOCK), 0);
	pwt_buf_alloc(&cb, &cli.s, MANY * 16, PWT_ACCESS_ALL, PWT_PINNED);
	pwt_buf_alloc(&sb, &srv.s, MANY * 16, PWT_ACCESS_ALL, PWT_PINNED);
	l = pw_listen_channel(srv.ch, "127.0.0.1", 0, NULL);
	PWT_NONNULL(l);
	t0 = pwt_now_ms();
	for (int i = 0; i < MANY; i++) {
		struct pw_qp_init_attr ca = qattr(&cli.s);
		struct pw_conn_param cp = { .timeout_ms = 30000 };

		ca.cap.max_send_wr = 4;
		ca.cap.max_recv_wr = 4;
		ca.qp_context = (void *)(uintptr_t)(i + 1);
		cq[i] = pw_connect_async(cli.s.pd, &ca, "127.0.0.1", pw_listener_port(l),
					 &cp, cli.ch);
		PWT_NONNULL(cq[i]);
	}
	while (est_c < MANY || est_s < MANY) {
		struct pollfd pf[2] = { { .fd = cli.ch->fd, .events = POLLIN },
					{ .fd = srv.ch->fd, .events = POLLIN } };
		struct pw_cm_event *ev;

		PWT_ASSERTF(pwt_now_ms() - t0 < 40000, "%d / %d established after 40 s",
			    est_c, est_s);
		(void)poll(pf, 2, 1000);
		while (pw_get_cm_event(srv.ch, &ev) == 0) {
			if (ev->event == PW_CM_EVENT_CONNECT_REQUEST) {
				struct pw_qp_init_attr sa = qattr(&srv.s);

				sa.cap.max_send_wr = 4;
				sa.cap.max_recv_wr = 4;
				PWT_ASSERT(req < MANY);
				sa.qp_context = (void *)(uintptr_t)(req + 1);
				sq[req] = pw_accept_request(ev->request, srv.s.pd, &sa, NULL);
				PWT_NONNULL(sq[req]);
				req++;
			} else {
				PWT_ASSERTF(ev->event == PW_CM_EVENT_ESTABLISHED,
					    "server: %s %d", pw_cm_event_str(ev->event), ev->status);
				est_s++;
			}
			PWT_OK(pw_ack_cm_event(ev));
		}
		while (pw_get_cm_event(cli.ch, &ev) == 0) {
			PWT_ASSERTF(ev->event == PW_CM_EVENT_ESTABLISHED, "client: %s %d",
				    pw_cm_event_str(ev->event), ev->status);
			est_c++;
			PWT_OK(pw_ack_cm_event(ev));
		}
	}
	t_est = pwt_now_ms() - t0;
	/* every client QP writes its own 16 bytes, reads them back */
	for (int i = 0; i < MANY; i++) {
		pwt_fill_at(cb.addr + (size_t)i * 16, 8, 40, (uint64_t)i);
		PWT_OK(pwt_post_rdma(cq[i], PW_WR_RDMA_WRITE, (uint64_t)i, cb.addr + (size_t)i * 16,
				     8, cb.lkey, pwt_va(sb.addr + (size_t)i * 16), sb.rkey,
				     PW_SEND_SIGNALED));
	}
	for (int i = 0; i < MANY; i++) {
		struct pw_wc wc;

		PWT_WAIT_WC(cli.s.scq, &wc);
		PWT_ASSERTF(wc.status == PW_WC_SUCCESS, "WRITE %llu: %s",
			    (unsigned long long)wc.wr_id, pw_wc_status_str(wc.status));
	}
	for (int i = 0; i < MANY; i++)
		PWT_OK(pwt_post_rdma(cq[i], PW_WR_RDMA_READ, 1000 + (uint64_t)i,
				     cb.addr + (size_t)i * 16 + 8, 8, cb.lkey,
				     pwt_va(sb.addr + (size_t)i * 16), sb.rkey, PW_SEND_SIGNALED));
	for (int i = 0; i < MANY; i++) {
		struct pw_wc wc;

		PWT_WAIT_WC(cli.s.scq, &wc);
		PWT_EQ(wc.status, PW_WC_SUCCESS);
	}
	for (int i = 0; i < MANY; i++)
		PWT_MEMEQ(cb.addr + (size_t)i * 16 + 8, cb.addr + (size_t)i * 16, 8);
	printf("many: %d non-blocking connects from one thread, all established in %" PRIu64
	       " ms, each verified\n", MANY, t_est);
	for (int i = 0; i < MANY; i++)
		PWT_OK(pw_disconnect(cq[i]));
	t0 = pwt_now_ms();
	while (disc < 2 * MANY) {
		struct pw_cm_event *ev;

		PWT_ASSERTF(pwt_now_ms() - t0 < 20000, "%d of %d DISCONNECTED", disc, 2 * MANY);
		for (int k = 0; k < 2; k++)
			while (pw_get_cm_event(k ? srv.ch : cli.ch, &ev) == 0) {
				if (ev->event == PW_CM_EVENT_DISCONNECTED)
					disc++;
				else
					PWT_EQ(ev->event, PW_CM_EVENT_TIMEWAIT_EXIT);
				PWT_OK(pw_ack_cm_event(ev));
			}
		pwt_sleep_ms(1);
	}
	for (int i = 0; i < MANY; i++) {
		PWT_OK(pw_destroy_qp(cq[i]));
		PWT_OK(pw_destroy_qp(sq[i]));
	}
	PWT_OK(pw_close_listener(l));
	pwt_buf_free(&sb);
	pwt_buf_free(&cb);
	cside_close(&srv);
	cside_close(&cli);
}

/* pw_query_qp: both ends agree on addresses, state, features. */
static void t_query(const char *arg)
{
	struct pw_qp_attr a, b;
	struct pwt_pair_opts o;
	struct pwt_pair p;

	(void)arg;
	memset(&o, 0, sizeof(o));
	o.a_attr.max_rd_atomic = 8;
	o.b_attr.max_dest_rd_atomic = 4;
	o.b_attr.fault_policy = PW_FAULT_DROP;
	pwt_pair_open(&p, &o);
	PWT_OK(pw_query_qp(p.a.qp, &a, sizeof(a)));
	PWT_OK(pw_query_qp(p.b.qp, &b, sizeof(b)));
	PWT_EQ(a.qp_state, PW_QPS_RTS);
	PWT_EQ(a.cause, PW_QP_CAUSE_NONE);
	PWT_EQ(a.qp_num, p.a.qp->qp_num);
	PWT_EQ(a.dest_qp_num, p.b.qp->qp_num);
	PWT_EQ(b.dest_qp_num, p.a.qp->qp_num);
	PWT_EQ(a.max_rd_atomic, 4);	/* lowered to the peer's max_dest_rd_atomic */
	PWT_EQ(b.fault_policy, PW_FAULT_DROP);
	PWT_EQ(a.fault_policy, PW_FAULT_STALL);
	PWT_EQ(a.features, PW_QP_FEATURE_FAULT_NAK | PW_QP_FEATURE_NOTIFY | PW_QP_FEATURE_LINK);
	PWT_EQ(a.cap.max_send_wr, 128);
	PWT_EQ(a.peer_timeout_ms, 30000);
	PWT_ASSERT(is_loopback(&a.local_addr) && is_loopback(&a.peer_addr));
	PWT_EQ(addr_port(&a.peer_addr), p.port);
	PWT_EQ(addr_port(&b.local_addr), p.port);
	PWT_EQ(addr_port(&a.local_addr), addr_port(&b.peer_addr));
	/* a short caller's struct: only its part is written */
	memset(&b, 0xee, sizeof(b));
	PWT_OK(pw_query_qp(p.a.qp, &b, offsetof(struct pw_qp_attr, cause)));
	PWT_EQ(b.qp_state, PW_QPS_RTS);
	PWT_EQ(*(uint8_t *)&b.cause, 0xee);
	PWT_EQ(pw_query_qp(NULL, &a, sizeof(a)), -EINVAL);

	PWT_OK(pw_disconnect(p.a.qp));
	PWT_WAIT_STATE(p.b.qp, PW_QPS_ERR);
	PWT_OK(pw_query_qp(p.a.qp, &a, sizeof(a)));
	PWT_OK(pw_query_qp(p.b.qp, &b, sizeof(b)));
	PWT_EQ(a.qp_state, PW_QPS_ERR);
	PWT_EQ(a.cause, PW_QP_CAUSE_NONE);
	PWT_EQ(b.cause, PW_QP_CAUSE_PEER_DISCONNECTED);
	PWT_EQ(addr_port(&b.local_addr), p.port);	/* kept after the end */
	pwt_pair_close(&p);
}

/*
 * pw_accept never returns a QP whose client gave up: a client that offers
 * LINK and leaves before its RTU is passed over; the next one is taken.
 * A raw client that sends its RTU is accepted.
 */
static void t_accept_gone(const char *arg)
{
	struct pw_conn_param wait = { .timeout_ms = 1500 };
	struct pw_wire_conn c;
	struct pw_qp_init_attr at;
	struct pwt_acceptor acc;
	struct pwt_side b, a;
	struct pw_listener *l;
	struct pw_qp *qp;
	struct pw_hdr h;
	uint8_t buf[PW_WIRE_HDR_LEN + PW_WIRE_CONN_FIXED_LEN];
	int fd, n, rc;

	(void)arg;
	pwt_side_open(&b);
	pwt_side_open(&a);
	l = pw_listen(b.ctx, "127.0.0.1", 0);
	PWT_NONNULL(l);
	memset(&c, 0, sizeof(c));
	c.min_version = c.max_version = PW_WIRE_VERSION;
	c.features = PW_WIRE_FEAT_LINK;
	c.qpn = 0x99;
	n = pw_wire_encode_conn(&c, buf + PW_WIRE_HDR_LEN, sizeof(buf) - PW_WIRE_HDR_LEN);
	h = pwr_hdr(PW_OP_CONNECT_REQ, 321);
	h.payload_len = (uint32_t)n;
	pw_wire_encode_hdr(&h, buf);

	/* asks, then leaves without its RTU */
	fd = pwt_tcp_connect(pw_listener_port(l));
	pwt_write_all(fd, buf, sizeof(buf));
	pwt_sleep_ms(50);
	close(fd);
	at = qattr(&b);
	qp = pw_accept(l, b.pd, &at, &wait);
	PWT_ASSERT(qp == NULL);
	PWT_EQ(errno, ETIMEDOUT);

	/* asks, reads the answer, confirms: accepted */
	fd = pwt_tcp_connect(pw_listener_port(l));
	pwt_write_all(fd, buf, sizeof(buf));
	memset(&acc, 0, sizeof(acc));
	acc.l = l;
	acc.pd = b.pd;
	acc.attr = qattr(&b);
	acc.param.timeout_ms = 5000;
	pwt_accept_start(&acc);
	rc = pwr_read_msg(fd, &h, NULL, 0, NULL, PWT_TIMEOUT_MS);
	PWT_ASSERTF(rc == 1 && h.opcode == PW_OP_CONNECT_REP, "no CONNECT_REP: %d", rc);
	pwt_sleep_ms(100);
	PWT_ASSERTF(acc.qp == NULL, "accepted before the RTU");
	h = pwr_hdr(PW_OP_CONNECT_RTU, 0);
	pwr_send_hdr(fd, &h);
	qp = pwt_accept_join(&acc);
	PWT_NONNULL(qp);
	PWT_EQ(qp->dest_qp_num, 0x99);
	PWT_EQ(pw_qp_state(qp), PW_QPS_RTS);
	PWT_OK(pw_destroy_qp(qp));
	close(fd);
	PWT_OK(pw_close_listener(l));
	pwt_side_close(&a);
	pwt_side_close(&b);
}

/* A thread that polls a CQ of its own without pause, as a busy poller does. */
struct spinner {
	struct pw_cq *cq;
	atomic_bool stop;
	unsigned long polls;
	pthread_t thread;
};

static void *spin_main(void *arg)
{
	struct spinner *sp = arg;
	struct pw_wc wc;

	while (!atomic_load_explicit(&sp->stop, memory_order_acquire)) {
		PWT_ASSERT(pw_poll_cq(sp->cq, 1, &wc) >= 0);
		sp->polls++;
	}
	return NULL;
}

static void spin_start(struct spinner *sp, struct pw_context *ctx)
{
	memset(sp, 0, sizeof(*sp));
	sp->cq = pw_create_cq(ctx, 16, NULL, NULL, 0);
	PWT_NONNULL(sp->cq);
	atomic_init(&sp->stop, false);
	PWT_EQ(pthread_create(&sp->thread, NULL, spin_main, sp), 0);
}

static void spin_stop(struct spinner *sp)
{
	atomic_store_explicit(&sp->stop, true, memory_order_release);
	PWT_EQ(pthread_join(sp->thread, NULL), 0);
	PWT_ASSERT(sp->polls > 0);
	PWT_OK(pw_destroy_cq(sp->cq));
}

/*
 * Busy-polling contexts keep connecting: while a thread on each side polls
 * without pause (so the engine is always driven by pw_poll_cq, never by
 * the progress thread), a connection request still reaches the listener,
 * the handshake completes on both sides, and a SEND crosses, byte for byte.
 * Three connections in a row, each on a listener that has been polled
 * meanwhile, as a libfabric server under ofi_rxm sees them.
 */
static void t_busy_poll(const char *arg)
{
	struct pw_context_attr busy = { .flags = PW_CONTEXT_BUSY_POLL };
	struct pw_qp_init_attr ca, sa;
	struct spinner cspin, sspin;
	struct cside cli, srv;
	struct pw_listener *l;
	struct pw_cm_event *ev;
	struct pwt_buf cb, sb;

	(void)arg;
	cside_open_attr(&cli, &busy);
	cside_open_attr(&srv, &busy);
	pwt_buf_alloc(&cb, &cli.s, 4096, PWT_ACCESS_ALL, PWT_PINNED);
	pwt_buf_alloc(&sb, &srv.s, 4096, PWT_ACCESS_ALL, PWT_PINNED);
	l = pw_listen_channel(srv.ch, "127.0.0.1", 0, NULL);
	PWT_NONNULL(l);
	spin_start(&cspin, cli.s.ctx);
	spin_start(&sspin, srv.s.ctx);
	for (unsigned int i = 0; i < 3; i++) {
		struct pw_qp *cq, *sq;

		/* the listener sits polled, with nothing to do, for a while */
		pwt_sleep_ms(20);
		ca = qattr(&cli.s);
		cq = pw_connect_async(cli.s.pd, &ca, "127.0.0.1", pw_listener_port(l),
				      NULL, cli.ch);
		PWT_NONNULL(cq);
		ev = EXPECT_EV(srv.ch, PW_CM_EVENT_CONNECT_REQUEST, NULL);
		sa = qattr(&srv.s);
		sq = pw_accept_request(ev->request, srv.s.pd, &sa, NULL);
		PWT_NONNULL(sq);
		PWT_OK(pw_ack_cm_event(ev));
		ev = EXPECT_EV(srv.ch, PW_CM_EVENT_ESTABLISHED, sq);
		PWT_EQ(ev->status, 0);
		PWT_OK(pw_ack_cm_event(ev));
		ev = EXPECT_EV(cli.ch, PW_CM_EVENT_ESTABLISHED, cq);
		PWT_EQ(ev->status, 0);
		PWT_OK(pw_ack_cm_event(ev));

		PWT_OK(pwt_post_recv1(sq, 10 + i, sb.addr, 4096, sb.lkey));
		pwt_fill(cb.addr, 256, 40 + i);
		PWT_OK(pwt_post_send1(cq, PW_WR_SEND, 20 + i, cb.addr, 256, cb.lkey, 0,
				      PW_SEND_SIGNALED));
		PWT_EXPECT_OK(cli.s.scq, 20 + i, PW_WC_SEND, 256, cq->qp_num);
		PWT_EXPECT_RECV(srv.s.rcq, 10 + i, PW_WC_RECV, 256, false, 0, sq->qp_num);
		PWT_PATTERN(sb.addr, 256, 40 + i, 0);

		disconnect_both(&cli, cq, &srv, sq);
		PWT_OK(pw_destroy_qp(cq));
		PWT_OK(pw_destroy_qp(sq));
	}
	spin_stop(&cspin);
	spin_stop(&sspin);
	PWT_OK(pw_close_listener(l));
	pwt_buf_free(&sb);
	pwt_buf_free(&cb);
	cside_close(&srv);
	cside_close(&cli);
}

static const struct pwt_case cases[] = {
	{ "reject", t_reject },
	{ "unreachable", t_unreachable },
	{ "lifecycle", t_lifecycle },
	{ "destroy", t_destroy },
	{ "many", t_many },
	{ "query", t_query },
	{ "accept_gone", t_accept_gone },
	{ "busy_poll", t_busy_poll },
};

int main(int argc, char **argv)
{
	return pwt_main(argc, argv, cases, PWT_ARRAY_SIZE(cases));
}
