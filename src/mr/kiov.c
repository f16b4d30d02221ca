/* SPDX-License-Identifier: MIT */
/* Keyed iovecs: memory access under a per-syscall use of its MR. */
#include "mr/mr.h"
#include "paging/notifier.h"
#include "util/util.h"

void pw_kiov_put(struct pw_mr_i **uses, int nuses)
{
	for (int i = 0; i < nuses; i++)
		pw_mr_put(uses[i]);
	if (nuses)
		pw_notify_exit();
}

int pw_kiov_get(struct pw_keytable *kt, const struct pw_kiov *k, int n, int idx,
		size_t off, uint64_t max, struct iovec *out,
		struct pw_mr_i **uses, int *nuses)
{
	int cnt = 0;

	*nuses = 0;
	/*
	 * The notifier's fence (paging/notifier.h) comes first: the MR
	 * checks below (dead ranges) and the caller's access then either
	 * see an unmap's effects or are waited for by its handler.
	 */
	pw_notify_enter();
	for (int i = idx; i < n && max; i++) {
		size_t o = i == idx ? off : 0;
		size_t len = (size_t)PW_MIN((uint64_t)(k[i].len - o), max);
		uint64_t a = (uint64_t)(uintptr_t)k[i].base + o;

		if (k[i].key) {
			struct pw_mr_i *mr = pw_mr_get(kt, k[i].key);

			if (!mr || !pw_mr_covers(mr, a, len)) {
				if (mr)
					pw_mr_put(mr);
				for (int j = 0; j < *nuses; j++)
					pw_mr_put(uses[j]);
				*nuses = 0;
				pw_notify_exit();
				return -1;
			}
			uses[(*nuses)++] = mr;
		}
		out[cnt].iov_base = (void *)(uintptr_t)a;
		out[cnt++].iov_len = len;
		max -= len;
	}
	if (!*nuses)
		pw_notify_exit();	/* the engine's own memory only */
	return cnt;
}
