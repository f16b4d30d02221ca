/* SPDX-License-Identifier: MIT */
/*
 * pagewire-demo: two processes over loopback. The target registers a huge
 * demand-paged (ODP) region; the initiator writes, reads and does atomics
 * at scattered offsets all over it; both sides verify.
 *
 *   demo_main.c       options, fork, summary
 *   demo_plan.c       the operations, derived from one seed
 *   demo_target.c     the target process
 *   demo_initiator.c  the initiator process
 *
 * The whole run is a function of one seed: the initiator sends the seed at
 * the end and the target regenerates the plan on its own, so it checks its
 * memory without trusting anything the initiator says about the data.
 */
#ifndef PAGEWIRE_TOOL_DEMO_H
#define PAGEWIRE_TOOL_DEMO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <pagewire/pagewire.h>

#define DEMO_PROG		"pagewire-demo"
#define DEMO_DEFAULT_REGION	(64ull << 30)
#define DEMO_MIN_REGION		(64ull << 20)
#define DEMO_DEFAULT_WRITES	3000
#define DEMO_DEFAULT_ATOMICS	256	/* targets; 4 atomics each */
#define DEMO_MAX_WRITE		(1u << 20)
#define DEMO_MIN_WRITE		8
/* Bytes around every range that nothing may write (checked by target). */
#define DEMO_GUARD		64
#define DEMO_ATOMICS_PER_TARGET	4
/* No completion for this long means something hangs: fail, don't wait. */
#define DEMO_TIMEOUT_MS		30000

struct demo_opts {
	uint64_t region_len;
	unsigned int writes;
	unsigned int atomics;
	uint64_t seed;
	bool seed_set;
};

enum demo_op_kind {
	DEMO_OP_WRITE,
	DEMO_OP_ATOMIC,
};

/**
 * struct demo_op - one range of the plan
 * @off:   offset in the target region
 * @len:   bytes (8 for an atomic target)
 * @seed:  pattern seed (writes) or operand seed (atomics)
 */
struct demo_op {
	uint64_t off;
	uint32_t len;
	enum demo_op_kind kind;
	uint64_t seed;
};

/**
 * struct demo_plan - all ranges, in increasing offset order
 *
 * The region is cut into writes + atomics equal slots; each slot holds
 * one range at a random offset, at least DEMO_GUARD bytes from the slot's
 * ends, so ranges never overlap and are spread over the whole region.
 */
struct demo_plan {
	struct demo_op *ops;
	size_t n;
	size_t nwrites;
	size_t natomics;
	uint64_t write_bytes;
	uint32_t min_len;
	uint32_t max_len;
};

/**
 * struct demo_atomic_vals - operands and expected results of one target
 *
 * Memory starts at 0 (never touched). Then:
 *   FETCH_ADD(add)            returns 0,    leaves add
 *   CMP_SWAP(add -> swap)     returns add,  leaves swap   (compare hits)
 *   CMP_SWAP(miss -> junk)    returns swap, leaves swap   (compare misses)
 *   FETCH_ADD(add2)           returns swap, leaves swap + add2
 */
struct demo_atomic_vals {
	uint64_t add;
	uint64_t swap;
	uint64_t miss;
	uint64_t junk;
	uint64_t add2;
	uint64_t expect_ret[DEMO_ATOMICS_PER_TARGET];
	uint64_t final;
};

/**
 * struct demo_report - what the target tells the initiator at the end
 */
struct demo_report {
	uint32_t status;	/* 0 = every range verified */
	uint64_t checked;	/* ranges checked */
	uint64_t bad;		/* ranges wrong */
	uint64_t first_bad;	/* index of the first wrong range */
	uint64_t rss;		/* target RSS in bytes, after the run */
	uint64_t reg_ns;	/* ODP registration time of the region */
};

/**
 * struct demo_stats - what the initiator measured
 */
struct demo_stats {
	uint64_t writes;
	uint64_t reads;
	uint64_t atomics;
	uint64_t bytes_written;
	uint64_t bytes_read;
	uint64_t bytes_atomic;
	uint64_t t_write_ns;
	uint64_t t_read_ns;
	uint64_t t_atomic_ns;
	uint64_t region_len;
	struct demo_report target;
};

/* Wire formats (little-endian, see demo_plan.c for the byte layouts). */
#define DEMO_PDATA_LEN		32
#define DEMO_SEED_MSG_LEN	32
#define DEMO_REPORT_MSG_LEN	56
#define DEMO_CTRL_SLOT		64

/* demo_plan.c */
int demo_plan_build(uint64_t seed, uint64_t region_len, unsigned int writes,
		    unsigned int atomics, struct demo_plan *p);
void demo_plan_free(struct demo_plan *p);
void demo_atomic_vals(const struct demo_op *op, struct demo_atomic_vals *v);
void demo_encode_pdata(uint8_t *b, uint64_t addr, uint64_t len, uint32_t rkey);
int demo_decode_pdata(const uint8_t *b, uint32_t n, uint64_t *addr,
		      uint64_t *len, uint32_t *rkey);
void demo_encode_seed(uint8_t *b, uint64_t seed, uint64_t region_len,
		      uint32_t writes, uint32_t atomics);
int demo_decode_seed(const uint8_t *b, uint32_t n, uint64_t *seed,
		     uint64_t *region_len, uint32_t *writes, uint32_t *atomics);
void demo_encode_report(uint8_t *b, const struct demo_report *r);
int demo_decode_report(const uint8_t *b, uint32_t n, struct demo_report *r);
void demo_err(const char *who, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* demo_target.c: the child; returns its exit status. */
int demo_target_main(const struct demo_opts *o, int port_fd);

/* demo_initiator.c: returns 0 when everything it checked was right. */
int demo_initiator_run(const struct demo_opts *o, uint16_t port,
		       struct demo_stats *st);

#endif /* PAGEWIRE_TOOL_DEMO_H */
