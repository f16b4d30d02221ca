/* SPDX-License-Identifier: MIT */
/*
 * The tests table and the plan of a run: which sizes, how many iterations.
 */
#include <errno.h>
#include <string.h>

#include "perf.h"

const struct perf_test_info perf_tests[PERF_TEST_COUNT] = {
	[PERF_WRITE_BW] = {
		.name = "write_bw", .title = "RDMA_Write BW Test",
		.bw = true,
	},
	[PERF_WRITE_LAT] = {
		.name = "write_lat", .title = "RDMA_Write Latency Test",
		.half_rtt = true, .server_recvs = true,
	},
	[PERF_READ_BW] = {
		.name = "read_bw", .title = "RDMA_Read BW Test",
		.bw = true, .server_data_pattern = true,
	},
	[PERF_READ_LAT] = {
		.name = "read_lat", .title = "RDMA_Read Latency Test",
		.server_data_pattern = true,
	},
	[PERF_SEND_BW] = {
		.name = "send_bw", .title = "Send BW Test",
		.bw = true, .server_recvs = true,
	},
	[PERF_SEND_LAT] = {
		.name = "send_lat", .title = "Send Latency Test",
		.half_rtt = true, .server_recvs = true,
	},
	[PERF_ATOMIC_LAT] = {
		.name = "atomic_lat", .title = "Atomic Latency Test",
		.server_data_pattern = true,
	},
	/*
	 * The baselines: the same sizes, iterations, threads and buffers
	 * over plain TCP sockets. The server needs nothing in place before
	 * the client starts: the client's data area is the source.
	 */
	[PERF_TCP_BW] = {
		.name = "tcp_bw", .title = "TCP BW Test (plain sockets)",
		.bw = true, .tcp = true,
	},
	[PERF_TCP_LAT] = {
		.name = "tcp_lat", .title = "TCP Latency Test (plain sockets)",
		.half_rtt = true, .tcp = true,
	},
	/* 8-byte WRITEs to fresh pages against resident ones, same run */
	[PERF_FAULT_LAT] = {
		.name = "fault_lat", .title = "Responder Fault Latency Test",
	},
	/* B's 8-byte WRITE latency alone and while A faults on swap */
	[PERF_HOL] = {
		.name = "hol", .title = "Head-of-Line Blocking Test (swapped memory)",
	},
};

const char *const perf_mr_names[PERF_MR_COUNT] = {
	[PERF_MR_PINNED] = "pinned",
	[PERF_MR_ODP] = "odp",
	[PERF_MR_IMPLICIT] = "implicit",
};

const char *const perf_atomic_names[PERF_ATOMIC_COUNT] = {
	[PERF_ATOMIC_FA] = "FETCH_AND_ADD",
	[PERF_ATOMIC_CS] = "CMP_AND_SWAP",
};

/* Defaults as perftest: 5000 iterations for bw, 1000 for latency. */
#define BW_DEFAULT_ITERS	5000
#define LAT_DEFAULT_ITERS	1000
/*
 * Without -n, large sizes get fewer iterations so that one size moves at
 * most this much over all QPs together (perftest would move 40 GB per QP
 * at 8 MiB with -a). An explicit -n is always honoured.
 */
#define BW_DEFAULT_BYTES	(1ull << 30)
#define LAT_DEFAULT_BYTES	(64ull << 20)
#define MIN_DEFAULT_ITERS	8

int perf_test_by_name(const char *name)
{
	for (int i = 0; i < PERF_TEST_COUNT; i++)
		if (!strcmp(name, perf_tests[i].name))
			return i;
	return -1;
}

uint64_t perf_default_size(enum perf_test t)
{
	if (t == PERF_HOL)
		return PERF_HOL_DEFAULT_SIZE;
	return perf_tests[t].bw ? 65536 : 8;
}

static uint64_t default_iters(enum perf_test t, uint64_t size,
			      unsigned int qps)
{
	uint64_t iters = perf_tests[t].bw ? BW_DEFAULT_ITERS : LAT_DEFAULT_ITERS;
	uint64_t cap = perf_tests[t].bw ? BW_DEFAULT_BYTES : LAT_DEFAULT_BYTES;
	uint64_t per_qp = cap / (qps ? qps : 1);

	if (size && per_qp / size < iters)
		iters = per_qp / size;
	return iters < MIN_DEFAULT_ITERS ? MIN_DEFAULT_ITERS : iters;
}

/**
 * perf_plan_build() - sizes and iterations of a run
 * @size:      -s (ignored with @all_sizes, except that atomics need 8)
 * @all_sizes: -a: 2, 4, ..., 8 MiB (only 8 for atomic_lat)
 * @iters:     -n when @iters_set
 * @qps:       -q (the default iterations depend on it)
 *
 * Return: 0, or -EINVAL when the size does not suit the test.
 */
int perf_plan_build(enum perf_test t, uint64_t size, bool all_sizes,
		    uint64_t iters, bool iters_set, unsigned int qps,
		    struct perf_plan *p)
{
	memset(p, 0, sizeof(*p));
	if (t == PERF_ATOMIC_LAT || t == PERF_FAULT_LAT) {
		/*
		 * Atomics are 8 bytes by definition (IBA, pagewire.h);
		 * fault_lat measures 8-byte WRITEs.
		 */
		if (!all_sizes && size != 8)
			return -EINVAL;
		p->size[p->n++] = 8;
	} else if (t == PERF_HOL) {
		/* -s is A's message size; B always writes 8 bytes */
		if (all_sizes || size == 0 || size > PW_MAX_MSG_SIZE)
			return -EINVAL;
		p->size[p->n++] = size;
	} else if (all_sizes) {
		for (uint64_t s = 2; s <= PERF_ALL_MAX_SIZE; s <<= 1)
			p->size[p->n++] = s;
	} else {
		if (size == 0 || size > PW_MAX_MSG_SIZE)
			return -EINVAL;
		p->size[p->n++] = size;
	}
	for (unsigned int i = 0; i < p->n; i++) {
		p->iters[i] = iters_set ? iters : default_iters(t, p->size[i], qps);
		if (t == PERF_HOL && !iters_set)
			p->iters[i] = PERF_HOL_DEFAULT_ITERS;
		p->total_iters += p->iters[i];
		if (p->size[i] > p->max_size)
			p->max_size = p->size[i];
	}
	/* fault_lat: the target area holds every fresh page (untouched) */
	if (t == PERF_FAULT_LAT)
		p->max_size = perf_fault_fresh_off(p->total_iters);
	/* hol: A's region, plus one slot of rotation in A's source */
	if (t == PERF_HOL)
		p->max_size = (PERF_HOL_A_SLOTS + 1) * p->size[0];
	return 0;
}

/*
 * Signal every cq_mod-th WR of a bw window (plus the last one). A quarter
 * of the window keeps the pipe full while completions are reaped, as
 * opposed to perftest's fixed 100 that drains a 128-deep window. -Q sets
 * it (1: every WR, what libfabric's per-operation completions cost), at
 * most the window.
 */
unsigned int perf_cq_mod(const struct perf_run *run)
{
	unsigned int window = perf_window(run);
	unsigned int m = window / 4;

	if (run->o->cq_mod)
		return run->o->cq_mod < window ? run->o->cq_mod : window;
	if (m > 64)
		m = 64;
	return m ? m : 1;
}

/* The TCP test that --baseline runs next to pagewire test @t. */
enum perf_test perf_baseline_of(enum perf_test t)
{
	return perf_tests[t].bw ? PERF_TCP_BW : PERF_TCP_LAT;
}

/* WRs a bw client keeps in flight per QP. */
unsigned int perf_window(const struct perf_run *run)
{
	unsigned int w = run->tx_depth;

	/* READs are bounded by the responder's max_dest_rd_atomic. */
	if (run->o->test == PERF_READ_BW && w > PERF_RD_ATOMIC)
		w = PERF_RD_ATOMIC;
	return w;
}

/*
 * --vs-pinned bandwidth: at least PERF_PAIR_MIN_ITERS messages per size
 * unless -n was given, so that each of the 16 blocks is long enough to
 * time well (8 MiB messages get 128 by default: blocks of 8, a few ms
 * each, where scheduling noise alone moved the ratio by 15%).
 */
void perf_plan_pair(struct perf_plan *p, enum perf_test t, bool iters_set)
{
	if (iters_set || !perf_tests[t].bw)
		return;
	p->total_iters = 0;
	for (unsigned int i = 0; i < p->n; i++) {
		if (p->iters[i] < PERF_PAIR_MIN_ITERS)
			p->iters[i] = PERF_PAIR_MIN_ITERS;
		p->total_iters += p->iters[i];
	}
}

/* --first-touch: the target holds a fresh slot for every message. */
void perf_plan_first_touch(struct perf_plan *p)
{
	p->max_size = p->size[0] * (p->iters[0] + 1);
}

/*
 * --swapped: the target holds two regions of a block of messages each
 * (paged out, resident); the source rotates over block + 1 slots.
 */
void perf_plan_swapped(struct perf_plan *p)
{
	uint64_t block = (p->iters[0] + 15) / 16;

	p->max_size = 2 * block * p->size[0];
	if (p->max_size < (block + 1) * p->size[0])
		p->max_size = (block + 1) * p->size[0];
}

/*
 * --vs-pinned bandwidth: 16 blocks per size, eight of each kind. The
 * client drains the pipeline at every block boundary (client_bw_all), so
 * each block is timed on its own and no block mixes the two kinds.
 */
uint64_t perf_pair_bw_block(const struct perf_run *run, unsigned int s)
{
	return (run->plan.iters[s] + 15) / 16;
}
