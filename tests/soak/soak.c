/* SPDX-License-Identifier: MIT */
/*
 * The soak test: one process, an initiator and a target context, 16 RC
 * QPs between them. Every QP owns a slice of one ODP
 * (FOLLOW_VA) region on the target and keeps a few ops in flight on
 * distinct 64 KiB blocks of it: WRITE (inline, sub-page, page, multi-page),
 * WRITE_WITH_IMM, READ, SEND/SEND_WITH_IMM into receives posted inside the
 * region, FETCH_ADD and CMP_SWAP. Meanwhile blocks with nothing in flight
 * are hit by the application's own VM changes (MADV_DONTNEED, munmap +
 * mmap at the same address, mmap over in place, MADV_PAGEOUT/COLD,
 * pw_mr_invalidate, plain stores) and the target's memory budget, a
 * quarter of the region, keeps reclaiming.
 *
 * A shadow copy of the region is the truth: every READ, received payload,
 * atomic's old value and a final READ of every block are compared with it
 * byte for byte. At the end everything is torn down and the process must
 * hold as many fds as at the start; leaks of memory are LeakSanitizer's
 * (the ASan build, `make soak`).
 *
 *   pwsoak [--seconds N] [--seed S]     (or SOAK_SECONDS / SOAK_SEED)
 *
 * Exit 0 when clean, 1 on any data error, failed completion, hang or fd
 * leak.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "pwtest.h"

#ifndef MADV_COLD
#define MADV_COLD 20
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define NQP		16
#define BLOCKS_PER_QP	16
#define NBLOCKS		(NQP * BLOCKS_PER_QP)
#define BLOCK		(64u * 1024u)
#define TGT_BYTES	((size_t)NBLOCKS * BLOCK)
#define BUDGET		(TGT_BYTES / 4)
/* ops in flight per QP; fewer than BLOCKS_PER_QP leaves idle blocks for chaos */
#define DEPTH		4
#define INLINE_MAX	64	/* the QPs' default max_inline_data */
/* no completion for this long while ops are in flight: a hang */
#define HANG_MS		30000
#define MAX_REPORTS	20

/* ------------------------------------------------------------------ */
/* PRNG: xoshiro256**, seeded by splitmix64, so a seed replays the choices */
/* ------------------------------------------------------------------ */

static uint64_t rs[4];

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t rnd64(void)
{
	uint64_t r = rotl(rs[1] * 5, 7) * 9, t = rs[1] << 17;

	rs[2] ^= rs[0];
	rs[3] ^= rs[1];
	rs[1] ^= rs[2];
	rs[0] ^= rs[3];
	rs[2] ^= t;
	rs[3] = rotl(rs[3], 45);
	return r;
}

/* uniform in [0, n), n > 0 */
static uint32_t rnd(uint32_t n)
{
	return (uint32_t)(((rnd64() >> 32) * (uint64_t)n) >> 32);
}

static void rnd_fill(uint8_t *p, size_t len)
{
	while (len >= 8) {
		uint64_t v = rnd64();

		memcpy(p, &v, 8);
		p += 8;
		len -= 8;
	}
	if (len) {
		uint64_t v = rnd64();

		memcpy(p, &v, len);
	}
}

/* ------------------------------------------------------------------ */
/* State                                                                */
/* ------------------------------------------------------------------ */

enum op_kind {
	OP_WRITE, OP_WRITE_IMM, OP_READ, OP_SEND, OP_SEND_IMM, OP_FADD,
	OP_CSWAP, OP_NKINDS
};

static const char *const op_name[OP_NKINDS] = {
	"write", "write_imm", "read", "send", "send_imm", "fetch_add", "cmp_swap",
};
/* relative frequencies */
static const uint32_t op_weight[OP_NKINDS] = { 30, 8, 25, 12, 5, 10, 10 };

enum chaos_kind {
	CH_DONTNEED, CH_UNMAP_MAP, CH_MAP_OVER, CH_PAGEOUT, CH_COLD,
	CH_INVALIDATE, CH_STORE, CH_NKINDS
};

static const char *const chaos_name[CH_NKINDS] = {
	"madv_dontneed", "munmap_mmap", "mmap_over", "madv_pageout", "madv_cold",
	"mr_invalidate", "cpu_store",
};
static const uint32_t chaos_weight[CH_NKINDS] = { 25, 20, 10, 15, 10, 10, 10 };

struct op {
	bool active;
	enum op_kind kind;
	uint32_t block;		/* global block index */
	uint32_t off, len;	/* within the block */
	uint32_t rlen;		/* SEND: the receive's length (>= len) */
	uint32_t imm;
	uint64_t gen;
	int pending;		/* completions still to come */
	uint64_t compare_add, swap;
	uint64_t posted_ms;
	uint8_t *buf;		/* this slot's local buffer, BLOCK bytes */
	uint32_t lkey;
};

struct qpx {
	struct pw_qp *qa;	/* initiator */
	struct pw_qp *qb;	/* target */
	struct op op[DEPTH];
	int inflight;
};

static struct {
	struct pwt_side a, b;		/* initiator, target */
	struct pw_comp_channel *ach, *bch;
	struct pw_listener *l;
	struct qpx q[NQP];

	uint8_t *tgt;			/* the target region */
	uint8_t *shadow;		/* what it must hold */
	bool busy[NBLOCKS];		/* an op (or receive) is on the block */
	struct pw_mr *tmr;		/* target: ODP, FOLLOW_VA */
	uint8_t *lpin, *lodp;		/* initiator slot buffers */
	size_t lbytes;
	struct pw_mr *lpin_mr, *lodp_mr;
	size_t pg;
	bool notifier_off;
	bool verifying;			/* the final pass: not counted as ops */

	uint64_t gen;
	uint64_t ops[OP_NKINDS];
	uint64_t bytes[OP_NKINDS];
	uint64_t write_inline, cswap_hit, cswap_miss;
	uint64_t chaos[CH_NKINDS];
	uint64_t chaos_pages[CH_NKINDS];
	uint64_t madv_unsupported;
	uint64_t cpu_checks;
	uint64_t data_errors;
	uint64_t reports;
	uint64_t last_progress_ms;
} S;

static const char *kind_name(int k)
{
	return k >= 0 && k < OP_NKINDS ? op_name[k] : "?";
}

static uint8_t *tgt_at(uint32_t block, uint32_t off)
{
	return S.tgt + (size_t)block * BLOCK + off;
}

static uint8_t *shadow_at(uint32_t block, uint32_t off)
{
	return S.shadow + (size_t)block * BLOCK + off;
}

static uint64_t wr_id_of(int q, int slot, uint64_t gen, bool recv)
{
	return (gen << 17) | ((uint64_t)recv << 16) | ((uint64_t)q << 8) |
	       (uint64_t)slot;
}

/* ------------------------------------------------------------------ */
/* Data errors                                                          */
/* ------------------------------------------------------------------ */

/*
 * @got differs from the shadow at [block, off, len): count it, say where
 * and what the target's memory holds there (memory right and the copy
 * wrong points at the transfer; memory wrong at the placement), then take
 * the memory as the truth so that one lost write is reported once.
 */
static void data_error(const char *what, int q, const struct op *o,
		       uint32_t block, uint32_t off, uint32_t len,
		       const uint8_t *got)
{
	const uint8_t *want = shadow_at(block, off);
	uint32_t first = 0, ndiff = 0;

	for (uint32_t i = 0; i < len; i++)
		if (got[i] != want[i]) {
			if (!ndiff)
				first = i;
			ndiff++;
		}
	S.data_errors++;
	if (S.reports++ < MAX_REPORTS)
		fprintf(stderr,
			"DATA ERROR (%s): qp %d op %s block %u [%u, +%u): %u bytes differ, "
			"first at +%u: got 0x%02x, want 0x%02x, memory 0x%02x\n",
			what, q, o ? kind_name((int)o->kind) : "-", block, off, len,
			ndiff, first, got[first], want[first],
			*tgt_at(block, off + first));
	memcpy(shadow_at(block, 0), tgt_at(block, 0), BLOCK);
}

/* The target's own memory against the shadow over [off, off + len). */
static void cpu_check(const char *what, int q, const struct op *o,
		      uint32_t block, uint32_t off, uint32_t len)
{
	S.cpu_checks++;
	if (memcmp(tgt_at(block, off), shadow_at(block, off), len))
		data_error(what, q, o, block, off, len, tgt_at(block, off));
}

/* ------------------------------------------------------------------ */
/* Posting                                                              */
/* ------------------------------------------------------------------ */

static void post_send_wr(struct pw_qp *qp, uint64_t wr_id, enum pw_wr_opcode opc,
			 const struct op *o, uint64_t raddr, unsigned int flags)
{
	struct pw_sge sge = { pwt_va(o->buf), o->len, o->lkey };
	struct pw_send_wr wr, *bad = NULL;

	memset(&wr, 0, sizeof(wr));
	wr.wr_id = wr_id;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.opcode = opc;
	wr.send_flags = PW_SEND_SIGNALED | flags;
	wr.imm_data = o->imm;
	if (opc == PW_WR_ATOMIC_CMP_AND_SWP || opc == PW_WR_ATOMIC_FETCH_AND_ADD) {
		sge.length = 8;
		wr.wr.atomic.remote_addr = raddr;
		wr.wr.atomic.rkey = S.tmr->rkey;
		wr.wr.atomic.compare_add = o->compare_add;
		wr.wr.atomic.swap = o->swap;
	} else {
		wr.wr.rdma.remote_addr = raddr;
		wr.wr.rdma.rkey = S.tmr->rkey;
	}
	PWT_OK(pw_post_send(qp, &wr, &bad));
}

/* A receive on the target QP, into the region or (len 0) nowhere. */
static void post_recv_wr(struct pw_qp *qp, uint64_t wr_id, void *addr,
			 uint32_t len)
{
	struct pw_sge sge = { pwt_va(addr), len, S.tmr->lkey };
	struct pw_recv_wr wr, *bad = NULL;

	memset(&wr, 0, sizeof(wr));
	wr.wr_id = wr_id;
	wr.sg_list = len ? &sge : NULL;
	wr.num_sge = len ? 1 : 0;
	PWT_OK(pw_post_recv(qp, &wr, &bad));
}

static enum op_kind pick_kind(void)
{
	uint32_t total = 0, r;

	for (int k = 0; k < OP_NKINDS; k++)
		total += op_weight[k];
	r = rnd(total);
	for (int k = 0; k < OP_NKINDS; k++) {
		if (r < op_weight[k])
			return (enum op_kind)k;
		r -= op_weight[k];
	}
	return OP_WRITE;
}

/* Sub-page, exactly a page, and multi-page lengths, about equally often. */
static void pick_range(struct op *o)
{
	switch (rnd(4)) {
	case 0:
		o->len = 1 + rnd(INLINE_MAX);
		break;
	case 1:
		o->len = INLINE_MAX + 1 + rnd((uint32_t)S.pg - INLINE_MAX - 1);
		break;
	case 2:
		o->len = (uint32_t)S.pg;
		break;
	default:
		o->len = (uint32_t)S.pg + 1 + rnd(BLOCK - (uint32_t)S.pg);
		break;
	}
	if (o->len == S.pg && rnd(2))
		o->off = rnd(BLOCK / (uint32_t)S.pg) * (uint32_t)S.pg;
	else
		o->off = rnd(BLOCK - o->len + 1);
}

static uint32_t idle_block(int q)
{
	uint32_t start = rnd(BLOCKS_PER_QP);

	for (uint32_t i = 0; i < BLOCKS_PER_QP; i++) {
		uint32_t b = (uint32_t)q * BLOCKS_PER_QP + (start + i) % BLOCKS_PER_QP;

		if (!S.busy[b])
			return b;
	}
	return UINT32_MAX;
}

static void post_op(int q, int slot)
{
	struct qpx *x = &S.q[q];
	struct op *o = &x->op[slot];
	uint64_t raddr, id, v;
	unsigned int flags = 0;

	o->block = idle_block(q);
	PWT_ASSERT(o->block != UINT32_MAX);
	o->kind = pick_kind();
	o->gen = ++S.gen;
	o->pending = 1;
	o->imm = (uint32_t)rnd64();
	o->rlen = 0;
	id = wr_id_of(q, slot, o->gen, false);

	switch (o->kind) {
	case OP_FADD:
	case OP_CSWAP:
		o->off = rnd(BLOCK / 8) * 8;
		o->len = 8;
		memcpy(&v, shadow_at(o->block, o->off), 8);
		if (o->kind == OP_FADD) {
			o->compare_add = rnd64();
			o->swap = 0;
		} else {
			/* a quarter of them must fail: the compare is off by a bit */
			o->compare_add = rnd(4) ? v : v ^ (1ull << rnd(64));
			o->swap = rnd64();
		}
		memset(o->buf, 0xa5, 8);
		break;
	default:
		pick_range(o);
		if (o->kind != OP_READ)
			rnd_fill(o->buf, o->len);
		break;
	}
	raddr = pwt_va(tgt_at(o->block, o->off));
	S.busy[o->block] = true;
	o->active = true;
	o->posted_ms = pwt_now_ms();
	x->inflight++;

	switch (o->kind) {
	case OP_WRITE:
		if (o->len <= INLINE_MAX && rnd(2)) {
			flags = PW_SEND_INLINE;
			S.write_inline++;
		}
		post_send_wr(x->qa, id, PW_WR_RDMA_WRITE, o, raddr, flags);
		break;
	case OP_WRITE_IMM:
		/* it consumes a receive: post that first, so none ever waits (RNR) */
		o->pending = 2;
		post_recv_wr(x->qb, wr_id_of(q, slot, o->gen, true), NULL, 0);
		post_send_wr(x->qa, id, PW_WR_RDMA_WRITE_WITH_IMM, o, raddr, 0);
		break;
	case OP_READ:
		post_send_wr(x->qa, id, PW_WR_RDMA_READ, o, raddr, 0);
		break;
	case OP_SEND:
	case OP_SEND_IMM:
		/* the receive may be longer: bytes past the message stay */
		o->rlen = o->len + rnd((BLOCK - o->off - o->len < 256u ? BLOCK - o->off - o->len : 256u) + 1);
		o->pending = 2;
		post_recv_wr(x->qb, wr_id_of(q, slot, o->gen, true),
			     tgt_at(o->block, o->off), o->rlen);
		if (o->len <= INLINE_MAX && rnd(2))
			flags = PW_SEND_INLINE;
		post_send_wr(x->qa, id, o->kind == OP_SEND ? PW_WR_SEND :
			     PW_WR_SEND_WITH_IMM, o, 0, flags);
		break;
	case OP_FADD:
		post_send_wr(x->qa, id, PW_WR_ATOMIC_FETCH_AND_ADD, o, raddr, 0);
		break;
	case OP_CSWAP:
		post_send_wr(x->qa, id, PW_WR_ATOMIC_CMP_AND_SWP, o, raddr, 0);
		break;
	default:
		break;
	}
}

/* ------------------------------------------------------------------ */
/* Completions                                                          */
/* ------------------------------------------------------------------ */

static void print_summary(FILE *f);

/* The target's fault policy of QP @q: a third each NOTIFY, STALL, DROP. */
static uint32_t qp_policy(int q)
{
	static const uint32_t pol[3] = { PW_FAULT_NOTIFY, PW_FAULT_STALL,
					 PW_FAULT_DROP };

	return pol[q % 3];
}

_Noreturn static void fail_wc(const char *side, const struct pw_wc *wc,
			      const char *why)
{
	static const char *const names[] = { "default", "stall", "drop", "notify" };
	int q = (int)((wc->wr_id >> 8) & 0xff);

	print_summary(stderr);
	/* the policy tells a DROP retry_cnt run-out from a connection lost */
	pwt_fail(__FILE__, __LINE__,
		 "%s completion wr_id 0x%" PRIx64 " (qp %u, soak QP %d, target policy "
		 "%s): %s: status %s, opcode %d, byte_len %u, vendor_err %u",
		 side, wc->wr_id, wc->qp_num, q,
		 q < NQP ? names[qp_policy(q)] : "?", why,
		 pw_wc_status_str(wc->status), (int)wc->opcode, wc->byte_len,
		 wc->vendor_err);
}

/* The op behind a completion, after checking that one is waiting for it. */
static struct op *op_of(const char *side, const struct pw_wc *wc, bool recv,
			int *qout, int *slotout)
{
	int q = (int)((wc->wr_id >> 8) & 0xff), slot = (int)(wc->wr_id & 0xff);
	struct op *o;

	if (wc->status != PW_WC_SUCCESS)
		fail_wc(side, wc, "failed");
	if (q >= NQP || slot >= DEPTH || !!(wc->wr_id & (1u << 16)) != recv)
		fail_wc(side, wc, "unknown wr_id");
	o = &S.q[q].op[slot];
	if (!o->active || o->gen != wc->wr_id >> 17 || o->pending <= 0)
		fail_wc(side, wc, "no op waits for it");
	if (wc->qp_num != (recv ? S.q[q].qb : S.q[q].qa)->qp_num)
		fail_wc(side, wc, "on the wrong QP");
	*qout = q;
	*slotout = slot;
	return o;
}

/* Both halves seen: the op's effect goes into the shadow, the block is free. */
static void finish_op(int q, struct op *o)
{
	switch (o->kind) {
	case OP_WRITE:
	case OP_WRITE_IMM:
		memcpy(shadow_at(o->block, o->off), o->buf, o->len);
		if (rnd(8) == 0)
			cpu_check("after write", q, o, o->block, o->off, o->len);
		break;
	case OP_SEND:
	case OP_SEND_IMM:
		memcpy(shadow_at(o->block, o->off), o->buf, o->len);
		cpu_check("received payload", q, o, o->block, o->off, o->rlen);
		break;
	default:
		break;
	}
	if (!S.verifying) {
		S.ops[o->kind]++;
		S.bytes[o->kind] += o->len;
	}
	S.busy[o->block] = false;
	o->active = false;
	S.q[q].inflight--;
}

static void on_send_wc(const struct pw_wc *wc)
{
	static const enum pw_wc_opcode want_opc[OP_NKINDS] = {
		[OP_WRITE] = PW_WC_RDMA_WRITE, [OP_WRITE_IMM] = PW_WC_RDMA_WRITE,
		[OP_READ] = PW_WC_RDMA_READ, [OP_SEND] = PW_WC_SEND,
		[OP_SEND_IMM] = PW_WC_SEND, [OP_FADD] = PW_WC_FETCH_ADD,
		[OP_CSWAP] = PW_WC_COMP_SWAP,
	};
	int q, slot;
	struct op *o = op_of("initiator", wc, false, &q, &slot);
	uint64_t old, want;

	if (wc->opcode != want_opc[o->kind])
		fail_wc("initiator", wc, kind_name((int)o->kind));
	if (wc->byte_len != o->len)
		fail_wc("initiator", wc, "byte_len is not the op's length");
	switch (o->kind) {
	case OP_READ:
		if (memcmp(o->buf, shadow_at(o->block, o->off), o->len))
			data_error("read", q, o, o->block, o->off, o->len, o->buf);
		break;
	case OP_FADD:
	case OP_CSWAP:
		memcpy(&old, o->buf, 8);
		memcpy(&want, shadow_at(o->block, o->off), 8);
		if (old != want) {
			/* the shadow takes the memory, result included */
			data_error("atomic old value", q, o, o->block, o->off, 8, o->buf);
			break;
		}
		if (o->kind == OP_FADD) {
			want += o->compare_add;
		} else if (old == o->compare_add) {
			want = o->swap;
			S.cswap_hit++;
		} else {
			S.cswap_miss++;
		}
		memcpy(shadow_at(o->block, o->off), &want, 8);
		break;
	default:
		break;
	}
	if (--o->pending == 0)
		finish_op(q, o);
}

static void on_recv_wc(const struct pw_wc *wc)
{
	int q, slot;
	struct op *o = op_of("target", wc, true, &q, &slot);
	bool imm = o->kind == OP_WRITE_IMM || o->kind == OP_SEND_IMM;
	enum pw_wc_opcode opc = o->kind == OP_WRITE_IMM ? PW_WC_RECV_RDMA_WITH_IMM :
				PW_WC_RECV;

	if (wc->opcode != opc || wc->byte_len != o->len ||
	    !!(wc->wc_flags & PW_WC_WITH_IMM) != imm ||
	    (imm && wc->imm_data != o->imm))
		fail_wc("target", wc, kind_name((int)o->kind));
	if (--o->pending == 0)
		finish_op(q, o);
}

/* Everything both CQs hold now; returns how many. */
static int drain(void)
{
	struct pw_wc wc[32];
	int n, total = 0;

	do {
		n = pw_poll_cq(S.a.scq, 32, wc);
		PWT_ASSERTF(n >= 0, "pw_poll_cq: %d", n);
		for (int i = 0; i < n; i++)
			on_send_wc(&wc[i]);
		total += n;
	} while (n == 32);
	do {
		n = pw_poll_cq(S.b.rcq, 32, wc);
		PWT_ASSERTF(n >= 0, "pw_poll_cq: %d", n);
		for (int i = 0; i < n; i++)
			on_recv_wc(&wc[i]);
		total += n;
	} while (n == 32);
	if (total)
		S.last_progress_ms = pwt_now_ms();
	return total;
}

static void take_events(struct pw_comp_channel *ch)
{
	struct pw_cq *cq;
	void *ctx;

	while (pw_get_cq_event(ch, &cq, &ctx, 0) == 0)
		pw_ack_cq_events(cq, 1);
}

static int inflight_total(void)
{
	int n = 0;

	for (int q = 0; q < NQP; q++)
		n += S.q[q].inflight;
	return n;
}

static void fail_hang(void)
{
	uint64_t now = pwt_now_ms();

	print_summary(stderr);
	for (int q = 0; q < NQP; q++)
		for (int s = 0; s < DEPTH; s++) {
			const struct op *o = &S.q[q].op[s];

			if (o->active)
				fprintf(stderr, "  in flight: qp %d slot %d %s block %u "
					"[%u, +%u) pending %d for %" PRIu64 " ms\n",
					q, s, kind_name((int)o->kind), o->block, o->off,
					o->len, o->pending, now - o->posted_ms);
		}
	pwt_fail(__FILE__, __LINE__, "no completion for %d ms with %d ops in flight",
		 HANG_MS, inflight_total());
}

/*
 * Completions, or sleep on both channels until one comes (no spinning:
 * two cores are shared with the progress threads).
 */
static void wait_progress(int timeout_ms)
{
	struct pollfd p[2] = { { .fd = S.ach->fd, .events = POLLIN },
			       { .fd = S.bch->fd, .events = POLLIN } };

	if (drain())
		return;
	PWT_OK(pw_req_notify_cq(S.a.scq, 0));
	PWT_OK(pw_req_notify_cq(S.b.rcq, 0));
	if (drain())
		return;		/* came in before arming: the events are harmless */
	if (poll(p, 2, timeout_ms) > 0) {
		take_events(S.ach);
		take_events(S.bch);
	}
	drain();
	if (inflight_total() && pwt_now_ms() - S.last_progress_ms > HANG_MS)
		fail_hang();
}

/* ------------------------------------------------------------------ */
/* Chaos: what the target application does to its own idle memory      */
/* ------------------------------------------------------------------ */

static void chaos(void)
{
	uint32_t total = 0, r, block, npg = BLOCK / (uint32_t)S.pg, p0, n;
	int q = (int)rnd(NQP), k = 0;
	uint8_t *addr;
	size_t len;

	block = idle_block(q);
	if (block == UINT32_MAX)
		return;
	for (int i = 0; i < CH_NKINDS; i++)
		total += chaos_weight[i];
	r = rnd(total);
	while (r >= chaos_weight[k])
		r -= chaos_weight[k++];
	/* a page-aligned part of the block, often all of it */
	if (rnd(3) == 0) {
		p0 = 0;
		n = npg;
	} else {
		p0 = rnd(npg);
		n = 1 + rnd(npg - p0);
	}
	addr = tgt_at(block, p0 * (uint32_t)S.pg);
	len = (size_t)n * S.pg;

	/* degraded mode (no userfaultfd): the application says so itself */
	if (S.notifier_off && (k == CH_DONTNEED || k == CH_UNMAP_MAP || k == CH_MAP_OVER))
		PWT_OK(pw_mr_invalidate(S.tmr, (uint64_t)(addr - S.tgt), len));

	switch (k) {
	case CH_DONTNEED:
		PWT_ASSERTF(madvise(addr, len, MADV_DONTNEED) == 0, "MADV_DONTNEED: %s",
			    strerror(errno));
		memset(shadow_at(block, p0 * (uint32_t)S.pg), 0, len);
		break;
	case CH_UNMAP_MAP: {
		void *m;

		PWT_ASSERTF(munmap(addr, len) == 0, "munmap: %s", strerror(errno));
		/*
		 * NOREPLACE: should another thread have mapped something into
		 * the hole meanwhile, fail rather than map over its memory.
		 */
		m = mmap(addr, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		PWT_ASSERTF(m == addr, "mmap at the unmapped %p: %p (%s): another "
			    "thread mapped into the hole", (void *)addr, m,
			    m == MAP_FAILED ? strerror(errno) : "elsewhere");
		memset(shadow_at(block, p0 * (uint32_t)S.pg), 0, len);
		break;
	}
	case CH_MAP_OVER:
		PWT_ASSERTF(mmap(addr, len, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == addr,
			    "mmap over %p: %s", (void *)addr, strerror(errno));
		memset(shadow_at(block, p0 * (uint32_t)S.pg), 0, len);
		break;
	case CH_PAGEOUT:
	case CH_COLD:
		/* content kept; EINVAL: a kernel before 5.4 */
		if (madvise(addr, len, k == CH_PAGEOUT ? MADV_PAGEOUT : MADV_COLD)) {
			PWT_ASSERTF(errno == EINVAL, "madvise: %s", strerror(errno));
			S.madv_unsupported++;
		}
		break;
	case CH_INVALIDATE:
		PWT_OK(pw_mr_invalidate(S.tmr, (uint64_t)(addr - S.tgt), len));
		break;
	case CH_STORE: {
		uint32_t off = p0 * (uint32_t)S.pg + rnd((uint32_t)len);
		uint32_t l = 1 + rnd((uint32_t)(BLOCK - off < 512 ? BLOCK - off : 512));

		rnd_fill(shadow_at(block, off), l);
		memcpy(tgt_at(block, off), shadow_at(block, off), l);
		break;
	}
	default:
		break;
	}
	S.chaos[k]++;
	if (k != CH_STORE)
		S.chaos_pages[k] += n;
	/* now and then the whole block, as the target itself sees it */
	if (rnd(16) == 0)
		cpu_check("idle block", q, NULL, block, 0, BLOCK);
}

/* ------------------------------------------------------------------ */
/* Reporting                                                            */
/* ------------------------------------------------------------------ */

static void print_summary(FILE *f)
{
	uint64_t ops = 0, chaos_n = 0;
	struct pw_stats sa = pwt_stats(S.a.ctx), sb = pwt_stats(S.b.ctx);

	for (int k = 0; k < OP_NKINDS; k++)
		ops += S.ops[k];
	for (int k = 0; k < CH_NKINDS; k++)
		chaos_n += S.chaos[k];
	fprintf(f, "ops: %" PRIu64 " total\n", ops);
	for (int k = 0; k < OP_NKINDS; k++)
		fprintf(f, "  %-10s %10" PRIu64 "  (%" PRIu64 " MiB)\n", op_name[k],
			S.ops[k], S.bytes[k] >> 20);
	fprintf(f, "  (writes inline %" PRIu64 "; cmp_swap swapped %" PRIu64
		", compare failed %" PRIu64 ")\n", S.write_inline, S.cswap_hit,
		S.cswap_miss);
	fprintf(f, "chaos: %" PRIu64 " total\n", chaos_n);
	for (int k = 0; k < CH_NKINDS; k++)
		fprintf(f, "  %-14s %8" PRIu64 "  (%" PRIu64 " pages)\n", chaos_name[k],
			S.chaos[k], S.chaos_pages[k]);
	if (S.madv_unsupported)
		fprintf(f, "  (MADV_PAGEOUT/COLD unsupported here: %" PRIu64 ")\n",
			S.madv_unsupported);
	fprintf(f, "target: budget %" PRIu64 " KiB, resident %" PRIu64 " KiB, "
		"reclaimed %" PRIu64 " pages (paged out %" PRIu64 ", unfreed %" PRIu64
		", no swap %" PRIu64 ")\n",
		sb.budget_bytes >> 10, sb.resident_bytes >> 10, sb.reclaimed_pages,
		sb.reclaim_paged_out, sb.reclaim_unfreed, sb.reclaim_no_swap);
	fprintf(f, "target: faults %" PRIu64 " (failed %" PRIu64 ", inline %" PRIu64
		"), fault pages %" PRIu64 ", around %" PRIu64 ", PAGE_FAULT NAKs sent %"
		PRIu64 ", notifications sent %" PRIu64 " (dropped %" PRIu64
		"), FAULT_IN answered %" PRIu64 ", notifier %s, VM events %" PRIu64 "\n",
		sb.faults, sb.fault_failed, sb.fault_inline, sb.fault_pages,
		sb.fault_around_pages, sb.naks_sent, sb.notifications_sent,
		sb.notify_dropped, sb.fault_in_received,
		sb.notifier_off ? "off" : "on", sb.notifier_events);
	fprintf(f, "initiator: faults %" PRIu64 ", NAKs received %" PRIu64
		", retransmitted %" PRIu64 " KiB, notifications received %" PRIu64
		", FAULT_IN sent %" PRIu64 "\n",
		sa.faults, sa.naks_received, sa.retransmitted_bytes >> 10,
		sa.notifications_received, sa.fault_in_sent);
	fprintf(f, "cpu checks: %" PRIu64 "\ndata errors: %" PRIu64 "\n",
		S.cpu_checks, S.data_errors);
	fflush(f);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	PWT_ASSERTF(d, "/proc/self/fd: %s", strerror(errno));
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;	/* includes the directory's own fd, as every count does */
}

static void list_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	char path[300], target[256];

	if (!d)
		return;
	while ((e = readdir(d))) {
		ssize_t n;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		n = readlink(path, target, sizeof(target) - 1);
		target[n > 0 ? n : 0] = '\0';
		fprintf(stderr, "  fd %s -> %s\n", e->d_name, target);
	}
	closedir(d);
}

/* ------------------------------------------------------------------ */
/* Setup and teardown                                                   */
/* ------------------------------------------------------------------ */

static void replace_cq(struct pwt_side *s, struct pw_cq **cq,
		       struct pw_comp_channel **ch)
{
	*ch = pw_create_comp_channel(s->ctx);
	PWT_NONNULL(*ch);
	PWT_OK(pw_destroy_cq(*cq));
	*cq = pw_create_cq(s->ctx, 256, NULL, *ch, 0);
	PWT_NONNULL(*cq);
}

static void *map_anon(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	PWT_ASSERTF(p != MAP_FAILED, "mmap %zu: %s", len, strerror(errno));
	return p;
}

static void setup(void)
{
	struct pw_context_attr ta;
	size_t half;

	S.pg = (size_t)sysconf(_SC_PAGESIZE);
	PWT_ASSERTF(BLOCK % S.pg == 0, "page size %zu does not divide a block", S.pg);
	pwt_side_open(&S.a);
	memset(&ta, 0, sizeof(ta));
	ta.mem_budget = BUDGET;
	pwt_side_open_attr(&S.b, &ta);
	/* only these two CQs see completions: the initiator sends nothing to recv */
	replace_cq(&S.a, &S.a.scq, &S.ach);
	replace_cq(&S.b, &S.b.rcq, &S.bch);
	S.l = pw_listen(S.b.ctx, "127.0.0.1", 0);
	PWT_NONNULL(S.l);

	/*
	 * The target's fault policies, a third each: NOTIFY (INVALIDATEs
	 * from munmap, madvise and reclaim reach the peer), STALL and DROP.
	 */
	for (int q = 0; q < NQP; q++) {
		struct pw_qp_init_attr aa, ba;

		memset(&aa, 0, sizeof(aa));
		memset(&ba, 0, sizeof(ba));
		ba.fault_policy = qp_policy(q);
		pwt_connect_qp(&S.a, &S.b, S.l, &aa, &ba, &S.q[q].qa, &S.q[q].qb);
	}

	S.tgt = map_anon(TGT_BYTES);
	S.shadow = calloc(1, TGT_BYTES);
	PWT_ASSERT(S.shadow);
	S.tmr = pw_reg_mr(S.b.pd, S.tgt, TGT_BYTES, PWT_ACCESS_ALL |
			  PW_ACCESS_ON_DEMAND | PW_ACCESS_ODP_FOLLOW_VA);
	PWT_NONNULL(S.tmr);
	S.notifier_off = pwt_stats(S.b.ctx).notifier_off != 0;

	/* initiator slots: half the QPs' pinned, half ODP (local faults) */
	half = (size_t)NQP / 2 * DEPTH * BLOCK;
	S.lbytes = half;
	S.lpin = map_anon(half);
	S.lodp = map_anon(half);
	S.lpin_mr = pw_reg_mr(S.a.pd, S.lpin, half, PW_ACCESS_LOCAL_WRITE);
	PWT_NONNULL(S.lpin_mr);
	S.lodp_mr = pw_reg_mr(S.a.pd, S.lodp, half,
			      PW_ACCESS_LOCAL_WRITE | PW_ACCESS_ON_DEMAND);
	PWT_NONNULL(S.lodp_mr);
	for (int q = 0; q < NQP; q++)
		for (int s = 0; s < DEPTH; s++) {
			struct op *o = &S.q[q].op[s];
			size_t i = (size_t)(q % (NQP / 2)) * DEPTH + (size_t)s;

			o->buf = (q < NQP / 2 ? S.lpin : S.lodp) + i * BLOCK;
			o->lkey = (q < NQP / 2 ? S.lpin_mr : S.lodp_mr)->lkey;
		}
}

static void teardown(void)
{
	for (int q = 0; q < NQP; q++) {
		PWT_OK(pw_destroy_qp(S.q[q].qa));
		PWT_OK(pw_destroy_qp(S.q[q].qb));
	}
	PWT_OK(pw_close_listener(S.l));
	PWT_OK(pw_dereg_mr(S.tmr));
	PWT_OK(pw_dereg_mr(S.lpin_mr));
	PWT_OK(pw_dereg_mr(S.lodp_mr));
	PWT_OK(pw_destroy_cq(S.a.scq));
	PWT_OK(pw_destroy_cq(S.b.rcq));
	S.a.scq = S.b.rcq = NULL;
	PWT_OK(pw_destroy_comp_channel(S.ach));
	PWT_OK(pw_destroy_comp_channel(S.bch));
	pwt_side_close(&S.a);
	pwt_side_close(&S.b);
	PWT_ASSERT(munmap(S.tgt, TGT_BYTES) == 0);
	PWT_ASSERT(munmap(S.lpin, S.lbytes) == 0);
	PWT_ASSERT(munmap(S.lodp, S.lbytes) == 0);
	free(S.shadow);
}

/* ------------------------------------------------------------------ */
/* The run                                                              */
/* ------------------------------------------------------------------ */

/* Every block READ back whole over its QP, DEPTH at a time per QP. */
static void verify_all(void)
{
	uint32_t next[NQP] = { 0 };
	uint64_t errors0 = S.data_errors;
	int left = NBLOCKS;

	S.verifying = true;
	while (left > 0) {
		for (int q = 0; q < NQP; q++)
			for (int s = 0; s < DEPTH && next[q] < BLOCKS_PER_QP; s++) {
				struct op *o = &S.q[q].op[s];

				if (o->active)
					continue;
				o->kind = OP_READ;
				o->block = (uint32_t)q * BLOCKS_PER_QP + next[q]++;
				o->off = 0;
				o->len = BLOCK;
				o->gen = ++S.gen;
				o->pending = 1;
				o->active = true;
				o->posted_ms = pwt_now_ms();
				S.busy[o->block] = true;
				S.q[q].inflight++;
				post_send_wr(S.q[q].qa, wr_id_of(q, s, o->gen, false),
					     PW_WR_RDMA_READ, o,
					     pwt_va(tgt_at(o->block, 0)), 0);
				left--;
			}
		wait_progress(100);
	}
	while (inflight_total())
		wait_progress(100);
	/* and the whole region as the target sees it: no stray byte anywhere */
	for (uint32_t b = 0; b < NBLOCKS; b++)
		cpu_check("final memory", (int)(b / BLOCKS_PER_QP), NULL, b, 0, BLOCK);
	printf("verify: %u blocks (%zu KiB) read back over their QPs and compared "
	       "in memory: %" PRIu64 " errors\n", NBLOCKS, TGT_BYTES >> 10,
	       S.data_errors - errors0);
}

static void watchdog(int sig)
{
	static const char msg[] = "FAIL: soak watchdog: hung\n";
	ssize_t n;

	(void)sig;
	n = write(STDERR_FILENO, msg, sizeof(msg) - 1);
	(void)n;
	_exit(1);
}

static void usage(const char *argv0)
{
	fprintf(stderr, "usage: %s [--seconds N] [--seed S]\n"
		"  defaults: SOAK_SECONDS (else 15), SOAK_SEED (else time-based)\n", argv0);
	exit(2);
}

int main(int argc, char **argv)
{
	const char *env = getenv("SOAK_SECONDS");
	unsigned long seconds = env && *env ? strtoul(env, NULL, 10) : 15;
	uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32), sm;
	uint64_t end_ms, next_report, t0;
	struct pw_stats sb;
	int fds0, fds1;

	env = getenv("SOAK_SEED");
	if (env && *env)
		seed = strtoull(env, NULL, 0);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			seconds = strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
			seed = strtoull(argv[++i], NULL, 0);
		else
			usage(argv[0]);
	}
	sm = seed;
	for (int i = 0; i < 4; i++)
		rs[i] = splitmix64(&sm);

	signal(SIGPIPE, SIG_IGN);
	signal(SIGALRM, watchdog);
	/* setup, the drain and the final pass take well under this */
	alarm((unsigned int)seconds + 600);
	setvbuf(stdout, NULL, _IOLBF, 0);

	fds0 = count_fds();
	printf("soak: %lu s, seed %" PRIu64 " (--seed to replay the choices), %d QPs, "
	       "%d blocks of %u KiB, %d ops in flight per QP, target budget %zu KiB\n",
	       seconds, seed, NQP, NBLOCKS, BLOCK >> 10, DEPTH, (size_t)BUDGET >> 10);
	setup();
	if (S.notifier_off)
		printf("soak: the notifier is off here: pw_mr_invalidate() before "
		       "each munmap/madvise instead\n");

	t0 = S.last_progress_ms = pwt_now_ms();
	end_ms = t0 + seconds * 1000;
	next_report = t0 + 10000;
	while (pwt_now_ms() < end_ms) {
		uint64_t done0 = 0, done1 = 0;

		for (int k = 0; k < OP_NKINDS; k++)
			done0 += S.ops[k];
		for (int q = 0; q < NQP; q++)
			for (int s = 0; s < DEPTH; s++)
				if (!S.q[q].op[s].active)
					post_op(q, s);
		wait_progress(100);
		for (int k = 0; k < OP_NKINDS; k++)
			done1 += S.ops[k];
		/* about one VM change per four ops completed */
		for (uint64_t i = done0; i < done1; i++)
			if (rnd(4) == 0)
				chaos();
		if (pwt_now_ms() >= next_report) {
			sb = pwt_stats(S.b.ctx);
			printf("soak: %3" PRIu64 " s: %" PRIu64 " ops, %" PRIu64
			       " reclaimed pages, %" PRIu64 " data errors\n",
			       (pwt_now_ms() - t0) / 1000, done1, sb.reclaimed_pages,
			       S.data_errors);
			next_report += 10000;
		}
	}
	while (inflight_total())
		wait_progress(100);
	verify_all();

	sb = pwt_stats(S.b.ctx);
	print_summary(stdout);
	teardown();
	fds1 = count_fds();
	printf("fds: %d at start, %d after teardown\n", fds0, fds1);
	if (fds1 != fds0) {
		list_fds();
		printf("FAIL: %d fds leaked\n", fds1 - fds0);
		return 1;
	}
	if (S.data_errors) {
		printf("FAIL: %" PRIu64 " data errors (seed %" PRIu64 ")\n",
		       S.data_errors, seed);
		return 1;
	}
	if (sb.reclaimed_pages == 0) {
		printf("FAIL: the budget never reclaimed (resident %" PRIu64 " KiB)\n",
		       sb.resident_bytes >> 10);
		return 1;
	}
	printf("PASS soak: every byte verified, no fd leaked (memory: LeakSanitizer "
	       "at exit in the ASan build)\n");
	return 0;
}
