/* SPDX-License-Identifier: MIT */
/*
 * Key table: open addressing with linear probing over random 32-bit keys.
 * Keys are drawn from getrandom(), so they are neither sequential nor
 * guessable from earlier keys (a remote peer holding one rkey learns nothing
 * about the others), and a freed key is quarantined for PW_KEY_QUARANTINE
 * deregistrations before it can come back.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>

#include "mr/mr.h"
#include "util/util.h"

#define TOMB ((struct pw_mr_i *)(uintptr_t)1)

static inline uint32_t slot_of(uint32_t key, uint32_t cap)
{
	/* keys are random already; a multiplicative mix guards test keys */
	return (key * 2654435761u) & (cap - 1);
}

int pw_keytable_init(struct pw_keytable *kt)
{
	memset(kt, 0, sizeof(*kt));
	kt->cap = 256;
	kt->slots = calloc(kt->cap, sizeof(*kt->slots));
	if (!kt->slots)
		return -ENOMEM;
	pthread_rwlock_init(&kt->lock, NULL);
	return 0;
}

void pw_keytable_destroy(struct pw_keytable *kt)
{
	pthread_rwlock_destroy(&kt->lock);
	free(kt->slots);
	kt->slots = NULL;
}

static struct pw_mr_i *find_locked(struct pw_keytable *kt, uint32_t key)
{
	uint32_t i = slot_of(key, kt->cap);

	for (;;) {
		struct pw_mr_i *m = kt->slots[i];

		if (!m)
			return NULL;
		if (m != TOMB && m->ibmr.lkey == key)
			return m;
		i = (i + 1) & (kt->cap - 1);
	}
}

static void place_locked(struct pw_keytable *kt, struct pw_mr_i *mr)
{
	uint32_t i = slot_of(mr->ibmr.lkey, kt->cap);

	while (kt->slots[i] && kt->slots[i] != TOMB)
		i = (i + 1) & (kt->cap - 1);
	if (kt->slots[i] == TOMB)
		kt->tombs--;
	kt->slots[i] = mr;
	kt->used++;
}

static int grow_locked(struct pw_keytable *kt)
{
	uint32_t ncap = kt->cap;
	struct pw_mr_i **old = kt->slots;
	uint32_t ocap = kt->cap;

	if ((kt->used + 1) * 2 > kt->cap)
		ncap = kt->cap * 2;
	kt->slots = calloc(ncap, sizeof(*kt->slots));
	if (!kt->slots) {
		kt->slots = old;
		return -ENOMEM;
	}
	kt->cap = ncap;
	kt->used = 0;
	kt->tombs = 0;
	for (uint32_t i = 0; i < ocap; i++)
		if (old[i] && old[i] != TOMB)
			place_locked(kt, old[i]);
	free(old);
	return 0;
}

static bool quarantined_locked(const struct pw_keytable *kt, uint32_t key)
{
	for (uint32_t i = 0; i < PW_KEY_QUARANTINE; i++)
		if (kt->recent[i] == key)
			return true;
	return false;
}

int pw_keytable_insert(struct pw_keytable *kt, struct pw_mr_i *mr)
{
	uint32_t key;
	int ret = 0;

	pthread_rwlock_wrlock(&kt->lock);
	if ((kt->used + kt->tombs + 1) * 4 > kt->cap * 3) {
		ret = grow_locked(kt);
		if (ret)
			goto out;
	}
	do {
		pw_random_bytes(&key, sizeof(key));
		if (pw_random_weak()) {
			pw_set_error("no kernel randomness (getrandom and /dev/urandom "
				     "failed): refusing to make guessable keys");
			ret = -EAGAIN;
			goto out;
		}
	} while (key == 0 || find_locked(kt, key) || quarantined_locked(kt, key));
	mr->ibmr.lkey = key;
	mr->ibmr.rkey = key;
	place_locked(kt, mr);
out:
	pthread_rwlock_unlock(&kt->lock);
	return ret;
}

void pw_keytable_remove(struct pw_keytable *kt, struct pw_mr_i *mr)
{
	uint32_t key = mr->ibmr.lkey;
	uint32_t i;

	pthread_rwlock_wrlock(&kt->lock);
	i = slot_of(key, kt->cap);
	while (kt->slots[i]) {
		if (kt->slots[i] == mr) {
			kt->slots[i] = TOMB;
			kt->used--;
			kt->tombs++;
			break;
		}
		i = (i + 1) & (kt->cap - 1);
	}
	kt->recent[kt->recent_pos] = key;
	kt->recent_pos = (kt->recent_pos + 1) % PW_KEY_QUARANTINE;
	pthread_rwlock_unlock(&kt->lock);

	/*
	 * The key is gone, so no new use can start; wait for the uses that
	 * are mid-syscall. Each lasts one non-blocking socket call.
	 */
	while (atomic_load_explicit(&mr->uses, memory_order_acquire) > 0)
		sched_yield();
}

struct pw_mr_i *pw_mr_get(struct pw_keytable *kt, uint32_t key)
{
	struct pw_mr_i *mr;

	pthread_rwlock_rdlock(&kt->lock);
	mr = find_locked(kt, key);
	if (mr)
		atomic_fetch_add_explicit(&mr->uses, 1, memory_order_acquire);
	pthread_rwlock_unlock(&kt->lock);
	return mr;
}
