/* SPDX-License-Identifier: MIT */
/* The context (the "device") and protection domains. */
#ifndef PW_CORE_CONTEXT_H
#define PW_CORE_CONTEXT_H

#include <pthread.h>
#include <stdatomic.h>

#include <pagewire/pagewire.h>

#include "engine/engine.h"
#include "mr/mr.h"
#include "paging/fault.h"
#include "util/util.h"

struct pw_context {
	struct pw_engine engine;
	struct pw_keytable keys;
	struct pw_fault_engine faults;	/* ODP faults, off the progress thread */
	/*
	 * obj_lock: protects the object counters below and the pinned-MR
	 * list. Never taken on the data path.
	 */
	pthread_mutex_t obj_lock;
	int npd, ncq, nchannel, nlistener;
	struct pw_mr_i *pinned;	/* pinned MRs, for overlap-aware munlock */
	atomic_uint next_qpn;
	uint32_t fault_policy;	/* enum pw_fault_policy: the QPs' default */
};

struct pw_pd_i {
	struct pw_pd ibpd;
	atomic_int users;	/* MRs and QPs in this PD */
};

static inline struct pw_pd_i *to_pd(struct pw_pd *pd)
{
	return container_of(pd, struct pw_pd_i, ibpd);
}

#endif /* PW_CORE_CONTEXT_H */
