/* SPDX-License-Identifier: MIT */
/*
 * The memory budget (budget.h): CLOCK reclaim of ODP pages, off the
 * progress thread.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "core/context.h"
#include "mr/mr.h"
#include "notify/notify.h"
#include "paging/budget.h"
#include "paging/pt.h"

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

#define BUDGET_VICTIMS	512	/* pages per CLOCK step */
#define BUDGET_SCAN	8192	/* valid pages examined per step */
#define BUDGET_LOW_PCT	90	/* a pass reclaims down to this share */

uint64_t pw_parse_size(const char *s)
{
	char *end;
	unsigned long long v;
	uint64_t mul = 1;

	if (!s || !*s)
		return 0;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return 0;
	switch (*end) {
	case 'k': case 'K': mul = 1ull << 10; end++; break;
	case 'm': case 'M': mul = 1ull << 20; end++; break;
	case 'g': case 'G': mul = 1ull << 30; end++; break;
	case 't': case 'T': mul = 1ull << 40; end++; break;
	default: break;
	}
	if (*end == 'i' || *end == 'B')	/* "256MiB", "256MB" */
		end++;
	if (*end == 'B')
		end++;
	if (*end || v > UINT64_MAX / mul)
		return 0;
	return (uint64_t)v * mul;
}

static bool have_swap(void)
{
	char line[256];
	FILE *f = fopen("/proc/swaps", "re");
	int n = 0;

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		n++;
	fclose(f);
	return n > 1;	/* a header line, then one per device */
}

static uint64_t resident_locked(struct pw_budget *b)
{
	uint64_t pages = 0;

	for (struct pw_mr_i *mr = b->mrs; mr; mr = mr->budget_next)
		pages += pw_pt_valid_pages(mr->pt);
	return pages * PW_PT_PAGE_SIZE;
}

uint64_t pw_budget_resident(struct pw_context *ctx)
{
	uint64_t r;

	pthread_mutex_lock(&ctx->obj_lock);
	r = resident_locked(&ctx->budget);
	pthread_mutex_unlock(&ctx->obj_lock);
	return r;
}

/* Evict [a, b) of @mr: invalidate, tell the peers, page out. */
static void evict(struct pw_budget *b, struct pw_mr_i *mr, uint64_t a, uint64_t e)
{
	size_t pages = (size_t)((e - a) / PW_PT_PAGE_SIZE);
	unsigned char vec[BUDGET_VICTIMS];
	size_t still = 0;

	/*
	 * budget.h's order: invalidate, then notify, then page out, so that
	 * neither our page table nor a peer's view still vouches for a page
	 * the kernel is taking away
	 */
	pw_mr_forget_range(mr, a, e);
	pw_notify_invalidated(mr, a, e);
	atomic_fetch_add_explicit(&b->reclaimed_pages, pages, memory_order_relaxed);
	if (madvise((void *)(uintptr_t)a, e - a, MADV_PAGEOUT))
		return;		/* unmapped meanwhile, or no PAGEOUT: nothing left */
	if (pages <= BUDGET_VICTIMS && !mincore((void *)(uintptr_t)a, e - a, vec))
		for (size_t i = 0; i < pages; i++)
			still += vec[i] & 1;
	atomic_fetch_add_explicit(&b->paged_out_pages, pages - still,
				  memory_order_relaxed);
	if (still) {
		atomic_fetch_add_explicit(&b->unfreed_pages, still,
					  memory_order_relaxed);
		if (!have_swap())
			atomic_store_explicit(&b->no_swap, true, memory_order_relaxed);
	}
}

/* One CLOCK step over @mr. Return the pages evicted. */
static size_t step_mr(struct pw_budget *b, struct pw_mr_i *mr)
{
	uint64_t v[BUDGET_VICTIMS];
	size_t n, done = 0;

	pw_pt_lock(mr->pt);
	n = pw_pt_clock_scan_locked(mr->pt, BUDGET_SCAN, v, BUDGET_VICTIMS);
	pw_pt_unlock(mr->pt);
	/* victims come in address order: evict contiguous runs at once */
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;

		while (j < n && v[j] == v[j - 1] + PW_PT_PAGE_SIZE)
			j++;
		evict(b, mr, v[i], v[j - 1] + PW_PT_PAGE_SIZE);
		done += j - i;
		i = j;
	}
	return done;
}

/* Reclaim down to BUDGET_LOW_PCT of the budget (ctx->obj_lock held). */
static void pass_locked(struct pw_budget *b)
{
	uint64_t low = b->bytes / 100 * BUDGET_LOW_PCT;
	unsigned int nmrs = 0, idle = 0;

	for (struct pw_mr_i *mr = b->mrs; mr; mr = mr->budget_next)
		nmrs++;
	while (resident_locked(b) > low && b->mrs) {
		struct pw_mr_i *mr = b->cursor ? b->cursor : b->mrs;

		b->cursor = mr->budget_next;
		/*
		 * A step over a table whose pages were all accessed only
		 * clears their bits: two full rounds of the list without a
		 * victim mean nothing can go (every page is in use).
		 */
		if (step_mr(b, mr))
			idle = 0;
		else if (++idle > 2 * nmrs)
			break;
	}
}

static void *budget_main(void *arg)
{
	struct pw_context *ctx = arg;
	struct pw_budget *b = &ctx->budget;

	pthread_mutex_lock(&b->lock);
	while (!b->stop) {
		if (!atomic_exchange_explicit(&b->kicked, false, memory_order_acq_rel)) {
			pthread_cond_wait(&b->cond, &b->lock);
			continue;
		}
		pthread_mutex_unlock(&b->lock);
		pthread_mutex_lock(&ctx->obj_lock);
		if (resident_locked(b) > b->bytes)
			pass_locked(b);
		pthread_mutex_unlock(&ctx->obj_lock);
		pthread_mutex_lock(&b->lock);
	}
	pthread_mutex_unlock(&b->lock);
	return NULL;
}

void pw_budget_kick(struct pw_budget *b)
{
	if (!b->started ||
	    atomic_exchange_explicit(&b->kicked, true, memory_order_acq_rel))
		return;
	pthread_mutex_lock(&b->lock);
	pthread_cond_signal(&b->cond);
	pthread_mutex_unlock(&b->lock);
}

int pw_budget_start(struct pw_context *ctx, uint64_t attr_bytes)
{
	struct pw_budget *b = &ctx->budget;
	const char *e = getenv("PW_MEM_BUDGET");
	int ret;

	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->cond, NULL);
	b->bytes = attr_bytes;
	if (!b->bytes && e && *e) {
		b->bytes = pw_parse_size(e);
		if (!b->bytes)
			return -EINVAL;
	}
	if (!b->bytes)
		return 0;
	ret = -pthread_create(&b->thread, NULL, budget_main, ctx);
	if (ret)
		return ret;
	b->started = true;
	return 0;
}

void pw_budget_stop(struct pw_context *ctx)
{
	struct pw_budget *b = &ctx->budget;

	if (b->started) {
		pthread_mutex_lock(&b->lock);
		b->stop = true;
		pthread_cond_signal(&b->cond);
		pthread_mutex_unlock(&b->lock);
		pthread_join(b->thread, NULL);
		b->started = false;
	}
	pthread_cond_destroy(&b->cond);
	pthread_mutex_destroy(&b->lock);
}

void pw_budget_add_mr_locked(struct pw_context *ctx, struct pw_mr_i *mr)
{
	mr->budget_next = ctx->budget.mrs;
	ctx->budget.mrs = mr;
}

void pw_budget_del_mr_locked(struct pw_context *ctx, struct pw_mr_i *mr)
{
	struct pw_budget *b = &ctx->budget;

	if (b->cursor == mr)
		b->cursor = mr->budget_next;
	for (struct pw_mr_i **pp = &b->mrs; *pp; pp = &(*pp)->budget_next)
		if (*pp == mr) {
			*pp = mr->budget_next;
			return;
		}
}
