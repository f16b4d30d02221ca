/* SPDX-License-Identifier: MIT */
/*
 * Connection manager: a TCP listener and a one-round-trip handshake
 * (CONNECT_REQ -> CONNECT_REP / CONNECT_REJ) that exchanges QP numbers,
 * initial PSNs, READ/ATOMIC credits, protocol versions and up to 256 bytes
 * of private data each way, as rdma_cm does. The handshake runs on the
 * calling thread with deadlines; only then is the socket handed to the
 * progress engine.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/context.h"
#include "engine/qp.h"

#define PW_DEF_CM_TIMEOUT_MS	10000
#define PW_CM_REQ_MAX	(PW_WIRE_HDR_LEN + PW_WIRE_CONN_FIXED_LEN + PW_WIRE_MAX_PDATA)
#define PW_CM_STARVED_NS	(50 * 1000000ull)	/* listener rest when out of fds */

/*
 * An incoming connection whose CONNECT_REQ is not all here yet (or is,
 * and waits for a pw_accept). Bytes are taken as they come, so one silent
 * client never holds up the others (issue 7: a half-open flood must not
 * starve real clients).
 */
struct pw_half_open {
	int fd;
	uint32_t got;		/* bytes of buf filled */
	bool ready;		/* a whole, valid CONNECT_REQ is in buf */
	uint64_t deadline;	/* ns: handshake_ms after accept4 */
	uint8_t buf[PW_CM_REQ_MAX];
};

struct pw_listener {
	struct pw_context *ctx;
	int fd;
	uint16_t port;
	/*
	 * pw_listener_fd(): an epoll set of the listening socket, the
	 * handshake set's sockets and @readyfd (an eventfd, readable while a
	 * whole request waits in the set), so that it is readable whenever
	 * pw_accept() has something to do.
	 */
	int epfd, readyfd;
	/*
	 * lock: one pw_accept at a time per listener (the others wait for it
	 * at most their timeout); protects the handshake set ho[0..nho), kept
	 * in arrival order (the oldest is dropped first), @ready_signalled
	 * and @starved_until (accept4 ran out of fds: the listener is not
	 * polled until then, so that pw_accept does not spin on it).
	 */
	pthread_mutex_t lock;
	uint32_t nho, max_ho;
	struct pw_half_open *ho;
	struct pollfd *pfd;	/* max_ho + 1: the listener, then ho[] */
	bool ready_signalled;
	uint64_t starved_until;
};

static uint64_t deadline_of(int timeout_ms)
{
	if (timeout_ms < 0)
		return UINT64_MAX;
	if (timeout_ms == 0)
		timeout_ms = PW_DEF_CM_TIMEOUT_MS;
	return pw_now_ns() + (uint64_t)timeout_ms * 1000000ull;
}

static int wait_fd(int fd, short events, uint64_t deadline)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = events };
		uint64_t now = pw_now_ns();
		int ms, r;

		if (deadline != UINT64_MAX && now >= deadline)
			return -ETIMEDOUT;
		ms = deadline == UINT64_MAX ? -1 :
		     (int)PW_MIN((deadline - now + 999999) / 1000000, (uint64_t)INT32_MAX);
		r = poll(&p, 1, ms);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
	}
}

static int io_all(int fd, void *buf, size_t len, bool out, uint64_t deadline)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = out ? send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT) :
				  recv(fd, p, len, MSG_DONTWAIT);
		int ret;

		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n == 0)
			return -ECONNRESET;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return -errno;
		ret = wait_fd(fd, out ? POLLOUT : POLLIN, deadline);
		if (ret)
			return ret;
	}
	return 0;
}

/* Latency: a request must not wait for Nagle; the engine never blocks. */
static void tune_socket(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
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

static int send_cm(int fd, uint8_t op, uint32_t psn, const struct pw_wire_conn *c,
		   uint64_t deadline)
{
	uint8_t buf[PW_WIRE_HDR_LEN + PW_WIRE_CONN_FIXED_LEN + PW_WIRE_MAX_PDATA];
	struct pw_hdr h = { .opcode = op, .psn = psn };
	int n = pw_wire_encode_conn(c, buf + PW_WIRE_HDR_LEN,
				    sizeof(buf) - PW_WIRE_HDR_LEN);

	if (n < 0)
		return n;
	h.payload_len = (uint32_t)n;
	pw_wire_encode_hdr(&h, buf);
	return io_all(fd, buf, PW_WIRE_HDR_LEN + (size_t)n, true, deadline);
}

/* Read exactly one CM message: nothing beyond it leaves the socket. */
static int recv_cm(int fd, struct pw_hdr *h, struct pw_wire_conn *c,
		   uint64_t deadline)
{
	uint8_t buf[PW_WIRE_CONN_FIXED_LEN + PW_WIRE_MAX_PDATA];
	uint8_t hb[PW_WIRE_HDR_LEN];
	int ret;

	ret = io_all(fd, hb, sizeof(hb), false, deadline);
	if (ret)
		return ret;
	ret = pw_wire_decode_hdr(hb, sizeof(hb), h);
	if (ret)
		return -EPROTO;
	if (pw_wire_ops[h->opcode].cls != PW_WC_CLASS_CM)
		return -EPROTO;
	/* the opcode table bounds payload_len to sizeof(buf) */
	ret = io_all(fd, buf, h->payload_len, false, deadline);
	if (ret)
		return ret;
	return pw_wire_decode_conn(buf, h->payload_len, c) ? -EPROTO : 0;
}

static uint32_t offered_features(const struct pw_qp_i *qp)
{
	return PW_WIRE_FEAT_FAULT_NAK |
	       (qp->ctx->no_link ? 0 : PW_WIRE_FEAT_LINK) |
	       (qp->ctx->no_notify ? 0 : PW_WIRE_FEAT_NOTIFY);
}

static void fill_conn(struct pw_wire_conn *c, struct pw_qp_i *qp,
		      const struct pw_qp_init_attr *attr,
		      const struct pw_conn_param *param)
{
	memset(c, 0, sizeof(*c));
	c->min_version = PW_WIRE_VERSION;
	c->max_version = PW_WIRE_VERSION;
	c->features = offered_features(qp);
	c->qpn = qp->ibqp.qp_num;
	c->max_rd_atomic = attr->max_rd_atomic;
	c->max_dest_rd_atomic = attr->max_dest_rd_atomic;
	if (param && param->private_data_len) {
		c->pdata_len = (uint16_t)param->private_data_len;
		memcpy(c->pdata, param->private_data, param->private_data_len);
	}
}

/* The handshake succeeded: adopt the peer's parameters and go live. */
static void go_live(struct pw_qp_i *qp, int fd, uint32_t my_psn,
		    const struct pw_hdr *h, const struct pw_wire_conn *peer)
{
	qp->fd = fd;
	qp->next_psn = my_psn;
	qp->exp_psn = h->psn;
	qp->ibqp.dest_qp_num = peer->qpn;
	/* a feature is in use when both sides set it (docs/wire.md §12) */
	qp->features = peer->features & offered_features(qp);
	set_peer_timeout(fd, qp->peer_timeout_ms, qp->features & PW_WIRE_FEAT_LINK);
	pw_notify_qp_live(qp, qp->features);
	pw_live_init(qp);
	if (peer->max_dest_rd_atomic && peer->max_dest_rd_atomic < qp->rd_max)
		qp->rd_max = peer->max_dest_rd_atomic;
	memcpy(qp->ibqp.peer_private_data, peer->pdata, peer->pdata_len);
	qp->ibqp.peer_private_data_len = peer->pdata_len;
	pw_engine_add_qp(&qp->ctx->engine, qp);
}

static uint32_t random_psn(void)
{
	uint32_t v;

	pw_random_bytes(&v, sizeof(v));
	return v & 0xffffff;	/* IBA-sized, leaves room to see wraps in logs */
}

static int check_param(const struct pw_conn_param *param)
{
	if (param && (param->private_data_len > PW_MAX_PRIVATE_DATA ||
		      (param->private_data_len && !param->private_data))) {
		pw_set_error("private data is limited to %d bytes", PW_MAX_PRIVATE_DATA);
		return -EINVAL;
	}
	return 0;
}

static int epoll_add(int epfd, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };

	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

struct pw_listener *pw_listen(struct pw_context *ctx, const char *host,
			      uint16_t port)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE };
	struct addrinfo *res = NULL, *ai;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct pw_listener *l;
	char pstr[8];
	int fd = -1, one = 1, err = EADDRNOTAVAIL;

	if (!ctx) {
		errno = EINVAL;
		return NULL;
	}
	snprintf(pstr, sizeof(pstr), "%u", port);
	if (getaddrinfo(host && *host ? host : NULL, pstr, &hints, &res) != 0) {
		pw_set_error("pw_listen: cannot resolve '%s'", host ? host : "");
		errno = EADDRNOTAVAIL;
		return NULL;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 128) == 0)
			break;
		err = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		pw_set_error("pw_listen: cannot listen on port %u: %s", port, strerror(err));
		errno = err;
		return NULL;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	l = calloc(1, sizeof(*l));
	if (!l) {
		err = ENOMEM;
		goto err_fd;
	}
	l->ho = calloc(ctx->max_half_open, sizeof(*l->ho));
	l->pfd = calloc(ctx->max_half_open + 1, sizeof(*l->pfd));
	if (!l->ho || !l->pfd) {
		err = ENOMEM;
		goto err_l;
	}
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		err = errno;
		goto err_ho;
	}
	l->readyfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (l->readyfd < 0) {
		err = errno;
		goto err_ep;
	}
	if (epoll_add(l->epfd, fd) || epoll_add(l->epfd, l->readyfd)) {
		err = errno;
		goto err_ready;
	}
	pthread_mutex_init(&l->lock, NULL);
	l->max_ho = ctx->max_half_open;
	l->ctx = ctx;
	l->fd = fd;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		l->port = ntohs(ss.ss_family == AF_INET6 ?
				((struct sockaddr_in6 *)&ss)->sin6_port :
				((struct sockaddr_in *)&ss)->sin_port);
	pthread_mutex_lock(&ctx->obj_lock);
	ctx->nlistener++;
	pthread_mutex_unlock(&ctx->obj_lock);
	return l;

err_ready:
	close(l->readyfd);
err_ep:
	close(l->epfd);
err_ho:
	free(l->pfd);
	free(l->ho);
err_l:
	free(l);
err_fd:
	close(fd);
	pw_set_error("pw_listen: %s", strerror(err));
	errno = err;
	return NULL;
}

uint16_t pw_listener_port(const struct pw_listener *l)
{
	return l ? l->port : 0;
}

int pw_listener_fd(const struct pw_listener *l)
{
	return l ? l->epfd : -EINVAL;
}

int pw_close_listener(struct pw_listener *l)
{
	if (!l)
		return -EINVAL;
	close(l->fd);
	for (uint32_t i = 0; i < l->nho; i++)
		close(l->ho[i].fd);
	close(l->readyfd);
	close(l->epfd);
	pthread_mutex_lock(&l->ctx->obj_lock);
	l->ctx->nlistener--;
	pthread_mutex_unlock(&l->ctx->obj_lock);
	pthread_mutex_destroy(&l->lock);
	free(l->pfd);
	free(l->ho);
	free(l);
	return 0;
}

static int tcp_connect(const char *host, uint16_t port, uint64_t deadline)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL, *ai;
	char pstr[8];
	int fd = -1, ret = -ECONNREFUSED;

	snprintf(pstr, sizeof(pstr), "%u", port);
	if (!host || getaddrinfo(host, pstr, &hints, &res) != 0) {
		pw_set_error("pw_connect: cannot resolve '%s'", host ? host : "(null)");
		return -EHOSTUNREACH;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		int err = 0;
		socklen_t el = sizeof(err);

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
			if (errno != EINPROGRESS) {
				ret = -errno;
				goto next;
			}
			ret = wait_fd(fd, POLLOUT, deadline);
			if (ret)
				goto next;
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
			if (err) {
				ret = -err;
				goto next;
			}
		}
		ret = 0;
		break;
next:
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd >= 0 ? fd : ret;
}

struct pw_qp *pw_connect(struct pw_pd *pd, struct pw_qp_init_attr *attr,
			 const char *host, uint16_t port,
			 const struct pw_conn_param *param)
{
	uint64_t deadline = deadline_of(param ? param->timeout_ms : 0);
	struct pw_wire_conn mine, peer;
	struct pw_qp_i *qp;
	struct pw_hdr h;
	uint32_t psn = random_psn();
	int fd, ret;

	pw_clear_error();
	if (!pd || !attr) {
		errno = EINVAL;
		return NULL;
	}
	ret = check_param(param);
	if (ret)
		goto err;
	qp = pw_qp_create(pd, attr, -1);
	if (!qp)
		return NULL;
	fd = tcp_connect(host, port, deadline);
	if (fd < 0) {
		ret = fd;
		if (!*pw_last_error())
			pw_set_error("pw_connect: %s:%u: %s", host, port, strerror(-ret));
		goto err_qp;
	}
	tune_socket(fd);
	fill_conn(&mine, qp, attr, param);
	ret = send_cm(fd, PW_OP_CONNECT_REQ, psn, &mine, deadline);
	if (!ret)
		ret = recv_cm(fd, &h, &peer, deadline);
	if (ret) {
		pw_set_error("pw_connect: handshake with %s:%u failed: %s", host, port,
			     strerror(-ret));
		goto err_fd;
	}
	if (h.opcode == PW_OP_CONNECT_REJ) {
		pw_set_error("pw_connect: %s:%u rejected the connection (reason %u)",
			     host, port, peer.reason);
		ret = -ECONNREFUSED;
		goto err_fd;
	}
	if (h.opcode != PW_OP_CONNECT_REP || peer.min_version > PW_WIRE_VERSION ||
	    peer.max_version < PW_WIRE_VERSION) {
		pw_set_error("pw_connect: peer speaks protocol versions %u..%u, we speak %u",
			     peer.min_version, peer.max_version, PW_WIRE_VERSION);
		ret = -EPROTO;
		goto err_fd;
	}
	go_live(qp, fd, psn, &h, &peer);
	return &qp->ibqp;

err_fd:
	close(fd);
err_qp:
	pw_qp_free(qp);
err:
	errno = -ret;
	return NULL;
}

/*
 * Parse what has arrived of a CONNECT_REQ: a pure function of (buf, len).
 * Return the bytes still missing (> 0), 0 when @buf holds exactly one
 * valid request (@h and @peer filled), or -EPROTO.
 */
static int cm_req_parse(const uint8_t *buf, size_t len, struct pw_hdr *h,
			struct pw_wire_conn *peer)
{
	size_t total;

	if (len < PW_WIRE_HDR_LEN)
		return (int)(PW_WIRE_HDR_LEN - len);
	if (pw_wire_decode_hdr(buf, PW_WIRE_HDR_LEN, h) ||
	    h->opcode != PW_OP_CONNECT_REQ)
		return -EPROTO;
	/* the opcode table bounds a CM payload to the fixed part + pdata */
	total = PW_WIRE_HDR_LEN + (size_t)h->payload_len;
	if (total > PW_CM_REQ_MAX)
		return -EPROTO;
	if (len < total)
		return (int)(total - len);
	return pw_wire_decode_conn(buf + PW_WIRE_HDR_LEN, h->payload_len, peer) ?
	       -EPROTO : 0;
}

/*
 * Take what @ho's socket has of its request, never more (the rest of the
 * stream is the engine's). Return 1 when the request is whole and valid,
 * 0 when more must come, or -errno (EOF, not our protocol).
 */
static int ho_progress(struct pw_half_open *ho)
{
	struct pw_hdr h;
	struct pw_wire_conn peer;

	for (;;) {
		int need = cm_req_parse(ho->buf, ho->got, &h, &peer);
		ssize_t n;

		if (need < 0)
			return need;
		if (need == 0)
			return 1;
		n = recv(ho->fd, ho->buf + ho->got, (size_t)need, MSG_DONTWAIT);
		if (n > 0) {
			ho->got += (uint32_t)n;
			continue;
		}
		if (n == 0)
			return -ECONNRESET;
		if (errno == EINTR)
			continue;
		return errno == EAGAIN ? 0 : -errno;
	}
}

/*
 * A whole request came in: answer it (REP, or REJ for a version we do not
 * speak) and go live. Return 0, or -errno with @fd to be closed.
 */
static int handshake_finish(struct pw_qp_i *qp, int fd, const uint8_t *req,
			    uint32_t len, const struct pw_wire_conn *mine,
			    uint32_t psn, uint64_t deadline)
{
	struct pw_wire_conn peer;
	struct pw_hdr h;
	int ret;

	if (cm_req_parse(req, len, &h, &peer) != 0)
		return -EPROTO;
	if (peer.min_version > PW_WIRE_VERSION || peer.max_version < PW_WIRE_VERSION) {
		struct pw_wire_conn rej = { .min_version = PW_WIRE_VERSION,
					    .max_version = PW_WIRE_VERSION,
					    .reason = EPROTO };

		send_cm(fd, PW_OP_CONNECT_REJ, 0, &rej, deadline);
		return -EPROTO;
	}
	ret = send_cm(fd, PW_OP_CONNECT_REP, psn, mine, deadline);
	if (ret)
		return ret;
	go_live(qp, fd, psn, &h, &peer);
	return 0;
}

/* Take ho[i] out of the set (and of pw_listener_fd's epoll set); return its fd. */
static int ho_take_locked(struct pw_listener *l, uint32_t i)
{
	int fd = l->ho[i].fd;

	epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
	memmove(&l->ho[i], &l->ho[i + 1], (l->nho - i - 1) * sizeof(l->ho[0]));
	l->nho--;
	return fd;
}

static void ho_drop_locked(struct pw_listener *l, uint32_t i,
			   atomic_uint_fast64_t *counter)
{
	close(ho_take_locked(l, i));
	atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
}

/*
 * Room for one more connection: when the set is full, the oldest one
 * still silent goes (a real client sends its request at once, so it is
 * rarely the one; it gets a last read first), and only when a new one
 * is waiting. False when every entry has its whole request: new
 * connections then wait in the kernel's backlog for the next pw_accept,
 * as before the set existed.
 */
static bool ho_make_room_locked(struct pw_listener *l)
{
	struct pollfd p = { .fd = l->fd, .events = POLLIN };

	if (l->nho < l->max_ho)
		return true;
	/* nobody is waiting to come in: nobody has to make room */
	if (poll(&p, 1, 0) != 1)
		return false;
	for (uint32_t i = 0; i < l->nho; i++) {
		int ret;

		if (l->ho[i].ready)
			continue;
		ret = ho_progress(&l->ho[i]);
		if (ret == 1) {
			l->ho[i].ready = true;
			continue;
		}
		ho_drop_locked(l, i, ret < 0 ? &l->ctx->conn_failed :
					       &l->ctx->conn_dropped);
		return true;
	}
	return false;
}

/*
 * Take the connections the kernel has queued into the handshake set, as
 * far as there is room. Out of fds with nothing in the set: -EMFILE (or
 * the like) for the caller; with connections in the set, they time out
 * or finish and free fds, so the listener rests a little instead.
 */
static int ho_accept_locked(struct pw_listener *l)
{
	if (pw_now_ns() < l->starved_until)
		return 0;
	while (ho_make_room_locked(l)) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		struct pw_half_open *ho;
		int ret;

		if (fd < 0) {
			if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
				return 0;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				if (!l->nho)
					return -errno;
				l->starved_until = pw_now_ns() + PW_CM_STARVED_NS;
				return 0;
			}
			return -errno;
		}
		tune_socket(fd);
		ho = &l->ho[l->nho++];
		ho->fd = fd;
		ho->got = 0;
		ho->ready = false;
		ho->deadline = pw_now_ns() + (uint64_t)l->ctx->handshake_ms * 1000000ull;
		ret = ho_progress(ho);
		if (ret < 0) {
			l->nho--;
			close(fd);
			atomic_fetch_add_explicit(&l->ctx->conn_failed, 1,
						  memory_order_relaxed);
			continue;
		}
		ho->ready = ret == 1;
		/* readiness of pw_listener_fd() follows it from now on */
		if (!ho->ready && epoll_add(l->epfd, fd)) {
			l->nho--;
			close(fd);
			return -errno;
		}
	}
	return 0;
}

/* pw_listener_fd() is readable while a whole request waits in the set. */
static void ho_signal_locked(struct pw_listener *l)
{
	bool any = false;
	uint64_t v = 1;

	for (uint32_t i = 0; i < l->nho && !any; i++)
		any = l->ho[i].ready;
	if (any && !l->ready_signalled)
		l->ready_signalled = write(l->readyfd, &v, sizeof(v)) == sizeof(v);
	else if (!any && l->ready_signalled)
		l->ready_signalled = read(l->readyfd, &v, sizeof(v)) != sizeof(v);
}

/*
 * Right after ho_wait_locked: read what the polled connections have, and
 * drop those that failed. @pfd[i + 1] is ho[i] as it was polled.
 */
static void ho_read_locked(struct pw_listener *l)
{
	const struct pollfd *pfd = l->pfd;
	uint32_t n = l->nho;

	for (uint32_t i = 0, j = 0; j < n; j++) {
		struct pw_half_open *ho = &l->ho[i];
		int ret = 0;

		if (!ho->ready && pfd[j + 1].revents)
			ret = ho_progress(ho);
		if (ret < 0) {
			ho_drop_locked(l, i, &l->ctx->conn_failed);
			continue;
		}
		if (ret == 1) {
			/* whole: readyfd speaks for it from now on */
			ho->ready = true;
			epoll_ctl(l->epfd, EPOLL_CTL_DEL, ho->fd, NULL);
		}
		i++;
	}
}

/* Index of a connection whose request is whole, or -1; expires the late. */
static int ho_ready_locked(struct pw_listener *l)
{
	uint64_t now = pw_now_ns();

	for (uint32_t i = 0; i < l->nho;) {
		if (l->ho[i].ready)
			return (int)i;
		if (now >= l->ho[i].deadline) {
			ho_drop_locked(l, i, &l->ctx->conn_failed);
			continue;
		}
		i++;
	}
	return -1;
}

/*
 * Wait until the listener or a half-open connection has something, or
 * @deadline / the first handshake deadline passes.
 */
static int ho_wait_locked(struct pw_listener *l, uint64_t deadline)
{
	struct pollfd *pfd = l->pfd;
	uint64_t now = pw_now_ns(), until = deadline;
	int ms, r;

	/* a negative fd is not polled: the listener rests while starved */
	pfd[0] = (struct pollfd){ .fd = now < l->starved_until ? -1 : l->fd,
				  .events = POLLIN };
	if (now < l->starved_until)
		until = PW_MIN(until, l->starved_until);
	for (uint32_t i = 0; i < l->nho; i++) {
		pfd[i + 1] = (struct pollfd){ .fd = l->ho[i].fd, .events = POLLIN };
		until = PW_MIN(until, l->ho[i].deadline);
	}
	if (deadline != UINT64_MAX && now >= deadline)
		return -ETIMEDOUT;
	ms = until == UINT64_MAX ? -1 :
	     until <= now ? 0 :
	     (int)PW_MIN((until - now + 999999) / 1000000, (uint64_t)INT32_MAX);
	r = poll(pfd, l->nho + 1, ms);
	if (r < 0 && errno != EINTR)
		return -errno;
	if (r <= 0)
		for (uint32_t i = 0; i <= l->nho; i++)
			pfd[i].revents = 0;
	ho_read_locked(l);
	return 0;
}

/* Take @m by @deadline (CLOCK_MONOTONIC ns; UINT64_MAX: forever). */
static int lock_until(pthread_mutex_t *m, uint64_t deadline)
{
	struct timespec ts;
	uint64_t now = pw_now_ns(), left;

	if (deadline == UINT64_MAX)
		return -pthread_mutex_lock(m);
	/* pthread_mutex_timedlock counts in CLOCK_REALTIME */
	left = deadline > now ? deadline - now : 0;
	clock_gettime(CLOCK_REALTIME, &ts);
	left += (uint64_t)ts.tv_nsec;
	ts.tv_sec += (time_t)(left / 1000000000ull);
	ts.tv_nsec = (long)(left % 1000000000ull);
	return -pthread_mutex_timedlock(m, &ts);
}

struct pw_qp *pw_accept(struct pw_listener *l, struct pw_pd *pd,
			struct pw_qp_init_attr *attr,
			const struct pw_conn_param *param)
{
	uint64_t deadline = deadline_of(param ? param->timeout_ms : 0);
	struct pw_wire_conn mine;
	struct pw_qp_i *qp;
	uint32_t psn = random_psn();
	int ret;

	pw_clear_error();
	if (!l || !pd || !attr || pd->context != l->ctx) {
		errno = EINVAL;
		return NULL;
	}
	ret = check_param(param);
	if (ret) {
		errno = -ret;
		return NULL;
	}
	qp = pw_qp_create(pd, attr, -1);
	if (!qp)
		return NULL;
	fill_conn(&mine, qp, attr, param);
	ret = lock_until(&l->lock, deadline);
	if (ret)
		goto err_qp;
	for (;;) {
		uint64_t reply_by;
		int i, fd;

		ret = ho_accept_locked(l);
		if (ret)
			break;
		i = ho_ready_locked(l);
		if (i < 0) {
			ret = ho_wait_locked(l, deadline);
			if (ret)
				break;
			continue;
		}
		/* a whole request may have waited for us: the reply's own time */
		reply_by = PW_MIN(pw_now_ns() + (uint64_t)l->ctx->handshake_ms * 1000000ull,
				  deadline);
		ret = handshake_finish(qp, l->ho[i].fd, l->ho[i].buf, l->ho[i].got,
				       &mine, psn, reply_by);
		fd = ho_take_locked(l, (uint32_t)i);
		if (!ret) {
			ho_signal_locked(l);
			pthread_mutex_unlock(&l->lock);
			return &qp->ibqp;
		}
		/* a bad or dead client: drop it and keep listening */
		close(fd);
		atomic_fetch_add_explicit(&l->ctx->conn_failed, 1, memory_order_relaxed);
	}
	ho_signal_locked(l);
	pthread_mutex_unlock(&l->lock);
err_qp:
	pw_set_error("pw_accept: %s", strerror(-ret));
	pw_qp_free(qp);
	errno = -ret;
	return NULL;
}

/* The fuzz harnesses' hooks below: their arguments, and a QP not yet live. */
static struct pw_qp_i *harness_qp(struct pw_pd *pd, struct pw_qp_init_attr *attr,
				  int fd)
{
	if (!pd || !attr || fd < 0) {
		errno = EINVAL;
		return NULL;
	}
	return pw_qp_create(pd, attr, -1);
}

struct pw_qp *pw_qp_attach_fd(struct pw_pd *pd, struct pw_qp_init_attr *attr,
			      int fd, uint32_t my_psn, uint32_t peer_psn,
			      uint32_t peer_features)
{
	struct pw_wire_conn peer = { .min_version = PW_WIRE_VERSION,
				     .max_version = PW_WIRE_VERSION,
				     .features = peer_features, .qpn = 1 };
	struct pw_hdr h = { .psn = peer_psn };
	struct pw_qp_i *qp;

	qp = harness_qp(pd, attr, fd);
	if (!qp)
		return NULL;
	go_live(qp, fd, my_psn, &h, &peer);
	return &qp->ibqp;
}

struct pw_qp *pw_cm_accept_fd(struct pw_pd *pd, struct pw_qp_init_attr *attr,
			      int fd, int timeout_ms)
{
	uint64_t deadline = pw_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	struct pw_half_open ho = { .fd = fd };
	struct pw_wire_conn mine;
	struct pw_qp_i *qp;
	int ret;

	qp = harness_qp(pd, attr, fd);
	if (!qp)
		return NULL;
	fill_conn(&mine, qp, attr, NULL);
	/* pw_accept's incremental reader, byte stream by byte stream */
	while ((ret = ho_progress(&ho)) == 0) {
		ret = wait_fd(fd, POLLIN, deadline);
		if (ret)
			break;
	}
	if (ret == 1)
		ret = handshake_finish(qp, fd, ho.buf, ho.got, &mine, 0x100, deadline);
	if (ret) {
		pw_qp_free(qp);
		errno = -ret;
		return NULL;
	}
	return &qp->ibqp;
}
