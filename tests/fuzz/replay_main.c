/* SPDX-License-Identifier: MIT */
/*
 * Replay driver for the wire fuzz harness when libFuzzer is not available
 * (gcc, or clang without PW_FUZZ). It runs every corpus file, then a fixed
 * number of deterministic mutations of them, through LLVMFuzzerTestOneInput.
 * That is no substitute for coverage-guided fuzzing, but it runs in every
 * `make check`, and its mutations aim at the exact bytes the decoders judge
 * (field offsets, bound values), so regressions show up.
 *
 *   fuzz_wire [-n N] [-seed S] [-v] PATH...
 *
 * PATH is a corpus directory or a single input file (e.g. a crash found by
 * libFuzzer). Corpus files named ok-* must parse as a stream of complete,
 * valid messages; files named bad-CODE-* (CODE = ENODATA, EPROTO, EBADMSG,
 * EMSGSIZE) must make the stream parse fail with that code; other names
 * carry no expectation. At the end every decoder outcome must have been
 * reached at least once, so a corpus that stopped exercising the decoders
 * fails the test instead of passing silently.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "fuzz_wire.h"

#define REPLAY_MAX_INPUT 8192

struct input {
	char *name;
	uint8_t *data;
	size_t size;
};

static struct input *inputs;
static size_t n_inputs, cap_inputs;
static int verbose;

static void add_input(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t buf[REPLAY_MAX_INPUT];
	size_t n;
	const char *base = strrchr(path, '/');

	if (!f) {
		perror(path);
		exit(2);
	}
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	if (n_inputs == cap_inputs) {
		cap_inputs = cap_inputs ? 2 * cap_inputs : 64;
		inputs = realloc(inputs, cap_inputs * sizeof(*inputs));
		if (!inputs) {
			perror("realloc");
			exit(2);
		}
	}
	inputs[n_inputs].name = strdup(base ? base + 1 : path);
	inputs[n_inputs].data = malloc(n ? n : 1);
	if (!inputs[n_inputs].name || !inputs[n_inputs].data) {
		perror("malloc");
		exit(2);
	}
	memcpy(inputs[n_inputs].data, buf, n);
	inputs[n_inputs].size = n;
	n_inputs++;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void add_path(const char *path)
{
	struct stat st;
	DIR *d;
	struct dirent *e;
	char **names = NULL;
	size_t n = 0;

	if (stat(path, &st) != 0) {
		perror(path);
		exit(2);
	}
	if (!S_ISDIR(st.st_mode)) {
		add_input(path);
		return;
	}
	d = opendir(path);
	if (!d) {
		perror(path);
		exit(2);
	}
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		names = realloc(names, (n + 1) * sizeof(*names));
		if (!names) {
			perror("realloc");
			exit(2);
		}
		names[n++] = strdup(e->d_name);
	}
	closedir(d);
	/* Sorted, so the mutation sequence does not depend on readdir order. */
	qsort(names, n, sizeof(*names), by_name);
	for (size_t i = 0; i < n; i++) {
		char full[4096];

		snprintf(full, sizeof(full), "%s/%s", path, names[i]);
		if (stat(full, &st) == 0 && S_ISREG(st.st_mode))
			add_input(full);
		free(names[i]);
	}
	free(names);
}

static int code_of(const char *s)
{
	static const struct { const char *name; int code; } codes[] = {
		{ "ENODATA", -ENODATA }, { "EPROTO", -EPROTO },
		{ "EBADMSG", -EBADMSG }, { "EMSGSIZE", -EMSGSIZE },
	};

	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		size_t l = strlen(codes[i].name);

		if (strncmp(s, codes[i].name, l) == 0 &&
		    (s[l] == '-' || s[l] == '.' || s[l] == '\0'))
			return codes[i].code;
	}
	return 1;	/* not a code */
}

/* Check the expectation the file name carries; 0 if met or none. */
static int check_expectation(const struct input *in)
{
	int rc = fuzz_wire_stream(in->data, in->size);
	int want;

	if (strncmp(in->name, "ok-", 3) == 0)
		want = 0;
	else if (strncmp(in->name, "bad-", 4) == 0)
		want = code_of(in->name + 4);
	else
		return 0;
	if (want == 1) {
		fprintf(stderr, "%s: bad-* name without a known code\n",
			in->name);
		return 1;
	}
	if (rc != want) {
		fprintf(stderr, "%s: stream parse gives %d, name says %d\n",
			in->name, rc, want);
		return 1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Deterministic mutator                                               */
/* ------------------------------------------------------------------ */

static uint64_t rng;

static uint64_t rnd(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static size_t rnd_below(size_t n)
{
	return n ? (size_t)(rnd() % n) : 0;
}

/* Values at and around every bound in the protocol. */
static const uint64_t interesting[] = {
	0, 1, 2, 3, 5, 6, 7, 8, 9, 0x10, 0x17, 0x1f, 0x20, 0x24, 0x7f, 0x80,
	0xff, 0x100, 31, 32, 33, 255, 256, 257, 287, 288, 289, 0x7fff, 0x8000,
	0xffff, 0x10000, 0x7fffffff, 0x80000000u, 0x80000001u, 0x80000007u,
	0x80000008u, 0x80000009u, 0xfffffffeu, 0xffffffffu,
	0x100000000ULL, 0x7fffffffffffffffULL, 0x8000000000000000ULL,
	0xffffffffffffffffULL,
};

/* Field (offset, size) pairs of the header and of the conn payload. */
static const struct { unsigned off, size; } fields[] = {
	{ 0, 1 }, { 1, 1 }, { 2, 1 }, { 3, 1 }, { 4, 2 }, { 6, 2 }, { 8, 4 },
	{ 12, 4 }, { 16, 8 }, { 24, 4 }, { 28, 4 }, { 32, 8 }, { 40, 8 },
	/* conn payload, relative to the header */
	{ 48, 2 }, { 50, 2 }, { 52, 4 }, { 68, 4 }, { 72, 4 }, { 76, 2 },
	{ 78, 2 },
};

static void put_le(uint8_t *p, uint64_t v, unsigned size)
{
	for (unsigned i = 0; i < size; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/*
 * Offsets where messages start, walking payload_len as a receiver does.
 * Mutating relative to these reaches the second and later messages.
 */
static size_t msg_starts(const uint8_t *b, size_t n, size_t *out, size_t max)
{
	size_t k = 0, off = 0;

	while (off + 48 <= n && k < max) {
		out[k++] = off;
		off += 48 + (size_t)get_le32(b + off + 24);
	}
	if (k == 0)
		out[k++] = 0;
	return k;
}

static size_t mutate(uint8_t *b, size_t n, size_t cap)
{
	size_t starts[16], ns = msg_starts(b, n, starts, 16);
	size_t base = starts[rnd_below(ns)];
	const struct input *o;

	switch (rnd() % 13) {
	case 0:		/* flip a bit */
		if (n)
			b[rnd_below(n)] ^= (uint8_t)(1u << (rnd() % 8));
		break;
	case 1:		/* random byte */
		if (n)
			b[rnd_below(n)] = (uint8_t)rnd();
		break;
	case 2:		/* a field of some message set to a bound value */
	case 3:
	case 4: {
		unsigned f = (unsigned)rnd_below(sizeof(fields) / sizeof(fields[0]));
		uint64_t v = interesting[rnd_below(sizeof(interesting) /
						   sizeof(interesting[0]))];

		if (base + fields[f].off + fields[f].size <= n)
			put_le(b + base + fields[f].off, v, fields[f].size);
		break;
	}
	case 5:		/* truncate */
		n = rnd_below(n + 1);
		break;
	case 6: {	/* append random bytes */
		size_t k = 1 + rnd_below(64);

		while (k-- && n < cap)
			b[n++] = (uint8_t)rnd();
		break;
	}
	case 7: {	/* delete a range */
		size_t at = rnd_below(n + 1), k = rnd_below(n - at + 1);

		memmove(b + at, b + at + k, n - at - k);
		n -= k;
		break;
	}
	case 8: {	/* insert random bytes */
		size_t at = rnd_below(n + 1), k = 1 + rnd_below(16);

		if (n + k > cap)
			break;
		memmove(b + at + k, b + at, n - at);
		for (size_t i = 0; i < k; i++)
			b[at + i] = (uint8_t)rnd();
		n += k;
		break;
	}
	case 9:		/* splice: append another corpus input (a stream) */
		o = &inputs[rnd_below(n_inputs)];
		if (n + o->size <= cap) {
			memcpy(b + n, o->data, o->size);
			n += o->size;
		}
		break;
	case 10:	/* opcode of some message: known ones and neighbours */
		if (base + 3 < n)
			b[base + 3] = (uint8_t)rnd_below(0x30);
		break;
	case 11:	/* make payload_len agree with the bytes that follow */
		if (base + 48 <= n)
			put_le(b + base + 24, n - base - 48, 4);
		break;
	case 12:	/* make pdata_len agree: bare conn, or a CM message's */
		if (rnd() & 1) {
			if (n >= 32)
				put_le(b + 28, n - 32, 2);
		} else if (base + 48 + 32 <= n) {
			put_le(b + base + 48 + 28, n - base - 48 - 32, 2);
		}
		break;
	}
	return n;
}

int main(int argc, char **argv)
{
	unsigned long iters = 200000, total = 0;
	uint64_t seed = 1;
	int bad = 0;
	uint8_t *buf;
	struct timespec t0, t1;
	double secs;
	static const char *const dec_names[FDEC_N] = { "hdr", "conn", "trailer" };
	static const char *const rc_names[FRC_N] = {
		"ok", "ENODATA", "EPROTO", "EBADMSG", "EMSGSIZE" };
	/* Outcomes each decoder can have; each must be seen at least once. */
	static const int reachable[FDEC_N][FRC_N] = {
		{ 1, 1, 1, 1, 1 },
		{ 1, 1, 0, 1, 1 },
		{ 1, 1, 0, 1, 0 },
	};

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-n") && i + 1 < argc)
			iters = strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "-seed") && i + 1 < argc)
			seed = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "-v"))
			verbose = 1;
		else if (argv[i][0] == '-') {
			fprintf(stderr, "usage: %s [-n N] [-seed S] [-v] "
				"PATH...\n", argv[0]);
			return 2;
		} else
			add_path(argv[i]);
	}
	if (!n_inputs) {
		fprintf(stderr, "no inputs\n");
		return 2;
	}
	rng = seed;
	buf = malloc(REPLAY_MAX_INPUT * 2);
	if (!buf)
		return 2;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (size_t i = 0; i < n_inputs; i++) {
		if (verbose)
			printf("run %s (%zu bytes)\n", inputs[i].name,
			       inputs[i].size);
		LLVMFuzzerTestOneInput(inputs[i].data, inputs[i].size);
		bad += check_expectation(&inputs[i]);
		total++;
	}
	for (unsigned long it = 0; it < iters; it++) {
		const struct input *in = &inputs[rnd_below(n_inputs)];
		size_t n = in->size;
		int rounds = 1 + (int)rnd_below(4);

		memcpy(buf, in->data, n);
		while (rounds--)
			n = mutate(buf, n, REPLAY_MAX_INPUT * 2);
		LLVMFuzzerTestOneInput(buf, n);
		total++;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) +
	       (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;

	printf("fuzz_wire replay: %zu corpus files + %lu mutations = %lu "
	       "inputs in %.2f s (seed %llu)\n", n_inputs, iters, total, secs,
	       (unsigned long long)seed);
	for (int d = 0; d < FDEC_N; d++) {
		printf("  %-8s", dec_names[d]);
		for (int r = 0; r < FRC_N; r++) {
			if (!reachable[d][r])
				continue;
			printf(" %s=%lu", rc_names[r], fuzz_wire_counts[d][r]);
			if (fuzz_wire_counts[d][r] == 0) {
				fprintf(stderr, "decoder %s never returned %s: "
					"the corpus no longer reaches it\n",
					dec_names[d], rc_names[r]);
				bad++;
			}
		}
		printf("\n");
	}
	for (size_t i = 0; i < n_inputs; i++) {
		free(inputs[i].name);
		free(inputs[i].data);
	}
	free(inputs);
	free(buf);
	return bad ? 1 : 0;
}
