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

enum pw_eng_cmd_type {
	PW_CMD_ADD_QP,
	PW_CMD_DEL_QP,
};

struct pw_eng_cmd {
	enum pw_eng_cmd_type type;
	struct pw_qp_i *qp;
	struct pw_eng_cmd *next;
	int done;		/* set under eng->cmd_lock, signalled by cmd_cond */
};

struct pw_engine {
	int epfd;
	int evfd;		/* wakes the progress thread for commands/stop */
	pthread_t thread;
	atomic_bool stop;
	/*
	 * cmd_lock: protects the command queue and each command's done flag;
	 * application threads queue, the progress thread drains.
	 */
	pthread_mutex_t cmd_lock;
	pthread_cond_t cmd_cond;
	struct pw_eng_cmd *cmd_head, *cmd_tail;
	/* QPs known to the engine; touched only by the progress thread. */
	struct pw_qp_i *qps;
};

int pw_engine_start(struct pw_engine *eng);
void pw_engine_stop(struct pw_engine *eng);
/* Hand @qp to the progress thread and wait until it is (de)registered. */
void pw_engine_add_qp(struct pw_engine *eng, struct pw_qp_i *qp);
void pw_engine_del_qp(struct pw_engine *eng, struct pw_qp_i *qp);
/* Wake the progress thread so it re-reads timers. */
void pw_engine_kick(struct pw_engine *eng);

#endif /* PW_ENGINE_ENGINE_H */
