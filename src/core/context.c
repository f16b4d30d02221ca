/* SPDX-License-Identifier: MIT */
/* pw_open/pw_close and protection domains. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/context.h"
#include "paging/notifier.h"
#include "util/util.h"

/* The fault engine added pages: the budget may have to reclaim. */
static void budget_added(struct pw_fault_engine *fe)
{
	pw_budget_kick(&container_of(fe, struct pw_context, faults)->budget);
}

/* The limits of docs/limits.md: attribute, else environment, else default. */
static int context_limits(struct pw_context *ctx, const struct pw_context_attr *attr)
{
	const char *e = getenv("PW_PEER_TIMEOUT_MS");

	ctx->peer_timeout_ms = attr ? attr->peer_timeout_ms : 0;
	if (!ctx->peer_timeout_ms && e && *e) {
		char *end;
		unsigned long v = strtoul(e, &end, 10);

		if (*end || v < PW_MIN_PEER_TIMEOUT_MS || v > PW_MAX_PEER_TIMEOUT_MS) {
			pw_set_error("pw_open: PW_PEER_TIMEOUT_MS must be a number of ms, %d..%d",
				     PW_MIN_PEER_TIMEOUT_MS, PW_MAX_PEER_TIMEOUT_MS);
			return -EINVAL;
		}
		ctx->peer_timeout_ms = (uint32_t)v;
	}
	if (!ctx->peer_timeout_ms)
		ctx->peer_timeout_ms = PW_DEF_PEER_TIMEOUT_MS;
	ctx->max_half_open = attr && attr->max_half_open ? attr->max_half_open :
			     PW_DEF_HALF_OPEN;
	ctx->handshake_ms = attr && attr->handshake_timeout_ms ?
			    attr->handshake_timeout_ms : PW_DEF_HANDSHAKE_MS;
	return 0;
}

struct pw_context *pw_open(const struct pw_context_attr *attr)
{
	struct pw_context *ctx;
	uint32_t qpn;
	int ret;

	if (attr && ((attr->flags & ~(PW_CONTEXT_NO_NOTIFY | PW_CONTEXT_NO_LINK |
				 PW_CONTEXT_BUSY_POLL)) ||
		     attr->fault_policy > PW_FAULT_NOTIFY)) {
		pw_set_error("pw_open: unknown flags 0x%x or fault policy %u",
			     attr->flags, attr->fault_policy);
		errno = EINVAL;
		return NULL;
	}
	if (attr && ((attr->peer_timeout_ms && (attr->peer_timeout_ms < PW_MIN_PEER_TIMEOUT_MS ||
						  attr->peer_timeout_ms > PW_MAX_PEER_TIMEOUT_MS)) ||
		     attr->max_half_open > PW_MAX_HALF_OPEN)) {
		pw_set_error("pw_open: peer_timeout_ms must be 0 or %d..%d, max_half_open <= %d",
			     PW_MIN_PEER_TIMEOUT_MS, PW_MAX_PEER_TIMEOUT_MS, PW_MAX_HALF_OPEN);
		errno = EINVAL;
		return NULL;
	}
	pw_safe_copy_init();
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx) {
		errno = ENOMEM;
		return NULL;
	}
	pthread_mutex_init(&ctx->obj_lock, NULL);
	pthread_mutex_init(&ctx->cm_lock, NULL);
	pthread_cond_init(&ctx->cm_cond, NULL);
	pw_nring_init(&ctx->nring);
	ctx->no_notify = attr && (attr->flags & PW_CONTEXT_NO_NOTIFY);
	ctx->no_link = attr && (attr->flags & PW_CONTEXT_NO_LINK);
	ctx->fault_policy = attr ? attr->fault_policy : 0;
	if (!ctx->fault_policy) {
		const char *e = getenv("PW_FAULT_POLICY");

		ctx->fault_policy = e && !strcmp(e, "drop") ? PW_FAULT_DROP :
				    e && !strcmp(e, "notify") ? PW_FAULT_NOTIFY :
				    PW_FAULT_STALL;
	}
	ret = context_limits(ctx, attr);
	if (ret)
		goto err_free;
	ret = pw_keytable_init(&ctx->keys);
	if (ret)
		goto err_free;
	ret = pw_async_init(ctx);
	if (ret)
		goto err_keys;
	/* QP numbers start at a random point, as a NIC's would. */
	pw_random_bytes(&qpn, sizeof(qpn));
	atomic_init(&ctx->next_qpn, (qpn & 0xffff00u) | 1u);
	ret = pw_engine_start(&ctx->engine,
			      attr && (attr->flags & PW_CONTEXT_BUSY_POLL));
	if (ret)
		goto err_async;
	ret = pw_budget_start(ctx, attr ? attr->mem_budget : 0);
	if (ret) {
		pw_set_error("pw_open: PW_MEM_BUDGET is not a size (e.g. 256M), or "
			     "the budget's thread could not start");
		goto err_budget;
	}
	/* before the worker starts: it reads the hook without a lock */
	if (ctx->budget.started)
		ctx->faults.added = budget_added;
	ret = pw_fault_start(&ctx->faults, &ctx->keys, &ctx->engine);
	if (ret)
		goto err_budget;
	pw_notifier_get();
	return ctx;

err_budget:
	pw_budget_stop(ctx);
	pw_engine_stop(&ctx->engine);
err_async:
	pw_async_fini(ctx);
err_keys:
	pw_keytable_destroy(&ctx->keys);
err_free:
	pw_nring_fini(&ctx->nring);
	pthread_cond_destroy(&ctx->cm_cond);
	pthread_mutex_destroy(&ctx->cm_lock);
	pthread_mutex_destroy(&ctx->obj_lock);
	free(ctx);
	errno = -ret;
	return NULL;
}

int pw_close(struct pw_context *ctx)
{
	if (!ctx)
		return -EINVAL;
	pthread_mutex_lock(&ctx->obj_lock);
	if (ctx->npd || ctx->ncq || ctx->nchannel || ctx->nlistener || ctx->ncm_channel) {
		pthread_mutex_unlock(&ctx->obj_lock);
		pw_set_error("pw_close: %d PDs, %d CQs, %d channels, %d listeners, "
			     "%d connection channels still open", ctx->npd, ctx->ncq,
			     ctx->nchannel, ctx->nlistener, ctx->ncm_channel);
		return -EBUSY;
	}
	pthread_mutex_unlock(&ctx->obj_lock);
	pw_budget_stop(ctx);
	pw_fault_stop(&ctx->faults);
	pw_engine_stop(&ctx->engine);
	pw_fault_fini(&ctx->faults);
	pw_notifier_put();
	pw_async_fini(ctx);
	pw_keytable_destroy(&ctx->keys);
	pw_nring_fini(&ctx->nring);
	pthread_cond_destroy(&ctx->cm_cond);
	pthread_mutex_destroy(&ctx->cm_lock);
	pthread_mutex_destroy(&ctx->obj_lock);
	free(ctx);
	return 0;
}

struct pw_pd *pw_alloc_pd(struct pw_context *ctx)
{
	struct pw_pd_i *pd;

	if (!ctx) {
		errno = EINVAL;
		return NULL;
	}
	pd = calloc(1, sizeof(*pd));
	if (!pd) {
		errno = ENOMEM;
		return NULL;
	}
	pd->ibpd.context = ctx;
	pthread_mutex_lock(&ctx->obj_lock);
	ctx->npd++;
	pthread_mutex_unlock(&ctx->obj_lock);
	return &pd->ibpd;
}

int pw_dealloc_pd(struct pw_pd *ibpd)
{
	struct pw_pd_i *pd;
	struct pw_context *ctx;

	if (!ibpd)
		return -EINVAL;
	pd = to_pd(ibpd);
	ctx = ibpd->context;
	if (atomic_load(&pd->users) > 0) {
		pw_set_error("pw_dealloc_pd: %d MRs/QPs still use the PD",
			     atomic_load(&pd->users));
		return -EBUSY;
	}
	pthread_mutex_lock(&ctx->obj_lock);
	ctx->npd--;
	pthread_mutex_unlock(&ctx->obj_lock);
	free(pd);
	return 0;
}

int pw_query_stats(struct pw_context *ctx, struct pw_stats *st, size_t size)
{
	const struct pw_fault_stats *f;
	struct pw_stats s = { 0 };

	if (!ctx || !st || !size)
		return -EINVAL;
	f = &ctx->faults.stats;
	s.faults = atomic_load_explicit(&f->faults, memory_order_relaxed);
	s.fault_failed = atomic_load_explicit(&f->failed, memory_order_relaxed);
	s.fault_pages = atomic_load_explicit(&f->pages, memory_order_relaxed);
	s.fault_around_pages = atomic_load_explicit(&f->around_pages,
						    memory_order_relaxed);
	s.fault_major = atomic_load_explicit(&f->major, memory_order_relaxed);
	s.fault_ns = atomic_load_explicit(&f->fault_ns, memory_order_relaxed);
	s.stall_ns = atomic_load_explicit(&f->stall_ns, memory_order_relaxed);
	s.naks_sent = atomic_load_explicit(&f->naks_sent, memory_order_relaxed);
	s.naks_received = atomic_load_explicit(&f->naks_received,
					       memory_order_relaxed);
	s.retransmitted_bytes = atomic_load_explicit(&f->retransmitted_bytes,
						     memory_order_relaxed);
	s.dropped_bytes = atomic_load_explicit(&f->dropped_bytes,
					       memory_order_relaxed);
	s.fault_inline = atomic_load_explicit(&f->inline_faults,
					      memory_order_relaxed);
	s.notifier_off = !pw_notifier_on();
	s.notifier_events = pw_notifier_events();
	s.notifications_sent = atomic_load_explicit(&ctx->nring.sent, memory_order_relaxed);
	s.notifications_received = atomic_load_explicit(&ctx->nring.received,
							memory_order_relaxed);
	s.fault_in_sent = atomic_load_explicit(&ctx->nring.fault_in_sent,
					       memory_order_relaxed);
	s.fault_in_received = atomic_load_explicit(&ctx->nring.fault_in_received,
						   memory_order_relaxed);
	s.notify_dropped = atomic_load_explicit(&ctx->nring.dropped, memory_order_relaxed);
	s.notify_view_ranges = (uint64_t)atomic_load_explicit(&ctx->nring.views,
							      memory_order_relaxed);
	s.notify_last_rx_ns = atomic_load_explicit(&ctx->nring.last_rx_ns,
						   memory_order_relaxed);
	s.budget_bytes = ctx->budget.bytes;
	s.resident_bytes = pw_budget_resident(ctx);
	s.reclaimed_pages = atomic_load_explicit(&ctx->budget.reclaimed_pages,
						 memory_order_relaxed);
	s.reclaim_paged_out = atomic_load_explicit(&ctx->budget.paged_out_pages,
						   memory_order_relaxed);
	s.reclaim_unfreed = atomic_load_explicit(&ctx->budget.unfreed_pages,
						 memory_order_relaxed);
	s.reclaim_no_swap = atomic_load_explicit(&ctx->budget.no_swap,
						 memory_order_relaxed);
	s.conn_half_open_dropped = atomic_load_explicit(&ctx->conn_dropped,
							memory_order_relaxed);
	s.conn_handshake_failed = atomic_load_explicit(&ctx->conn_failed,
						       memory_order_relaxed);
	s.rd_atomic_overrun = atomic_load_explicit(&ctx->rd_overrun, memory_order_relaxed);
	s.heartbeats_sent = atomic_load_explicit(&ctx->hb_sent, memory_order_relaxed);
	s.heartbeats_received = atomic_load_explicit(&ctx->hb_received,
						     memory_order_relaxed);
	s.peer_timeouts = atomic_load_explicit(&ctx->peer_timeouts, memory_order_relaxed);
	s.stops_detected = atomic_load_explicit(&ctx->stops, memory_order_relaxed);
	for (int i = 0; i < PW_STATS_FAULT_HIST && i < PW_FAULT_HIST; i++)
		s.fault_lat_hist[i] = atomic_load_explicit(&f->lat_hist[i],
							   memory_order_relaxed);
	/* a caller built against a shorter struct gets its prefix */
	memcpy(st, &s, size < sizeof(s) ? size : sizeof(s));
	return 0;
}
