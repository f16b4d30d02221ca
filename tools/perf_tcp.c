/* SPDX-License-Identifier: MIT */
/*
 * The plain-TCP baselines of pagewire-perf: tcp_bw and tcp_lat, run on
 * their own or (--baseline) next to a pagewire test in the same
 * invocation, interleaved size by size, so that ratios come from one run.
 *
 * They share everything that is not pagewire: the plan (sizes and
 * iterations), one thread per connection (-q) with the barrier of
 * perf_client.c, the page-aligned [data | rx | ctrl] buffers of
 * perf_ep_map_buffer(), the patterns and the reports. Sockets are plain
 * TCP with TCP_NODELAY and the kernel's default (autotuned) buffers.
 *
 * Protocol of one connection:
 *
 *   client -> server  hello: PERF_WIRE_INFO_LEN bytes, perf_wire_encode()
 *   server -> client  hello in the same format (its seed, its buffer size)
 *   then, for each size of the plan:
 *     tcp_bw:  the client sends iters messages of size bytes from its data
 *              area. The server receives them into its rx area, message
 *              k at slot k mod (area / size): each message lands whole at
 *              a message-aligned offset while the reads are as large as
 *              the buffer allows (the fastest a TCP receiver can be). It
 *              checks the last message against the client's pattern and
 *              answers one byte: 'A' (verified) or 'X' (wrong data).
 *              The time is from the first send to the answer.
 *     tcp_lat: iters ping-pongs: the client sends size bytes from its data
 *              area; the server receives them into its rx area and sends
 *              them back from there; the client receives them into its rx
 *              area and checks the last pong against its own pattern.
 *   end: the client shuts down its sending side, the server sees EOF and
 *        shuts down its own, the client sees EOF.
 *
 * Waiting: blocking recv() by default; with --busy-poll, recv() with
 * MSG_DONTWAIT in a loop on both sides, as the pagewire tests spin on
 * their CQs. Sends block in both modes (posting a pagewire WR never
 * waits either; only the waiting for the peer spins).
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "pattern.h"
#include "perf.h"
#include "tool_util.h"

/* How long a server waits for a connection / a hello (after the first). */
#define TCP_ACCEPT_MS		30000
/* How long the client waits for the server's EOF at the end. */
#define TCP_LINGER_MS		10000
#define TCP_ACK_OK		'A'
#define TCP_ACK_BAD		'X'
/* Bound of autotuned socket buffers when /proc does not tell. */
#define TCP_DEFAULT_INFLIGHT	(16ull << 20)

/*
 * A TCP run that measures next to a pagewire test (--baseline). Its
 * options are a copy of the pagewire run's with the TCP test; a TCP test
 * given on the command line never has --baseline (perf_main.c).
 */
static bool is_baseline(const struct perf_run *run)
{
	return run->o->baseline;
}

static int set_sock_timeout(int fd, int optname, int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000,
			      .tv_usec = (ms % 1000) * 1000 };

	return setsockopt(fd, SOL_SOCKET, optname, &tv, sizeof(tv)) ? -errno : 0;
}

/* TCP_NODELAY, and the time limit of blocking recv/send (0 = none). */
static int sock_setup(int fd, int timeout_ms)
{
	int one = 1, err;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))) {
		err = -errno;
		perf_fail("setsockopt(TCP_NODELAY): %s", strerror(-err));
		return err;
	}
	err = set_sock_timeout(fd, SO_RCVTIMEO, timeout_ms);
	if (!err)
		err = set_sock_timeout(fd, SO_SNDTIMEO, timeout_ms);
	if (err)
		perf_fail("setsockopt(SO_RCVTIMEO/SO_SNDTIMEO): %s",
			  strerror(-err));
	return err;
}

/*
 * Receive between 1 and @len bytes. @busy: recv(MSG_DONTWAIT) in a loop,
 * giving up at @deadline_ns (0 = never); otherwise one blocking recv()
 * (MSG_WAITALL with @all), limited by the socket's SO_RCVTIMEO.
 *
 * Return: bytes received, 0 at EOF, -ETIMEDOUT, or another negative errno.
 */
static ssize_t recv_some(int fd, void *buf, size_t len, bool busy, bool all,
			 uint64_t deadline_ns)
{
	int flags = busy ? MSG_DONTWAIT : (all ? MSG_WAITALL : 0);

	for (unsigned int spins = 0;; spins++) {
		ssize_t n = recv(fd, buf, len, flags);

		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		if (!busy)
			return -ETIMEDOUT;	/* SO_RCVTIMEO expired */
		/* Reading the clock every time would dominate the loop. */
		if (deadline_ns && (spins & 1023) == 1023 &&
		    tool_now_ns() >= deadline_ns)
			return -ETIMEDOUT;
	}
}

/* The client gives up after PERF_STALL_TIMEOUT_MS; the server never. */
static uint64_t deadline_of(const struct perf_ep *ep)
{
	if (ep->run->server)
		return 0;
	return tool_now_ns() + (uint64_t)PERF_STALL_TIMEOUT_MS * 1000000ull;
}

static int report_recv_error(const struct perf_ep *ep, ssize_t n,
			     const char *what)
{
	if (n == 0) {
		perf_fail("connection %u: the peer closed the connection while we waited for %s",
			  ep->idx, what);
		return -ECONNRESET;
	}
	if (n == -ETIMEDOUT)
		perf_fail("connection %u: nothing received within %d s while waiting for %s; giving up",
			  ep->idx, PERF_STALL_TIMEOUT_MS / 1000, what);
	else
		perf_fail("connection %u: recv (%s) failed: %s", ep->idx, what,
			  strerror((int)-n));
	return (int)n;
}

/* Receive exactly @len bytes into @buf. */
static int recv_all(struct perf_ep *ep, void *buf, size_t len, bool busy,
		    const char *what)
{
	uint64_t deadline = busy ? deadline_of(ep) : 0;
	size_t got = 0;

	while (got < len) {
		ssize_t n = recv_some(ep->sock, (uint8_t *)buf + got, len - got,
				      busy, true, deadline);

		if (n <= 0)
			return report_recv_error(ep, n, what);
		got += (size_t)n;
	}
	return 0;
}

/* Send exactly @len bytes from @buf (blocking, SO_SNDTIMEO applies). */
static int send_all(struct perf_ep *ep, const void *buf, size_t len,
		    const char *what)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = send(ep->sock, (const uint8_t *)buf + off,
				 len - off, MSG_NOSIGNAL);

		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			perf_fail("connection %u: could not send %s within %d s; giving up",
				  ep->idx, what, PERF_STALL_TIMEOUT_MS / 1000);
			return -ETIMEDOUT;
		}
		int err = n < 0 ? errno : EIO;

		perf_fail("connection %u: send (%s) failed: %s", ep->idx, what,
			  strerror(err));
		return -err;
	}
	return 0;
}

/* Our hello: the same fields as pagewire's private data (perf_conn.c). */
static void hello_encode(const struct perf_ep *ep,
			 uint8_t out[PERF_WIRE_INFO_LEN])
{
	const struct perf_run *run = ep->run;
	const struct perf_opts *o = run->o;
	struct perf_wire_info w;

	memset(&w, 0, sizeof(w));
	w.test = (uint8_t)o->test;
	w.flags = (uint8_t)((o->all_sizes ? PERF_WF_ALL_SIZES : 0) |
			    (o->iters_set ? PERF_WF_ITERS_SET : 0) |
			    (is_baseline(run) ? PERF_WF_BASELINE : 0));
	w.qp_index = (uint16_t)ep->idx;
	w.qps = (uint16_t)run->qps;
	w.tx_depth = run->tx_depth;
	w.size = o->size;
	w.iters = o->iters;
	w.seed = ep->seed;
	w.data_addr = (uint64_t)(uintptr_t)ep->data;
	w.rx_addr = (uint64_t)(uintptr_t)ep->rx;
	w.area_len = ep->area;
	perf_wire_encode(&w, out);
}

static int hello_recv(struct perf_ep *ep)
{
	uint8_t b[PERF_WIRE_INFO_LEN];
	int err = recv_all(ep, b, sizeof(b), false, "the peer's hello");

	if (err)
		return err;
	err = perf_wire_decode(b, sizeof(b), &ep->peer);
	if (err)
		perf_fail("connection %u: the peer's hello is not pagewire-perf's (%s)",
			  ep->idx, strerror(-err));
	return err;
}

static int hello_send(struct perf_ep *ep)
{
	uint8_t b[PERF_WIRE_INFO_LEN];

	hello_encode(ep, b);
	return send_all(ep, b, sizeof(b), "our hello");
}

/**
 * perf_tcp_listen() - listen for the connections of a TCP run
 * @host:  address to bind (NULL: any), as pw_listen()
 * @port:  port, 0 for an ephemeral one
 * @fallback_ephemeral: when @port is taken, take an ephemeral one instead
 * @bound_port: the port actually bound
 */
int perf_tcp_listen(struct perf_run *run, const char *host, uint16_t port,
		    bool fallback_ephemeral, uint16_t *bound_port)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
				  .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE };
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int err = EADDRNOTAVAIL;
	char pstr[8];

	for (int attempt = 0; attempt < 2; attempt++) {
		struct addrinfo *res = NULL, *ai;
		int fd = -1, one = 1;

		snprintf(pstr, sizeof(pstr), "%u", port);
		if (getaddrinfo(host && *host ? host : NULL, pstr, &hints, &res)) {
			perf_fail("cannot resolve '%s'", host ? host : "");
			return -EADDRNOTAVAIL;
		}
		for (ai = res; ai; ai = ai->ai_next) {
			fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
				    0);
			if (fd < 0) {
				err = errno;
				continue;
			}
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
				   sizeof(one));
			if (!bind(fd, ai->ai_addr, ai->ai_addrlen) &&
			    !listen(fd, 128))
				break;
			err = errno;
			close(fd);
			fd = -1;
		}
		freeaddrinfo(res);
		if (fd >= 0) {
			run->tcp_listen = fd;
			if (getsockname(fd, (struct sockaddr *)&ss, &sl)) {
				err = errno;
				perf_fail("getsockname: %s", strerror(err));
				return -err;
			}
			*bound_port = ntohs(ss.ss_family == AF_INET6 ?
				((struct sockaddr_in6 *)&ss)->sin6_port :
				((struct sockaddr_in *)&ss)->sin_port);
			return 0;
		}
		if (!fallback_ephemeral || err != EADDRINUSE || port == 0)
			break;
		port = 0;
	}
	perf_fail("cannot listen for TCP on port %u: %s", port, strerror(err));
	return -err;
}

/* Wait at most @ms (-1: forever) for a connection to accept. */
static int accept_one(struct perf_run *run, int ms)
{
	struct pollfd p = { .fd = run->tcp_listen, .events = POLLIN };
	int r, fd;

	do {
		r = poll(&p, 1, ms);
	} while (r < 0 && errno == EINTR);
	if (r == 0) {
		perf_fail("no TCP connection from the client within %d s",
			  ms / 1000);
		return -ETIMEDOUT;
	}
	if (r < 0 || (fd = accept4(run->tcp_listen, NULL, NULL,
				   SOCK_CLOEXEC)) < 0) {
		int err = errno;

		perf_fail("%s: %s", r < 0 ? "poll" : "accept", strerror(err));
		return -err;
	}
	return fd;
}

/**
 * perf_tcp_accept() - accept the client's connections, exchange hellos
 * @standalone: a tcp_bw/tcp_lat run; the sizes, iterations and number of
 *              connections come from connection 0's hello. Otherwise
 *              (--baseline) the caller set them from the pagewire run.
 *
 * Buffers are mapped once the plan is known, so the server's own -s/-a
 * do not matter here.
 */
int perf_tcp_accept(struct perf_run *run, bool standalone)
{
	int err;

	/* run->qps changes when connection 0 tells the client's. */
	for (unsigned int i = 0; i < run->qps; i++) {
		struct perf_ep *ep = &run->eps[i];
		int ms = (i == 0 && standalone && !run->o->loopback) ? -1 :
			 TCP_ACCEPT_MS;
		int fd = accept_one(run, ms);

		if (fd < 0)
			return fd;
		ep->run = run;
		ep->idx = i;
		ep->sock = fd;
		ep->seed = pattern_subseed(run->seed, i);
		/* A hello must come soon; later the server waits forever. */
		err = sock_setup(fd, TCP_ACCEPT_MS);
		if (!err)
			err = hello_recv(ep);
		if (err)
			return err;
		if (i == 0 && standalone) {
			err = perf_server_adopt_client(run, &ep->peer);
			if (err)
				return err;
		} else if (ep->peer.test != run->o->test ||
			   ep->peer.qps != run->qps) {
			perf_fail("connection %u: the client runs %s with %u connections, expected %s with %u",
				  i, ep->peer.test < PERF_TEST_COUNT ?
				  perf_tests[ep->peer.test].name : "?",
				  ep->peer.qps, perf_tests[run->o->test].name,
				  run->qps);
			return -EPROTO;
		}
		if (ep->peer.qp_index != i ||
		    !(ep->peer.flags & PERF_WF_BASELINE) != standalone) {
			perf_fail("connection %u: unexpected hello (index %u, flags 0x%x)",
				  i, ep->peer.qp_index, ep->peer.flags);
			return -EPROTO;
		}
		err = perf_ep_map_buffer(ep);
		if (!err)
			err = hello_send(ep);
		if (!err)
			err = sock_setup(fd, 0);
		if (err)
			return err;
	}
	return 0;
}

/**
 * perf_tcp_connect() - open the run's connections to @host:@port
 */
int perf_tcp_connect(struct perf_run *run, const char *host, uint16_t port)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
				  .ai_socktype = SOCK_STREAM };
	char pstr[8];
	int err;

	snprintf(pstr, sizeof(pstr), "%u", port);
	for (unsigned int i = 0; i < run->qps; i++) {
		struct perf_ep *ep = &run->eps[i];
		struct addrinfo *res = NULL, *ai;
		int fd = -1;

		err = getaddrinfo(host, pstr, &hints, &res);
		if (err) {
			perf_fail("cannot resolve '%s': %s", host,
				  gai_strerror(err));
			return -EHOSTUNREACH;
		}
		err = ECONNREFUSED;
		for (ai = res; ai; ai = ai->ai_next) {
			fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
				    0);
			if (fd < 0) {
				err = errno;
				continue;
			}
			if (!connect(fd, ai->ai_addr, ai->ai_addrlen))
				break;
			err = errno;
			close(fd);
			fd = -1;
		}
		freeaddrinfo(res);
		if (fd < 0) {
			perf_fail("TCP connect to %s port %u failed: %s", host,
				  port, strerror(err));
			if (err == ECONNREFUSED)
				perf_fail("is a server running on %s port %u?",
					  host, port);
			return -err;
		}
		ep->run = run;
		ep->idx = i;
		ep->sock = fd;
		ep->seed = pattern_subseed(run->seed, i);
		err = sock_setup(fd, PERF_STALL_TIMEOUT_MS);
		if (!err)
			err = perf_ep_map_buffer(ep);
		if (!err)
			err = hello_send(ep);
		if (!err)
			err = hello_recv(ep);
		if (err)
			return err;
		if (ep->peer.test != run->o->test || ep->peer.qp_index != i) {
			perf_fail("connection %u: the server runs %s (index %u); give both the same TEST",
				  i, perf_tests[ep->peer.test].name,
				  ep->peer.qp_index);
			return -EINVAL;
		}
		if (ep->peer.area_len < run->plan.max_size) {
			perf_fail("connection %u: the server's buffer holds %llu bytes, messages need %llu",
				  i, (unsigned long long)ep->peer.area_len,
				  (unsigned long long)run->plan.max_size);
			return -EINVAL;
		}
	}
	return 0;
}

/*
 * Wait until one of @n sockets @fds is ready for @events (blocking mode),
 * at most @timeout_ms (-1 = forever). Busy mode never gets here.
 *
 * Return: 0, -ETIMEDOUT, or another negative errno.
 */
static int poll_any(struct pollfd *fds, unsigned int n, int timeout_ms)
{
	int r;

	do {
		r = poll(fds, n, timeout_ms);
	} while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	return r ? 0 : -ETIMEDOUT;
}

/**
 * perf_tcp_client_bw() - tcp_bw, client, size @s on all connections
 *
 * One thread for all connections, as the pagewire bw tests: round-robin
 * over the connections, each one is given as much as its socket takes
 * without blocking (send(MSG_DONTWAIT): its window is the socket
 * buffer); when no socket takes anything, sleep in poll(POLLOUT) on all
 * of them (busy mode: try again at once). A message counts when the
 * kernel took it (records every cq_mod messages, as a bw test's
 * completions); the last one when the server's one-byte verdict came,
 * which is awaited the same way.
 */
int perf_tcp_client_bw(struct perf_run *run, unsigned int s)
{
	uint64_t size = run->plan.size[s], iters = run->plan.iters[s];
	unsigned int cq_mod = perf_cq_mod(run);
	unsigned int qps = run->qps, sending = qps, waiting = qps, rr = 0;
	bool busy = run->o->busy_poll;
	uint64_t off[PERF_MAX_QPS], k[PERF_MAX_QPS];
	bool acked[PERF_MAX_QPS];
	struct pollfd pfd[PERF_MAX_QPS];
	uint64_t t0, last_progress;
	int err = 0;

	for (unsigned int i = 0; i < qps; i++) {
		struct perf_step *st = &run->eps[i].steps[s];

		st->recs = calloc(iters / cq_mod + 2, sizeof(*st->recs));
		if (!st->recs)
			return -ENOMEM;
		off[i] = 0;
		k[i] = 0;
		acked[i] = false;
	}
	t0 = tool_now_ns();
	last_progress = t0;
	for (unsigned int i = 0; i < qps; i++)
		run->eps[i].steps[s].t_start = t0;
	while (sending) {
		bool progress = false;

		for (unsigned int j = 0; j < qps; j++) {
			unsigned int i = (rr + j) % qps;
			struct perf_ep *ep = &run->eps[i];
			struct perf_step *st = &ep->steps[s];

			while (k[i] < iters) {
				ssize_t n = send(ep->sock, ep->data + off[i],
						 (size_t)(size - off[i]),
						 MSG_DONTWAIT | MSG_NOSIGNAL);

				if (n < 0 && errno == EINTR)
					continue;
				if (n < 0 && (errno == EAGAIN ||
					      errno == EWOULDBLOCK))
					break;
				if (n <= 0) {
					err = n < 0 ? errno : EIO;
					perf_fail("connection %u: send (a message) failed: %s",
						  i, strerror(err));
					return -err;
				}
				progress = true;
				off[i] += (uint64_t)n;
				if (off[i] < size)
					continue;
				off[i] = 0;
				k[i]++;
				if (k[i] % cq_mod == 0 && k[i] < iters) {
					st->recs[st->nrecs].t_ns = tool_now_ns();
					st->recs[st->nrecs].msgs = k[i];
					st->nrecs++;
				}
				if (k[i] == iters)
					sending--;
			}
		}
		rr = (rr + 1) % qps;
		if (progress) {
			last_progress = tool_now_ns();
			continue;
		}
		if (busy) {
			if (tool_now_ns() - last_progress >
			    (uint64_t)PERF_STALL_TIMEOUT_MS * 1000000ull)
				goto stall;
			continue;
		}
		unsigned int n = 0;

		for (unsigned int i = 0; i < qps; i++) {
			if (k[i] == iters)
				continue;
			pfd[n].fd = run->eps[i].sock;
			pfd[n].events = POLLOUT;
			pfd[n].revents = 0;
			n++;
		}
		err = poll_any(pfd, n, PERF_STALL_TIMEOUT_MS);
		if (err == -ETIMEDOUT)
			goto stall;
		if (err) {
			perf_fail("poll: %s", strerror(-err));
			return err;
		}
	}
	/* The verdicts: one byte per connection. */
	last_progress = tool_now_ns();
	while (waiting) {
		bool progress = false;

		for (unsigned int i = 0; i < qps; i++) {
			struct perf_ep *ep = &run->eps[i];
			struct perf_step *st = &ep->steps[s];
			uint8_t ack;
			ssize_t n;

			if (acked[i])
				continue;
			n = recv(ep->sock, &ack, 1, MSG_DONTWAIT);
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
				      errno == EINTR))
				continue;
			if (n <= 0)
				return report_recv_error(ep, n < 0 ? -errno : 0,
							 "the server's answer");
			progress = true;
			acked[i] = true;
			waiting--;
			st->t_end = tool_now_ns();
			st->recs[st->nrecs].t_ns = st->t_end;
			st->recs[st->nrecs].msgs = iters;
			st->nrecs++;
			st->msgs = iters;
			if (ack != TCP_ACK_OK) {
				perf_fail("connection %u: the server found wrong data in its buffer (answer 0x%02x)",
					  i, ack);
				return -EIO;
			}
		}
		if (progress || !waiting) {
			last_progress = tool_now_ns();
			continue;
		}
		if (busy) {
			if (tool_now_ns() - last_progress >
			    (uint64_t)PERF_STALL_TIMEOUT_MS * 1000000ull)
				goto stall;
			continue;
		}
		unsigned int n = 0;

		for (unsigned int i = 0; i < qps; i++) {
			if (acked[i])
				continue;
			pfd[n].fd = run->eps[i].sock;
			pfd[n].events = POLLIN;
			pfd[n].revents = 0;
			n++;
		}
		err = poll_any(pfd, n, PERF_STALL_TIMEOUT_MS);
		if (err == -ETIMEDOUT)
			goto stall;
		if (err) {
			perf_fail("poll: %s", strerror(-err));
			return err;
		}
	}
	return 0;

stall:
	perf_fail("no progress on any of %u connections within %d s; giving up",
		  qps, PERF_STALL_TIMEOUT_MS / 1000);
	return -ETIMEDOUT;
}

/* Check the last message of connection @ep and send the verdict. */
static int server_bw_verdict(struct perf_ep *ep, uint64_t size,
			     uint64_t iters)
{
	uint64_t slots = ep->area / size;
	uint64_t last = ((iters - 1) % slots) * size;
	uint8_t ack = TCP_ACK_OK;
	long long bad;

	bad = pattern_check(ep->rx + last, (size_t)size, ep->peer.seed, 0);
	if (bad >= 0) {
		perf_fail("connection %u: received data wrong at byte %lld of %llu: 0x%02x, expected 0x%02x",
			  ep->idx, bad, (unsigned long long)size,
			  ep->rx[last + (uint64_t)bad],
			  pattern_byte(ep->peer.seed, (uint64_t)bad));
		ack = TCP_ACK_BAD;
	}
	int err = send_all(ep, &ack, 1, "the answer");

	return bad >= 0 ? -EIO : err;
}

/**
 * perf_tcp_server_bw() - tcp_bw, server, size @s on all connections
 *
 * One thread for all connections: each is read (recv(MSG_DONTWAIT)) as
 * far as it has data, round-robin; when none has any, sleep in
 * poll(POLLIN) (busy mode: try again at once). Message k lands at slot
 * k mod (area / size) of the connection's rx area; a connection that
 * got all its messages has its last one checked and is answered.
 */
int perf_tcp_server_bw(struct perf_run *run, unsigned int s)
{
	uint64_t size = run->plan.size[s], iters = run->plan.iters[s];
	uint64_t total = size * iters, off[PERF_MAX_QPS];
	unsigned int qps = run->qps, left = qps;
	struct pollfd pfd[PERF_MAX_QPS];
	bool busy = run->o->busy_poll;
	int err;

	for (unsigned int i = 0; i < qps; i++)
		off[i] = 0;
	while (left) {
		bool progress = false;

		for (unsigned int i = 0; i < qps; i++) {
			struct perf_ep *ep = &run->eps[i];
			uint64_t ring = ep->area / size * size;

			while (off[i] < total) {
				uint64_t pos = off[i] % ring, len = ring - pos;
				ssize_t n;

				if (len > total - off[i])
					len = total - off[i];
				n = recv(ep->sock, ep->rx + pos, (size_t)len,
					 MSG_DONTWAIT);
				if (n < 0 && errno == EINTR)
					continue;
				if (n < 0 && (errno == EAGAIN ||
					      errno == EWOULDBLOCK))
					break;
				if (n <= 0)
					return report_recv_error(ep,
						n < 0 ? -errno : 0,
						"the client's messages");
				progress = true;
				off[i] += (uint64_t)n;
				if (off[i] < total)
					continue;
				err = server_bw_verdict(ep, size, iters);
				if (err)
					return err;
				left--;
			}
		}
		if (progress || busy || !left)
			continue;
		unsigned int n = 0;

		for (unsigned int i = 0; i < qps; i++) {
			if (off[i] == total)
				continue;
			pfd[n].fd = run->eps[i].sock;
			pfd[n].events = POLLIN;
			pfd[n].revents = 0;
			n++;
		}
		err = poll_any(pfd, n, -1);
		if (err) {
			perf_fail("poll: %s", strerror(-err));
			return err;
		}
	}
	return 0;
}

/* tcp_lat, client: ping-pong; half the round trip unless tcp_full_rtt. */
static int client_lat_step(struct perf_ep *ep, unsigned int s)
{
	struct perf_run *run = ep->run;
	struct perf_step *st = &ep->steps[s];
	uint64_t size = run->plan.size[s], iters = run->plan.iters[s];
	double div = run->tcp_full_rtt ? 1000.0 : 2000.0;
	bool busy = run->o->busy_poll;
	long long bad;
	int err;

	st->lat_us = calloc(iters, sizeof(*st->lat_us));
	if (!st->lat_us)
		return -ENOMEM;
	/* The pong carries our own pattern back; clear what a size left. */
	memset(ep->rx, 0, size);
	st->t_start = tool_now_ns();
	for (uint64_t i = 0; i < iters; i++) {
		uint64_t t0 = tool_now_ns();

		err = send_all(ep, ep->data, size, "a ping");
		if (!err)
			err = recv_all(ep, ep->rx, size, busy, "a pong");
		if (err)
			return err;
		st->lat_us[i] = (double)(tool_now_ns() - t0) / div;
	}
	st->t_end = tool_now_ns();
	st->nlat = iters;
	st->msgs = iters;
	bad = pattern_check(ep->rx, (size_t)size, ep->seed, 0);
	if (bad >= 0) {
		perf_fail("connection %u: data mismatch in the last pong at byte %lld of %llu: got 0x%02x, expected 0x%02x",
			  ep->idx, bad, (unsigned long long)size, ep->rx[bad],
			  pattern_byte(ep->seed, (uint64_t)bad));
		return -EIO;
	}
	return 0;
}

/* tcp_lat, server: answer every ping with its own bytes. */
static int server_lat_step(struct perf_ep *ep, unsigned int s)
{
	struct perf_run *run = ep->run;
	uint64_t size = run->plan.size[s], iters = run->plan.iters[s];
	int err;

	for (uint64_t i = 0; i < iters; i++) {
		err = recv_all(ep, ep->rx, size, run->o->busy_poll, "a ping");
		if (!err)
			err = send_all(ep, ep->rx, size, "a pong");
		if (err)
			return err;
	}
	return 0;
}

/**
 * perf_tcp_client_step() - measure size @s of the plan on one connection
 */
int perf_tcp_client_step(struct perf_ep *ep, unsigned int s)
{
	/* tcp_bw runs all connections from one thread: perf_tcp_client_bw(). */
	if (perf_tests[ep->run->o->test].bw)
		return -EINVAL;
	return client_lat_step(ep, s);
}

/**
 * perf_tcp_server_step() - serve size @s of the plan on one connection
 */
int perf_tcp_server_step(struct perf_ep *ep, unsigned int s)
{
	/* tcp_bw serves all connections from one thread: perf_tcp_server_bw(). */
	if (perf_tests[ep->run->o->test].bw)
		return -EINVAL;
	return server_lat_step(ep, s);
}

/**
 * perf_tcp_client_finish() - orderly end: shut our side, await the EOF
 *
 * The results are known by now; a server that does not close in time
 * only earns a warning, as in perf_ctrl.c.
 */
int perf_tcp_client_finish(struct perf_ep *ep)
{
	uint8_t b;
	ssize_t n;

	if (shutdown(ep->sock, SHUT_WR)) {
		int err = errno;

		perf_fail("connection %u: shutdown: %s", ep->idx, strerror(err));
		return -err;
	}
	if (set_sock_timeout(ep->sock, SO_RCVTIMEO, TCP_LINGER_MS))
		return 0;
	n = recv_some(ep->sock, &b, 1, false, false, 0);
	if (n > 0) {
		perf_fail("connection %u: unexpected data from the server at the end",
			  ep->idx);
		return -EPROTO;
	}
	if (n < 0)
		perf_fail("connection %u: warning: the server did not close within %d s (%s)",
			  ep->idx, TCP_LINGER_MS / 1000, strerror((int)-n));
	return 0;
}

/**
 * perf_tcp_server_finish() - wait for the client's EOF, then shut ours
 */
int perf_tcp_server_finish(struct perf_ep *ep)
{
	uint8_t b;
	ssize_t n = recv_some(ep->sock, &b, 1, ep->run->o->busy_poll, false, 0);

	if (n > 0) {
		perf_fail("connection %u: unexpected data from the client after the last size",
			  ep->idx);
		return -EPROTO;
	}
	if (n < 0) {
		perf_fail("connection %u: waiting for the client's end failed: %s",
			  ep->idx, strerror((int)-n));
		return (int)n;
	}
	if (shutdown(ep->sock, SHUT_WR)) {
		int err = errno;

		perf_fail("connection %u: shutdown: %s", ep->idx, strerror(err));
		return -err;
	}
	return 0;
}

/*
 * perf_tcp_client_finish() for all connections of a single-thread run:
 * shut every sending side first, then await every EOF (the server, one
 * thread too, awaits the EOFs in connection order).
 */
int perf_tcp_client_finish_all(struct perf_run *run)
{
	int err;

	for (unsigned int i = 0; i < run->qps; i++) {
		if (shutdown(run->eps[i].sock, SHUT_WR)) {
			err = errno;
			perf_fail("connection %u: shutdown: %s", i, strerror(err));
			return -err;
		}
	}
	for (unsigned int i = 0; i < run->qps; i++) {
		struct perf_ep *ep = &run->eps[i];
		uint8_t b;
		ssize_t n;

		if (set_sock_timeout(ep->sock, SO_RCVTIMEO, TCP_LINGER_MS))
			continue;
		n = recv_some(ep->sock, &b, 1, false, false, 0);
		if (n > 0) {
			perf_fail("connection %u: unexpected data from the server at the end",
				  i);
			return -EPROTO;
		}
		if (n < 0)
			perf_fail("connection %u: warning: the server did not close within %d s (%s)",
				  i, TCP_LINGER_MS / 1000, strerror((int)-n));
	}
	return 0;
}

/* perf_tcp_server_finish() for every connection, in order. */
int perf_tcp_server_finish_all(struct perf_run *run)
{
	int err = 0;

	for (unsigned int i = 0; i < run->qps && !err; i++)
		err = perf_tcp_server_finish(&run->eps[i]);
	return err;
}

void perf_tcp_abort_all(struct perf_run *run)
{
	for (unsigned int i = 0; i < run->qps; i++)
		perf_tcp_abort(&run->eps[i]);
}

/*
 * After a failure on this side: make the peer's waits end now (EOF or
 * reset) instead of at its time limit.
 */
void perf_tcp_abort(struct perf_ep *ep)
{
	if (ep->sock >= 0)
		shutdown(ep->sock, SHUT_RDWR);
}

/* The third (maximum) value of a tcp_[rw]mem sysctl, 0 if unknown. */
static uint64_t sysctl_max(const char *path)
{
	unsigned long long lo, def, max;
	FILE *f = fopen(path, "r");
	int n;

	if (!f)
		return 0;
	n = fscanf(f, "%llu %llu %llu", &lo, &def, &max);
	fclose(f);
	return n == 3 ? max : 0;
}

/**
 * perf_tcp_inflight_bytes() - how much a tcp_bw sender can have "done"
 * that the receiver has not received yet: the largest autotuned send and
 * receive buffers together. perf_report.c's peak rate skips intervals
 * shorter than that, as it skips those shorter than a WR window.
 */
uint64_t perf_tcp_inflight_bytes(void)
{
	static uint64_t cached;

	if (!cached) {
		uint64_t w = sysctl_max("/proc/sys/net/ipv4/tcp_wmem");
		uint64_t r = sysctl_max("/proc/sys/net/ipv4/tcp_rmem");

		cached = w && r ? w + r : TCP_DEFAULT_INFLIGHT;
	}
	return cached;
}

/**
 * perf_tcp_close() - close the sockets and the listener of a TCP run,
 * then free its buffers and records (perf_run_close()).
 */
void perf_tcp_close(struct perf_run *run)
{
	for (unsigned int i = 0; i < PERF_MAX_QPS; i++) {
		if (run->eps[i].sock >= 0)
			close(run->eps[i].sock);
		run->eps[i].sock = -1;
	}
	if (run->tcp_listen >= 0)
		close(run->tcp_listen);
	run->tcp_listen = -1;
	perf_run_close(run);
}
