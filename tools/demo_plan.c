/* SPDX-License-Identifier: MIT */
/*
 * pagewire-demo's plan (a pure function of the seed) and the three small
 * messages the processes exchange. All encodings are little-endian:
 *
 * Connection private data, target -> initiator (DEMO_PDATA_LEN):
 *   0 u32 magic "PWDM"   4 u32 version (1)
 *   8 u64 region addr   16 u64 region length   24 u32 rkey   28 u32 0
 *
 * Seed message, initiator -> target, a SEND (DEMO_SEED_MSG_LEN):
 *   0 u32 magic "PWDS"   4 u32 version (1)
 *   8 u64 seed          16 u64 region length
 *  24 u32 writes        28 u32 atomic targets
 *
 * Report, target -> initiator, a SEND (DEMO_REPORT_MSG_LEN):
 *   0 u32 magic "PWDR"   4 u32 status (0 = verified)
 *   8 u64 ranges checked 16 u64 ranges wrong  24 u64 first wrong range
 *  32 u64 RSS bytes     40 u64 registration ns 48 u64 0
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo.h"
#include "pattern.h"
#include "tool_util.h"

#define DEMO_MAGIC_PDATA	0x4d445750u	/* "PWDM" */
#define DEMO_MAGIC_SEED		0x53445750u	/* "PWDS" */
#define DEMO_MAGIC_REPORT	0x52445750u	/* "PWDR" */
#define DEMO_VERSION		1

void demo_err(const char *who, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, DEMO_PROG ": %s: ", who);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/*
 * Write sizes are log-uniform over 8 B .. 512 KiB (so small and large
 * messages are equally represented) with one in 64 exactly 1 MiB: about
 * 65 KiB on average, ~190 MiB for the default 3000 writes.
 */
static uint32_t pick_len(struct pattern_rng *r)
{
	unsigned int e;

	if (pattern_rng_below(r, 64) == 0)
		return DEMO_MAX_WRITE;
	e = 3 + (unsigned int)pattern_rng_below(r, 16);	/* 2^3 .. 2^18 */
	return (1u << e) + (uint32_t)pattern_rng_below(r, 1u << e);
}

/**
 * demo_plan_build() - derive all ranges from @seed
 *
 * Return: 0, -EINVAL when the region is too small for the ranges, or
 * -ENOMEM.
 */
int demo_plan_build(uint64_t seed, uint64_t region_len, unsigned int writes,
		    unsigned int atomics, struct demo_plan *p)
{
	struct pattern_rng rng = { .state = pattern_subseed(seed, 0xdead) };
	size_t n = (size_t)writes + atomics;
	uint64_t slot;
	uint8_t *kind;

	memset(p, 0, sizeof(*p));
	if (!n)
		return -EINVAL;
	/* Page-multiple slots keep 8-byte alignment of atomic targets easy. */
	slot = region_len / n / 4096 * 4096;
	if (slot < DEMO_MAX_WRITE + 2 * DEMO_GUARD + 4096)
		return -EINVAL;
	p->ops = calloc(n, sizeof(*p->ops));
	kind = malloc(n);
	if (!p->ops || !kind) {
		free(kind);
		demo_plan_free(p);
		return -ENOMEM;
	}
	/* Which slots hold atomics: a seeded Fisher-Yates shuffle. */
	for (size_t i = 0; i < n; i++)
		kind[i] = i < writes ? DEMO_OP_WRITE : DEMO_OP_ATOMIC;
	for (size_t i = n - 1; i > 0; i--) {
		size_t j = (size_t)pattern_rng_below(&rng, i + 1);
		uint8_t t = kind[i];

		kind[i] = kind[j];
		kind[j] = t;
	}
	p->min_len = UINT32_MAX;
	for (size_t i = 0; i < n; i++) {
		struct demo_op *op = &p->ops[i];
		uint64_t base = (uint64_t)i * slot + DEMO_GUARD;
		uint64_t room = slot - 2 * DEMO_GUARD;

		op->kind = kind[i];
		op->seed = pattern_subseed(seed, i + 1);
		if (op->kind == DEMO_OP_WRITE) {
			op->len = pick_len(&rng);
			/* Any alignment: unaligned ranges are part of the test. */
			op->off = base + pattern_rng_below(&rng, room - op->len);
			p->nwrites++;
			p->write_bytes += op->len;
			if (op->len < p->min_len)
				p->min_len = op->len;
			if (op->len > p->max_len)
				p->max_len = op->len;
		} else {
			op->len = 8;
			op->off = base + 8 * pattern_rng_below(&rng, (room - 8) / 8);
			p->natomics++;
		}
	}
	p->n = n;
	free(kind);
	return 0;
}

void demo_plan_free(struct demo_plan *p)
{
	free(p->ops);
	memset(p, 0, sizeof(*p));
}

void demo_atomic_vals(const struct demo_op *op, struct demo_atomic_vals *v)
{
	struct pattern_rng r = { .state = op->seed };

	/* Non-zero operands, so every step visibly changes something. */
	v->add = pattern_rng_next(&r) | 1;
	v->swap = pattern_rng_next(&r) | 2;
	v->miss = v->swap ^ 0x8000000000000000ull;	/* never equals swap */
	v->junk = pattern_rng_next(&r);
	v->add2 = pattern_rng_next(&r) | 4;
	v->expect_ret[0] = 0;
	v->expect_ret[1] = v->add;
	v->expect_ret[2] = v->swap;
	v->expect_ret[3] = v->swap;
	v->final = v->swap + v->add2;
}

void demo_encode_pdata(uint8_t *b, uint64_t addr, uint64_t len, uint32_t rkey)
{
	memset(b, 0, DEMO_PDATA_LEN);
	tool_put32(b, DEMO_MAGIC_PDATA);
	tool_put32(b + 4, DEMO_VERSION);
	tool_put64(b + 8, addr);
	tool_put64(b + 16, len);
	tool_put32(b + 24, rkey);
}

int demo_decode_pdata(const uint8_t *b, uint32_t n, uint64_t *addr,
		      uint64_t *len, uint32_t *rkey)
{
	if (n < DEMO_PDATA_LEN || tool_get32(b) != DEMO_MAGIC_PDATA ||
	    tool_get32(b + 4) != DEMO_VERSION)
		return -EPROTO;
	*addr = tool_get64(b + 8);
	*len = tool_get64(b + 16);
	*rkey = tool_get32(b + 24);
	return 0;
}

void demo_encode_seed(uint8_t *b, uint64_t seed, uint64_t region_len,
		      uint32_t writes, uint32_t atomics)
{
	memset(b, 0, DEMO_SEED_MSG_LEN);
	tool_put32(b, DEMO_MAGIC_SEED);
	tool_put32(b + 4, DEMO_VERSION);
	tool_put64(b + 8, seed);
	tool_put64(b + 16, region_len);
	tool_put32(b + 24, writes);
	tool_put32(b + 28, atomics);
}

int demo_decode_seed(const uint8_t *b, uint32_t n, uint64_t *seed,
		     uint64_t *region_len, uint32_t *writes, uint32_t *atomics)
{
	if (n != DEMO_SEED_MSG_LEN || tool_get32(b) != DEMO_MAGIC_SEED ||
	    tool_get32(b + 4) != DEMO_VERSION)
		return -EPROTO;
	*seed = tool_get64(b + 8);
	*region_len = tool_get64(b + 16);
	*writes = tool_get32(b + 24);
	*atomics = tool_get32(b + 28);
	return 0;
}

void demo_encode_report(uint8_t *b, const struct demo_report *r)
{
	memset(b, 0, DEMO_REPORT_MSG_LEN);
	tool_put32(b, DEMO_MAGIC_REPORT);
	tool_put32(b + 4, r->status);
	tool_put64(b + 8, r->checked);
	tool_put64(b + 16, r->bad);
	tool_put64(b + 24, r->first_bad);
	tool_put64(b + 32, r->rss);
	tool_put64(b + 40, r->reg_ns);
}

int demo_decode_report(const uint8_t *b, uint32_t n, struct demo_report *r)
{
	if (n != DEMO_REPORT_MSG_LEN || tool_get32(b) != DEMO_MAGIC_REPORT)
		return -EPROTO;
	r->status = tool_get32(b + 4);
	r->checked = tool_get64(b + 8);
	r->bad = tool_get64(b + 16);
	r->first_bad = tool_get64(b + 24);
	r->rss = tool_get64(b + 32);
	r->reg_ns = tool_get64(b + 40);
	return 0;
}
