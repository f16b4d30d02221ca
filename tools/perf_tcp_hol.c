/* SPDX-License-Identifier: MIT */
/*
 * hol's TCP reference: the head-of-line factor of the machine itself.
 *
 * hol compares QP B's 8-byte WRITE latency while QP A streams against B
 * alone. On a small VM much of that ratio can come from the platform, not
 * from pagewire: a small message that shares the CPUs and the loopback
 * path with a bulk stream waits for them whatever carries it. So, in the
 * same invocation, right after the pagewire phases, the client measures
 * the same shape over plain TCP sockets on 127.0.0.1:
 *
 *   ping   an 8-byte ping-pong (blocking send/recv, TCP_NODELAY) against
 *          an echo thread: the round trip is B's full operation time;
 *   stream a second connection carrying messages of A's size, paced
 *          (clock_nanosleep between messages) to the rate A reached
 *          while streaming (a_MBps), into a thread that only drains.
 *
 * Phases alternate as the pagewire ones do: PERF_HOL_PHASES with the
 * ping alone, PERF_HOL_PHASES with the stream running, and take as many
 * samples as B did alone and with A (those B's figures count: not the
 * ones left out around page-outs, when A was not streaming), spread
 * evenly over the phases: a with-A phase lasts at least one pass of A
 * and B takes more samples in it than alone, and the stream phases get
 * the same exposure. A stream phase
 * ends only once everything it sent has been drained, so no alone phase
 * starts with stream data still in flight.
 * Waiting is blocking everywhere (whatever --busy-poll says): the
 * reference must not add spinning threads of its own to the CPUs it
 * measures.
 *
 * Threads: the caller pings; an echo thread, a sender and a drain thread
 * run for the whole measurement. The sender sleeps on a condition
 * variable between stream phases; the others block in recv().
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "perf.h"
#include "tool_util.h"

/* Untimed round trips before the first phase (as B's warm-up). */
#define HOL_TCP_WARMUP		16
/* The drain thread's receive buffer. */
#define HOL_TCP_DRAIN_BUF	(256u << 10)

/**
 * struct hol_tcp - the sockets and threads of one measurement
 * @lfd:      the listener on 127.0.0.1 (closed once both are accepted)
 * @ping/@echo: the ping-pong connection's two ends
 * @tx/@rx:   the stream connection's two ends
 * @size:     stream message size (A's)
 * @interval_ns: stream pace: one message per interval
 * @lock/@cond: guard and signal everything below
 * @phase:    stream phases started (caller)
 * @acked:    stream phases the sender has left (sender)
 * @on:       the sender streams while set (read without the lock between
 *            messages)
 * @quit:     the sender exits
 * @sent/@drained: stream bytes sent (sender) and received (drain)
 * @err:      the first failure of a helper thread (negative errno)
 */
struct hol_tcp {
	int lfd;
	int ping;
	int echo;
	int tx;
	int rx;
	size_t size;
	uint64_t interval_ns;
	uint8_t *txbuf;
	uint8_t *rxbuf;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t phase;
	uint64_t acked;
	atomic_bool on;
	bool quit;
	uint64_t sent;
	uint64_t drained;
	int err;
};

/* Record a helper thread's failure (the first one) and wake the caller. */
static void hol_tcp_set_err(struct hol_tcp *h, int err)
{
	pthread_mutex_lock(&h->lock);
	if (!h->err)
		h->err = err;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
}

/* Send all of @buf; SO_SNDTIMEO bounds a blocked send. */
static int send_full(int fd, const void *buf, size_t len, const char *what)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = send(fd, (const uint8_t *)buf + off, len - off,
				 MSG_NOSIGNAL);

		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			perf_fail("hol TCP reference: could not send %s within %d s",
				  what, PERF_STALL_TIMEOUT_MS / 1000);
			return -ETIMEDOUT;
		}
		int err = n < 0 ? errno : EIO;

		perf_fail("hol TCP reference: send (%s) failed: %s", what,
			  strerror(err));
		return -err;
	}
	return 0;
}

/*
 * Receive exactly @len bytes. Return: 0, 1 at EOF before the first byte
 * (the peer is done), or a negative errno (reported).
 */
static int recv_full(int fd, void *buf, size_t len, const char *what)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = recv(fd, (uint8_t *)buf + got, len - got, MSG_WAITALL);

		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		if (n == 0 && got == 0)
			return 1;
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0) {
			perf_fail("hol TCP reference: the peer closed the connection in the middle of %s",
				  what);
			return -ECONNRESET;
		}
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			perf_fail("hol TCP reference: no %s within %d s",
				  what, PERF_STALL_TIMEOUT_MS / 1000);
			return -ETIMEDOUT;
		}
		int err = errno;

		perf_fail("hol TCP reference: recv (%s) failed: %s", what,
			  strerror(err));
		return -err;
	}
	return 0;
}

/* The far end of the ping-pong: send every 8 bytes back, until EOF. */
static void *echo_thread(void *arg)
{
	struct hol_tcp *h = arg;
	uint8_t b[PERF_HOL_B_SIZE];
	int r;

	for (;;) {
		r = recv_full(h->echo, b, sizeof(b), "a ping");
		if (r)
			break;
		r = send_full(h->echo, b, sizeof(b), "a pong");
		if (r)
			break;
	}
	if (r < 0)
		hol_tcp_set_err(h, r);
	return NULL;
}

/* The far end of the stream: receive and count, until EOF. */
static void *drain_thread(void *arg)
{
	struct hol_tcp *h = arg;

	for (;;) {
		ssize_t n = recv(h->rx, h->rxbuf, HOL_TCP_DRAIN_BUF, 0);

		if (n == 0)
			break;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err = errno;

			perf_fail("hol TCP reference: recv (stream) failed: %s",
				  strerror(err));
			hol_tcp_set_err(h, -err);
			break;
		}
		pthread_mutex_lock(&h->lock);
		h->drained += (uint64_t)n;
		pthread_cond_broadcast(&h->cond);
		pthread_mutex_unlock(&h->lock);
	}
	return NULL;
}

static struct timespec ns_to_ts(uint64_t ns)
{
	return (struct timespec){ .tv_sec = (time_t)(ns / 1000000000ull),
				  .tv_nsec = (long)(ns % 1000000000ull) };
}

/*
 * One stream phase: a message every interval until @h->on is cleared.
 * A message that took longer than its interval does not earn the
 * stream a catch-up burst: the schedule restarts from now.
 */
static int stream_phase(struct hol_tcp *h)
{
	uint64_t next = tool_now_ns();
	struct timespec ts;
	int err;

	while (atomic_load(&h->on)) {
		ts = ns_to_ts(next);
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts,
				       NULL) == EINTR)
			;
		if (!atomic_load(&h->on))
			break;
		err = send_full(h->tx, h->txbuf, h->size, "a stream message");
		if (err)
			return err;
		pthread_mutex_lock(&h->lock);
		h->sent += h->size;
		pthread_mutex_unlock(&h->lock);
		next += h->interval_ns;
		if (next < tool_now_ns())
			next = tool_now_ns();
	}
	return 0;
}

/* The stream's sender: one stream phase per phase the caller starts. */
static void *sender_thread(void *arg)
{
	struct hol_tcp *h = arg;
	int err;

	pthread_mutex_lock(&h->lock);
	for (;;) {
		while (h->acked == h->phase && !h->quit)
			pthread_cond_wait(&h->cond, &h->lock);
		if (h->quit)
			break;
		pthread_mutex_unlock(&h->lock);
		err = stream_phase(h);
		pthread_mutex_lock(&h->lock);
		if (err && !h->err)
			h->err = err;
		h->acked = h->phase;
		pthread_cond_broadcast(&h->cond);
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

/* TCP_NODELAY, and (@timeout) the time limit of blocking recv/send. */
static int sock_opts(int fd, bool timeout)
{
	struct timeval tv = { .tv_sec = PERF_STALL_TIMEOUT_MS / 1000 };
	int one = 1;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) ||
	    (timeout && (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) ||
			 setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv))))) {
		int err = errno;

		perf_fail("hol TCP reference: setsockopt: %s", strerror(err));
		return -err;
	}
	return 0;
}

/*
 * Connect a new socket to the listener and accept its other end: *@near
 * is ours (with time limits), *@far the echo's or drain's (they block
 * until EOF).
 */
static int connect_pair(struct hol_tcp *h, const struct sockaddr_in *sa,
			int *near, int *far)
{
	int err;

	*near = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (*near < 0)
		goto fail;
	if (connect(*near, (const struct sockaddr *)sa, sizeof(*sa)))
		goto fail;
	*far = accept4(h->lfd, NULL, NULL, SOCK_CLOEXEC);
	if (*far < 0)
		goto fail;
	err = sock_opts(*near, true);
	if (!err)
		err = sock_opts(*far, false);
	return err;
fail:
	err = errno;
	perf_fail("hol TCP reference: connecting over 127.0.0.1 failed: %s",
		  strerror(err));
	return -err;
}

/* Listen on 127.0.0.1 (an ephemeral port) and make both connections. */
static int hol_tcp_connect(struct hol_tcp *h)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int err;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	h->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (h->lfd < 0 || bind(h->lfd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(h->lfd, 2) ||
	    getsockname(h->lfd, (struct sockaddr *)&sa, &sl)) {
		err = errno;
		perf_fail("hol TCP reference: listening on 127.0.0.1 failed: %s",
			  strerror(err));
		return -err;
	}
	err = connect_pair(h, &sa, &h->ping, &h->echo);
	if (!err)
		err = connect_pair(h, &sa, &h->tx, &h->rx);
	close(h->lfd);
	h->lfd = -1;
	return err;
}

/* One 8-byte round trip, checked (the pong is the ping), in us. */
static int ping_once(struct hol_tcp *h, uint64_t seq, double *us)
{
	uint8_t b[PERF_HOL_B_SIZE], r[PERF_HOL_B_SIZE];
	uint64_t t0;
	int err;

	tool_put64(b, seq);
	t0 = tool_now_ns();
	err = send_full(h->ping, b, sizeof(b), "a ping");
	if (!err)
		err = recv_full(h->ping, r, sizeof(r), "a pong");
	if (err > 0) {
		perf_fail("hol TCP reference: the echo thread closed the connection");
		err = -ECONNRESET;
	}
	if (err)
		return err;
	*us = (double)(tool_now_ns() - t0) / 1000.0;
	if (memcmp(b, r, sizeof(b))) {
		perf_fail("hol TCP reference: pong %llu is not its ping",
			  (unsigned long long)seq);
		return -EPROTO;
	}
	return 0;
}

/*
 * Stop the current stream phase: wait until the sender has left it and
 * the drain thread has received all it sent. Return: a helper thread's
 * failure, or 0.
 */
static int stream_stop(struct hol_tcp *h)
{
	int err;

	atomic_store(&h->on, false);
	pthread_mutex_lock(&h->lock);
	while (!h->err && h->acked != h->phase)
		pthread_cond_wait(&h->cond, &h->lock);
	while (!h->err && h->drained < h->sent)
		pthread_cond_wait(&h->cond, &h->lock);
	err = h->err;
	pthread_mutex_unlock(&h->lock);
	return err;
}

/*
 * The phases: alone and with the stream, alternating, @per_alone and
 * @per_with samples each. @with_ns: time the stream phases ran, each
 * until all it sent had been drained.
 */
static int hol_tcp_phases(struct hol_tcp *h, struct perf_tcp_hol *t,
			  uint64_t per_alone, uint64_t per_with,
			  uint64_t *with_ns)
{
	uint64_t seq = 0;
	double us;
	int err = 0;

	for (unsigned int k = 0; k < HOL_TCP_WARMUP && !err; k++)
		err = ping_once(h, seq++, &us);
	for (unsigned int p = 0; p < 2 * PERF_HOL_PHASES && !err; p++) {
		bool with = p & 1;
		uint64_t per = with ? per_with : per_alone;
		uint64_t t0 = tool_now_ns();

		if (with) {
			pthread_mutex_lock(&h->lock);
			atomic_store(&h->on, true);
			h->phase++;
			pthread_cond_broadcast(&h->cond);
			pthread_mutex_unlock(&h->lock);
		}
		for (uint64_t k = 0; k < per && !err; k++) {
			err = ping_once(h, seq++, &us);
			if (err)
				break;
			if (with)
				t->hol_us[t->n_hol++] = us;
			else
				t->alone_us[t->n_alone++] = us;
		}
		if (with) {
			/* until all it sent arrived: the stream's own time */
			int e = stream_stop(h);

			*with_ns += tool_now_ns() - t0;
			if (!err)
				err = e;
		}
	}
	return err;
}

/**
 * perf_tcp_hol_run() - hol's TCP reference, after the pagewire phases
 * @s: the size index (hol has one): A's size and rate, B's sample counts
 *
 * Fills @run->tcp_hol with the round trips of both kinds, the pace and
 * the stream's achieved rate.
 *
 * Return: 0, or a negative errno (reported).
 */
int perf_tcp_hol_run(struct perf_run *run, unsigned int s)
{
	struct perf_tcp_hol *t = &run->tcp_hol;
	const struct perf_step *b = &run->eps[1].steps[s];
	uint64_t per_alone = (b->nlat2 + PERF_HOL_PHASES - 1) / PERF_HOL_PHASES;
	uint64_t per_with = (b->nlat + PERF_HOL_PHASES - 1) / PERF_HOL_PHASES;
	double a = perf_hol_a_MBps(run, s);
	struct hol_tcp h = {
		.lfd = -1, .ping = -1, .echo = -1, .tx = -1, .rx = -1,
		.size = (size_t)run->plan.size[s],
	};
	pthread_t echo, drain, sender;
	bool echo_on = false, drain_on = false, sender_on = false;
	uint64_t with_ns = 0;
	int err, e;

	if (!(a > 0)) {
		perf_fail("hol TCP reference: A moved nothing; no rate to pace the stream to");
		return -EINVAL;
	}
	t->pace_MBps = a;
	h.interval_ns = (uint64_t)((double)h.size * 1e3 / a);
	t->alone_us = calloc(per_alone * PERF_HOL_PHASES + 1, sizeof(*t->alone_us));
	t->hol_us = calloc(per_with * PERF_HOL_PHASES + 1, sizeof(*t->hol_us));
	h.txbuf = calloc(1, h.size);
	h.rxbuf = malloc(HOL_TCP_DRAIN_BUF);
	if (!t->alone_us || !t->hol_us || !h.txbuf || !h.rxbuf) {
		perf_fail("hol TCP reference: out of memory");
		err = -ENOMEM;
		goto out_free;
	}
	pthread_mutex_init(&h.lock, NULL);
	pthread_cond_init(&h.cond, NULL);
	atomic_init(&h.on, false);
	err = hol_tcp_connect(&h);
	if (err)
		goto out_close;
	err = pthread_create(&echo, NULL, echo_thread, &h);
	if (!err) {
		echo_on = true;
		err = pthread_create(&drain, NULL, drain_thread, &h);
	}
	if (!err) {
		drain_on = true;
		err = pthread_create(&sender, NULL, sender_thread, &h);
	}
	if (err) {
		perf_fail("hol TCP reference: pthread_create: %s", strerror(err));
		err = -err;
		goto out_join;
	}
	sender_on = true;
	err = hol_tcp_phases(&h, t, per_alone, per_with, &with_ns);
	if (!err && with_ns)
		t->stream_MBps = (double)h.sent * 1e3 / (double)with_ns;
out_join:
	if (sender_on) {
		pthread_mutex_lock(&h.lock);
		atomic_store(&h.on, false);
		h.quit = true;
		pthread_cond_broadcast(&h.cond);
		pthread_mutex_unlock(&h.lock);
		pthread_join(sender, NULL);
	}
	/* EOF ends the drain and the echo threads */
	shutdown(h.tx, SHUT_WR);
	if (drain_on)
		pthread_join(drain, NULL);
	shutdown(h.ping, SHUT_WR);
	if (echo_on)
		pthread_join(echo, NULL);
	e = h.err;
	if (!err)
		err = e;
out_close:
	if (h.lfd >= 0)
		close(h.lfd);
	if (h.ping >= 0)
		close(h.ping);
	if (h.echo >= 0)
		close(h.echo);
	if (h.tx >= 0)
		close(h.tx);
	if (h.rx >= 0)
		close(h.rx);
	pthread_cond_destroy(&h.cond);
	pthread_mutex_destroy(&h.lock);
out_free:
	free(h.txbuf);
	free(h.rxbuf);
	return err;
}

/* Release the samples of perf_tcp_hol_run(). */
void perf_tcp_hol_free(struct perf_run *run)
{
	free(run->tcp_hol.alone_us);
	free(run->tcp_hol.hol_us);
	memset(&run->tcp_hol, 0, sizeof(run->tcp_hol));
}
