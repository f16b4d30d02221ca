/* SPDX-License-Identifier: MIT */
/*
 * Resource limits (docs/limits.md): what a peer, honest or not,
 * can make a target hold. Each case drives the limit past its edge and
 * checks the outcome the document promises: a bounded amount of memory
 * or fds, an exact wire answer or completion status, a counter, and that
 * other clients still get served. No case asserts a time.
 */
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pwraw.h"
#include "pwtest.h"

#define RAW_PSN		5000u
#define RAW_QPN		0x5151u

/* Open fds of this process (the directory's own fd not counted). */
static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	PWT_NONNULL(d);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1;
}

/* A WRITE a->b and a READ back over a fresh QP: the target still serves. */
static void check_serves(struct pwt_side *a, struct pwt_side *b,
			 struct pw_qp *qa, uint32_t seed)
{
	struct pwt_buf src, dst, back;
	struct pw_wc wc;

	pwt_buf_alloc(&src, a, 8192, PWT_ACCESS_ALL, PWT_PINNED);
	pwt_buf_alloc(&back, a, 8192, PWT_ACCESS_ALL, PWT_PINNED);
	pwt_buf_alloc(&dst, b, 8192, PWT_ACCESS_ALL, PWT_PINNED);
	pwt_fill(src.addr, 8192, seed);
	PWT_OK(pwt_post_rdma(qa, PW_WR_RDMA_WRITE, 1, src.addr, 8192, src.lkey,
			     pwt_va(dst.addr), dst.rkey, PW_SEND_SIGNALED));
	PWT_EXPECT_OK(a->scq, 1, PW_WC_RDMA_WRITE, 8192, qa->qp_num);
	PWT_OK(pwt_post_rdma(qa, PW_WR_RDMA_READ, 2, back.addr, 8192, back.lkey,
			     pwt_va(dst.addr), dst.rkey, PW_SEND_SIGNALED));
	wc = PWT_EXPECT_OK(a->scq, 2, PW_WC_RDMA_READ, 8192, qa->qp_num);
	(void)wc;
	PWT_PATTERN(back.addr, 8192, seed, 0);
	PWT_PATTERN(dst.addr, 8192, seed, 0);
	pwt_buf_free(&src);
	pwt_buf_free(&back);
	pwt_buf_free(&dst);
}

/* ------------------------------------------------------------------ */
/* Half-open connection flood at a listener                            */
/* ------------------------------------------------------------------ */

#define FLOOD_CONNS	300
#define FLOOD_MAX_HO	16

struct connector {
	uint16_t port;
	int nclients;
	int ok;
	pthread_t thread;
};

/* Real clients, one after another, each live before the next. */
static void *connector_main(void *arg)
{
	struct connector *c = arg;

	for (int i = 0; i < c->nclients; i++) {
		struct pw_conn_param prm = { .timeout_ms = 8000 };
		struct pwt_side a;
		struct pw_qp_init_attr at;

		pwt_side_open(&a);
		memset(&at, 0, sizeof(at));
		at.send_cq = a.scq;
		at.recv_cq = a.rcq;
		a.qp = pw_connect(a.pd, &at, "127.0.0.1", c->port, &prm);
		PWT_ASSERTF(a.qp, "real client %d starved by the flood: %s", i,
			    pw_last_error());
		c->ok++;
		pwt_side_close(&a);
	}
	return NULL;
}

static struct pw_qp *accept_one(struct pw_listener *l, struct pwt_side *b, int ms)
{
	struct pw_conn_param prm = { .timeout_ms = ms };
	struct pw_qp_init_attr at;

	memset(&at, 0, sizeof(at));
	at.send_cq = b->scq;
	at.recv_cq = b->rcq;
	return pw_accept(l, b->pd, &at, &prm);
}

struct acceptor {
	struct pwt_side *b;
	struct pw_listener *l;
	int n;
	int max_fds;
	pthread_t thread;
};

static void *acceptor_main(void *arg)
{
	struct acceptor *ac = arg;

	for (int i = 0; i < ac->n; i++) {
		struct pw_qp *qp = accept_one(ac->l, ac->b, 30000);
		int n;

		PWT_ASSERTF(qp, "pw_accept %d: %s", i, pw_last_error());
		n = count_fds();
		if (n > ac->max_fds)
			ac->max_fds = n;
		PWT_OK(pw_destroy_qp(qp));
	}
	return NULL;
}

/* A connect that never blocks: a full backlog must not stop the flood. */
static int flood_connect(uint16_t port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	PWT_ASSERT(fd >= 0);
	PWT_ASSERTF(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ||
		    errno == EINPROGRESS, "connect: %s", strerror(errno));
	return fd;
}

/*
 * FLOOD_CONNS connections that never send a byte (and some that send
 * half a header) arrive at the listener while real clients connect:
 * every real client is served, the listener holds at most max_half_open
 * of the flood, and once the flood is gone no fd is left behind.
 */
static void t_half_open_flood(const char *arg)
{
	struct pw_context_attr ca = { .max_half_open = FLOOD_MAX_HO,
				      .handshake_timeout_ms = 60000 };
	struct connector con = { .nclients = 5 };
	struct acceptor ac = { .n = 5 };
	struct pwt_side b;
	struct pw_stats st;
	int flood[FLOOD_CONNS];
	int fds0, fds_flood;

	(void)arg;
	fds0 = count_fds();
	pwt_side_open_attr(&b, &ca);
	ac.b = &b;
	ac.l = pw_listen(b.ctx, "127.0.0.1", 0);
	PWT_NONNULL(ac.l);
	con.port = pw_listener_port(ac.l);
	PWT_EQ(pthread_create(&ac.thread, NULL, acceptor_main, &ac), 0);
	for (int i = 0; i < FLOOD_CONNS; i++) {
		flood[i] = flood_connect(con.port);
		if (i % 3 == 0) {	/* half a header, then silence */
			struct pollfd pf = { .fd = flood[i], .events = POLLOUT };

			if (poll(&pf, 1, 1000) == 1)
				(void)!write(flood[i], "PWIR\x01\x10\x00\x00", 8);
		}
	}
	fds_flood = count_fds();
	PWT_EQ(pthread_create(&con.thread, NULL, connector_main, &con), 0);
	PWT_EQ(pthread_join(con.thread, NULL), 0);
	PWT_EQ(pthread_join(ac.thread, NULL), 0);
	PWT_EQ(con.ok, con.nclients);
	st = pwt_stats(b.ctx);
	printf("half_open_flood: %d flood connections, max_half_open %d: %d real "
	       "clients served, %llu dropped from the set, %llu failed, listener "
	       "side held at most %d fds beyond the flood's own\n",
	       FLOOD_CONNS, FLOOD_MAX_HO, con.ok,
	       (unsigned long long)st.conn_half_open_dropped,
	       (unsigned long long)st.conn_handshake_failed, ac.max_fds - fds_flood);
	/* the set holds at most FLOOD_MAX_HO of the flood (+ a client's few) */
	PWT_ASSERTF(ac.max_fds <= fds_flood + FLOOD_MAX_HO + 16,
		    "%d fds open, %d with the flood alone", ac.max_fds, fds_flood);
	PWT_ASSERTF(st.conn_half_open_dropped > 0, "the set was never full");
	for (int i = 0; i < FLOOD_CONNS; i++)
		close(flood[i]);
	PWT_OK(pw_close_listener(ac.l));
	pwt_side_close(&b);
	PWT_EQ(count_fds(), fds0);
}

/*
 * Silent connections expire after handshake_timeout_ms even when nobody
 * else connects, and a client that sends its request byte by byte (slow
 * but within the time) still gets in.
 */
/*
 * A full set with nobody new at the door drops nobody: 4 silent
 * connections fill a set of 4, three pw_accept() calls time out around
 * them, and all 4 are still connected; then one of them sends its request
 * and is accepted.
 */
static void t_half_open_keep(const char *arg)
{
	struct pw_context_attr ca = { .max_half_open = 4,
				      .handshake_timeout_ms = 30000 };
	struct pwt_side b;
	struct pw_listener *l;
	struct pw_qp *qp;
	struct pw_hdr h;
	int cl[4], rc;

	(void)arg;
	pwt_side_open_attr(&b, &ca);
	l = pw_listen(b.ctx, "127.0.0.1", 0);
	PWT_NONNULL(l);
	for (int i = 0; i < 4; i++)
		cl[i] = pwt_tcp_connect(pw_listener_port(l));
	for (int i = 0; i < 3; i++) {
		PWT_ASSERT(accept_one(l, &b, 200) == NULL);
		PWT_EQ(errno, ETIMEDOUT);
	}
	PWT_EQ(pwt_stats(b.ctx).conn_half_open_dropped, 0);
	for (int i = 0; i < 4; i++) {
		char c;

		PWT_EQ(pwt_read_full(cl[i], &c, 1, 50), -ETIMEDOUT);
	}
	pwr_send_connect_req(cl[2], RAW_PSN, RAW_QPN, NULL, 0);
	qp = accept_one(l, &b, 3000);
	PWT_NONNULL(qp);
	rc = pwr_read_msg(cl[2], &h, NULL, 0, NULL, PWT_TIMEOUT_MS);
	PWT_ASSERTF(rc == 1 && h.opcode == PW_OP_CONNECT_REP, "no CONNECT_REP: %d", rc);
	PWT_OK(pw_destroy_qp(qp));
	for (int i = 0; i < 4; i++)
		close(cl[i]);
	PWT_OK(pw_close_listener(l));
	pwt_side_close(&b);
}

struct dribbler {
	uint16_t port;
	int fd;
	pthread_t thread;
};

/* A client whose CONNECT_REQ arrives in 5 pieces, 40 ms apart. */
static void *dribble_main(void *arg)
{
	struct dribbler *d = arg;
	uint8_t buf[PW_WIRE_HDR_LEN + PW_WIRE_CONN_FIXED_LEN + PW_WIRE_MAX_PDATA];
	struct pw_wire_conn c;
	struct pw_hdr h = pwr_hdr(PW_OP_CONNECT_REQ, RAW_PSN);
	size_t len, step;
	int n;

	memset(&c, 0, sizeof(c));
	c.min_version = PW_WIRE_VERSION;
	c.max_version = PW_WIRE_VERSION;
	c.qpn = RAW_QPN;
	n = pw_wire_encode_conn(&c, buf + PW_WIRE_HDR_LEN, sizeof(buf) - PW_WIRE_HDR_LEN);
	PWT_ASSERT(n > 0);
	h.payload_len = (uint32_t)n;
	pw_wire_encode_hdr(&h, buf);
	len = PW_WIRE_HDR_LEN + (size_t)n;
	step = len / 5 + 1;
	d->fd = pwt_tcp_connect(d->port);
	for (size_t off = 0; off < len; off += step) {
		pwt_write_all(d->fd, buf + off, len - off < step ? len - off : step);
		pwt_sleep_ms(40);
	}
	return NULL;
}

/*
 * Silent connections expire after handshake_timeout_ms even when nobody
 * else connects, and a client that sends its request in pieces (slow but
 * within the time) still gets in: the set reads each piece as it comes.
 */
static void t_half_open_expire(const char *arg)
{
	struct pw_context_attr ca = { .handshake_timeout_ms = 300 };
	struct dribbler d = { 0 };
	struct pwt_side b;
	struct pw_listener *l;
	struct pw_stats st;
	struct pw_qp *qp;
	struct pw_hdr h;
	int silent[8], fds0, rc;

	(void)arg;
	fds0 = count_fds();
	pwt_side_open_attr(&b, &ca);
	l = pw_listen(b.ctx, "127.0.0.1", 0);
	PWT_NONNULL(l);
	d.port = pw_listener_port(l);
	for (int i = 0; i < 8; i++)
		silent[i] = pwt_tcp_connect(d.port);
	PWT_ASSERT(accept_one(l, &b, 1500) == NULL);
	PWT_EQ(errno, ETIMEDOUT);
	st = pwt_stats(b.ctx);
	PWT_EQ(st.conn_handshake_failed, 8);
	/* the listener closed its ends: each silent client sees EOF */
	for (int i = 0; i < 8; i++) {
		char c;

		PWT_EQ(pwt_read_full(silent[i], &c, 1, 2000), 0);
		close(silent[i]);
	}

	PWT_EQ(pthread_create(&d.thread, NULL, dribble_main, &d), 0);
	qp = accept_one(l, &b, 3000);
	PWT_EQ(pthread_join(d.thread, NULL), 0);
	PWT_ASSERTF(qp, "the slow client was not accepted: %s", pw_last_error());
	PWT_EQ(qp->dest_qp_num, RAW_QPN);
	rc = pwr_read_msg(d.fd, &h, NULL, 0, NULL, PWT_TIMEOUT_MS);
	PWT_ASSERTF(rc == 1 && h.opcode == PW_OP_CONNECT_REP, "no CONNECT_REP: %d", rc);
	PWT_EQ(pwt_stats(b.ctx).conn_handshake_failed, 8);
	PWT_OK(pw_destroy_qp(qp));
	close(d.fd);
	PWT_OK(pw_close_listener(l));
	pwt_side_close(&b);
	PWT_EQ(count_fds(), fds0);
}

/*
 * More honest clients at once than max_half_open (4): each has sent its
 * whole request, so the set fills with ready connections and the rest
 * wait in the kernel's backlog, none reset; pw_listener_fd() stays
 * readable while one is left; a second pw_accept() on the listener waits
 * for the first at most its own timeout; out of fds with nothing pending,
 * pw_accept() says EMFILE instead of spinning.
 */
#define BURST		12

static void t_accept_burst(const char *arg)
{
	struct pw_context_attr ca = { .max_half_open = 4 };
	struct pwt_side b;
	struct pw_listener *l;
	struct pw_qp *qps[BURST];
	struct pwt_acceptor w;
	struct pollfd pf;
	struct rlimit rl, low;
	int cl[BURST], fds0, extra;

	(void)arg;
	fds0 = count_fds();
	pwt_side_open_attr(&b, &ca);
	l = pw_listen(b.ctx, "127.0.0.1", 0);
	PWT_NONNULL(l);
	for (int i = 0; i < BURST; i++) {
		cl[i] = pwt_tcp_connect(pw_listener_port(l));
		pwr_send_connect_req(cl[i], RAW_PSN, RAW_QPN + (uint32_t)i, NULL, 0);
	}
	for (int i = 0; i < BURST; i++) {
		pf = (struct pollfd){ .fd = pw_listener_fd(l), .events = POLLIN };
		PWT_ASSERTF(poll(&pf, 1, 5000) == 1,
			    "pw_listener_fd not readable with %d clients waiting", BURST - i);
		qps[i] = accept_one(l, &b, 5000);
		PWT_ASSERTF(qps[i], "client %d: %s", i, pw_last_error());
	}
	for (int i = 0; i < BURST; i++) {
		struct pw_hdr h;
		int rc = pwr_read_msg(cl[i], &h, NULL, 0, NULL, PWT_TIMEOUT_MS);

		PWT_ASSERTF(rc == 1 && h.opcode == PW_OP_CONNECT_REP,
			    "client %d: %d (%s), opcode %u", i, rc, pwt_strerr(rc), h.opcode);
	}
	PWT_EQ(pwt_stats(b.ctx).conn_half_open_dropped, 0);
	pf = (struct pollfd){ .fd = pw_listener_fd(l), .events = POLLIN };
	PWT_EQ(poll(&pf, 1, 0), 0);
	printf("accept_burst: %d clients at once, max_half_open 4: %d served, 0 reset\n",
	       BURST, BURST);

	/* one caller waits forever; another gives up at its own timeout */
	memset(&w, 0, sizeof(w));
	w.l = l;
	w.pd = b.pd;
	w.attr.send_cq = b.scq;
	w.attr.recv_cq = b.rcq;
	w.param.timeout_ms = -1;
	pwt_accept_start(&w);
	pwt_sleep_ms(100);
	PWT_ASSERT(accept_one(l, &b, 300) == NULL);
	PWT_EQ(errno, ETIMEDOUT);
	extra = pwt_tcp_connect(pw_listener_port(l));
	pwr_send_connect_req(extra, RAW_PSN, RAW_QPN, NULL, 0);
	PWT_NONNULL(pwt_accept_join(&w));
	PWT_OK(pw_destroy_qp(w.qp));
	close(extra);

	/*
	 * No fd left for accept4 and nothing pending: EMFILE, at once. The
	 * engine accepts as soon as a connection arrives, so the client's
	 * socket exists before the fds run out and connects after.
	 */
	extra = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	PWT_ASSERT(extra >= 0);
	PWT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
	low = rl;
	low.rlim_cur = (rlim_t)count_fds() + 3;	/* opendir's, and no more */
	PWT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
	{
		struct sockaddr_in sa = { .sin_family = AF_INET,
					  .sin_port = htons(pw_listener_port(l)),
					  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		int dummy[8], n = 0;

		/* take what is left below the limit */
		while (n < 8 && (dummy[n] = dup(0)) >= 0)
			n++;
		PWT_EQ(connect(extra, (struct sockaddr *)&sa, sizeof(sa)), 0);
		PWT_ASSERT(accept_one(l, &b, 3000) == NULL);
		PWT_ASSERTF(errno == EMFILE, "errno %d (%s), want EMFILE", errno,
			    strerror(errno));
		while (n > 0)
			close(dummy[--n]);
	}
	PWT_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
	close(extra);

	for (int i = 0; i < BURST; i++) {
		PWT_OK(pw_destroy_qp(qps[i]));
		close(cl[i]);
	}
	PWT_OK(pw_close_listener(l));
	pwt_side_close(&b);
	PWT_EQ(count_fds(), fds0);
}

/* ------------------------------------------------------------------ */
/* Outstanding READs (max_dest_rd_atomic) from a raw peer               */
/* ------------------------------------------------------------------ */

#define RD_LEN		(1u << 20)
#define RD_REQS		40

/*
 * A peer that ignores the READ credits it was granted (16) and never
 * reads: the target holds no more than its 16 responses (which wait in
 * the socket, not in memory it allocates), answers the 17th with an
 * INVALID_REQ NAK (IBA C9-92), counts it, and keeps serving other QPs.
 */
static void t_read_credits(const char *arg)
{
	struct pwt_pair p;
	struct pwt_img tgt;
	struct pw_qp *rqp;
	struct pw_hdr h;
	struct pw_stats st;
	size_t rss0, rss1, plen;
	uint8_t trailer[PW_WIRE_READ_TRAILER_LEN + 16];
	int fd, rc, resp = 0;
	uint32_t granted;

	(void)arg;
	pwt_pair_open(&p, NULL);
	pwt_img_alloc(&tgt, &p.b, RD_LEN, PWT_PINNED, 9);
	fd = pwr_open_accepted(p.l, &p.b, &rqp, RAW_PSN, RAW_QPN, 0);
	granted = 16;	/* the default max_dest_rd_atomic (pagewire.h) */
	rss0 = pwt_rss_bytes();
	for (uint32_t i = 0; i < RD_REQS; i++) {
		h = pwr_hdr(PW_OP_READ_REQ, RAW_PSN + i);
		h.rkey = tgt.buf.rkey;
		h.raddr = pwt_va(tgt.buf.addr);
		h.read_len = RD_LEN;
		pwr_send_hdr(fd, &h);
	}
	pwt_sleep_ms(300);
	rss1 = pwt_rss_bytes();
	/* another QP of the same target context is served meanwhile */
	check_serves(&p.a, &p.b, p.a.qp, 21);
	/* now read: the granted responses, each whole, then the NAK */
	for (;;) {
		rc = pwr_read_msg(fd, &h, trailer, 0, &plen, PWT_TIMEOUT_MS);
		PWT_ASSERTF(rc == 1, "reading responses: %d (%s)", rc, pwt_strerr(rc));
		if (h.opcode != PW_OP_READ_RESP)
			break;
		PWT_EQ(h.psn, RAW_PSN + (uint32_t)resp);
		PWT_EQ(h.payload_len, RD_LEN + PW_WIRE_READ_TRAILER_LEN);
		resp++;
	}
	PWT_ASSERTF(h.opcode == PW_OP_NAK, "got %s after %d READ_RESP, want NAK",
		    pw_wire_op_name(h.opcode), resp);
	PWT_EQ(h.syndrome, PW_SYN_INVALID_REQ);
	/*
	 * A credit comes back once its response is all in the kernel, so
	 * the socket buffers may have taken a few more than 16 before the
	 * peer overran; never all of them.
	 */
	PWT_ASSERTF((uint32_t)resp >= granted && resp < RD_REQS,
		    "%d READs answered of %d", resp, RD_REQS);
	PWT_EQ(h.psn, RAW_PSN + (uint32_t)resp);
	st = pwt_stats(p.b.ctx);
	PWT_ASSERT(st.rd_atomic_overrun >= 1);
	printf("read_credits: %d READs of 1 MiB sent unread, %d answered (%u "
	       "credits, the rest in socket buffers), NAK INVALID_REQ at #%d, "
	       "target RSS +%zu KiB meanwhile\n", RD_REQS, resp, granted,
	       resp + 1, rss1 > rss0 ? (rss1 - rss0) >> 10 : 0);
	/* responses wait in the socket: nothing near 16 x 1 MiB was allocated */
	PWT_ASSERTF(rss1 < rss0 + 4 * PWT_MIB, "target RSS grew by %zu bytes",
		    rss1 - rss0);
	close(fd);
	PWT_OK(pw_destroy_qp(rqp));
	pwt_img_free(&tgt);
	pwt_pair_close(&p);
}

/* ------------------------------------------------------------------ */
/* SENDs without receives (pending receives are the target's own)      */
/* ------------------------------------------------------------------ */

#define SEND_FLOOD	2000
#define SEND_LEN	65536u

/*
 * A raw peer streams 2000 x 64 KiB SENDs at a QP with no receive posted
 * and ignores the RNR NAK: the target takes no buffer for them (a receive
 * is the only place a SEND can land), NAKs the first one RNR and drops
 * the rest as out of sequence, and its memory stays where it was.
 */
static void t_send_no_recv(const char *arg)
{
	struct pwt_pair p;
	struct pw_qp *rqp;
	struct pw_hdr h;
	uint8_t *payload = malloc(SEND_LEN);
	size_t rss0, rss1;
	int fd, rc;

	(void)arg;
	PWT_NONNULL(payload);
	pwt_fill(payload, SEND_LEN, 5);
	pwt_pair_open(&p, NULL);
	fd = pwr_open_accepted(p.l, &p.b, &rqp, RAW_PSN, RAW_QPN, 0);
	rss0 = pwt_rss_bytes();
	for (uint32_t i = 0; i < SEND_FLOOD; i++) {
		h = pwr_hdr(PW_OP_SEND, RAW_PSN + i);
		h.payload_len = SEND_LEN;
		pwr_send_hdr(fd, &h);
		pwt_write_all(fd, payload, SEND_LEN);
	}
	rss1 = pwt_rss_bytes();
	rc = pwr_read_msg(fd, &h, NULL, 0, NULL, PWT_TIMEOUT_MS);
	PWT_ASSERTF(rc == 1, "no answer: %d (%s)", rc, pwt_strerr(rc));
	PWT_ASSERTF(h.opcode == PW_OP_NAK && h.syndrome == PW_SYN_RNR,
		    "got %s syndrome %u, want NAK RNR", pw_wire_op_name(h.opcode),
		    h.syndrome);
	PWT_EQ(h.psn, RAW_PSN);
	printf("send_no_recv: %u x %u B SENDs with no receive: RNR NAK at the "
	       "first, target RSS +%zu KiB\n", SEND_FLOOD, SEND_LEN,
	       rss1 > rss0 ? (rss1 - rss0) >> 10 : 0);
	PWT_ASSERTF(rss1 < rss0 + 4 * PWT_MIB, "target RSS grew by %zu bytes "
		    "for %u MiB of unreceivable SENDs", rss1 - rss0,
		    SEND_FLOOD * (SEND_LEN >> 10) >> 10);
	check_serves(&p.a, &p.b, p.a.qp, 22);
	close(fd);
	PWT_OK(pw_destroy_qp(rqp));
	pwt_pair_close(&p);
	free(payload);
}

/* ------------------------------------------------------------------ */
/* 16 peers flooding 1 MiB WRITEs                                       */
/* ------------------------------------------------------------------ */

#define PEERS		16
#define SLOT		(1u << 20)
#define FLOOD_MS	2000
#define WINDOW		4

struct flood_res {
	uint64_t writes;
	uint32_t last_seed;
};

/* One peer: its own process and context, WRITEs into its slot, then a READ back. */
static int flood_peer(int ctl, void *arg)
{
	struct pwt_remote r;
	struct pwt_side a;
	struct pw_qp_init_attr at;
	struct pw_conn_param prm = { .timeout_ms = 20000 };
	struct pwt_buf src[WINDOW], back;
	struct flood_res res = { 0 };
	uint16_t port;
	unsigned int idx = (unsigned int)(uintptr_t)arg;
	uint64_t end, posted = 0, done = 0;
	struct pw_wc wc;

	pwt_ctl_recv(ctl, &port, sizeof(port), 20000);
	pwt_side_open(&a);
	memset(&at, 0, sizeof(at));
	at.send_cq = a.scq;
	at.recv_cq = a.rcq;
	a.qp = pw_connect(a.pd, &at, "127.0.0.1", port, &prm);
	PWT_NONNULL(a.qp);
	pwt_remote_from_qp(a.qp, &r);
	for (int i = 0; i < WINDOW; i++) {
		pwt_buf_alloc(&src[i], &a, SLOT, PWT_ACCESS_ALL, PWT_ODP);
		pwt_fill(src[i].addr, SLOT, 100 + idx * 8 + (unsigned int)i);
	}
	pwt_buf_alloc(&back, &a, SLOT, PWT_ACCESS_ALL, PWT_ODP);
	end = pwt_now_ms() + FLOOD_MS;
	while (pwt_now_ms() < end || done < posted) {
		if (posted - done < WINDOW && pwt_now_ms() < end) {
			int i = (int)(posted % WINDOW);

			PWT_OK(pwt_post_rdma(a.qp, PW_WR_RDMA_WRITE, posted,
					     src[i].addr, SLOT, src[i].lkey,
					     r.addr + (uint64_t)idx * SLOT, r.rkey,
					     PW_SEND_SIGNALED));
			posted++;
			continue;
		}
		PWT_WAIT_WC(a.scq, &wc);
		PWT_ASSERTF(wc.status == PW_WC_SUCCESS, "peer %u WRITE %llu: %s", idx,
			    (unsigned long long)wc.wr_id, pw_wc_status_str(wc.status));
		done++;
	}
	/* WRITEs on one QP land in order: the slot holds the last one */
	res.writes = posted;
	res.last_seed = 100 + idx * 8 + (uint32_t)((posted - 1) % WINDOW);
	PWT_OK(pwt_post_rdma(a.qp, PW_WR_RDMA_READ, 999999, back.addr, SLOT,
			     back.lkey, r.addr + (uint64_t)idx * SLOT, r.rkey,
			     PW_SEND_SIGNALED));
	PWT_EXPECT_OK(a.scq, 999999, PW_WC_RDMA_READ, SLOT, a.qp->qp_num);
	PWT_PATTERN(back.addr, SLOT, res.last_seed, 0);
	pwt_ctl_send(ctl, &res, sizeof(res));
	for (int i = 0; i < WINDOW; i++)
		pwt_buf_free(&src[i]);
	pwt_buf_free(&back);
	pwt_side_close(&a);
	return 0;
}

/*
 * 16 peers, each its own process and connection, WRITE 1 MiB messages as
 * fast as they can for 2 s. The target's memory beyond the registered
 * region is its 16 QPs' fixed state (RX staging, queues): payload goes
 * from the socket straight into the MR, nothing is queued per message.
 */
static void t_write_flood(const char *arg)
{
	struct pwt_child kids[PEERS];
	struct pw_qp *qps[PEERS];
	struct pwt_remote rem;
	struct pwt_side b;
	struct pwt_buf tgt;
	struct pw_listener *l;
	struct pw_conn_param prm = { .timeout_ms = 20000 };
	struct pw_qp_init_attr at;
	uint64_t total = 0;
	size_t rss0, rss1;
	uint16_t port;
	uint8_t *copy;

	(void)arg;
	for (int i = 0; i < PEERS; i++)
		pwt_fork(&kids[i], flood_peer, (void *)(uintptr_t)i);
	copy = malloc(SLOT);
	PWT_NONNULL(copy);
	memset(copy, 0, SLOT);	/* resident before rss0 */
	pwt_side_open(&b);
	/* ODP (no RLIMIT_MEMLOCK needed), touched first so RSS counts it already */
	pwt_buf_alloc(&tgt, &b, (size_t)PEERS * SLOT, PWT_ACCESS_ALL, PWT_ODP);
	memset(tgt.addr, 0, tgt.len);
	memset(&rem, 0, sizeof(rem));
	rem.addr = pwt_va(tgt.addr);
	rem.len = tgt.len;
	rem.rkey = tgt.rkey;
	prm.private_data = &rem;
	prm.private_data_len = sizeof(rem);
	l = pw_listen(b.ctx, "127.0.0.1", 0);
	PWT_NONNULL(l);
	port = pw_listener_port(l);
	rss0 = pwt_rss_bytes();
	for (int i = 0; i < PEERS; i++) {
		pwt_ctl_send(kids[i].fd, &port, sizeof(port));
		memset(&at, 0, sizeof(at));
		at.send_cq = b.scq;
		at.recv_cq = b.rcq;
		qps[i] = pw_accept(l, b.pd, &at, &prm);
		PWT_NONNULL(qps[i]);
	}
	for (int i = 0; i < PEERS; i++) {
		struct flood_res res;

		pwt_ctl_recv(kids[i].fd, &res, sizeof(res), 60000);
		total += res.writes;
		/*
		 * The peer READ its slot back; check it here as well. Through
		 * pwt_peek: the engine's writes are ordered before this by the
		 * peer process's message, which TSan cannot see.
		 */
		PWT_ASSERT(pwt_peek(copy, tgt.addr + (size_t)i * SLOT, SLOT));
		PWT_PATTERN(copy, SLOT, res.last_seed, 0);
	}
	rss1 = pwt_rss_bytes();
	for (int i = 0; i < PEERS; i++)
		PWT_CHILD_OK(&kids[i], 30000);
	printf("write_flood: %d peers, %llu WRITEs of 1 MiB (%llu MiB) in %d ms, "
	       "target RSS +%zu KiB beyond its %d MiB region\n", PEERS,
	       (unsigned long long)total, (unsigned long long)total, FLOOD_MS,
	       rss1 > rss0 ? (rss1 - rss0) >> 10 : 0, PEERS);
	/*
	 * 16 x (64 KiB staging + queues) is about 2 MiB; 8 MiB is the bound.
	 * Not under TSan: its shadow of the 16 MiB the engine wrote is RSS.
	 */
	PWT_ASSERTF(pwt_under_tsan() || rss1 < rss0 + 8 * PWT_MIB,
		    "target RSS grew by %zu KiB", (rss1 - rss0) >> 10);
	PWT_ASSERT(total >= PEERS);
	for (int i = 0; i < PEERS; i++)
		PWT_OK(pw_destroy_qp(qps[i]));
	PWT_OK(pw_close_listener(l));
	pwt_buf_free(&tgt);
	pwt_side_close(&b);
	free(copy);
}

/* ------------------------------------------------------------------ */
/* FAULT_IN is no key oracle                                            */
/* ------------------------------------------------------------------ */

#define PROBES		40

/*
 * A peer that negotiated NOTIFY sends FAULT_INs for guessed keys: each is
 * answered VALIDATE REMOTE_ACCESS, but past PW_NT_BAD_MAX (8) the target
 * ends the connection, as a bad key in a WRITE would at once. Probing
 * costs a connection every 9 guesses instead of none.
 */
static void t_fault_in_probe(const char *arg)
{
	struct pwt_pair p;
	struct pw_qp_init_attr at;
	struct pw_conn_param prm = { .timeout_ms = PWT_TIMEOUT_MS };
	struct pw_wire_conn c;
	struct pw_qp *rqp;
	struct pw_hdr h;
	int fd, rc, validates = 0;

	(void)arg;
	pwt_pair_open(&p, NULL);
	fd = pwt_tcp_connect(p.port);
	memset(&c, 0, sizeof(c));
	c.min_version = PW_WIRE_VERSION;
	c.max_version = PW_WIRE_VERSION;
	c.qpn = RAW_QPN;
	c.features = PW_WIRE_FEAT_NOTIFY | PW_WIRE_FEAT_FAULT_NAK;
	pwr_send_conn_msg(fd, PW_OP_CONNECT_REQ, RAW_PSN, &c);
	memset(&at, 0, sizeof(at));
	at.send_cq = p.b.scq;
	at.recv_cq = p.b.rcq;
	rqp = pw_accept(p.l, p.b.pd, &at, &prm);
	PWT_NONNULL(rqp);
	rc = pwr_read_msg(fd, &h, NULL, 0, NULL, PWT_TIMEOUT_MS);
	PWT_ASSERTF(rc == 1 && h.opcode == PW_OP_CONNECT_REP, "no CONNECT_REP: %d", rc);
	for (uint32_t i = 0; i < PROBES; i++) {
		h = pwr_hdr(PW_OP_FAULT_IN, RAW_PSN + i);
		h.rkey = 0x1000u + i * 7919u;
		h.raddr = 0x10000;
		h.range_len = 4096;
		pwr_send_hdr(fd, &h);
	}
	for (;;) {
		rc = pwr_read_msg(fd, &h, NULL, 0, NULL, PWT_TIMEOUT_MS);
		if (rc != 1)
			break;
		if (h.opcode == PW_OP_VALIDATE) {
			PWT_EQ(h.imm, PW_SYN_REMOTE_ACCESS);
			validates++;
		}
	}
	PWT_ASSERTF(rc == 0 || rc == -ECONNRESET, "the connection did not end: %d (%s)",
		    rc, pwt_strerr(rc));
	printf("fault_in_probe: %d guessed keys sent, %d answered, then the target "
	       "ended the connection\n", PROBES, validates);
	PWT_EQ(validates, 8);
	PWT_WAIT_STATE(rqp, PW_QPS_ERR);
	close(fd);
	PWT_OK(pw_destroy_qp(rqp));
	pwt_pair_close(&p);
}

/* ------------------------------------------------------------------ */
/* Configuration: defaults in effect, and clear errors past the limits  */
/* ------------------------------------------------------------------ */

/* TCP_USER_TIMEOUT and TCP_KEEPIDLE of this process's connected TCP sockets. */
static int tcp_timeouts(int *uto, int *idle, int max)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	PWT_NONNULL(d);
	while ((e = readdir(d)) && n < max) {
		int fd = atoi(e->d_name), proto = 0, v = 0, k = 0;
		socklen_t sl = sizeof(proto);
		struct sockaddr_storage ss;
		socklen_t al = sizeof(ss);

		if (e->d_name[0] == '.' ||
		    getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &sl) ||
		    proto != IPPROTO_TCP || getpeername(fd, (void *)&ss, &al))
			continue;
		sl = sizeof(v);
		PWT_EQ(getsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &v, &sl), 0);
		sl = sizeof(k);
		PWT_EQ(getsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &k, &sl), 0);
		uto[n] = v;
		idle[n++] = k;
	}
	closedir(d);
	return n;
}

/*
 * The dead-peer bound in effect on the sockets: the 30 s default, the
 * context's, and a QP's own (the netns tests cut links to see it act).
 */
static void t_peer_timeout(const char *arg)
{
	struct pwt_pair_opts o;
	struct pwt_pair p;
	int uto[8], idle[8], n;

	(void)arg;
	/*
	 * Two pagewire peers speak LINK: the engine bounds outstanding WRs
	 * itself, TCP's user timeout stays off, keepalive watches idle links.
	 */
	pwt_pair_open(&p, NULL);
	PWT_EQ(p.a.attr.peer_timeout_ms, 30000);
	n = tcp_timeouts(uto, idle, 8);
	PWT_EQ(n, 2);
	for (int i = 0; i < n; i++) {
		PWT_EQ(uto[i], 0);
		PWT_EQ(idle[i], 15);
	}
	pwt_pair_close(&p);

	/* a peer without LINK: TCP's own bounds, as before it */
	memset(&o, 0, sizeof(o));
	o.a_ctx.flags = PW_CONTEXT_NO_LINK;
	pwt_pair_open(&p, &o);
	n = tcp_timeouts(uto, idle, 8);
	PWT_EQ(n, 2);
	for (int i = 0; i < n; i++) {
		/* one 3 s probe interval of the 30 s is left for the last probe */
		PWT_EQ(uto[i], 27000);
		PWT_EQ(idle[i], 15);
	}
	pwt_pair_close(&p);

	memset(&o, 0, sizeof(o));
	o.a_ctx.peer_timeout_ms = 4000;
	o.a_ctx.flags = PW_CONTEXT_NO_LINK;
	o.b_attr.peer_timeout_ms = 2000;
	pwt_pair_open(&p, &o);
	PWT_EQ(p.a.attr.peer_timeout_ms, 4000);
	PWT_EQ(p.b.attr.peer_timeout_ms, 2000);
	n = tcp_timeouts(uto, idle, 8);
	PWT_EQ(n, 2);
	PWT_ASSERTF((uto[0] == 3000 && uto[1] == 1000) || (uto[0] == 1000 && uto[1] == 3000),
		    "user timeouts %d and %d", uto[0], uto[1]);
	PWT_ASSERTF((idle[0] == 2 && idle[1] == 1) || (idle[0] == 1 && idle[1] == 2),
		    "keepalive idle %d and %d", idle[0], idle[1]);
	pwt_pair_close(&p);

	setenv("PW_PEER_TIMEOUT_MS", "7000", 1);
	pwt_pair_open(&p, NULL);
	PWT_EQ(p.a.attr.peer_timeout_ms, 7000);
	pwt_pair_close(&p);
	unsetenv("PW_PEER_TIMEOUT_MS");
}

/* Each limit, asked past its edge, is refused with EINVAL and a sentence. */
static void t_bad_limits(const char *arg)
{
	struct pw_context_attr ca;
	struct pw_qp_init_attr at;
	struct pwt_side a;

	(void)arg;
	memset(&ca, 0, sizeof(ca));
	ca.peer_timeout_ms = 1999;
	errno = 0;
	PWT_ASSERT(pw_open(&ca) == NULL);
	PWT_EQ(errno, EINVAL);
	PWT_ASSERTF(strstr(pw_last_error(), "peer_timeout_ms"), "error: %s",
		    pw_last_error());
	ca.peer_timeout_ms = 3600001;	/* half of it would not fit TCP_KEEPIDLE */
	PWT_ASSERT(pw_open(&ca) == NULL);
	PWT_EQ(errno, EINVAL);
	memset(&ca, 0, sizeof(ca));
	ca.max_half_open = 100000;
	PWT_ASSERT(pw_open(&ca) == NULL);
	PWT_EQ(errno, EINVAL);
	setenv("PW_PEER_TIMEOUT_MS", "soon", 1);
	PWT_ASSERT(pw_open(NULL) == NULL);
	PWT_EQ(errno, EINVAL);
	PWT_ASSERTF(strstr(pw_last_error(), "PW_PEER_TIMEOUT_MS"), "error: %s",
		    pw_last_error());
	unsetenv("PW_PEER_TIMEOUT_MS");

	pwt_side_open(&a);
	memset(&at, 0, sizeof(at));
	at.send_cq = a.scq;
	at.recv_cq = a.rcq;
	at.peer_timeout_ms = 10;
	PWT_ASSERT(pw_connect(a.pd, &at, "127.0.0.1", pwt_unused_port(), NULL) == NULL);
	PWT_EQ(errno, EINVAL);
	at.peer_timeout_ms = 3000000000u;
	PWT_ASSERT(pw_connect(a.pd, &at, "127.0.0.1", pwt_unused_port(), NULL) == NULL);
	PWT_EQ(errno, EINVAL);
	at.peer_timeout_ms = 0;
	at.max_dest_rd_atomic = 100000;
	PWT_ASSERT(pw_connect(a.pd, &at, "127.0.0.1", pwt_unused_port(), NULL) == NULL);
	PWT_EQ(errno, EINVAL);
	PWT_ASSERTF(strstr(pw_last_error(), "rd_atomic"), "error: %s", pw_last_error());
	at.max_dest_rd_atomic = 0;
	at.cap.max_recv_wr = 1u << 20;
	PWT_ASSERT(pw_connect(a.pd, &at, "127.0.0.1", pwt_unused_port(), NULL) == NULL);
	PWT_EQ(errno, EINVAL);
	pwt_side_close(&a);
}

static const struct pwt_case cases[] = {
	{ "half_open_flood", t_half_open_flood },
	{ "half_open_expire", t_half_open_expire },
	{ "half_open_keep", t_half_open_keep },
	{ "accept_burst", t_accept_burst },
	{ "read_credits", t_read_credits },
	{ "send_no_recv", t_send_no_recv },
	{ "write_flood", t_write_flood },
	{ "fault_in_probe", t_fault_in_probe },
	{ "peer_timeout", t_peer_timeout },
	{ "bad_limits", t_bad_limits },
};

int main(int argc, char **argv)
{
	return pwt_main(argc, argv, cases, PWT_ARRAY_SIZE(cases));
}
