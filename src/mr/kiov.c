/* SPDX-License-Identifier: MIT */
/* Keyed iovecs: memory access under a per-syscall use of its MR. */
#include "mr/mr.h"
#include "util/util.h"

void pw_kiov_put(struct pw_mr_i **uses, int nuses)
{
	for (int i = 0; i < nuses; i++)
		pw_mr_put(uses[i]);
}

int pw_kiov_get(struct pw_keytable *kt, const struct pw_kiov *k, int n, int idx,
		size_t off, uint64_t max, struct iovec *out,
		struct pw_mr_i **uses, int *nuses)
{
	int cnt = 0;

	*nuses = 0;
	for (int i = idx; i < n && max; i++) {
		size_t o = i == idx ? off : 0;
		size_t len = (size_t)PW_MIN((uint64_t)(k[i].len - o), max);
		uint64_t a = (uint64_t)(uintptr_t)k[i].base + o;

		if (k[i].key) {
			struct pw_mr_i *mr = pw_mr_get(kt, k[i].key);

			if (!mr || !pw_mr_covers(mr, a, len)) {
				if (mr)
					pw_mr_put(mr);
				pw_kiov_put(uses, *nuses);
				*nuses = 0;
				return -1;
			}
			uses[(*nuses)++] = mr;
		}
		out[cnt].iov_base = (void *)(uintptr_t)a;
		out[cnt++].iov_len = len;
		max -= len;
	}
	return cnt;
}
