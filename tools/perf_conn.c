/* SPDX-License-Identifier: MIT */
/*
 * Resources of a pagewire-perf run: context, PD, per-QP buffers and MRs,
 * CQs, the connections themselves and the private data that carries
 * buffer addresses, rkeys and the client's parameters.
 *
 * Private data layout (PERF_WIRE_INFO_LEN bytes, all little-endian; the
 * TCP tests of perf_tcp.c send the same bytes as their hello):
 *
 *   off len field
 *     0   4 magic "PWPF" (0x46505750)
 *     4   1 version (1)
 *     5   1 test (enum perf_test)
 *     6   1 mr mode (enum perf_mr_mode)
 *     7   1 atomic op (enum perf_atomic_op)
 *     8   1 flags (PERF_WF_*)
 *     9   1 reserved, 0
 *    10   2 qp_index
 *    12   2 qps
 *    14   2 server: port of its --baseline TCP listener (0 = none);
 *           client: 0
 *    16   4 tx_depth
 *    20   4 rkey
 *    24   8 size (-s; meaningless with PERF_WF_ALL_SIZES)
 *    32   8 iters (-n; meaningful with PERF_WF_ITERS_SET)
 *    40   8 seed of the sender's data-area pattern
 *    48   8 data area address
 *    56   8 rx area address
 *    64   8 bytes in each area
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pattern.h"
#include "perf.h"
#include "tool_util.h"

#define PERF_WIRE_MAGIC		0x46505750u	/* "PWPF" little-endian */
#define PERF_WIRE_VERSION	2
/* How long the loopback server waits for its client to show up. */
#define PERF_LOOPBACK_ACCEPT_MS	30000

void perf_fail(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	/* One fputs per message: QP threads report concurrently. */
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, PERF_PROG ": %s\n", msg);
}

/* Report a failed library call with the library's own explanation. */
static void fail_lib(const char *call, int err)
{
	const char *why = pw_last_error();

	perf_fail("%s failed: %s%s%s", call, strerror(err < 0 ? -err : err),
		  why && *why ? ": " : "", why ? why : "");
}

void perf_print_wc_error(const struct perf_ep *ep, const struct pw_wc *wc,
			 const char *what)
{
	perf_fail("QP %u: %s completion failed: %s (status %d, wr_id 0x%llx, vendor_err %u)",
		  ep->idx, what, pw_wc_status_str(wc->status), (int)wc->status,
		  (unsigned long long)wc->wr_id, wc->vendor_err);
}

void perf_wire_encode(const struct perf_wire_info *w,
		      uint8_t out[PERF_WIRE_INFO_LEN])
{
	memset(out, 0, PERF_WIRE_INFO_LEN);
	tool_put32(out + 0, PERF_WIRE_MAGIC);
	out[4] = PERF_WIRE_VERSION;
	out[5] = w->test;
	out[6] = w->mr;
	out[7] = w->atomic;
	out[8] = w->flags;
	tool_put16(out + 10, w->qp_index);
	tool_put16(out + 12, w->qps);
	tool_put16(out + 14, w->tcp_port);
	tool_put32(out + 16, w->tx_depth);
	tool_put32(out + 20, w->rkey);
	tool_put64(out + 24, w->size);
	tool_put64(out + 32, w->iters);
	tool_put64(out + 40, w->seed);
	tool_put64(out + 48, w->data_addr);
	tool_put64(out + 56, w->rx_addr);
	tool_put64(out + 64, w->area_len);
	tool_put32(out + 72, w->rkey_pinned);
}

/**
 * perf_wire_decode() - decode and sanity-check a peer's private data
 *
 * Return: 0, -EPROTO (not pagewire-perf, or another version), -EINVAL
 * (fields out of range).
 */
int perf_wire_decode(const uint8_t *buf, uint32_t len, struct perf_wire_info *w)
{
	if (len < PERF_WIRE_INFO_LEN || tool_get32(buf) != PERF_WIRE_MAGIC ||
	    buf[4] != PERF_WIRE_VERSION)
		return -EPROTO;
	w->test = buf[5];
	w->mr = buf[6];
	w->atomic = buf[7];
	w->flags = buf[8];
	w->qp_index = tool_get16(buf + 10);
	w->qps = tool_get16(buf + 12);
	w->tcp_port = tool_get16(buf + 14);
	w->tx_depth = tool_get32(buf + 16);
	w->rkey = tool_get32(buf + 20);
	w->size = tool_get64(buf + 24);
	w->iters = tool_get64(buf + 32);
	w->seed = tool_get64(buf + 40);
	w->data_addr = tool_get64(buf + 48);
	w->rx_addr = tool_get64(buf + 56);
	w->area_len = tool_get64(buf + 64);
	w->rkey_pinned = tool_get32(buf + 72);
	if (w->test >= PERF_TEST_COUNT || w->mr >= PERF_MR_COUNT ||
	    w->atomic >= PERF_ATOMIC_COUNT || w->qps == 0 ||
	    w->qps > PERF_MAX_QPS || w->qp_index >= w->qps ||
	    w->tx_depth == 0 || w->tx_depth > PW_MAX_QP_WR)
		return -EINVAL;
	return 0;
}

static unsigned int mr_access(enum perf_mr_mode mode)
{
	unsigned int a = PW_ACCESS_LOCAL_WRITE | PW_ACCESS_REMOTE_WRITE |
			 PW_ACCESS_REMOTE_READ | PW_ACCESS_REMOTE_ATOMIC;

	return mode == PERF_MR_PINNED ? a : a | PW_ACCESS_ON_DEMAND;
}

/**
 * perf_run_open() - context, PD and (with --mr=implicit) the implicit MR
 *
 * Return: 0 or a negative errno, reported on stderr.
 */
int perf_run_open(struct perf_run *run)
{
	int err;

	/*
	 * --busy-poll also asks the library's progress engine to spin (it
	 * reads PW_PROGRESS in pw_open; a library that does not know the
	 * variable ignores it). Without --busy-poll the environment is left
	 * as the user set it.
	 */
	if (run->o->busy_poll && setenv("PW_PROGRESS", "busy", 1)) {
		err = -errno;
		perf_fail("setenv(PW_PROGRESS=busy) failed: %s", strerror(errno));
		return err;
	}
	run->ctx = pw_open(NULL);
	if (!run->ctx) {
		err = -errno;
		fail_lib("pw_open", err);
		return err;
	}
	/*
	 * The bw tests wait on all their QPs' CQs from one thread: one
	 * channel for all of them (latency tests keep a channel per QP,
	 * one thread each).
	 */
	if (perf_tests[run->o->test].bw && !run->o->busy_poll) {
		run->channel = pw_create_comp_channel(run->ctx);
		if (!run->channel) {
			err = -errno;
			fail_lib("pw_create_comp_channel", err);
			goto err;
		}
	}
	run->pd = pw_alloc_pd(run->ctx);
	if (!run->pd) {
		err = -errno;
		fail_lib("pw_alloc_pd", err);
		goto err;
	}
	if (run->o->mr == PERF_MR_IMPLICIT) {
		/* One key for the whole address space: raw VAs everywhere. */
		run->implicit_mr = pw_reg_mr(run->pd, NULL, SIZE_MAX,
					     mr_access(PERF_MR_IMPLICIT));
		if (!run->implicit_mr) {
			err = -errno;
			fail_lib("pw_reg_mr(implicit ODP)", err);
			goto err;
		}
	}
	return 0;

err:
	perf_run_close(run);
	return err;
}

/**
 * perf_ep_map_buffer() - map the [data | rx | ctrl] buffer of @ep
 *
 * Sized for the largest message of the run's plan; the side that sends
 * from its data area (or whose data area the peer reads) fills it with
 * its pattern. Used by the pagewire tests and the TCP baselines alike.
 *
 * Return: 0 or a negative errno (reported).
 */
int perf_ep_map_buffer(struct perf_ep *ep)
{
	struct perf_run *run = ep->run;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	uint64_t max = run->plan.max_size;
	int err;

	/* Page-aligned areas: the fast path, which is what the bench measures. */
	ep->area = (size_t)((max + page - 1) / page * page);
	ep->buf_len = 2 * ep->area + PERF_CTRL_AREA;
	ep->buf = mmap(NULL, ep->buf_len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (ep->buf == MAP_FAILED) {
		err = -errno;
		ep->buf = NULL;
		perf_fail("mmap of %zu bytes failed: %s", ep->buf_len,
			  strerror(-err));
		return err;
	}
	ep->data = ep->buf;
	ep->rx = ep->buf + ep->area;
	ep->ctrl = ep->buf + 2 * ep->area;

	/*
	 * The data area holds our pattern where the peer will read it (READ
	 * source, atomic target) or where we send from. Areas nobody reads
	 * before writing are left untouched, so ODP pages fault in during the
	 * run, as they would in an application.
	 */
	bool fill = run->server ? perf_tests[run->o->test].server_data_pattern
				: !perf_tests[run->o->test].server_data_pattern;
	if (fill)
		pattern_fill(ep->data, ep->area, ep->seed, 0);
	return 0;
}

/*
 * --vs-pinned: a second, pinned MR over the same buffer (overlapping MRs
 * are allowed, as in verbs). Its pages are then resident, which is what
 * "ODP with resident pages against pinned" compares.
 */
static int ep_setup_pinned_pair(struct perf_ep *ep)
{
	struct perf_run *run = ep->run;
	int err;

	if (!run->o->vs_pinned)
		return 0;
	ep->mr_pinned = pw_reg_mr(run->pd, ep->buf, ep->buf_len,
				  mr_access(PERF_MR_PINNED));
	if (!ep->mr_pinned) {
		err = -errno;
		fail_lib("pw_reg_mr(pinned, --vs-pinned)", err);
		return err;
	}
	ep->lkey_pinned = ep->mr_pinned->lkey;
	return 0;
}

/* Map and register the [data | rx | ctrl] buffer of @ep. */
static int ep_setup_buffer(struct perf_ep *ep)
{
	struct perf_run *run = ep->run;
	int err = perf_ep_map_buffer(ep);

	if (err)
		return err;
	if (run->implicit_mr) {
		ep->lkey = run->implicit_mr->lkey;
		return ep_setup_pinned_pair(ep);
	}
	ep->mr = pw_reg_mr(run->pd, ep->buf, ep->buf_len, mr_access(run->o->mr));
	if (!ep->mr) {
		err = -errno;
		fail_lib("pw_reg_mr", err);
		return err;
	}
	ep->lkey = ep->mr->lkey;
	return ep_setup_pinned_pair(ep);
}

static uint32_t ep_rkey(const struct perf_ep *ep)
{
	return ep->mr ? ep->mr->rkey : ep->run->implicit_mr->rkey;
}

static void ep_fill_attr(struct perf_ep *ep)
{
	struct perf_run *run = ep->run;
	struct pw_qp_init_attr *a = &ep->attr;

	memset(a, 0, sizeof(*a));
	a->qp_context = ep;
	a->send_cq = ep->cqw.cq;
	a->recv_cq = ep->cqw.cq;
	/* Room for the window plus the control messages at the end. */
	a->cap.max_send_wr = run->tx_depth + 8;
	a->cap.max_recv_wr = PERF_RX_DEPTH + 8;
	a->cap.max_send_sge = 1;
	a->cap.max_recv_sge = 1;
	a->max_rd_atomic = PERF_RD_ATOMIC;
	a->max_dest_rd_atomic = PERF_RD_ATOMIC;
	a->fault_policy = !strcmp(run->o->policy, "drop") ? PW_FAULT_DROP :
			  !strcmp(run->o->policy, "notify") ? PW_FAULT_NOTIFY :
			  PW_FAULT_STALL;
}

static void ep_wire_info(const struct perf_ep *ep, struct perf_wire_info *w)
{
	const struct perf_run *run = ep->run;
	const struct perf_opts *o = run->o;

	memset(w, 0, sizeof(*w));
	w->test = (uint8_t)o->test;
	w->mr = (uint8_t)o->mr;
	w->atomic = (uint8_t)run->atomic;
	w->flags = (uint8_t)((o->all_sizes ? PERF_WF_ALL_SIZES : 0) |
			     (o->iters_set ? PERF_WF_ITERS_SET : 0) |
			     (!run->server && o->baseline ? PERF_WF_BASELINE : 0));
	w->qp_index = (uint16_t)ep->idx;
	w->qps = (uint16_t)run->qps;
	w->tcp_port = run->server ? run->tcp_port : 0;
	w->tx_depth = run->tx_depth;
	w->rkey = ep_rkey(ep);
	w->rkey_pinned = ep->mr_pinned ? ep->mr_pinned->rkey : 0;
	if (!run->server && o->vs_pinned)
		w->flags |= PERF_WF_VS_PINNED;
	if (!run->server && o->first_touch)
		w->flags |= PERF_WF_FIRST_TOUCH;
	if (!run->server && o->swapped)
		w->flags |= PERF_WF_SWAPPED;
	w->size = o->size;
	w->iters = o->iters;
	w->seed = ep->seed;
	w->data_addr = (uint64_t)(uintptr_t)ep->data;
	w->rx_addr = (uint64_t)(uintptr_t)ep->rx;
	w->area_len = ep->area;
}

/* Buffer, CQ and attributes of endpoint @idx; the QP comes later. */
static int ep_prepare(struct perf_run *run, unsigned int idx)
{
	struct perf_ep *ep = &run->eps[idx];
	int err;

	ep->run = run;
	ep->idx = idx;
	ep->seed = pattern_subseed(run->seed, idx);
	err = ep_setup_buffer(ep);
	if (err)
		return err;
	/* --swapped, hol: the server's regions to page out hold data */
	perf_swap_prepare(ep);
	if (perf_tests[run->o->test].bw)
		err = cq_waiter_init_shared(&ep->cqw, run->ctx,
					    (int)(run->tx_depth + PERF_RX_DEPTH + 32),
					    run->channel);
	else
		err = cq_waiter_init(&ep->cqw, run->ctx,
				     (int)(run->tx_depth + PERF_RX_DEPTH + 32),
				     run->o->busy_poll);
	if (err) {
		fail_lib("pw_create_cq", err);
		return err;
	}
	ep_fill_attr(ep);
	return 0;
}

/**
 * perf_post_recv() - post the next receive of @ep's sequence
 *
 * Data receives (into the rx area) come first, exactly @ep->data_recvs of
 * them; the one after is the control receive (into the ctrl area). Since
 * receives are consumed in order, the control message can only land in
 * the ctrl area and never clobbers payload that is still to be verified.
 * Past the control receive this posts nothing.
 *
 * Return: 0 or the negative errno of pw_post_recv().
 */
int perf_post_recv(struct perf_ep *ep)
{
	struct pw_recv_wr wr, *bad = NULL;
	struct pw_sge sge;
	int err;

	if (ep->recvs_posted > ep->data_recvs)
		return 0;
	if (ep->recvs_posted < ep->data_recvs) {
		sge.addr = (uint64_t)(uintptr_t)ep->rx;
		sge.length = (uint32_t)ep->area;
	} else {
		sge.addr = (uint64_t)(uintptr_t)(ep->ctrl + PERF_CTRL_SLOT);
		sge.length = PERF_CTRL_SLOT;
	}
	sge.lkey = ep->lkey;
	memset(&wr, 0, sizeof(wr));
	wr.wr_id = PERF_WRID_RECV | ep->recvs_posted;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	err = pw_post_recv(ep->qp, &wr, &bad);
	if (err) {
		fail_lib("pw_post_recv", err);
		return err;
	}
	ep->recvs_posted++;
	return 0;
}

/**
 * perf_server_listen() - start listening
 * @host:       address to bind (NULL: any)
 * @port:       port, 0 for an ephemeral one
 * @bound_port: the port actually bound
 */
int perf_server_listen(struct perf_run *run, const char *host, uint16_t port,
		       uint16_t *bound_port)
{
	int err;

	run->listener = pw_listen(run->ctx, host, port);
	if (!run->listener) {
		err = -errno;
		fail_lib("pw_listen", err);
		return err;
	}
	*bound_port = pw_listener_port(run->listener);
	return 0;
}

/*
 * The server learns the client's parameters from QP 0's private data (or,
 * for a TCP test, from connection 0's hello).
 */
int perf_server_adopt_client(struct perf_run *run,
			     const struct perf_wire_info *c)
{
	const struct perf_opts *o = run->o;
	int err;

	if (c->test != o->test) {
		perf_fail("client runs %s but this server runs %s; give both the same TEST",
			  perf_tests[c->test].name, perf_tests[o->test].name);
		return -EINVAL;
	}
	err = perf_plan_build(o->test, c->size, c->flags & PERF_WF_ALL_SIZES,
			      c->iters, c->flags & PERF_WF_ITERS_SET, c->qps,
			      &run->plan);
	if (err) {
		perf_fail("client sent an invalid size %llu",
			  (unsigned long long)c->size);
		return err;
	}
	if (c->flags & (PERF_WF_VS_PINNED | PERF_WF_FIRST_TOUCH | PERF_WF_SWAPPED))
		perf_plan_pair(&run->plan, o->test, c->flags & PERF_WF_ITERS_SET);
	if (c->flags & PERF_WF_FIRST_TOUCH)
		perf_plan_first_touch(&run->plan);
	if (c->flags & PERF_WF_SWAPPED)
		perf_plan_swapped(&run->plan);
	run->qps = c->qps;
	run->tx_depth = c->tx_depth;
	run->atomic = (enum perf_atomic_op)c->atomic;
	return 0;
}

/**
 * perf_server_accept() - accept the client's QPs and post their receives
 *
 * The number of QPs, sizes and iterations are the client's (from QP 0's
 * private data); the server's own -s/-a only size its buffers.
 */
int perf_server_accept(struct perf_run *run)
{
	uint8_t pdata[PERF_WIRE_INFO_LEN];
	struct perf_plan own = run->plan;
	struct pw_conn_param param;
	struct perf_wire_info mine;
	int err;

	for (unsigned int i = 0; i < run->qps; i++) {
		struct perf_ep *ep = &run->eps[i];

		err = ep_prepare(run, i);
		if (err)
			return err;
		ep_wire_info(ep, &mine);
		perf_wire_encode(&mine, pdata);
		memset(&param, 0, sizeof(param));
		param.private_data = pdata;
		param.private_data_len = sizeof(pdata);
		/* A standalone server waits for its first client forever. */
		param.timeout_ms = (i == 0 && !run->o->loopback) ? -1 :
				   PERF_LOOPBACK_ACCEPT_MS;
		ep->qp = pw_accept(run->listener, run->pd, &ep->attr, &param);
		if (!ep->qp) {
			err = -errno;
			fail_lib("pw_accept", err);
			return err;
		}
		err = perf_wire_decode(ep->qp->peer_private_data,
				       ep->qp->peer_private_data_len, &ep->peer);
		if (err) {
			perf_fail("QP %u: the client's connection data is not pagewire-perf's (%s)",
				  i, strerror(-err));
			return err;
		}
		if (i == 0) {
			err = perf_server_adopt_client(run, &ep->peer);
			if (err)
				return err;
			if ((ep->peer.flags & PERF_WF_BASELINE) &&
			    !run->tcp_port) {
				perf_fail("the client runs --baseline; start this server with --baseline too");
				return -EINVAL;
			}
			if (!(ep->peer.flags & PERF_WF_FIRST_TOUCH) != !run->o->first_touch) {
				perf_fail("the client and this server differ in --first-touch; give both the same options");
				return -EINVAL;
			}
			if (!(ep->peer.flags & PERF_WF_SWAPPED) != !run->o->swapped) {
				perf_fail("the client and this server differ in --swapped; give both the same options");
				return -EINVAL;
			}
			if (!(ep->peer.flags & PERF_WF_VS_PINNED) != !run->o->vs_pinned) {
				perf_fail(run->o->vs_pinned ?
					  "this server runs --vs-pinned but the client does not; give both the same options" :
					  "the client runs --vs-pinned; start this server with --vs-pinned too");
				return -EINVAL;
			}
		}
		if (ep->peer.qp_index != i) {
			perf_fail("QP %u: client sent QP index %u", i,
				  ep->peer.qp_index);
			return -EPROTO;
		}
		if (run->plan.max_size > ep->area) {
			perf_fail("client uses messages of %llu bytes but this server's buffers hold %llu; start the server with the same -s/-a",
				  (unsigned long long)run->plan.max_size,
				  (unsigned long long)own.max_size);
			return -EINVAL;
		}
		ep->data_recvs = perf_tests[run->o->test].server_recvs ?
				 run->plan.total_iters : 0;
		/* Everything the client may send first must find a receive. */
		for (unsigned int k = 0; k < PERF_RX_DEPTH; k++) {
			if (ep->recvs_posted > ep->data_recvs)
				break;
			err = perf_post_recv(ep);
			if (err)
				return err;
		}
	}
	return 0;
}

/**
 * perf_client_connect() - connect all QPs to the server and check its data
 */
int perf_client_connect(struct perf_run *run, const char *host, uint16_t port)
{
	uint8_t pdata[PERF_WIRE_INFO_LEN];
	struct pw_conn_param param;
	struct perf_wire_info mine;
	int err;

	for (unsigned int i = 0; i < run->qps; i++) {
		struct perf_ep *ep = &run->eps[i];
		const struct perf_wire_info *s = &ep->peer;

		err = ep_prepare(run, i);
		if (err)
			return err;
		ep_wire_info(ep, &mine);
		perf_wire_encode(&mine, pdata);
		memset(&param, 0, sizeof(param));
		param.private_data = pdata;
		param.private_data_len = sizeof(pdata);
		ep->qp = pw_connect(run->pd, &ep->attr, host, port, &param);
		if (!ep->qp) {
			err = -errno;
			fail_lib("pw_connect", err);
			if (err == -ECONNREFUSED)
				perf_fail("is a server running on %s port %u?",
					  host, port);
			return err;
		}
		err = perf_wire_decode(ep->qp->peer_private_data,
				       ep->qp->peer_private_data_len, &ep->peer);
		if (err) {
			perf_fail("QP %u: the server's connection data is not pagewire-perf's (%s)",
				  i, strerror(-err));
			return err;
		}
		if (s->test != run->o->test) {
			perf_fail("server runs %s but this client runs %s; give both the same TEST",
				  perf_tests[s->test].name,
				  perf_tests[run->o->test].name);
			return -EINVAL;
		}
		if (run->o->baseline && !s->tcp_port) {
			perf_fail("the server offers no TCP baseline; start it with --baseline too");
			return -EINVAL;
		}
		if (run->o->vs_pinned && !s->rkey_pinned) {
			perf_fail("the server has no pinned MR to compare with; start it with --vs-pinned too");
			return -EINVAL;
		}
		if (s->area_len < run->plan.max_size) {
			perf_fail("server buffers hold %llu bytes, messages need %llu; start the server with the same -s/-a",
				  (unsigned long long)s->area_len,
				  (unsigned long long)run->plan.max_size);
			return -EINVAL;
		}
		ep->data_recvs = perf_tests[run->o->test].half_rtt ?
				 run->plan.total_iters : 0;
	}
	return 0;
}

/**
 * perf_run_close() - destroy everything perf_run_open() and the connection
 * steps created; safe on a partially set up run. Failures to release are
 * reported (they would mean a library leak) but do not change the result.
 */
void perf_run_close(struct perf_run *run)
{
	int err;

	for (unsigned int i = 0; i < PERF_MAX_QPS; i++) {
		struct perf_ep *ep = &run->eps[i];

		if (ep->qp) {
			err = pw_destroy_qp(ep->qp);
			if (err)
				fail_lib("pw_destroy_qp", err);
			ep->qp = NULL;
		}
		if (ep->cqw.cq || ep->cqw.channel)
			cq_waiter_destroy(&ep->cqw);
		if (ep->mr) {
			err = pw_dereg_mr(ep->mr);
			if (err)
				fail_lib("pw_dereg_mr", err);
			ep->mr = NULL;
		}
		if (ep->mr_pinned) {
			err = pw_dereg_mr(ep->mr_pinned);
			if (err)
				fail_lib("pw_dereg_mr(pinned, --vs-pinned)", err);
			ep->mr_pinned = NULL;
		}
		if (ep->buf) {
			munmap(ep->buf, ep->buf_len);
			ep->buf = NULL;
		}
		perf_swap_release(ep);
		for (unsigned int s = 0; s < PERF_MAX_SIZES; s++) {
			free(ep->steps[s].lat_us);
			free(ep->steps[s].lat2_us);
			free(ep->steps[s].lat3_us);
			free(ep->steps[s].recs);
			ep->steps[s].lat_us = NULL;
			ep->steps[s].lat2_us = NULL;
			ep->steps[s].lat3_us = NULL;
			ep->steps[s].recs = NULL;
		}
	}
	perf_tcp_hol_free(run);
	if (run->channel) {
		/* After every CQ on it is gone. */
		err = pw_destroy_comp_channel(run->channel);
		if (err)
			fail_lib("pw_destroy_comp_channel", err);
		run->channel = NULL;
	}
	if (run->listener) {
		err = pw_close_listener(run->listener);
		if (err)
			fail_lib("pw_close_listener", err);
		run->listener = NULL;
	}
	if (run->implicit_mr) {
		err = pw_dereg_mr(run->implicit_mr);
		if (err)
			fail_lib("pw_dereg_mr(implicit)", err);
		run->implicit_mr = NULL;
	}
	if (run->pd) {
		err = pw_dealloc_pd(run->pd);
		if (err)
			fail_lib("pw_dealloc_pd", err);
		run->pd = NULL;
	}
	if (run->ctx) {
		err = pw_close(run->ctx);
		if (err)
			fail_lib("pw_close", err);
		run->ctx = NULL;
	}
}
