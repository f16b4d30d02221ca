/* SPDX-License-Identifier: MIT */
/*
 * The progress thread. It sleeps in epoll_wait (never spins), then for each
 * ready QP runs the receive side (responder + completer) and the transmit
 * side, fires RNR retry timers, and executes commands from application
 * threads (add/remove a QP) at the end of an iteration, after every event of
 * that iteration's batch, so an event never refers to a freed QP.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "engine/engine.h"
#include "engine/qp.h"

static int next_timeout_ms(struct pw_engine *eng)
{
	uint64_t now = 0, first = UINT64_MAX;

	for (struct pw_qp_i *qp = eng->qps; qp; qp = qp->eng_next)
		if (qp->retry_at_ns && qp->retry_at_ns < first)
			first = qp->retry_at_ns;
	if (first == UINT64_MAX)
		return -1;
	now = pw_now_ns();
	if (first <= now)
		return 0;
	return (int)((first - now + 999999) / 1000000);
}

static void run_timers(struct pw_engine *eng)
{
	uint64_t now = 0;

	for (struct pw_qp_i *qp = eng->qps; qp; qp = qp->eng_next) {
		if (!qp->retry_at_ns)
			continue;
		if (!now)
			now = pw_now_ns();
		if (qp->retry_at_ns > now)
			continue;
		pthread_mutex_lock(&qp->lock);
		qp->retry_at_ns = 0;
		pw_tx_flush_locked(qp);
		pthread_mutex_unlock(&qp->lock);
	}
}

static void run_cmds(struct pw_engine *eng)
{
	struct pw_eng_cmd *c;

	pthread_mutex_lock(&eng->cmd_lock);
	while ((c = eng->cmd_head)) {
		struct pw_qp_i *qp = c->qp;

		eng->cmd_head = c->next;
		if (!eng->cmd_head)
			eng->cmd_tail = NULL;
		if (c->type == PW_CMD_ADD_QP) {
			struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP,
						  .data.ptr = qp };

			if (epoll_ctl(eng->epfd, EPOLL_CTL_ADD, qp->fd, &ev) == 0)
				qp->in_epoll = true;
			qp->eng_next = eng->qps;
			eng->qps = qp;
		} else {
			if (qp->in_epoll)
				epoll_ctl(eng->epfd, EPOLL_CTL_DEL, qp->fd, NULL);
			qp->in_epoll = false;
			for (struct pw_qp_i **pp = &eng->qps; *pp; pp = &(*pp)->eng_next)
				if (*pp == qp) {
					*pp = qp->eng_next;
					break;
				}
		}
		c->done = 1;
	}
	pthread_cond_broadcast(&eng->cmd_cond);
	pthread_mutex_unlock(&eng->cmd_lock);
}

static void *progress_main(void *arg)
{
	struct pw_engine *eng = arg;
	struct epoll_event evs[64];

	while (!atomic_load_explicit(&eng->stop, memory_order_acquire)) {
		int n = epoll_wait(eng->epfd, evs, 64, next_timeout_ms(eng));

		for (int i = 0; i < n; i++) {
			struct pw_qp_i *qp = evs[i].data.ptr;
			uint32_t e = evs[i].events;

			if (!qp) {
				uint64_t v;

				if (read(eng->evfd, &v, sizeof(v)) < 0) {
					/* EAGAIN: another wakeup drained it */
				}
				continue;
			}
			if (e & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP))
				pw_rx_process(qp);
			if (e & EPOLLOUT) {
				pthread_mutex_lock(&qp->lock);
				pw_tx_flush_locked(qp);
				pthread_mutex_unlock(&qp->lock);
			}
			/*
			 * EOF is level-triggered forever: stop watching. The
			 * peer is gone or in error, so unsent bytes do not matter.
			 */
			if (qp->rx.eof && qp->in_epoll) {
				epoll_ctl(eng->epfd, EPOLL_CTL_DEL, qp->fd, NULL);
				qp->in_epoll = false;
			}
		}
		run_timers(eng);
		run_cmds(eng);
	}
	return NULL;
}

int pw_engine_start(struct pw_engine *eng)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	int ret;

	memset(eng, 0, sizeof(*eng));
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
	pthread_mutex_init(&eng->cmd_lock, NULL);
	pthread_cond_init(&eng->cmd_cond, NULL);
	ret = -pthread_create(&eng->thread, NULL, progress_main, eng);
	if (ret)
		goto err_lock;
	return 0;

err_lock:
	pthread_cond_destroy(&eng->cmd_cond);
	pthread_mutex_destroy(&eng->cmd_lock);
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
		/* counter saturated: the thread is awake anyway */
	}
}

void pw_engine_stop(struct pw_engine *eng)
{
	atomic_store_explicit(&eng->stop, true, memory_order_release);
	pw_engine_kick(eng);
	pthread_join(eng->thread, NULL);
	pthread_cond_destroy(&eng->cmd_cond);
	pthread_mutex_destroy(&eng->cmd_lock);
	close(eng->evfd);
	close(eng->epfd);
}

static void run_cmd(struct pw_engine *eng, enum pw_eng_cmd_type type,
		    struct pw_qp_i *qp)
{
	struct pw_eng_cmd c = { .type = type, .qp = qp };

	pthread_mutex_lock(&eng->cmd_lock);
	if (eng->cmd_tail)
		eng->cmd_tail->next = &c;
	else
		eng->cmd_head = &c;
	eng->cmd_tail = &c;
	pthread_mutex_unlock(&eng->cmd_lock);
	pw_engine_kick(eng);
	pthread_mutex_lock(&eng->cmd_lock);
	while (!c.done)
		pthread_cond_wait(&eng->cmd_cond, &eng->cmd_lock);
	pthread_mutex_unlock(&eng->cmd_lock);
}

void pw_engine_add_qp(struct pw_engine *eng, struct pw_qp_i *qp)
{
	run_cmd(eng, PW_CMD_ADD_QP, qp);
}

void pw_engine_del_qp(struct pw_engine *eng, struct pw_qp_i *qp)
{
	run_cmd(eng, PW_CMD_DEL_QP, qp);
}
