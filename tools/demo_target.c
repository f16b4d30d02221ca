/* SPDX-License-Identifier: MIT */
/*
 * pagewire-demo's target: maps a huge region without reserving memory,
 * registers it on demand (no page touched), lets the initiator do its
 * work without calling in (the progress engine plays the NIC), then
 * regenerates the plan from the seed and checks its own memory directly.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cq_wait.h"
#include "demo.h"
#include "pattern.h"
#include "tool_util.h"

#define WHO "target"

/**
 * struct demo_target - resources of the target process
 * @region: the big ODP region, @region_len bytes
 * @ctrl:   a page for the seed message (in) and the report (out)
 */
struct demo_target {
	struct pw_context *ctx;
	struct pw_pd *pd;
	struct pw_listener *listener;
	struct cq_waiter cqw;
	struct pw_qp *qp;
	uint8_t *region;
	uint64_t region_len;
	struct pw_mr *mr;
	uint8_t *ctrl;
	struct pw_mr *ctrl_mr;
	uint64_t reg_ns;
};

static void lib_err(const char *call)
{
	demo_err(WHO, "%s failed: %s (%s)", call, strerror(errno),
		 pw_last_error());
}

static int target_setup(struct demo_target *t, const struct demo_opts *o)
{
	unsigned int access = PW_ACCESS_LOCAL_WRITE | PW_ACCESS_REMOTE_WRITE |
			      PW_ACCESS_REMOTE_READ | PW_ACCESS_REMOTE_ATOMIC |
			      PW_ACCESS_ON_DEMAND;
	uint64_t t0;

	t->ctx = pw_open(NULL);
	if (!t->ctx) {
		lib_err("pw_open");
		return -1;
	}
	t->pd = pw_alloc_pd(t->ctx);
	if (!t->pd) {
		lib_err("pw_alloc_pd");
		return -1;
	}
	/* Virtual only: NORESERVE, so 64 GiB costs no memory or swap. */
	t->region_len = o->region_len;
	t->region = mmap(NULL, t->region_len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (t->region == MAP_FAILED) {
		t->region = NULL;
		demo_err(WHO, "mmap of %llu bytes failed: %s",
			 (unsigned long long)t->region_len, strerror(errno));
		return -1;
	}
	t0 = tool_now_ns();
	t->mr = pw_reg_mr(t->pd, t->region, t->region_len, access);
	t->reg_ns = tool_now_ns() - t0;
	if (!t->mr) {
		lib_err("pw_reg_mr(ODP region)");
		return -1;
	}
	t->ctrl = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (t->ctrl == MAP_FAILED) {
		t->ctrl = NULL;
		demo_err(WHO, "mmap: %s", strerror(errno));
		return -1;
	}
	t->ctrl_mr = pw_reg_mr(t->pd, t->ctrl, 4096, PW_ACCESS_LOCAL_WRITE);
	if (!t->ctrl_mr) {
		lib_err("pw_reg_mr(ctrl)");
		return -1;
	}
	if (cq_waiter_init(&t->cqw, t->ctx, 16, false)) {
		lib_err("pw_create_cq");
		return -1;
	}
	t->listener = pw_listen(t->ctx, "127.0.0.1", 0);
	if (!t->listener) {
		lib_err("pw_listen");
		return -1;
	}
	return 0;
}

static void target_teardown(struct demo_target *t)
{
	if (t->qp && pw_destroy_qp(t->qp))
		demo_err(WHO, "pw_destroy_qp: %s", pw_last_error());
	if (t->cqw.cq)
		cq_waiter_destroy(&t->cqw);
	if (t->listener)
		pw_close_listener(t->listener);
	if (t->ctrl_mr)
		pw_dereg_mr(t->ctrl_mr);
	if (t->mr)
		pw_dereg_mr(t->mr);
	if (t->ctrl)
		munmap(t->ctrl, 4096);
	if (t->region)
		munmap(t->region, t->region_len);
	if (t->pd)
		pw_dealloc_pd(t->pd);
	if (t->ctx)
		pw_close(t->ctx);
}

/* Post the one receive the seed message lands in. */
static int post_seed_recv(struct demo_target *t)
{
	struct pw_sge sge = {
		.addr = (uint64_t)(uintptr_t)t->ctrl,
		.length = DEMO_CTRL_SLOT,
		.lkey = t->ctrl_mr->lkey,
	};
	struct pw_recv_wr wr = { .wr_id = 1, .sg_list = &sge, .num_sge = 1 };
	struct pw_recv_wr *bad = NULL;
	int err = pw_post_recv(t->qp, &wr, &bad);

	if (err)
		demo_err(WHO, "pw_post_recv: %s (%s)", strerror(-err),
			 pw_last_error());
	return err;
}

/* Wait for one successful completion of @wr_id. */
static int wait_wc(struct demo_target *t, uint64_t wr_id, int timeout_ms,
		   struct pw_wc *wc)
{
	int n = cq_wait(&t->cqw, wc, 1, timeout_ms);

	if (n < 0) {
		demo_err(WHO, "waiting for a completion failed: %s",
			 strerror(-n));
		return n;
	}
	if (wc->status != PW_WC_SUCCESS || wc->wr_id != wr_id) {
		demo_err(WHO, "completion wr_id %llu: %s",
			 (unsigned long long)wc->wr_id,
			 pw_wc_status_str(wc->status));
		return -EIO;
	}
	return 0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/*
 * Check one range of the plan in our own memory: its content, and that
 * the guard bytes on both sides are still zero (nothing spilled over).
 */
static bool verify_op(const struct demo_target *t, const struct demo_op *op,
		      size_t idx, bool report)
{
	const uint8_t *p = t->region + op->off;

	if (!all_zero(p - DEMO_GUARD, DEMO_GUARD) ||
	    !all_zero(p + op->len, DEMO_GUARD)) {
		if (report)
			demo_err(WHO, "range %zu (offset 0x%llx, %u bytes): guard bytes modified",
				 idx, (unsigned long long)op->off, op->len);
		return false;
	}
	if (op->kind == DEMO_OP_WRITE) {
		long long bad = pattern_check(p, op->len, op->seed, 0);

		if (bad >= 0 && report)
			demo_err(WHO, "range %zu (offset 0x%llx, %u bytes): byte %lld is 0x%02x, expected 0x%02x",
				 idx, (unsigned long long)op->off, op->len, bad,
				 p[bad], pattern_byte(op->seed, (uint64_t)bad));
		return bad < 0;
	}

	struct demo_atomic_vals v;
	uint64_t now;

	demo_atomic_vals(op, &v);
	memcpy(&now, p, sizeof(now));
	if (now != v.final && report)
		demo_err(WHO, "atomic target %zu (offset 0x%llx): holds 0x%016llx, expected 0x%016llx",
			 idx, (unsigned long long)op->off,
			 (unsigned long long)now, (unsigned long long)v.final);
	return now == v.final;
}

/* Regenerate the plan from the seed and check every range. */
static void target_verify(const struct demo_target *t, const uint8_t *msg,
			  uint32_t len, struct demo_report *r)
{
	uint32_t writes, atomics;
	uint64_t seed, region_len;
	struct demo_plan plan;

	r->status = 1;
	if (demo_decode_seed(msg, len, &seed, &region_len, &writes, &atomics)) {
		demo_err(WHO, "malformed seed message (%u bytes)", len);
		return;
	}
	if (region_len != t->region_len) {
		demo_err(WHO, "initiator planned for %llu bytes, region has %llu",
			 (unsigned long long)region_len,
			 (unsigned long long)t->region_len);
		return;
	}
	if (demo_plan_build(seed, region_len, writes, atomics, &plan)) {
		demo_err(WHO, "cannot rebuild the plan");
		return;
	}
	for (size_t i = 0; i < plan.n; i++) {
		r->checked++;
		if (!verify_op(t, &plan.ops[i], i, r->bad < 5)) {
			if (!r->bad)
				r->first_bad = i;
			r->bad++;
		}
	}
	r->status = r->bad ? 1 : 0;
	demo_plan_free(&plan);
}

static int target_send_report(struct demo_target *t, const struct demo_report *r)
{
	uint8_t *out = t->ctrl + DEMO_CTRL_SLOT;
	struct pw_sge sge = {
		.addr = (uint64_t)(uintptr_t)out,
		.length = DEMO_REPORT_MSG_LEN,
		.lkey = t->ctrl_mr->lkey,
	};
	struct pw_send_wr wr = {
		.wr_id = 2, .sg_list = &sge, .num_sge = 1,
		.opcode = PW_WR_SEND, .send_flags = PW_SEND_SIGNALED,
	};
	struct pw_send_wr *bad = NULL;
	struct pw_wc wc;
	int err;

	demo_encode_report(out, r);
	err = pw_post_send(t->qp, &wr, &bad);
	if (err) {
		demo_err(WHO, "pw_post_send(report): %s (%s)", strerror(-err),
			 pw_last_error());
		return err;
	}
	/* Completed = placed at the initiator; only then may we go away. */
	return wait_wc(t, 2, DEMO_TIMEOUT_MS, &wc);
}

/**
 * demo_target_main() - the target process
 * @port_fd: pipe to the initiator: the listening port, 2 bytes LE
 *
 * Return: exit status, 0 when the region verified.
 */
int demo_target_main(const struct demo_opts *o, int port_fd)
{
	struct demo_target t = { 0 };
	struct pw_qp_init_attr attr;
	struct pw_conn_param param;
	struct demo_report rep = { .status = 1 };
	uint8_t pdata[DEMO_PDATA_LEN], b[2];
	struct pw_wc wc;
	int rc = 1;

	if (target_setup(&t, o))
		goto out;
	tool_put16(b, pw_listener_port(t.listener));
	if (write(port_fd, b, sizeof(b)) != (ssize_t)sizeof(b)) {
		demo_err(WHO, "cannot tell the initiator our port: %s",
			 strerror(errno));
		goto out;
	}
	close(port_fd);
	port_fd = -1;

	demo_encode_pdata(pdata, (uint64_t)(uintptr_t)t.region, t.region_len,
			  t.mr->rkey);
	memset(&attr, 0, sizeof(attr));
	attr.send_cq = t.cqw.cq;
	attr.recv_cq = t.cqw.cq;
	memset(&param, 0, sizeof(param));
	param.private_data = pdata;
	param.private_data_len = sizeof(pdata);
	param.timeout_ms = DEMO_TIMEOUT_MS;
	t.qp = pw_accept(t.listener, t.pd, &attr, &param);
	if (!t.qp) {
		lib_err("pw_accept");
		goto out;
	}
	if (post_seed_recv(&t))
		goto out;
	/*
	 * The initiator's writes, reads and atomics need nothing from us;
	 * the only thing we wait for is the seed at the very end. No time
	 * limit: if the initiator dies, the receive is flushed.
	 */
	if (wait_wc(&t, 1, -1, &wc))
		goto out;
	rep.rss = tool_rss_bytes();
	rep.reg_ns = t.reg_ns;
	target_verify(&t, t.ctrl, wc.byte_len, &rep);
	if (target_send_report(&t, &rep))
		goto out;
	rc = rep.status ? 1 : 0;
out:
	if (port_fd >= 0)
		close(port_fd);
	target_teardown(&t);
	return rc;
}
