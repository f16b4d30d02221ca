/* SPDX-License-Identifier: MIT */
/*
 * Every error status provoked for real, with the exact status, the state
 * both QPs end in, the flushes that follow, and memory that must stay
 * untouched (docs/semantics.md is the reference).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pwtest.h"

/* The three kinds of one-sided op an access check guards. */
enum rop {
	ROP_WRITE,
	ROP_READ,
	ROP_ATOMIC,
};

static enum rop parse_rop(const char *arg)
{
	if (arg && strcmp(arg, "write") == 0)
		return ROP_WRITE;
	if (arg && strcmp(arg, "read") == 0)
		return ROP_READ;
	if (arg && strcmp(arg, "atomic") == 0)
		return ROP_ATOMIC;
	pwt_fail(__FILE__, __LINE__, "op must be write|read|atomic, got '%s'",
		 arg ? arg : "(none)");
}

#define ERR_WR_ID	0xe1u
#define RECV_ID0	0xb0u

/* One signaled op with wr_id ERR_WR_ID from/to the start of @loc. */
static void post_rop(struct pw_qp *qp, enum rop op, struct pwt_img *loc,
		     uint64_t raddr, uint32_t rkey)
{
	switch (op) {
	case ROP_WRITE:
		PWT_OK(pwt_post_rdma(qp, PW_WR_RDMA_WRITE, ERR_WR_ID, loc->buf.addr,
				     1000, loc->buf.lkey, raddr, rkey,
				     PW_SEND_SIGNALED));
		break;
	case ROP_READ:
		PWT_OK(pwt_post_rdma(qp, PW_WR_RDMA_READ, ERR_WR_ID, loc->buf.addr,
				     1000, loc->buf.lkey, raddr, rkey,
				     PW_SEND_SIGNALED));
		break;
	case ROP_ATOMIC:
		PWT_OK(pwt_post_atomic(qp, PW_WR_ATOMIC_FETCH_AND_ADD, ERR_WR_ID,
				       (uint64_t *)(void *)loc->buf.addr,
				       loc->buf.lkey, raddr, rkey, 1, 0,
				       PW_SEND_SIGNALED));
		break;
	}
}

static void post_recvs(struct pw_qp *qp, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++)
		PWT_OK(pwt_post_recv1(qp, RECV_ID0 + i, NULL, 0, 0));
}

/*
 * After a remote error (access, invalid request, operation) both QPs are
 * in error and the responder's posted receives are flushed (IBA: the
 * responder QP enters the error state too).
 */
static void expect_remote_aftermath(struct pwt_pair *p, unsigned int nrecv)
{
	PWT_WAIT_STATE(p->a.qp, PW_QPS_ERR);
	PWT_WAIT_STATE(p->b.qp, PW_QPS_ERR);
	for (unsigned int i = 0; i < nrecv; i++)
		PWT_EXPECT_ERR(p->b.rcq, RECV_ID0 + i, PW_WC_WR_FLUSH_ERR,
			       p->b.qp->qp_num);
	PWT_NO_WC(p->b.rcq, 0);
	PWT_NO_WC(p->b.scq, 0);
	PWT_NO_WC(p->a.scq, 0);
}

/*
 * The common shape of a remote access test: recvs posted at the target,
 * one op fails with @status, neither side's memory changes.
 */
static void remote_fail_at(struct pwt_pair *p, enum rop op, struct pwt_img *loc,
			   bool check_loc, struct pwt_img *rem, uint64_t raddr,
			   uint32_t rkey, enum pw_wc_status status)
{
	post_recvs(p->b.qp, 2);
	post_rop(p->a.qp, op, loc, raddr, rkey);
	PWT_EXPECT_ERR(p->a.scq, ERR_WR_ID, status, p->a.qp->qp_num);
	expect_remote_aftermath(p, 2);
	if (check_loc)
		PWT_IMG_CHECK(loc);
	if (rem)
		PWT_IMG_CHECK(rem);
}

static void remote_fail(struct pwt_pair *p, enum rop op, struct pwt_img *loc,
			struct pwt_img *rem, uint64_t raddr, uint32_t rkey,
			enum pw_wc_status status)
{
	remote_fail_at(p, op, loc, true, rem, raddr, rkey, status);
}

/* A key no MR of @p has: flip bits until it differs from all of them. */
static uint32_t bogus_key(uint32_t base, const uint32_t *avoid, int n)
{
	uint32_t k = base ^ 0x5a5a5a5au;

	for (int i = 0; i < n; i++)
		if (k == avoid[i]) {
			k = k * 2654435761u + 1;
			i = -1;
		}
	return k;
}

/* ------------------------------------------------------------------ */
/* Remote access errors                                                 */
/* ------------------------------------------------------------------ */

static void t_bad_rkey(const char *arg)
{
	enum rop op = parse_rop(arg);
	struct pwt_pair p;
	struct pwt_img loc, rem;
	uint32_t keys[2];

	pwt_pair_open(&p, NULL);
	pwt_img_alloc(&loc, &p.a, 4096, PWT_PINNED, 1);
	pwt_img_alloc(&rem, &p.b, 8192, PWT_PINNED, 2);
	keys[0] = loc.buf.rkey;
	keys[1] = rem.buf.rkey;
	remote_fail(&p, op, &loc, &rem, pwt_va(rem.buf.addr + 64),
		    bogus_key(rem.buf.rkey, keys, 2), PW_WC_REM_ACCESS_ERR);
	pwt_img_free(&loc);
	pwt_img_free(&rem);
	pwt_pair_close(&p);
}

/* The range must lie entirely inside the MR: no byte of it may land. */
static void t_out_of_bounds(const char *arg)
{
	enum rop op = parse_rop(arg);
	struct pwt_pair p;
	struct pwt_img loc, rem;
	uint64_t raddr = 0;

	pwt_pair_open(&p, NULL);
	pwt_img_alloc(&loc, &p.a, 4096, PWT_PINNED, 3);
	/* The MR covers only [4096, 12288) of a 4-page mapping, so the
	 * out-of-range bytes exist and would show a stray access. */
	pwt_img_alloc(&rem, &p.b, 16384, PWT_PINNED, 4);
	PWT_OK(pw_dereg_mr(rem.buf.mr));
	rem.buf.mr = pw_reg_mr(p.b.pd, rem.buf.addr + 4096, 8192, PWT_ACCESS_ALL);
	PWT_NONNULL(rem.buf.mr);
	switch (op) {
	case ROP_WRITE:	/* straddles the end */
		raddr = pwt_va(rem.buf.addr + 12288 - 10);
		break;
	case ROP_READ:	/* starts before the start */
		raddr = pwt_va(rem.buf.addr + 4096 - 8);
		break;
	case ROP_ATOMIC: /* first aligned word past the end */
		raddr = pwt_va(rem.buf.addr + 12288);
		break;
	}
	remote_fail(&p, op, &loc, &rem, raddr, rem.buf.mr->rkey,
		    PW_WC_REM_ACCESS_ERR);
	pwt_img_free(&loc);
	pwt_img_free(&rem);
	pwt_pair_close(&p);
}

/* raddr + length wraps around 2^64: a bounds check must not overflow. */
static void t_oob_wrap(const char *arg)
{
	struct pwt_pair p;
	struct pwt_img loc, rem;

	(void)arg;
	pwt_pair_open(&p, NULL);
	pwt_img_alloc(&loc, &p.a, 4096, PWT_PINNED, 5);
	pwt_img_alloc(&rem, &p.b, 8192, PWT_PINNED, 6);
	remote_fail(&p, ROP_WRITE, &loc, &rem, UINT64_MAX - 3, rem.buf.rkey,
		    PW_WC_REM_ACCESS_ERR);
	pwt_img_free(&loc);
	pwt_img_free(&rem);
	pwt_pair_close(&p);
}

/* The MR has every right except the one the op needs. */
static void t_no_access(const char *arg)
{
	enum rop op = parse_rop(arg);
	unsigned int access = PWT_ACCESS_ALL;
	struct pwt_pair p;
	struct pwt_img loc, rem;

	switch (op) {
	case ROP_WRITE:
		access &= ~(unsigned int)PW_ACCESS_REMOTE_WRITE;
		break;
	case ROP_READ:
		access &= ~(unsigned int)PW_ACCESS_REMOTE_READ;
		break;
	case ROP_ATOMIC:
		access &= ~(unsigned int)PW_ACCESS_REMOTE_ATOMIC;
		break;
	}
	pwt_pair_open(&p, NULL);
	pwt_img_alloc(&loc, &p.a, 4096, PWT_PINNED, 7);
	pwt_img_alloc_access(&rem, &p.b, 8192, access, PWT_PINNED, 8);
	PWT_EQ(rem.buf.mr->access, access);
	remote_fail(&p, op, &loc, &rem, pwt_va(rem.buf.addr + 64), rem.buf.rkey,
		    PW_WC_REM_ACCESS_ERR);
	pwt_img_free(&loc);
	pwt_img_free(&rem);
	pwt_pair_close(&p);
}

/* A valid rkey of an MR in another PD of the target. */
static void t_pd_mismatch(const char *arg)
{
	enum rop op = parse_rop(arg);
	struct pwt_pair p;
	struct pwt_side other;
	struct pwt_img loc, rem;

	pwt_pair_open(&p, NULL);
	other = p.b;
	other.implicit = NULL;
	other.pd = pw_alloc_pd(p.b.ctx);
	PWT_NONNULL(other.pd);
	pwt_img_alloc(&loc, &p.a, 4096, PWT_PINNED, 9);
	pwt_img_alloc(&rem, &other, 8192, PWT_PINNED, 10);
	PWT_ASSERT(rem.buf.mr->pd == other.pd);
	remote_fail(&p, op, &loc, &rem, pwt_va(rem.buf.addr + 64), rem.buf.rkey,
		    PW_WC_REM_ACCESS_ERR);
	pwt_img_free(&loc);
	pwt_img_free(&rem);
	PWT_OK(pw_dealloc_pd(other.pd));
	pwt_pair_close(&p);
}

/*
 * Register, deregister, then use the old rkey on memory that is still
 * mapped. A new registration in between must not revive the old key.
 */
static void t_dereg(const char *arg)
{
	enum rop op = parse_rop(arg);
	struct pwt_pair p;
	struct pwt_img loc, rem, fresh;
	uint32_t old;

	pwt_pair_open(&p, NULL);
	pwt_img_alloc(&loc, &p.a, 4096, PWT_PINNED, 11);
	pwt_img_alloc(&rem, &p.b, 8192, PWT_PINNED, 12);
	old = rem.buf.rkey;
	PWT_OK(pw_dereg_mr(rem.buf.mr));
	rem.buf.mr = NULL;
	pwt_img_alloc(&fresh, &p.b, 8192, PWT_PINNED, 13);
	PWT_ASSERT(fresh.buf.rkey != old);
	remote_fail(&p, op, &loc, &rem, pwt_va(rem.buf.addr + 64), old,
		    PW_WC_REM_ACCESS_ERR);
	PWT_IMG_CHECK(&fresh);
	pwt_img_free(&loc);
	pwt_img_free(&rem);
	pwt_img_free(&fresh);
	pwt_pair_close(&p);
}

/*
 * An ODP MR over 4 pages whose page 2 gets munmap'ed: an op on page 2 is
 * a remote access error, never a crash. "write"/"read": the pages were
 * faulted in by remote writes first, so the unmap must invalidate them;
 * "fresh": page 2 was never touched.
 *
 * "read" checks the status and the target; "read_sink" also requires the
 * initiator's sink to be untouched. Verbs leaves a failed READ's sink
 * undefined, but here the fault is on the first byte: with the unmap
 * invalidating the range, the responder knows before any data moves, and
 * must not make up bytes (zeros) for the initiator.
 */
static void t_odp_unmapped(const char *arg)
{
	const size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	bool fresh = arg && strcmp(arg, "fresh") == 0;
	bool sink = arg && strcmp(arg, "read_sink") == 0;
	enum rop op = fresh ? ROP_WRITE : sink ? ROP_READ : parse_rop(arg);
	struct pwt_pair p;
	struct pwt_img loc, src;
	struct pw_mr *mr;
	uint8_t *base, *want;

	pwt_pair_open(&p, NULL);
	pwt_img_alloc(&loc, &p.a, 4096, PWT_PINNED, 14);
	pwt_img_alloc_src(&src, &p.a, 4 * pg, PWT_PINNED, 15);
	base = pwt_map(4 * pg);
	want = calloc(4, pg);
	PWT_ASSERT(want);
	mr = pw_reg_mr(p.b.pd, base, 4 * pg, PWT_ACCESS_ALL | PW_ACCESS_ON_DEMAND);
	PWT_NONNULL(mr);
	if (!fresh) {
		PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 0x10, src.buf.addr,
				     (uint32_t)(4 * pg), src.buf.lkey, pwt_va(base),
				     mr->rkey, PW_SEND_SIGNALED));
		PWT_EXPECT_OK(p.a.scq, 0x10, PW_WC_RDMA_WRITE, 4 * pg,
			      p.a.qp->qp_num);
		memcpy(want, src.want, 4 * pg);
		PWT_MEMEQ(base, want, 4 * pg);
	}
	pwt_unmap(base + 2 * pg, pg);

	remote_fail_at(&p, op, &loc, op != ROP_READ || sink, NULL,
		       pwt_va(base + 2 * pg + 64), mr->rkey, PW_WC_REM_ACCESS_ERR);
	PWT_MEMEQ(base, want, 2 * pg);
	PWT_MEMEQ(base + 3 * pg, want + 3 * pg, pg);

	PWT_OK(pw_dereg_mr(mr));
	pwt_unmap(base, 2 * pg);
	pwt_unmap(base + 3 * pg, pg);
	free(want);
	pwt_img_free(&loc);
	pwt_img_free(&src);
	pwt_pair_close(&p);
}

/* ------------------------------------------------------------------ */
/* Local errors                                                         */
/* ------------------------------------------------------------------ */

/* A signalled RDMA WRITE/READ of @sge (n entries) to (@raddr, @rkey). */
static void rdma_wr(struct pw_send_wr *wr, enum pw_wr_opcode opcode,
		    struct pw_sge *sge, int n, uint64_t raddr, uint32_t rkey)
{
	memset(wr, 0, sizeof(*wr));
	wr->wr_id = ERR_WR_ID;
	wr->sg_list = sge;
	wr->num_sge = n;
	wr->opcode = opcode;
	wr->send_flags = PW_SEND_SIGNALED;
	wr->wr.rdma.remote_addr = raddr;
	wr->wr.rdma.rkey = rkey;
}

/*
 * A local protection error is reported in the completion (post_send
 * returns 0), the QP goes to error, and nothing reaches the target.
 */
static void local_fail(struct pwt_pair *p, struct pw_send_wr *wr,
		       struct pwt_img *rem)
{
	struct pw_send_wr *bad = NULL;

	PWT_OK(pw_post_send(p->a.qp, wr, &bad));
	PWT_EXPECT_ERR(p->a.scq, wr->wr_id, PW_WC_LOC_PROT_ERR, p->a.qp->qp_num);
	PWT_WAIT_STATE(p->a.qp, PW_QPS_ERR);
	if (rem)
		PWT_IMG_CHECK(rem);
}

static void t_bad_lkey(const char *arg)
{
	struct pwt_pair p;
	struct pwt_img src, rem;
	struct pw_sge sge;
	struct pw_send_wr wr;
	uint32_t keys[2];

	(void)arg;
	pwt_pair_open(&p, NULL);
	pwt_img_alloc_src(&src, &p.a, 4096, PWT_PINNED, 16);
	pwt_img_alloc(&rem, &p.b, 4096, PWT_PINNED, 17);
	keys[0] = src.buf.lkey;
	keys[1] = rem.buf.rkey;
	sge = (struct pw_sge){ pwt_va(src.buf.addr), 1000, bogus_key(src.buf.lkey, keys, 2) };
	rdma_wr(&wr, PW_WR_RDMA_WRITE, &sge, 1, pwt_va(rem.buf.addr), rem.buf.rkey);
	local_fail(&p, &wr, &rem);
	pwt_img_free(&src);
	pwt_img_free(&rem);
	pwt_pair_close(&p);
}

/* The local SGE runs past the end of its MR. */
static void t_local_oob(const char *arg)
{
	struct pwt_pair p;
	struct pwt_img src, rem;
	struct pw_sge sge;
	struct pw_send_wr wr;

	(void)arg;
	pwt_pair_open(&p, NULL);
	/* Map 2 pages, register the first only: the SGE's bytes exist. */
	pwt_img_alloc_src(&src, &p.a, 8192, PWT_PINNED, 18);
	PWT_OK(pw_dereg_mr(src.buf.mr));
	src.buf.mr = pw_reg_mr(p.a.pd, src.buf.addr, 4096, PWT_ACCESS_ALL);
	PWT_NONNULL(src.buf.mr);
	pwt_img_alloc(&rem, &p.b, 8192, PWT_PINNED, 19);
	sge = (struct pw_sge){ pwt_va(src.buf.addr + 4000), 200, src.buf.mr->lkey };
	rdma_wr(&wr, PW_WR_RDMA_WRITE, &sge, 1, pwt_va(rem.buf.addr), rem.buf.rkey);
	local_fail(&p, &wr, &rem);
	pwt_img_free(&src);
	pwt_img_free(&rem);
	pwt_pair_close(&p);
}

/* A READ into a sink MR registered in another PD of the initiator. */
static void t_local_pd_mismatch(const char *arg)
{
	struct pwt_pair p;
	struct pwt_side other;
	struct pwt_img sink, rem;
	struct pw_sge sge;
	struct pw_send_wr wr;

	(void)arg;
	pwt_pair_open(&p, NULL);
	other = p.a;
	other.implicit = NULL;
	other.pd = pw_alloc_pd(p.a.ctx);
	PWT_NONNULL(other.pd);
	pwt_img_alloc(&sink, &other, 4096, PWT_PINNED, 20);
	pwt_img_alloc(&rem, &p.b, 4096, PWT_PINNED, 21);
	sge = (struct pw_sge){ pwt_va(sink.buf.addr), 1000, sink.buf.lkey };
	rdma_wr(&wr, PW_WR_RDMA_READ, &sge, 1, pwt_va(rem.buf.addr), rem.buf.rkey);
	local_fail(&p, &wr, &rem);
	PWT_IMG_CHECK(&sink);
	pwt_img_free(&sink);
	pwt_img_free(&rem);
	PWT_OK(pw_dealloc_pd(other.pd));
	pwt_pair_close(&p);
}

/* A READ sink or atomic result buffer without PW_ACCESS_LOCAL_WRITE. */
static void t_no_local_write(const char *arg)
{
	enum rop op = parse_rop(arg);
	struct pwt_pair p;
	struct pwt_img sink, rem;
	struct pw_sge sge;
	struct pw_send_wr wr;

	PWT_ASSERT(op != ROP_WRITE);
	pwt_pair_open(&p, NULL);
	pwt_img_alloc_access(&sink, &p.a, 4096, PW_ACCESS_REMOTE_READ, PWT_PINNED, 22);
	pwt_img_alloc(&rem, &p.b, 4096, PWT_PINNED, 23);
	sge = (struct pw_sge){ pwt_va(sink.buf.addr), op == ROP_READ ? 1000 : 8,
			       sink.buf.lkey };
	memset(&wr, 0, sizeof(wr));
	wr.wr_id = ERR_WR_ID;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.send_flags = PW_SEND_SIGNALED;
	if (op == ROP_READ) {
		wr.opcode = PW_WR_RDMA_READ;
		wr.wr.rdma.remote_addr = pwt_va(rem.buf.addr);
		wr.wr.rdma.rkey = rem.buf.rkey;
	} else {
		wr.opcode = PW_WR_ATOMIC_FETCH_AND_ADD;
		wr.wr.atomic.remote_addr = pwt_va(rem.buf.addr);
		wr.wr.atomic.rkey = rem.buf.rkey;
		wr.wr.atomic.compare_add = 1;
	}
	/* The remote word of an atomic may have been updated before the
	 * local check failed, as with hardware: only the sink is checked. */
	local_fail(&p, &wr, op == ROP_READ ? &rem : NULL);
	PWT_IMG_CHECK(&sink);
	pwt_img_free(&sink);
	pwt_img_free(&rem);
	pwt_pair_close(&p);
}

/*
 * Total SGE length over PW_MAX_MSG_SIZE: LOC_LEN_ERR. The local MR is ODP
 * over a NORESERVE mapping, so nothing is allocated.
 */
static void t_msg_too_long(const char *arg)
{
	const size_t maplen = (size_t)PW_MAX_MSG_SIZE + 8192;
	struct pwt_pair p;
	struct pwt_img rem;
	struct pw_mr *mr;
	struct pw_sge sge[2];
	struct pw_send_wr wr, *bad = NULL;
	uint8_t *big;

	(void)arg;
	pwt_pair_open(&p, NULL);
	big = pwt_map(maplen);
	mr = pw_reg_mr(p.a.pd, big, maplen, PWT_ACCESS_ALL | PW_ACCESS_ON_DEMAND);
	PWT_NONNULL(mr);
	pwt_img_alloc(&rem, &p.b, 4096, PWT_PINNED, 24);
	sge[0] = (struct pw_sge){ pwt_va(big), PW_MAX_MSG_SIZE - 1, mr->lkey };
	sge[1] = (struct pw_sge){ pwt_va(big + PW_MAX_MSG_SIZE), 2, mr->lkey };
	rdma_wr(&wr, PW_WR_RDMA_WRITE, sge, 2, pwt_va(rem.buf.addr), rem.buf.rkey);
	PWT_OK(pw_post_send(p.a.qp, &wr, &bad));
	PWT_EXPECT_ERR(p.a.scq, ERR_WR_ID, PW_WC_LOC_LEN_ERR, p.a.qp->qp_num);
	PWT_WAIT_STATE(p.a.qp, PW_QPS_ERR);
	PWT_IMG_CHECK(&rem);
	PWT_OK(pw_dereg_mr(mr));
	pwt_unmap(big, maplen);
	pwt_img_free(&rem);
	pwt_pair_close(&p);
}

/* ------------------------------------------------------------------ */
/* Two-sided errors                                                     */
/* ------------------------------------------------------------------ */

/*
 * SEND larger than the posted receive: the receive completes with
 * LOC_LEN_ERR, the sender gets REM_INV_REQ_ERR, both QPs end in error.
 */
static void t_recv_too_small(const char *arg)
{
	struct pwt_pair p;
	struct pwt_img src, rb;

	(void)arg;
	pwt_pair_open(&p, NULL);
	pwt_img_alloc_src(&src, &p.a, 4096, PWT_PINNED, 25);
	pwt_img_alloc(&rb, &p.b, 4096, PWT_PINNED, 26);
	PWT_OK(pwt_post_recv1(p.b.qp, RECV_ID0, rb.buf.addr + 100, 16, rb.buf.lkey));
	PWT_OK(pwt_post_recv1(p.b.qp, RECV_ID0 + 1, rb.buf.addr + 200, 16, rb.buf.lkey));
	PWT_OK(pwt_post_send1(p.a.qp, PW_WR_SEND, ERR_WR_ID, src.buf.addr, 64,
			      src.buf.lkey, 0, PW_SEND_SIGNALED));
	PWT_EXPECT_ERR(p.b.rcq, RECV_ID0, PW_WC_LOC_LEN_ERR, p.b.qp->qp_num);
	PWT_EXPECT_ERR(p.b.rcq, RECV_ID0 + 1, PW_WC_WR_FLUSH_ERR, p.b.qp->qp_num);
	PWT_EXPECT_ERR(p.a.scq, ERR_WR_ID, PW_WC_REM_INV_REQ_ERR, p.a.qp->qp_num);
	expect_remote_aftermath(&p, 0);
	/* The too-small buffer may hold a prefix (as with hardware); no byte
	 * outside it may change. */
	memcpy(rb.want + 100, rb.buf.addr + 100, 16);
	PWT_IMG_CHECK(&rb);
	pwt_img_free(&src);
	pwt_img_free(&rb);
	pwt_pair_close(&p);
}

/*
 * The target's receive cannot be used (bad lkey, or a buffer without
 * LOCAL_WRITE): the receive completes with LOC_PROT_ERR and the sender
 * gets REM_OP_ERR.
 */
static void recv_unusable(bool bad_lkey)
{
	struct pwt_pair p;
	struct pwt_img src, rb;
	uint32_t keys[2], lkey;

	pwt_pair_open(&p, NULL);
	pwt_img_alloc_src(&src, &p.a, 4096, PWT_PINNED, 27);
	if (bad_lkey)
		pwt_img_alloc(&rb, &p.b, 4096, PWT_PINNED, 28);
	else
		pwt_img_alloc_access(&rb, &p.b, 4096, PW_ACCESS_REMOTE_READ,
				     PWT_PINNED, 28);
	keys[0] = rb.buf.lkey;
	keys[1] = src.buf.lkey;
	lkey = bad_lkey ? bogus_key(rb.buf.lkey, keys, 2) : rb.buf.lkey;
	PWT_OK(pwt_post_recv1(p.b.qp, RECV_ID0, rb.buf.addr, 4096, lkey));
	PWT_OK(pwt_post_recv1(p.b.qp, RECV_ID0 + 1, rb.buf.addr, 4096, rb.buf.lkey));
	PWT_OK(pwt_post_send1(p.a.qp, PW_WR_SEND, ERR_WR_ID, src.buf.addr, 64,
			      src.buf.lkey, 0, PW_SEND_SIGNALED));
	PWT_EXPECT_ERR(p.b.rcq, RECV_ID0, PW_WC_LOC_PROT_ERR, p.b.qp->qp_num);
	PWT_EXPECT_ERR(p.b.rcq, RECV_ID0 + 1, PW_WC_WR_FLUSH_ERR, p.b.qp->qp_num);
	PWT_EXPECT_ERR(p.a.scq, ERR_WR_ID, PW_WC_REM_OP_ERR, p.a.qp->qp_num);
	expect_remote_aftermath(&p, 0);
	PWT_IMG_CHECK(&rb);
	pwt_img_free(&src);
	pwt_img_free(&rb);
	pwt_pair_close(&p);
}

static void t_recv_bad_lkey(const char *arg)
{
	(void)arg;
	recv_unusable(true);
}

static void t_recv_no_local_write(const char *arg)
{
	(void)arg;
	recv_unusable(false);
}

/* An atomic to an address that is not 8-byte aligned: REM_INV_REQ_ERR. */
static void t_atomic_misaligned(const char *arg)
{
	struct pwt_pair p;
	struct pwt_img loc, rem;

	(void)arg;
	pwt_pair_open(&p, NULL);
	pwt_img_alloc(&loc, &p.a, 4096, PWT_PINNED, 29);
	pwt_img_alloc(&rem, &p.b, 4096, PWT_PINNED, 30);
	remote_fail(&p, ROP_ATOMIC, &loc, &rem, pwt_va(rem.buf.addr + 68),
		    rem.buf.rkey, PW_WC_REM_INV_REQ_ERR);
	pwt_img_free(&loc);
	pwt_img_free(&rem);
	pwt_pair_close(&p);
}

/* ------------------------------------------------------------------ */
/* Receiver not ready                                                   */
/* ------------------------------------------------------------------ */

/* rnr_retry = PW_RNR_RETRY_NONE: the first RNR NAK fails the WR. */
static void t_rnr_none(const char *arg)
{
	bool imm = arg && strcmp(arg, "write_imm") == 0;
	struct pwt_pair_opts o;
	struct pwt_pair p;
	struct pwt_img src, rem;

	PWT_ASSERTF(imm || (arg && strcmp(arg, "send") == 0),
		    "arg must be send|write_imm");
	memset(&o, 0, sizeof(o));
	o.a_attr.rnr_retry = PW_RNR_RETRY_NONE;
	pwt_pair_open(&p, &o);
	pwt_img_alloc_src(&src, &p.a, 4096, PWT_PINNED, 31);
	pwt_img_alloc(&rem, &p.b, 4096, PWT_PINNED, 32);
	if (imm) {
		struct pw_sge sge = { pwt_va(src.buf.addr), 100, src.buf.lkey };
		struct pw_send_wr wr, *bad = NULL;

		memset(&wr, 0, sizeof(wr));
		wr.wr_id = ERR_WR_ID;
		wr.sg_list = &sge;
		wr.num_sge = 1;
		wr.opcode = PW_WR_RDMA_WRITE_WITH_IMM;
		wr.send_flags = PW_SEND_SIGNALED;
		wr.imm_data = 1;
		wr.wr.rdma.remote_addr = pwt_va(rem.buf.addr);
		wr.wr.rdma.rkey = rem.buf.rkey;
		PWT_OK(pw_post_send(p.a.qp, &wr, &bad));
	} else {
		PWT_OK(pwt_post_send1(p.a.qp, PW_WR_SEND, ERR_WR_ID, src.buf.addr,
				      100, src.buf.lkey, 0, PW_SEND_SIGNALED));
	}
	PWT_EXPECT_ERR(p.a.scq, ERR_WR_ID, PW_WC_RNR_RETRY_EXC_ERR, p.a.qp->qp_num);
	PWT_WAIT_STATE(p.a.qp, PW_QPS_ERR);
	PWT_NO_WC(p.b.rcq, 0);
	pwt_img_free(&src);
	pwt_img_free(&rem);
	pwt_pair_close(&p);
}

/*
 * Default rnr_retry (7, forever): a SEND with no receive waits, the WRs
 * behind it wait too (posting order), and all succeed once a receive is
 * posted.
 */
static void t_rnr_retry_ok(const char *arg)
{
	struct pwt_pair p;
	struct pwt_img src, rem, rb;

	(void)arg;
	pwt_pair_open(&p, NULL);
	pwt_img_alloc_src(&src, &p.a, 8192, PWT_PINNED, 33);
	pwt_img_alloc(&rem, &p.b, 8192, PWT_PINNED, 34);
	pwt_img_alloc(&rb, &p.b, 4096, PWT_PINNED, 35);

	PWT_OK(pwt_post_send1(p.a.qp, PW_WR_SEND, 0x21, src.buf.addr, 100,
			      src.buf.lkey, 0, PW_SEND_SIGNALED));
	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 0x22, src.buf.addr + 4096,
			     2000, src.buf.lkey, pwt_va(rem.buf.addr + 100),
			     rem.buf.rkey, PW_SEND_SIGNALED));
	PWT_NO_WC(p.a.scq, 300);
	/* The WRITE is behind the stalled SEND: it has not landed either. */
	PWT_IMG_CHECK(&rem);
	PWT_EQ(pw_qp_state(p.a.qp), PW_QPS_RTS);

	PWT_OK(pwt_post_recv1(p.b.qp, 0x31, rb.buf.addr, 4096, rb.buf.lkey));
	PWT_EXPECT_RECV(p.b.rcq, 0x31, PW_WC_RECV, 100, false, 0, p.b.qp->qp_num);
	PWT_EXPECT_OK(p.a.scq, 0x21, PW_WC_SEND, 100, p.a.qp->qp_num);
	PWT_EXPECT_OK(p.a.scq, 0x22, PW_WC_RDMA_WRITE, 2000, p.a.qp->qp_num);
	memcpy(rb.want, src.want, 100);
	memcpy(rem.want + 100, src.want + 4096, 2000);
	PWT_IMG_CHECK(&rb);
	PWT_IMG_CHECK(&rem);

	/* The same for WRITE_WITH_IMM. */
	{
		struct pw_sge sge = { pwt_va(src.buf.addr + 200), 300, src.buf.lkey };
		struct pw_send_wr wr, *bad = NULL;

		memset(&wr, 0, sizeof(wr));
		wr.wr_id = 0x23;
		wr.sg_list = &sge;
		wr.num_sge = 1;
		wr.opcode = PW_WR_RDMA_WRITE_WITH_IMM;
		wr.send_flags = PW_SEND_SIGNALED;
		wr.imm_data = 0x77;
		wr.wr.rdma.remote_addr = pwt_va(rem.buf.addr + 5000);
		wr.wr.rdma.rkey = rem.buf.rkey;
		PWT_OK(pw_post_send(p.a.qp, &wr, &bad));
	}
	PWT_NO_WC(p.a.scq, 200);
	PWT_OK(pwt_post_recv1(p.b.qp, 0x32, NULL, 0, 0));
	PWT_EXPECT_RECV(p.b.rcq, 0x32, PW_WC_RECV_RDMA_WITH_IMM, 300, true, 0x77,
			p.b.qp->qp_num);
	PWT_EXPECT_OK(p.a.scq, 0x23, PW_WC_RDMA_WRITE, 300, p.a.qp->qp_num);
	memcpy(rem.want + 5000, src.want + 200, 300);
	PWT_IMG_CHECK(&rem);

	pwt_img_free(&src);
	pwt_img_free(&rem);
	pwt_img_free(&rb);
	pwt_pair_close(&p);
}

/* rnr_retry = 3 with a 20 ms RNR timer: fails after three waits. */
static void t_rnr_retry_count(const char *arg)
{
	struct pwt_pair_opts o;
	struct pwt_pair p;
	struct pwt_img src;
	uint64_t t0, dt;

	(void)arg;
	memset(&o, 0, sizeof(o));
	o.a_attr.rnr_retry = 3;
	o.a_attr.min_rnr_timer_us = 20000;
	/* The responder advertises the timer in IBA; set both sides. */
	o.b_attr.min_rnr_timer_us = 20000;
	pwt_pair_open(&p, &o);
	pwt_img_alloc_src(&src, &p.a, 4096, PWT_PINNED, 36);
	t0 = pwt_now_ms();
	PWT_OK(pwt_post_send1(p.a.qp, PW_WR_SEND, ERR_WR_ID, src.buf.addr, 100,
			      src.buf.lkey, 0, PW_SEND_SIGNALED));
	PWT_EXPECT_ERR(p.a.scq, ERR_WR_ID, PW_WC_RNR_RETRY_EXC_ERR, p.a.qp->qp_num);
	dt = pwt_now_ms() - t0;
	PWT_ASSERTF(dt >= 50, "3 RNR retries 20 ms apart took only %" PRIu64 " ms", dt);
	PWT_WAIT_STATE(p.a.qp, PW_QPS_ERR);
	pwt_img_free(&src);
	pwt_pair_close(&p);
}

/* ------------------------------------------------------------------ */
/* Flushes                                                              */
/* ------------------------------------------------------------------ */

/*
 * WR 1 succeeds, WR 2 fails, WRs 3 and 4 are flushed and never land, and
 * the initiator's posted receives are flushed.
 */
static void t_flush_after_error(const char *arg)
{
	struct pwt_pair p;
	struct pwt_img src, rem;
	struct pw_sge sge[4];
	struct pw_send_wr wr[4], *bad = NULL;
	uint32_t keys[2];

	(void)arg;
	pwt_pair_open(&p, NULL);
	pwt_img_alloc_src(&src, &p.a, 16384, PWT_PINNED, 37);
	pwt_img_alloc(&rem, &p.b, 16384, PWT_PINNED, 38);
	keys[0] = src.buf.lkey;
	keys[1] = rem.buf.rkey;
	for (unsigned int i = 0; i < 3; i++)
		PWT_OK(pwt_post_recv1(p.a.qp, 0x40 + i, NULL, 0, 0));
	memset(wr, 0, sizeof(wr));
	for (int i = 0; i < 4; i++) {
		sge[i] = (struct pw_sge){ pwt_va(src.buf.addr + (size_t)i * 4096), 4096,
					  src.buf.lkey };
		wr[i].wr_id = 0x30u + (unsigned int)i;
		wr[i].sg_list = &sge[i];
		wr[i].num_sge = 1;
		wr[i].opcode = PW_WR_RDMA_WRITE;
		wr[i].send_flags = PW_SEND_SIGNALED;
		wr[i].wr.rdma.remote_addr = pwt_va(rem.buf.addr + (size_t)i * 4096);
		wr[i].wr.rdma.rkey = i == 1 ? bogus_key(rem.buf.rkey, keys, 2) : rem.buf.rkey;
		wr[i].next = i < 3 ? &wr[i + 1] : NULL;
	}
	PWT_OK(pw_post_send(p.a.qp, wr, &bad));
	PWT_EXPECT_OK(p.a.scq, 0x30, PW_WC_RDMA_WRITE, 4096, p.a.qp->qp_num);
	PWT_EXPECT_ERR(p.a.scq, 0x31, PW_WC_REM_ACCESS_ERR, p.a.qp->qp_num);
	PWT_EXPECT_ERR(p.a.scq, 0x32, PW_WC_WR_FLUSH_ERR, p.a.qp->qp_num);
	PWT_EXPECT_ERR(p.a.scq, 0x33, PW_WC_WR_FLUSH_ERR, p.a.qp->qp_num);
	for (unsigned int i = 0; i < 3; i++)
		PWT_EXPECT_ERR(p.a.rcq, 0x40 + i, PW_WC_WR_FLUSH_ERR, p.a.qp->qp_num);
	expect_remote_aftermath(&p, 0);
	PWT_NO_WC(p.a.rcq, 0);
	/* Only WR 1 landed: the responder stopped at WR 2. */
	memcpy(rem.want, src.want, 4096);
	PWT_IMG_CHECK(&rem);
	pwt_img_free(&src);
	pwt_img_free(&rem);
	pwt_pair_close(&p);
}

/*
 * pw_destroy_qp flushes outstanding sends (stuck in RNR here) and posted
 * receives before it returns; the peer's QP then goes to error and its
 * own receives flush.
 */
static void t_flush_on_destroy(const char *arg)
{
	struct pwt_pair p;
	struct pwt_img src;
	struct pw_wc wc[16];
	uint32_t qpn;
	int n;

	(void)arg;
	pwt_pair_open(&p, NULL);
	qpn = p.a.qp->qp_num;
	pwt_img_alloc_src(&src, &p.a, 4096, PWT_PINNED, 39);
	for (unsigned int i = 0; i < 3; i++)
		PWT_OK(pwt_post_send1(p.a.qp, PW_WR_SEND, 0x50 + i, src.buf.addr, 100,
				      src.buf.lkey, 0, PW_SEND_SIGNALED));
	for (unsigned int i = 0; i < 4; i++)
		PWT_OK(pwt_post_recv1(p.a.qp, 0x60 + i, src.buf.addr, 4096,
				      src.buf.lkey));
	PWT_NO_WC(p.a.scq, 100);

	PWT_OK(pw_destroy_qp(p.a.qp));
	/* Already there, without waiting. */
	n = pw_poll_cq(p.a.scq, 16, wc);
	PWT_EQ(n, 3);
	for (int i = 0; i < 3; i++) {
		PWT_EQ(wc[i].wr_id, 0x50 + i);
		PWT_EQ(wc[i].status, PW_WC_WR_FLUSH_ERR);
		PWT_EQ(wc[i].qp_num, qpn);
	}
	n = pw_poll_cq(p.a.rcq, 16, wc);
	PWT_EQ(n, 4);
	for (int i = 0; i < 4; i++) {
		PWT_EQ(wc[i].wr_id, 0x60 + i);
		PWT_EQ(wc[i].status, PW_WC_WR_FLUSH_ERR);
		PWT_EQ(wc[i].qp_num, qpn);
	}
	p.a.qp = NULL;

	/* The peer sees the disconnect; receives posted after it flush. */
	PWT_WAIT_STATE(p.b.qp, PW_QPS_ERR);
	post_recvs(p.b.qp, 2);
	PWT_EXPECT_ERR(p.b.rcq, RECV_ID0, PW_WC_WR_FLUSH_ERR, p.b.qp->qp_num);
	PWT_EXPECT_ERR(p.b.rcq, RECV_ID0 + 1, PW_WC_WR_FLUSH_ERR, p.b.qp->qp_num);
	PWT_NO_WC(p.b.rcq, 0);
	pwt_img_free(&src);
	pwt_pair_close(&p);
}

/*
 * Posting to a QP in error returns 0 and every WR is flushed, unsignaled
 * ones included (error completions are always generated).
 */
static void t_post_error_qp(const char *arg)
{
	struct pwt_pair p;
	struct pwt_img loc, rem;
	uint32_t keys[2];

	(void)arg;
	pwt_pair_open(&p, NULL);
	pwt_img_alloc_src(&loc, &p.a, 4096, PWT_PINNED, 40);
	pwt_img_alloc(&rem, &p.b, 4096, PWT_PINNED, 41);
	keys[0] = loc.buf.lkey;
	keys[1] = rem.buf.rkey;
	post_rop(p.a.qp, ROP_WRITE, &loc, pwt_va(rem.buf.addr),
		 bogus_key(rem.buf.rkey, keys, 2));
	PWT_EXPECT_ERR(p.a.scq, ERR_WR_ID, PW_WC_REM_ACCESS_ERR, p.a.qp->qp_num);
	PWT_WAIT_STATE(p.a.qp, PW_QPS_ERR);

	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 0x71, loc.buf.addr, 100,
			     loc.buf.lkey, pwt_va(rem.buf.addr), rem.buf.rkey,
			     PW_SEND_SIGNALED));
	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 0x72, loc.buf.addr, 100,
			     loc.buf.lkey, pwt_va(rem.buf.addr), rem.buf.rkey, 0));
	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_READ, 0x73, loc.buf.addr, 100,
			     loc.buf.lkey, pwt_va(rem.buf.addr), rem.buf.rkey,
			     PW_SEND_SIGNALED));
	PWT_OK(pwt_post_send1(p.a.qp, PW_WR_SEND, 0x74, loc.buf.addr, 100,
			      loc.buf.lkey, 0, PW_SEND_SIGNALED));
	PWT_OK(pwt_post_recv1(p.a.qp, 0x75, loc.buf.addr, 100, loc.buf.lkey));
	for (unsigned int i = 0x71; i <= 0x74; i++)
		PWT_EXPECT_ERR(p.a.scq, i, PW_WC_WR_FLUSH_ERR, p.a.qp->qp_num);
	PWT_EXPECT_ERR(p.a.rcq, 0x75, PW_WC_WR_FLUSH_ERR, p.a.qp->qp_num);
	PWT_NO_WC(p.a.scq, 50);
	PWT_IMG_CHECK(&loc);
	PWT_IMG_CHECK(&rem);
	pwt_img_free(&loc);
	pwt_img_free(&rem);
	pwt_pair_close(&p);
}

/* ------------------------------------------------------------------ */
/* Posting errors                                                       */
/* ------------------------------------------------------------------ */

static int post_one(struct pw_qp *qp, struct pw_send_wr *wr)
{
	struct pw_send_wr *bad = NULL;
	int rc = pw_post_send(qp, wr, &bad);

	if (rc)
		PWT_ASSERT(bad == wr);
	return rc;
}

/*
 * Malformed WRs are refused with -EINVAL and *bad_wr at the first one not
 * posted; WRs before it in the list are posted; the QP stays usable.
 */
static void t_post_einval(const char *arg)
{
	struct pwt_pair p;
	struct pwt_img loc, rem;
	struct pw_sge sge[PW_MAX_SGE];
	struct pw_send_wr wr[2], *bad = NULL;
	struct pw_recv_wr rwr, *rbad = NULL;
	uint32_t max_sge, max_inline;

	(void)arg;
	pwt_pair_open(&p, NULL);
	max_sge = p.a.attr.cap.max_send_sge;
	max_inline = p.a.attr.cap.max_inline_data;
	PWT_EQ(max_sge, 4);
	PWT_EQ(max_inline, 64);
	PWT_EQ(p.a.attr.cap.max_recv_sge, 4);
	pwt_img_alloc_src(&loc, &p.a, 4096, PWT_PINNED, 42);
	pwt_img_alloc(&rem, &p.b, 4096, PWT_PINNED, 43);
	for (int i = 0; i < PW_MAX_SGE; i++)
		sge[i] = (struct pw_sge){ pwt_va(loc.buf.addr + (size_t)i * 16), 16,
					  loc.buf.lkey };

	memset(wr, 0, sizeof(wr));
	wr[0].wr_id = 0x81;
	wr[0].sg_list = sge;
	wr[0].num_sge = (int)max_sge + 1;
	wr[0].opcode = PW_WR_RDMA_WRITE;
	wr[0].send_flags = PW_SEND_SIGNALED;
	wr[0].wr.rdma.remote_addr = pwt_va(rem.buf.addr);
	wr[0].wr.rdma.rkey = rem.buf.rkey;
	PWT_EQ(post_one(p.a.qp, &wr[0]), -EINVAL);	/* too many SGEs */
	wr[0].num_sge = -1;
	PWT_EQ(post_one(p.a.qp, &wr[0]), -EINVAL);	/* negative */

	/* Inline data one byte over max_inline_data, in 4 SGEs. */
	for (int i = 0; i < 3; i++)
		sge[i].length = 13;
	wr[0].num_sge = 4;
	sge[3].length = (uint32_t)max_inline - 39 + 1;
	wr[0].send_flags = PW_SEND_SIGNALED | PW_SEND_INLINE;
	PWT_EQ(post_one(p.a.qp, &wr[0]), -EINVAL);
	sge[3].length = 16;
	wr[0].send_flags = PW_SEND_SIGNALED;

	wr[0].num_sge = 1;
	wr[0].opcode = (enum pw_wr_opcode)77;		/* unknown opcode */
	PWT_EQ(post_one(p.a.qp, &wr[0]), -EINVAL);

	wr[0].opcode = PW_WR_ATOMIC_FETCH_AND_ADD;	/* atomic SGE of 4 bytes */
	wr[0].wr.atomic.remote_addr = pwt_va(rem.buf.addr);
	wr[0].wr.atomic.rkey = rem.buf.rkey;
	sge[0].length = 4;
	PWT_EQ(post_one(p.a.qp, &wr[0]), -EINVAL);
	sge[0].length = 8;
	wr[0].opcode = PW_WR_ATOMIC_CMP_AND_SWP;	/* atomic with 2 SGEs */
	wr[0].num_sge = 2;
	sge[1].length = 8;
	PWT_EQ(post_one(p.a.qp, &wr[0]), -EINVAL);

	/* A valid WR followed by an invalid one: the first is posted. */
	memset(wr, 0, sizeof(wr));
	sge[0] = (struct pw_sge){ pwt_va(loc.buf.addr), 100, loc.buf.lkey };
	wr[0].wr_id = 0x82;
	wr[0].sg_list = sge;
	wr[0].num_sge = 1;
	wr[0].opcode = PW_WR_RDMA_WRITE;
	wr[0].send_flags = PW_SEND_SIGNALED;
	wr[0].wr.rdma.remote_addr = pwt_va(rem.buf.addr);
	wr[0].wr.rdma.rkey = rem.buf.rkey;
	wr[0].next = &wr[1];
	wr[1] = wr[0];
	wr[1].wr_id = 0x83;
	wr[1].next = NULL;
	wr[1].num_sge = (int)max_sge + 1;
	PWT_EQ(pw_post_send(p.a.qp, wr, &bad), -EINVAL);
	PWT_ASSERT(bad == &wr[1]);
	PWT_EXPECT_OK(p.a.scq, 0x82, PW_WC_RDMA_WRITE, 100, p.a.qp->qp_num);
	PWT_NO_WC(p.a.scq, 50);

	/* Receive with too many SGEs. */
	memset(&rwr, 0, sizeof(rwr));
	rwr.wr_id = 0x84;
	rwr.sg_list = sge;
	rwr.num_sge = (int)p.a.attr.cap.max_recv_sge + 1;
	PWT_EQ(pw_post_recv(p.a.qp, &rwr, &rbad), -EINVAL);
	PWT_ASSERT(rbad == &rwr);

	/* None of that broke the QP. */
	PWT_EQ(pw_qp_state(p.a.qp), PW_QPS_RTS);
	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 0x85, loc.buf.addr + 200,
			     100, loc.buf.lkey, pwt_va(rem.buf.addr + 200),
			     rem.buf.rkey, PW_SEND_SIGNALED));
	PWT_EXPECT_OK(p.a.scq, 0x85, PW_WC_RDMA_WRITE, 100, p.a.qp->qp_num);
	memcpy(rem.want, loc.want, 100);
	memcpy(rem.want + 200, loc.want + 200, 100);
	PWT_IMG_CHECK(&rem);
	PWT_NO_WC(p.b.rcq, 0);
	pwt_img_free(&loc);
	pwt_img_free(&rem);
	pwt_pair_close(&p);
}

/*
 * A full send queue gives -ENOMEM (SENDs held by RNR keep it full), and a
 * full receive queue too. Completing the SENDs frees the slots.
 */
static void t_post_enomem(const char *arg)
{
	struct pwt_pair_opts o;
	struct pwt_pair p;
	struct pwt_img src, rb;

	(void)arg;
	memset(&o, 0, sizeof(o));
	o.a_attr.cap.max_send_wr = 4;
	o.b_attr.cap.max_recv_wr = 4;
	pwt_pair_open(&p, &o);
	PWT_EQ(p.a.attr.cap.max_send_wr, 4);
	PWT_EQ(p.b.attr.cap.max_recv_wr, 4);
	pwt_img_alloc_src(&src, &p.a, 4096, PWT_PINNED, 44);
	pwt_img_alloc(&rb, &p.b, 4096, PWT_PINNED, 45);

	for (unsigned int i = 0; i < 4; i++)
		PWT_OK(pwt_post_send1(p.a.qp, PW_WR_SEND, 0x90 + i,
				      src.buf.addr + i * 100, 100, src.buf.lkey, 0,
				      PW_SEND_SIGNALED));
	PWT_EQ(pwt_post_send1(p.a.qp, PW_WR_SEND, 0x94, src.buf.addr, 100,
			      src.buf.lkey, 0, PW_SEND_SIGNALED), -ENOMEM);
	PWT_NO_WC(p.a.scq, 100);

	for (unsigned int i = 0; i < 4; i++)
		PWT_OK(pwt_post_recv1(p.b.qp, 0xa0 + i, rb.buf.addr + i * 1024, 1024,
				      rb.buf.lkey));
	PWT_EQ(pwt_post_recv1(p.b.qp, 0xa4, rb.buf.addr, 1024, rb.buf.lkey), -ENOMEM);
	for (unsigned int i = 0; i < 4; i++) {
		PWT_EXPECT_RECV(p.b.rcq, 0xa0 + i, PW_WC_RECV, 100, false, 0,
				p.b.qp->qp_num);
		memcpy(rb.want + i * 1024, src.want + i * 100, 100);
	}
	for (unsigned int i = 0; i < 4; i++)
		PWT_EXPECT_OK(p.a.scq, 0x90 + i, PW_WC_SEND, 100, p.a.qp->qp_num);
	PWT_IMG_CHECK(&rb);

	/* The slots are free again. */
	PWT_OK(pwt_post_recv1(p.b.qp, 0xa5, rb.buf.addr, 1024, rb.buf.lkey));
	PWT_OK(pwt_post_send1(p.a.qp, PW_WR_SEND, 0x95, src.buf.addr + 3000, 50,
			      src.buf.lkey, 0, PW_SEND_SIGNALED));
	PWT_EXPECT_RECV(p.b.rcq, 0xa5, PW_WC_RECV, 50, false, 0, p.b.qp->qp_num);
	PWT_EXPECT_OK(p.a.scq, 0x95, PW_WC_SEND, 50, p.a.qp->qp_num);
	pwt_img_free(&src);
	pwt_img_free(&rb);
	pwt_pair_close(&p);
}

static const struct pwt_case cases[] = {
	{ "bad_rkey", t_bad_rkey },
	{ "out_of_bounds", t_out_of_bounds },
	{ "oob_wrap", t_oob_wrap },
	{ "no_access", t_no_access },
	{ "pd_mismatch", t_pd_mismatch },
	{ "dereg", t_dereg },
	{ "odp_unmapped", t_odp_unmapped },
	{ "bad_lkey", t_bad_lkey },
	{ "local_oob", t_local_oob },
	{ "local_pd_mismatch", t_local_pd_mismatch },
	{ "no_local_write", t_no_local_write },
	{ "msg_too_long", t_msg_too_long },
	{ "recv_too_small", t_recv_too_small },
	{ "recv_bad_lkey", t_recv_bad_lkey },
	{ "recv_no_local_write", t_recv_no_local_write },
	{ "atomic_misaligned", t_atomic_misaligned },
	{ "rnr_none", t_rnr_none },
	{ "rnr_retry_ok", t_rnr_retry_ok },
	{ "rnr_retry_count", t_rnr_retry_count },
	{ "flush_after_error", t_flush_after_error },
	{ "flush_on_destroy", t_flush_on_destroy },
	{ "post_error_qp", t_post_error_qp },
	{ "post_einval", t_post_einval },
	{ "post_enomem", t_post_enomem },
};

int main(int argc, char **argv)
{
	return pwt_main(argc, argv, cases, PWT_ARRAY_SIZE(cases));
}
