/* SPDX-License-Identifier: MIT */
/*
 * The measuring side of pagewire-perf.
 *
 * Bandwidth tests (write_bw, read_bw, send_bw, tcp_bw): one thread drives
 * all -q QPs (or TCP connections), as perftest does: round-robin over the
 * QPs keeping each one's window full, waiting for completions of any QP
 * on one completion channel (or busy-polling all CQs). With --baseline
 * every size is measured twice in a row by that thread, first over the
 * TCP connections, then over the QPs, so that slow drifts of a shared
 * machine hit both alike.
 *
 * Latency tests: one thread per QP; all threads start every size
 * together (a barrier), so -q N measures N QPs running concurrently.
 * hol runs that way too: thread 0 drives QP A, thread 1 QP B, and they
 * meet at the run's barrier at every phase boundary; then the same
 * phases over plain TCP sockets give the machine's own head-of-line
 * factor (perf_tcp_hol.c).
 * With --baseline, thread i owns QP i and TCP connection i and measures
 * every size over TCP, then over pagewire, each phase on a barrier.
 * perf_report.c aggregates the QPs.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pattern.h"
#include "perf.h"
#include "tool_util.h"

static double ns_to_us(uint64_t ns)
{
	return (double)ns / 1000.0;
}

/* Post one WR, turning a library refusal into a reported error. */
static int post_one(struct perf_ep *ep, struct pw_send_wr *wr)
{
	struct pw_send_wr *bad = NULL;
	int err = pw_post_send(ep->qp, wr, &bad);

	if (err)
		perf_fail("QP %u: pw_post_send(%s, wr_id %llu) failed: %s (%s)",
			  ep->idx, pw_wr_opcode_str(wr->opcode),
			  (unsigned long long)wr->wr_id, strerror(-err),
			  pw_last_error());
	return err;
}

static int check_pattern(const struct perf_ep *ep, const uint8_t *buf,
			 uint64_t len, uint64_t seed, const char *what)
{
	long long bad = pattern_check(buf, (size_t)len, seed, 0);

	if (bad < 0)
		return 0;
	perf_fail("QP %u: data mismatch in %s at byte %lld of %llu: got 0x%02x, expected 0x%02x",
		  ep->idx, what, bad, (unsigned long long)len, buf[bad],
		  pattern_byte(seed, (uint64_t)bad));
	return -EIO;
}

/* One QP's part of a bw step of the single bw thread. */
struct bw_qp {
	struct pw_send_wr wr;	/* template: opcode, remote address */
	struct pw_sge sge;
	uint64_t posted;
	uint64_t completed;
};

/*
 * Post as many WRs on @ep as its window has room for, as one chain (one
 * pw_post_send call). Every cq_mod-th WR and the last one are signaled.
 */
static int bw_post_window(struct perf_ep *ep, struct bw_qp *q,
			  struct pw_send_wr *chain, struct pw_sge *sges,
			  uint64_t iters, unsigned int window,
			  unsigned int cq_mod, unsigned int inline_flag,
			  uint64_t pair_block)
{
	uint64_t room = window - (q->posted - q->completed);
	uint64_t left = iters - q->posted;

	/*
	 * --vs-pinned: a block starts only once the previous one completed,
	 * so that each block is timed alone (perf_report.c).
	 */
	if (pair_block) {
		uint64_t end = (q->posted / pair_block + 1) * pair_block;

		if (q->posted % pair_block == 0 && q->completed < q->posted)
			return 0;
		if (end - q->posted < left)
			left = end - q->posted;
	}
	unsigned int n = (unsigned int)(room < left ? room : left);
	struct pw_send_wr *bad = NULL;
	int err;

	if (!n)
		return 0;
	for (unsigned int j = 0; j < n; j++) {
		uint64_t id = q->posted + j;
		bool sig = (id + 1) % cq_mod == 0 || id + 1 == iters ||
			   (pair_block && (id + 1) % pair_block == 0);

		chain[j] = q->wr;
		chain[j].wr_id = id;
		if (pair_block && ep->run->o->first_touch) {
			/* --first-touch: a fresh slot, or the resident one */
			chain[j].wr.rdma.remote_addr = ep->peer.rx_addr +
				perf_first_touch_off(id, q->sge.length, pair_block);
		} else if (pair_block && ep->run->o->swapped) {
			/* --swapped: slot m of this block's region, rotated source */
			uint64_t b = id / pair_block, m = id % pair_block;
			uint64_t size = q->sge.length;

			sges[j] = q->sge;
			sges[j].addr = (uint64_t)(uintptr_t)ep->data +
				       perf_swapped_src_slot(m, b, pair_block) * size;
			chain[j].sg_list = &sges[j];
			chain[j].wr.rdma.remote_addr = ep->peer.rx_addr +
				perf_swapped_region_off((unsigned int)(b & 1), size,
							pair_block) + m * size;
		} else if (pair_block) {
			/* --vs-pinned: this message's MR kind, both ends */
			unsigned int kind = perf_pair_kind(id, pair_block);

			sges[j] = q->sge;
			sges[j].lkey = perf_lkey(ep, kind);
			chain[j].sg_list = &sges[j];
			chain[j].wr.rdma.rkey = perf_peer_rkey(ep, kind);
		}
		chain[j].send_flags = inline_flag | (sig ? PW_SEND_SIGNALED : 0);
		chain[j].next = j + 1 < n ? &chain[j + 1] : NULL;
	}
	err = pw_post_send(ep->qp, chain, &bad);
	if (err) {
		perf_fail("QP %u: pw_post_send(%s, %u WRs from wr_id %llu) failed: %s (%s)",
			  ep->idx, pw_wr_opcode_str(q->wr.opcode), n,
			  (unsigned long long)q->posted, strerror(-err),
			  pw_last_error());
		return err;
	}
	q->posted += n;
	return 0;
}

/*
 * --swapped: a region request about the region of @kind: verify that its
 * @slots first slots hold what block @vb wrote there (none: @slots 0),
 * and/or page it out.
 */
static int swapped_request(struct perf_ep *ep, uint64_t size, uint64_t block,
			   unsigned int kind, bool pageout, uint64_t vb,
			   uint64_t slots)
{
	struct perf_region_req rq = {
		.off = perf_swapped_region_off(kind, size, block),
		.len = block * size,
		.size = size,
		.flags = (pageout ? PERF_REGION_PAGEOUT : 0) |
			 (slots ? PERF_REGION_VERIFY : 0),
		.rot = vb / 2,		/* perf_swapped_src_slot() */
		.mod = block + 1,
		.slots = slots,
	};
	struct perf_region_rep rp;

	if (!rq.flags)
		return 0;
	return perf_ctrl_region(ep, &rq, &rp);
}

/*
 * --swapped, at the start of block @b (nothing in flight): before a
 * swapped block (kind 0), the server checks what the previous swapped
 * block (b - 2) wrote and pages the region out; before a resident one
 * it checks the previous resident block. Every block before the last is
 * whole.
 */
static int swapped_boundary(struct perf_ep *ep, uint64_t size, uint64_t block,
			    uint64_t b)
{
	unsigned int kind = (unsigned int)(b & 1);

	return swapped_request(ep, size, block, kind, kind == 0, b >= 2 ? b - 2 : 0,
			       b >= 2 ? block : 0);
}

/* --swapped, after the run: check the last block of each kind. */
static int swapped_final(struct perf_ep *ep, uint64_t size, uint64_t block,
			 uint64_t iters)
{
	uint64_t last = (iters - 1) / block;
	int err;

	err = swapped_request(ep, size, block, (unsigned int)(last & 1), false,
			      last, iters - last * block);
	if (!err && last >= 1)
		err = swapped_request(ep, size, block,
				      (unsigned int)((last - 1) & 1), false,
				      last - 1, block);
	return err;
}

/**
 * client_bw_all() - WRITE / READ / SEND bandwidth for one size, all QPs
 *
 * One thread drives every QP, as perftest does: round-robin over the QPs
 * (starting one further every round), each QP's free window is posted
 * as one chain; then the thread waits for completions on any QP
 * (perf_wait_any(): sleeping on the run's one channel, or busy-polling)
 * and consumes all that arrived. Every cq_mod-th WR of a QP and its last
 * are signaled, and since a QP's WRs complete in order, the completion
 * of WR k accounts for every WR of that QP up to k. Each completion is
 * recorded (time, messages of its QP done), which perf_report.c turns
 * into the aggregate, peak and per-QP figures. All QPs start at the
 * same instant (t_start).
 *
 * --swapped (one QP): at the start of every block the server is asked,
 * synchronously, to check the region the block will write and (swapped
 * blocks) to page it out; a record with an unchanged message count marks
 * where the block's own time starts (perf_report.c).
 */
static int client_bw_all(struct perf_run *run, unsigned int s)
{
	uint64_t size = run->plan.size[s], iters = run->plan.iters[s];
	unsigned int window = perf_window(run);
	unsigned int cq_mod = perf_cq_mod(run);
	unsigned int qps = run->qps, left = qps, rr = 0;
	struct pw_send_wr *chain;
	struct pw_sge *sges;
	bool swapped = run->o->swapped;
	uint64_t pair_block = run->o->vs_pinned || run->o->first_touch ||
			      swapped ? perf_pair_bw_block(run, s) : 0;
	uint64_t next_block = 0;
	struct bw_qp *q;
	bool active[PERF_MAX_QPS];
	uint64_t t0;
	int err = 0;

	q = calloc(qps, sizeof(*q));
	chain = calloc(window, sizeof(*chain));
	sges = calloc(window, sizeof(*sges));
	if (!q || !chain || !sges) {
		err = -ENOMEM;
		goto out;
	}
	for (unsigned int i = 0; i < qps; i++) {
		struct perf_ep *ep = &run->eps[i];
		struct perf_step *st = &ep->steps[s];
		struct pw_send_wr *wr = &q[i].wr;

		/*
		 * one per signaled WR: every cq_mod-th, the last, block ends
		 * (at most 17), --swapped's block starts (as many)
		 */
		st->recs = calloc(iters / cq_mod + 2 + (pair_block ? 2 * 17 : 0),
				  sizeof(*st->recs));
		if (!st->recs) {
			err = -ENOMEM;
			goto out;
		}
		wr->sg_list = &q[i].sge;
		wr->num_sge = 1;
		q[i].sge.length = (uint32_t)size;
		q[i].sge.lkey = ep->lkey;
		switch (run->o->test) {
		case PERF_WRITE_BW:
			wr->opcode = PW_WR_RDMA_WRITE;
			q[i].sge.addr = (uint64_t)(uintptr_t)ep->data;
			wr->wr.rdma.remote_addr = ep->peer.rx_addr;
			wr->wr.rdma.rkey = ep->peer.rkey;
			break;
		case PERF_READ_BW:
			wr->opcode = PW_WR_RDMA_READ;
			/* Stale data from a previous size must not pass. */
			memset(ep->rx, 0, size);
			q[i].sge.addr = (uint64_t)(uintptr_t)ep->rx;
			wr->wr.rdma.remote_addr = ep->peer.data_addr;
			wr->wr.rdma.rkey = ep->peer.rkey;
			break;
		default:
			wr->opcode = PW_WR_SEND;
			q[i].sge.addr = (uint64_t)(uintptr_t)ep->data;
			break;
		}
		active[i] = true;
	}
	/* The same for every QP: the QPs share one max_inline_data. */
	unsigned int inline_flag = (q[0].wr.opcode != PW_WR_RDMA_READ &&
				    size <= run->eps[0].attr.cap.max_inline_data) ?
				   PW_SEND_INLINE : 0;

	t0 = tool_now_ns();
	for (unsigned int i = 0; i < qps; i++)
		run->eps[i].steps[s].t_start = t0;
	while (left) {
		if (swapped && q[0].posted == q[0].completed &&
		    q[0].posted < iters && q[0].posted % pair_block == 0 &&
		    q[0].posted / pair_block == next_block) {
			struct perf_step *st = &run->eps[0].steps[s];

			err = swapped_boundary(&run->eps[0], size, pair_block,
					       next_block);
			if (err)
				goto out;
			next_block++;
			st->recs[st->nrecs].t_ns = tool_now_ns();
			st->recs[st->nrecs].msgs = q[0].completed;
			st->nrecs++;
		}
		for (unsigned int j = 0; j < qps; j++) {
			unsigned int i = (rr + j) % qps;

			if (!active[i])
				continue;
			err = bw_post_window(&run->eps[i], &q[i], chain, sges,
					     iters, window, cq_mod, inline_flag,
					     pair_block);
			if (err)
				goto out;
		}
		rr = (rr + 1) % qps;
		err = perf_wait_any(run, active, PERF_STALL_TIMEOUT_MS);
		if (err < 0)
			goto out;
		err = 0;
		for (unsigned int i = 0; i < qps; i++) {
			struct perf_ep *ep = &run->eps[i];
			struct perf_step *st = &ep->steps[s];
			uint64_t now;

			if (!active[i] || !ep->wcq_len)
				continue;
			now = tool_now_ns();
			while (ep->wcq_len) {
				struct pw_wc *wc = &ep->wcq[ep->wcq_head++];

				ep->wcq_len--;
				if (wc->status != PW_WC_SUCCESS) {
					perf_print_wc_error(ep, wc,
							    pw_wr_opcode_str(q[i].wr.opcode));
					err = -EIO;
					goto out;
				}
				if (wc->wr_id >= q[i].posted ||
				    wc->wr_id < q[i].completed) {
					perf_fail("QP %u: completion out of order: wr_id %llu after %llu done",
						  i, (unsigned long long)wc->wr_id,
						  (unsigned long long)q[i].completed);
					err = -EPROTO;
					goto out;
				}
				q[i].completed = wc->wr_id + 1;
				st->recs[st->nrecs].t_ns = now;
				st->recs[st->nrecs].msgs = q[i].completed;
				st->nrecs++;
			}
			if (q[i].completed == iters) {
				active[i] = false;
				left--;
				st->t_end = now;
				st->msgs = iters;
			}
		}
	}
	if (swapped)
		err = swapped_final(&run->eps[0], size, pair_block, iters);
	if (run->o->test == PERF_READ_BW) {
		for (unsigned int i = 0; i < qps && !err; i++)
			err = check_pattern(&run->eps[i], run->eps[i].rx, size,
					    run->eps[i].peer.seed,
					    "the last RDMA READ result");
	}
out:
	free(sges);
	free(chain);
	free(q);
	return err;
}

/*
 * Ping-pong latency (write_lat with WRITE_WITH_IMM, send_lat with SEND):
 * post a receive for the pong, send the ping, wait for the pong. The
 * receive completion wakes a blocked waiter, so the blocking mode needs
 * no polling of memory. Half the round trip is reported, as perftest.
 */
static int client_pingpong_step(struct perf_ep *ep, unsigned int s)
{
	struct perf_run *run = ep->run;
	struct perf_step *st = &ep->steps[s];
	uint64_t size = run->plan.size[s], iters = run->plan.iters[s];
	bool write = run->o->test == PERF_WRITE_LAT;
	struct pw_send_wr wr;
	struct pw_sge sge;
	struct pw_wc wc;
	int err;

	st->lat_us = calloc(iters, sizeof(*st->lat_us));
	if (!st->lat_us)
		return -ENOMEM;
	/* The pong carries our own pattern back; clear what a size left. */
	memset(ep->rx, 0, size);

	memset(&wr, 0, sizeof(wr));
	sge.addr = (uint64_t)(uintptr_t)ep->data;
	sge.length = (uint32_t)size;
	sge.lkey = ep->lkey;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	if (write) {
		wr.opcode = PW_WR_RDMA_WRITE_WITH_IMM;
		wr.wr.rdma.remote_addr = ep->peer.rx_addr;
		wr.wr.rdma.rkey = ep->peer.rkey;
	} else {
		wr.opcode = PW_WR_SEND;
	}
	unsigned int inline_flag = size <= ep->attr.cap.max_inline_data ?
				   PW_SEND_INLINE : 0;

	st->t_start = tool_now_ns();
	for (uint64_t i = 0; i < iters; i++) {
		err = perf_post_recv(ep);
		if (err)
			return err;
		wr.imm_data = (uint32_t)i;
		wr.send_flags = inline_flag;
		if (run->o->vs_pinned) {
			/* --vs-pinned: the server picks the same kind from imm */
			unsigned int kind = perf_pair_kind(i, PERF_PAIR_LAT_BLOCK);

			sge.lkey = perf_lkey(ep, kind);
			wr.wr.rdma.rkey = perf_peer_rkey(ep, kind);
		}

		uint64_t t0 = tool_now_ns();

		/* Only the last ping needs a completion (see PERF_LAT_SIGNAL). */
		err = perf_post_tracked(ep, &wr, i + 1 == iters);
		if (err)
			return err;
		err = perf_wait_recv(ep, &wc, PERF_STALL_TIMEOUT_MS);
		if (err)
			return err;

		uint64_t t1 = tool_now_ns();

		st->lat_us[i] = ns_to_us(t1 - t0) / 2.0;
		if (write && (wc.opcode != PW_WC_RECV_RDMA_WITH_IMM ||
			      !(wc.wc_flags & PW_WC_WITH_IMM) ||
			      wc.imm_data != (uint32_t)i)) {
			perf_fail("QP %u: pong %llu: opcode %d, flags 0x%x, imm %u; expected RECV_RDMA_WITH_IMM with imm %llu",
				  ep->idx, (unsigned long long)i, (int)wc.opcode,
				  wc.wc_flags, wc.imm_data, (unsigned long long)i);
			return -EPROTO;
		}
		if (!write && wc.opcode != PW_WC_RECV) {
			perf_fail("QP %u: pong %llu: opcode %d, expected RECV",
				  ep->idx, (unsigned long long)i, (int)wc.opcode);
			return -EPROTO;
		}
		if (!write && wc.byte_len != size) {
			perf_fail("QP %u: pong %llu has %u bytes, expected %llu",
				  ep->idx, (unsigned long long)i, wc.byte_len,
				  (unsigned long long)size);
			return -EPROTO;
		}
	}
	st->nlat = iters;
	st->msgs = iters;
	st->t_end = tool_now_ns();
	err = perf_drain_sends(ep, PERF_STALL_TIMEOUT_MS);
	if (err)
		return err;
	return check_pattern(ep, ep->rx, size, ep->seed, "the last pong");
}

/* Wait for the completion of the single WR @wr_id in flight. */
static int wait_one(struct perf_ep *ep, uint64_t wr_id, const char *what)
{
	struct pw_wc wc;
	int err = perf_next_wc(ep, &wc, PERF_STALL_TIMEOUT_MS);

	if (err)
		return err;
	if (wc.status != PW_WC_SUCCESS) {
		perf_print_wc_error(ep, &wc, what);
		return -EIO;
	}
	if (wc.wr_id != wr_id) {
		perf_fail("QP %u: %s: completion for wr_id %llu, expected %llu",
			  ep->idx, what, (unsigned long long)wc.wr_id,
			  (unsigned long long)wr_id);
		return -EPROTO;
	}
	return 0;
}

/* read_lat: one RDMA READ at a time, full operation time. */
static int client_read_lat_step(struct perf_ep *ep, unsigned int s)
{
	struct perf_run *run = ep->run;
	struct perf_step *st = &ep->steps[s];
	uint64_t size = run->plan.size[s], iters = run->plan.iters[s];
	struct pw_send_wr wr;
	struct pw_sge sge;
	int err;

	st->lat_us = calloc(iters, sizeof(*st->lat_us));
	if (!st->lat_us)
		return -ENOMEM;
	memset(ep->rx, 0, size);
	memset(&wr, 0, sizeof(wr));
	sge.addr = (uint64_t)(uintptr_t)ep->rx;
	sge.length = (uint32_t)size;
	sge.lkey = ep->lkey;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.opcode = PW_WR_RDMA_READ;
	wr.send_flags = PW_SEND_SIGNALED;
	wr.wr.rdma.remote_addr = ep->peer.data_addr;
	wr.wr.rdma.rkey = ep->peer.rkey;

	st->t_start = tool_now_ns();
	for (uint64_t i = 0; i < iters; i++) {
		uint64_t t0 = tool_now_ns();

		wr.wr_id = i;
		err = post_one(ep, &wr);
		if (err)
			return err;
		err = wait_one(ep, i, "RDMA_READ");
		if (err)
			return err;
		st->lat_us[i] = ns_to_us(tool_now_ns() - t0);
	}
	st->t_end = tool_now_ns();
	st->nlat = iters;
	st->msgs = iters;
	return check_pattern(ep, ep->rx, size, ep->peer.seed,
			     "the last RDMA READ result");
}

/*
 * fault_lat: 8-byte signalled WRITEs, one at a time, alternately to a
 * resident page of the target (written once before the run, so valid in
 * its page table) and to a page nobody has touched. Both take the same
 * path except for the responder's fault, so the difference of the two
 * distributions, measured in the same run, is what a fault adds.
 */
static int client_fault_lat_step(struct perf_ep *ep, unsigned int s)
{
	struct perf_run *run = ep->run;
	struct perf_step *st = &ep->steps[s];
	uint64_t iters = run->plan.iters[s], base = 0;
	struct pw_send_wr wr;
	struct pw_sge sge;
	int err;

	for (unsigned int k = 0; k < s; k++)
		base += run->plan.iters[k];
	st->lat_us = calloc(iters, sizeof(*st->lat_us));
	st->lat2_us = calloc(iters, sizeof(*st->lat2_us));
	if (!st->lat_us || !st->lat2_us)
		return -ENOMEM;
	memset(&wr, 0, sizeof(wr));
	sge.addr = (uint64_t)(uintptr_t)ep->data;
	sge.length = 8;
	sge.lkey = ep->lkey;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.opcode = PW_WR_RDMA_WRITE;
	wr.send_flags = PW_SEND_SIGNALED | PW_SEND_INLINE;
	wr.wr.rdma.rkey = ep->peer.rkey;

	/* the resident pages: written (faulted in) before the clock runs */
	for (uint64_t i = 0; s == 0 && i < PERF_FAULT_RESIDENT; i++) {
		wr.wr_id = i;
		wr.wr.rdma.remote_addr = ep->peer.rx_addr + perf_fault_resident_off(i);
		err = post_one(ep, &wr);
		if (!err)
			err = wait_one(ep, i, "RDMA_WRITE (resident page)");
		if (err)
			return err;
	}
	st->t_start = tool_now_ns();
	for (uint64_t i = 0; i < iters; i++) {
		uint64_t t0;

		wr.wr_id = i;
		wr.wr.rdma.remote_addr = ep->peer.rx_addr + perf_fault_resident_off(i);
		t0 = tool_now_ns();
		err = post_one(ep, &wr);
		if (!err)
			err = wait_one(ep, i, "RDMA_WRITE (resident page)");
		if (err)
			return err;
		st->lat2_us[i] = ns_to_us(tool_now_ns() - t0);

		wr.wr.rdma.remote_addr = ep->peer.rx_addr +
					 perf_fault_fresh_off(base + i);
		t0 = tool_now_ns();
		err = post_one(ep, &wr);
		if (!err)
			err = wait_one(ep, i, "RDMA_WRITE (fresh page)");
		if (err)
			return err;
		st->lat_us[i] = ns_to_us(tool_now_ns() - t0);
	}
	st->t_end = tool_now_ns();
	st->nlat = iters;
	st->nlat2 = iters;
	st->msgs = 2 * iters;
	return 0;
}

/* Append @v to the growing sample array *@a (@n used, @cap allocated). */
static int push_sample(double **a, size_t *n, size_t *cap, double v)
{
	if (*n == *cap) {
		size_t c = *cap ? 2 * *cap : 1024;
		double *p = realloc(*a, c * sizeof(*p));

		if (!p)
			return -ENOMEM;
		*a = p;
		*cap = c;
	}
	(*a)[(*n)++] = v;
	return 0;
}

/*
 * hol, QP A: a region request about A's region (the first
 * PERF_HOL_A_SLOTS slots of the rx area): check what A block @done - 1
 * wrote there (none when @done is 0), and page it out unless @final.
 * B leaves out its samples that overlap one (run->hol_pageout is odd
 * meanwhile).
 */
static int hol_a_region(struct perf_ep *ep, uint64_t size, uint64_t done,
			bool final)
{
	struct perf_run *run = ep->run;
	struct perf_region_req rq = {
		.off = 0,
		.len = PERF_HOL_A_SLOTS * size,
		.size = size,
		.flags = (final ? 0 : PERF_REGION_PAGEOUT) |
			 (done ? PERF_REGION_VERIFY : 0),
		.rot = done ? done - 1 : 0,
		.mod = PERF_HOL_A_SLOTS + 1,
		.slots = done ? PERF_HOL_A_SLOTS : 0,
	};
	struct perf_region_rep rp;
	int err;

	if (!rq.flags)
		return 0;
	atomic_fetch_add(&run->hol_pageout, 1);
	err = perf_ctrl_region(ep, &rq, &rp);
	atomic_fetch_add(&run->hol_pageout, 1);
	return err;
}

/*
 * hol, QP A: block @b, one pass over A's region: PERF_HOL_A_SLOTS
 * signaled WRITEs of @size, @window in flight; message j goes to slot j
 * from source slot (j + b) % (PERF_HOL_A_SLOTS + 1), so that every block
 * writes data the one before did not. @wrid: A's next wr_id.
 */
static int hol_a_block(struct perf_ep *ep, uint64_t b, uint64_t size,
		       unsigned int window, uint64_t *wrid)
{
	uint64_t posted = 0, done = 0, first = *wrid;
	struct pw_send_wr wr;
	struct pw_sge sge;
	struct pw_wc wc;
	int err;

	memset(&wr, 0, sizeof(wr));
	sge.length = (uint32_t)size;
	sge.lkey = ep->lkey;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.opcode = PW_WR_RDMA_WRITE;
	wr.send_flags = PW_SEND_SIGNALED |
			(size <= ep->attr.cap.max_inline_data ? PW_SEND_INLINE : 0);
	wr.wr.rdma.rkey = ep->peer.rkey;
	while (done < PERF_HOL_A_SLOTS) {
		while (posted < PERF_HOL_A_SLOTS && posted - done < window) {
			sge.addr = (uint64_t)(uintptr_t)ep->data +
				   ((posted + b) % (PERF_HOL_A_SLOTS + 1)) * size;
			wr.wr.rdma.remote_addr = ep->peer.rx_addr + posted * size;
			wr.wr_id = first + posted;
			err = post_one(ep, &wr);
			if (err)
				return err;
			posted++;
		}
		err = perf_next_wc(ep, &wc, PERF_STALL_TIMEOUT_MS);
		if (err)
			return err;
		if (wc.status != PW_WC_SUCCESS) {
			perf_print_wc_error(ep, &wc, "RDMA_WRITE (A)");
			return -EIO;
		}
		if (wc.wr_id != first + done) {
			perf_fail("QP %u: completion for wr_id %llu, expected %llu",
				  ep->idx, (unsigned long long)wc.wr_id,
				  (unsigned long long)(first + done));
			return -EPROTO;
		}
		done++;
	}
	*wrid = first + PERF_HOL_A_SLOTS;
	return 0;
}

/*
 * hol, QP A (thread 0). Every phase both threads meet at the run's
 * barrier three times: phase start, "A ready", phase end; whatever goes
 * wrong, each thread keeps meeting them (no one waits alone). In a phase
 * with A: page the region out (before B starts), then pass over it block
 * after block, paging out between blocks, until B has its samples for
 * the phase (run->hol_stop is set when A stops).
 */
static int client_hol_a_step(struct perf_ep *ep, unsigned int s)
{
	struct perf_run *run = ep->run;
	struct perf_step *st = &ep->steps[s];
	uint64_t size = run->plan.size[s];
	uint64_t per = (run->plan.iters[s] + PERF_HOL_PHASES - 1) / PERF_HOL_PHASES;
	unsigned int window = run->tx_depth < PERF_HOL_WINDOW ? run->tx_depth :
			      PERF_HOL_WINDOW;
	uint64_t blocks = 0, wrid = 0;
	int err = 0;

	st->t_start = tool_now_ns();
	for (unsigned int p = 0; p < 2 * PERF_HOL_PHASES; p++) {
		bool with = p & 1;

		pthread_barrier_wait(&run->barrier);		/* phase start */
		if (with && !err && !atomic_load(&run->abort)) {
			atomic_store(&run->hol_stop, 0);
			atomic_store(&run->hol_b_count, 0);
			err = hol_a_region(ep, size, blocks, false);
			if (err)
				atomic_store(&run->abort, 1);
		}
		pthread_barrier_wait(&run->barrier);		/* A ready */
		if (with && !err && !atomic_load(&run->abort)) {
			for (;;) {
				uint64_t t0 = tool_now_ns();

				err = hol_a_block(ep, blocks, size, window, &wrid);
				if (err)
					break;
				st->busy_ns += tool_now_ns() - t0;
				blocks++;
				/* B has its share of samples: stop here */
				if (atomic_load(&run->hol_b_count) >= per ||
				    atomic_load(&run->abort))
					break;
				err = hol_a_region(ep, size, blocks, false);
				if (err)
					break;
			}
			if (err)
				atomic_store(&run->abort, 1);
		}
		if (with)
			atomic_store(&run->hol_stop, 1);
		pthread_barrier_wait(&run->barrier);		/* phase end */
	}
	/* the last block's data, checked (not paged out) */
	if (!err && !atomic_load(&run->abort))
		err = hol_a_region(ep, size, blocks, true);
	st->t_end = tool_now_ns();
	st->msgs = blocks * PERF_HOL_A_SLOTS;
	return err;
}

/*
 * hol, QP B (thread 1): 8-byte signaled WRITEs one at a time, each timed
 * to its completion. Alone phases take their share of -n samples
 * (@lat2_us); a phase with A samples (@lat_us) until A stops, which it
 * does at the end of a pass once B has its share (run->hol_b_count).
 * Samples that overlap one of A's region requests go to @lat3_us.
 */
static int client_hol_b_step(struct perf_ep *ep, unsigned int s)
{
	struct perf_run *run = ep->run;
	struct perf_step *st = &ep->steps[s];
	uint64_t per = (run->plan.iters[s] + PERF_HOL_PHASES - 1) / PERF_HOL_PHASES;
	size_t cap = 0, cap3 = 0;
	uint64_t id = 0;
	struct pw_send_wr wr;
	struct pw_sge sge;
	int err = 0;

	st->lat2_us = calloc(per * PERF_HOL_PHASES, sizeof(*st->lat2_us));
	if (!st->lat2_us)
		err = -ENOMEM;
	memset(&wr, 0, sizeof(wr));
	sge.addr = (uint64_t)(uintptr_t)ep->data;
	sge.length = PERF_HOL_B_SIZE;
	sge.lkey = ep->lkey;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.opcode = PW_WR_RDMA_WRITE;
	wr.send_flags = PW_SEND_SIGNALED |
			(PERF_HOL_B_SIZE <= ep->attr.cap.max_inline_data ?
			 PW_SEND_INLINE : 0);
	wr.wr.rdma.remote_addr = ep->peer.rx_addr;
	wr.wr.rdma.rkey = ep->peer.rkey;
	/* warm-up, not timed: the target page faults in here */
	for (unsigned int k = 0; k < 16 && !err; k++, id++) {
		wr.wr_id = id;
		err = post_one(ep, &wr);
		if (!err)
			err = wait_one(ep, id, "RDMA_WRITE (B)");
	}
	if (err)
		atomic_store(&run->abort, 1);
	st->t_start = tool_now_ns();
	for (unsigned int p = 0; p < 2 * PERF_HOL_PHASES; p++) {
		bool with = p & 1;
		uint64_t n = 0;

		pthread_barrier_wait(&run->barrier);		/* phase start */
		pthread_barrier_wait(&run->barrier);		/* A ready */
		while (!err && !atomic_load(&run->abort)) {
			unsigned int g0, g1;
			uint64_t t0;
			double us;

			if (with ? atomic_load(&run->hol_stop) : n >= per)
				break;
			g0 = atomic_load(&run->hol_pageout);
			t0 = tool_now_ns();
			wr.wr_id = id;
			err = post_one(ep, &wr);
			if (!err)
				err = wait_one(ep, id, "RDMA_WRITE (B)");
			if (err)
				break;
			us = ns_to_us(tool_now_ns() - t0);
			g1 = atomic_load(&run->hol_pageout);
			id++;
			if (!with) {
				st->lat2_us[st->nlat2++] = us;
				n++;
			} else if (g0 != g1 || (g0 & 1)) {
				err = push_sample(&st->lat3_us, &st->nlat3, &cap3, us);
			} else {
				err = push_sample(&st->lat_us, &st->nlat, &cap, us);
				/* A stops once this reaches its share */
				atomic_store(&run->hol_b_count, (unsigned int)++n);
			}
		}
		if (err)
			atomic_store(&run->abort, 1);
		pthread_barrier_wait(&run->barrier);		/* phase end */
	}
	st->t_end = tool_now_ns();
	st->msgs = id;
	return err;
}

/* The atomic target's initial value: the first 8 bytes of the pattern. */
static uint64_t atomic_initial(uint64_t seed)
{
	uint8_t b[8];
	uint64_t v;

	pattern_fill(b, sizeof(b), seed, 0);
	/* The target operates on its memory in its native byte order. */
	memcpy(&v, b, sizeof(v));
	return v;
}

/*
 * atomic_lat: one atomic at a time on the server's first 8 bytes. Every
 * op adds one (FETCH_ADD +1, or CMP_SWAP expected -> expected + 1), so
 * every returned original value is known in advance and checked.
 */
static int client_atomic_step(struct perf_ep *ep, unsigned int s)
{
	struct perf_run *run = ep->run;
	struct perf_step *st = &ep->steps[s];
	uint64_t iters = run->plan.iters[s];
	struct pw_send_wr wr;
	struct pw_sge sge;
	uint64_t got;
	int err;

	st->lat_us = calloc(iters, sizeof(*st->lat_us));
	if (!st->lat_us)
		return -ENOMEM;
	if (s == 0)
		ep->atomic_expect = atomic_initial(ep->peer.seed);
	memset(&wr, 0, sizeof(wr));
	sge.addr = (uint64_t)(uintptr_t)ep->rx;
	sge.length = 8;
	sge.lkey = ep->lkey;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.send_flags = PW_SEND_SIGNALED;
	wr.opcode = run->atomic == PERF_ATOMIC_CS ? PW_WR_ATOMIC_CMP_AND_SWP :
						    PW_WR_ATOMIC_FETCH_AND_ADD;
	wr.wr.atomic.remote_addr = ep->peer.data_addr;
	wr.wr.atomic.rkey = ep->peer.rkey;

	st->t_start = tool_now_ns();
	for (uint64_t i = 0; i < iters; i++) {
		uint64_t t0 = tool_now_ns();

		if (run->atomic == PERF_ATOMIC_CS) {
			wr.wr.atomic.compare_add = ep->atomic_expect;
			wr.wr.atomic.swap = ep->atomic_expect + 1;
		} else {
			wr.wr.atomic.compare_add = 1;
		}
		wr.wr_id = i;
		err = post_one(ep, &wr);
		if (err)
			return err;
		err = wait_one(ep, i, perf_atomic_names[run->atomic]);
		if (err)
			return err;
		st->lat_us[i] = ns_to_us(tool_now_ns() - t0);
		memcpy(&got, ep->rx, sizeof(got));
		if (got != ep->atomic_expect) {
			perf_fail("QP %u: %s #%llu returned 0x%016llx, expected 0x%016llx",
				  ep->idx, perf_atomic_names[run->atomic],
				  (unsigned long long)i, (unsigned long long)got,
				  (unsigned long long)ep->atomic_expect);
			return -EIO;
		}
		ep->atomic_expect++;
	}
	st->t_end = tool_now_ns();
	st->nlat = iters;
	st->msgs = iters;

	/* Read the final value back: the last op must have landed too. */
	sge.addr = (uint64_t)(uintptr_t)(ep->rx + 8);
	wr.opcode = PW_WR_RDMA_READ;
	wr.wr_id = iters;
	wr.wr.rdma.remote_addr = ep->peer.data_addr;
	wr.wr.rdma.rkey = ep->peer.rkey;
	err = post_one(ep, &wr);
	if (err)
		return err;
	err = wait_one(ep, iters, "RDMA_READ of the atomic target");
	if (err)
		return err;
	memcpy(&got, ep->rx + 8, sizeof(got));
	if (got != ep->atomic_expect) {
		perf_fail("QP %u: atomic target holds 0x%016llx after the run, expected 0x%016llx",
			  ep->idx, (unsigned long long)got,
			  (unsigned long long)ep->atomic_expect);
		return -EIO;
	}
	return 0;
}

static int client_step(struct perf_ep *ep, unsigned int s)
{
	switch (ep->run->o->test) {
	case PERF_TCP_BW:
	case PERF_TCP_LAT:
		return perf_tcp_client_step(ep, s);
	case PERF_WRITE_LAT:
	case PERF_SEND_LAT:
		return client_pingpong_step(ep, s);
	case PERF_READ_LAT:
		return client_read_lat_step(ep, s);
	case PERF_FAULT_LAT:
		return client_fault_lat_step(ep, s);
	case PERF_HOL:
		return ep->idx == 0 ? client_hol_a_step(ep, s) :
				      client_hol_b_step(ep, s);
	case PERF_ATOMIC_LAT:
		return client_atomic_step(ep, s);
	default:
		return -EINVAL;
	}
}

static void *client_thread(void *arg)
{
	struct perf_ep *ep = arg;
	struct perf_run *run = ep->run;
	struct perf_ep *tcp = run->baseline ? &run->baseline->eps[ep->idx] :
			      NULL;
	bool tcp_test = perf_tests[run->o->test].tcp;

	for (unsigned int s = 0; s < run->plan.n; s++) {
		/* Every thread waits at every barrier, even after a failure. */
		if (tcp) {
			pthread_barrier_wait(&run->barrier);
			if (!atomic_load(&run->abort)) {
				ep->status = perf_tcp_client_step(tcp, s);
				if (ep->status)
					atomic_store(&run->abort, 1);
			}
		}
		pthread_barrier_wait(&run->barrier);
		if (atomic_load(&run->abort))
			continue;
		ep->status = client_step(ep, s);
		if (ep->status)
			atomic_store(&run->abort, 1);
	}
	/*
	 * After a failure anywhere the handshake is skipped: the server
	 * would count DONE as a data message. Destroying the QPs then ends
	 * the server's wait with flushed receives; shutting the sockets
	 * ends its TCP waits.
	 */
	if (atomic_load(&run->abort)) {
		if (tcp_test)
			perf_tcp_abort(ep);
		if (tcp)
			perf_tcp_abort(tcp);
		return NULL;
	}
	/* TCP first: the server serves TCP's end before pagewire's. */
	if (tcp)
		ep->status = perf_tcp_client_finish(tcp);
	if (!ep->status)
		ep->status = tcp_test ? perf_tcp_client_finish(ep) :
					perf_ctrl_client_finish(ep);
	return NULL;
}

/*
 * The bw tests (and tcp_bw): every size on all QPs from this one thread;
 * with --baseline each size first over the TCP connections (also all
 * from this thread), then over the QPs.
 */
static int client_bw_run(struct perf_run *run)
{
	bool tcp_test = perf_tests[run->o->test].tcp;
	int err = 0;

	perf_report_header(run);
	for (unsigned int s = 0; s < run->plan.n && !err; s++) {
		if (run->baseline)
			err = perf_tcp_client_bw(run->baseline, s);
		if (!err)
			err = tcp_test ? perf_tcp_client_bw(run, s) :
					 client_bw_all(run, s);
	}
	if (err) {
		/*
		 * No handshake after a failure (the server would count DONE
		 * as data): destroying the QPs flushes the server's waits,
		 * shutting the sockets ends its TCP waits.
		 */
		if (tcp_test)
			perf_tcp_abort_all(run);
		if (run->baseline)
			perf_tcp_abort_all(run->baseline);
		return err;
	}
	/* TCP first: the server serves TCP's end before pagewire's. */
	if (run->baseline)
		err = perf_tcp_client_finish_all(run->baseline);
	if (!err)
		err = tcp_test ? perf_tcp_client_finish_all(run) :
				 perf_ctrl_client_finish_all(run);
	if (err)
		return err;
	err = perf_report_steps(run);
	perf_report_footer(run);
	return err;
}

/**
 * perf_client_run() - run all sizes on all QPs and report
 *
 * Return: 0 when every QP measured and verified everything.
 */
int perf_client_run(struct perf_run *run)
{
	unsigned int started = 0;
	int err = 0;

	if (perf_tests[run->o->test].bw)
		return client_bw_run(run);

	err = pthread_barrier_init(&run->barrier, NULL, run->qps);
	if (err) {
		perf_fail("pthread_barrier_init: %s", strerror(err));
		return -err;
	}
	run->barrier_init = true;
	perf_report_header(run);
	for (unsigned int i = 0; i < run->qps; i++) {
		struct perf_ep *ep = &run->eps[i];

		err = pthread_create(&ep->thread, NULL, client_thread, ep);
		if (err) {
			perf_fail("pthread_create: %s", strerror(err));
			err = -err;
			break;
		}
		ep->thread_started = true;
		started++;
	}
	if (started < run->qps) {
		/*
		 * The barrier counts on every QP's thread; threads that did
		 * start would wait forever. Nothing sensible is left but exit.
		 */
		perf_fail("could not start all threads; exiting");
		exit(PERF_EXIT_FAIL);
	}
	for (unsigned int i = 0; i < run->qps; i++) {
		pthread_join(run->eps[i].thread, NULL);
		run->eps[i].thread_started = false;
		if (run->eps[i].status && !err)
			err = run->eps[i].status;
	}
	pthread_barrier_destroy(&run->barrier);
	run->barrier_init = false;
	if (err)
		return err;
	/* hol: the machine's own head-of-line factor, same run (one size) */
	if (run->o->test == PERF_HOL) {
		err = perf_tcp_hol_run(run, 0);
		if (err)
			return err;
	}
	err = perf_report_steps(run);
	perf_report_footer(run);
	return err;
}
