/* SPDX-License-Identifier: MIT */
/*
 * The memory budget (pw_context_attr.mem_budget, PW_MEM_BUDGET): the
 * pages a context's ODP MRs hold in their device page tables are kept
 * under a budget by reclaiming cold ones:
 * CLOCK over the tables' ACCESSED bits, then, per victim range, invalidate
 * (the page table), notify the peers (NOTIFY's INVALIDATE), and
 * MADV_PAGEOUT (the kernel writes anonymous pages to swap, file pages
 * back). Without swap, anonymous pages cannot leave memory: the pages
 * still resident after MADV_PAGEOUT are counted, and the stats say so.
 *
 * A thread of its own does it, never the progress thread: woken when a
 * fault added pages (the fault engine's hook) and otherwise asleep.
 */
#ifndef PW_PAGING_BUDGET_H
#define PW_PAGING_BUDGET_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct pw_context;
struct pw_mr_i;

struct pw_budget {
	uint64_t bytes;		/* 0: no budget, no thread */
	pthread_t thread;
	bool started;
	/*
	 * lock: protects @stop and the sleep of the thread (cond); the MR
	 * list is the context's obj_lock's. Holders never wait for anything
	 * but the condition.
	 */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
	atomic_bool kicked;
	struct pw_mr_i *mrs;	/* ODP MRs (ctx->obj_lock), by mr->budget_next */
	struct pw_mr_i *cursor;	/* where the last pass stopped (obj_lock) */
	/* counters (relaxed) */
	atomic_uint_fast64_t reclaimed_pages;	/* invalidated by the budget */
	atomic_uint_fast64_t paged_out_pages;	/* of those, gone from memory */
	atomic_uint_fast64_t unfreed_pages;	/* still resident after PAGEOUT */
	atomic_bool no_swap;	/* anonymous pages had nowhere to go */
};

/* pw_open: parse PW_MEM_BUDGET when @attr_bytes is 0. Return 0 or -errno. */
int pw_budget_start(struct pw_context *ctx, uint64_t attr_bytes);
void pw_budget_stop(struct pw_context *ctx);
/* An ODP MR joins / leaves (ctx->obj_lock held). */
void pw_budget_add_mr_locked(struct pw_context *ctx, struct pw_mr_i *mr);
void pw_budget_del_mr_locked(struct pw_context *ctx, struct pw_mr_i *mr);
/* Pages were added to some table: run a pass if over budget. Any thread. */
void pw_budget_kick(struct pw_budget *b);
/* Bytes the ODP MRs' tables hold now (takes ctx->obj_lock). */
uint64_t pw_budget_resident(struct pw_context *ctx);
/* "256M", "1G", "4096": bytes, or 0 for a malformed value. */
uint64_t pw_parse_size(const char *s);

#endif /* PW_PAGING_BUDGET_H */
