/* SPDX-License-Identifier: MIT */
/*
 * The progress engine: the software NIC. One thread per context waits in
 * epoll on every QP socket and runs the responder (incoming requests), the
 * completer (incoming responses) and the transmitter. It never spins: with
 * nothing to do it sleeps in epoll_wait.
 *
 * Socket ownership: only engine code touches QP sockets. It runs on the
 * progress thread, and on an application thread inside pw_post_send() (the
 * "doorbell": the requester transmits at once under qp->lock instead of
 * handing the WR to the progress thread, saving a thread hand-off).
 */
#ifndef PW_ENGINE_ENGINE_H
#define PW_ENGINE_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct pw_qp_i;
struct pw_listener;

enum pw_eng_cmd_type {
	PW_CMD_ADD_QP,
	PW_CMD_DEL_QP,
	PW_CMD_ADD_LISTENER,
	PW_CMD_DEL_LISTENER,
};

struct pw_eng_cmd {
	enum pw_eng_cmd_type type;
	struct pw_qp_i *qp;
	struct pw_listener *l;
	struct pw_eng_cmd *next;
	int done;		/* set under eng->cmd_lock, signalled by cmd_cond */
};

struct pw_engine {
	int epfd;
	int evfd;		/* wakes the token holder: commands, stop, hand-over */
	pthread_t thread;
	atomic_bool stop;
	bool busy;		/* PW_CONTEXT_BUSY_POLL or PW_PROGRESS=busy: pw_poll_cq drives */
	/*
	 * token: its holder *is* the engine: it alone waits in epoll_wait on
	 * the QP sockets and runs a batch (rx, tx, timers, commands), so an
	 * event never outlives its QP and rx state needs no lock. Normally the
	 * progress thread holds it. An application thread that waits for
	 * completions (pw_get_cq_event; pw_poll_cq in busy mode) takes it over
	 * and drives the engine itself: the completion is then found by the
	 * thread that wants it, with no thread hand-off (~4 us each:
	 * docs/performance.md).
	 */
	pthread_mutex_t token;
	atomic_int drivers;	/* application threads holding or wanting it */
	atomic_bool app_driving; /* one application driver at a time */
	/*
	 * Application activity ever, the linger clock: bumped by each driver
	 * as it lets go and by a busy poller that found completions (any
	 * thread: relaxed, it is a hint that orders no data), read by the
	 * progress thread, which takes the engine back only after a whole
	 * PW_DRIVE_LINGER_NS in which the count did not move.
	 */
	_Atomic uint64_t drives;
	atomic_bool thread_runs;	/* the progress thread holds the token */
	uint64_t drives_seen;	/* progress thread only: drives when last read */
	uint64_t drives_seen_ns; /* progress thread only: when it last moved */
	/* park_lock: guards the progress thread's sleep while applications drive */
	pthread_mutex_t park_lock;
	pthread_cond_t park_cond;
	/*
	 * cmd_lock: protects the command queue and each command's done flag;
	 * application threads queue, the token holder drains.
	 */
	pthread_mutex_t cmd_lock;
	pthread_cond_t cmd_cond;
	struct pw_eng_cmd *cmd_head, *cmd_tail;
	atomic_bool cmd_queued;	/* cmd_head non-empty, readable without cmd_lock */
	/* QPs and listeners known to the engine; touched only by the token holder. */
	struct pw_qp_i *qps;
	struct pw_listener *listeners;
	unsigned nqps;		/* length of qps; token holder only */
	unsigned busy_passes;	/* busy polling passes; token holder only */
	bool no_pwait2;		/* epoll_pwait2 is ENOSYS; token holder only */
	/*
	 * Transport liveness (live.c), token holder only: QPs with it on;
	 * a quarter of their smallest bound (the longest the engine sleeps);
	 * the next scan of those without a deadline; when the engine last
	 * ran (a longer gap is a stop). Coarse clock.
	 */
	unsigned lv_nqps;
	uint64_t lv_cap_ns;
	uint64_t lv_scan_ns;
	uint64_t lv_mark_ns;
};

/* @busy: PW_CONTEXT_BUSY_POLL (PW_PROGRESS=busy also sets it) */
int pw_engine_start(struct pw_engine *eng, bool busy);
void pw_engine_stop(struct pw_engine *eng);
/* Hand @qp to the engine and wait until it is (de)registered. */
void pw_engine_add_qp(struct pw_engine *eng, struct pw_qp_i *qp);
void pw_engine_del_qp(struct pw_engine *eng, struct pw_qp_i *qp);
/* The same for a listener (its socket and half-open set, listener.c). */
void pw_engine_add_listener(struct pw_engine *eng, struct pw_listener *l);
void pw_engine_del_listener(struct pw_engine *eng, struct pw_listener *l);
/* Wake the token holder (commands, timers, a completion for a driver). */
void pw_engine_kick(struct pw_engine *eng);
/* Token holder: watch @qp's socket again (an error hid it while stalled). */
void pw_engine_rewatch(struct pw_engine *eng, struct pw_qp_i *qp);

/**
 * pw_engine_drive() - run the engine on this thread until @done
 * @timeout_ms: -1 forever, 0 one non-blocking pass
 *
 * One application thread drives at a time: a second one would wait for the
 * token while the first sleeps in epoll_wait for its own completion.
 *
 * Return: 1 once @done(@arg) holds, 0 on timeout, -EBUSY if another
 * application thread is driving (the caller waits the ordinary way: its
 * completion reaches it through the channel fd).
 */
int pw_engine_drive(struct pw_engine *eng, int timeout_ms,
		    bool (*done)(void *arg), void *arg);

/*
 * pw_engine_poll_found() - a busy poller found completions without driving
 *
 * Counts as activity for the linger clock. Return: true if the progress
 * thread is running the engine meanwhile, so that the poller should drive
 * once to take it over (pw_poll_cq).
 */
bool pw_engine_poll_found(struct pw_engine *eng);

/* Is the calling thread driving @eng right now? */
bool pw_engine_driving(const struct pw_engine *eng);

#endif /* PW_ENGINE_ENGINE_H */
