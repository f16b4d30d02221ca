/* SPDX-License-Identifier: MIT */
/*
 * The platform rates that bound `write_bw --first-touch` and `--swapped`,
 * measured by the server in the same run, once the timed phase is over
 * (after the client's DONE and the verification, before the verdict), so
 * that they neither disturb the timing nor come from another moment of a
 * shared machine:
 *
 *   populate  every byte a first-touch block writes needs a zeroed page
 *             first: the time the kernel alone takes to populate fresh
 *             anonymous memory (MADV_POPULATE_WRITE, clear_page), in
 *             calls of the run's message size;
 *   swapin    every byte a swapped block writes needs its page swapped
 *             in first: the time the kernel alone takes to swap in
 *             memory just paged out with MADV_PAGEOUT, the same way.
 *
 * A paging target cannot go faster than that even with the population
 * fully overlapped with the transfer, so rate / resident bandwidth is the
 * best ratio the platform allows, and the measured bandwidth / rate says
 * how much of it the library gets.
 *
 * Each rate is the median of PERF_PLAT_REPEAT regions of PERF_PLAT_REGION
 * bytes, mapped as the perf buffers are (private, anonymous,
 * MAP_NORESERVE), each a fresh mapping unmapped after. The swap-in
 * regions hold pattern bytes, neither zero nor repeating: zram keeps
 * zero-filled and same-filled pages without storing them, which would
 * make their swap-in look far cheaper than the test data's.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pattern.h"
#include "perf.h"
#include "tool_util.h"

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

const char *perf_plat_method_name(uint64_t method)
{
	return method == PERF_PLAT_TOUCH ? "touch" : "madv_populate_write";
}

/* The rate of @pl in MB/s (10^6 bytes), 0 when not measured. */
double perf_plat_MBps(const struct perf_platform *pl)
{
	if (pl->kind == PERF_PLAT_NONE || !pl->ns)
		return 0.0;
	return (double)pl->bytes * 1e3 / (double)pl->ns;
}

/*
 * Does this kernel have MADV_POPULATE_WRITE (Linux >= 5.14)? Older ones
 * answer EINVAL. Probed on a page of its own, so that no timed call ever
 * fails.
 */
static enum perf_plat_method probe_method(size_t page)
{
	enum perf_plat_method m = PERF_PLAT_MADV;
	void *p = mmap(NULL, page, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		return m;	/* the measurement's own mmap reports it */
	if (madvise(p, page, MADV_POPULATE_WRITE) && errno == EINVAL)
		m = PERF_PLAT_TOUCH;
	munmap(p, page);
	return m;
}

/* Populate [@p, @p + @len) for writing, the way @method says. */
static int populate(uint8_t *p, size_t len, size_t page,
		    enum perf_plat_method method)
{
	if (method == PERF_PLAT_MADV)
		return madvise(p, len, MADV_POPULATE_WRITE) ? -errno : 0;
	for (size_t off = 0; off < len; off += page)
		((volatile uint8_t *)p)[off] = 1;
	return 0;
}

/*
 * One region: map it, for a swap-in fill it with pattern bytes and page
 * it out, then time its population in calls of @chunk bytes; unmap.
 */
static int measure_region(enum perf_plat_kind kind,
			  enum perf_plat_method method, size_t chunk,
			  size_t page, uint64_t seed, struct perf_platform *pl)
{
	size_t len = PERF_PLAT_REGION;
	uint64_t t0;
	uint8_t *p;
	int err = 0;

	memset(pl, 0, sizeof(*pl));
	p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		err = -errno;
		perf_fail("platform rate: mmap of %zu bytes failed: %s", len,
			  strerror(-err));
		return err;
	}
	if (kind == PERF_PLAT_SWAPIN) {
		pattern_fill(p, len, seed, 0);
		if (madvise(p, len, MADV_PAGEOUT)) {
			err = -errno;
			perf_fail("platform rate: madvise(MADV_PAGEOUT) failed: %s",
				  strerror(-err));
			goto out;
		}
		err = perf_count_not_resident(p, len, page, &pl->out);
		if (err) {
			perf_fail("platform rate: mincore failed: %s",
				  strerror(-err));
			goto out;
		}
		pl->total = len / page;
	}
	t0 = tool_now_ns();
	for (size_t off = 0; off < len && !err; off += chunk)
		err = populate(p + off, len - off < chunk ? len - off : chunk,
			       page, method);
	pl->ns = tool_now_ns() - t0;
	if (err) {
		perf_fail("platform rate: madvise(MADV_POPULATE_WRITE) failed: %s",
			  strerror(-err));
		goto out;
	}
	pl->kind = kind;
	pl->method = method;
	pl->bytes = len;
out:
	munmap(p, len);
	return err;
}

/* Regions by rate, for the median. */
static int cmp_rate(const void *a, const void *b)
{
	double x = perf_plat_MBps(a), y = perf_plat_MBps(b);

	return (x > y) - (x < y);
}

/**
 * perf_platform_measure() - the server's platform rate of the run
 * @ep: the QP of a --first-touch or --swapped run (its result goes to
 *      @ep->plat, which the RESULT carries to the client)
 *
 * --first-touch measures page population of fresh memory, --swapped
 * swap-in; calls of the run's message size (at least a page). Does
 * nothing for other runs. A failure is reported, and leaves @ep->plat
 * unmeasured (the run itself is not failed: its data was verified).
 *
 * Return: 0, or the negative errno of the failure.
 */
int perf_platform_measure(struct perf_ep *ep)
{
	const struct perf_run *run = ep->run;
	struct perf_platform r[PERF_PLAT_REPEAT];
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t chunk = (size_t)run->plan.size[0];
	enum perf_plat_kind kind;
	enum perf_plat_method method;
	int err = 0;

	memset(&ep->plat, 0, sizeof(ep->plat));
	if (run->o->first_touch)
		kind = PERF_PLAT_POPULATE;
	else if (run->o->swapped)
		kind = PERF_PLAT_SWAPIN;
	else
		return 0;
	chunk = (chunk + page - 1) / page * page;
	if (chunk > PERF_PLAT_REGION)
		chunk = PERF_PLAT_REGION;
	method = probe_method(page);
	for (unsigned int i = 0; i < PERF_PLAT_REPEAT && !err; i++)
		err = measure_region(kind, method, chunk, page,
				     pattern_subseed(run->seed, 0x706c6174 + i),
				     &r[i]);
	if (err)
		return err;
	qsort(r, PERF_PLAT_REPEAT, sizeof(r[0]), cmp_rate);
	ep->plat = r[PERF_PLAT_REPEAT / 2];
	return 0;
}
