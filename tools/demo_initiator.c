/* SPDX-License-Identifier: MIT */
/*
 * pagewire-demo's initiator: RDMA WRITEs of seeded patterns to scattered
 * ranges of the target's ODP region, RDMA READs of every range back with
 * a byte-for-byte comparison, FETCH_ADD / CMP_SWAP sequences on scattered
 * 8-byte targets with every returned value checked and the final values
 * read back, and finally the seed, so the target can check on its own.
 *
 * Payload goes through a staging buffer in batches, so the initiator's
 * memory stays small however much the plan moves.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cq_wait.h"
#include "demo.h"
#include "pattern.h"
#include "tool_util.h"

#define WHO "initiator"
#define STAGE_LEN	(16u << 20)
#define CTRL_LEN	4096
/* WRITEs in flight; READ/ATOMIC are bounded by the QP's max_rd_atomic. */
#define WRITE_WINDOW	64
#define RD_WINDOW	16
#define WRID_SEED	(1ull << 62)
#define WRID_REPORT	(1ull << 63)
#define WRID_LINGER	(WRID_REPORT | WRID_SEED)
/* How long to wait for the target to disconnect after its report. */
#define LINGER_MS	10000
/* Result slots start poisoned: an atomic that writes nothing must fail. */
#define POISON		0xa5a5a5a5a5a5a5a5ull

/**
 * struct demo_init - resources of the initiator process
 * @buf:     one mmap: staging | atomic results | final values | ctrl
 * @pos:     staging offset of each plan range in the current batch
 * @outstanding: WRs posted and not completed (all are signaled)
 */
struct demo_init {
	struct pw_context *ctx;
	struct pw_pd *pd;
	struct cq_waiter cqw;
	struct pw_qp *qp;
	uint8_t *buf;
	size_t buf_len;
	struct pw_mr *mr;
	uint8_t *stage;
	uint64_t *results;
	uint64_t *finals;
	uint8_t *ctrl;
	uint64_t raddr;
	uint64_t rlen;
	uint32_t rkey;
	struct demo_plan plan;
	size_t *pos;
	unsigned int outstanding;
};

static void lib_err(const char *call)
{
	demo_err(WHO, "%s failed: %s (%s)", call, strerror(errno),
		 pw_last_error());
}

static int init_setup(struct demo_init *in, const struct demo_opts *o,
		      uint64_t seed)
{
	size_t natom;
	int err;

	err = demo_plan_build(seed, o->region_len, o->writes, o->atomics,
			      &in->plan);
	if (err) {
		demo_err(WHO, "cannot plan %u writes + %u atomic targets in %llu bytes",
			 o->writes, o->atomics,
			 (unsigned long long)o->region_len);
		return -1;
	}
	in->pos = calloc(in->plan.n, sizeof(*in->pos));
	if (!in->pos)
		return -1;
	natom = in->plan.natomics;
	in->buf_len = STAGE_LEN +
		      (natom * DEMO_ATOMICS_PER_TARGET + natom) * 8 + CTRL_LEN;
	in->buf_len = (in->buf_len + 4095) / 4096 * 4096;
	in->buf = mmap(NULL, in->buf_len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (in->buf == MAP_FAILED) {
		in->buf = NULL;
		demo_err(WHO, "mmap: %s", strerror(errno));
		return -1;
	}
	in->stage = in->buf;
	in->results = (uint64_t *)(in->buf + STAGE_LEN);
	in->finals = in->results + natom * DEMO_ATOMICS_PER_TARGET;
	in->ctrl = (uint8_t *)(in->finals + natom);

	in->ctx = pw_open(NULL);
	if (!in->ctx) {
		lib_err("pw_open");
		return -1;
	}
	in->pd = pw_alloc_pd(in->ctx);
	if (!in->pd) {
		lib_err("pw_alloc_pd");
		return -1;
	}
	/* Local buffers are demand-paged too: nothing here is pinned. */
	in->mr = pw_reg_mr(in->pd, in->buf, in->buf_len,
			   PW_ACCESS_LOCAL_WRITE | PW_ACCESS_ON_DEMAND);
	if (!in->mr) {
		lib_err("pw_reg_mr(staging)");
		return -1;
	}
	if (cq_waiter_init(&in->cqw, in->ctx, 256, false)) {
		lib_err("pw_create_cq");
		return -1;
	}
	return 0;
}

static void init_teardown(struct demo_init *in)
{
	if (in->qp && pw_destroy_qp(in->qp))
		demo_err(WHO, "pw_destroy_qp: %s", pw_last_error());
	if (in->cqw.cq)
		cq_waiter_destroy(&in->cqw);
	if (in->mr)
		pw_dereg_mr(in->mr);
	if (in->pd)
		pw_dealloc_pd(in->pd);
	if (in->ctx)
		pw_close(in->ctx);
	if (in->buf)
		munmap(in->buf, in->buf_len);
	free(in->pos);
	demo_plan_free(&in->plan);
}

static int init_connect(struct demo_init *in, uint16_t port)
{
	struct pw_qp_init_attr attr;
	struct pw_conn_param param;

	memset(&attr, 0, sizeof(attr));
	attr.send_cq = in->cqw.cq;
	attr.recv_cq = in->cqw.cq;
	memset(&param, 0, sizeof(param));
	in->qp = pw_connect(in->pd, &attr, "127.0.0.1", port, &param);
	if (!in->qp) {
		lib_err("pw_connect");
		return -1;
	}
	if (demo_decode_pdata(in->qp->peer_private_data,
			      in->qp->peer_private_data_len, &in->raddr,
			      &in->rlen, &in->rkey)) {
		demo_err(WHO, "the target's connection data is not pagewire-demo's");
		return -1;
	}
	return 0;
}

/*
 * Reap at least one completion; every WR of the demo is signaled, so each
 * completion retires one outstanding WR. Any error status fails the run.
 */
static int reap(struct demo_init *in)
{
	struct pw_wc wc[16];
	int n = cq_wait(&in->cqw, wc, 16, DEMO_TIMEOUT_MS);

	if (n < 0) {
		demo_err(WHO, "no completion: %s (%d WRs outstanding)",
			 strerror(-n), in->outstanding);
		return n;
	}
	for (int i = 0; i < n; i++) {
		if (wc[i].status != PW_WC_SUCCESS) {
			demo_err(WHO, "WR %llu completed with %s",
				 (unsigned long long)wc[i].wr_id,
				 pw_wc_status_str(wc[i].status));
			return -EIO;
		}
		in->outstanding--;
	}
	return 0;
}

static int drain(struct demo_init *in)
{
	while (in->outstanding) {
		int err = reap(in);

		if (err)
			return err;
	}
	return 0;
}

/* Post @wr, first making room so that at most @window are in flight. */
static int post(struct demo_init *in, struct pw_send_wr *wr,
		unsigned int window)
{
	struct pw_send_wr *bad = NULL;
	int err;

	while (in->outstanding >= window) {
		err = reap(in);
		if (err)
			return err;
	}
	wr->send_flags |= PW_SEND_SIGNALED;
	err = pw_post_send(in->qp, wr, &bad);
	if (err) {
		demo_err(WHO, "pw_post_send(%s): %s (%s)",
			 pw_wr_opcode_str(wr->opcode), strerror(-err),
			 pw_last_error());
		return err;
	}
	in->outstanding++;
	return 0;
}

static int post_rdma(struct demo_init *in, enum pw_wr_opcode opcode,
		     void *local, uint32_t len, uint64_t off, uint64_t wr_id,
		     unsigned int window)
{
	struct pw_sge sge = {
		.addr = (uint64_t)(uintptr_t)local,
		.length = len,
		.lkey = in->mr->lkey,
	};
	struct pw_send_wr wr = {
		.wr_id = wr_id, .sg_list = &sge, .num_sge = 1,
		.opcode = opcode,
	};

	wr.wr.rdma.remote_addr = in->raddr + off;
	wr.wr.rdma.rkey = in->rkey;
	return post(in, &wr, window);
}

/*
 * Run @fn over the plan's writes in batches that fit the staging buffer:
 * positions of the batch's ranges are in in->pos[first..end).
 */
static size_t batch_end(struct demo_init *in, size_t first)
{
	size_t used = 0, i;

	for (i = first; i < in->plan.n; i++) {
		const struct demo_op *op = &in->plan.ops[i];

		if (op->kind != DEMO_OP_WRITE)
			continue;
		if (used + op->len > STAGE_LEN)
			break;
		in->pos[i] = used;
		/* 8-byte aligned staging slots: cheap fills and compares. */
		used += (op->len + 7) & ~7u;
	}
	return i;
}

static int do_writes(struct demo_init *in, struct demo_stats *st)
{
	for (size_t first = 0; first < in->plan.n;) {
		size_t end = batch_end(in, first);

		for (size_t i = first; i < end; i++) {
			const struct demo_op *op = &in->plan.ops[i];
			uint8_t *src = in->stage + in->pos[i];
			int err;

			if (op->kind != DEMO_OP_WRITE)
				continue;
			pattern_fill(src, op->len, op->seed, 0);
			err = post_rdma(in, PW_WR_RDMA_WRITE, src, op->len,
					op->off, i, WRITE_WINDOW);
			if (err)
				return err;
			st->writes++;
			st->bytes_written += op->len;
		}
		/* The staging buffer is reused: the batch must be done. */
		int err = drain(in);

		if (err)
			return err;
		first = end;
	}
	return 0;
}

static int do_reads(struct demo_init *in, struct demo_stats *st)
{
	unsigned int bad = 0;

	for (size_t first = 0; first < in->plan.n;) {
		size_t end = batch_end(in, first);
		int err;

		/* Leftovers of the write phase must not pass for read data. */
		memset(in->stage, 0, STAGE_LEN);
		for (size_t i = first; i < end; i++) {
			const struct demo_op *op = &in->plan.ops[i];

			if (op->kind != DEMO_OP_WRITE)
				continue;
			err = post_rdma(in, PW_WR_RDMA_READ, in->stage + in->pos[i],
					op->len, op->off, i, RD_WINDOW);
			if (err)
				return err;
			st->reads++;
			st->bytes_read += op->len;
		}
		err = drain(in);
		if (err)
			return err;
		for (size_t i = first; i < end; i++) {
			const struct demo_op *op = &in->plan.ops[i];
			const uint8_t *got = in->stage + in->pos[i];
			long long at;

			if (op->kind != DEMO_OP_WRITE)
				continue;
			at = pattern_check(got, op->len, op->seed, 0);
			if (at < 0)
				continue;
			if (bad++ < 5)
				demo_err(WHO, "READ of range %zu (offset 0x%llx, %u bytes): byte %lld is 0x%02x, expected 0x%02x",
					 i, (unsigned long long)op->off, op->len,
					 at, got[at],
					 pattern_byte(op->seed, (uint64_t)at));
		}
		first = end;
	}
	if (bad)
		demo_err(WHO, "%u ranges read back wrong", bad);
	return bad ? -EIO : 0;
}

static int post_atomic(struct demo_init *in, enum pw_wr_opcode opcode,
		       uint64_t *result, uint64_t off, uint64_t a, uint64_t b,
		       uint64_t wr_id)
{
	struct pw_sge sge = {
		.addr = (uint64_t)(uintptr_t)result,
		.length = 8,
		.lkey = in->mr->lkey,
	};
	struct pw_send_wr wr = {
		.wr_id = wr_id, .sg_list = &sge, .num_sge = 1,
		.opcode = opcode,
	};

	wr.wr.atomic.remote_addr = in->raddr + off;
	wr.wr.atomic.compare_add = a;
	wr.wr.atomic.swap = b;
	wr.wr.atomic.rkey = in->rkey;
	return post(in, &wr, RD_WINDOW);
}

/*
 * Four atomics per target, posted back to back: the QP executes them in
 * order, so every original value they return is known in advance.
 */
static int do_atomics(struct demo_init *in, struct demo_stats *st)
{
	size_t k = 0, natom = in->plan.natomics;
	unsigned int bad = 0;
	int err;

	for (size_t j = 0; j < natom * (DEMO_ATOMICS_PER_TARGET + 1); j++)
		in->results[j] = POISON;
	for (size_t i = 0; i < in->plan.n; i++) {
		const struct demo_op *op = &in->plan.ops[i];
		uint64_t *res = in->results + k * DEMO_ATOMICS_PER_TARGET;
		struct demo_atomic_vals v;

		if (op->kind != DEMO_OP_ATOMIC)
			continue;
		demo_atomic_vals(op, &v);
		err = post_atomic(in, PW_WR_ATOMIC_FETCH_AND_ADD, &res[0],
				  op->off, v.add, 0, i);
		if (!err)
			err = post_atomic(in, PW_WR_ATOMIC_CMP_AND_SWP, &res[1],
					  op->off, v.add, v.swap, i);
		if (!err)
			err = post_atomic(in, PW_WR_ATOMIC_CMP_AND_SWP, &res[2],
					  op->off, v.miss, v.junk, i);
		if (!err)
			err = post_atomic(in, PW_WR_ATOMIC_FETCH_AND_ADD, &res[3],
					  op->off, v.add2, 0, i);
		if (err)
			return err;
		st->atomics += DEMO_ATOMICS_PER_TARGET;
		st->bytes_atomic += 8 * DEMO_ATOMICS_PER_TARGET;
		k++;
	}
	err = drain(in);
	if (err)
		return err;
	/* Read every final value back: the last atomic must have landed. */
	k = 0;
	for (size_t i = 0; i < in->plan.n; i++) {
		const struct demo_op *op = &in->plan.ops[i];

		if (op->kind != DEMO_OP_ATOMIC)
			continue;
		err = post_rdma(in, PW_WR_RDMA_READ, &in->finals[k], 8, op->off,
				i, RD_WINDOW);
		if (err)
			return err;
		st->reads++;
		st->bytes_read += 8;
		k++;
	}
	err = drain(in);
	if (err)
		return err;

	k = 0;
	for (size_t i = 0; i < in->plan.n; i++) {
		const struct demo_op *op = &in->plan.ops[i];
		const uint64_t *res = in->results + k * DEMO_ATOMICS_PER_TARGET;
		static const char *const name[DEMO_ATOMICS_PER_TARGET] = {
			"FETCH_ADD", "CMP_SWAP (hit)", "CMP_SWAP (miss)",
			"FETCH_ADD",
		};
		struct demo_atomic_vals v;

		if (op->kind != DEMO_OP_ATOMIC)
			continue;
		demo_atomic_vals(op, &v);
		for (int a = 0; a < DEMO_ATOMICS_PER_TARGET; a++) {
			if (res[a] == v.expect_ret[a])
				continue;
			if (bad++ < 5)
				demo_err(WHO, "atomic target %zu (offset 0x%llx): %s returned 0x%016llx, expected 0x%016llx",
					 i, (unsigned long long)op->off, name[a],
					 (unsigned long long)res[a],
					 (unsigned long long)v.expect_ret[a]);
		}
		if (in->finals[k] != v.final && bad++ < 5)
			demo_err(WHO, "atomic target %zu (offset 0x%llx): reads back 0x%016llx, expected 0x%016llx",
				 i, (unsigned long long)op->off,
				 (unsigned long long)in->finals[k],
				 (unsigned long long)v.final);
		k++;
	}
	if (bad)
		demo_err(WHO, "%u atomic results wrong", bad);
	return bad ? -EIO : 0;
}

/*
 * Wait until the target has disconnected: the linger receive, which no
 * message is meant for, is flushed then. Only then is our QP destroyed:
 * the side that received the last message closes last, as an rdma_cm
 * client waits for DISCONNECTED, so the run ends in a known order.
 */
static void wait_target_close(struct demo_init *in)
{
	struct pw_wc wc;

	do {
		if (cq_wait(&in->cqw, &wc, 1, LINGER_MS) < 0) {
			demo_err(WHO, "warning: the target did not disconnect within %d s",
				 LINGER_MS / 1000);
			return;
		}
	} while (wc.wr_id != WRID_LINGER);
}

/* Send the seed; the target verifies and answers with its report. */
static int exchange_seed(struct demo_init *in, const struct demo_opts *o,
			 uint64_t seed, struct demo_report *rep)
{
	uint8_t *out = in->ctrl, *inmsg = in->ctrl + DEMO_CTRL_SLOT;
	struct pw_sge rsge = {
		.addr = (uint64_t)(uintptr_t)inmsg,
		.length = DEMO_CTRL_SLOT,
		.lkey = in->mr->lkey,
	};
	struct pw_recv_wr rwr = {
		.wr_id = WRID_REPORT, .sg_list = &rsge, .num_sge = 1,
	};
	struct pw_sge lsge = {
		.addr = (uint64_t)(uintptr_t)(in->ctrl + 2 * DEMO_CTRL_SLOT),
		.length = DEMO_CTRL_SLOT,
		.lkey = in->mr->lkey,
	};
	struct pw_recv_wr lwr = {
		.wr_id = WRID_LINGER, .sg_list = &lsge, .num_sge = 1,
	};
	struct pw_sge ssge = {
		.addr = (uint64_t)(uintptr_t)out,
		.length = DEMO_SEED_MSG_LEN,
		.lkey = in->mr->lkey,
	};
	struct pw_send_wr swr = {
		.wr_id = WRID_SEED, .sg_list = &ssge, .num_sge = 1,
		.opcode = PW_WR_SEND,
	};
	struct pw_recv_wr *rbad = NULL;
	bool sent = false, got = false;
	uint32_t got_len = 0;
	int err;

	rwr.next = &lwr;
	err = pw_post_recv(in->qp, &rwr, &rbad);
	if (err) {
		demo_err(WHO, "pw_post_recv: %s (%s)", strerror(-err),
			 pw_last_error());
		return err;
	}
	demo_encode_seed(out, seed, o->region_len, o->writes, o->atomics);
	err = post(in, &swr, 1);
	if (err)
		return err;
	while (!sent || !got) {
		struct pw_wc wc;
		/* The target verifies ~200 MB before it answers: be patient. */
		int n = cq_wait(&in->cqw, &wc, 1, DEMO_TIMEOUT_MS);

		if (n < 0) {
			demo_err(WHO, "no answer from the target: %s",
				 strerror(-n));
			return n;
		}
		if (wc.status != PW_WC_SUCCESS) {
			demo_err(WHO, "%s completed with %s",
				 wc.wr_id == WRID_SEED ? "seed SEND" : "report receive",
				 pw_wc_status_str(wc.status));
			return -EIO;
		}
		if (wc.wr_id == WRID_SEED) {
			sent = true;
			in->outstanding--;
		} else {
			got = true;
			got_len = wc.byte_len;
		}
	}
	if (demo_decode_report(inmsg, got_len, rep)) {
		demo_err(WHO, "malformed report from the target (%u bytes)",
			 got_len);
		return -EPROTO;
	}
	wait_target_close(in);
	return 0;
}

/**
 * demo_initiator_run() - do and check all the initiator's work
 * @st: filled with what was done, and the target's report
 *
 * Return: 0 when everything the initiator checked was right and the
 * target reported its memory verified.
 */
int demo_initiator_run(const struct demo_opts *o, uint16_t port,
		       struct demo_stats *st)
{
	struct demo_init in = { 0 };
	uint64_t t0;
	int rc = -1;

	memset(st, 0, sizeof(*st));
	if (init_setup(&in, o, o->seed) || init_connect(&in, port))
		goto out;
	if (in.rlen != o->region_len) {
		demo_err(WHO, "target region is %llu bytes, expected %llu",
			 (unsigned long long)in.rlen,
			 (unsigned long long)o->region_len);
		goto out;
	}
	st->region_len = in.rlen;

	t0 = tool_now_ns();
	if (do_writes(&in, st))
		goto out;
	st->t_write_ns = tool_now_ns() - t0;

	t0 = tool_now_ns();
	if (do_reads(&in, st))
		goto out;
	st->t_read_ns = tool_now_ns() - t0;

	t0 = tool_now_ns();
	if (do_atomics(&in, st))
		goto out;
	st->t_atomic_ns = tool_now_ns() - t0;

	if (exchange_seed(&in, o, o->seed, &st->target))
		goto out;
	rc = st->target.status ? -1 : 0;
	if (st->target.status)
		demo_err(WHO, "the target found %llu of %llu ranges wrong (first: range %llu)",
			 (unsigned long long)st->target.bad,
			 (unsigned long long)st->target.checked,
			 (unsigned long long)st->target.first_bad);
out:
	init_teardown(&in);
	return rc;
}
