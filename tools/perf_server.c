/* SPDX-License-Identifier: MIT */
/*
 * The passive side of pagewire-perf. For one-sided tests it only waits
 * for the client's DONE (write_bw --swapped and hol: serving the region
 * requests that come before it: verify, page out); for send_bw it keeps
 * receives posted; for the ping-pong tests it answers every ping. After
 * DONE it verifies its own memory (write_bw --first-touch and --swapped:
 * then measures the platform rate, perf_platform.c) and sends the
 * verdict (perf_ctrl.c).
 *
 * Bandwidth tests (and tcp_bw): one thread serves all QPs (TCP
 * connections), as the client drives them from one thread. With
 * --baseline it serves, for every size, first the TCP connections, then
 * the QPs, in the client's order.
 *
 * Latency tests (and tcp_lat): one thread per QP (connection). With
 * --baseline, thread i serves TCP connection i and QP i in the client's
 * order: for every size, first the TCP phase, then the pagewire phase.
 * Only one of them waits at a time, so with --busy-poll each QP has one
 * spinning thread here, as without --baseline.
 */
#include <errno.h>
#include <string.h>

#include "pattern.h"
#include "perf.h"
#include "tool_util.h"

/* Map a data receive's sequence number to its size index in the plan. */
static unsigned int step_of(const struct perf_plan *p, uint64_t k)
{
	for (unsigned int s = 0; s < p->n; s++) {
		if (k < p->iters[s])
			return s;
		k -= p->iters[s];
	}
	return p->n - 1;
}

/*
 * send_bw, size @s: consume iters[s] data receives on every QP, from this
 * one thread, reposting each at once so that every receive queue stays
 * full. Completions beyond what the size needs stay queued in the QP's
 * wcq (perf_next_wc()).
 */
static int serve_send_bw_all(struct perf_run *run, unsigned int s)
{
	const struct perf_plan *p = &run->plan;
	uint64_t need[PERF_MAX_QPS];
	bool active[PERF_MAX_QPS];
	unsigned int left = 0;
	int r;

	for (unsigned int i = 0; i < run->qps; i++) {
		need[i] = p->iters[s];
		active[i] = need[i] > 0;
		left += active[i];
	}
	while (left) {
		r = perf_wait_any(run, active, -1);
		if (r < 0)
			return r;
		for (unsigned int i = 0; i < run->qps; i++) {
			struct perf_ep *ep = &run->eps[i];

			while (active[i] && ep->wcq_len) {
				struct pw_wc *wc = &ep->wcq[ep->wcq_head++];
				uint64_t k = ep->recvs_done;
				uint64_t want = p->size[step_of(p, k)];

				ep->wcq_len--;
				if (wc->status != PW_WC_SUCCESS) {
					perf_print_wc_error(ep, wc, "receive");
					return -EIO;
				}
				if (wc->wr_id != (PERF_WRID_RECV | k) ||
				    wc->byte_len != want) {
					perf_fail("QP %u: receive #%llu: wr_id 0x%llx with %u bytes, expected #%llu with %llu",
						  ep->idx, (unsigned long long)k,
						  (unsigned long long)wc->wr_id,
						  wc->byte_len, (unsigned long long)k,
						  (unsigned long long)want);
					return -EPROTO;
				}
				ep->recvs_done++;
				r = perf_post_recv(ep);
				if (r)
					return r;
				if (--need[i] == 0) {
					active[i] = false;
					left--;
				}
			}
		}
	}
	return 0;
}

/*
 * write_lat / send_lat: answer pings [k0, k1) with pongs of the same
 * size. The caller drains the sends after the last ping of the run.
 */
static int serve_pingpong(struct perf_ep *ep, uint64_t k0, uint64_t k1)
{
	const struct perf_plan *p = &ep->run->plan;
	bool write = ep->run->o->test == PERF_WRITE_LAT;
	struct pw_send_wr wr;
	struct pw_sge sge;
	struct pw_wc wc;
	int err;

	memset(&wr, 0, sizeof(wr));
	wr.sg_list = &sge;
	wr.num_sge = 1;
	sge.addr = (uint64_t)(uintptr_t)ep->rx;
	sge.lkey = ep->lkey;
	if (write) {
		wr.opcode = PW_WR_RDMA_WRITE_WITH_IMM;
		wr.wr.rdma.remote_addr = ep->peer.rx_addr;
		wr.wr.rdma.rkey = ep->peer.rkey;
	} else {
		wr.opcode = PW_WR_SEND;
	}
	for (uint64_t k = k0; k < k1; k++) {
		uint64_t size = p->size[step_of(p, k)];

		err = perf_wait_recv(ep, &wc, -1);
		if (err)
			return err;
		if (write && (wc.opcode != PW_WC_RECV_RDMA_WITH_IMM ||
			      !(wc.wc_flags & PW_WC_WITH_IMM))) {
			perf_fail("QP %u: ping %llu: opcode %d, flags 0x%x; expected RECV_RDMA_WITH_IMM",
				  ep->idx, (unsigned long long)k, (int)wc.opcode,
				  wc.wc_flags);
			return -EPROTO;
		}
		if (!write && wc.byte_len != size) {
			perf_fail("QP %u: ping %llu has %u bytes, expected %llu",
				  ep->idx, (unsigned long long)k, wc.byte_len,
				  (unsigned long long)size);
			return -EPROTO;
		}
		/* Repost first: the client's next ping follows our pong. */
		err = perf_post_recv(ep);
		if (err)
			return err;
		sge.length = (uint32_t)size;
		wr.imm_data = wc.imm_data;
		if (write && ep->run->o->vs_pinned) {
			/* --vs-pinned: the kind the client chose for ping imm */
			unsigned int kind = perf_pair_kind(wc.imm_data,
							   PERF_PAIR_LAT_BLOCK);

			sge.lkey = perf_lkey(ep, kind);
			wr.wr.rdma.rkey = perf_peer_rkey(ep, kind);
		}
		wr.send_flags = size <= ep->attr.cap.max_inline_data ?
				PW_SEND_INLINE : 0;
		err = perf_post_tracked(ep, &wr, k + 1 == ep->data_recvs);
		if (err)
			return err;
	}
	return 0;
}

/* The pagewire data path of receives [k0, k1): whatever the test needs. */
static int serve_range(struct perf_ep *ep, uint64_t k0, uint64_t k1)
{
	switch (ep->run->o->test) {
	case PERF_WRITE_LAT:
	case PERF_SEND_LAT:
		return serve_pingpong(ep, k0, k1);
	default:
		return 0;	/* one-sided: nothing to do here */
	}
}

/* --baseline: every size over TCP connection @tcp, then over QP @ep. */
static int serve_interleaved(struct perf_ep *ep, struct perf_ep *tcp)
{
	const struct perf_plan *p = &ep->run->plan;
	bool recvs = perf_tests[ep->run->o->test].server_recvs;
	uint64_t k = 0;
	int err = 0;

	for (unsigned int s = 0; s < p->n && !err; s++) {
		uint64_t n = recvs ? p->iters[s] : 0;

		err = perf_tcp_server_step(tcp, s);
		if (!err)
			err = serve_range(ep, k, k + n);
		k += n;
	}
	if (!err)
		err = perf_tcp_server_finish(tcp);
	if (err)
		perf_tcp_abort(tcp);
	return err;
}

/* tcp_bw / tcp_lat on their own: every size, then the orderly end. */
static void *server_tcp_thread(void *arg)
{
	struct perf_ep *ep = arg;
	int err = 0;

	for (unsigned int s = 0; s < ep->run->plan.n && !err; s++)
		err = perf_tcp_server_step(ep, s);
	if (!err)
		err = perf_tcp_server_finish(ep);
	if (err)
		perf_tcp_abort(ep);
	ep->status = err;
	return NULL;
}

/**
 * server_verify() - check our own memory after the client's DONE
 * @detail: on failure, the first wrong byte offset + 1 (or the value)
 *
 * Return: 0 when the memory holds exactly what the client put there.
 */
static int server_verify(struct perf_ep *ep, uint64_t *detail)
{
	const struct perf_run *run = ep->run;
	const struct perf_plan *p = &run->plan;
	uint64_t last = p->size[p->n - 1];
	long long bad;

	if (run->o->swapped || run->o->test == PERF_HOL) {
		/*
		 * What landed was checked block by block on the client's
		 * region requests (perf_swap.c), the last blocks included;
		 * hol's B wrote 8 bytes at the start of its rx area.
		 */
		if (ep->region_status) {
			*detail = 0;
			return -EIO;
		}
		if (run->o->test == PERF_HOL && ep->idx == 1) {
			bad = pattern_check(ep->rx, PERF_HOL_B_SIZE, ep->peer.seed, 0);
			if (bad >= 0) {
				perf_fail("QP %u: hol: B's 8 bytes wrong at byte %lld",
					  ep->idx, bad);
				*detail = (uint64_t)bad + 1;
				return -EIO;
			}
			return 0;
		}
		if (!ep->regions_verified) {
			perf_fail("QP %u: the client asked for no region check; nothing verified",
				  ep->idx);
			return -EIO;
		}
		return 0;
	}

	if (run->o->first_touch) {
		/* every fresh slot holds the client's pattern, like slot 0 */
		uint64_t block = perf_pair_bw_block(run, 0);

		for (uint64_t k = 0; k < p->iters[0]; k++) {
			uint64_t off = perf_first_touch_off(k, last, block);

			if (off && pattern_check(ep->rx + off, last, ep->peer.seed, 0) >= 0) {
				perf_fail("QP %u: --first-touch: message %llu did not land in its slot",
					  ep->idx, (unsigned long long)k);
				*detail = off + 1;
				return -EIO;
			}
		}
	}
	switch (run->o->test) {
	case PERF_WRITE_BW:
	case PERF_SEND_BW:
	case PERF_WRITE_LAT:
	case PERF_SEND_LAT:
		/* The last message of the run is the client's pattern. */
		bad = pattern_check(ep->rx, last, ep->peer.seed, 0);
		if (bad >= 0) {
			perf_fail("QP %u: received data wrong at byte %lld of %llu: 0x%02x, expected 0x%02x",
				  ep->idx, bad, (unsigned long long)last,
				  ep->rx[bad],
				  pattern_byte(ep->peer.seed, (uint64_t)bad));
			*detail = (uint64_t)bad + 1;
			return -EIO;
		}
		return 0;
	case PERF_FAULT_LAT: {
		/*
		 * Every page written holds the client's first 8 pattern bytes
		 * at its start; everything else is still zero.
		 */
		uint64_t end = perf_fault_fresh_off(p->total_iters);
		uint8_t want[8];

		pattern_fill(want, sizeof(want), ep->peer.seed, 0);
		for (uint64_t off = 0; off < end; off += PERF_FAULT_PAGE) {
			bool written = off < perf_fault_fresh_off(0) ||
				       (off - perf_fault_fresh_off(0)) %
				       (2 * PERF_FAULT_PAGE) == 0;
			const uint8_t *pg = ep->rx + off;

			if (written && memcmp(pg, want, 8)) {
				perf_fail("QP %u: fault_lat: page at offset %llu lacks the written bytes",
					  ep->idx, (unsigned long long)off);
				*detail = off + 1;
				return -EIO;
			}
			for (uint64_t k = written ? 8 : 0; k < PERF_FAULT_PAGE; k++)
				if (pg[k]) {
					perf_fail("QP %u: fault_lat: stray byte at offset %llu",
						  ep->idx, (unsigned long long)(off + k));
					*detail = off + k + 1;
					return -EIO;
				}
		}
		return 0;
	}
	case PERF_READ_BW:
	case PERF_READ_LAT:
		/* READs must leave the source untouched. */
		bad = pattern_check(ep->data, ep->area, ep->seed, 0);
		if (bad >= 0) {
			perf_fail("QP %u: RDMA READ source modified at byte %lld",
				  ep->idx, bad);
			*detail = (uint64_t)bad + 1;
			return -EIO;
		}
		return 0;
	case PERF_ATOMIC_LAT: {
		uint8_t b[8];
		uint64_t init, now;

		pattern_fill(b, sizeof(b), ep->seed, 0);
		memcpy(&init, b, sizeof(init));
		memcpy(&now, ep->data, sizeof(now));
		if (now != init + p->total_iters) {
			perf_fail("QP %u: atomic target holds 0x%016llx, expected 0x%016llx after %llu ops",
				  ep->idx, (unsigned long long)now,
				  (unsigned long long)(init + p->total_iters),
				  (unsigned long long)p->total_iters);
			*detail = now;
			return -EIO;
		}
		/* Nothing beyond the 8 target bytes may change. */
		bad = pattern_check(ep->data + 8, ep->area - 8, ep->seed, 8);
		if (bad >= 0) {
			perf_fail("QP %u: atomics modified byte %lld of the target buffer",
				  ep->idx, bad + 8);
			*detail = (uint64_t)bad + 9;
			return -EIO;
		}
		return 0;
	}
	default:
		return -EINVAL;
	}
}

static void *server_thread(void *arg)
{
	struct perf_ep *ep = arg;
	struct perf_run *run = ep->run;
	uint64_t detail = 0;
	int err, verdict;

	if (run->baseline)
		err = serve_interleaved(ep, &run->baseline->eps[ep->idx]);
	else
		err = serve_range(ep, 0, ep->data_recvs);
	if (!err && perf_tests[run->o->test].half_rtt)
		err = perf_drain_sends(ep, PERF_STALL_TIMEOUT_MS);
	if (!err)
		err = perf_ctrl_server_wait_done(ep);
	if (err) {
		ep->status = err;
		return NULL;
	}
	verdict = server_verify(ep, &detail);
	err = perf_ctrl_server_reply(ep, verdict ? 1 : 0, detail);
	ep->status = verdict ? verdict : err;
	return NULL;
}

/*
 * The bw tests (and tcp_bw), all QPs from this one thread: every size
 * (with --baseline: first over TCP, then over the QPs), then, QP by QP
 * in the order the client sends them, DONE, verification and verdict.
 */
static int server_bw_run(struct perf_run *run)
{
	bool tcp_test = perf_tests[run->o->test].tcp;
	int err = 0;

	for (unsigned int s = 0; s < run->plan.n && !err; s++) {
		if (run->baseline)
			err = perf_tcp_server_bw(run->baseline, s);
		if (!err && tcp_test)
			err = perf_tcp_server_bw(run, s);
		else if (!err && run->o->test == PERF_SEND_BW)
			err = serve_send_bw_all(run, s);
	}
	if (!err && run->baseline)
		err = perf_tcp_server_finish_all(run->baseline);
	if (!err && tcp_test)
		err = perf_tcp_server_finish_all(run);
	if (err) {
		if (run->baseline)
			perf_tcp_abort_all(run->baseline);
		if (tcp_test)
			perf_tcp_abort_all(run);
		return err;
	}
	if (tcp_test)
		return 0;
	for (unsigned int i = 0; i < run->qps; i++) {
		struct perf_ep *ep = &run->eps[i];
		uint64_t detail = 0;
		int verdict;

		err = perf_ctrl_server_wait_done(ep);
		if (err)
			return err;
		verdict = server_verify(ep, &detail);
		/*
		 * --first-touch, --swapped: the kernel's own rate, now that
		 * the client waits idle for the verdict; a failure only
		 * leaves it unmeasured (reported)
		 */
		if (!verdict)
			perf_platform_measure(ep);
		err = perf_ctrl_server_reply(ep, verdict ? 1 : 0, detail);
		ep->status = verdict ? verdict : err;
		if (err)
			return err;
	}
	for (unsigned int i = 0; i < run->qps; i++)
		if (run->eps[i].status)
			return run->eps[i].status;
	return 0;
}

/**
 * perf_server_run() - serve every accepted QP until the client is done
 *
 * Return: 0 when every QP ran and verified.
 */
int perf_server_run(struct perf_run *run)
{
	bool tcp = perf_tests[run->o->test].tcp;
	int err = 0;

	if (perf_tests[run->o->test].bw) {
		err = server_bw_run(run);
		goto out;
	}

	for (unsigned int i = 0; i < run->qps; i++) {
		struct perf_ep *ep = &run->eps[i];

		err = pthread_create(&ep->thread, NULL,
				     tcp ? server_tcp_thread : server_thread, ep);
		if (err) {
			perf_fail("pthread_create: %s", strerror(err));
			err = -err;
			break;
		}
		ep->thread_started = true;
	}
	/* Threads that did start end when their QP is destroyed or done. */
	for (unsigned int i = 0; i < run->qps; i++) {
		struct perf_ep *ep = &run->eps[i];

		if (!ep->thread_started)
			continue;
		pthread_join(ep->thread, NULL);
		ep->thread_started = false;
		if (ep->status && !err)
			err = ep->status;
	}
out:
	if (!run->quiet)
		fprintf(run->human, " %u %s%s served%s; data verified: %s\n",
			run->qps, tcp ? "TCP connection" : "QP",
			run->qps == 1 ? "" : "s",
			run->baseline ? " (and as many TCP baseline connections)" : "",
			err ? "FAILED" : "OK");
	return err;
}
