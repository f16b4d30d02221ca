/* SPDX-License-Identifier: MIT */
/*
 * Connection manager (cm.h): the handshake of a QP, run by the progress
 * engine, and the verbs that start it. One round trip, plus the client's
 * CONNECT_RTU when both sides speak LINK, exchanges QP numbers, initial
 * PSNs, READ/ATOMIC credits, protocol versions, feature bits and up to
 * 256 bytes of private data each way, as rdma_cm does. The outcome is an
 * event on the QP's channel (pw_connect_async, pw_accept_request), or
 * what pw_connect / pw_accept return once it is known.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/context.h"
#include "engine/cm.h"
#include "engine/qp.h"

#define PW_DEF_CM_TIMEOUT_MS	10000

static uint64_t deadline_of(int timeout_ms, int def_ms)
{
	if (timeout_ms < 0)
		return UINT64_MAX;
	if (timeout_ms == 0)
		timeout_ms = def_ms;
	return pw_now_ns() + (uint64_t)timeout_ms * 1000000ull;
}

/*
 * The dead-peer bound (docs/limits.md). A peer host that vanishes without
 * FIN/RST (power loss, link cut) must still end in RETRY_EXC_ERR within
 * @ms, as a NIC's transport timer would:
 * - an idle link (nothing outstanding at the TCP level, say a READ whose
 *   request was ACKed): keepalive probes start at half the bound, one
 *   every intvl, and fail the connection after about the bound;
 * - unACKed data, with a peer from before the LINK feature:
 *   TCP_USER_TIMEOUT fails the connection after uto, and with it set
 *   Linux also fails an idle one at the first unanswered probe once uto
 *   has passed (tcp_keepalive_timer). uto leaves one probe interval of
 *   the bound for that last probe.
 * With LINK the engine itself bounds every outstanding WR (live.c), and
 * the user timeout stays off: it also counts zero-window probes that a
 * live but stalled peer answers (a fault longer than uto would kill the
 * connection), and it would fail a stopped peer's connection before that
 * peer could tell it had been stopped (it discards what arrived meanwhile
 * only for stops of 3/4 of the bound and more).
 * With @ms in [PW_MIN_PEER_TIMEOUT_MS, PW_MAX_PEER_TIMEOUT_MS] (checked
 * at pw_open / QP creation) uto >= @ms / 2 > 0 and idle fits TCP_KEEPIDLE.
 */
static void set_peer_timeout(int fd, uint32_t ms, bool link)
{
	int one = 1, idle = (int)PW_MAX(ms / 2000, 1u);
	int intvl = (int)PW_MAX(ms / 10000, 1u);
	int cnt = (int)PW_MAX((ms / 1000 - (uint32_t)idle) / (uint32_t)intvl, 1u);
	int uto = link ? 0 : (int)ms - intvl * 1000;

	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &uto, sizeof(uto));
}

static uint32_t offered_features(const struct pw_context *ctx)
{
	return PW_WIRE_FEAT_FAULT_NAK |
	       (ctx->no_link ? 0 : PW_WIRE_FEAT_LINK) |
	       (ctx->no_notify ? 0 : PW_WIRE_FEAT_NOTIFY);
}

static uint32_t random_psn(void)
{
	uint32_t v;

	pw_random_bytes(&v, sizeof(v));
	return v & 0xffffff;	/* IBA-sized, leaves room to see wraps in logs */
}

/* @connecting: pw_connect*, which alone may name a source address */
static int check_param(const char *who, const struct pw_conn_param *param,
		       bool connecting)
{
	if (param && (param->private_data_len > PW_MAX_PRIVATE_DATA ||
		      (param->private_data_len && !param->private_data))) {
		pw_set_error("%s: private data is limited to %d bytes", who,
			     PW_MAX_PRIVATE_DATA);
		return -EINVAL;
	}
	if (param && param->src_addr) {
		sa_family_t f = param->src_addr->sa_family;

		if (!connecting) {
			pw_set_error("%s: a source address is for pw_connect only", who);
			return -EINVAL;
		}
		if (f != AF_INET && f != AF_INET6) {
			pw_set_error("%s: source address family %u is not AF_INET or AF_INET6",
				     who, (unsigned int)f);
			return -EINVAL;
		}
	}
	return 0;
}

/* The CM message @op of this QP, into qp->cm.out. */
static void build_conn(struct pw_qp_i *qp, uint8_t op, uint32_t psn,
		       const struct pw_qp_init_attr *attr,
		       const struct pw_conn_param *param)
{
	struct pw_wire_conn c;
	struct pw_hdr h = { .opcode = op, .psn = psn };
	int n;

	memset(&c, 0, sizeof(c));
	c.min_version = PW_WIRE_VERSION;
	c.max_version = PW_WIRE_VERSION;
	c.features = qp->cm.offered;
	c.qpn = qp->ibqp.qp_num;
	c.max_rd_atomic = attr->max_rd_atomic;
	c.max_dest_rd_atomic = attr->max_dest_rd_atomic;
	if (param && param->private_data_len) {
		c.pdata_len = (uint16_t)param->private_data_len;
		memcpy(c.pdata, param->private_data, param->private_data_len);
	}
	n = pw_wire_encode_conn(&c, qp->cm.out + PW_WIRE_HDR_LEN,
				sizeof(qp->cm.out) - PW_WIRE_HDR_LEN);
	h.payload_len = (uint32_t)n;
	pw_wire_encode_hdr(&h, qp->cm.out);
	qp->cm.out_len = PW_WIRE_HDR_LEN + (uint32_t)n;
	qp->cm.out_off = 0;
}

static const char *addr_str(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char host[64], port[8];

	if (getnameinfo((const struct sockaddr *)ss, sizeof(*ss), host, sizeof(host),
			port, sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV))
		snprintf(buf, len, "?");
	else
		snprintf(buf, len, ss->ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s",
			 host, port);
	return buf;
}

/* ------------------------------------------------------------------ */
/* Events and outcomes                                                 */
/* ------------------------------------------------------------------ */

static void post_event_locked(struct pw_qp_i *qp, int which,
			      enum pw_cm_event_type type, int status,
			      const void *pdata, uint32_t plen)
{
	struct pw_cm_ev_node *n = &qp->cm.evn[which];

	if (!qp->cm.ch || qp->cm.ev_sent[which])
		return;
	qp->cm.ev_sent[which] = true;
	n->ch = qp->cm.ch;
	n->ev.event = type;
	n->ev.status = status;
	n->ev.qp = &qp->ibqp;
	n->ev.context = qp->ibqp.qp_context;
	n->ev.peer_addr = qp->cm.remote;
	n->ev.private_data_len = plen;
	if (plen)
		memcpy(n->pdata, pdata, plen);
	pw_cm_post(n);
}

/* The handshake's outcome, for the waiter of pw_connect / pw_accept. */
static void outcome(struct pw_qp_i *qp, int result, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void outcome(struct pw_qp_i *qp, int result, const char *fmt, ...)
{
	struct pw_context *ctx = qp->ctx;
	va_list ap;

	pthread_mutex_lock(&ctx->cm_lock);
	qp->cm.result = result;
	qp->cm.msg[0] = 0;
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(qp->cm.msg, sizeof(qp->cm.msg), fmt, ap);
		va_end(ap);
	}
	qp->cm.done = true;
	pthread_cond_broadcast(&ctx->cm_cond);
	pthread_mutex_unlock(&ctx->cm_lock);
}

static void unwatch(struct pw_qp_i *qp)
{
	if (qp->in_epoll)
		epoll_ctl(qp->ctx->engine.epfd, EPOLL_CTL_DEL, qp->fd, NULL);
	qp->in_epoll = false;
}

static void watch(struct pw_qp_i *qp, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = &qp->src };

	if (qp->in_epoll) {
		epoll_ctl(qp->ctx->engine.epfd, EPOLL_CTL_MOD, qp->fd, &ev);
	} else if (epoll_ctl(qp->ctx->engine.epfd, EPOLL_CTL_ADD, qp->fd, &ev) == 0) {
		qp->in_epoll = true;
	}
}

/*
 * The handshake failed: the QP goes to the error state (its receives
 * flushed), its socket closes, and the outcome is told as @type with
 * @status (a negative errno).
 */
static void cm_fail(struct pw_qp_i *qp, enum pw_cm_event_type type, int status,
		    const void *pdata, uint32_t plen, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
static void cm_fail(struct pw_qp_i *qp, enum pw_cm_event_type type, int status,
		    const void *pdata, uint32_t plen, const char *fmt, ...)
{
	char msg[sizeof(qp->cm.msg)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&qp->lock);
	unwatch(qp);
	if (qp->fd >= 0) {
		close(qp->fd);
		qp->fd = -1;
	}
	pw_cm_set_state(&qp->cm, PW_CM_FAILED);
	qp->shut_wr = true;	/* nothing is ever sent on it */
	pw_qp_fail_locked(qp, PW_QP_CAUSE_NONE, PW_WC_WR_FLUSH_ERR);
	post_event_locked(qp, PW_CMEV_OUTCOME, type, status, pdata, plen);
	pthread_mutex_unlock(&qp->lock);
	outcome(qp, status, "%s", msg);
}

/* ------------------------------------------------------------------ */
/* Going live                                                          */
/* ------------------------------------------------------------------ */

/*
 * Both sides agreed: adopt the peer's parameters and go live. The bytes
 * of rx.buf past @used (what the peer sent after its CM message) are the
 * first of the stream.
 */
static void go_live(struct pw_qp_i *qp, uint32_t peer_psn,
		    const struct pw_wire_conn *peer, uint32_t used)
{
	struct pw_rx *rx = &qp->rx;
	bool staged;

	pthread_mutex_lock(&qp->lock);
	if (pw_qp_get_state(qp) == PW_QPS_ERR) {
		/* destroyed or disconnected meanwhile */
		pw_cm_set_state(&qp->cm, PW_CM_FAILED);
		pthread_mutex_unlock(&qp->lock);
		outcome(qp, -ECONNABORTED, "the QP was ended during its handshake");
		return;
	}
	qp->next_psn = qp->cm.my_psn;
	qp->exp_psn = peer_psn;
	qp->ibqp.dest_qp_num = peer->qpn;
	/* a feature is in use when both sides set it (docs/wire.md §12) */
	qp->features = peer->features & qp->cm.offered;
	pw_notify_qp_live(qp, qp->features);
	pw_live_init(qp);
	set_peer_timeout(qp->fd, qp->peer_timeout_ms, qp->features & PW_WIRE_FEAT_LINK);
	if (peer->max_dest_rd_atomic && peer->max_dest_rd_atomic < qp->rd_max)
		qp->rd_max = peer->max_dest_rd_atomic;
	memcpy(qp->ibqp.peer_private_data, peer->pdata, peer->pdata_len);
	qp->ibqp.peer_private_data_len = peer->pdata_len;
	rx->head = used;
	rx->tail = qp->cm.in_got;
	staged = rx->tail > rx->head;
	pw_cm_set_state(&qp->cm, PW_CM_LIVE);
	watch(qp, EPOLLIN | EPOLLRDHUP);
	atomic_store_explicit(&qp->want_out, false, memory_order_relaxed);
	pw_live_added(&qp->ctx->engine, qp);
	/* the client's first message is its RTU, before any request */
	if (qp->cm.want_rtu && qp->cm.client) {
		struct pw_hdr h = { .opcode = PW_OP_CONNECT_RTU };

		pw_tx_start_locked(qp, TX_CTL, &h);
		qp->tx.ndata = 0;
		qp->tx.data_left = 0;
		qp->tx.trailer_len = 0;
	}
	atomic_store_explicit(&qp->state, PW_QPS_RTS, memory_order_release);
	/* rdma_cm: the client's ESTABLISHED carries the server's private data */
	post_event_locked(qp, PW_CMEV_OUTCOME, PW_CM_EVENT_ESTABLISHED, 0,
			  peer->pdata, qp->cm.client ? peer->pdata_len : 0);
	pw_tx_flush_locked(qp);
	pthread_mutex_unlock(&qp->lock);
	outcome(qp, 0, NULL);
	/* what came with the CM message is not seen by epoll: read it now */
	if (staged)
		pw_rx_process(qp);
}

/* ------------------------------------------------------------------ */
/* The handshake in the engine (token holder)                          */
/* ------------------------------------------------------------------ */

/* Send what is left of cm.out. Return 1 when out, 0 when blocked, -errno. */
static int send_out(struct pw_qp_i *qp)
{
	struct pw_qp_cm *cm = &qp->cm;

	while (cm->out_off < cm->out_len) {
		ssize_t n = send(qp->fd, cm->out + cm->out_off, cm->out_len - cm->out_off,
				 MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n > 0) {
			cm->out_off += (uint32_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		return n < 0 ? -errno : -ECONNRESET;
	}
	return 1;
}

/*
 * Read what the socket has into rx.buf (the staging buffer, where what
 * follows the CM message is kept for the stream). Return 1 when bytes
 * came, 0 when none for now, -errno at EOF (-ECONNRESET) or on error.
 */
static int recv_in(struct pw_qp_i *qp)
{
	struct pw_qp_cm *cm = &qp->cm;
	ssize_t n;

	do {
		n = recv(qp->fd, qp->rx.buf + cm->in_got, PW_RX_STAGING - cm->in_got,
			 MSG_DONTWAIT);
	} while (n < 0 && errno == EINTR);
	if (n > 0) {
		cm->in_got += (uint32_t)n;
		qp->rx.sock_read += (uint64_t)n;
		return 1;
	}
	if (n < 0 && errno == EAGAIN)
		return 0;
	return n < 0 ? -errno : -ECONNRESET;
}

static void start_connect(struct pw_qp_i *qp);

/* Client: the TCP connect to cm.addrs[cm.ai] finished (or failed). */
static void connected(struct pw_qp_i *qp)
{
	struct pw_qp_cm *cm = &qp->cm;
	socklen_t sl = sizeof(cm->local);
	int err = 0;
	socklen_t el = sizeof(err);

	getsockopt(qp->fd, SOL_SOCKET, SO_ERROR, &err, &el);
	if (err) {
		unwatch(qp);
		close(qp->fd);
		qp->fd = -1;
		cm->ai++;
		cm->conn_err = -err;
		start_connect(qp);
		return;
	}
	{
		struct sockaddr_storage local;

		getsockname(qp->fd, (struct sockaddr *)&local, &sl);
		/* pw_query_qp reads it under the lock */
		pthread_mutex_lock(&qp->lock);
		cm->local = local;
		pthread_mutex_unlock(&qp->lock);
	}
	pw_cm_set_state(cm, PW_CM_REQ_SENT);
}

/* Client: connect to the next address, or tell why none worked. */
static void start_connect(struct pw_qp_i *qp)
{
	struct pw_qp_cm *cm = &qp->cm;
	char a[80];

	for (; cm->ai < cm->naddr; cm->ai++) {
		const struct sockaddr *sa = (const struct sockaddr *)&cm->addrs[cm->ai];
		int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

		if (fd < 0) {
			cm->conn_err = -errno;
			continue;
		}
		pw_cm_tune_socket(fd);
		pthread_mutex_lock(&qp->lock);
		cm->remote = cm->addrs[cm->ai];
		pthread_mutex_unlock(&qp->lock);
		/*
		 * The source the caller named, as rdma_resolve_addr binds one:
		 * a peer that knows us by a listening address (ofi_rxm's
		 * address vector) must see connections come from it.
		 * SO_REUSEADDR lets a port that a closed listener held be
		 * bound again at once.
		 */
		if (cm->src_len) {
			int one = 1;

			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
			if (bind(fd, (const struct sockaddr *)&cm->src, cm->src_len) != 0) {
				cm->conn_err = -errno;
				cm->bind_failed = true;
				close(fd);
				continue;
			}
		}
		qp->fd = fd;
		if (connect(fd, sa, cm->addr_len[cm->ai]) == 0 || errno == EINPROGRESS) {
			pw_cm_set_state(cm, PW_CM_CONNECTING);
			watch(qp, EPOLLOUT | EPOLLIN | EPOLLRDHUP);
			return;
		}
		cm->conn_err = -errno;
		close(fd);
		qp->fd = -1;
	}
	addr_str(&cm->remote, a, sizeof(a));
	if (cm->bind_failed && cm->conn_err) {
		char b[80];

		addr_str(&cm->src, b, sizeof(b));
		cm_fail(qp, PW_CM_EVENT_UNREACHABLE, cm->conn_err, NULL, 0,
			"pw_connect: %s: cannot connect from %s (%s)", a, b,
			strerror(-cm->conn_err));
	} else if (cm->conn_err == -ECONNREFUSED)
		cm_fail(qp, PW_CM_EVENT_REJECTED, -ECONNREFUSED, NULL, 0,
			"pw_connect: %s: nobody listens there (%s)", a, strerror(ECONNREFUSED));
	else
		cm_fail(qp, PW_CM_EVENT_UNREACHABLE,
			cm->conn_err ? cm->conn_err : -EHOSTUNREACH, NULL, 0,
			"pw_connect: %s: %s", a,
			strerror(cm->conn_err ? -cm->conn_err : EHOSTUNREACH));
}

/* Client: the answer to CONNECT_REQ, as far as it has come. */
static void read_answer(struct pw_qp_i *qp)
{
	struct pw_qp_cm *cm = &qp->cm;
	struct pw_wire_conn peer;
	struct pw_hdr h;
	uint32_t total;
	char a[80];
	int r;

	addr_str(&cm->remote, a, sizeof(a));
	r = recv_in(qp);
	if (r < 0) {
		cm_fail(qp, PW_CM_EVENT_CONNECT_ERROR, r, NULL, 0,
			"pw_connect: handshake with %s failed: %s", a, strerror(-r));
		return;
	}
	if (cm->in_got < PW_WIRE_HDR_LEN)
		return;
	if (pw_wire_decode_hdr(qp->rx.buf, cm->in_got, &h) ||
	    (h.opcode != PW_OP_CONNECT_REP && h.opcode != PW_OP_CONNECT_REJ)) {
		cm_fail(qp, PW_CM_EVENT_CONNECT_ERROR, -EPROTO, NULL, 0,
			"pw_connect: %s does not speak the pagewire protocol", a);
		return;
	}
	/* the opcode table bounds a connection payload to 288 bytes */
	total = PW_WIRE_HDR_LEN + h.payload_len;
	if (cm->in_got < total)
		return;
	if (pw_wire_decode_conn(qp->rx.buf + PW_WIRE_HDR_LEN, h.payload_len, &peer)) {
		cm_fail(qp, PW_CM_EVENT_CONNECT_ERROR, -EPROTO, NULL, 0,
			"pw_connect: %s sent a malformed answer", a);
		return;
	}
	if (h.opcode == PW_OP_CONNECT_REJ) {
		int st = peer.reason == EPROTO ? -EPROTO : -ECONNREFUSED;

		cm_fail(qp, PW_CM_EVENT_REJECTED, st, peer.pdata, peer.pdata_len,
			"pw_connect: %s rejected the connection (reason %u)", a,
			peer.reason);
		return;
	}
	if (peer.min_version > PW_WIRE_VERSION || peer.max_version < PW_WIRE_VERSION) {
		cm_fail(qp, PW_CM_EVENT_CONNECT_ERROR, -EPROTO, NULL, 0,
			"pw_connect: peer speaks protocol versions %u..%u, we speak %u",
			peer.min_version, peer.max_version, PW_WIRE_VERSION);
		return;
	}
	/* RTU: only when both offered LINK */
	cm->want_rtu = peer.features & cm->offered & PW_WIRE_FEAT_LINK;
	go_live(qp, h.psn, &peer, total);
}

/* Server: the client's CONNECT_RTU, as far as it has come. */
static void read_rtu(struct pw_qp_i *qp)
{
	struct pw_qp_cm *cm = &qp->cm;
	struct pw_hdr h;
	char a[80];
	int r;

	addr_str(&cm->remote, a, sizeof(a));
	r = recv_in(qp);
	if (r < 0) {
		cm_fail(qp, PW_CM_EVENT_CONNECT_ERROR, r, NULL, 0,
			"pw_accept: the client at %s left before the connection was up", a);
		return;
	}
	if (cm->in_got < PW_WIRE_HDR_LEN)
		return;
	if (pw_wire_decode_hdr(qp->rx.buf, cm->in_got, &h) ||
	    h.opcode != PW_OP_CONNECT_RTU) {
		cm_fail(qp, PW_CM_EVENT_CONNECT_ERROR, -EPROTO, NULL, 0,
			"pw_accept: the client at %s sent no CONNECT_RTU", a);
		return;
	}
	go_live(qp, cm->peer_psn, &cm->peer, PW_WIRE_HDR_LEN);
}

/* Server: CONNECT_REP out; go live, or wait for the RTU. */
static void rep_step(struct pw_qp_i *qp)
{
	struct pw_qp_cm *cm = &qp->cm;
	int r = send_out(qp);

	if (r == 0) {
		watch(qp, EPOLLOUT | EPOLLIN | EPOLLRDHUP);
		return;
	}
	if (r < 0) {
		cm_fail(qp, PW_CM_EVENT_CONNECT_ERROR, r, NULL, 0,
			"pw_accept: the client left: %s", strerror(-r));
		return;
	}
	if (cm->want_rtu) {
		pw_cm_set_state(cm, PW_CM_WAIT_RTU);
		watch(qp, EPOLLIN | EPOLLRDHUP);
		/* it may be here already */
		read_rtu(qp);
		return;
	}
	/* a client from before LINK: live once it has the answer */
	go_live(qp, cm->peer_psn, &cm->peer, 0);
}

/* Client: CONNECT_REQ out, then the answer. */
static void req_step(struct pw_qp_i *qp, uint32_t events)
{
	int r;

	if (qp->cm.out_off < qp->cm.out_len) {
		r = send_out(qp);
		if (r < 0) {
			char a[80];

			cm_fail(qp, PW_CM_EVENT_CONNECT_ERROR, r, NULL, 0,
				"pw_connect: handshake with %s failed: %s",
				addr_str(&qp->cm.remote, a, sizeof(a)), strerror(-r));
			return;
		}
		watch(qp, r ? EPOLLIN | EPOLLRDHUP : EPOLLOUT | EPOLLIN | EPOLLRDHUP);
		if (!r)
			return;
	}
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP))
		read_answer(qp);
}

void pw_cm_qp_events(struct pw_qp_i *qp, uint32_t events)
{
	switch (pw_cm_state(&qp->cm)) {
	case PW_CM_CONNECTING:
		connected(qp);
		if (pw_cm_state(&qp->cm) == PW_CM_REQ_SENT)
			req_step(qp, events);
		break;
	case PW_CM_REQ_SENT:
		req_step(qp, events);
		break;
	case PW_CM_REP_SENDING:
		rep_step(qp);
		break;
	case PW_CM_WAIT_RTU:
		read_rtu(qp);
		break;
	default:
		/* failed: nothing is watched any more */
		break;
	}
}

void pw_cm_qp_added(struct pw_qp_i *qp)
{
	if (pw_cm_state(&qp->cm) == PW_CM_CONNECTING)
		start_connect(qp);
	else if (pw_cm_state(&qp->cm) == PW_CM_REP_SENDING)
		rep_step(qp);
}

static bool in_handshake(const struct pw_qp_i *qp)
{
	int st = pw_cm_state(&qp->cm);

	return st >= PW_CM_CONNECTING && st <= PW_CM_WAIT_RTU;
}

uint64_t pw_cm_first_deadline(struct pw_engine *eng)
{
	uint64_t first = UINT64_MAX;

	for (struct pw_qp_i *qp = eng->qps; qp; qp = qp->eng_next)
		if (in_handshake(qp) && qp->cm.deadline_ns < first)
			first = qp->cm.deadline_ns;
	return first;
}

void pw_cm_timers(struct pw_engine *eng, uint64_t now)
{
	for (struct pw_qp_i *qp = eng->qps; qp; qp = qp->eng_next) {
		char a[80];

		if (!in_handshake(qp) || qp->cm.deadline_ns > now)
			continue;
		addr_str(&qp->cm.remote, a, sizeof(a));
		if (pw_cm_state(&qp->cm) <= PW_CM_REQ_SENT)
			cm_fail(qp, PW_CM_EVENT_UNREACHABLE, -ETIMEDOUT, NULL, 0,
				"pw_connect: no answer from %s in time", a);
		else
			cm_fail(qp, PW_CM_EVENT_CONNECT_ERROR, -ETIMEDOUT, NULL, 0,
				"pw_accept: the client at %s never confirmed", a);
	}
}

/* ------------------------------------------------------------------ */
/* Disconnection events                                                */
/* ------------------------------------------------------------------ */

static int cause_status(enum pw_qp_cause c)
{
	switch (c) {
	case PW_QP_CAUSE_NONE:
	case PW_QP_CAUSE_PEER_DISCONNECTED:
		return 0;
	case PW_QP_CAUSE_PEER_TIMEOUT:
		return -ETIMEDOUT;
	case PW_QP_CAUSE_PEER_CLOSED:
	case PW_QP_CAUSE_PEER_RESET:
		return -ECONNRESET;
	case PW_QP_CAUSE_PROTOCOL:
		return -EPROTO;
	case PW_QP_CAUSE_STOPPED:
		return -ECONNABORTED;
	default:
		return -EIO;
	}
}

static void maybe_timewait_locked(struct pw_qp_i *qp)
{
	/* nothing more will come: EOF seen, or reading given up */
	if (qp->cm.ev_sent[PW_CMEV_DISCONNECTED] && qp->shut_wr &&
	    (qp->rx.eof || qp->rx.dead))
		post_event_locked(qp, PW_CMEV_TIMEWAIT, PW_CM_EVENT_TIMEWAIT_EXIT, 0,
				  NULL, 0);
}

void pw_cm_qp_error_locked(struct pw_qp_i *qp)
{
	if (pw_cm_state(&qp->cm) != PW_CM_LIVE)
		return;
	post_event_locked(qp, PW_CMEV_DISCONNECTED, PW_CM_EVENT_DISCONNECTED,
			  cause_status(qp->err_cause), NULL, 0);
	maybe_timewait_locked(qp);
}

void pw_cm_qp_closing_locked(struct pw_qp_i *qp)
{
	if (pw_cm_state(&qp->cm) == PW_CM_LIVE)
		maybe_timewait_locked(qp);
}

void pw_cm_qp_gone(struct pw_qp_i *qp)
{
	for (int i = 0; i < PW_CMEV_N; i++)
		pw_cm_forget(&qp->cm.evn[i]);
	if (qp->cm.ch)
		atomic_fetch_sub_explicit(&qp->cm.ch->users, 1, memory_order_release);
}

/* ------------------------------------------------------------------ */
/* The verbs                                                           */
/* ------------------------------------------------------------------ */

/* Resolve @host:@port into cm.addrs. Return 0 or -EHOSTUNREACH. */
/* @family: AF_UNSPEC, or only addresses of that family (a source's) */
static int resolve(struct pw_qp_cm *cm, const char *host, uint16_t port,
		   int family)
{
	struct addrinfo hints = { .ai_family = family, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL, *ai;
	char pstr[8];

	snprintf(pstr, sizeof(pstr), "%u", port);
	if (!host || getaddrinfo(host, pstr, &hints, &res) != 0) {
		pw_set_error("pw_connect: cannot resolve '%s'", host ? host : "(null)");
		return -EHOSTUNREACH;
	}
	cm->naddr = 0;
	for (ai = res; ai && cm->naddr < PW_CM_ADDRS; ai = ai->ai_next) {
		if (ai->ai_addrlen > sizeof(cm->addrs[0]))
			continue;
		memcpy(&cm->addrs[cm->naddr], ai->ai_addr, ai->ai_addrlen);
		cm->addr_len[cm->naddr++] = ai->ai_addrlen;
	}
	freeaddrinfo(res);
	if (!cm->naddr) {
		pw_set_error("pw_connect: '%s' has no address%s", host,
			     family == AF_UNSPEC ? "" : " of the source address's family");
		return -EHOSTUNREACH;
	}
	cm->remote = cm->addrs[0];
	return 0;
}

static void set_channel(struct pw_qp_i *qp, struct pw_cm_channel_i *ch)
{
	qp->cm.ch = ch;
	if (ch)
		atomic_fetch_add_explicit(&ch->users, 1, memory_order_relaxed);
}

/* Wait for the handshake of @qp (pw_connect, pw_accept). Return 0 or -errno. */
static int wait_outcome(struct pw_qp_i *qp)
{
	struct pw_context *ctx = qp->ctx;
	int ret;

	pthread_mutex_lock(&ctx->cm_lock);
	while (!qp->cm.done)
		pthread_cond_wait(&ctx->cm_cond, &ctx->cm_lock);
	ret = qp->cm.result;
	if (ret && qp->cm.msg[0])
		pw_set_error("%s", qp->cm.msg);
	pthread_mutex_unlock(&ctx->cm_lock);
	return ret;
}

static struct pw_qp_i *connect_start(struct pw_pd *pd, struct pw_qp_init_attr *attr,
				     const char *host, uint16_t port,
				     const struct pw_conn_param *param,
				     struct pw_cm_channel_i *ch)
{
	struct pw_qp_i *qp;
	int ret;

	pw_clear_error();
	if (!pd || !attr || (ch && ch->ibch.context != pd->context)) {
		errno = EINVAL;
		return NULL;
	}
	ret = check_param("pw_connect", param, true);
	if (ret) {
		errno = -ret;
		return NULL;
	}
	qp = pw_qp_create(pd, attr, -1);
	if (!qp)
		return NULL;
	if (param && param->src_addr) {
		qp->cm.src_len = param->src_addr->sa_family == AF_INET ?
				 sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
		memcpy(&qp->cm.src, param->src_addr, qp->cm.src_len);
	}
	ret = resolve(&qp->cm, host, port,
		      qp->cm.src_len ? qp->cm.src.ss_family : AF_UNSPEC);
	if (ret) {
		pw_qp_free(qp);
		errno = -ret;
		return NULL;
	}
	qp->cm.offered = offered_features(qp->ctx);
	qp->cm.my_psn = random_psn();
	qp->cm.deadline_ns = deadline_of(param ? param->timeout_ms : 0,
					 PW_DEF_CM_TIMEOUT_MS);
	build_conn(qp, PW_OP_CONNECT_REQ, qp->cm.my_psn, attr, param);
	qp->cm.client = true;
	set_channel(qp, ch);
	pw_cm_set_state(&qp->cm, PW_CM_CONNECTING);
	/* the engine connects, sends the request and reads the answer */
	pw_engine_add_qp(&qp->ctx->engine, qp);
	return qp;
}

struct pw_qp *pw_connect_async(struct pw_pd *pd, struct pw_qp_init_attr *attr,
			       const char *host, uint16_t port,
			       const struct pw_conn_param *param,
			       struct pw_cm_channel *ch)
{
	struct pw_qp_i *qp;

	if (!ch) {
		errno = EINVAL;
		return NULL;
	}
	qp = connect_start(pd, attr, host, port, param, to_cm_channel(ch));
	return qp ? &qp->ibqp : NULL;
}

struct pw_qp *pw_connect(struct pw_pd *pd, struct pw_qp_init_attr *attr,
			 const char *host, uint16_t port,
			 const struct pw_conn_param *param)
{
	struct pw_qp_i *qp = connect_start(pd, attr, host, port, param, NULL);
	int ret;

	if (!qp)
		return NULL;
	ret = wait_outcome(qp);
	if (ret) {
		pw_destroy_qp(&qp->ibqp);
		errno = -ret;
		return NULL;
	}
	return &qp->ibqp;
}

/* The request's event was acknowledged after it was answered: free it now. */
static void request_release_late(struct pw_cm_ev_node *n)
{
	free(container_of(n, struct pw_conn_request, evn));
}

/* Done with @req: out of its listener, its event given back, freed. */
static void request_done(struct pw_conn_request *req)
{
	pw_request_release(req);
	if (req->fd >= 0)
		close(req->fd);
	req->fd = -1;
	if (pw_cm_detach(&req->evn, request_release_late))
		free(req);
}

static struct pw_qp_i *accept_start(struct pw_conn_request *req, struct pw_pd *pd,
				    struct pw_qp_init_attr *attr,
				    const struct pw_conn_param *param,
				    struct pw_cm_channel_i *ch)
{
	struct pw_qp_i *qp;
	int err;

	qp = pw_qp_create(pd, attr, -1);
	if (!qp) {
		err = errno;
		request_done(req);
		errno = err;
		return NULL;
	}
	qp->cm.offered = offered_features(qp->ctx);
	qp->cm.my_psn = random_psn();
	qp->cm.peer = req->conn;
	qp->cm.peer_psn = req->hdr.psn;
	qp->cm.want_rtu = req->conn.features & qp->cm.offered & PW_WIRE_FEAT_LINK;
	qp->cm.remote = req->peer;
	{
		socklen_t sl = sizeof(qp->cm.local);

		getsockname(req->fd, (struct sockaddr *)&qp->cm.local, &sl);
	}
	qp->cm.deadline_ns = deadline_of(param ? param->timeout_ms : 0,
					 (int)qp->ctx->handshake_ms);
	build_conn(qp, PW_OP_CONNECT_REP, qp->cm.my_psn, attr, param);
	qp->fd = req->fd;
	req->fd = -1;
	request_done(req);
	set_channel(qp, ch);
	pw_cm_set_state(&qp->cm, PW_CM_REP_SENDING);
	/* the engine sends the answer and waits for the RTU */
	pw_engine_add_qp(&qp->ctx->engine, qp);
	return qp;
}

struct pw_qp *pw_accept_request(struct pw_conn_request *req, struct pw_pd *pd,
				struct pw_qp_init_attr *attr,
				const struct pw_conn_param *param)
{
	struct pw_cm_channel_i *ch;
	struct pw_qp_i *qp;
	int ret;

	pw_clear_error();
	if (!req)
		goto einval;
	if (!pd || !attr || pd->context != req->ctx) {
		request_done(req);
		goto einval;
	}
	ret = check_param("pw_accept_request", param, false);
	if (ret) {
		request_done(req);
		errno = -ret;
		return NULL;
	}
	ch = req->evn.ch;
	qp = accept_start(req, pd, attr, param, ch);
	return qp ? &qp->ibqp : NULL;
einval:
	errno = EINVAL;
	return NULL;
}

int pw_reject(struct pw_conn_request *req, const void *private_data,
	      uint32_t private_data_len)
{
	struct pw_wire_conn rej;
	uint8_t buf[PW_CM_REQ_MAX];
	struct pw_hdr h = { .opcode = PW_OP_CONNECT_REJ };
	int n;

	if (!req)
		return -EINVAL;
	if (private_data_len > PW_MAX_PRIVATE_DATA ||
	    (private_data_len && !private_data)) {
		pw_set_error("pw_reject: private data is limited to %d bytes",
			     PW_MAX_PRIVATE_DATA);
		request_done(req);
		return -EINVAL;
	}
	memset(&rej, 0, sizeof(rej));
	rej.min_version = PW_WIRE_VERSION;
	rej.max_version = PW_WIRE_VERSION;
	rej.reason = ECONNREFUSED;
	rej.pdata_len = (uint16_t)private_data_len;
	if (private_data_len)
		memcpy(rej.pdata, private_data, private_data_len);
	n = pw_wire_encode_conn(&rej, buf + PW_WIRE_HDR_LEN, sizeof(buf) - PW_WIRE_HDR_LEN);
	h.payload_len = (uint32_t)n;
	pw_wire_encode_hdr(&h, buf);
	/* at most 336 bytes into a socket that carried only the request */
	(void)!send(req->fd, buf, PW_WIRE_HDR_LEN + (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
	request_done(req);
	return 0;
}

struct pw_qp *pw_accept(struct pw_listener *l, struct pw_pd *pd,
			struct pw_qp_init_attr *attr,
			const struct pw_conn_param *param)
{
	uint64_t deadline = deadline_of(param ? param->timeout_ms : 0,
					PW_DEF_CM_TIMEOUT_MS);
	int ret;

	pw_clear_error();
	if (!l || !pd || !attr || pd->context != l->ctx || l->ch) {
		errno = EINVAL;
		return NULL;
	}
	ret = check_param("pw_accept", param, false);
	if (ret) {
		errno = -ret;
		return NULL;
	}
	for (;;) {
		struct pw_conn_param p = param ? *param : (struct pw_conn_param){ 0 };
		struct pw_qp_init_attr a = *attr;
		struct pw_conn_request *req;
		struct pw_qp_i *qp;
		uint64_t now;

		ret = pw_listener_take(l, deadline, &req);
		if (ret)
			break;
		/* the client's RTU: within the handshake time, and ours */
		now = pw_now_ns();
		p.timeout_ms = deadline == UINT64_MAX ? 0 :
			       (int)PW_MAX((deadline > now ? deadline - now : 0) / 1000000ull, 1ull);
		if (p.timeout_ms > (int)l->ctx->handshake_ms)
			p.timeout_ms = (int)l->ctx->handshake_ms;
		qp = accept_start(req, pd, &a, &p, NULL);
		if (!qp) {
			ret = -errno;
			break;
		}
		ret = wait_outcome(qp);
		if (!ret) {
			*attr = a;
			return &qp->ibqp;
		}
		/* a client that gave up, or broke the handshake: the next one */
		pw_destroy_qp(&qp->ibqp);
		atomic_fetch_add_explicit(&l->ctx->conn_failed, 1, memory_order_relaxed);
	}
	if (ret == -ETIMEDOUT || !*pw_last_error())
		pw_set_error("pw_accept: %s", strerror(-ret));
	errno = -ret;
	return NULL;
}

/* ------------------------------------------------------------------ */
/* The fuzz harnesses' hooks                                           */
/* ------------------------------------------------------------------ */

struct pw_qp *pw_qp_attach_fd(struct pw_pd *pd, struct pw_qp_init_attr *attr,
			      int fd, uint32_t my_psn, uint32_t peer_psn,
			      uint32_t peer_features)
{
	struct pw_qp_i *qp;

	if (!pd || !attr || fd < 0) {
		errno = EINVAL;
		return NULL;
	}
	qp = pw_qp_create(pd, attr, -1);
	if (!qp)
		return NULL;
	qp->fd = fd;
	qp->next_psn = my_psn;
	qp->exp_psn = peer_psn;
	qp->ibqp.dest_qp_num = 1;
	qp->features = peer_features & offered_features(qp->ctx);
	pw_notify_qp_live(qp, qp->features);
	pw_live_init(qp);
	pw_cm_set_state(&qp->cm, PW_CM_NONE);
	atomic_store_explicit(&qp->state, PW_QPS_RTS, memory_order_release);
	pw_engine_add_qp(&qp->ctx->engine, qp);
	return &qp->ibqp;
}

struct pw_qp *pw_cm_accept_fd(struct pw_pd *pd, struct pw_qp_init_attr *attr,
			      int fd, int timeout_ms)
{
	struct pw_conn_param p = { .timeout_ms = timeout_ms };
	uint64_t deadline = pw_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	struct pw_conn_request *req;
	uint8_t buf[PW_CM_REQ_MAX];
	uint32_t got = 0;
	struct pw_qp_i *qp;
	int need, ret;

	if (!pd || !attr || fd < 0) {
		errno = EINVAL;
		return NULL;
	}
	req = calloc(1, sizeof(*req));
	if (!req) {
		errno = ENOMEM;
		return NULL;
	}
	/* the listener's reader, on one connection: the request, never more */
	while ((need = pw_cm_req_parse(buf, got, &req->hdr, &req->conn)) > 0) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		ssize_t n = recv(fd, buf + got, (size_t)need, MSG_DONTWAIT);
		uint64_t now = pw_now_ns();

		if (n > 0) {
			got += (uint32_t)n;
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR) || now >= deadline) {
			need = n == 0 ? -ECONNRESET : now >= deadline ? -ETIMEDOUT : -errno;
			break;
		}
		(void)poll(&pf, 1, (int)((deadline - now) / 1000000ull) + 1);
	}
	if (need < 0 || req->conn.min_version > PW_WIRE_VERSION ||
	    req->conn.max_version < PW_WIRE_VERSION) {
		free(req);
		errno = need < 0 ? -need : EPROTO;
		return NULL;
	}
	req->ctx = pd->context;
	req->fd = dup(fd);
	if (req->fd < 0) {
		ret = errno;
		free(req);
		errno = ret;
		return NULL;
	}
	qp = accept_start(req, pd, attr, &p, NULL);
	if (!qp)
		return NULL;
	ret = wait_outcome(qp);
	if (ret) {
		pw_destroy_qp(&qp->ibqp);
		errno = -ret;
		return NULL;
	}
	/* the caller's fd is the QP's now */
	close(fd);
	return &qp->ibqp;
}
