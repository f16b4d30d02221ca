/* SPDX-License-Identifier: MIT */
/*
 * The progress engine. One batch = epoll_wait on every QP socket, then for
 * each ready QP the receive side (responder + completer) and the transmit
 * side, then timers (RNR retry, delayed ACK), then commands from
 * application threads (add/remove a QP). Commands run after every event of
 * the batch, by the same thread, so an event never refers to a freed QP.
 *
 * Who runs batches: the holder of eng->token. The progress thread holds it
 * while no application thread wants it, which keeps one-sided operations
 * flowing with the target application never calling in. An application
 * thread that waits for completions takes the token over (kicking the
 * progress thread out of epoll_wait once), and the progress thread stays
 * parked until no application thread has driven for PW_DRIVE_LINGER_NS, so
 * a thread that waits again and again (a latency loop) costs the progress
 * thread no wakeups at all. Nothing ever spins unless PW_PROGRESS=busy.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/context.h"
#include "engine/cm.h"
#include "engine/engine.h"
#include "engine/qp.h"

/* How long the progress thread leaves the engine to an application driver. */
#define PW_DRIVE_LINGER_NS	1000000ull
/* busy polling reads sockets directly up to this many QPs (run_batch) */
#define PW_BUSY_DIRECT_QPS	4
#define PW_BUSY_TIMER_PASSES	16

static _Thread_local const struct pw_engine *tls_driving;

bool pw_engine_driving(const struct pw_engine *eng)
{
	return tls_driving == eng;
}

/*
 * How long a batch may sleep, in ns (< 0: forever): until the first timer
 * (RNR and PAGE_FAULT resends, delayed ACK) or @cap_ms. Timers are
 * sub-millisecond (a PAGE_FAULT hint is ~20 us), hence epoll_pwait2().
 */
static int64_t next_timeout_ns(struct pw_engine *eng, int cap_ms)
{
	uint64_t now, first = UINT64_MAX, lv;
	int64_t cap = cap_ms < 0 ? -1 : (int64_t)cap_ms * 1000000;

	if (cap_ms == 0)
		return 0;	/* a polling pass: no clock read needed */
	for (struct pw_qp_i *qp = eng->qps; qp; qp = qp->eng_next) {
		if (qp->retry_at_ns && qp->retry_at_ns < first)
			first = qp->retry_at_ns;
		if (qp->ack_at_ns && qp->ack_at_ns < first)
			first = qp->ack_at_ns;
	}
	/* handshakes and half-open connections: ms deadlines, precise clock */
	first = PW_MIN(first, pw_cm_first_deadline(eng));
	first = PW_MIN(first, pw_listener_first_deadline(eng));
	/*
	 * Liveness deadlines are coarse-clock stamps, bounds of seconds:
	 * measured on that clock (a few ns, against ~25 for the precise
	 * one) unless a fine timer needs the precise clock anyway. The
	 * coarse clock is never ahead, so the sleep never ends early.
	 */
	lv = pw_live_first_ns(eng);
	if (first == UINT64_MAX && lv != UINT64_MAX) {
		now = pw_coarse_ns();
		first = lv;
	} else if (first == UINT64_MAX) {
		return cap;
	} else {
		now = pw_now_ns();
		first = PW_MIN(first, lv);
	}
	if (first <= now)
		return 0;
	return cap < 0 || (int64_t)(first - now) < cap ? (int64_t)(first - now) : cap;
}

static int wait_events(struct pw_engine *eng, struct epoll_event *evs, int n,
		       int64_t ns)
{
	struct timespec ts = { .tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000 };
	int r;

	if (ns < 0)
		return epoll_wait(eng->epfd, evs, n, -1);
	if (!eng->no_pwait2) {
		r = epoll_pwait2(eng->epfd, evs, n, &ts, NULL);
		if (r >= 0 || errno != ENOSYS)
			return r;
		eng->no_pwait2 = true;	/* kernel < 5.11: ms resolution */
	}
	return epoll_wait(eng->epfd, evs, n,
			  (int)PW_MIN((ns + 999999) / 1000000, (int64_t)INT32_MAX));
}

static void run_timers(struct pw_engine *eng)
{
	uint64_t now = 0;

	if (pw_cm_first_deadline(eng) != UINT64_MAX ||
	    pw_listener_first_deadline(eng) != UINT64_MAX) {
		now = pw_now_ns();
		pw_cm_timers(eng, now);
		pw_listener_timers(eng, now);
	}

	for (struct pw_qp_i *qp = eng->qps; qp; qp = qp->eng_next) {
		if (!qp->retry_at_ns && !qp->ack_at_ns)
			continue;
		if (!now)
			now = pw_now_ns();
		if ((!qp->retry_at_ns || qp->retry_at_ns > now) &&
		    (!qp->ack_at_ns || qp->ack_at_ns > now))
			continue;
		pthread_mutex_lock(&qp->lock);
		if (qp->retry_at_ns && qp->retry_at_ns <= now)
			qp->retry_at_ns = 0;
		if (qp->ack_at_ns && qp->ack_at_ns <= now) {
			qp->ack_at_ns = 0;
			/* the delayed ACK is due, if not already sent */
			qp->ack_now = qp->ack_pending;
		}
		pw_tx_flush_locked(qp);
		pthread_mutex_unlock(&qp->lock);
	}
	pw_live_timers(eng);
}

static void run_cmds(struct pw_engine *eng)
{
	struct pw_eng_cmd *c;

	/* set under cmd_lock by run_cmd(); a stale false is seen next batch */
	if (!atomic_load_explicit(&eng->cmd_queued, memory_order_acquire))
		return;
	pthread_mutex_lock(&eng->cmd_lock);
	atomic_store_explicit(&eng->cmd_queued, false, memory_order_relaxed);
	if (!eng->cmd_head) {
		pthread_mutex_unlock(&eng->cmd_lock);
		return;
	}
	while ((c = eng->cmd_head)) {
		struct pw_qp_i *qp = c->qp;

		eng->cmd_head = c->next;
		if (!eng->cmd_head)
			eng->cmd_tail = NULL;
		if (c->type == PW_CMD_ADD_LISTENER) {
			pw_listener_added(c->l);
		} else if (c->type == PW_CMD_DEL_LISTENER) {
			pw_listener_removed(c->l);
		} else if (c->type == PW_CMD_ADD_QP) {
			struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP,
						  .data.ptr = &qp->src };

			qp->in_engine = true;
			qp->eng_next = eng->qps;
			eng->qps = qp;
			eng->nqps++;
			if (pw_cm_state(&qp->cm) != PW_CM_NONE) {
				/* the handshake runs here (cm.c) */
				pw_cm_qp_added(qp);
			} else {
				if (epoll_ctl(eng->epfd, EPOLL_CTL_ADD, qp->fd, &ev) == 0)
					qp->in_epoll = true;
				pw_live_added(eng, qp);
			}
		} else {
			if (qp->in_epoll)
				epoll_ctl(eng->epfd, EPOLL_CTL_DEL, qp->fd, NULL);
			qp->in_epoll = false;
			qp->in_engine = false;
			for (struct pw_qp_i **pp = &eng->qps; *pp; pp = &(*pp)->eng_next)
				if (*pp == qp) {
					*pp = qp->eng_next;
					eng->nqps--;
					pw_live_removed(eng, qp);
					break;
				}
		}
		c->done = 1;
	}
	pthread_cond_broadcast(&eng->cmd_cond);
	pthread_mutex_unlock(&eng->cmd_lock);
}

void pw_engine_rewatch(struct pw_engine *eng, struct pw_qp_i *qp)
{
	struct epoll_event ev = {
		.events = EPOLLIN | EPOLLRDHUP |
			  (atomic_load_explicit(&qp->want_out, memory_order_relaxed) ?
			   EPOLLOUT : 0),
		.data.ptr = &qp->src,
	};

	if (qp->in_epoll || qp->rx.eof || !qp->in_engine)
		return;
	if (epoll_ctl(eng->epfd, EPOLL_CTL_ADD, qp->fd, &ev) == 0)
		qp->in_epoll = true;
}

static void qp_events(struct pw_engine *eng, struct pw_qp_i *qp, uint32_t e)
{
	/* still in its handshake (cm.c) */
	if (!pw_cm_live(&qp->cm)) {
		pw_cm_qp_events(qp, e);
		return;
	}
	/*
	 * Errors and hang-ups are reported even with no interest set: while
	 * a fault stalls the QP, stop watching (the fault's completion reads
	 * the socket and finds the end) rather than spin on them.
	 */
	if (qp->rx_stalled && (e & (EPOLLERR | EPOLLHUP))) {
		epoll_ctl(eng->epfd, EPOLL_CTL_DEL, qp->fd, NULL);
		qp->in_epoll = false;
		return;
	}
	if (e & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP))
		pw_rx_process(qp);
	if (e & EPOLLOUT) {
		pthread_mutex_lock(&qp->lock);
		pw_tx_flush_locked(qp);
		pthread_mutex_unlock(&qp->lock);
	}
	/*
	 * EOF is level-triggered forever: stop watching. The peer is gone or
	 * in error, so unsent bytes do not matter.
	 */
	if (qp->rx.eof && qp->in_epoll) {
		epoll_ctl(eng->epfd, EPOLL_CTL_DEL, qp->fd, NULL);
		qp->in_epoll = false;
	}
}

/* One batch. The caller holds eng->token. */
static void run_batch(struct pw_engine *eng, int timeout_ms)
{
	struct epoll_event evs[64];
	int n;

	/*
	 * A busy-polling pass over a few QPs reads their sockets directly, as
	 * a raw-TCP busy loop does: when data is there it arrives in the same
	 * system call that found it, where epoll_wait would add one to every
	 * message's critical path. Not for a QP in the middle of a large
	 * payload (SO_RCVLOWAT raised) or waiting for send space: spinning
	 * recvmsg/sendmsg there takes the socket lock against the softirq
	 * delivering the stream (measured: busy 1 MiB WRITE fell below
	 * blocking), while epoll's readiness check is lockless and honours
	 * the low-water mark. With many QPs, epoll's ready list is cheaper
	 * than a recv per QP. Commands and kicks are still seen: the eventfd
	 * stays readable for the next blocking batch.
	 */
	if (timeout_ms == 0 && eng->busy && eng->nqps <= PW_BUSY_DIRECT_QPS) {
		/*
		 * Only epoll sees a listener's sockets (a connection request,
		 * a half-open handshake) and a QP still connecting: a poller
		 * that never left this path would leave them to the progress
		 * thread, which stays parked while the poller drives, so a
		 * connection could wait for seconds. A listener is looked at
		 * every PW_BUSY_TIMER_PASSES passes, a connecting QP at once.
		 */
		bool need_epoll = ++eng->busy_passes % PW_BUSY_TIMER_PASSES == 0 &&
				  eng->listeners;

		for (struct pw_qp_i *qp = eng->qps; qp; qp = qp->eng_next) {
			if (!qp->in_epoll)
				continue;
			if (!pw_cm_live(&qp->cm)) {
				need_epoll = true;
				continue;
			}
			if (atomic_load_explicit(&qp->want_out, memory_order_relaxed) ||
			    qp->rx.lowat > 1) {
				need_epoll = true;
			} else {
				pw_live_wake(eng);
				qp_events(eng, qp, EPOLLIN);
			}
		}
		if (!need_epoll)
			goto poll_out;
	}
	n = wait_events(eng, evs, 64, next_timeout_ns(eng, timeout_ms));
	/*
	 * A stop of this process shows as a gap here, before anything that
	 * arrived meanwhile runs; and before each QP's events, which narrows
	 * a stop in the middle of a batch to the QP being served (live.h).
	 */
	pw_live_wake(eng);
	for (int i = 0; i < n; i++) {
		struct pw_eng_src *src = evs[i].data.ptr;

		if (!src) {
			uint64_t v;

			if (read(eng->evfd, &v, sizeof(v)) < 0) {
				/* EAGAIN: another wakeup drained it */
			}
			continue;
		}
		pw_live_wake(eng);
		switch (src->kind) {
		case PW_SRC_QP:
			qp_events(eng, container_of(src, struct pw_qp_i, src), evs[i].events);
			break;
		case PW_SRC_LISTENER:
			pw_listener_events(container_of(src, struct pw_listener, src),
					   evs[i].events);
			break;
		case PW_SRC_HALF_OPEN:
			pw_half_open_events(container_of(src, struct pw_half_open, src),
					    evs[i].events);
			break;
		}
	}
	/* faults resolved off-thread: their QPs resume here (fault.c) */
	pw_fault_reap(&container_of(eng, struct pw_context, engine)->faults);
	/* invalidations for the peers (NOTIFY), queued by any thread */
	pw_notify_reap(container_of(eng, struct pw_context, engine));
	run_timers(eng);
	run_cmds(eng);
	return;
poll_out:
	/*
	 * Timers are ms-grained: a busy poller reads the clock for them on
	 * one pass in PW_BUSY_TIMER_PASSES, not on every one (clock_gettime
	 * was 3% of a busy ping-pong).
	 */
	pw_fault_reap(&container_of(eng, struct pw_context, engine)->faults);
	pw_notify_reap(container_of(eng, struct pw_context, engine));
	if (eng->busy_passes % PW_BUSY_TIMER_PASSES == 0)
		run_timers(eng);
	run_cmds(eng);
}

static bool cmds_pending(struct pw_engine *eng)
{
	bool p;

	pthread_mutex_lock(&eng->cmd_lock);
	p = eng->cmd_head != NULL;
	pthread_mutex_unlock(&eng->cmd_lock);
	return p;
}

/*
 * Leave the engine to application drivers while they are active: one is
 * driving now, or one drove within the last PW_DRIVE_LINGER_NS. "Drove"
 * is told by the drive count moving, not by a timestamp the driver
 * writes: a busy poller then reads no clock, and a poller whose drives
 * are far apart (one per 1 MiB WRITE completion, hundreds of us each)
 * still counts as active. The clock is read here, on the progress thread.
 * Queued commands cut the linger short once no driver holds the engine.
 */
static bool drivers_active(struct pw_engine *eng)
{
	uint64_t d, now;

	if (atomic_load_explicit(&eng->drivers, memory_order_acquire) > 0)
		return true;
	if (cmds_pending(eng))
		return false;
	d = atomic_load_explicit(&eng->drives, memory_order_relaxed);
	now = pw_now_ns();
	if (d != eng->drives_seen) {
		eng->drives_seen = d;
		eng->drives_seen_ns = now;
		return true;
	}
	return now - eng->drives_seen_ns < PW_DRIVE_LINGER_NS;
}

static void *progress_main(void *arg)
{
	struct pw_engine *eng = arg;

	while (!atomic_load_explicit(&eng->stop, memory_order_acquire)) {
		if (drivers_active(eng)) {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += (long)PW_DRIVE_LINGER_NS;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_mutex_lock(&eng->park_lock);
			pthread_cond_timedwait(&eng->park_cond, &eng->park_lock, &ts);
			pthread_mutex_unlock(&eng->park_lock);
			continue;
		}
		pthread_mutex_lock(&eng->token);
		atomic_store_explicit(&eng->thread_runs, true, memory_order_relaxed);
		while (!atomic_load_explicit(&eng->stop, memory_order_acquire) &&
		       !atomic_load_explicit(&eng->drivers, memory_order_acquire))
			run_batch(eng, -1);
		atomic_store_explicit(&eng->thread_runs, false, memory_order_relaxed);
		pthread_mutex_unlock(&eng->token);
	}
	return NULL;
}

int pw_engine_drive(struct pw_engine *eng, int timeout_ms,
		    bool (*done)(void *arg), void *arg)
{
	uint64_t deadline = timeout_ms <= 0 ? UINT64_MAX :
			    pw_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	bool expected = false;
	bool ok;

	if (!atomic_compare_exchange_strong_explicit(&eng->app_driving, &expected,
						     true, memory_order_acq_rel,
						     memory_order_relaxed))
		return -EBUSY;
	atomic_fetch_add_explicit(&eng->drivers, 1, memory_order_acq_rel);
	if (pthread_mutex_trylock(&eng->token) != 0) {
		/* the progress thread sits in epoll_wait with it: call it out */
		pw_engine_kick(eng);
		pthread_mutex_lock(&eng->token);
	}
	tls_driving = eng;
	for (;;) {
		uint64_t now;
		int ms;

		ok = done(arg);
		if (ok || atomic_load_explicit(&eng->stop, memory_order_acquire))
			break;
		if (timeout_ms == 0) {
			run_batch(eng, 0);
			ok = done(arg);
			break;
		}
		now = pw_now_ns();
		if (now >= deadline)
			break;
		ms = deadline == UINT64_MAX ? -1 :
		     (int)PW_MIN((deadline - now + 999999) / 1000000, (uint64_t)INT32_MAX);
		run_batch(eng, ms);
	}
	tls_driving = NULL;
	pthread_mutex_unlock(&eng->token);
	atomic_fetch_add_explicit(&eng->drives, 1, memory_order_relaxed);
	atomic_fetch_sub_explicit(&eng->drivers, 1, memory_order_acq_rel);
	atomic_store_explicit(&eng->app_driving, false, memory_order_release);
	return ok ? 1 : 0;
}

bool pw_engine_poll_found(struct pw_engine *eng)
{
	atomic_fetch_add_explicit(&eng->drives, 1, memory_order_relaxed);
	return atomic_load_explicit(&eng->thread_runs, memory_order_relaxed);
}

int pw_engine_start(struct pw_engine *eng, bool busy)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	const char *mode = getenv("PW_PROGRESS");
	int ret;

	memset(eng, 0, sizeof(*eng));
	eng->busy = busy || (mode && strcmp(mode, "busy") == 0);
	eng->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (eng->epfd < 0)
		return -errno;
	eng->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (eng->evfd < 0) {
		ret = -errno;
		goto err_ep;
	}
	if (epoll_ctl(eng->epfd, EPOLL_CTL_ADD, eng->evfd, &ev) != 0) {
		ret = -errno;
		goto err_ev;
	}
	pthread_mutex_init(&eng->token, NULL);
	pthread_mutex_init(&eng->park_lock, NULL);
	pthread_cond_init(&eng->park_cond, NULL);
	pthread_mutex_init(&eng->cmd_lock, NULL);
	pthread_cond_init(&eng->cmd_cond, NULL);
	ret = -pthread_create(&eng->thread, NULL, progress_main, eng);
	if (ret)
		goto err_lock;
	return 0;

err_lock:
	pthread_cond_destroy(&eng->cmd_cond);
	pthread_mutex_destroy(&eng->cmd_lock);
	pthread_cond_destroy(&eng->park_cond);
	pthread_mutex_destroy(&eng->park_lock);
	pthread_mutex_destroy(&eng->token);
err_ev:
	close(eng->evfd);
err_ep:
	close(eng->epfd);
	return ret;
}

void pw_engine_kick(struct pw_engine *eng)
{
	uint64_t one = 1;

	if (write(eng->evfd, &one, sizeof(one)) < 0) {
		/* counter saturated: the holder is awake anyway */
	}
	pthread_mutex_lock(&eng->park_lock);
	pthread_cond_signal(&eng->park_cond);
	pthread_mutex_unlock(&eng->park_lock);
}

void pw_engine_stop(struct pw_engine *eng)
{
	atomic_store_explicit(&eng->stop, true, memory_order_release);
	pw_engine_kick(eng);
	pthread_join(eng->thread, NULL);
	pthread_cond_destroy(&eng->cmd_cond);
	pthread_mutex_destroy(&eng->cmd_lock);
	pthread_cond_destroy(&eng->park_cond);
	pthread_mutex_destroy(&eng->park_lock);
	pthread_mutex_destroy(&eng->token);
	close(eng->evfd);
	close(eng->epfd);
}

static void run_cmd(struct pw_engine *eng, enum pw_eng_cmd_type type,
		    struct pw_qp_i *qp, struct pw_listener *l)
{
	struct pw_eng_cmd c = { .type = type, .qp = qp, .l = l };

	pthread_mutex_lock(&eng->cmd_lock);
	if (eng->cmd_tail)
		eng->cmd_tail->next = &c;
	else
		eng->cmd_head = &c;
	eng->cmd_tail = &c;
	atomic_store_explicit(&eng->cmd_queued, true, memory_order_release);
	pthread_mutex_unlock(&eng->cmd_lock);
	pw_engine_kick(eng);
	pthread_mutex_lock(&eng->cmd_lock);
	while (!c.done)
		pthread_cond_wait(&eng->cmd_cond, &eng->cmd_lock);
	pthread_mutex_unlock(&eng->cmd_lock);
}

void pw_engine_add_qp(struct pw_engine *eng, struct pw_qp_i *qp)
{
	run_cmd(eng, PW_CMD_ADD_QP, qp, NULL);
}

void pw_engine_del_qp(struct pw_engine *eng, struct pw_qp_i *qp)
{
	run_cmd(eng, PW_CMD_DEL_QP, qp, NULL);
}

void pw_engine_add_listener(struct pw_engine *eng, struct pw_listener *l)
{
	run_cmd(eng, PW_CMD_ADD_LISTENER, NULL, l);
}

void pw_engine_del_listener(struct pw_engine *eng, struct pw_listener *l)
{
	run_cmd(eng, PW_CMD_DEL_LISTENER, NULL, l);
}
