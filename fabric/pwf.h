/* SPDX-License-Identifier: MIT */
/*
 * The pagewire libfabric provider (libpagewire-fi.so): FI_EP_MSG endpoints
 * on pagewire's public API. Everything here is built hidden; the only
 * exported symbol is fi_prov_ini.
 *
 * Object map (libfabric -> pagewire):
 *   fabric    -> a pw_context (one progress engine) and one pw_cm_channel
 *                that every EQ of the fabric is fed from
 *   domain    -> a pw_pd in the fabric's context
 *   mr        -> a pw_mr, on-demand (never pinned) unless FI_PAGEWIRE_MR=pinned
 *   pep       -> a pw_listener of pw_listen_channel()
 *   ep (MSG)  -> a pw_qp, created by fi_connect / fi_accept
 *   cq        -> a pw_cq with its own pw_comp_channel, plus a software queue
 *                of converted entries
 *   cntr      -> atomics, fed when the CQs of its endpoints are progressed
 *   eq        -> a software queue the fabric's CM channel is routed into
 *
 * Passive endpoints are fabric objects in libfabric (they exist before any
 * domain), and an accepted QP belongs to the listener's context: hence one
 * context per fabric rather than per domain.
 */
#ifndef PWF_H
#define PWF_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <rdma/fabric.h>
#include <rdma/fi_atomic.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#include <rdma/fi_tagged.h>
#include <rdma/providers/fi_log.h>
#include <rdma/providers/fi_prov.h>

#include <pagewire/pagewire.h>

#define pwf_container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

#define PWF_NAME		"pagewire"
#define PWF_PROV_VERSION	FI_VERSION(PW_VERSION_MAJOR * 100 + PW_VERSION_MINOR, PW_VERSION_PATCH)
#define PWF_FI_VERSION		FI_VERSION(1, 17)

/* What the provider offers (attr.c has the whole fi_info template). */
#define PWF_PRIMARY_CAPS	(FI_MSG | FI_RMA | FI_ATOMIC | FI_SEND | FI_RECV | \
				 FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE)
#define PWF_SECONDARY_CAPS	(FI_LOCAL_COMM | FI_REMOTE_COMM)
#define PWF_CAPS		(PWF_PRIMARY_CAPS | PWF_SECONDARY_CAPS)
#define PWF_DEF_TX_SIZE		256
#define PWF_DEF_RX_SIZE		256
#define PWF_DEF_INJECT		PW_MAX_INLINE_DATA
#define PWF_CQ_DATA_SIZE	4	/* pagewire's immediate data is 32 bits */
#define PWF_MR_KEY_SIZE		4	/* rkeys are 32 bits */

extern struct fi_provider pwf_prov;

#define PWF_WARN(subsys, ...) FI_WARN(&pwf_prov, subsys, __VA_ARGS__)
#define PWF_INFO(subsys, ...) FI_INFO(&pwf_prov, subsys, __VA_ARGS__)
#define PWF_DBG(subsys, ...)  FI_DBG(&pwf_prov, subsys, __VA_ARGS__)

/* Provider parameters (init.c), read once at fi_prov_ini. */
struct pwf_params {
	int mr_pinned;			/* FI_PAGEWIRE_MR=pinned */
	uint32_t fault_policy;		/* FI_PAGEWIRE_POLICY, 0 = pagewire's default */
	uint64_t mem_budget;		/* FI_PAGEWIRE_BUDGET, 0 = none */
	bool busy_poll;			/* FI_PAGEWIRE_BUSY_POLL (default on) */
	char iface[256];		/* FI_PAGEWIRE_IFACE: names, comma-separated; "" = any */
};
extern struct pwf_params pwf_params;

/* ---- fabric ------------------------------------------------------- */

struct pwf_eq;

struct pwf_fabric {
	struct fid_fabric fabric_fid;
	struct pw_context *ctx;
	struct pw_cm_channel *cmch;
	/*
	 * cm_lock: one thread at a time takes events off cmch and routes
	 * them to their EQs, so that the order of a connection's events is
	 * kept across EQs.
	 */
	pthread_mutex_t cm_lock;
	atomic_int refs;		/* domains, EQs, passive endpoints */
};

static inline struct pwf_fabric *to_pwf_fabric(struct fid_fabric *f)
{
	return pwf_container_of(f, struct pwf_fabric, fabric_fid);
}

int pwf_fabric_open(struct fi_fabric_attr *attr, struct fid_fabric **fabric,
		    void *context);
/* Take every waiting CM event off the fabric's channel into its EQs. */
void pwf_fabric_pump_cm(struct pwf_fabric *fab);

/* ---- domain and memory regions ------------------------------------ */

struct pwf_domain {
	struct fid_domain domain_fid;
	struct pwf_fabric *fab;
	struct pw_pd *pd;
	struct fi_info *info;
	uint64_t mr_mode;
	/* lock: protects the lazily registered implicit MR. */
	pthread_mutex_t lock;
	/*
	 * Implicit ODP MR (the whole address space, local access only): the
	 * lkey of buffers posted without a descriptor (no FI_MR_LOCAL) and
	 * of the provider's own scratch words. Never handed to a peer.
	 */
	struct pw_mr *implicit;
	_Atomic uint32_t implicit_lkey;
	atomic_bool implicit_ready;
	atomic_int refs;		/* MRs, CQs, counters, endpoints */
};

static inline struct pwf_domain *to_pwf_domain(struct fid_domain *d)
{
	return pwf_container_of(d, struct pwf_domain, domain_fid);
}

int pwf_domain_open(struct fid_fabric *fabric, struct fi_info *info,
		    struct fid_domain **domain, void *context);
/* lkey for a local buffer without a descriptor: 0 and *lkey, or -errno */
int pwf_domain_implicit_lkey(struct pwf_domain *dom, uint32_t *lkey);

struct pwf_mr {
	struct fid_mr mr_fid;
	struct pwf_domain *dom;
	struct pw_mr *mr;		/* NULL for a zero-length region */
};

int pwf_mr_reg(struct fid *fid, const void *buf, size_t len, uint64_t access,
	       uint64_t offset, uint64_t requested_key, uint64_t flags,
	       struct fid_mr **mr, void *context);
int pwf_mr_regv(struct fid *fid, const struct iovec *iov, size_t count,
		uint64_t access, uint64_t offset, uint64_t requested_key,
		uint64_t flags, struct fid_mr **mr, void *context);
int pwf_mr_regattr(struct fid *fid, const struct fi_mr_attr *attr,
		   uint64_t flags, struct fid_mr **mr);

/* ---- event queues --------------------------------------------------- */

struct pwf_eq_entry {
	struct pwf_eq_entry *next;
	uint32_t event;
	int err;			/* positive FI_E*, 0 for a normal entry */
	int prov_errno;
	fid_t fid;
	void *context;
	uint64_t data;
	struct fi_info *info;		/* FI_CONNREQ: handed to the reader */
	size_t len;			/* bytes in buf */
	uint8_t buf[];			/* CM data, err_data or a written entry */
};

struct pwf_eq {
	struct fid_eq eq_fid;
	struct pwf_fabric *fab;
	/* lock: protects the entry list and last_err. */
	pthread_mutex_t lock;
	struct pwf_eq_entry *head, *tail;
	struct pwf_eq_entry *last_err;	/* its err_data lives until the next read */
	int efd;			/* eventfd: readable while entries wait */
	int wait_fd;			/* epoll of efd and the CM channel: FI_GETWAIT */
	enum fi_wait_obj wait_obj;
};

static inline struct pwf_eq *to_pwf_eq(struct fid_eq *e)
{
	return pwf_container_of(e, struct pwf_eq, eq_fid);
}

int pwf_eq_open(struct fid_fabric *fabric, struct fi_eq_attr *attr,
		struct fid_eq **eq, void *context);
/* Queue an entry (called with fab->cm_lock held or from fi_eq_write). */
void pwf_eq_push(struct pwf_eq *eq, struct pwf_eq_entry *e);
struct pwf_eq_entry *pwf_eq_entry_new(size_t len);
/* Drop the entries naming @fid (its object is being closed). */
void pwf_eq_purge(struct pwf_eq *eq, fid_t fid);
int pwf_eq_trywait(struct pwf_eq *eq);

/* ---- completion queues and counters -------------------------------- */

struct pwf_ep;
struct pwf_cntr;

/* A converted completion, waiting in a CQ's software queue. */
struct pwf_cqe {
	struct fi_cq_tagged_entry e;
	int err;			/* positive FI_E*, 0 = success */
	int prov_errno;			/* enum pw_wc_status */
	size_t olen;
};

struct pwf_cq {
	struct fid_cq cq_fid;
	struct pwf_domain *dom;
	struct pw_comp_channel *ch;
	struct pw_cq *cq;
	enum fi_cq_format format;
	size_t entry_size;
	enum fi_wait_obj wait_obj;
	/*
	 * A CQ of the provider's own, for an endpoint direction bound to a
	 * counter but to no CQ: its entries feed counters and are dropped.
	 */
	bool hidden;
	/*
	 * lock: protects the software queue and serialises draining the
	 * pw_cq, so that a completion taken off it is converted (and its
	 * op record released) before another thread or an endpoint's close
	 * can look.
	 */
	pthread_mutex_t lock;
	struct pwf_cqe *q;
	size_t q_cap, q_head, q_count;
	struct pwf_cqe last_err;	/* what fi_cq_readerr last gave out */
	int efd;			/* fi_cq_signal, and the wait fd's second half */
	int wait_fd;			/* epoll of the channel fd and efd */
	atomic_bool signaled;
	atomic_int refs;		/* endpoints bound */
};

static inline struct pwf_cq *to_pwf_cq(struct fid_cq *c)
{
	return pwf_container_of(c, struct pwf_cq, cq_fid);
}

int pwf_cq_open(struct fid_domain *domain, struct fi_cq_attr *attr,
		struct fid_cq **cq, void *context);
struct pwf_cq *pwf_cq_hidden(struct pwf_domain *dom);
void pwf_cq_free(struct pwf_cq *cq);
/* Drain the pw_cq into the software queue; returns entries waiting. */
size_t pwf_cq_progress(struct pwf_cq *cq);
int pwf_cq_trywait(struct pwf_cq *cq);
/* Wait up to @timeout_ms for the pw_cq to signal (armed first). */
int pwf_cq_wait_event(struct pwf_cq *cq, int timeout_ms);

#define PWF_CNTR_MAX_SRC 64

struct pwf_cntr {
	struct fid_cntr cntr_fid;
	struct pwf_domain *dom;
	_Atomic uint64_t value;
	_Atomic uint64_t errs;
	enum fi_wait_obj wait_obj;
	/* lock: protects the list of CQs whose progress feeds this counter. */
	pthread_mutex_t lock;
	struct pwf_cq *src[PWF_CNTR_MAX_SRC];
	int nsrc;
	int efd;			/* wakes fi_cntr_wait after add/set */
	atomic_int refs;		/* endpoints bound */
};

static inline struct pwf_cntr *to_pwf_cntr(struct fid_cntr *c)
{
	return pwf_container_of(c, struct pwf_cntr, cntr_fid);
}

int pwf_cntr_open(struct fid_domain *domain, struct fi_cntr_attr *attr,
		  struct fid_cntr **cntr, void *context);
int pwf_cntr_add_source(struct pwf_cntr *c, struct pwf_cq *cq);
void pwf_cntr_del_source(struct pwf_cntr *c, struct pwf_cq *cq);
void pwf_cntr_inc(struct pwf_cntr *c, bool err);

/* ---- endpoints ------------------------------------------------------ */

/*
 * One posted operation: what its completion must report. The wr_id of
 * every pagewire WR the provider posts points at one.
 */
struct pwf_op {
	struct pwf_op *next;		/* free list */
	struct pwf_ep *ep;
	void *context;
	uint64_t flags;			/* FI_SEND | FI_MSG, FI_RMA | FI_READ, ... */
	void *buf;
	size_t len;
	bool report;			/* write a CQ entry (else counters only) */
	uint8_t cntr;			/* PWF_CNTR_* to bump */
	uint64_t scratch;		/* result word of a non-fetching atomic */
};

enum {
	PWF_CNTR_SEND, PWF_CNTR_RECV, PWF_CNTR_READ, PWF_CNTR_WRITE, PWF_CNTR_N,
	PWF_CNTR_NONE = PWF_CNTR_N	/* an op that counts nowhere (quiet_op) */
};

enum pwf_ep_state {
	PWF_EP_IDLE,			/* not connected yet */
	PWF_EP_CONNECTING,		/* fi_connect / fi_accept called */
	PWF_EP_CONNECTED,
	PWF_EP_SHUTDOWN,
};

/* A receive posted before the QP exists (fi_recv before fi_connect). */
struct pwf_pending_recv {
	struct pwf_pending_recv *next;
	struct pw_recv_wr wr;
	struct pw_sge sge[PW_MAX_SGE];
};

struct pwf_ep {
	struct fid_ep ep_fid;
	struct pwf_domain *dom;
	struct fi_info *info;
	struct pwf_eq *eq;
	struct pwf_cq *scq, *rcq;	/* bound CQs, or hidden ones at enable */
	bool scq_selective, rcq_selective;
	bool scq_hidden, rcq_hidden;
	struct pwf_cntr *cntr[PWF_CNTR_N];
	uint64_t tx_op_flags, rx_op_flags;
	size_t inject_size;
	bool rx_cq_data;		/* FI_RX_CQ_DATA agreed: writedata allowed */
	struct pw_conn_request *req;	/* passive side, from info->handle */
	/*
	 * Active side: connect from here (info->src_addr, or the address of
	 * the pep given as info->handle); family 0: the kernel's choice.
	 */
	struct sockaddr_storage src;
	/*
	 * lock: protects qp, state, the pending receives and the op free
	 * list. Posting holds it only to take an op and read qp; pagewire
	 * serialises posts to one QP itself.
	 */
	pthread_mutex_t lock;
	_Atomic(struct pw_qp *) qp;
	_Atomic int state;		/* enum pwf_ep_state */
	bool enabled;
	bool closing;
	struct pwf_pending_recv *pend_head, *pend_tail;
	struct pwf_op *free_ops;
	struct pwf_op quiet_op;		/* unsignalled transmits (pwf_tx_op) */
	struct pwf_op **op_chunks;	/* every chunk allocated, freed at close */
	size_t n_chunks, ops_total, ops_max;
};

static inline struct pwf_ep *to_pwf_ep(struct fid_ep *e)
{
	return pwf_container_of(e, struct pwf_ep, ep_fid);
}

int pwf_endpoint(struct fid_domain *domain, struct fi_info *info,
		 struct fid_ep **ep, void *context);
/* An op record filled in for one posted operation, or NULL (-FI_EAGAIN). */
struct pwf_op *pwf_op_new(struct pwf_ep *ep, void *context, uint64_t flags,
			  size_t len, bool report, uint8_t cntr);
struct pwf_op *pwf_tx_op(struct pwf_ep *ep, void *context, uint64_t flags,
			 size_t len, bool report, uint8_t cntr,
			 unsigned int *send_flags);
void pwf_op_put(struct pwf_op *op);
/* the QP once connected, else NULL and *err (negative FI_E*) */
struct pw_qp *pwf_ep_qp(struct pwf_ep *ep, ssize_t *err);
/* lkey for a local buffer with descriptor @desc (NULL allowed) */
int pwf_desc_lkey(struct pwf_ep *ep, void *desc, uint32_t *lkey);
/* an EQ event about this endpoint arrived (fabric.c's routing) */
void pwf_ep_cm_event(struct pwf_ep *ep, const struct pw_cm_event *ev);

struct pwf_pep {
	struct fid_pep pep_fid;
	struct pwf_fabric *fab;
	struct fi_info *info;
	struct pwf_eq *eq;
	struct pw_listener *l;
	struct sockaddr_storage addr;	/* what fi_getname reports */
	socklen_t addrlen;
};

static inline struct pwf_pep *to_pwf_pep(struct fid_pep *p)
{
	return pwf_container_of(p, struct pwf_pep, pep_fid);
}

/*
 * 0 when @fid is a passive endpoint of this provider, with its address
 * (the one fi_setname gave, or its listener's) in @addr unless NULL;
 * else -FI_EINVAL.
 */
int pwf_pep_addr(const struct fid *fid, struct sockaddr_storage *addr);

int pwf_passive_ep(struct fid_fabric *fabric, struct fi_info *info,
		   struct fid_pep **pep, void *context);
void pwf_pep_connreq(struct pwf_pep *pep, const struct pw_cm_event *ev);

/* fi_info->handle of a FI_CONNREQ: the request until accepted or rejected */
struct pwf_connreq {
	struct fid fid;
	struct pw_conn_request *req;
};

/* Data transfer ops tables (msg.c, rma.c, atomic.c). */
extern struct fi_ops_msg pwf_msg_ops;
extern struct fi_ops_rma pwf_rma_ops;
extern struct fi_ops_atomic pwf_atomic_ops;
int pwf_query_atomic(struct fid_domain *domain, enum fi_datatype datatype,
		     enum fi_op op, struct fi_atomic_attr *attr, uint64_t flags);

/* Post one send-side WR for an op; maps pagewire's errors. */
ssize_t pwf_post_send(struct pwf_ep *ep, struct pw_send_wr *wr);
/*
 * SGEs for @iov: lkeys from the descriptors, none when @inline_data (the
 * bytes are copied at post time). Checks each length and the sum.
 */
int pwf_fill_sges(struct pwf_ep *ep, struct pw_sge *sge, const struct iovec *iov,
		  void **desc, size_t count, bool inline_data, size_t *total);

/* Does a send-side op write a CQ entry? (fi_inject never; else as bound) */
static inline bool pwf_tx_report(const struct pwf_ep *ep, uint64_t flags)
{
	return !(flags & FI_INJECT) &&
	       (!ep->scq_selective || (flags & FI_COMPLETION));
}

/* ---- information (attr.c) ------------------------------------------- */

int pwf_getinfo(uint32_t version, const char *node, const char *service,
		uint64_t flags, const struct fi_info *hints,
		struct fi_info **info);
/* A fi_info for the passive side's FI_CONNREQ, based on the pep's. */
struct fi_info *pwf_connreq_info(const struct fi_info *pep_info,
				 const struct sockaddr_storage *peer);
size_t pwf_sockaddr_len(const void *addr);
/* An address other than the wildcard, or a port other than 0. */
bool pwf_addr_is_set(const struct sockaddr_storage *ss);

/* ---- helpers (util.c) ----------------------------------------------- */

/* negative FI_E* from a negative errno (pagewire's int returns) */
int pwf_errno(int neg_errno);
/* positive FI_E* for a pagewire completion status */
int pwf_wc_err(enum pw_wc_status st);

/* fi_control(FI_GETWAIT, FI_GETWAITOBJ) of a CQ or EQ whose wait object is @wait_obj. */
int pwf_getwait(int command, enum fi_wait_obj wait_obj, int wait_fd, void *arg);

/* Functions for ops a provider does not support. */
int pwf_no_bind(struct fid *fid, struct fid *bfid, uint64_t flags);
int pwf_no_control(struct fid *fid, int command, void *arg);
int pwf_no_ops_open(struct fid *fid, const char *name, uint64_t flags,
		    void **ops, void *context);
int pwf_no_tostr(const struct fid *fid, char *buf, size_t len);
int pwf_no_ops_set(struct fid *fid, const char *name, uint64_t flags,
		   void *ops, void *context);
extern struct fi_ops_tagged pwf_no_tagged_ops;

#endif /* PWF_H */
