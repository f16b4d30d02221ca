/* SPDX-License-Identifier: MIT */
/*
 * Connection manager: private data both ways, QP attributes written back,
 * refused / rejected / timed-out / wrong-protocol connections. The odd
 * servers are raw TCP sockets speaking (or not) wire protocol v1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "pwraw.h"

static void t_private_data(const char *arg)
{
	uint8_t pa[PW_MAX_PRIVATE_DATA], pb[PW_MAX_PRIVATE_DATA];
	struct pwt_pair_opts o;
	struct pwt_pair p;
	struct pw_qp *qa, *qb;

	(void)arg;
	pwt_fill(pa, sizeof(pa), 1);
	pwt_fill(pb, sizeof(pb), 2);
	memset(&o, 0, sizeof(o));
	o.a_param.private_data = pa;
	o.a_param.private_data_len = PW_MAX_PRIVATE_DATA;
	o.b_param.private_data = pb;
	o.b_param.private_data_len = PW_MAX_PRIVATE_DATA;
	pwt_pair_open(&p, &o);
	PWT_EQ(p.b.qp->peer_private_data_len, PW_MAX_PRIVATE_DATA);
	PWT_MEMEQ(p.b.qp->peer_private_data, pa, PW_MAX_PRIVATE_DATA);
	PWT_EQ(p.a.qp->peer_private_data_len, PW_MAX_PRIVATE_DATA);
	PWT_MEMEQ(p.a.qp->peer_private_data, pb, PW_MAX_PRIVATE_DATA);
	PWT_EQ(p.a.qp->dest_qp_num, p.b.qp->qp_num);
	PWT_EQ(p.b.qp->dest_qp_num, p.a.qp->qp_num);

	/* A second connection without private data: length 0. */
	pwt_connect_qp(&p.a, &p.b, p.l, NULL, NULL, &qa, &qb);
	PWT_EQ(qa->peer_private_data_len, 0);
	PWT_EQ(qb->peer_private_data_len, 0);
	PWT_OK(pw_destroy_qp(qa));
	PWT_OK(pw_destroy_qp(qb));
	pwt_pair_close(&p);
}

/* 257 bytes of private data: EINVAL on both sides, before any waiting. */
static void t_private_data_257(const char *arg)
{
	uint8_t big[PW_MAX_PRIVATE_DATA + 1];
	struct pw_conn_param param = { .private_data = big, .private_data_len = sizeof(big),
				       .timeout_ms = 2000 };
	struct pw_qp_init_attr attr;
	struct pwt_pair p;
	struct pw_qp *qp;
	uint64_t t0;

	(void)arg;
	memset(big, 7, sizeof(big));
	pwt_pair_open(&p, NULL);
	memset(&attr, 0, sizeof(attr));
	attr.send_cq = p.a.scq;
	attr.recv_cq = p.a.rcq;
	errno = 0;
	qp = pw_connect(p.a.pd, &attr, "127.0.0.1", p.port, &param);
	PWT_ASSERTF(qp == NULL && errno == EINVAL, "pw_connect with 257 bytes: %p errno %d",
		    (void *)qp, errno);

	attr.send_cq = p.b.scq;
	attr.recv_cq = p.b.rcq;
	t0 = pwt_now_ms();
	errno = 0;
	qp = pw_accept(p.l, p.b.pd, &attr, &param);
	PWT_ASSERTF(qp == NULL && errno == EINVAL, "pw_accept with 257 bytes: %p errno %d",
		    (void *)qp, errno);
	PWT_ASSERT(pwt_now_ms() - t0 < 1500);

	/* The listener still works. */
	{
		struct pw_qp *qa, *qb;

		pwt_connect_qp(&p.a, &p.b, p.l, NULL, NULL, &qa, &qb);
		PWT_OK(pw_destroy_qp(qa));
		PWT_OK(pw_destroy_qp(qb));
	}
	pwt_pair_close(&p);
}

static void t_connrefused(const char *arg)
{
	struct pw_conn_param param = { .private_data = NULL, .private_data_len = 0,
				       .timeout_ms = 5000 };
	struct pw_qp_init_attr attr;
	struct pwt_side s;
	struct pw_qp *qp;
	uint64_t t0;

	(void)arg;
	pwt_side_open(&s);
	memset(&attr, 0, sizeof(attr));
	attr.send_cq = s.scq;
	attr.recv_cq = s.rcq;
	t0 = pwt_now_ms();
	errno = 0;
	qp = pw_connect(s.pd, &attr, "127.0.0.1", pwt_unused_port(), &param);
	PWT_ASSERTF(qp == NULL && errno == ECONNREFUSED, "pw_connect: %p errno %d (%s)",
		    (void *)qp, errno, strerror(errno));
	PWT_ASSERT(pwt_now_ms() - t0 < 4000);
	pwt_side_close(&s);
}

static void t_accept_timeout(const char *arg)
{
	struct pw_conn_param param = { .private_data = NULL, .private_data_len = 0,
				       .timeout_ms = 300 };
	struct pw_qp_init_attr attr;
	struct pw_listener *l;
	struct pwt_side s;
	struct pw_qp *qp;
	uint64_t t0, dt;

	(void)arg;
	pwt_side_open(&s);
	l = pw_listen(s.ctx, "127.0.0.1", 0);
	PWT_NONNULL(l);
	memset(&attr, 0, sizeof(attr));
	attr.send_cq = s.scq;
	attr.recv_cq = s.rcq;
	t0 = pwt_now_ms();
	errno = 0;
	qp = pw_accept(l, s.pd, &attr, &param);
	dt = pwt_now_ms() - t0;
	PWT_ASSERTF(qp == NULL && errno == ETIMEDOUT, "pw_accept: %p errno %d (%s)",
		    (void *)qp, errno, strerror(errno));
	PWT_ASSERTF(dt >= 250 && dt < 5000, "300 ms accept timeout took %" PRIu64 " ms", dt);
	PWT_OK(pw_close_listener(l));
	pwt_side_close(&s);
}

/* Defaults are written back, the QP fields are filled, both are RTS. */
static void t_qp_attrs(const char *arg)
{
	int marker;
	struct pwt_pair_opts o;
	struct pwt_pair p;

	(void)arg;
	memset(&o, 0, sizeof(o));
	o.a_attr.qp_context = &marker;
	pwt_pair_open(&p, &o);
	PWT_EQ(p.a.attr.cap.max_send_wr, 128);
	PWT_EQ(p.a.attr.cap.max_recv_wr, 128);
	PWT_EQ(p.a.attr.cap.max_send_sge, 4);
	PWT_EQ(p.a.attr.cap.max_recv_sge, 4);
	PWT_EQ(p.a.attr.cap.max_inline_data, 64);
	PWT_EQ(p.b.attr.cap.max_send_wr, 128);
	PWT_EQ(p.b.attr.cap.max_inline_data, 64);
	PWT_ASSERT(p.a.qp->qp_context == &marker);
	PWT_ASSERT(p.a.qp->pd == p.a.pd);
	PWT_ASSERT(p.a.qp->send_cq == p.a.scq && p.a.qp->recv_cq == p.a.rcq);
	PWT_ASSERT(p.b.qp->pd == p.b.pd);
	PWT_ASSERT(p.a.qp->context == p.a.ctx && p.b.qp->context == p.b.ctx);
	PWT_EQ(pw_qp_state(p.a.qp), PW_QPS_RTS);
	PWT_EQ(pw_qp_state(p.b.qp), PW_QPS_RTS);
	pwt_pair_close(&p);
}

/* The listener fd becomes readable when a connection waits. */
static void t_listener_fd(const char *arg)
{
	struct pwt_side s;
	struct pw_listener *l;
	struct pw_qp *qp;
	struct pollfd pfd;
	int fd;

	(void)arg;
	pwt_side_open(&s);
	l = pw_listen(s.ctx, "127.0.0.1", 0);
	PWT_NONNULL(l);
	pfd.fd = pw_listener_fd(l);
	pfd.events = POLLIN;
	PWT_ASSERT(pfd.fd >= 0);
	PWT_EQ(poll(&pfd, 1, 100), 0);
	fd = pwr_open_accepted(l, &s, &qp, 500, 0x1234, 0);
	PWT_OK(pw_destroy_qp(qp));
	close(fd);

	/* Readable before pw_accept is called. */
	fd = pwt_tcp_connect(pw_listener_port(l));
	pwr_send_connect_req(fd, 600, 0x1235, NULL, 0);
	PWT_EQ(poll(&pfd, 1, PWT_TIMEOUT_MS), 1);
	PWT_ASSERT(pfd.revents & POLLIN);
	close(fd);
	PWT_OK(pw_close_listener(l));
	pwt_side_close(&s);
}

/* Twenty connect/accept/destroy rounds on one listener. */
static void t_reconnect(const char *arg)
{
	struct pwt_pair p;
	struct pwt_img src, dst;

	(void)arg;
	pwt_pair_open(&p, NULL);
	pwt_img_alloc_src(&src, &p.a, 4096, PWT_PINNED, 3);
	pwt_img_alloc(&dst, &p.b, 20 * 100, PWT_PINNED, 4);
	for (unsigned int i = 0; i < 20; i++) {
		struct pw_qp *qa, *qb;

		pwt_connect_qp(&p.a, &p.b, p.l, NULL, NULL, &qa, &qb);
		PWT_OK(pwt_post_rdma(qa, PW_WR_RDMA_WRITE, i, src.buf.addr + i * 100,
				     100, src.buf.lkey, pwt_va(dst.buf.addr + i * 100),
				     dst.buf.rkey, PW_SEND_SIGNALED));
		PWT_EXPECT_OK(p.a.scq, i, PW_WC_RDMA_WRITE, 100, qa->qp_num);
		PWT_OK(pw_destroy_qp(qa));
		PWT_OK(pw_destroy_qp(qb));
	}
	memcpy(dst.want, src.want, 2000);
	PWT_IMG_CHECK(&dst);
	pwt_img_free(&src);
	pwt_img_free(&dst);
	pwt_pair_close(&p);
}

/* ------------------------------------------------------------------ */
/* Odd servers                                                          */
/* ------------------------------------------------------------------ */

enum fake_kind {
	FAKE_REJECT,	/* CONNECT_REJ, reason ECONNREFUSED */
	FAKE_SILENT,	/* reads the request, never answers */
	FAKE_GARBAGE,	/* answers 48 bytes that are not protocol v1 */
	FAKE_VERSION,	/* CONNECT_REP speaking only versions 2..3 */
};

struct fake_server {
	enum fake_kind kind;
	int lfd;
	uint16_t port;
	pthread_t th;
	/* What the client sent, checked by the test. */
	int got_req;
	struct pw_hdr req_hdr;
	struct pw_wire_conn req;
};

static void *fake_thread(void *arg)
{
	struct fake_server *f = arg;
	uint8_t payload[PW_WIRE_CONN_FIXED_LEN + PW_WIRE_MAX_PDATA];
	struct pollfd pfd = { .fd = f->lfd, .events = POLLIN };
	struct pw_wire_conn c;
	size_t plen = 0;
	int fd;

	if (poll(&pfd, 1, PWT_TIMEOUT_MS) != 1)
		return NULL;
	fd = accept(f->lfd, NULL, NULL);
	if (fd < 0)
		return NULL;
	if (pwr_read_msg(fd, &f->req_hdr, payload, sizeof(payload), &plen,
			 PWT_TIMEOUT_MS) == 1 &&
	    f->req_hdr.opcode == PW_OP_CONNECT_REQ &&
	    pw_wire_decode_conn(payload, plen, &f->req) == 0)
		f->got_req = 1;

	memset(&c, 0, sizeof(c));
	c.min_version = 1;
	c.max_version = 1;
	c.qpn = 0x999;
	c.max_rd_atomic = 16;
	c.max_dest_rd_atomic = 16;
	switch (f->kind) {
	case FAKE_REJECT:
		c.reason = ECONNREFUSED;
		pwr_send_conn_msg(fd, PW_OP_CONNECT_REJ, f->req_hdr.psn, &c);
		break;
	case FAKE_SILENT:
		break;
	case FAKE_GARBAGE: {
		char junk[PW_WIRE_HDR_LEN];

		memset(junk, ' ', sizeof(junk));
		memcpy(junk, "HTTP/1.0 400 Bad Request\r\n", 26);
		pwt_write_all(fd, junk, sizeof(junk));
		break;
	}
	case FAKE_VERSION:
		c.min_version = 2;
		c.max_version = 3;
		pwr_send_conn_msg(fd, PW_OP_CONNECT_REP, f->req_hdr.psn, &c);
		break;
	}
	/* Hold the connection until the client gives up and closes. */
	{
		uint8_t sink[256];

		while (pwt_read_full(fd, sink, sizeof(sink), PWT_TIMEOUT_MS) ==
		       (ssize_t)sizeof(sink))
			;
	}
	close(fd);
	return NULL;
}

/* pw_connect to a fake server of @kind; returns errno of the failure. */
static int connect_fake(enum fake_kind kind, int timeout_ms, uint64_t *ms)
{
	uint8_t pdata[100];
	struct pw_conn_param param = { .private_data = pdata, .private_data_len = sizeof(pdata),
				       .timeout_ms = timeout_ms };
	struct pw_qp_init_attr attr;
	struct fake_server f;
	struct pwt_side s;
	struct pw_qp *qp;
	uint64_t t0;
	int err;

	memset(&f, 0, sizeof(f));
	f.kind = kind;
	f.lfd = pwt_tcp_listen(&f.port);
	PWT_EQ(pthread_create(&f.th, NULL, fake_thread, &f), 0);

	pwt_fill(pdata, sizeof(pdata), 5);
	pwt_side_open(&s);
	memset(&attr, 0, sizeof(attr));
	attr.send_cq = s.scq;
	attr.recv_cq = s.rcq;
	t0 = pwt_now_ms();
	errno = 0;
	qp = pw_connect(s.pd, &attr, "127.0.0.1", f.port, &param);
	err = errno;
	*ms = pwt_now_ms() - t0;
	PWT_ASSERTF(qp == NULL, "pw_connect to a fake server (%d) succeeded", (int)kind);
	pwt_side_close(&s);
	PWT_EQ(pthread_join(f.th, NULL), 0);
	close(f.lfd);

	/* The request on the wire carried what the API was given. */
	PWT_ASSERTF(f.got_req, "fake server got no valid CONNECT_REQ");
	PWT_ASSERT(f.req.min_version <= PW_WIRE_VERSION &&
		   f.req.max_version >= PW_WIRE_VERSION);
	PWT_EQ(f.req.pdata_len, sizeof(pdata));
	PWT_MEMEQ(f.req.pdata, pdata, sizeof(pdata));
	return err;
}

static void t_reject(const char *arg)
{
	uint64_t ms;
	int err = connect_fake(FAKE_REJECT, 5000, &ms);

	(void)arg;
	PWT_ASSERTF(err == ECONNREFUSED, "rejected: errno %d (%s)", err, strerror(err));
	PWT_ASSERT(ms < 4000);
}

static void t_connect_timeout(const char *arg)
{
	uint64_t ms;
	int err = connect_fake(FAKE_SILENT, 300, &ms);

	(void)arg;
	PWT_ASSERTF(err == ETIMEDOUT, "silent server: errno %d (%s)", err, strerror(err));
	PWT_ASSERTF(ms >= 250 && ms < 5000, "300 ms handshake timeout took %" PRIu64 " ms", ms);
}

static void t_connect_garbage(const char *arg)
{
	uint64_t ms;
	int err = connect_fake(FAKE_GARBAGE, 5000, &ms);

	(void)arg;
	PWT_ASSERTF(err == EPROTO, "garbage answer: errno %d (%s)", err, strerror(err));
	PWT_ASSERT(ms < 4000);
}

static void t_connect_version(const char *arg)
{
	uint64_t ms;
	int err = connect_fake(FAKE_VERSION, 5000, &ms);

	(void)arg;
	PWT_ASSERTF(err == EPROTO, "no common version: errno %d (%s)", err, strerror(err));
	PWT_ASSERT(ms < 4000);
}

static struct sockaddr_in in4(const char *ip, uint16_t port)
{
	struct sockaddr_in a;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons(port);
	PWT_EQ(inet_pton(AF_INET, ip, &a.sin_addr), 1);
	return a;
}

/* pw_connect with @src (NULL: none): the QP, or NULL with errno kept. */
static struct pw_qp *connect_from(struct pwt_side *s, uint16_t port,
				  const struct sockaddr *src)
{
	struct pw_conn_param cp = { .timeout_ms = 5000, .src_addr = src };
	struct pw_qp_init_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.send_cq = s->scq;
	attr.recv_cq = s->rcq;
	errno = 0;
	return pw_connect(s->pd, &attr, "127.0.0.1", port, &cp);
}

/* Connect from @src to @l on @b's side; both QPs, asserting success. */
static void connect_pair_from(struct pwt_side *a, struct pwt_side *b,
			      struct pw_listener *l, const struct sockaddr_in *src,
			      struct pw_qp **qp, struct pw_qp **sq)
{
	struct pwt_acceptor acc;

	memset(&acc, 0, sizeof(acc));
	acc.l = l;
	acc.pd = b->pd;
	acc.attr.send_cq = b->scq;
	acc.attr.recv_cq = b->rcq;
	acc.param.timeout_ms = 5000;
	pwt_accept_start(&acc);
	*qp = connect_from(a, pw_listener_port(l), (const struct sockaddr *)src);
	PWT_ASSERTF(*qp, "pw_connect from port %u: %s", ntohs(src->sin_port),
		    pw_last_error());
	*sq = pwt_accept_join(&acc);
	PWT_NONNULL(*sq);
}

/*
 * A source address: the connection comes from exactly that address and
 * port (both ends' pw_query_qp say so); an address not of this host, a
 * port taken, a family with no address of the host's, a family that is
 * not IP, and a source on the accepting side are each refused with their
 * own errno.
 */
static void t_src_addr(const char *arg)
{
	struct pw_conn_param bad_accept = { .timeout_ms = 100 };
	struct sockaddr_in src, foreign;
	struct sockaddr_in6 six;
	struct sockaddr_un unx;
	struct pw_qp_attr qa;
	struct pw_listener *l;
	struct pwt_side a, b;
	struct pw_qp *qp, *sq;
	uint16_t sport;
	int held;

	(void)arg;
	pwt_side_open(&a);
	pwt_side_open(&b);
	l = pw_listen(b.ctx, "127.0.0.1", 0);
	PWT_NONNULL(l);

	/* from 127.0.0.1 and a port of our choosing */
	sport = pwt_unused_port();
	src = in4("127.0.0.1", sport);
	connect_pair_from(&a, &b, l, &src, &qp, &sq);
	PWT_OK(pw_query_qp(qp, &qa, sizeof(qa)));
	PWT_EQ(qa.local_addr.ss_family, AF_INET);
	PWT_EQ(ntohs(((struct sockaddr_in *)&qa.local_addr)->sin_port), sport);
	PWT_OK(pw_query_qp(sq, &qa, sizeof(qa)));
	PWT_EQ(ntohs(((struct sockaddr_in *)&qa.peer_addr)->sin_port), sport);
	PWT_EQ(((struct sockaddr_in *)&qa.peer_addr)->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
	PWT_OK(pw_destroy_qp(qp));
	PWT_OK(pw_destroy_qp(sq));

	/* the wildcard address and port 0: the kernel chooses, as with NULL */
	src = in4("0.0.0.0", 0);
	connect_pair_from(&a, &b, l, &src, &qp, &sq);
	PWT_OK(pw_destroy_qp(qp));
	PWT_OK(pw_destroy_qp(sq));

	/* a port another socket holds */
	held = socket(AF_INET, SOCK_STREAM, 0);
	PWT_ASSERT(held >= 0);
	src = in4("127.0.0.1", 0);
	PWT_EQ(bind(held, (struct sockaddr *)&src, sizeof(src)), 0);
	PWT_EQ(listen(held, 1), 0);
	{
		socklen_t sl = sizeof(src);

		PWT_EQ(getsockname(held, (struct sockaddr *)&src, &sl), 0);
	}
	qp = connect_from(&a, pw_listener_port(l), (const struct sockaddr *)&src);
	PWT_ASSERTF(qp == NULL && errno == EADDRINUSE, "port held: %p errno %d (%s)",
		    (void *)qp, errno, strerror(errno));
	PWT_ASSERT(strstr(pw_last_error(), "cannot connect from") != NULL);
	close(held);

	/* an address that is not this host's (TEST-NET-3) */
	foreign = in4("203.0.113.7", 0);
	qp = connect_from(&a, pw_listener_port(l), (const struct sockaddr *)&foreign);
	PWT_ASSERTF(qp == NULL && errno == EADDRNOTAVAIL, "foreign: %p errno %d (%s)",
		    (void *)qp, errno, strerror(errno));

	/* IPv6 source, IPv4-only destination: nothing of that family to try */
	memset(&six, 0, sizeof(six));
	six.sin6_family = AF_INET6;
	six.sin6_addr = in6addr_loopback;
	qp = connect_from(&a, pw_listener_port(l), (const struct sockaddr *)&six);
	PWT_ASSERTF(qp == NULL && errno == EHOSTUNREACH, "v6 source: %p errno %d (%s)",
		    (void *)qp, errno, strerror(errno));

	/* not IP at all */
	memset(&unx, 0, sizeof(unx));
	unx.sun_family = AF_UNIX;
	qp = connect_from(&a, pw_listener_port(l), (const struct sockaddr *)&unx);
	PWT_ASSERTF(qp == NULL && errno == EINVAL, "AF_UNIX source: %p errno %d (%s)",
		    (void *)qp, errno, strerror(errno));

	/* the accepting side names no source */
	src = in4("127.0.0.1", 0);
	bad_accept.src_addr = (const struct sockaddr *)&src;
	{
		struct pw_qp_init_attr attr;

		memset(&attr, 0, sizeof(attr));
		attr.send_cq = b.scq;
		attr.recv_cq = b.rcq;
		errno = 0;
		qp = pw_accept(l, b.pd, &attr, &bad_accept);
		PWT_ASSERTF(qp == NULL && errno == EINVAL, "pw_accept with a source: %p errno %d",
			    (void *)qp, errno);
	}
	PWT_OK(pw_close_listener(l));
	pwt_side_close(&b);
	pwt_side_close(&a);
}

static const struct pwt_case cases[] = {
	{ "private_data", t_private_data },
	{ "private_data_257", t_private_data_257 },
	{ "connrefused", t_connrefused },
	{ "accept_timeout", t_accept_timeout },
	{ "qp_attrs", t_qp_attrs },
	{ "listener_fd", t_listener_fd },
	{ "reconnect", t_reconnect },
	{ "reject", t_reject },
	{ "connect_timeout", t_connect_timeout },
	{ "connect_garbage", t_connect_garbage },
	{ "connect_version", t_connect_version },
	{ "src_addr", t_src_addr },
};

int main(int argc, char **argv)
{
	return pwt_main(argc, argv, cases, PWT_ARRAY_SIZE(cases));
}
