/* SPDX-License-Identifier: MIT */
/*
 * pagewire-perf reg: what registering memory costs, against its size, for
 * pinned, on-demand and implicit on-demand MRs. Local only: no peer.
 *
 * Pinned registration populates and mlocks every page, so it costs time in
 * proportion to the size and RLIMIT_MEMLOCK bounds it; ODP registration
 * allocates a key and the root of an empty page table: O(1) at any size.
 * Every pinned registration starts from unpopulated memory (the range is
 * MADV_DONTNEED'ed after each deregistration), which is what registering
 * freshly allocated buffers costs an application.
 *
 * One JSON line per (mr, size): mr, size, iters, reg_us (median), reg_min_us,
 * dereg_us (median), or error with the library's message.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "perf.h"
#include "tool_util.h"

#define REG_MAX_ODP	(UINT64_C(1) << 40)	/* 1 TiB */
#define REG_MAX_PINNED	(UINT64_C(1) << 30)	/* 1 GiB */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double median_us(uint64_t *ns, unsigned int n)
{
	qsort(ns, n, sizeof(*ns), cmp_u64);
	return (n % 2 ? (double)ns[n / 2] :
		((double)ns[n / 2 - 1] + (double)ns[n / 2]) / 2.0) / 1000.0;
}

static unsigned int default_iters(enum perf_mr_mode m, uint64_t size)
{
	uint64_t n;

	if (m != PERF_MR_PINNED)
		return 1000;
	/* about 1 GiB of population per size, at least 3 samples */
	n = REG_MAX_PINNED / size;
	return (unsigned int)(n < 3 ? 3 : n > 200 ? 200 : n);
}

static int reg_one(struct pw_pd *pd, uint8_t *buf, enum perf_mr_mode m,
		   uint64_t size, unsigned int iters, bool json)
{
	unsigned int access = PW_ACCESS_LOCAL_WRITE | PW_ACCESS_REMOTE_WRITE |
			      PW_ACCESS_REMOTE_READ;
	uint64_t *reg = calloc(iters, sizeof(*reg));
	uint64_t *dereg = calloc(iters, sizeof(*dereg));
	int err = 0;

	if (!reg || !dereg) {
		free(reg);
		free(dereg);
		return -ENOMEM;
	}
	if (m != PERF_MR_PINNED)
		access |= PW_ACCESS_ON_DEMAND;
	for (unsigned int i = 0; i < iters; i++) {
		uint64_t t0 = tool_now_ns(), t1;
		struct pw_mr *mr = m == PERF_MR_IMPLICIT ?
				   pw_reg_mr(pd, NULL, SIZE_MAX, access) :
				   pw_reg_mr(pd, buf, size, access);

		t1 = tool_now_ns();
		if (!mr) {
			err = -errno;
			break;
		}
		reg[i] = t1 - t0;
		t0 = tool_now_ns();
		err = pw_dereg_mr(mr);
		dereg[i] = tool_now_ns() - t0;
		if (err)
			break;
		/* the next pinned registration populates fresh pages again */
		if (m == PERF_MR_PINNED)
			madvise(buf, size, MADV_DONTNEED);
	}
	if (err) {
		const char *why = pw_last_error();

		if (json)
			printf("{\"test\":\"reg\",\"mr\":\"%s\",\"size\":%llu,\"error\":\"%s%s%s\"}\n",
			       perf_mr_names[m], (unsigned long long)size,
			       strerror(-err), why && *why ? ": " : "",
			       why ? why : "");
		else
			printf(" %-9s %-14llu failed: %s%s%s\n", perf_mr_names[m],
			       (unsigned long long)size, strerror(-err),
			       why && *why ? ": " : "", why ? why : "");
	} else {
		double r_min = (double)reg[0];

		for (unsigned int i = 1; i < iters; i++)
			if ((double)reg[i] < r_min)
				r_min = (double)reg[i];
		if (json)
			printf("{\"test\":\"reg\",\"mr\":\"%s\",\"size\":%llu,\"iters\":%u,"
			       "\"reg_us\":%.3f,\"reg_min_us\":%.3f,\"dereg_us\":%.3f}\n",
			       perf_mr_names[m], (unsigned long long)size, iters,
			       median_us(reg, iters), r_min / 1000.0,
			       median_us(dereg, iters));
		else
			printf(" %-9s %-14llu %-8u %-16.3f %-16.3f %.3f\n",
			       perf_mr_names[m], (unsigned long long)size, iters,
			       median_us(reg, iters), r_min / 1000.0,
			       median_us(dereg, iters));
	}
	fflush(stdout);
	free(reg);
	free(dereg);
	return 0;
}

int perf_reg_run(const struct perf_opts *o)
{
	static const uint64_t sizes[] = {
		UINT64_C(4) << 10, UINT64_C(64) << 10, UINT64_C(1) << 20,
		UINT64_C(16) << 20, UINT64_C(256) << 20, UINT64_C(1) << 30,
		UINT64_C(16) << 30, UINT64_C(256) << 30, UINT64_C(1) << 40,
	};
	struct pw_context *ctx;
	struct pw_pd *pd;
	uint8_t *buf;
	int ret = 0;

	buf = mmap(NULL, REG_MAX_ODP, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (buf == MAP_FAILED) {
		perf_fail("mmap of 1 TiB (MAP_NORESERVE) failed: %s", strerror(errno));
		return PERF_EXIT_FAIL;
	}
	ctx = pw_open(NULL);
	pd = ctx ? pw_alloc_pd(ctx) : NULL;
	if (!pd) {
		perf_fail("pw_open/pw_alloc_pd failed: %s", strerror(errno));
		ret = PERF_EXIT_FAIL;
		goto out;
	}
	if (!o->json)
		printf(" %-9s %-14s %-8s %-16s %-16s %s\n", "mr", "#bytes", "iters",
		       "reg[usec] p50", "reg[usec] min", "dereg[usec] p50");
	for (int m = 0; m < PERF_MR_COUNT; m++) {
		if (o->mr_set && (enum perf_mr_mode)m != o->mr)
			continue;
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			uint64_t s = sizes[i];

			if (o->size_set && s != o->size)
				continue;
			if (m == PERF_MR_PINNED && s > REG_MAX_PINNED)
				continue;
			if (reg_one(pd, buf, (enum perf_mr_mode)m, s,
				    o->iters_set ? (unsigned int)o->iters :
						   default_iters((enum perf_mr_mode)m, s),
				    o->json)) {
				ret = PERF_EXIT_FAIL;
				goto out;
			}
		}
	}
out:
	if (pd)
		pw_dealloc_pd(pd);
	if (ctx)
		pw_close(ctx);
	munmap(buf, REG_MAX_ODP);
	return ret;
}
