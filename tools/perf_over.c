/* SPDX-License-Identifier: MIT */
/*
 * pagewire-perf overcommit: the 2008 thread's debate (stall, drop or
 * notify; docs/design.md) in one number each. A forked target registers a
 * region --ratio times its --budget and this process (the initiator)
 * writes and reads random 4 KiB pages across it for --seconds, 16 ops in
 * flight on one QP, then every byte is verified: the target hashes each
 * page, the initiator each page it expects (its own record of what it
 * wrote where).
 *
 * --policy: pinned (the region is registered pinned: populated and
 * mlocked, no budget; its failure is the answer when memory is short),
 * stall, drop, notify (ODP with the budget, and that fault policy on the
 * target's QP).
 *
 * Page contents: a page written for the v-th time holds words
 * mix(page, v, i); a page never written is zero. A READ is checked at
 * once against the version it must see (RC: ops execute in posting
 * order). The target's peak RSS (VmHWM) is taken before its verification
 * pass, which touches the whole region.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cq_wait.h"
#include "perf.h"
#include "tool_util.h"

#define OV_PG		4096u
#define OV_DEPTH	16
#define OV_MAX_LAT	(1u << 22)	/* latency samples kept */

/* target -> initiator, once set up */
struct ov_hello {
	int32_t err;		/* 0, or errno of the registration */
	uint16_t port;
	uint32_t rkey;
	uint64_t addr;
	uint64_t len;
	char why[160];
};

/* target -> initiator, at the end (followed by the per-page hashes) */
struct ov_result {
	uint64_t peak_rss;
	uint64_t faults, invalidations, notifications, wasted, stall_ns;
	uint64_t resident;
};

static uint64_t mix(uint64_t page, uint64_t ver, uint64_t i)
{
	uint64_t x = page * 0x9E3779B97F4A7C15ull ^ ver * 0xC2B2AE3D27D4EB4Full ^
		     (i + 1) * 0x165667B19E3779F9ull;

	x ^= x >> 31;
	x *= 0xBF58476D1CE4E5B9ull;
	return x ^ (x >> 29);
}

static void fill_page(uint64_t *p, uint64_t page, uint64_t ver)
{
	for (unsigned int i = 0; i < OV_PG / 8; i++)
		p[i] = ver ? mix(page, ver, i) : 0;
}

static uint64_t hash_page(const uint64_t *p)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (unsigned int i = 0; i < OV_PG / 8; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

static uint64_t vm_hwm(void)
{
	char line[256];
	unsigned long long kb = 0;
	FILE *f = fopen("/proc/self/status", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmHWM: %llu kB", &kb) == 1)
			break;
	fclose(f);
	return (uint64_t)kb * 1024;
}

static bool xfer(int fd, void *p, size_t len, bool out)
{
	uint8_t *b = p;

	while (len) {
		ssize_t n = out ? write(fd, b, len) : read(fd, b, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		b += n;
		len -= (size_t)n;
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* target (child)                                                       */
/* ------------------------------------------------------------------ */

static int target_main(const struct perf_opts *o, int fd, uint64_t len)
{
	bool pinned = !strcmp(o->policy, "pinned");
	struct pw_context_attr attr = {
		.fault_policy = !strcmp(o->policy, "drop") ? PW_FAULT_DROP :
				!strcmp(o->policy, "notify") ? PW_FAULT_NOTIFY :
				PW_FAULT_STALL,
		.mem_budget = pinned ? 0 : o->budget,
	};
	struct ov_hello hi = { 0 };
	struct ov_result res = { 0 };
	struct pw_context *ctx;
	struct pw_pd *pd;
	struct pw_cq *cq;
	struct pw_listener *l;
	struct pw_mr *mr = NULL;
	struct pw_qp_init_attr qa = { 0 };
	struct pw_conn_param cp = { .timeout_ms = 20000 };
	struct pw_qp *qp;
	struct pw_stats st;
	uint64_t *hashes;
	uint8_t *buf, done;

	ctx = pw_open(&attr);
	pd = ctx ? pw_alloc_pd(ctx) : NULL;
	cq = pd ? pw_create_cq(ctx, 64, NULL, NULL, 0) : NULL;
	l = cq ? pw_listen(ctx, "127.0.0.1", 0) : NULL;
	buf = mmap(NULL, len, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (!l || buf == MAP_FAILED) {
		hi.err = errno ? errno : EIO;
		snprintf(hi.why, sizeof(hi.why), "target setup: %s", pw_last_error());
		xfer(fd, &hi, sizeof(hi), true);
		return 1;
	}
	mr = pw_reg_mr(pd, buf, len, PW_ACCESS_LOCAL_WRITE | PW_ACCESS_REMOTE_WRITE |
		       PW_ACCESS_REMOTE_READ | (pinned ? 0 : PW_ACCESS_ON_DEMAND));
	if (!mr) {
		hi.err = errno;
		snprintf(hi.why, sizeof(hi.why), "%s", pw_last_error());
		xfer(fd, &hi, sizeof(hi), true);
		return 0;	/* an answer, not a crash */
	}
	hi.port = pw_listener_port(l);
	hi.rkey = mr->rkey;
	hi.addr = (uint64_t)(uintptr_t)buf;
	hi.len = len;
	if (!xfer(fd, &hi, sizeof(hi), true))
		return 1;
	qa.send_cq = qa.recv_cq = cq;
	qp = pw_accept(l, pd, &qa, &cp);
	if (!qp)
		return 1;
	if (!xfer(fd, &done, 1, false))
		return 1;
	/* the peak before the verification pass, which touches everything */
	res.peak_rss = vm_hwm();
	pw_query_stats(ctx, &st, sizeof(st));
	res.faults = st.faults;
	res.invalidations = st.reclaimed_pages;
	res.notifications = st.notifications_sent;
	res.wasted = st.dropped_bytes;
	res.stall_ns = st.stall_ns;
	res.resident = st.resident_bytes;
	hashes = malloc(len / OV_PG * sizeof(*hashes));
	if (!hashes)
		return 1;
	for (uint64_t p = 0; p < len / OV_PG; p++) {
		hashes[p] = hash_page((const uint64_t *)(buf + p * OV_PG));
		/* keep the pass itself within memory: drop what was hashed */
		if (!pinned && p % 256 == 255)
			madvise(buf + (p - 255) * OV_PG, 256 * OV_PG, MADV_PAGEOUT);
	}
	if (!xfer(fd, &res, sizeof(res), true) ||
	    !xfer(fd, hashes, len / OV_PG * sizeof(*hashes), true))
		return 1;
	free(hashes);
	pw_destroy_qp(qp);
	pw_dereg_mr(mr);
	pw_close_listener(l);
	pw_destroy_cq(cq);
	pw_dealloc_pd(pd);
	pw_close(ctx);
	return 0;
}

/* ------------------------------------------------------------------ */
/* initiator                                                            */
/* ------------------------------------------------------------------ */

struct ov_op {
	uint64_t page, ver, t0;
	bool write;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void report_error(const struct perf_opts *o, const char *why)
{
	if (o->json)
		printf("{\"test\":\"overcommit\",\"policy\":\"%s\",\"budget_bytes\":%llu,"
		       "\"verified\":false,\"error\":\"%s\"}\n", o->policy,
		       (unsigned long long)o->budget, why);
	else
		printf("overcommit --policy=%s: %s\n", o->policy, why);
	fflush(stdout);
}

int perf_over_run(const struct perf_opts *o_in)
{
	struct perf_opts ov = *o_in;
	const struct perf_opts *o = &ov;
	uint64_t len, pages, *ver = NULL, *lat = NULL, nlat = 0, *want = NULL;
	uint64_t ops = 0, bad_reads = 0, bad_pages = 0, t_start, t_end;
	int sv[2], status, ret = PERF_EXIT_FAIL;
	struct ov_hello hi;
	struct ov_result res;
	struct ov_op slot[OV_DEPTH];
	struct pw_context *ctx = NULL;
	struct pw_pd *pd = NULL;
	struct cq_waiter cw = { 0 };
	struct pw_cq *cq = NULL;
	struct pw_qp *qp = NULL;
	struct pw_mr *smr = NULL;
	struct pw_qp_init_attr qa = { 0 };
	struct pw_stats st;
	uint8_t *sbuf = MAP_FAILED, done = 1;
	uint32_t x = 2463534242u;
	unsigned int inflight = 0, next = 0;
	pid_t pid;

	if (!ov.budget)
		ov.budget = 64ull << 20;
	if (!ov.ratio)
		ov.ratio = 8;
	if (!ov.seconds)
		ov.seconds = 10;
	len = ov.budget * ov.ratio;
	pages = len / OV_PG;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return PERF_EXIT_FAIL;
	fflush(stdout);
	pid = fork();	/* before any context: the child starts clean */
	if (pid < 0)
		return PERF_EXIT_FAIL;
	if (pid == 0) {
		close(sv[0]);
		_exit(target_main(o, sv[1], len));
	}
	close(sv[1]);
	if (!xfer(sv[0], &hi, sizeof(hi), false)) {
		waitpid(pid, &status, 0);
		report_error(o, WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL ?
			     "the target was killed (out of memory?) while registering" :
			     "the target died while registering");
		return o->json ? 0 : PERF_EXIT_FAIL;
	}
	if (hi.err) {
		char why[256];

		snprintf(why, sizeof(why), "registration of %llu bytes failed: %s (%s)",
			 (unsigned long long)len, strerror(hi.err), hi.why);
		for (char *c = why; *c; c++)
			if (*c == '"' || *c == '\\')
				*c = '\'';
		waitpid(pid, &status, 0);
		report_error(o, why);
		return o->json ? 0 : PERF_EXIT_FAIL;
	}

	ver = calloc(pages, sizeof(*ver));
	want = malloc(pages * sizeof(*want));
	lat = malloc(OV_MAX_LAT * sizeof(*lat));
	ctx = pw_open(NULL);
	pd = ctx ? pw_alloc_pd(ctx) : NULL;
	if (pd && cq_waiter_init(&cw, ctx, 64, false) == 0)
		cq = cw.cq;
	sbuf = mmap(NULL, 2 * OV_DEPTH * OV_PG, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	smr = cq && sbuf != MAP_FAILED ?
	      pw_reg_mr(pd, sbuf, 2 * OV_DEPTH * OV_PG, PW_ACCESS_LOCAL_WRITE) : NULL;
	qa.send_cq = qa.recv_cq = cq;
	qa.cap.max_send_wr = 64;
	qp = smr ? pw_connect(pd, &qa, "127.0.0.1", hi.port, NULL) : NULL;
	if (!ver || !want || !lat || !qp) {
		perf_fail("overcommit: initiator setup: %s", pw_last_error());
		goto out;
	}

	t_start = tool_now_ns();
	t_end = t_start + (uint64_t)ov.seconds * 1000000000ull;
	for (;;) {
		struct pw_wc wc;
		int n;

		while (inflight < OV_DEPTH && tool_now_ns() < t_end) {
			struct ov_op *op = &slot[next];
			uint8_t *s = sbuf + (size_t)next * 2 * OV_PG;
			int rc;

			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			op->page = x % pages;
			op->write = x & (1u << 31);
			if (op->write) {
				op->ver = ++ver[op->page];
				fill_page((uint64_t *)s, op->page, op->ver);
			} else {
				op->ver = ver[op->page];
			}
			op->t0 = tool_now_ns();
			rc = pw_post_send(qp, &(struct pw_send_wr){
				.wr_id = next,
				.opcode = op->write ? PW_WR_RDMA_WRITE : PW_WR_RDMA_READ,
				.send_flags = PW_SEND_SIGNALED,
				.num_sge = 1,
				.sg_list = &(struct pw_sge){ .addr = (uint64_t)(uintptr_t)s,
					.length = OV_PG, .lkey = smr->lkey },
				.wr.rdma = { .remote_addr = hi.addr + op->page * OV_PG,
					     .rkey = hi.rkey },
			}, NULL);
			if (rc) {
				perf_fail("overcommit: pw_post_send: %s", strerror(-rc));
				goto out;
			}
			inflight++;
			next = (next + 1) % OV_DEPTH;
		}
		if (!inflight)
			break;
		n = cq_wait(&cw, &wc, 1, 30000);	/* blocking: no spinning */
		if (n <= 0) {
			report_error(o, n ? "waiting for a completion failed" :
				     "no completion in 30 s");
			goto out;
		}
		if (wc.status != PW_WC_SUCCESS) {
			char why[160];

			snprintf(why, sizeof(why), "a %s completed with %s",
				 slot[wc.wr_id].write ? "WRITE" : "READ",
				 pw_wc_status_str(wc.status));
			report_error(o, why);
			ret = o->json ? 0 : PERF_EXIT_FAIL;
			goto out;
		}
		{
			struct ov_op *op = &slot[wc.wr_id];
			uint64_t chk[OV_PG / 8];

			if (nlat < OV_MAX_LAT)
				lat[nlat++] = tool_now_ns() - op->t0;
			if (!op->write) {
				/*
				 * The version when it was posted, or a later
				 * one: an unfenced WRITE after a READ may pass
				 * it (IBA ordering; verbs' FENCE flag), here
				 * as on hardware.
				 */
				uint64_t v = op->ver;

				for (;; v++) {
					fill_page(chk, op->page, v);
					if (!memcmp(chk, sbuf + wc.wr_id * 2 * OV_PG, OV_PG))
						break;
					if (v >= ver[op->page]) {
						bad_reads++;
						break;
					}
				}
			}
			ops++;
			inflight--;
		}
	}
	t_end = tool_now_ns();

	/* the end: the target hashes every page, we compare */
	if (!xfer(sv[0], &done, 1, true) || !xfer(sv[0], &res, sizeof(res), false) ||
	    !xfer(sv[0], want, pages * sizeof(*want), false)) {
		report_error(o, "the target died before the verification");
		goto out;
	}
	for (uint64_t p = 0; p < pages; p++) {
		uint64_t chk[OV_PG / 8];

		fill_page(chk, p, ver[p]);
		if (hash_page(chk) != want[p])
			bad_pages++;
	}
	pw_query_stats(ctx, &st, sizeof(st));
	qsort(lat, nlat, sizeof(*lat), cmp_u64);
	{
		double secs = (double)(t_end - t_start) / 1e9;
		double p50 = nlat ? (double)lat[nlat / 2] / 1000.0 : 0;
		double p99 = nlat ? (double)lat[(size_t)((double)(nlat - 1) * 0.99)] / 1000.0 : 0;
		bool verified = !bad_reads && !bad_pages;

		if (o->json)
			printf("{\"test\":\"overcommit\",\"policy\":\"%s\",\"seconds\":%.2f,"
			       "\"ops\":%llu,\"ops_per_s\":%.1f,\"bw_MBps\":%.2f,"
			       "\"lat_p50_us\":%.2f,\"lat_p99_us\":%.2f,\"faults\":%llu,"
			       "\"invalidations\":%llu,\"notifications\":%llu,"
			       "\"retransmitted_bytes\":%llu,\"wasted_bytes\":%llu,"
			       "\"stall_ns\":%llu,\"fault_in_sent\":%llu,"
			       "\"peak_rss_bytes\":%llu,\"resident_bytes\":%llu,"
			       "\"budget_bytes\":%llu,\"region_bytes\":%llu,"
			       "\"bad_reads\":%llu,\"bad_pages\":%llu,\"verified\":%s}\n",
			       o->policy, secs, (unsigned long long)ops, (double)ops / secs,
			       (double)ops * OV_PG / secs / 1e6, p50, p99,
			       (unsigned long long)res.faults,
			       (unsigned long long)res.invalidations,
			       (unsigned long long)res.notifications,
			       (unsigned long long)st.retransmitted_bytes,
			       (unsigned long long)res.wasted,
			       (unsigned long long)res.stall_ns,
			       (unsigned long long)st.fault_in_sent,
			       (unsigned long long)res.peak_rss,
			       (unsigned long long)res.resident,
			       (unsigned long long)(strcmp(o->policy, "pinned") ? ov.budget : 0),
			       (unsigned long long)len, (unsigned long long)bad_reads,
			       (unsigned long long)bad_pages, verified ? "true" : "false");
		else
			printf("overcommit --policy=%s: %.0f ops/s, %.1f MB/s, p50 %.1f us, "
			       "p99 %.1f us, faults %llu, invalidations %llu, notifications "
			       "%llu, resent %llu B, wasted %llu B, stall %.3f s, target peak "
			       "RSS %llu MiB (budget %llu MiB, region %llu MiB), %s\n",
			       o->policy, (double)ops / secs, (double)ops * OV_PG / secs / 1e6,
			       p50, p99, (unsigned long long)res.faults,
			       (unsigned long long)res.invalidations,
			       (unsigned long long)res.notifications,
			       (unsigned long long)st.retransmitted_bytes,
			       (unsigned long long)res.wasted, (double)res.stall_ns / 1e9,
			       (unsigned long long)(res.peak_rss >> 20),
			       (unsigned long long)(ov.budget >> 20),
			       (unsigned long long)(len >> 20),
			       verified ? "every byte verified" : "DATA ERRORS");
		fflush(stdout);
		ret = verified ? 0 : PERF_EXIT_FAIL;
	}
out:
	if (qp)
		pw_destroy_qp(qp);
	if (smr)
		pw_dereg_mr(smr);
	if (sbuf != MAP_FAILED)
		munmap(sbuf, 2 * OV_DEPTH * OV_PG);
	if (cq)
		cq_waiter_destroy(&cw);
	if (pd)
		pw_dealloc_pd(pd);
	if (ctx)
		pw_close(ctx);
	close(sv[0]);
	if (waitpid(pid, &status, 0) == pid && ret == 0 &&
	    !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
		ret = PERF_EXIT_FAIL;
	free(ver);
	free(want);
	free(lat);
	return ret;
}
