/* SPDX-License-Identifier: MIT */
/*
 * Statistics and output of pagewire-perf: perftest-like human tables, or
 * one JSON object per result line with --json (human text then goes to
 * stderr, so stdout carries JSON only).
 *
 * Units: MB = 10^6 bytes (as perftest), us = microseconds. Latency of
 * write_lat/send_lat is half the round trip, of read_lat/atomic_lat the
 * full operation time. tcp_lat reports half the round trip; as the
 * --baseline of read_lat/atomic_lat it measures the full round trip, so
 * that vs_tcp compares like with like.
 *
 * With --baseline every result line also carries the TCP figures of the
 * same size and vs_tcp: pagewire bw / TCP bw (bw tests, higher is better)
 * or pagewire p50 / TCP p50 (latency tests, lower is better).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "perf.h"

#define RULE "---------------------------------------------------------------------------------------"

/**
 * struct perf_result - one result line (one size, all QPs together)
 */
struct perf_result {
	uint64_t size;
	uint64_t iters;
	uint64_t msgs;
	double elapsed_s;
	double bw_MBps;
	double bw_peak_MBps;
	double msg_rate_Mpps;
	double lat_min;
	double lat_max;
	double lat_avg;
	double lat_stdev;
	double lat_p50;
	double lat_p99;
	double lat_p999;
	/* bw tests: the common interval and each QP's part of it */
	double share_s;
	double min_share;
	double max_share;
	double per_qp_MBps[PERF_MAX_QPS];
	/* --vs-pinned: the figure of the MR under test and of the pinned MR */
	double pair_main;
	double pair_pinned;
	/* fault_lat: the resident pages' p50 and p99 (lat_* are the fresh) */
	/* hol: B alone (lat_* are B while A ran) */
	double res_p50;
	double res_p99;
	/* --swapped, hol: pages not resident after the page-outs, of all */
	double swapped_frac;
	/* hol */
	uint64_t a_msgs;
	double a_MBps;
	size_t n_alone;
	size_t n_hol;
	size_t n_skipped;
	double hol_all_p99;
	/* --first-touch, --swapped: the server's platform rate */
	double plat_MBps;
	double plat_out_frac;
	uint64_t plat_kind;
	uint64_t plat_method;
	/* hol: the TCP reference (perf_tcp_hol.c) */
	double tcp_alone_p50;
	double tcp_alone_p99;
	double tcp_hol_p50;
	double tcp_hol_p99;
	size_t tcp_n_alone;
	size_t tcp_n_hol;
	double tcp_pace_MBps;
	double tcp_stream_MBps;
};

/* JSON has no nan/inf: anything non-finite becomes 0. */
static double finite_or_zero(double v)
{
	return isfinite(v) ? v : 0.0;
}

/* @a / @b, 0 when @b is not a positive figure (not measured). */
static double ratio(double a, double b)
{
	return b > 0 ? a / b : 0.0;
}

/*
 * The ratio to @resident a target reaches when each byte needs the
 * kernel's work at @plat MB/s first and the transfer at @resident, one
 * after the other (no overlap at all: what is left when every CPU is busy
 * with the transfer): plat / (plat + resident).
 */
static double serial_ratio(double plat, double resident)
{
	return plat > 0 && resident > 0 ? plat / (plat + resident) : 0.0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static int cmp_rec(const void *a, const void *b)
{
	const struct perf_rec *x = a, *y = b;

	return (x->t_ns > y->t_ns) - (x->t_ns < y->t_ns);
}

/* Nearest-rank percentile of sorted @v. */
static double percentile(const double *v, size_t n, double p)
{
	size_t rank = (size_t)ceil(p * (double)n);

	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return v[rank - 1];
}

/*
 * Peak bandwidth: the best message rate over any interval of the run that
 * holds at least a tenth of its messages, and at least twice what can be
 * in flight (window x QPs): messages completing inside a shorter interval
 * were mostly transmitted before it, which would inflate the rate.
 * Completion records of all QPs are merged on one time line first (per-QP
 * cumulative counts become increments). No such interval: peak = average.
 */
static double peak_rate(const struct perf_run *run, unsigned int s,
			uint64_t t0, uint64_t total)
{
	size_t n = 0, k = 0;
	struct perf_rec *m;
	double best = 0.0;

	for (unsigned int i = 0; i < run->qps; i++)
		n += run->eps[i].steps[s].nrecs;
	m = calloc(n + 1, sizeof(*m));
	if (!m)
		return 0.0;
	m[k++] = (struct perf_rec){ .t_ns = t0, .msgs = 0 };
	for (unsigned int i = 0; i < run->qps; i++) {
		const struct perf_step *st = &run->eps[i].steps[s];
		uint64_t prev = 0;

		for (size_t r = 0; r < st->nrecs; r++) {
			m[k].t_ns = st->recs[r].t_ns;
			m[k].msgs = st->recs[r].msgs - prev;
			prev = st->recs[r].msgs;
			k++;
		}
	}
	qsort(m + 1, k - 1, sizeof(*m), cmp_rec);
	for (size_t r = 1; r < k; r++)
		m[r].msgs += m[r - 1].msgs;	/* now cumulative */

	uint64_t need = total / 10;
	uint64_t inflight = 2ull * perf_window(run) * run->qps;

	if (perf_tests[run->o->test].tcp) {
		/* A send "completes" once the socket buffers hold it. */
		uint64_t size = run->plan.size[s];

		inflight = 2ull * run->qps *
			   ((perf_tcp_inflight_bytes() + size - 1) / size);
	}

	if (need < inflight)
		need = inflight;
	size_t j = 0;

	for (size_t r = 1; r < k; r++) {
		/* Latest start that still leaves @need messages. */
		while (j + 1 < r && m[r].msgs - m[j + 1].msgs >= need)
			j++;
		if (m[r].msgs - m[j].msgs < need || m[r].t_ns <= m[j].t_ns)
			continue;
		double rate = (double)(m[r].msgs - m[j].msgs) /
			      ((double)(m[r].t_ns - m[j].t_ns) / 1e9);
		if (rate > best)
			best = rate;
	}
	free(m);
	return best;
}

/*
 * Messages QP step @st had completed at time @t: linear between its
 * completion records (and (t_start, 0) before the first), since only
 * every cq_mod-th message has a record.
 */
static double msgs_at(const struct perf_step *st, uint64_t t)
{
	uint64_t pt = st->t_start, pm = 0;

	for (size_t r = 0; r < st->nrecs; r++) {
		const struct perf_rec *rec = &st->recs[r];

		if (rec->t_ns >= t) {
			if (rec->t_ns <= pt)
				return (double)rec->msgs;
			return (double)pm + (double)(rec->msgs - pm) *
			       (double)(t - pt) / (double)(rec->t_ns - pt);
		}
		pt = rec->t_ns;
		pm = rec->msgs;
	}
	return (double)pm;
}

/*
 * Per-QP shares of a bw step. Every QP has the same number of messages
 * and all start at the same instant, so up to the moment the first QP
 * completes its last message, every QP had work queued all the time:
 * that common interval [t_start, first t_end] is where a fair transport
 * gives each QP the same bytes. Each QP's bytes in it (interpolated
 * between completion records) over the mean of all QPs' is its share;
 * per_qp_MBps is its bytes over the interval's length. A starved QP
 * shows a share near 0 (and the QPs that finished early one near qps).
 */
static void compute_shares(const struct perf_run *run, unsigned int s,
			   uint64_t t0, struct perf_result *r)
{
	uint64_t t_first = UINT64_MAX;
	double got[PERF_MAX_QPS], sum = 0.0, mean, secs;

	for (unsigned int i = 0; i < run->qps; i++) {
		uint64_t te = run->eps[i].steps[s].t_end;

		if (te < t_first)
			t_first = te;
	}
	r->min_share = r->max_share = 1.0;
	if (t_first == UINT64_MAX || t_first <= t0)
		return;
	secs = (double)(t_first - t0) / 1e9;
	r->share_s = secs;
	for (unsigned int i = 0; i < run->qps; i++) {
		got[i] = msgs_at(&run->eps[i].steps[s], t_first) *
			 (double)r->size;
		sum += got[i];
		r->per_qp_MBps[i] = got[i] / secs / 1e6;
	}
	mean = sum / (double)run->qps;
	if (mean <= 0)
		return;
	r->min_share = r->max_share = got[0] / mean;
	for (unsigned int i = 1; i < run->qps; i++) {
		double sh = got[i] / mean;

		if (sh < r->min_share)
			r->min_share = sh;
		if (sh > r->max_share)
			r->max_share = sh;
	}
}

/*
 * --vs-pinned bandwidth: the client drains the pipeline between blocks
 * and signals each block's last WR, so block b runs from the record that
 * completed block b - 1 (or the start) to the one that completed it.
 * Each kind's rate is the sum over QPs of its messages over its time.
 */
static void compute_pair_bw(const struct perf_run *run, unsigned int s,
			    struct perf_result *r)
{
	uint64_t block = perf_pair_bw_block(run, s);
	double rate[2] = { 0, 0 };

	for (unsigned int i = 0; i < run->qps; i++) {
		const struct perf_step *st = &run->eps[i].steps[s];
		double t[2] = { 0, 0 }, m[2] = { 0, 0 };
		uint64_t t0 = st->t_start, m0 = 0;

		for (size_t k = 0; k < st->nrecs; k++) {
			uint64_t t1 = st->recs[k].t_ns, m1 = st->recs[k].msgs;
			unsigned int kind;

			/* --swapped: the block starts now, after its page-out */
			if (m1 == m0) {
				t0 = t1;
				continue;
			}
			if (m1 % block && m1 != st->msgs)
				continue;	/* inside a block */
			if (m1 <= m0)
				continue;
			kind = perf_pair_kind(m0, block);
			m[kind] += (double)(m1 - m0);
			t[kind] += (double)(t1 - t0);
			t0 = t1;
			m0 = m1;
		}
		for (int j = 0; j < 2; j++)
			if (t[j] > 0)
				rate[j] += m[j] * (double)r->size / (t[j] / 1e9) / 1e6;
	}
	r->pair_main = rate[0];
	r->pair_pinned = rate[1];
}

/* --vs-pinned latency: the p50 of each kind's samples. */
static int compute_pair_lat(const struct perf_run *run, unsigned int s,
			    struct perf_result *r, size_t nlat)
{
	double *v[2];
	size_t n[2] = { 0, 0 };

	v[0] = malloc(nlat * sizeof(double));
	v[1] = malloc(nlat * sizeof(double));
	if (!v[0] || !v[1]) {
		free(v[0]);
		free(v[1]);
		return -1;
	}
	for (unsigned int i = 0; i < run->qps; i++) {
		const struct perf_step *st = &run->eps[i].steps[s];

		for (size_t k = 0; k < st->nlat; k++) {
			unsigned int kind = perf_pair_kind(k, PERF_PAIR_LAT_BLOCK);

			v[kind][n[kind]++] = st->lat_us[k];
		}
	}
	for (int j = 0; j < 2; j++)
		qsort(v[j], n[j], sizeof(double), cmp_double);
	r->pair_main = n[0] ? percentile(v[0], n[0], 0.50) : 0.0;
	r->pair_pinned = n[1] ? percentile(v[1], n[1], 0.50) : 0.0;
	free(v[0]);
	free(v[1]);
	return 0;
}

/* fault_lat: percentiles of the resident-page samples (hol: B alone). */
static int compute_resident(const struct perf_run *run, unsigned int s,
			    struct perf_result *r)
{
	size_t n = 0, k = 0;
	double *v;

	for (unsigned int i = 0; i < run->qps; i++)
		n += run->eps[i].steps[s].nlat2;
	v = malloc((n ? n : 1) * sizeof(double));
	if (!v)
		return -1;
	for (unsigned int i = 0; i < run->qps; i++) {
		const struct perf_step *st = &run->eps[i].steps[s];

		if (st->lat2_us && st->nlat2) {
			memcpy(v + k, st->lat2_us, st->nlat2 * sizeof(double));
			k += st->nlat2;
		}
	}
	r->n_alone = k;
	qsort(v, k, sizeof(double), cmp_double);
	r->res_p50 = k ? percentile(v, k, 0.50) : 0.0;
	r->res_p99 = k ? percentile(v, k, 0.99) : 0.0;
	free(v);
	return 0;
}

/**
 * perf_hol_a_MBps() - hol: QP A's WRITE bandwidth while it was streaming
 * (its with-A phases, page-out requests left out), size @s
 */
double perf_hol_a_MBps(const struct perf_run *run, unsigned int s)
{
	const struct perf_step *a = &run->eps[0].steps[s];

	return a->busy_ns ? (double)a->msgs * (double)run->plan.size[s] /
			    ((double)a->busy_ns / 1e9) / 1e6 : 0.0;
}

/* The p50 and p99 of @n samples @v (sorted here); 0 without any. */
static void p50_p99(double *v, size_t n, double *p50, double *p99)
{
	*p50 = *p99 = 0.0;
	if (!v || !n)
		return;
	qsort(v, n, sizeof(*v), cmp_double);
	*p50 = percentile(v, n, 0.50);
	*p99 = percentile(v, n, 0.99);
}

/*
 * hol: A's figures (QP 0), B's p99 while A ran counting the samples left
 * out because they overlapped a page-out request too, and the TCP
 * reference's percentiles.
 */
static int compute_hol(const struct perf_run *run, unsigned int s,
		       struct perf_result *r)
{
	const struct perf_step *a = &run->eps[0].steps[s];
	const struct perf_step *b = &run->eps[1].steps[s];
	const struct perf_tcp_hol *t = &run->tcp_hol;
	size_t n = b->nlat + b->nlat3;
	double *v;

	r->a_msgs = a->msgs;
	r->a_MBps = perf_hol_a_MBps(run, s);
	p50_p99(t->alone_us, t->n_alone, &r->tcp_alone_p50, &r->tcp_alone_p99);
	p50_p99(t->hol_us, t->n_hol, &r->tcp_hol_p50, &r->tcp_hol_p99);
	r->tcp_n_alone = t->n_alone;
	r->tcp_n_hol = t->n_hol;
	r->tcp_pace_MBps = t->pace_MBps;
	r->tcp_stream_MBps = t->stream_MBps;
	r->n_hol = b->nlat;
	r->n_skipped = b->nlat3;
	if (!n)
		return 0;
	v = malloc(n * sizeof(double));
	if (!v)
		return -1;
	if (b->nlat)
		memcpy(v, b->lat_us, b->nlat * sizeof(double));
	if (b->nlat3)
		memcpy(v + b->nlat, b->lat3_us, b->nlat3 * sizeof(double));
	qsort(v, n, sizeof(double), cmp_double);
	r->hol_all_p99 = percentile(v, n, 0.99);
	free(v);
	return 0;
}

static int compute(const struct perf_run *run, unsigned int s,
		   struct perf_result *r)
{
	uint64_t t0 = UINT64_MAX, t1 = 0;
	size_t nlat = 0, k = 0;
	double *lat;

	memset(r, 0, sizeof(*r));
	r->size = run->plan.size[s];
	r->iters = run->plan.iters[s];
	for (unsigned int i = 0; i < run->qps; i++) {
		const struct perf_step *st = &run->eps[i].steps[s];

		r->msgs += st->msgs;
		nlat += st->nlat;
		if (st->t_start < t0)
			t0 = st->t_start;
		if (st->t_end > t1)
			t1 = st->t_end;
	}
	r->elapsed_s = t1 > t0 ? (double)(t1 - t0) / 1e9 : 0.0;
	if (!perf_tests[run->o->test].tcp)
		r->swapped_frac = perf_swapped_out_frac(run);
	if (run->o->first_touch || run->o->swapped) {
		const struct perf_platform *pl = &run->eps[0].plat;

		r->plat_kind = pl->kind;
		r->plat_method = pl->method;
		r->plat_MBps = perf_plat_MBps(pl);
		r->plat_out_frac = pl->total ? (double)pl->out / (double)pl->total : 0.0;
	}
	if (r->elapsed_s > 0) {
		r->msg_rate_Mpps = (double)r->msgs / r->elapsed_s / 1e6;
		r->bw_MBps = (double)r->msgs * (double)r->size / r->elapsed_s / 1e6;
	}
	if (perf_tests[run->o->test].bw) {
		double peak = peak_rate(run, s, t0, r->msgs) * (double)r->size / 1e6;

		/* A window shorter than the run cannot be slower on average. */
		r->bw_peak_MBps = peak > r->bw_MBps ? peak : r->bw_MBps;
		compute_shares(run, s, t0, r);
		if (run->o->vs_pinned || run->o->first_touch || run->o->swapped)
			compute_pair_bw(run, s, r);
		return 0;
	}
	if ((run->o->test == PERF_FAULT_LAT || run->o->test == PERF_HOL) &&
	    compute_resident(run, s, r))
		return -1;
	if (run->o->test == PERF_HOL && compute_hol(run, s, r))
		return -1;
	if (!nlat)
		return 0;
	if (run->o->vs_pinned && compute_pair_lat(run, s, r, nlat))
		return -1;
	lat = malloc(nlat * sizeof(*lat));
	if (!lat)
		return -1;
	for (unsigned int i = 0; i < run->qps; i++) {
		const struct perf_step *st = &run->eps[i].steps[s];

		if (!st->nlat)
			continue;	/* hol: QP A has no samples */
		memcpy(lat + k, st->lat_us, st->nlat * sizeof(*lat));
		k += st->nlat;
	}
	qsort(lat, nlat, sizeof(*lat), cmp_double);

	double sum = 0.0, sq = 0.0;

	for (size_t i = 0; i < nlat; i++)
		sum += lat[i];
	r->lat_avg = sum / (double)nlat;
	for (size_t i = 0; i < nlat; i++)
		sq += (lat[i] - r->lat_avg) * (lat[i] - r->lat_avg);
	r->lat_stdev = sqrt(sq / (double)nlat);
	r->lat_min = lat[0];
	r->lat_max = lat[nlat - 1];
	r->lat_p50 = percentile(lat, nlat, 0.50);
	r->lat_p99 = percentile(lat, nlat, 0.99);
	r->lat_p999 = percentile(lat, nlat, 0.999);
	free(lat);
	return 0;
}

static const char *completion_mode(const struct perf_opts *o)
{
	return o->busy_poll ? "busy_poll" : "blocking";
}

/* Header of a tcp_bw / tcp_lat run. */
static void tcp_header(const struct perf_run *run)
{
	const struct perf_opts *o = run->o;
	const struct perf_test_info *t = &perf_tests[o->test];
	FILE *f = run->human;

	fprintf(f, "%s\n", RULE);
	fprintf(f, "                    %s\n", t->title);
	fprintf(f, " Transport        : TCP sockets, TCP_NODELAY, default buffers\n");
	fprintf(f, " Connections      : %-12u Completion mode : %s\n",
		run->qps, o->busy_poll ? "busy poll (recv MSG_DONTWAIT)" :
					 "blocking (recv)");
	if (t->half_rtt)
		fprintf(f, " Latency          : half round trip (ping-pong)\n");
	fprintf(f, " Data ex. method  : TCP hello\n");
	if (run->server)
		return;
	fprintf(f, "%s\n", RULE);
	if (t->bw)
		fprintf(f, " #bytes     #iterations    BW peak[MB/sec]    BW average[MB/sec]   MsgRate[Mpps]   Share min/max\n");
	else
		fprintf(f, " #bytes #iterations    t_min[usec]    t_max[usec]  t_typical[usec]    t_avg[usec]    t_stdev[usec]   99%% percentile[usec]   99.9%% percentile[usec]\n");
	fflush(f);
}

/**
 * perf_report_header() - perftest-like description of the run
 */
void perf_report_header(const struct perf_run *run)
{
	const struct perf_opts *o = run->o;
	const struct perf_test_info *t = &perf_tests[o->test];
	FILE *f = run->human;

	if (run->quiet)
		return;
	if (t->tcp) {
		tcp_header(run);
		return;
	}
	fprintf(f, "%s\n", RULE);
	fprintf(f, "                    %s\n", t->title);
	fprintf(f, " Transport        : pagewire RC over TCP\n");
	fprintf(f, " Number of qps    : %-12u Completion mode : %s\n",
		run->qps, o->busy_poll ? "busy poll" : "blocking (channel)");
	if (t->bw)
		fprintf(f, " TX depth         : %-12u CQ moderation   : %u\n",
			perf_window(run), perf_cq_mod(run));
	fprintf(f, " Memory region    : %-12s Fault policy    : %s\n",
		perf_mr_names[o->mr], o->policy);
	if (o->test == PERF_ATOMIC_LAT)
		fprintf(f, " Atomic type      : %s\n",
			perf_atomic_names[run->atomic]);
	if (o->test == PERF_HOL)
		fprintf(f, " QP A             : %llu-byte WRITEs, %u in flight, into %u slots paged out before every pass\n"
			" QP B             : %d-byte signaled WRITEs, one at a time; %d phases alone, %d with A\n",
			(unsigned long long)run->plan.size[0],
			run->tx_depth < PERF_HOL_WINDOW ? run->tx_depth : PERF_HOL_WINDOW,
			PERF_HOL_A_SLOTS, PERF_HOL_B_SIZE, PERF_HOL_PHASES,
			PERF_HOL_PHASES);
	if (o->swapped)
		fprintf(f, " Target           : blocks into a region paged out before each, against blocks into a resident one\n");
	if (t->half_rtt)
		fprintf(f, " Latency          : half round trip (ping-pong)\n");
	else if (!t->bw)
		fprintf(f, " Latency          : full operation time\n");
	fprintf(f, " Data ex. method  : pagewire CM private data\n");
	if (run->baseline)
		fprintf(f, " Baseline         : %s, %s, interleaved size by size (TCP first)\n",
			perf_tests[run->baseline->o->test].name,
			run->baseline->tcp_full_rtt ? "full round trip" :
			t->bw ? "same sizes and iterations" : "half round trip");
	fprintf(f, "%s\n", RULE);
	for (unsigned int i = 0; i < run->qps; i++) {
		const struct perf_ep *ep = &run->eps[i];

		if (!ep->qp)
			continue;
		fprintf(f, " local address:  QPN 0x%06x RKey 0x%08x VAddr 0x%016llx\n",
			ep->qp->qp_num,
			ep->mr ? ep->mr->rkey : run->implicit_mr->rkey,
			(unsigned long long)(uintptr_t)ep->data);
		fprintf(f, " remote address: QPN 0x%06x RKey 0x%08x VAddr 0x%016llx\n",
			ep->qp->dest_qp_num, ep->peer.rkey,
			(unsigned long long)ep->peer.data_addr);
	}
	if (run->server)
		return;
	fprintf(f, "%s\n", RULE);
	if (t->bw)
		fprintf(f, " #bytes     #iterations    BW peak[MB/sec]    BW average[MB/sec]   MsgRate[Mpps]   Share min/max%s\n",
			run->baseline ? "   TCP BW[MB/sec]   vs_tcp" : "");
	else
		fprintf(f, " #bytes #iterations    t_min[usec]    t_max[usec]  t_typical[usec]    t_avg[usec]    t_stdev[usec]   99%% percentile[usec]   99.9%% percentile[usec]%s\n",
			run->baseline ? "   TCP t_typical[usec]   vs_tcp" : "");
	fflush(f);
}

/* pagewire / TCP: bandwidth ratio, or ratio of the medians. */
static double vs_tcp(const struct perf_run *run, const struct perf_result *r,
		     const struct perf_result *b)
{
	if (perf_tests[run->o->test].bw)
		return b->bw_MBps > 0 ? r->bw_MBps / b->bw_MBps : 0.0;
	return b->lat_p50 > 0 ? r->lat_p50 / b->lat_p50 : 0.0;
}

/* @b: the baseline's result of the same size, or NULL. */
static void print_human(const struct perf_run *run, const struct perf_result *r,
			const struct perf_result *b)
{
	FILE *f = run->human;
	/* The last column is padded only when the TCP columns follow. */
	bool bw = perf_tests[run->o->test].bw;
	int w = b ? (bw ? 16 : 25) : 0;

	if (bw)
		fprintf(f, " %-10llu %-10llu     %-18.2f %-20.2f %-15.6f %.2f/%-*.2f",
			(unsigned long long)r->size,
			(unsigned long long)r->iters, r->bw_peak_MBps,
			r->bw_MBps, r->msg_rate_Mpps, r->min_share,
			b ? 11 : 0, r->max_share);
	else
		fprintf(f, " %-6llu %-10llu     %-14.2f %-12.2f %-17.2f %-14.2f %-15.2f %-22.2f %-*.2f",
			(unsigned long long)r->size,
			(unsigned long long)r->iters, r->lat_min, r->lat_max,
			r->lat_p50, r->lat_avg, r->lat_stdev, r->lat_p99,
			w, r->lat_p999);
	if (b && bw)
		fprintf(f, "%-17.2f%.3f", b->bw_MBps, vs_tcp(run, r, b));
	else if (b)
		fprintf(f, "%-22.2f%.3f", b->lat_p50, vs_tcp(run, r, b));
	fprintf(f, "\n");
	if (run->o->test == PERF_FAULT_LAT)
		fprintf(f, "   fresh pages p50 %.2f / p99 %.2f us, resident p50 %.2f / p99 %.2f us: a fault adds %.2f us (p50), %.2f us (p99)\n",
			r->lat_p50, r->lat_p99, r->res_p50, r->res_p99,
			r->lat_p50 - r->res_p50, r->lat_p99 - r->res_p99);
	if (run->o->first_touch)
		fprintf(f, "   first touch %.2f MB/sec, resident %.2f MB/sec, ratio %.3f\n",
			r->pair_main, r->pair_pinned,
			r->pair_pinned > 0 ? r->pair_main / r->pair_pinned : 0.0);
	if (run->o->swapped)
		fprintf(f, "   swapped %.2f MB/sec, resident %.2f MB/sec, ratio %.3f; %.1f%% of the pages paged out were not resident\n",
			r->pair_main, r->pair_pinned,
			r->pair_pinned > 0 ? r->pair_main / r->pair_pinned : 0.0,
			100.0 * r->swapped_frac);
	if ((run->o->first_touch || run->o->swapped) && !r->plat_kind)
		fprintf(f, "   %s rate of the kernel alone: not measured (see the server's messages)\n",
			run->o->swapped ? "swap-in" : "page population");
	else if (run->o->first_touch)
		fprintf(f, "   page population alone (server, same run, %s in %llu-byte calls): %.2f MB/sec = %.3fx resident\n"
			"     (%.3fx without any overlap with the transfer); first touch gets %.3f of it\n",
			perf_plat_method_name(r->plat_method),
			(unsigned long long)r->size, r->plat_MBps,
			ratio(r->plat_MBps, r->pair_pinned),
			serial_ratio(r->plat_MBps, r->pair_pinned),
			ratio(r->pair_main, r->plat_MBps));
	else if (run->o->swapped)
		fprintf(f, "   swap-in alone (server, same run, MADV_PAGEOUT then %s in %llu-byte calls; %.1f%% of its pages were out):\n"
			"     %.2f MB/sec = %.3fx resident (%.3fx without any overlap with the transfer); swapped gets %.3f of it\n",
			perf_plat_method_name(r->plat_method),
			(unsigned long long)r->size, 100.0 * r->plat_out_frac,
			r->plat_MBps, ratio(r->plat_MBps, r->pair_pinned),
			serial_ratio(r->plat_MBps, r->pair_pinned),
			ratio(r->pair_main, r->plat_MBps));
	if (run->o->test == PERF_HOL)
		fprintf(f, "   B with A: p50 %.2f / p99 %.2f us (%zu samples; %zu more overlapped a page-out, p99 with them %.2f us)\n"
			"   B alone:  p50 %.2f / p99 %.2f us (%zu samples); p99 ratio %.3f\n"
			"   A: %llu WRITEs, %.2f MB/sec while streaming; %.1f%% of the pages paged out were not resident\n",
			r->lat_p50, r->lat_p99, r->n_hol, r->n_skipped,
			r->hol_all_p99, r->res_p50, r->res_p99, r->n_alone,
			r->res_p99 > 0 ? r->lat_p99 / r->res_p99 : 0.0,
			(unsigned long long)r->a_msgs, r->a_MBps,
			100.0 * r->swapped_frac);
	if (run->o->test == PERF_HOL)
		fprintf(f, "   TCP on 127.0.0.1, same run: 8-byte ping-pong p50 %.2f / p99 %.2f us alone (%zu samples),\n"
			"     p50 %.2f / p99 %.2f us (%zu samples) next to a stream of %llu-byte messages paced to A's %.2f MB/sec (moved %.2f MB/sec);\n"
			"     TCP p99 ratio %.3f; pagewire's p99 ratio is %.3fx the machine's own\n",
			r->tcp_alone_p50, r->tcp_alone_p99, r->tcp_n_alone,
			r->tcp_hol_p50, r->tcp_hol_p99, r->tcp_n_hol,
			(unsigned long long)r->size, r->tcp_pace_MBps,
			r->tcp_stream_MBps,
			ratio(r->tcp_hol_p99, r->tcp_alone_p99),
			ratio(ratio(r->lat_p99, r->res_p99),
			      ratio(r->tcp_hol_p99, r->tcp_alone_p99)));
	if (run->o->vs_pinned && bw)
		fprintf(f, "   paired with a pinned MR: %s %.2f MB/sec, pinned %.2f MB/sec, ratio %.3f\n",
			perf_mr_names[run->o->mr], r->pair_main, r->pair_pinned,
			r->pair_pinned > 0 ? r->pair_main / r->pair_pinned : 0.0);
	else if (run->o->vs_pinned)
		fprintf(f, "   paired with a pinned MR: %s p50 %.2f us, pinned p50 %.2f us, difference %+.2f us\n",
			perf_mr_names[run->o->mr], r->pair_main, r->pair_pinned,
			r->pair_main - r->pair_pinned);
	fflush(f);
}

static void stats_obj(const char *name, const struct pw_stats *s)
{
	printf("\"%s\":{\"faults\":%llu,\"fault_failed\":%llu,"
	       "\"fault_pages\":%llu,\"fault_around_pages\":%llu,"
	       "\"fault_major\":%llu,\"fault_inline\":%llu,\"fault_ns\":%llu,"
	       "\"stall_ns\":%llu,\"naks_sent\":%llu,\"naks_received\":%llu,"
	       "\"retransmitted_bytes\":%llu,\"dropped_bytes\":%llu}",
	       name, (unsigned long long)s->faults,
	       (unsigned long long)s->fault_failed,
	       (unsigned long long)s->fault_pages,
	       (unsigned long long)s->fault_around_pages,
	       (unsigned long long)s->fault_major,
	       (unsigned long long)s->fault_inline,
	       (unsigned long long)s->fault_ns, (unsigned long long)s->stall_ns,
	       (unsigned long long)s->naks_sent,
	       (unsigned long long)s->naks_received,
	       (unsigned long long)s->retransmitted_bytes,
	       (unsigned long long)s->dropped_bytes);
}

/* --stats: both contexts' counters at the end of the run. */
static void print_stats_json(const struct perf_run *run)
{
	struct pw_stats c;

	memset(&c, 0, sizeof(c));
	pw_query_stats(run->ctx, &c, sizeof(c));
	printf(",\"stats\":{");
	stats_obj("client", &c);
	printf(",");
	stats_obj("server", &run->eps[0].peer_stats);
	printf("}");
}

static void print_json(const struct perf_run *run, const struct perf_result *r,
		       const struct perf_result *b)
{
	const struct perf_opts *o = run->o;
	const struct perf_test_info *t = &perf_tests[o->test];

	/* A TCP test has no MR and no fault policy. */
	printf("{\"test\":\"%s\",\"size\":%llu,\"mr\":\"%s\",\"policy\":\"%s\","
	       "\"iters\":%llu,\"qps\":%u,\"completion\":\"%s\","
	       "\"msgs\":%llu,\"elapsed_s\":%.6f,\"msg_rate_Mpps\":%.6f",
	       t->name, (unsigned long long)r->size,
	       t->tcp ? "none" : perf_mr_names[o->mr],
	       t->tcp ? "none" : o->policy, (unsigned long long)r->iters,
	       run->qps,
	       completion_mode(o), (unsigned long long)r->msgs,
	       finite_or_zero(r->elapsed_s), finite_or_zero(r->msg_rate_Mpps));
	if (t->bw) {
		if (!t->tcp)
			printf(",\"tx_depth\":%u,\"cq_mod\":%u", perf_window(run),
			       perf_cq_mod(run));
		printf(",\"bw_MBps\":%.3f,\"bw_peak_MBps\":%.3f",
		       finite_or_zero(r->bw_MBps),
		       finite_or_zero(r->bw_peak_MBps));
		printf(",\"share_interval_s\":%.6f,\"min_share\":%.4f,"
		       "\"max_share\":%.4f,\"per_qp_MBps\":[",
		       finite_or_zero(r->share_s), finite_or_zero(r->min_share),
		       finite_or_zero(r->max_share));
		for (unsigned int i = 0; i < run->qps; i++)
			printf("%s%.3f", i ? "," : "",
			       finite_or_zero(r->per_qp_MBps[i]));
		printf("]");
	} else {
		printf(",\"lat_kind\":\"%s\",\"lat_p50_us\":%.3f,\"lat_p99_us\":%.3f,"
		       "\"lat_p999_us\":%.3f,\"lat_avg_us\":%.3f,\"lat_min_us\":%.3f,"
		       "\"lat_max_us\":%.3f,\"lat_stdev_us\":%.3f",
		       t->half_rtt ? "half_rtt" : "full",
		       finite_or_zero(r->lat_p50), finite_or_zero(r->lat_p99),
		       finite_or_zero(r->lat_p999), finite_or_zero(r->lat_avg),
		       finite_or_zero(r->lat_min), finite_or_zero(r->lat_max),
		       finite_or_zero(r->lat_stdev));
	}
	if (o->test == PERF_ATOMIC_LAT)
		printf(",\"atomic\":\"%s\"", perf_atomic_names[run->atomic]);
	if (o->test == PERF_FAULT_LAT)
		printf(",\"resident_p50_us\":%.3f,\"resident_p99_us\":%.3f,"
		       "\"added_p50_us\":%.3f,\"added_p99_us\":%.3f",
		       finite_or_zero(r->res_p50), finite_or_zero(r->res_p99),
		       finite_or_zero(r->lat_p50 - r->res_p50),
		       finite_or_zero(r->lat_p99 - r->res_p99));
	if (b && t->bw)
		printf(",\"tcp_bw_MBps\":%.3f,\"tcp_bw_peak_MBps\":%.3f,"
		       "\"tcp_min_share\":%.4f,\"tcp_max_share\":%.4f",
		       finite_or_zero(b->bw_MBps), finite_or_zero(b->bw_peak_MBps),
		       finite_or_zero(b->min_share), finite_or_zero(b->max_share));
	else if (b)
		printf(",\"tcp_lat_kind\":\"%s\",\"tcp_lat_p50_us\":%.3f,"
		       "\"tcp_lat_p99_us\":%.3f",
		       run->baseline->tcp_full_rtt ? "full_rtt" : "half_rtt",
		       finite_or_zero(b->lat_p50), finite_or_zero(b->lat_p99));
	if (b)
		printf(",\"vs_tcp\":%.4f", finite_or_zero(vs_tcp(run, r, b)));
	if (o->stats && !t->tcp)
		print_stats_json(run);
	if (o->first_touch)
		printf(",\"first_touch_bw_MBps\":%.3f,\"resident_bw_MBps\":%.3f,"
		       "\"vs_resident\":%.4f", finite_or_zero(r->pair_main),
		       finite_or_zero(r->pair_pinned),
		       r->pair_pinned > 0 ? r->pair_main / r->pair_pinned : 0.0);
	if (o->first_touch)
		printf(",\"populate_MBps\":%.3f,\"populate_method\":\"%s\","
		       "\"populate_vs_resident\":%.4f,"
		       "\"populate_serial_vs_resident\":%.4f,"
		       "\"first_touch_vs_populate\":%.4f",
		       finite_or_zero(r->plat_MBps),
		       r->plat_kind ? perf_plat_method_name(r->plat_method) : "none",
		       finite_or_zero(ratio(r->plat_MBps, r->pair_pinned)),
		       finite_or_zero(serial_ratio(r->plat_MBps, r->pair_pinned)),
		       finite_or_zero(ratio(r->pair_main, r->plat_MBps)));
	if (o->swapped)
		printf(",\"swapped_bw_MBps\":%.3f,\"resident_bw_MBps\":%.3f,"
		       "\"vs_resident\":%.4f,\"swapped_out_frac\":%.4f",
		       finite_or_zero(r->pair_main), finite_or_zero(r->pair_pinned),
		       r->pair_pinned > 0 ? r->pair_main / r->pair_pinned : 0.0,
		       finite_or_zero(r->swapped_frac));
	if (o->swapped)
		printf(",\"swapin_MBps\":%.3f,\"swapin_method\":\"%s\","
		       "\"swapin_out_frac\":%.4f,\"swapin_vs_resident\":%.4f,"
		       "\"swapin_serial_vs_resident\":%.4f,"
		       "\"swapped_vs_swapin\":%.4f",
		       finite_or_zero(r->plat_MBps),
		       r->plat_kind ? perf_plat_method_name(r->plat_method) : "none",
		       finite_or_zero(r->plat_out_frac),
		       finite_or_zero(ratio(r->plat_MBps, r->pair_pinned)),
		       finite_or_zero(serial_ratio(r->plat_MBps, r->pair_pinned)),
		       finite_or_zero(ratio(r->pair_main, r->plat_MBps)));
	if (o->test == PERF_HOL)
		printf(",\"b_size\":%d,\"hol_p50_us\":%.3f,\"hol_p99_us\":%.3f,"
		       "\"alone_p50_us\":%.3f,\"alone_p99_us\":%.3f,"
		       "\"p99_ratio\":%.4f,\"hol_all_p99_us\":%.3f,"
		       "\"b_samples_hol\":%zu,\"b_samples_alone\":%zu,"
		       "\"b_skipped_pageout\":%zu,\"a_msgs\":%llu,"
		       "\"a_MBps\":%.3f,\"swapped_out_frac\":%.4f",
		       PERF_HOL_B_SIZE, finite_or_zero(r->lat_p50),
		       finite_or_zero(r->lat_p99), finite_or_zero(r->res_p50),
		       finite_or_zero(r->res_p99),
		       r->res_p99 > 0 ? r->lat_p99 / r->res_p99 : 0.0,
		       finite_or_zero(r->hol_all_p99), r->n_hol, r->n_alone,
		       r->n_skipped, (unsigned long long)r->a_msgs,
		       finite_or_zero(r->a_MBps), finite_or_zero(r->swapped_frac));
	if (o->test == PERF_HOL)
		printf(",\"tcp_alone_p50_us\":%.3f,\"tcp_alone_p99_us\":%.3f,"
		       "\"tcp_hol_p50_us\":%.3f,\"tcp_hol_p99_us\":%.3f,"
		       "\"tcp_p99_ratio\":%.4f,\"p99_ratio_vs_tcp\":%.4f,"
		       "\"tcp_samples_alone\":%zu,\"tcp_samples_hol\":%zu,"
		       "\"tcp_pace_MBps\":%.3f,\"tcp_stream_MBps\":%.3f",
		       finite_or_zero(r->tcp_alone_p50),
		       finite_or_zero(r->tcp_alone_p99),
		       finite_or_zero(r->tcp_hol_p50),
		       finite_or_zero(r->tcp_hol_p99),
		       finite_or_zero(ratio(r->tcp_hol_p99, r->tcp_alone_p99)),
		       finite_or_zero(ratio(ratio(r->lat_p99, r->res_p99),
					    ratio(r->tcp_hol_p99, r->tcp_alone_p99))),
		       r->tcp_n_alone, r->tcp_n_hol,
		       finite_or_zero(r->tcp_pace_MBps),
		       finite_or_zero(r->tcp_stream_MBps));
	if (o->vs_pinned && t->bw)
		printf(",\"pair_bw_MBps\":%.3f,\"pinned_bw_MBps\":%.3f,"
		       "\"vs_pinned\":%.4f", finite_or_zero(r->pair_main),
		       finite_or_zero(r->pair_pinned),
		       r->pair_pinned > 0 ? r->pair_main / r->pair_pinned : 0.0);
	else if (o->vs_pinned)
		printf(",\"pair_lat_p50_us\":%.3f,\"pinned_lat_p50_us\":%.3f,"
		       "\"vs_pinned_us\":%.3f", finite_or_zero(r->pair_main),
		       finite_or_zero(r->pair_pinned),
		       finite_or_zero(r->pair_main - r->pair_pinned));
	printf("}\n");
	fflush(stdout);
}

/**
 * perf_report_steps() - one result line per size
 *
 * Return: 0, or -ENOMEM.
 */
int perf_report_steps(const struct perf_run *run)
{
	struct perf_result r, b;

	for (unsigned int s = 0; s < run->plan.n; s++) {
		if (compute(run, s, &r))
			return -ENOMEM;
		if (run->baseline && compute(run->baseline, s, &b))
			return -ENOMEM;
		if (run->o->json)
			print_json(run, &r, run->baseline ? &b : NULL);
		else
			print_human(run, &r, run->baseline ? &b : NULL);
	}
	return 0;
}

void perf_report_footer(const struct perf_run *run)
{
	if (run->quiet)
		return;
	fprintf(run->human, "%s\n", RULE);
	fflush(run->human);
}
