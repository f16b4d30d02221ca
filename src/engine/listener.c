/* SPDX-License-Identifier: MIT */
/*
 * Listeners. The listening socket and the connections still sending
 * their CONNECT_REQ (the half-open set) are polled by the progress
 * engine, like QP sockets; each request is read as its bytes arrive, so
 * one silent client never holds up another (docs/limits.md, "The
 * listener's handshake set"). A whole, valid request leaves the set as a
 * struct pw_conn_request: a CONNECT_REQUEST event for a listener of
 * pw_listen_channel(), else queued for pw_accept(). Requests not yet
 * answered still count against max_half_open, so an application that
 * does not answer holds at most that many descriptors: past it, new
 * connections wait in the kernel's backlog.
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
#include <unistd.h>

#include "core/context.h"
#include "engine/cm.h"
#include "engine/engine.h"

#define PW_CM_STARVED_NS	(50 * 1000000ull)	/* listener rest when out of fds */

static struct pw_engine *eng_of(const struct pw_listener *l)
{
	return &l->ctx->engine;
}

void pw_cm_tune_socket(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

int pw_cm_req_parse(const uint8_t *buf, size_t len, struct pw_hdr *h,
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
 * Take what @ho's socket has of its request, never more: the client
 * sends nothing else before the answer. Return 1 when the request is
 * whole and valid, 0 when more must come, or -errno (EOF, not our
 * protocol).
 */
static int ho_progress(struct pw_half_open *ho)
{
	struct pw_hdr h;
	struct pw_wire_conn peer;

	for (;;) {
		int need = pw_cm_req_parse(ho->buf, ho->got, &h, &peer);
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

/* pw_listener_fd() is readable while a request waits for pw_accept(). */
static void signal_locked(struct pw_listener *l)
{
	uint64_t v = 1;
	bool any = l->q_head != NULL;

	if (any && !l->ready_signalled)
		l->ready_signalled = write(l->readyfd, &v, sizeof(v)) == sizeof(v);
	else if (!any && l->ready_signalled)
		l->ready_signalled = read(l->readyfd, &v, sizeof(v)) != sizeof(v);
}

static void watch_locked(struct pw_listener *l, bool on)
{
	struct epoll_event ev = { .events = on ? EPOLLIN : 0, .data.ptr = &l->src };

	if (l->paused == !on)
		return;
	l->paused = !on;
	epoll_ctl(eng_of(l)->epfd, EPOLL_CTL_MOD, l->fd, &ev);
}

/* Watch the listening socket again once there is room and fds to accept. */
static void maybe_resume_locked(struct pw_listener *l)
{
	if (l->paused && l->nho + l->nreq < l->max_ho &&
	    pw_now_ns() >= l->starved_until)
		watch_locked(l, true);
}

static void ho_free_locked(struct pw_listener *l, struct pw_half_open *ho)
{
	epoll_ctl(eng_of(l)->epfd, EPOLL_CTL_DEL, ho->fd, NULL);
	ho->fd = -1;
	l->nho--;
}

static void ho_drop_locked(struct pw_listener *l, struct pw_half_open *ho,
			   atomic_uint_fast64_t *counter)
{
	int fd = ho->fd;

	ho_free_locked(l, ho);
	close(fd);
	atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
}

/* A request for the application: an event, or the pw_accept queue. */
static void deliver_locked(struct pw_listener *l, struct pw_conn_request *req)
{
	req->all_prev = NULL;
	req->all_next = l->reqs;
	if (l->reqs)
		l->reqs->all_prev = req;
	l->reqs = req;
	l->nreq++;
	if (l->ch) {
		struct pw_cm_event *ev = &req->evn.ev;

		req->evn.ch = l->ch;
		ev->event = PW_CM_EVENT_CONNECT_REQUEST;
		ev->listener = l;
		ev->request = req;
		ev->context = l->context;
		ev->private_data_len = req->conn.pdata_len;
		memcpy(req->evn.pdata, req->conn.pdata, req->conn.pdata_len);
		ev->peer_addr = req->peer;
		pw_cm_post(&req->evn);
		return;
	}
	req->queued = true;
	req->q_next = NULL;
	if (l->q_tail)
		l->q_tail->q_next = req;
	else
		l->q_head = req;
	l->q_tail = req;
	signal_locked(l);
	pthread_cond_broadcast(&l->cond);
}

/* A whole request: answer a version we do not speak, else deliver it. */
static void ho_ready_locked(struct pw_listener *l, struct pw_half_open *ho)
{
	struct pw_conn_request *req;
	struct pw_wire_conn peer;
	struct pw_hdr h;
	int fd = ho->fd;

	if (pw_cm_req_parse(ho->buf, ho->got, &h, &peer) != 0) {
		ho_drop_locked(l, ho, &l->ctx->conn_failed);
		return;
	}
	if (peer.min_version > PW_WIRE_VERSION || peer.max_version < PW_WIRE_VERSION) {
		struct pw_wire_conn rej = { .min_version = PW_WIRE_VERSION,
					    .max_version = PW_WIRE_VERSION,
					    .reason = EPROTO };
		uint8_t buf[PW_CM_REQ_MAX];
		struct pw_hdr rh = { .opcode = PW_OP_CONNECT_REJ };
		int n = pw_wire_encode_conn(&rej, buf + PW_WIRE_HDR_LEN,
					    sizeof(buf) - PW_WIRE_HDR_LEN);

		/* 80 bytes into an empty socket buffer: they go, or the client is gone */
		rh.payload_len = (uint32_t)n;
		pw_wire_encode_hdr(&rh, buf);
		(void)!send(fd, buf, PW_WIRE_HDR_LEN + (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
		ho_drop_locked(l, ho, &l->ctx->conn_failed);
		return;
	}
	req = calloc(1, sizeof(*req));
	if (!req) {
		ho_drop_locked(l, ho, &l->ctx->conn_failed);
		return;
	}
	req->ctx = l->ctx;
	req->l = l;
	req->fd = fd;
	req->hdr = h;
	req->conn = peer;
	req->peer = ho->peer;
	ho_free_locked(l, ho);
	deliver_locked(l, req);
}

static void ho_step_locked(struct pw_listener *l, struct pw_half_open *ho)
{
	int ret = ho_progress(ho);

	if (ret < 0)
		ho_drop_locked(l, ho, &l->ctx->conn_failed);
	else if (ret == 1)
		ho_ready_locked(l, ho);
}

void pw_half_open_events(struct pw_half_open *ho, uint32_t events)
{
	struct pw_listener *l = ho->l;

	(void)events;
	pthread_mutex_lock(&l->lock);
	if (ho->fd >= 0) {
		ho_step_locked(l, ho);
		maybe_resume_locked(l);
	}
	pthread_mutex_unlock(&l->lock);
}

/*
 * Room for one more connection. When the set is full and a connection
 * waits in the backlog, the oldest one still silent goes (a real client
 * sends its request at once, so it is rarely the one; it gets a last
 * read first). When every place is a whole request still unanswered,
 * there is no room: new connections wait in the kernel's backlog.
 */
static bool make_room_locked(struct pw_listener *l)
{
	while (l->nho + l->nreq >= l->max_ho && l->nho) {
		struct pw_half_open *oldest = NULL;

		for (uint32_t i = 0; i < l->max_ho; i++) {
			struct pw_half_open *ho = &l->ho[i];

			if (ho->fd >= 0 && (!oldest || ho->seq < oldest->seq))
				oldest = ho;
		}
		/* its last chance; whole now, it takes a request's place */
		ho_step_locked(l, oldest);
		if (oldest->fd >= 0)
			ho_drop_locked(l, oldest, &l->ctx->conn_dropped);
	}
	return l->nho + l->nreq < l->max_ho;
}

static struct pw_half_open *ho_slot(struct pw_listener *l)
{
	for (uint32_t i = 0; i < l->max_ho; i++)
		if (l->ho[i].fd < 0)
			return &l->ho[i];
	return NULL;
}

/* Is a connection waiting in the kernel's backlog? */
static bool backlog_locked(const struct pw_listener *l)
{
	struct pollfd p = { .fd = l->fd, .events = POLLIN };

	return poll(&p, 1, 0) == 1;
}

/*
 * Take the connections the kernel has queued into the set, as far as
 * there is room. Out of fds: the listener rests (it would poll readable
 * for nothing), and with nothing pending pw_accept() is told (EMFILE).
 */
static void accept_locked(struct pw_listener *l)
{
	for (;;) {
		struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP };
		struct pw_half_open *ho;
		struct sockaddr_storage peer;
		socklen_t plen = sizeof(peer);
		int fd;

		if (l->nho + l->nreq >= l->max_ho) {
			/* nobody at the door: nobody has to make room */
			if (l->nho && !backlog_locked(l))
				return;
			/* every place a whole request: the backlog holds the rest */
			if (!make_room_locked(l)) {
				watch_locked(l, false);
				return;
			}
		}
		fd = accept4(l->fd, (struct sockaddr *)&peer, &plen,
			     SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				if (!l->nho && !l->nreq) {
					l->accept_err = errno;
					pthread_cond_broadcast(&l->cond);
				}
				l->starved_until = pw_now_ns() + PW_CM_STARVED_NS;
				watch_locked(l, false);
			}
			return;		/* EAGAIN, ECONNABORTED: nothing waits */
		}
		l->accept_err = 0;
		pw_cm_tune_socket(fd);
		ho = ho_slot(l);
		ho->fd = fd;
		ho->got = 0;
		ho->seq = l->ho_seq++;
		ho->deadline = pw_now_ns() + (uint64_t)l->ctx->handshake_ms * 1000000ull;
		ho->peer = peer;
		ev.data.ptr = &ho->src;
		if (epoll_ctl(eng_of(l)->epfd, EPOLL_CTL_ADD, fd, &ev)) {
			ho->fd = -1;
			close(fd);
			continue;
		}
		l->nho++;
		ho_step_locked(l, ho);
	}
}

void pw_listener_events(struct pw_listener *l, uint32_t events)
{
	(void)events;
	pthread_mutex_lock(&l->lock);
	if (!l->paused)
		accept_locked(l);
	pthread_mutex_unlock(&l->lock);
}

uint64_t pw_listener_first_deadline(struct pw_engine *eng)
{
	uint64_t first = UINT64_MAX;

	for (struct pw_listener *l = eng->listeners; l; l = l->eng_next) {
		if (l->starved_until && l->starved_until < first)
			first = l->starved_until;
		if (!l->nho)
			continue;
		for (uint32_t i = 0; i < l->max_ho; i++)
			if (l->ho[i].fd >= 0 && l->ho[i].deadline < first)
				first = l->ho[i].deadline;
	}
	return first;
}

void pw_listener_timers(struct pw_engine *eng, uint64_t now)
{
	for (struct pw_listener *l = eng->listeners; l; l = l->eng_next) {
		bool due = l->starved_until && now >= l->starved_until;

		for (uint32_t i = 0; i < l->max_ho && l->nho && !due; i++)
			due = l->ho[i].fd >= 0 && l->ho[i].deadline <= now;
		if (!due)
			continue;
		pthread_mutex_lock(&l->lock);
		for (uint32_t i = 0; i < l->max_ho && l->nho; i++)
			if (l->ho[i].fd >= 0 && l->ho[i].deadline <= now)
				ho_drop_locked(l, &l->ho[i], &l->ctx->conn_failed);
		if (l->starved_until && now >= l->starved_until)
			l->starved_until = 0;
		maybe_resume_locked(l);
		pthread_mutex_unlock(&l->lock);
	}
}

void pw_listener_added(struct pw_listener *l)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &l->src };
	struct pw_engine *eng = eng_of(l);

	l->eng_next = eng->listeners;
	eng->listeners = l;
	epoll_ctl(eng->epfd, EPOLL_CTL_ADD, l->fd, &ev);
}

void pw_listener_removed(struct pw_listener *l)
{
	struct pw_engine *eng = eng_of(l);

	for (struct pw_listener **pp = &eng->listeners; *pp; pp = &(*pp)->eng_next)
		if (*pp == l) {
			*pp = l->eng_next;
			break;
		}
	epoll_ctl(eng->epfd, EPOLL_CTL_DEL, l->fd, NULL);
	pthread_mutex_lock(&l->lock);
	for (uint32_t i = 0; i < l->max_ho; i++)
		if (l->ho[i].fd >= 0) {
			int fd = l->ho[i].fd;

			ho_free_locked(l, &l->ho[i]);
			close(fd);
		}
	pthread_mutex_unlock(&l->lock);
}

/* ------------------------------------------------------------------ */
/* The application's side                                               */
/* ------------------------------------------------------------------ */

static struct pw_listener *listen_on(struct pw_context *ctx,
				     struct pw_cm_channel_i *ch, const char *host,
				     uint16_t port, void *context)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE };
	struct addrinfo *res = NULL, *ai;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct pw_listener *l;
	char pstr[8];
	int fd = -1, one = 1, err = EADDRNOTAVAIL;

	snprintf(pstr, sizeof(pstr), "%u", port);
	if (getaddrinfo(host && *host ? host : NULL, pstr, &hints, &res) != 0) {
		pw_set_error("pw_listen: cannot resolve '%s'", host ? host : "");
		errno = EADDRNOTAVAIL;
		return NULL;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
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
	l = calloc(1, sizeof(*l));
	if (!l) {
		err = ENOMEM;
		goto err_fd;
	}
	l->ho = calloc(ctx->max_half_open, sizeof(*l->ho));
	if (!l->ho) {
		err = ENOMEM;
		goto err_l;
	}
	l->readyfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (l->readyfd < 0) {
		err = errno;
		goto err_ho;
	}
	for (uint32_t i = 0; i < ctx->max_half_open; i++) {
		l->ho[i].src.kind = PW_SRC_HALF_OPEN;
		l->ho[i].l = l;
		l->ho[i].fd = -1;
	}
	l->src.kind = PW_SRC_LISTENER;
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cond, NULL);
	l->max_ho = ctx->max_half_open;
	l->ctx = ctx;
	l->fd = fd;
	l->ch = ch;
	l->context = context;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		l->port = ntohs(ss.ss_family == AF_INET6 ?
				((struct sockaddr_in6 *)&ss)->sin6_port :
				((struct sockaddr_in *)&ss)->sin_port);
	if (ch)
		atomic_fetch_add_explicit(&ch->users, 1, memory_order_relaxed);
	pthread_mutex_lock(&ctx->obj_lock);
	ctx->nlistener++;
	pthread_mutex_unlock(&ctx->obj_lock);
	pw_engine_add_listener(&ctx->engine, l);
	return l;

err_ho:
	free(l->ho);
err_l:
	free(l);
err_fd:
	close(fd);
	pw_set_error("pw_listen: %s", strerror(err));
	errno = err;
	return NULL;
}

struct pw_listener *pw_listen(struct pw_context *ctx, const char *host,
			      uint16_t port)
{
	if (!ctx) {
		errno = EINVAL;
		return NULL;
	}
	return listen_on(ctx, NULL, host, port, NULL);
}

struct pw_listener *pw_listen_channel(struct pw_cm_channel *ch, const char *host,
				      uint16_t port, void *context)
{
	if (!ch) {
		errno = EINVAL;
		return NULL;
	}
	return listen_on(ch->context, to_cm_channel(ch), host, port, context);
}

uint16_t pw_listener_port(const struct pw_listener *l)
{
	return l ? l->port : 0;
}

int pw_listener_fd(const struct pw_listener *l)
{
	if (!l)
		return -EINVAL;
	return l->ch ? l->ch->ibch.fd : l->readyfd;
}

static void request_unlink_locked(struct pw_listener *l, struct pw_conn_request *req)
{
	if (req->all_prev)
		req->all_prev->all_next = req->all_next;
	else
		l->reqs = req->all_next;
	if (req->all_next)
		req->all_next->all_prev = req->all_prev;
	l->nreq--;
	req->l = NULL;
}

void pw_request_release(struct pw_conn_request *req)
{
	struct pw_listener *l = req->l;

	if (!l)
		return;
	pthread_mutex_lock(&l->lock);
	if (req->l) {
		request_unlink_locked(l, req);
		maybe_resume_locked(l);
	}
	pthread_mutex_unlock(&l->lock);
}

int pw_listener_take(struct pw_listener *l, uint64_t deadline,
		     struct pw_conn_request **out)
{
	int ret = 0;

	pthread_mutex_lock(&l->lock);
	while (!l->q_head) {
		struct timespec ts;
		uint64_t now, left;

		if (l->accept_err && !l->nho && !l->nreq) {
			ret = -l->accept_err;
			break;
		}
		if (deadline == UINT64_MAX) {
			pthread_cond_wait(&l->cond, &l->lock);
			continue;
		}
		now = pw_now_ns();
		if (now >= deadline) {
			ret = -ETIMEDOUT;
			break;
		}
		/* pthread_cond_timedwait counts in CLOCK_REALTIME */
		left = deadline - now;
		clock_gettime(CLOCK_REALTIME, &ts);
		left += (uint64_t)ts.tv_nsec;
		ts.tv_sec += (time_t)(left / 1000000000ull);
		ts.tv_nsec = (long)(left % 1000000000ull);
		pthread_cond_timedwait(&l->cond, &l->lock, &ts);
	}
	if (!ret) {
		struct pw_conn_request *req = l->q_head;

		l->q_head = req->q_next;
		if (!l->q_head)
			l->q_tail = NULL;
		req->queued = false;
		signal_locked(l);
		*out = req;
	}
	pthread_mutex_unlock(&l->lock);
	return ret;
}

int pw_close_listener(struct pw_listener *l)
{
	struct pw_context *ctx;

	if (!l)
		return -EINVAL;
	ctx = l->ctx;
	/* after this the engine never looks at it or its half-open set */
	pw_engine_del_listener(&ctx->engine, l);
	pthread_mutex_lock(&l->lock);
	while (l->reqs) {
		struct pw_conn_request *req = l->reqs;
		bool queued = req->queued;

		request_unlink_locked(l, req);
		/* queued for pw_accept: nobody has it; delivered: the application's */
		if (queued) {
			close(req->fd);
			free(req);
		}
	}
	pthread_mutex_unlock(&l->lock);
	close(l->fd);
	close(l->readyfd);
	if (l->ch)
		atomic_fetch_sub_explicit(&l->ch->users, 1, memory_order_release);
	pthread_mutex_lock(&ctx->obj_lock);
	ctx->nlistener--;
	pthread_mutex_unlock(&ctx->obj_lock);
	pthread_cond_destroy(&l->cond);
	pthread_mutex_destroy(&l->lock);
	free(l->ho);
	free(l);
	return 0;
}
