/* SPDX-License-Identifier: MIT */
/*
 * Memory registration: pinned vs ODP cost and limits (RLIMIT_MEMLOCK,
 * RSS, VmLck), 1 TiB and implicit ODP regions used remotely, argument
 * checks, key quality, and the EBUSY rules of teardown.
 */
#include <errno.h>
#include <inttypes.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "pwtest.h"

/* ------------------------------------------------------------------ */
/* RLIMIT_MEMLOCK                                                       */
/* ------------------------------------------------------------------ */

static void drop_cap_ipc_lock(void)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
	const unsigned int idx = CAP_TO_INDEX(CAP_IPC_LOCK);
	const uint32_t mask = CAP_TO_MASK(CAP_IPC_LOCK);

	memset(data, 0, sizeof(data));
	PWT_ASSERTF(syscall(SYS_capget, &hdr, data) == 0, "capget: %s", strerror(errno));
	data[idx].effective &= ~mask;
	data[idx].permitted &= ~mask;
	data[idx].inheritable &= ~mask;
	PWT_ASSERTF(syscall(SYS_capset, &hdr, data) == 0, "capset: %s", strerror(errno));
	memset(data, 0, sizeof(data));
	PWT_ASSERT(syscall(SYS_capget, &hdr, data) == 0);
	PWT_ASSERT(!(data[idx].effective & mask));
}

/*
 * In a child without CAP_IPC_LOCK and with RLIMIT_MEMLOCK at 1 MiB:
 * pinned 8 MiB fails with ENOMEM naming the limit, pinned 256 KiB works,
 * ODP 8 MiB works (it locks nothing).
 */
static int memlock_child(int fd, void *arg)
{
	const bool lck = *(const bool *)arg;	/* VmLck observable */
	const struct rlimit rl = { PWT_MIB, PWT_MIB };
	struct pw_context *ctx;
	struct pw_pd *pd;
	struct pw_mr *mr, *small, *odp;
	uint8_t *big, *p256;
	const char *msg;

	(void)fd;
	drop_cap_ipc_lock();
	PWT_ASSERTF(setrlimit(RLIMIT_MEMLOCK, &rl) == 0, "setrlimit: %s", strerror(errno));
	big = pwt_map(8 * PWT_MIB);
	/* The kernel really enforces the limit now (the raw syscall: a
	 * sanitizer's mlock() interceptor would not ask the kernel). */
	PWT_ASSERTF(syscall(SYS_mlock, big, 2 * PWT_MIB) != 0,
		    "mlock 2 MiB past a 1 MiB limit worked");

	ctx = pw_open(NULL);
	PWT_NONNULL(ctx);
	pd = pw_alloc_pd(ctx);
	PWT_NONNULL(pd);

	errno = 0;
	mr = pw_reg_mr(pd, big, 8 * PWT_MIB,
		       PW_ACCESS_LOCAL_WRITE | PW_ACCESS_REMOTE_WRITE);
	PWT_ASSERTF(mr == NULL, "pinned 8 MiB registered past RLIMIT_MEMLOCK 1 MiB");
	PWT_ASSERTF(errno == ENOMEM, "errno %d (%s), want ENOMEM", errno, strerror(errno));
	msg = pw_last_error();
	PWT_ASSERT(msg);
	PWT_ASSERTF(strstr(msg, "RLIMIT_MEMLOCK"), "pw_last_error() does not name the limit: '%s'", msg);
	/* A failed registration leaves nothing locked behind. */
	if (lck)
		PWT_EQ(pwt_vmlck_bytes(), 0);

	p256 = pwt_map(256 * PWT_KIB);
	small = pw_reg_mr(pd, p256, 256 * PWT_KIB,
			  PW_ACCESS_LOCAL_WRITE | PW_ACCESS_REMOTE_WRITE);
	PWT_NONNULL(small);
	if (lck)
		PWT_ASSERT(pwt_vmlck_bytes() >= 256 * PWT_KIB);

	odp = pw_reg_mr(pd, big, 8 * PWT_MIB, PWT_ACCESS_ALL | PW_ACCESS_ON_DEMAND);
	PWT_NONNULL(odp);
	PWT_ASSERT(pwt_vmlck_bytes() < PWT_MIB);

	PWT_OK(pw_dereg_mr(odp));
	PWT_OK(pw_dereg_mr(small));
	if (lck)
		PWT_EQ(pwt_vmlck_bytes(), 0);
	PWT_OK(pw_dealloc_pd(pd));
	PWT_OK(pw_close(ctx));
	return 0;
}

static void t_memlock(const char *arg)
{
	struct pwt_child c;
	bool lck = pwt_mlock_works();

	(void)arg;
	pwt_fork(&c, memlock_child, &lck);
	PWT_CHILD_OK(&c, 30000);
	if (!lck)
		pwt_skip_part("the kernel locks no pages for this process, VmLck not checked");
}

/* ------------------------------------------------------------------ */
/* Pinned: populated and locked                                         */
/* ------------------------------------------------------------------ */

static void t_pinned_locks(const char *arg)
{
	struct pwt_side s;
	struct pw_mr *mr;
	uint8_t *p;
	size_t lck0, rss0;

	(void)arg;
	if (!pwt_mlock_works()) {
		pwt_skip_part("the kernel locks no pages for this process");
		return;
	}
	pwt_side_open(&s);
	p = pwt_map(8 * PWT_MIB);
	lck0 = pwt_vmlck_bytes();
	rss0 = pwt_rss_bytes();
	mr = pw_reg_mr(s.pd, p, 8 * PWT_MIB, PWT_ACCESS_ALL);
	PWT_NONNULL(mr);
	PWT_ASSERTF(pwt_vmlck_bytes() >= lck0 + 8 * PWT_MIB,
		    "VmLck %zu -> %zu after pinning 8 MiB", lck0, pwt_vmlck_bytes());
	PWT_ASSERTF(pwt_rss_bytes() >= rss0 + 8 * PWT_MIB - 64 * PWT_KIB,
		    "RSS %zu -> %zu: pinned range not populated", rss0, pwt_rss_bytes());
	PWT_OK(pw_dereg_mr(mr));
	PWT_EQ(pwt_vmlck_bytes(), lck0);
	pwt_unmap(p, 8 * PWT_MIB);
	pwt_side_close(&s);
}

/*
 * mlock does not nest: deregistering one of two overlapping pinned MRs
 * must keep the other's pages locked.
 */
static void t_pinned_overlap(const char *arg)
{
	struct pwt_side s;
	struct pw_mr *outer, *inner;
	uint8_t *p;
	size_t lck0;

	(void)arg;
	if (!pwt_mlock_works()) {
		pwt_skip_part("the kernel locks no pages for this process");
		return;
	}
	pwt_side_open(&s);
	p = pwt_map(8 * PWT_MIB);
	lck0 = pwt_vmlck_bytes();
	outer = pw_reg_mr(s.pd, p, 8 * PWT_MIB, PWT_ACCESS_ALL);
	PWT_NONNULL(outer);
	inner = pw_reg_mr(s.pd, p + 4 * PWT_MIB, 2 * PWT_MIB, PWT_ACCESS_ALL);
	PWT_NONNULL(inner);
	PWT_OK(pw_dereg_mr(outer));
	PWT_ASSERTF(pwt_vmlck_bytes() >= lck0 + 2 * PWT_MIB,
		    "inner pinned MR unlocked by the outer's deregistration: VmLck %zu",
		    pwt_vmlck_bytes());
	PWT_OK(pw_dereg_mr(inner));
	PWT_EQ(pwt_vmlck_bytes(), lck0);
	pwt_unmap(p, 8 * PWT_MIB);
	pwt_side_close(&s);
}

/* A pinned range with a hole: EFAULT, and nothing stays locked. */
static void t_pinned_efault(const char *arg)
{
	const size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	struct pwt_side s;
	struct pw_mr *mr;
	uint8_t *p;
	size_t lck0;

	(void)arg;
	/* The library finds the hole through mlock() (ENOMEM). */
	if (!pwt_mlock_works()) {
		pwt_skip_part("the kernel locks no pages for this process");
		return;
	}
	pwt_side_open(&s);
	p = pwt_map(3 * pg);
	pwt_unmap(p + pg, pg);
	lck0 = pwt_vmlck_bytes();
	errno = 0;
	mr = pw_reg_mr(s.pd, p, 3 * pg, PWT_ACCESS_ALL);
	PWT_ASSERTF(mr == NULL, "pinned registration over a hole succeeded");
	PWT_ASSERTF(errno == EFAULT, "errno %d (%s), want EFAULT", errno, strerror(errno));
	PWT_EQ(pwt_vmlck_bytes(), lck0);
	pwt_unmap(p, pg);
	pwt_unmap(p + 2 * pg, pg);
	pwt_side_close(&s);
}

/* ------------------------------------------------------------------ */
/* ODP: O(1), touches nothing                                           */
/* ------------------------------------------------------------------ */

/* Registering 1 TiB of NORESERVE memory: no RSS, no lock, no time. */
static void t_odp_1tib(const char *arg)
{
	struct pwt_side s;
	struct pw_mr *mr;
	uint8_t *p;
	size_t rss0, rss1, lck0, len;
	uint64_t t0, dt;

	(void)arg;
	pwt_side_open(&s);
	len = pwt_map_huge((void **)&p, PWT_TIB);
	lck0 = pwt_vmlck_bytes();
	rss0 = pwt_rss_bytes();
	t0 = pwt_now_us();
	mr = pw_reg_mr(s.pd, p, len, PWT_ACCESS_ALL | PW_ACCESS_ON_DEMAND);
	dt = pwt_now_us() - t0;
	rss1 = pwt_rss_bytes();
	PWT_NONNULL(mr);
	PWT_ASSERT(mr->addr == p);
	PWT_EQ(mr->length, len);
	PWT_ASSERT(mr->access & PW_ACCESS_ON_DEMAND);
	PWT_EQ(mr->lkey, mr->rkey);
	PWT_ASSERTF(rss1 < rss0 + PWT_MIB, "RSS grew by %zu bytes registering %zu GiB ODP",
		    rss1 - rss0, len >> 30);
	PWT_EQ(pwt_vmlck_bytes(), lck0);
	/* O(1): per-page work over 2^28 pages would take seconds. */
	PWT_ASSERTF(dt < 200000, "%zu GiB ODP registration took %" PRIu64 " us",
		    len >> 30, dt);
	PWT_OK(pw_dereg_mr(mr));
	pwt_unmap(p, len);
	pwt_side_close(&s);
}

/* Scattered offsets of a 1 TiB ODP region (of @len bytes, under TSan). */
static uint64_t tib_off(unsigned int i, uint64_t len)
{
	const uint64_t off[] = {
		0,
		4096 * 1000 + 17,
		len / 1024 * 137 + 12345,	/* 137 GiB in 1 TiB */
		len / 2 - 2000,			/* straddles pages */
		len - 4000,			/* the very end */
	};

	return off[i];
}

static void t_odp_1tib_remote(const char *arg)
{
	enum { N = 5, LEN = 4000 };
	struct pwt_pair p;
	struct pwt_img src, sink;
	struct pw_mr *mr;
	uint8_t *big;
	size_t rss0, len;

	(void)arg;
	pwt_pair_open(&p, NULL);
	pwt_img_alloc(&src, &p.a, N * LEN, PWT_PINNED, 0);
	pwt_img_alloc(&sink, &p.a, N * LEN, PWT_PINNED, 0);
	len = pwt_map_huge((void **)&big, PWT_TIB);
	rss0 = pwt_rss_bytes();
	mr = pw_reg_mr(p.b.pd, big, len, PWT_ACCESS_ALL | PW_ACCESS_ON_DEMAND);
	PWT_NONNULL(mr);
	PWT_ASSERT(pwt_rss_bytes() < rss0 + PWT_MIB);

	for (unsigned int i = 0; i < N; i++) {
		pwt_fill(src.buf.addr + i * LEN, LEN, 100 + i);
		PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, i, src.buf.addr + i * LEN,
				     LEN, src.buf.lkey, pwt_va(big + tib_off(i, len)),
				     mr->rkey, PW_SEND_SIGNALED));
	}
	for (unsigned int i = 0; i < N; i++)
		PWT_EXPECT_OK(p.a.scq, i, PW_WC_RDMA_WRITE, LEN, p.a.qp->qp_num);
	for (unsigned int i = 0; i < N; i++) {
		PWT_PATTERN(big + tib_off(i, len), LEN, 100 + i, 0);
		PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_READ, 0x100 + i,
				     sink.buf.addr + i * LEN, LEN, sink.buf.lkey,
				     pwt_va(big + tib_off(i, len)), mr->rkey,
				     PW_SEND_SIGNALED));
	}
	for (unsigned int i = 0; i < N; i++) {
		PWT_EXPECT_OK(p.a.scq, 0x100 + i, PW_WC_RDMA_READ, LEN, p.a.qp->qp_num);
		PWT_PATTERN(sink.buf.addr + i * LEN, LEN, 100 + i, 0);
	}
	/* Bytes next to the written ranges were never written. */
	PWT_ZERO(big + tib_off(1, len) - 17, 17);
	PWT_ZERO(big + tib_off(2, len) + LEN, 100);
	/* Faults populated the touched neighbourhoods, not the region. */
	PWT_ASSERTF(pwt_rss_bytes() < rss0 + 256 * PWT_MIB,
		    "RSS grew by %zu bytes for %d small ops", pwt_rss_bytes() - rss0, N);

	PWT_OK(pw_dereg_mr(mr));
	pwt_unmap(big, len);
	pwt_img_free(&src);
	pwt_img_free(&sink);
	pwt_pair_close(&p);
}

/*
 * Implicit ODP: one key for the whole address space, registered without
 * touching memory, reaching heap, stack and static data of the target.
 */
static uint8_t static_area[8192];
static const uint8_t rodata_area[256] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };

static void t_implicit(const char *arg)
{
	struct pwt_pair p;
	struct pwt_img src, sink;
	struct pw_mr *mr;
	uint8_t stack_area[3000];
	uint8_t *heap;
	size_t rss0;

	(void)arg;
	pwt_pair_open(&p, NULL);
	pwt_img_alloc_src(&src, &p.a, 16384, PWT_PINNED, 60);
	pwt_img_alloc(&sink, &p.a, 16384, PWT_PINNED, 61);
	heap = malloc(5000);
	PWT_ASSERT(heap);
	memset(heap, 0, 5000);
	memset(stack_area, 0, sizeof(stack_area));

	rss0 = pwt_rss_bytes();
	mr = pw_reg_mr(p.b.pd, NULL, SIZE_MAX, PWT_ACCESS_ALL | PW_ACCESS_ON_DEMAND);
	PWT_NONNULL(mr);
	PWT_ASSERT(pwt_rss_bytes() < rss0 + PWT_MIB);
	PWT_ASSERT(mr->addr == NULL);
	PWT_EQ(mr->length, SIZE_MAX);
	PWT_EQ(mr->lkey, mr->rkey);

	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 1, src.buf.addr, 5000,
			     src.buf.lkey, pwt_va(heap), mr->rkey, PW_SEND_SIGNALED));
	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 2, src.buf.addr + 5000, 3000,
			     src.buf.lkey, pwt_va(stack_area), mr->rkey,
			     PW_SEND_SIGNALED));
	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 3, src.buf.addr + 8000, 8192,
			     src.buf.lkey, pwt_va(static_area), mr->rkey,
			     PW_SEND_SIGNALED));
	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_READ, 4, sink.buf.addr, 256,
			     sink.buf.lkey, pwt_va(rodata_area), mr->rkey,
			     PW_SEND_SIGNALED));
	PWT_EXPECT_OK(p.a.scq, 1, PW_WC_RDMA_WRITE, 5000, p.a.qp->qp_num);
	PWT_EXPECT_OK(p.a.scq, 2, PW_WC_RDMA_WRITE, 3000, p.a.qp->qp_num);
	PWT_EXPECT_OK(p.a.scq, 3, PW_WC_RDMA_WRITE, 8192, p.a.qp->qp_num);
	PWT_EXPECT_OK(p.a.scq, 4, PW_WC_RDMA_READ, 256, p.a.qp->qp_num);
	PWT_MEMEQ(heap, src.want, 5000);
	PWT_MEMEQ(stack_area, src.want + 5000, 3000);
	PWT_MEMEQ(static_area, src.want + 8000, 8192);
	memcpy(sink.want, rodata_area, 256);
	PWT_IMG_CHECK(&sink);

	PWT_OK(pw_dereg_mr(mr));
	free(heap);
	pwt_img_free(&src);
	pwt_img_free(&sink);
	pwt_pair_close(&p);
}

/*
 * A WRITE through the implicit key into a read-only mapping: a remote
 * access error, not a crash, and the page is unchanged.
 */
static void t_implicit_readonly(const char *arg)
{
	const size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	struct pwt_pair p;
	struct pwt_img src;
	struct pw_mr *mr;
	uint8_t *ro;

	(void)arg;
	pwt_pair_open(&p, NULL);
	pwt_img_alloc_src(&src, &p.a, 4096, PWT_PINNED, 62);
	ro = pwt_map(pg);
	pwt_fill(ro, pg, 63);
	PWT_ASSERT(mprotect(ro, pg, PROT_READ) == 0);
	mr = pw_reg_mr(p.b.pd, NULL, SIZE_MAX, PWT_ACCESS_ALL | PW_ACCESS_ON_DEMAND);
	PWT_NONNULL(mr);
	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 9, src.buf.addr, 100,
			     src.buf.lkey, pwt_va(ro + 8), mr->rkey, PW_SEND_SIGNALED));
	PWT_EXPECT_ERR(p.a.scq, 9, PW_WC_REM_ACCESS_ERR, p.a.qp->qp_num);
	PWT_WAIT_STATE(p.b.qp, PW_QPS_ERR);
	PWT_PATTERN(ro, pg, 63, 0);
	PWT_OK(pw_dereg_mr(mr));
	pwt_unmap(ro, pg);
	pwt_img_free(&src);
	pwt_pair_close(&p);
}

/* ------------------------------------------------------------------ */
/* Arguments, keys, teardown                                            */
/* ------------------------------------------------------------------ */

#define REG_FAILS(pd, addr, len, access, err)				\
	do {								\
		struct pw_mr *m_;					\
		errno = 0;						\
		m_ = pw_reg_mr((pd), (addr), (len), (access));		\
		PWT_ASSERTF(m_ == NULL && errno == (err),		\
			    "pw_reg_mr(%s, %s, %s): mr %p errno %d (%s), want %s", \
			    #addr, #len, #access, (void *)m_, errno,	\
			    strerror(errno), #err);			\
	} while (0)

static void t_reg_einval(const char *arg)
{
	struct pwt_side s;
	uint8_t *p;

	(void)arg;
	pwt_side_open(&s);
	p = pwt_map(8192);
	/* As ibv_reg_mr: remote write/atomic need local write. */
	REG_FAILS(s.pd, p, 8192, PW_ACCESS_REMOTE_WRITE, EINVAL);
	REG_FAILS(s.pd, p, 8192, PW_ACCESS_REMOTE_ATOMIC | PW_ACCESS_REMOTE_READ, EINVAL);
	REG_FAILS(s.pd, p, 8192, PW_ACCESS_REMOTE_WRITE | PW_ACCESS_ON_DEMAND, EINVAL);
	REG_FAILS(s.pd, p, 0, PW_ACCESS_LOCAL_WRITE | PW_ACCESS_ON_DEMAND, EINVAL);
	REG_FAILS(s.pd, p, 0, PW_ACCESS_LOCAL_WRITE, EINVAL);
	REG_FAILS(s.pd, p, 8192, PW_ACCESS_LOCAL_WRITE | (1u << 20), EINVAL);
	/* Implicit ODP is an explicit opt-in: it needs ON_DEMAND. */
	REG_FAILS(s.pd, NULL, SIZE_MAX, PWT_ACCESS_ALL, EINVAL);
	/* addr + length wraps. */
	REG_FAILS(s.pd, (void *)(UINTPTR_MAX - 4095), 8192,
		  PW_ACCESS_LOCAL_WRITE | PW_ACCESS_ON_DEMAND, EINVAL);
	pwt_unmap(p, 8192);
	pwt_side_close(&s);
}

/*
 * Keys are random-looking (not sequential), lkey == rkey, and a
 * deregistered key does not come back within the next registrations.
 */
static void t_keys(const char *arg)
{
	enum { N = 64, CHURN = 1000 };
	struct pwt_side s;
	struct pw_mr *mr[N];
	uint32_t keys[N + CHURN];
	uint8_t *p;
	int steps = 0, same_top = 0;

	(void)arg;
	pwt_side_open(&s);
	p = pwt_map(N * 4096);
	for (int i = 0; i < N; i++) {
		mr[i] = pw_reg_mr(s.pd, p + (size_t)i * 4096, 4096, PWT_ACCESS_ALL);
		PWT_NONNULL(mr[i]);
		PWT_EQ(mr[i]->lkey, mr[i]->rkey);
		keys[i] = mr[i]->rkey;
	}
	for (int i = 2; i < N; i++)
		if (keys[i] - keys[i - 1] == keys[i - 1] - keys[i - 2])
			steps++;
	PWT_ASSERTF(steps < 4, "keys form an arithmetic progression (%d equal steps)", steps);
	for (int i = 0; i < N; i++)
		if ((keys[i] >> 16) == (keys[0] >> 16))
			same_top++;
	PWT_ASSERTF(same_top < N / 2, "%d of %d keys share their top 16 bits", same_top, N);
	for (int i = 0; i < N; i++)
		PWT_OK(pw_dereg_mr(mr[i]));

	/* Register/deregister churn: every key is fresh. */
	for (int i = 0; i < CHURN; i++) {
		struct pw_mr *m = pw_reg_mr(s.pd, p, 4096, PWT_ACCESS_ALL);

		PWT_NONNULL(m);
		keys[N + i] = m->rkey;
		PWT_OK(pw_dereg_mr(m));
	}
	for (int i = 0; i < N + CHURN; i++)
		for (int j = i + 1; j < N + CHURN; j++)
			PWT_ASSERTF(keys[i] != keys[j], "key 0x%08x reused (registrations %d and %d)",
				    keys[i], i, j);
	pwt_unmap(p, N * 4096);
	pwt_side_close(&s);
}

/* Objects in use cannot be destroyed (-EBUSY); the right order works. */
static void t_lifecycle(const char *arg)
{
	struct pwt_pair p;
	struct pw_comp_channel *ch;
	struct pw_cq *cq;
	struct pw_mr *mr;
	uint8_t *buf;

	(void)arg;
	pwt_pair_open(&p, NULL);
	buf = pwt_map(4096);
	mr = pw_reg_mr(p.a.pd, buf, 4096, PWT_ACCESS_ALL);
	PWT_NONNULL(mr);
	ch = pw_create_comp_channel(p.a.ctx);
	PWT_NONNULL(ch);
	cq = pw_create_cq(p.a.ctx, 16, NULL, ch, 0);
	PWT_NONNULL(cq);
	PWT_ASSERT(cq->channel == ch);
	PWT_ASSERT(cq->cqe >= 16);

	PWT_EQ(pw_dealloc_pd(p.a.pd), -EBUSY);		/* MR and QP */
	PWT_OK(pw_dereg_mr(mr));
	PWT_EQ(pw_dealloc_pd(p.a.pd), -EBUSY);		/* QP */
	PWT_EQ(pw_destroy_cq(p.a.scq), -EBUSY);		/* QP */
	PWT_EQ(pw_destroy_cq(p.a.rcq), -EBUSY);
	PWT_EQ(pw_close(p.a.ctx), -EBUSY);
	PWT_EQ(pw_close(p.b.ctx), -EBUSY);		/* listener, PD, ... */
	PWT_OK(pw_destroy_cq(cq));
	PWT_OK(pw_destroy_comp_channel(ch));

	PWT_OK(pw_destroy_qp(p.a.qp));
	p.a.qp = NULL;
	PWT_OK(pw_destroy_cq(p.a.scq));
	p.a.scq = NULL;
	PWT_EQ(pw_close(p.a.ctx), -EBUSY);		/* PD, rcq */

	/* Closing everything but the listener: the context is still busy. */
	PWT_OK(pw_destroy_qp(p.b.qp));
	p.b.qp = NULL;
	PWT_OK(pw_destroy_cq(p.b.scq));
	p.b.scq = NULL;
	PWT_OK(pw_destroy_cq(p.b.rcq));
	p.b.rcq = NULL;
	PWT_OK(pw_dealloc_pd(p.b.pd));
	p.b.pd = NULL;
	PWT_EQ(pw_close(p.b.ctx), -EBUSY);		/* listener */
	pwt_unmap(buf, 4096);
	pwt_pair_close(&p);
}

static const struct pwt_case cases[] = {
	{ "memlock", t_memlock },
	{ "pinned_locks", t_pinned_locks },
	{ "pinned_overlap", t_pinned_overlap },
	{ "pinned_efault", t_pinned_efault },
	{ "odp_1tib", t_odp_1tib },
	{ "odp_1tib_remote", t_odp_1tib_remote },
	{ "implicit", t_implicit },
	{ "implicit_readonly", t_implicit_readonly },
	{ "reg_einval", t_reg_einval },
	{ "keys", t_keys },
	{ "lifecycle", t_lifecycle },
};

int main(int argc, char **argv)
{
	return pwt_main(argc, argv, cases, PWT_ARRAY_SIZE(cases));
}
