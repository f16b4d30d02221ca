/* SPDX-License-Identifier: MIT */
/*
 * Reproducible "random-looking" data patterns.
 *
 * The byte at offset o of the pattern with seed s depends only on (s, o):
 * it is byte (o % 8) of mix(s, o / 8). So any prefix or sub-range of a
 * pattern can be regenerated or checked on its own, by either process,
 * from nothing but the seed, which is what lets a target verify its own
 * memory independently of the initiator.
 */
#ifndef PAGEWIRE_TOOL_PATTERN_H
#define PAGEWIRE_TOOL_PATTERN_H

#include <stddef.h>
#include <stdint.h>

/* splitmix64 finaliser: a cheap bijective mixer with good avalanche. */
static inline uint64_t pattern_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Derive an independent seed for sub-stream @i of @seed. */
static inline uint64_t pattern_subseed(uint64_t seed, uint64_t i)
{
	return pattern_mix(seed ^ pattern_mix(i + 0x632be59bd9b4e019ull));
}

/**
 * pattern_fill() - write bytes [@off, @off + @len) of pattern @seed to @buf
 */
void pattern_fill(void *buf, size_t len, uint64_t seed, uint64_t off);

/**
 * pattern_check() - compare @buf with bytes [@off, @off + @len) of @seed
 *
 * Return: the index in @buf of the first differing byte, or -1 when equal.
 */
long long pattern_check(const void *buf, size_t len, uint64_t seed,
			uint64_t off);

/* The expected pattern byte at offset @off (for error messages). */
uint8_t pattern_byte(uint64_t seed, uint64_t off);

/* Simple seeded PRNG (xorshift-style state over splitmix64). */
struct pattern_rng {
	uint64_t state;
};

static inline uint64_t pattern_rng_next(struct pattern_rng *r)
{
	r->state += 0x9e3779b97f4a7c15ull;
	return pattern_mix(r->state);
}

/* Uniform in [0, n) for n > 0 (the tiny modulo bias is irrelevant here). */
static inline uint64_t pattern_rng_below(struct pattern_rng *r, uint64_t n)
{
	return pattern_rng_next(r) % n;
}

#endif /* PAGEWIRE_TOOL_PATTERN_H */
