/* SPDX-License-Identifier: MIT */
/*
 * Reproducible data patterns; see pattern.h for the definition.
 */
#include <string.h>

#include "pattern.h"

/* The 8 pattern bytes of word @w, in little-endian order. */
static inline void pattern_word(uint64_t seed, uint64_t w, uint8_t out[8])
{
	uint64_t v = pattern_mix(seed ^ (w * 0xd6e8feb86659fd93ull));

	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t)(v >> (8 * i));
}

uint8_t pattern_byte(uint64_t seed, uint64_t off)
{
	uint8_t w[8];

	pattern_word(seed, off / 8, w);
	return w[off % 8];
}

void pattern_fill(void *buf, size_t len, uint64_t seed, uint64_t off)
{
	uint8_t *p = buf;
	uint8_t w[8];

	/* Head: up to the next word boundary of the pattern. */
	while (len && (off % 8)) {
		*p++ = pattern_byte(seed, off++);
		len--;
	}
	/* Body: whole words; memcpy keeps unaligned @buf legal. */
	while (len >= 8) {
		pattern_word(seed, off / 8, w);
		memcpy(p, w, 8);
		p += 8;
		off += 8;
		len -= 8;
	}
	while (len) {
		*p++ = pattern_byte(seed, off++);
		len--;
	}
}

long long pattern_check(const void *buf, size_t len, uint64_t seed,
			uint64_t off)
{
	const uint8_t *p = buf;
	size_t i = 0;
	uint8_t w[8];

	while (i < len && ((off + i) % 8)) {
		if (p[i] != pattern_byte(seed, off + i))
			return (long long)i;
		i++;
	}
	while (len - i >= 8) {
		pattern_word(seed, (off + i) / 8, w);
		if (memcmp(p + i, w, 8)) {
			for (int k = 0; k < 8; k++)
				if (p[i + k] != w[k])
					return (long long)(i + k);
		}
		i += 8;
	}
	while (i < len) {
		if (p[i] != pattern_byte(seed, off + i))
			return (long long)i;
		i++;
	}
	return -1;
}
