/* SPDX-License-Identifier: MIT */
/*
 * pw_advise_mr(): prefetch ranges of ODP MRs into their page tables, as
 * ibv_advise_mr() does for a NIC's ODP MRs. Synchronous with
 * PW_ADVISE_MR_FLAG_FLUSH (the caller's thread populates), otherwise
 * queued to the fault engine.
 */
#include <errno.h>
#include <stdlib.h>

#include "core/context.h"
#include "mr/mr.h"
#include "paging/fault.h"
#include "util/util.h"

/* An asynchronous advice is owned by the fault engine once queued. */
static void advise_done(struct pw_fault *f)
{
	free(f);
}

/* The lkey names an MR of @pd covering the range. *odp: it has a table. */
static int check_sge(struct pw_context *ctx, struct pw_pd *pd,
		     const struct pw_sge *sge, bool *odp)
{
	struct pw_mr_i *mr = pw_mr_get(&ctx->keys, sge->lkey);
	int ret = 0;

	if (!mr) {
		pw_set_error("pw_advise_mr: lkey 0x%x is not a registered MR",
			     sge->lkey);
		return -EINVAL;
	}
	if (mr->ibmr.pd != pd || !pw_mr_covers(mr, sge->addr, sge->length)) {
		pw_set_error("pw_advise_mr: lkey 0x%x: range [0x%llx, +%u) outside the MR or another PD",
			     sge->lkey, (unsigned long long)sge->addr,
			     sge->length);
		ret = -EINVAL;
	}
	*odp = mr->pt != NULL;
	pw_mr_put(mr);
	return ret;
}

int pw_advise_mr(struct pw_pd *pd, enum pw_advise_mr_advice advice,
		 uint32_t flags, const struct pw_sge *sg_list, uint32_t num_sge)
{
	struct pw_context *ctx;
	bool write = advice == PW_ADVISE_MR_ADVICE_PREFETCH_WRITE;
	int ret;

	pw_clear_error();
	if (!pd || !sg_list || !num_sge ||
	    (advice != PW_ADVISE_MR_ADVICE_PREFETCH && !write) ||
	    (flags & ~PW_ADVISE_MR_FLAG_FLUSH)) {
		pw_set_error("pw_advise_mr: bad PD, advice %d, flags 0x%x or empty list",
			     (int)advice, flags);
		return -EINVAL;
	}
	ctx = pd->context;
	/* validate everything first: a bad entry queues nothing */
	for (uint32_t i = 0; i < num_sge; i++) {
		bool odp;

		ret = check_sge(ctx, pd, &sg_list[i], &odp);
		if (ret)
			return ret;
	}
	for (uint32_t i = 0; i < num_sge; i++) {
		const struct pw_sge *s = &sg_list[i];
		struct pw_fault *f;

		if (!s->length)
			continue;
		if (flags & PW_ADVISE_MR_FLAG_FLUSH) {
			ret = pw_fault_populate(&ctx->faults, s->lkey, s->addr,
						s->length, write, NULL);
			if (ret) {
				pw_set_error("pw_advise_mr: nothing mapped in [0x%llx, +%u)",
					     (unsigned long long)s->addr,
					     s->length);
				return ret;
			}
			pw_budget_kick(&ctx->budget);	/* pages were added */
			continue;
		}
		f = calloc(1, sizeof(*f));
		if (!f)
			return -ENOMEM;
		f->key = s->lkey;
		f->addr = s->addr;
		f->len = s->length;
		f->write = write;
		f->owned = true;
		f->done = advise_done;
		pw_fault_submit(&ctx->faults, f);
	}
	return 0;
}
