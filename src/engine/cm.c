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
#include <sys/socket.h>
#include <unistd.h>

#include "core/context.h"
#include "engine/qp.h"

#define PW_DEF_CM_TIMEOUT_MS	10000
#define PW_HANDSHAKE_MS		5000	/* per incoming connection */

struct pw_listener {
	struct pw_context *ctx;
	int fd;
	uint16_t port;
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

/* Dead-peer detection bound (BRIEF: "none hang"): keepalive + user timeout. */
#define PW_KEEPIDLE_S		10
#define PW_KEEPINTVL_S		5
#define PW_KEEPCNT		3
#define PW_USER_TIMEOUT_MS	30000

static void tune_socket(int fd)
{
	int one = 1, idle = PW_KEEPIDLE_S, intvl = PW_KEEPINTVL_S;
	int cnt = PW_KEEPCNT, uto = PW_USER_TIMEOUT_MS;

	/* latency: a request must not wait for Nagle */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/*
	 * A peer host that vanishes without FIN/RST (power loss, partition)
	 * must still end in RETRY_EXC_ERR: idle links are probed, and unACKed
	 * data fails the connection after PW_USER_TIMEOUT_MS.
	 */
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &uto, sizeof(uto));
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
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
	pw_notify_qp_live(qp, qp->features);
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
		close(fd);
		errno = ENOMEM;
		return NULL;
	}
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
}

uint16_t pw_listener_port(const struct pw_listener *l)
{
	return l ? l->port : 0;
}

int pw_listener_fd(const struct pw_listener *l)
{
	return l ? l->fd : -EINVAL;
}

int pw_close_listener(struct pw_listener *l)
{
	if (!l)
		return -EINVAL;
	close(l->fd);
	pthread_mutex_lock(&l->ctx->obj_lock);
	l->ctx->nlistener--;
	pthread_mutex_unlock(&l->ctx->obj_lock);
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

/* Run one incoming handshake. Return 0 and fill @h/@peer, or -errno. */
static int handshake_in(int fd, struct pw_hdr *h, struct pw_wire_conn *peer,
			uint64_t deadline)
{
	uint64_t hs = pw_now_ns() + PW_HANDSHAKE_MS * 1000000ull;
	int ret;

	/* a silent half-open connection cannot hold the listener for long */
	ret = recv_cm(fd, h, peer, PW_MIN(hs, deadline));
	if (ret)
		return ret;
	if (h->opcode != PW_OP_CONNECT_REQ)
		return -EPROTO;
	if (peer->min_version > PW_WIRE_VERSION || peer->max_version < PW_WIRE_VERSION) {
		struct pw_wire_conn rej = { .min_version = PW_WIRE_VERSION,
					    .max_version = PW_WIRE_VERSION,
					    .reason = EPROTO };

		send_cm(fd, PW_OP_CONNECT_REJ, 0, &rej, PW_MIN(hs, deadline));
		return -EPROTO;
	}
	return 0;
}

struct pw_qp *pw_accept(struct pw_listener *l, struct pw_pd *pd,
			struct pw_qp_init_attr *attr,
			const struct pw_conn_param *param)
{
	uint64_t deadline = deadline_of(param ? param->timeout_ms : 0);
	struct pw_wire_conn mine, peer;
	struct pw_qp_i *qp;
	struct pw_hdr h;
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
	for (;;) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
				ret = -errno;
				break;
			}
			ret = wait_fd(l->fd, POLLIN, deadline);
			if (ret)
				break;
			continue;
		}
		tune_socket(fd);
		ret = handshake_in(fd, &h, &peer, deadline);
		if (!ret)
			ret = send_cm(fd, PW_OP_CONNECT_REP, psn, &mine, deadline);
		if (ret) {
			/* a bad or dead client: drop it and keep listening */
			close(fd);
			if (ret == -ETIMEDOUT && pw_now_ns() >= deadline)
				break;
			continue;
		}
		go_live(qp, fd, psn, &h, &peer);
		return &qp->ibqp;
	}
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
	struct pw_wire_conn mine, peer;
	struct pw_qp_i *qp;
	struct pw_hdr h;
	int ret;

	qp = harness_qp(pd, attr, fd);
	if (!qp)
		return NULL;
	fill_conn(&mine, qp, attr, NULL);
	ret = handshake_in(fd, &h, &peer, deadline);
	if (!ret)
		ret = send_cm(fd, PW_OP_CONNECT_REP, 0x100, &mine, deadline);
	if (ret) {
		pw_qp_free(qp);
		errno = -ret;
		return NULL;
	}
	go_live(qp, fd, 0x100, &h, &peer);
	return &qp->ibqp;
}
