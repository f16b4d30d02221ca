/* SPDX-License-Identifier: MIT */
/*
 * Swapped-out target memory for `write_bw --swapped` and `hol`: whether
 * the machine has swap at all, the server's preparation of its rx area,
 * and the server's side of a region request (perf_ctrl.c): verify what
 * the client wrote into a range, then page the range out with
 * MADV_PAGEOUT and count with mincore() how much really went out.
 *
 * MADV_PAGEOUT (Linux >= 5.4) reclaims the range's pages at once. On
 * anonymous memory it does nothing without swap, which is why both
 * tests skip (exit 77, CTest's skip code) when none is configured, and
 * why the reply carries what mincore() saw: the client reports it as
 * swapped_out_frac, so a run where little went out says so.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pattern.h"
#include "perf.h"

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

/* Pages looked at per mincore() call. */
#define MINCORE_CHUNK	4096

/**
 * perf_swap_available() - is any swap area configured (and not full)?
 *
 * /proc/swaps lists the active swap areas after a header line; without
 * it (no procfs), /proc/meminfo's SwapFree.
 */
bool perf_swap_available(void)
{
	char line[512];
	unsigned long long kb;
	bool found = false;
	FILE *f = fopen("/proc/swaps", "r");

	if (f) {
		int lines = 0;

		while (fgets(line, sizeof(line), f))
			lines++;
		fclose(f);
		if (lines <= 1)
			return false;
	}
	/* swap listed (or unknown): is any of it free? */
	f = fopen("/proc/meminfo", "r");
	if (!f)
		return true;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "SwapFree: %llu kB", &kb) == 1) {
			found = kb > 0;
			break;
		}
	}
	fclose(f);
	return found;
}

/**
 * perf_swap_check_or_skip() - the swap requirement of --swapped and hol
 *
 * On the side whose memory gets paged out (the server, and so also a
 * --loopback run): without swap, print why on stderr and return
 * PERF_EXIT_SKIP. A remote client checks nothing: the swap that matters
 * is the server's.
 *
 * Return: 0 to go on, or PERF_EXIT_SKIP.
 */
int perf_swap_check_or_skip(const struct perf_opts *o)
{
	if (!o->swapped && o->test != PERF_HOL)
		return 0;
	if (o->host || perf_swap_available())
		return 0;
	fprintf(stderr, "SKIP: %s needs swap (none configured, or none free; tests/scripts/with_zram_swap.sh sets one up as root)\n",
		o->swapped ? "--swapped" : "hol");
	return PERF_EXIT_SKIP;
}

/* The server's pattern for its untouched rx area: not the client's. */
static uint64_t prefill_seed(const struct perf_ep *ep)
{
	return pattern_subseed(ep->seed, 0x5157);
}

/**
 * perf_swap_prepare() - the server's rx area before a --swapped or hol run
 *
 * The regions that get paged out must hold something first (MADV_PAGEOUT
 * skips pages never touched), and the resident region of --swapped must
 * not take its first touch inside a timed block: the server writes its
 * own pattern over the rx area (hol: QP A's only; B writes 8 bytes).
 * With --swapped the resident region is also put in the MR's page table
 * ahead of time (pw_advise_mr), as a resident buffer would be.
 */
void perf_swap_prepare(struct perf_ep *ep)
{
	struct perf_run *run = ep->run;
	struct pw_sge sge;
	int err;

	if (!run->server || !(run->o->swapped ||
			      (run->o->test == PERF_HOL && ep->idx == 0)))
		return;
	pattern_fill(ep->rx, ep->area, prefill_seed(ep), 0);
	if (!run->o->swapped || run->o->mr == PERF_MR_PINNED)
		return;
	sge.addr = (uint64_t)(uintptr_t)ep->rx;
	sge.length = (uint32_t)(ep->area < UINT32_MAX ? ep->area : UINT32_MAX);
	sge.lkey = ep->lkey;
	err = pw_advise_mr(run->pd, PW_ADVISE_MR_ADVICE_PREFETCH_WRITE,
			   PW_ADVISE_MR_FLAG_FLUSH, &sge, 1);
	if (err)	/* only a warm-up: the first resident block faults */
		perf_fail("QP %u: warning: pw_advise_mr of the rx area failed: %s (%s)",
			  ep->idx, strerror(-err), pw_last_error());
}

/* Release what perf_swap_serve_region() allocated. */
void perf_swap_release(struct perf_ep *ep)
{
	if (ep->ref)
		munmap(ep->ref, ep->ref_len);
	ep->ref = NULL;
	ep->ref_len = 0;
}

/*
 * The first @len bytes of the client's data-area pattern (what its
 * WRITEs carry), made on first use. Return: NULL when out of memory.
 */
static const uint8_t *client_ref(struct perf_ep *ep, size_t len)
{
	if (ep->ref_len >= len)
		return ep->ref;
	perf_swap_release(ep);
	ep->ref = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ep->ref == MAP_FAILED) {
		ep->ref = NULL;
		return NULL;
	}
	ep->ref_len = len;
	pattern_fill(ep->ref, len, ep->peer.seed, 0);
	return ep->ref;
}

/**
 * perf_count_not_resident() - pages of [@p, @p + @len) (page-aligned) that
 * mincore() says are not resident
 *
 * Return: 0 (*@out set), or a negative errno from mincore().
 */
int perf_count_not_resident(uint8_t *p, size_t len, size_t page,
			    uint64_t *out)
{
	unsigned char vec[MINCORE_CHUNK];

	*out = 0;
	for (size_t off = 0; off < len; off += MINCORE_CHUNK * page) {
		size_t c = len - off < MINCORE_CHUNK * page ? len - off :
			   MINCORE_CHUNK * page;

		if (mincore(p + off, c, vec))
			return -errno;
		for (size_t i = 0; i < c / page; i++)
			*out += !(vec[i] & 1);
	}
	return 0;
}

/**
 * perf_swap_serve_region() - the server's side of a region request
 *
 * Verify first (the pages are still resident then), then page out the
 * whole pages inside the range. A failure is reported here, recorded in
 * @ep->region_status (the end-of-run verdict) and sent back in @rp; the
 * client then ends the run.
 */
void perf_swap_serve_region(struct perf_ep *ep, const struct perf_region_req *rq,
			    struct perf_region_rep *rp)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	memset(rp, 0, sizeof(*rp));
	if (!rq->size || !rq->mod || rq->len > ep->area ||
	    rq->off > ep->area - rq->len || rq->slots > rq->len / rq->size ||
	    rq->mod > ep->peer.area_len / rq->size) {
		perf_fail("QP %u: malformed region request (off %llu, len %llu, size %llu, slots %llu)",
			  ep->idx, (unsigned long long)rq->off,
			  (unsigned long long)rq->len,
			  (unsigned long long)rq->size,
			  (unsigned long long)rq->slots);
		rp->status = PERF_REGION_BAD_REQ;
		ep->region_status = -EPROTO;
		return;
	}
	if (rq->flags & PERF_REGION_VERIFY) {
		const uint8_t *ref = client_ref(ep, rq->mod * rq->size);

		for (uint64_t j = 0; j < rq->slots; j++) {
			uint64_t at = rq->off + j * rq->size;
			uint64_t src = ((j + rq->rot) % rq->mod) * rq->size;
			long long bad;

			if (ref && !memcmp(ep->rx + at, ref + src, rq->size))
				continue;
			bad = pattern_check(ep->rx + at, rq->size, ep->peer.seed,
					    src);
			if (bad < 0)
				continue;
			perf_fail("QP %u: message into slot %llu of the region at %llu did not land: byte %lld is 0x%02x, expected 0x%02x",
				  ep->idx, (unsigned long long)j,
				  (unsigned long long)rq->off, bad,
				  ep->rx[at + (uint64_t)bad],
				  pattern_byte(ep->peer.seed, src + (uint64_t)bad));
			rp->status = PERF_REGION_BAD_DATA;
			rp->detail = at + (uint64_t)bad + 1;
			ep->region_status = -EIO;
			return;
		}
		ep->regions_verified++;
	}
	if (rq->flags & PERF_REGION_PAGEOUT) {
		uintptr_t a = (uintptr_t)(ep->rx + rq->off);
		uintptr_t b = a + rq->len;

		/* whole pages only: never a neighbour's */
		a = (a + page - 1) / page * page;
		b = b / page * page;
		if (b <= a)
			return;
		if (madvise((void *)a, b - a, MADV_PAGEOUT)) {
			int e = errno;

			perf_fail("QP %u: madvise(MADV_PAGEOUT) failed: %s%s",
				  ep->idx, strerror(e),
				  e == EINVAL ? " (Linux >= 5.4 needed)" : "");
			rp->status = PERF_REGION_MADV_FAILED;
			rp->detail = (uint64_t)e;
			ep->region_status = -e;
			return;
		}
		rp->total = (b - a) / page;
		if (perf_count_not_resident((uint8_t *)a, b - a, page, &rp->out)) {
			perf_fail("QP %u: warning: mincore failed: %s", ep->idx,
				  strerror(errno));
			rp->out = 0;
		}
	}
}

/* The client's view: pages not resident after the page-outs, of all. */
double perf_swapped_out_frac(const struct perf_run *run)
{
	uint64_t out = 0, total = 0;

	for (unsigned int i = 0; i < run->qps; i++) {
		out += run->eps[i].pageout_pages;
		total += run->eps[i].pageout_total;
	}
	return total ? (double)out / (double)total : 0.0;
}
