/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the key table (src/mr/keytable.c).
 *
 * Keys name MRs on the wire, so the table's promises are security
 * properties: keys are unpredictable (a peer holding one rkey learns nothing
 * about the others), never 0, never a live key, and a freed key stays
 * quarantined for PW_KEY_QUARANTINE deregistrations so that a stale rkey
 * cannot reach a new MR. And pw_keytable_remove() must not return while a
 * placement step holds a use, or data could land in a deregistered region.
 *
 * The executable is linked with --wrap=pw_random_bytes so that some cases
 * can script the "random" draws and test quarantine and collision handling
 * exactly; with no script loaded every draw goes to the real getrandom().
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "mr/mr.h"
#include "util/util.h"

#include "unit.h"

/* ---- scripted randomness ---------------------------------------------- */

void __real_pw_random_bytes(void *buf, size_t len);
void __wrap_pw_random_bytes(void *buf, size_t len);

static const uint32_t *script;
static size_t script_len, script_pos;

void __wrap_pw_random_bytes(void *buf, size_t len)
{
	if (script && len == sizeof(uint32_t)) {
		if (script_pos == script_len) {
			/*
			 * The table rejected every key we offered; it would
			 * draw forever, so fail here instead of timing out.
			 */
			fprintf(stderr, "key script exhausted after %zu draws\n",
				script_pos);
			exit(1);
		}
		memcpy(buf, &script[script_pos++], sizeof(uint32_t));
		return;
	}
	__real_pw_random_bytes(buf, len);
}

static void script_set(const uint32_t *keys, size_t n)
{
	script = keys;
	script_len = n;
	script_pos = 0;
}

static void script_off(void)
{
	script = NULL;
	script_len = script_pos = 0;
}

/* ---- helpers ------------------------------------------------------------ */

static struct pw_keytable *kt_new(void)
{
	/* 16 KiB of quarantine ring: keep it off the stack */
	struct pw_keytable *kt = malloc(sizeof(*kt));

	if (!kt)
		return NULL;
	if (pw_keytable_init(kt) != 0) {
		free(kt);
		return NULL;
	}
	return kt;
}

static void kt_free(struct pw_keytable *kt)
{
	pw_keytable_destroy(kt);
	free(kt);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Number of equal neighbours after sorting: 0 means all distinct. */
static size_t count_dups(const uint32_t *keys, size_t n)
{
	uint32_t *s = malloc(n * sizeof(*s));
	size_t dups = 0;

	if (!s)
		return SIZE_MAX;
	memcpy(s, keys, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_u32);
	for (size_t i = 1; i < n; i++)
		dups += s[i] == s[i - 1];
	free(s);
	return dups;
}

/* Look @key up and check it resolves to @want, leaving no use behind. */
static void check_lookup(struct pw_keytable *kt, uint32_t key,
			 struct pw_mr_i *want)
{
	struct pw_mr_i *m = pw_mr_get(kt, key);

	if (m != want)
		UNIT_FAIL("pw_mr_get(%#x) = %p, want %p", key, (void *)m,
			  (void *)want);
	if (m) {
		pw_mr_put(m);
		if (atomic_load(&m->uses) != 0)
			UNIT_FAIL("key %#x: %d uses left after put", key,
				  atomic_load(&m->uses));
	}
}

/* Structural invariants every operation must keep. */
static void check_table(const struct pw_keytable *kt, uint32_t live)
{
	uint32_t n = 0, t = 0, empty = 0;

	CHECK_INT(kt->used, live);
	CHECK((kt->cap & (kt->cap - 1)) == 0);
	/* at least a quarter empty, or a probe for a missing key never ends */
	CHECK((uint64_t)(kt->used + kt->tombs) * 4 <= (uint64_t)kt->cap * 3);
	for (uint32_t i = 0; i < kt->cap; i++) {
		if (!kt->slots[i])
			empty++;
		else if (kt->slots[i] == (struct pw_mr_i *)(uintptr_t)1)
			t++;
		else
			n++;
	}
	CHECK_INT(n, kt->used);
	CHECK_INT(t, kt->tombs);
	CHECK(empty > 0);
}

/* ---- tests -------------------------------------------------------------- */

/*
 * 10k registrations: keys distinct, non-zero, lkey == rkey, not sequential
 * and spread over the whole 32-bit range; each one finds its MR.
 */
static void test_unique_random(void)
{
	enum { N = 10000 };
	struct pw_keytable *kt = kt_new();
	struct pw_mr_i *mrs = calloc(N, sizeof(*mrs));
	uint32_t *keys = calloc(N, sizeof(*keys));
	unsigned int hi[16] = { 0 }, lo[16] = { 0 };
	uint32_t kmin = UINT32_MAX, kmax = 0;
	size_t seq = 0, zero = 0;

	REQUIRE(kt && mrs && keys);
	for (size_t i = 0; i < N; i++) {
		CHECK_INT(pw_keytable_insert(kt, &mrs[i]), 0);
		keys[i] = mrs[i].ibmr.lkey;
		if (mrs[i].ibmr.rkey != keys[i])
			UNIT_FAIL("mr %zu: rkey %#x != lkey %#x", i,
				  mrs[i].ibmr.rkey, keys[i]);
		zero += keys[i] == 0;
		if (i && (keys[i] - keys[i - 1] == 1 ||
			  keys[i - 1] - keys[i] == 1))
			seq++;
		hi[keys[i] >> 28]++;
		lo[keys[i] & 15]++;
		kmin = PW_MIN(kmin, keys[i]);
		kmax = PW_MAX(kmax, keys[i]);
	}
	CHECK_INT(zero, 0);
	CHECK_INT(count_dups(keys, N), 0);
	/* sequential allocation would let a peer guess neighbouring keys */
	CHECK_INT(seq, 0);
	/*
	 * Each of 16 buckets expects 625 keys (sd 24) if the keys are uniform;
	 * 400 is nine standard deviations away, so this never flakes but
	 * catches counters, small ranges and keys with fixed high or low bits.
	 */
	for (int b = 0; b < 16; b++) {
		if (hi[b] < 400)
			UNIT_FAIL("top-nibble bucket %d holds %u of %d keys", b,
				  hi[b], N);
		if (lo[b] < 400)
			UNIT_FAIL("low-nibble bucket %d holds %u of %d keys", b,
				  lo[b], N);
	}
	CHECK(kmin < (UINT32_C(1) << 26));
	CHECK(kmax > UINT32_MAX - (UINT32_C(1) << 26));
	check_table(kt, N);

	for (size_t i = 0; i < N; i++)
		check_lookup(kt, keys[i], &mrs[i]);
	for (size_t i = 0; i < N; i++)
		pw_keytable_remove(kt, &mrs[i]);
	for (size_t i = 0; i < N; i++)
		check_lookup(kt, keys[i], NULL);
	check_table(kt, 0);

	free(keys);
	free(mrs);
	kt_free(kt);
}

/* Lookup misses, removal of one MR among others, uses counting. */
static void test_lookup_remove(void)
{
	struct pw_keytable *kt = kt_new();
	struct pw_mr_i a = { 0 }, b = { 0 }, c = { 0 };
	struct pw_mr_i *m;
	uint32_t kb;

	REQUIRE(kt);
	check_lookup(kt, 0, NULL);
	check_lookup(kt, 0x12345678, NULL);
	REQUIRE(pw_keytable_insert(kt, &a) == 0);
	REQUIRE(pw_keytable_insert(kt, &b) == 0);
	REQUIRE(pw_keytable_insert(kt, &c) == 0);
	kb = b.ibmr.lkey;
	check_lookup(kt, 0, NULL);

	/* each get is one use; puts release them one by one */
	m = pw_mr_get(kt, kb);
	CHECK_PTR(m, &b);
	m = pw_mr_get(kt, kb);
	CHECK_PTR(m, &b);
	CHECK_INT(atomic_load(&b.uses), 2);
	pw_mr_put(&b);
	pw_mr_put(&b);
	CHECK_INT(atomic_load(&b.uses), 0);

	pw_keytable_remove(kt, &b);
	check_lookup(kt, kb, NULL);
	check_lookup(kt, a.ibmr.lkey, &a);
	check_lookup(kt, c.ibmr.lkey, &c);
	check_table(kt, 2);

	pw_keytable_remove(kt, &a);
	pw_keytable_remove(kt, &c);
	check_lookup(kt, a.ibmr.lkey, NULL);
	check_lookup(kt, c.ibmr.lkey, NULL);
	check_table(kt, 0);
	kt_free(kt);
}

/*
 * Register and deregister one MR 4096 times (a full quarantine ring) with
 * the real random source: no key may come back, and none may equal a key
 * that stays live throughout.
 */
static void test_quarantine_loop(void)
{
	struct pw_keytable *kt = kt_new();
	uint32_t *keys = calloc(PW_KEY_QUARANTINE + 1, sizeof(*keys));
	struct pw_mr_i live = { 0 }, mr = { 0 };

	REQUIRE(kt && keys);
	REQUIRE(pw_keytable_insert(kt, &live) == 0);
	keys[PW_KEY_QUARANTINE] = live.ibmr.lkey;
	for (int i = 0; i < PW_KEY_QUARANTINE; i++) {
		CHECK_INT(pw_keytable_insert(kt, &mr), 0);
		keys[i] = mr.ibmr.lkey;
		check_lookup(kt, keys[i], &mr);
		pw_keytable_remove(kt, &mr);
		check_lookup(kt, keys[i], NULL);
	}
	CHECK_INT(count_dups(keys, PW_KEY_QUARANTINE + 1), 0);
	check_lookup(kt, live.ibmr.lkey, &live);
	pw_keytable_remove(kt, &live);
	check_table(kt, 0);
	free(keys);
	kt_free(kt);
}

/*
 * Scripted draws pin down the exact rules: 0, a live key and a key among the
 * last PW_KEY_QUARANTINE deregistered ones are skipped; a key that has left
 * the ring may be handed out again.
 */
static void test_quarantine_scripted(void)
{
	enum { K = 0xdead0001u, K2 = 0x00c0ffeeu, V = 0x5eed0003u,
	       L = 0x1ee70004u, F = 0x0f0f0005u };
	struct pw_keytable *kt = kt_new();
	struct pw_mr_i live = { 0 }, a = { 0 }, b = { 0 }, c = { 0 }, d = { 0 };
	struct pw_mr_i e = { 0 };

	REQUIRE(kt);

	/* 0 is never a key, even when the random source produces it */
	{
		static const uint32_t s[] = { 0, L };

		script_set(s, 2);
		CHECK_INT(pw_keytable_insert(kt, &live), 0);
		CHECK_U64(live.ibmr.lkey, L);
		CHECK_INT(script_pos, 2);
	}
	/* a live key is never handed out twice */
	{
		static const uint32_t s[] = { L, K };

		script_set(s, 2);
		CHECK_INT(pw_keytable_insert(kt, &a), 0);
		CHECK_U64(a.ibmr.lkey, K);
		CHECK_INT(script_pos, 2);
	}
	/* a just-freed key is quarantined */
	pw_keytable_remove(kt, &a);			/* removal #1: K */
	{
		static const uint32_t s[] = { K, K, K2 };

		script_set(s, 3);
		CHECK_INT(pw_keytable_insert(kt, &b), 0);
		CHECK_U64(b.ibmr.lkey, K2);
		CHECK_INT(script_pos, 3);
	}
	pw_keytable_remove(kt, &b);			/* removal #2: K2 */

	/* removals #3 .. #4096: K is still among the last 4096 */
	for (uint32_t i = 0; i < PW_KEY_QUARANTINE - 2; i++) {
		uint32_t key = 0x70000000u + i;

		script_set(&key, 1);
		CHECK_INT(pw_keytable_insert(kt, &c), 0);
		if (c.ibmr.lkey != key) {
			UNIT_FAIL("fresh key %#x not accepted", key);
			break;
		}
		pw_keytable_remove(kt, &c);
	}
	{
		static const uint32_t s[] = { K, V };

		script_set(s, 2);
		CHECK_INT(pw_keytable_insert(kt, &d), 0);
		CHECK_U64(d.ibmr.lkey, V);
		CHECK_INT(script_pos, 2);
	}
	pw_keytable_remove(kt, &d);			/* removal #4097: K leaves */

	/* K left the ring: it may be reused now; V, just freed, may not */
	{
		static const uint32_t s[] = { V, K };

		script_set(s, 2);
		CHECK_INT(pw_keytable_insert(kt, &e), 0);
		CHECK_U64(e.ibmr.lkey, K);
		CHECK_INT(script_pos, 2);
	}
	check_lookup(kt, K, &e);
	check_lookup(kt, V, NULL);
	check_lookup(kt, L, &live);
	/* F was never drawn: a miss, not some other MR */
	check_lookup(kt, F, NULL);
	script_off();

	pw_keytable_remove(kt, &e);
	pw_keytable_remove(kt, &live);
	check_table(kt, 0);
	kt_free(kt);
}

struct remover {
	struct pw_keytable *kt;
	struct pw_mr_i *mr;
	atomic_int done;
};

static void *remover_main(void *arg)
{
	struct remover *r = arg;

	pw_keytable_remove(r->kt, r->mr);
	atomic_store(&r->done, 1);
	return NULL;
}

/*
 * A use taken by pw_mr_get() (a placement step in progress) holds off
 * pw_keytable_remove() until the matching pw_mr_put(); meanwhile the key is
 * already gone and the rest of the table keeps working.
 */
static void test_use_blocks_remove(void)
{
	struct pw_keytable *kt = kt_new();
	struct pw_mr_i mr = { 0 }, other = { 0 }, late = { 0 };
	struct remover r = { 0 };
	struct pw_mr_i *m1, *m2;
	pthread_t th;
	uint32_t key;
	bool gone = false;

	REQUIRE(kt);
	REQUIRE(pw_keytable_insert(kt, &mr) == 0);
	REQUIRE(pw_keytable_insert(kt, &other) == 0);
	key = mr.ibmr.lkey;
	m1 = pw_mr_get(kt, key);
	m2 = pw_mr_get(kt, key);
	CHECK_PTR(m1, &mr);
	CHECK_PTR(m2, &mr);
	REQUIRE(m1 && m2);

	r.kt = kt;
	r.mr = &mr;
	REQUIRE(pthread_create(&th, NULL, remover_main, &r) == 0);

	/* the key disappears first (no new use can start) ... */
	for (int i = 0; i < 5000 && !gone; i++) {
		struct pw_mr_i *m = pw_mr_get(kt, key);

		if (m) {
			pw_mr_put(m);
			unit_sleep_ms(1);
		} else {
			gone = true;
		}
	}
	CHECK(gone);
	/* ... then remove waits for the uses in progress */
	unit_sleep_ms(100);
	CHECK_INT(atomic_load(&r.done), 0);

	/* the table is not locked while remove waits */
	check_lookup(kt, other.ibmr.lkey, &other);
	CHECK_INT(pw_keytable_insert(kt, &late), 0);
	check_lookup(kt, late.ibmr.lkey, &late);

	pw_mr_put(m1);
	unit_sleep_ms(100);
	CHECK_INT(atomic_load(&r.done), 0);	/* one use still held */

	pw_mr_put(m2);
	REQUIRE(pthread_join(th, NULL) == 0);
	CHECK_INT(atomic_load(&r.done), 1);
	CHECK_INT(atomic_load(&mr.uses), 0);

	pw_keytable_remove(kt, &other);
	pw_keytable_remove(kt, &late);
	check_table(kt, 0);
	kt_free(kt);
}

/*
 * Growth and same-size rehash with many tombstones keep every live key
 * findable, every removed key unfindable, and the table bounded under churn.
 */
static void test_rehash_tombstones(void)
{
	enum { N = 3000, LIVE = 200, CHURN = 20000, KEEP = 1000 };
	struct pw_keytable *kt = kt_new();
	struct pw_mr_i *first = calloc(N, sizeof(*first));
	struct pw_mr_i *second = calloc(N, sizeof(*second));
	struct pw_mr_i *ring = calloc(LIVE, sizeof(*ring));
	uint32_t *gone = calloc(N / 2, sizeof(*gone));
	uint32_t *recent = calloc(KEEP, sizeof(*recent));
	uint32_t max_cap = 0;

	REQUIRE(kt && first && second && ring && gone && recent);
	for (int i = 0; i < N; i++)
		CHECK_INT(pw_keytable_insert(kt, &first[i]), 0);
	for (int i = 0; i < N; i += 2) {
		gone[i / 2] = first[i].ibmr.lkey;
		pw_keytable_remove(kt, &first[i]);
	}
	check_table(kt, N / 2);
	for (int i = 0; i < N; i++)
		CHECK_INT(pw_keytable_insert(kt, &second[i]), 0);
	check_table(kt, N / 2 + N);
	for (int i = 1; i < N; i += 2)
		check_lookup(kt, first[i].ibmr.lkey, &first[i]);
	for (int i = 0; i < N; i++)
		check_lookup(kt, second[i].ibmr.lkey, &second[i]);
	for (int i = 0; i < N / 2; i++)
		check_lookup(kt, gone[i], NULL);
	for (int i = 1; i < N; i += 2)
		pw_keytable_remove(kt, &first[i]);
	for (int i = 0; i < N; i++)
		pw_keytable_remove(kt, &second[i]);
	check_table(kt, 0);

	/*
	 * Churn, in a fresh table (tables never shrink): LIVE MRs, the oldest
	 * replaced each step. Tombstones pile up between rehashes; the table
	 * must rehash in place rather than grow without bound, and probes
	 * must still terminate.
	 */
	kt_free(kt);
	kt = kt_new();
	REQUIRE(kt);
	for (int i = 0; i < LIVE; i++)
		CHECK_INT(pw_keytable_insert(kt, &ring[i]), 0);
	for (int i = 0; i < CHURN; i++) {
		struct pw_mr_i *m = &ring[i % LIVE];

		recent[i % KEEP] = m->ibmr.lkey;
		pw_keytable_remove(kt, m);
		if (pw_keytable_insert(kt, m) != 0) {
			UNIT_FAIL("insert failed at churn step %d", i);
			break;
		}
		max_cap = PW_MAX(max_cap, kt->cap);
	}
	/* LIVE*2 rounded up is 512; allow one doubling of slack */
	if (max_cap > 1024)
		UNIT_FAIL("%d live keys grew the table to %u slots", LIVE,
			  max_cap);
	check_table(kt, LIVE);
	for (int i = 0; i < LIVE; i++)
		check_lookup(kt, ring[i].ibmr.lkey, &ring[i]);
	/* the last KEEP removed keys are quarantined, so still unknown */
	for (int i = 0; i < KEEP; i++)
		check_lookup(kt, recent[i], NULL);
	for (int i = 0; i < LIVE; i++)
		pw_keytable_remove(kt, &ring[i]);
	check_table(kt, 0);

	free(recent);
	free(gone);
	free(ring);
	free(second);
	free(first);
	kt_free(kt);
}

/*
 * Keys that are multiples of 256 all hash to slot 0 of the initial table,
 * forming one probe chain. Removing members in the middle leaves tombstones
 * that lookups must step over, and an insert may reuse one.
 */
static void test_probe_chain(void)
{
	enum { N = 10 };
	uint32_t keys[N + 2];
	struct pw_mr_i mrs[N + 1];
	struct pw_keytable *kt = kt_new();
	uint32_t tombs;

	REQUIRE(kt);
	memset(mrs, 0, sizeof(mrs));
	for (uint32_t i = 0; i < N + 2; i++)
		keys[i] = (i + 1) << 8;
	script_set(keys, N);
	for (int i = 0; i < N; i++) {
		CHECK_INT(pw_keytable_insert(kt, &mrs[i]), 0);
		CHECK_U64(mrs[i].ibmr.lkey, keys[i]);
	}
	CHECK_INT(kt->cap, 256);	/* still the initial size: one chain */
	pw_keytable_remove(kt, &mrs[2]);
	pw_keytable_remove(kt, &mrs[5]);
	check_table(kt, N - 2);
	for (int i = 0; i < N; i++)
		check_lookup(kt, keys[i], i == 2 || i == 5 ? NULL : &mrs[i]);
	/* a colliding key that is in no slot: the probe must end at a hole */
	check_lookup(kt, keys[N + 1], NULL);

	tombs = kt->tombs;
	script_set(&keys[N], 1);
	CHECK_INT(pw_keytable_insert(kt, &mrs[N]), 0);
	CHECK_U64(mrs[N].ibmr.lkey, keys[N]);
	CHECK_INT(kt->tombs, tombs - 1);	/* it took a tombstone */
	script_off();
	check_table(kt, N - 1);
	for (int i = 0; i <= N; i++)
		check_lookup(kt, keys[i], i == 2 || i == 5 ? NULL : &mrs[i]);

	for (int i = 0; i <= N; i++)
		if (i != 2 && i != 5)
			pw_keytable_remove(kt, &mrs[i]);
	check_table(kt, 0);
	kt_free(kt);
}

static const struct unit_test tests[] = {
	{ "unique_random", test_unique_random },
	{ "lookup_remove", test_lookup_remove },
	{ "quarantine_loop", test_quarantine_loop },
	{ "quarantine_scripted", test_quarantine_scripted },
	{ "use_blocks_remove", test_use_blocks_remove },
	{ "rehash_tombstones", test_rehash_tombstones },
	{ "probe_chain", test_probe_chain },
};

UNIT_MAIN(tests)
