/* SPDX-License-Identifier: MIT */
/*
 * fi_getinfo for the provider: the attributes pagewire's MSG endpoints have
 * (pagewire.h's limits), matched against the application's hints, one
 * fi_info per address. libfabric's own matching helpers are not exported
 * to external providers, so the checks are written out here.
 */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pwf.h"

/* Modes, MR modes and ordering the provider can live with. */
#define PWF_MR_MODE_REQUIRED	(FI_MR_VIRT_ADDR | FI_MR_PROV_KEY)
/* Bits the provider passes back when the application offers them. */
#define PWF_MR_MODE_OPTIONAL	(FI_MR_LOCAL | FI_MR_ALLOCATED)
#define PWF_MSG_ORDER		(FI_ORDER_SAS | FI_ORDER_RAR | FI_ORDER_RAW | \
				 FI_ORDER_RAS | FI_ORDER_WAR | FI_ORDER_WAW | \
				 FI_ORDER_WAS | FI_ORDER_SAW | FI_ORDER_SAR)

size_t pwf_sockaddr_len(const void *addr)
{
	const struct sockaddr *sa = addr;

	if (!sa)
		return 0;
	if (sa->sa_family == AF_INET)
		return sizeof(struct sockaddr_in);
	if (sa->sa_family == AF_INET6)
		return sizeof(struct sockaddr_in6);
	return 0;
}

bool pwf_addr_is_set(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)ss;

		return s4->sin_addr.s_addr != htonl(INADDR_ANY) || s4->sin_port;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)ss;

		return !IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr) || s6->sin6_port;
	}
	return false;
}

static void *dup_addr(const void *addr, size_t len)
{
	void *p;

	if (!addr || !len)
		return NULL;
	p = malloc(len);
	if (p)
		memcpy(p, addr, len);
	return p;
}

static uint32_t addr_format_of(const void *addr)
{
	const struct sockaddr *sa = addr;

	return sa && sa->sa_family == AF_INET6 ? FI_SOCKADDR_IN6 : FI_SOCKADDR_IN;
}

/* The provider's attributes for one address pair, before the hints. */
static struct fi_info *base_info(const struct fi_info *hints)
{
	struct fi_info *fi = fi_allocinfo();

	if (!fi)
		return NULL;
	fi->caps = PWF_CAPS;
	fi->mode = 0;
	fi->addr_format = FI_SOCKADDR_IN;

	/* tx/rx caps carry no domain-level bits (fi_getinfo(3)) */
	fi->tx_attr->caps = FI_MSG | FI_RMA | FI_ATOMIC | FI_SEND | FI_READ | FI_WRITE;
	fi->tx_attr->msg_order = PWF_MSG_ORDER;
	fi->tx_attr->comp_order = FI_ORDER_STRICT;
	fi->tx_attr->inject_size = PWF_DEF_INJECT;
	fi->tx_attr->size = PWF_DEF_TX_SIZE;
	fi->tx_attr->iov_limit = PW_MAX_SGE;
	fi->tx_attr->rma_iov_limit = 1;

	fi->rx_attr->caps = FI_MSG | FI_RMA | FI_ATOMIC | FI_RECV |
			    FI_REMOTE_READ | FI_REMOTE_WRITE;
	fi->rx_attr->msg_order = PWF_MSG_ORDER;
	fi->rx_attr->comp_order = FI_ORDER_STRICT;
	fi->rx_attr->size = PWF_DEF_RX_SIZE;
	fi->rx_attr->iov_limit = PW_MAX_SGE;

	fi->ep_attr->type = FI_EP_MSG;
	fi->ep_attr->protocol = FI_PROTO_UNSPEC;
	fi->ep_attr->protocol_version = 1;
	fi->ep_attr->max_msg_size = PW_MAX_MSG_SIZE;
	/* one TCP stream per QP, executed in order (IBA ordering rules) */
	fi->ep_attr->max_order_raw_size = PW_MAX_MSG_SIZE;
	fi->ep_attr->max_order_war_size = PW_MAX_MSG_SIZE;
	fi->ep_attr->max_order_waw_size = PW_MAX_MSG_SIZE;
	fi->ep_attr->tx_ctx_cnt = 1;
	fi->ep_attr->rx_ctx_cnt = 1;

	fi->domain_attr->name = strdup(PWF_NAME);
	/* every object may be used from any thread (pagewire.h) */
	fi->domain_attr->threading = FI_THREAD_SAFE;
	/* the progress engine is a thread of its own */
	fi->domain_attr->control_progress = FI_PROGRESS_AUTO;
	fi->domain_attr->data_progress = FI_PROGRESS_AUTO;
	/* RNR NAKs are retried and CQs grow: no overrun reaches the user */
	fi->domain_attr->resource_mgmt = FI_RM_ENABLED;
	fi->domain_attr->av_type = FI_AV_UNSPEC;
	fi->domain_attr->mr_mode = PWF_MR_MODE_REQUIRED;
	fi->domain_attr->mr_key_size = PWF_MR_KEY_SIZE;
	fi->domain_attr->cq_data_size = PWF_CQ_DATA_SIZE;
	fi->domain_attr->cq_cnt = 1024;
	fi->domain_attr->ep_cnt = 65536;
	fi->domain_attr->tx_ctx_cnt = 65536;
	fi->domain_attr->rx_ctx_cnt = 65536;
	fi->domain_attr->max_ep_tx_ctx = 1;
	fi->domain_attr->max_ep_rx_ctx = 1;
	fi->domain_attr->mr_iov_limit = 1;
	fi->domain_attr->mr_cnt = 1u << 20;
	fi->domain_attr->caps = PWF_SECONDARY_CAPS;
	fi->domain_attr->max_err_data = PW_MAX_PRIVATE_DATA;

	fi->fabric_attr->name = strdup(PWF_NAME);
	fi->fabric_attr->prov_version = PWF_PROV_VERSION;
	if (!fi->domain_attr->name || !fi->fabric_attr->name) {
		fi_freeinfo(fi);
		return NULL;
	}
	(void)hints;
	return fi;
}

/*
 * Narrow @fi to the hints; false when they ask for something the
 * provider cannot do (the caller then reports FI_ENODATA).
 */
static bool apply_hints(struct fi_info *fi, const struct fi_info *h, uint32_t version)
{
	if (!h) {
		fi->mode = FI_RX_CQ_DATA;
		fi->tx_attr->mode = fi->rx_attr->mode = FI_RX_CQ_DATA;
		return true;
	}
	if (h->caps & ~PWF_CAPS)
		return false;
	if (h->caps) {
		uint64_t prim = h->caps & PWF_PRIMARY_CAPS;

		/* a primary cap without direction bits means both */
		fi->caps = prim | (h->caps & PWF_SECONDARY_CAPS) | PWF_SECONDARY_CAPS;
		if ((prim & (FI_MSG | FI_RMA | FI_ATOMIC)) &&
		    !(prim & (FI_SEND | FI_RECV | FI_READ | FI_WRITE |
			      FI_REMOTE_READ | FI_REMOTE_WRITE)))
			fi->caps |= FI_SEND | FI_RECV | FI_READ | FI_WRITE |
				    FI_REMOTE_READ | FI_REMOTE_WRITE;
		if (!(fi->caps & (FI_MSG | FI_RMA | FI_ATOMIC)))
			fi->caps |= FI_MSG | FI_RMA | FI_ATOMIC;
		fi->tx_attr->caps &= fi->caps;
		fi->rx_attr->caps &= fi->caps;
	}
	/*
	 * FI_RX_CQ_DATA: a WRITE with remote CQ data consumes a posted
	 * receive (verbs' RDMA WRITE with immediate). Without the mode,
	 * fi_writedata is refused on the endpoint; fi_senddata still works.
	 */
	fi->mode = h->mode & FI_RX_CQ_DATA;
	fi->tx_attr->mode = fi->rx_attr->mode = fi->mode;

	if (h->addr_format != FI_FORMAT_UNSPEC && h->addr_format != FI_SOCKADDR &&
	    h->addr_format != FI_SOCKADDR_IN && h->addr_format != FI_SOCKADDR_IN6)
		return false;

	if (h->ep_attr) {
		const struct fi_ep_attr *e = h->ep_attr;

		if (e->type != FI_EP_UNSPEC && e->type != FI_EP_MSG)
			return false;
		if (e->protocol != FI_PROTO_UNSPEC)
			return false;
		if (e->max_msg_size > PW_MAX_MSG_SIZE)
			return false;
		if (e->tx_ctx_cnt > 1 || e->rx_ctx_cnt > 1)
			return false;	/* no shared or scalable contexts */
		if (e->msg_prefix_size)
			return false;
		if (e->auth_key_size)
			return false;
	}
	if (h->tx_attr) {
		const struct fi_tx_attr *t = h->tx_attr;

		if (t->caps & ~PWF_CAPS)
			return false;
		if (t->msg_order & ~PWF_MSG_ORDER)
			return false;
		if (t->inject_size > PW_MAX_INLINE_DATA || t->size > PW_MAX_QP_WR ||
		    t->iov_limit > PW_MAX_SGE || t->rma_iov_limit > 1)
			return false;
		if (t->size)
			fi->tx_attr->size = t->size;
		if (t->inject_size)
			fi->tx_attr->inject_size = t->inject_size;
		if (t->iov_limit)
			fi->tx_attr->iov_limit = t->iov_limit;
		fi->tx_attr->op_flags = t->op_flags;
	}
	if (h->rx_attr) {
		const struct fi_rx_attr *r = h->rx_attr;

		if (r->caps & ~PWF_CAPS)
			return false;
		if (r->msg_order & ~PWF_MSG_ORDER)
			return false;
		if (r->size > PW_MAX_QP_WR || r->iov_limit > PW_MAX_SGE ||
		    r->total_buffered_recv)
			return false;
		if (r->size)
			fi->rx_attr->size = r->size;
		if (r->iov_limit)
			fi->rx_attr->iov_limit = r->iov_limit;
		fi->rx_attr->op_flags = r->op_flags;
	}
	if (h->domain_attr) {
		const struct fi_domain_attr *d = h->domain_attr;
		int mr = d->mr_mode;

		if (d->name && strcmp(d->name, PWF_NAME))
			return false;
		if (d->cq_data_size > PWF_CQ_DATA_SIZE)
			return false;
		if (d->mr_key_size && d->mr_key_size < PWF_MR_KEY_SIZE)
			return false;
		if (d->caps & ~PWF_SECONDARY_CAPS)
			return false;
		/*
		 * Keys are the provider's (pagewire chooses rkeys) and
		 * remote addresses are virtual addresses: FI_MR_BASIC, or
		 * FI_MR_PROV_KEY | FI_MR_VIRT_ADDR among the bits offered.
		 */
		if (mr == FI_MR_BASIC || (mr & FI_MR_BASIC) ||
		    (FI_VERSION_LT(version, FI_VERSION(1, 5)) && mr == FI_MR_UNSPEC)) {
			fi->domain_attr->mr_mode = FI_MR_BASIC;
			fi->mode |= FI_LOCAL_MR & h->mode;
		} else {
			if ((mr & PWF_MR_MODE_REQUIRED) != PWF_MR_MODE_REQUIRED)
				return false;
			fi->domain_attr->mr_mode = PWF_MR_MODE_REQUIRED |
						   (mr & PWF_MR_MODE_OPTIONAL);
		}
		if (d->threading != FI_THREAD_UNSPEC)
			fi->domain_attr->threading = d->threading;
		if (d->control_progress != FI_PROGRESS_UNSPEC)
			fi->domain_attr->control_progress = d->control_progress;
		if (d->data_progress != FI_PROGRESS_UNSPEC)
			fi->domain_attr->data_progress = d->data_progress;
		if (d->resource_mgmt != FI_RM_UNSPEC)
			fi->domain_attr->resource_mgmt = d->resource_mgmt;
		if (d->av_type != FI_AV_UNSPEC)
			fi->domain_attr->av_type = d->av_type;
	} else {
		/* no domain hints: the application accepts the defaults */
		fi->domain_attr->mr_mode = PWF_MR_MODE_REQUIRED;
	}
	if (h->fabric_attr && h->fabric_attr->name &&
	    strcmp(h->fabric_attr->name, PWF_NAME))
		return false;
	return true;
}

static int add_info(struct fi_info **head, struct fi_info **tail,
		    const struct fi_info *hints, uint32_t version,
		    const void *src, const void *dst)
{
	struct fi_info *fi = base_info(hints);

	if (!fi)
		return -FI_ENOMEM;
	if (!apply_hints(fi, hints, version)) {
		fi_freeinfo(fi);
		return -FI_ENODATA;
	}
	if (src) {
		fi->src_addrlen = pwf_sockaddr_len(src);
		fi->src_addr = dup_addr(src, fi->src_addrlen);
	}
	if (dst) {
		fi->dest_addrlen = pwf_sockaddr_len(dst);
		fi->dest_addr = dup_addr(dst, fi->dest_addrlen);
	}
	fi->addr_format = addr_format_of(src ? src : dst);
	if (hints && hints->addr_format == FI_SOCKADDR)
		fi->addr_format = FI_SOCKADDR;
	if (*tail)
		(*tail)->next = fi;
	else
		*head = fi;
	*tail = fi;
	return 0;
}

static bool family_ok(const struct fi_info *hints, int family)
{
	if (family != AF_INET && family != AF_INET6)
		return false;
	if (!hints)
		return true;
	if (hints->addr_format == FI_SOCKADDR_IN)
		return family == AF_INET;
	if (hints->addr_format == FI_SOCKADDR_IN6)
		return family == AF_INET6;
	return true;
}

/* The up interfaces' addresses, loopback last: for a getinfo naming none. */
/* @name is in the comma-separated @list */
static bool iface_listed(const char *list, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = list; *p;) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);

		if (l == n && !strncmp(p, name, n))
			return true;
		if (!e)
			break;
		p = e + 1;
	}
	return false;
}

/*
 * No address given: one info per address of the interfaces that are up.
 * Loopback comes only when nothing else does (or FI_PAGEWIRE_IFACE names
 * it): an application that spreads endpoints over the infos it is given
 * (Open MPI gives each local rank the next one) would otherwise publish
 * 127.0.0.1 to peers on other hosts, who would reach themselves.
 */
static int local_addrs(struct fi_info **head, struct fi_info **tail,
		       const struct fi_info *hints, uint32_t version)
{
	const char *only = pwf_params.iface;
	struct ifaddrs *ifa, *i;
	int ret = -FI_ENODATA;

	if (getifaddrs(&ifa))
		return -FI_ENODATA;
	for (int pass = 0; pass < 2; pass++) {
		if (pass == 1 && ret == 0 && !only[0])
			break;
		for (i = ifa; i; i = i->ifa_next) {
			bool lo;
			int r;

			if (!i->ifa_addr || !(i->ifa_flags & IFF_UP) ||
			    !family_ok(hints, i->ifa_addr->sa_family))
				continue;
			if (only[0] && !iface_listed(only, i->ifa_name))
				continue;
			/* IPv6 link-local addresses need a scope: skip them */
			if (i->ifa_addr->sa_family == AF_INET6 &&
			    IN6_IS_ADDR_LINKLOCAL(&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr))
				continue;
			lo = i->ifa_flags & IFF_LOOPBACK;
			if (lo != (pass == 1))
				continue;
			r = add_info(head, tail, hints, version, i->ifa_addr, NULL);
			if (r == -FI_ENOMEM) {
				freeifaddrs(ifa);
				return r;
			}
			if (!r)
				ret = 0;
		}
	}
	freeifaddrs(ifa);
	return ret;
}

static int resolve(const char *node, const char *service, bool passive,
		   const struct fi_info *hints, struct sockaddr_storage *out)
{
	struct addrinfo ai = { 0 }, *res, *r;
	int ret;

	ai.ai_socktype = SOCK_STREAM;
	ai.ai_flags = passive ? AI_PASSIVE : 0;
	if (hints && hints->addr_format == FI_SOCKADDR_IN)
		ai.ai_family = AF_INET;
	else if (hints && hints->addr_format == FI_SOCKADDR_IN6)
		ai.ai_family = AF_INET6;
	ret = getaddrinfo(node, service, &ai, &res);
	if (ret)
		return -FI_ENODATA;
	/* IPv4 first when both are offered, as the tcp provider prefers */
	for (int pass = 0; pass < 2; pass++)
		for (r = res; r; r = r->ai_next)
			if ((r->ai_family == AF_INET) == (pass == 0) &&
			    family_ok(hints, r->ai_family)) {
				memcpy(out, r->ai_addr, r->ai_addrlen);
				freeaddrinfo(res);
				return 0;
			}
	freeaddrinfo(res);
	return -FI_ENODATA;
}

/*
 * The local address the kernel routes @dst from (port 0), as the tcp
 * provider answers: a connected UDP socket's name, no packet sent. An
 * endpoint given only a destination then names itself by an address a
 * peer can reach; 0.0.0.0 would be refused by ofi_rxm's address vector.
 */
static int route_source(const struct sockaddr_storage *dst,
			struct sockaddr_storage *src)
{
	struct sockaddr_storage to = *dst;
	socklen_t len = sizeof(*src);
	int fd, ret = -1;

	/* any port will do for a route lookup, but not 0 */
	if (to.ss_family == AF_INET && !((struct sockaddr_in *)&to)->sin_port)
		((struct sockaddr_in *)&to)->sin_port = htons(9);
	else if (to.ss_family == AF_INET6 && !((struct sockaddr_in6 *)&to)->sin6_port)
		((struct sockaddr_in6 *)&to)->sin6_port = htons(9);
	fd = socket(to.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&to, (socklen_t)pwf_sockaddr_len(&to)) == 0 &&
	    getsockname(fd, (struct sockaddr *)src, &len) == 0 &&
	    src->ss_family == to.ss_family) {
		if (src->ss_family == AF_INET)
			((struct sockaddr_in *)src)->sin_port = 0;
		else
			((struct sockaddr_in6 *)src)->sin6_port = 0;
		ret = 0;
	}
	close(fd);
	return ret;
}

int pwf_getinfo(uint32_t version, const char *node, const char *service,
		uint64_t flags, const struct fi_info *hints, struct fi_info **info)
{
	struct fi_info *head = NULL, *tail = NULL;
	struct sockaddr_storage src, dst;
	const void *s = NULL, *d = NULL;
	int ret;

	*info = NULL;
	if (hints && hints->src_addr && pwf_sockaddr_len(hints->src_addr)) {
		memcpy(&src, hints->src_addr, pwf_sockaddr_len(hints->src_addr));
		s = &src;
	} else if (hints && hints->handle && pwf_pep_addr(hints->handle, &src) == 0) {
		/* an endpoint made from this info connects from the pep's address */
		s = &src;
	}
	if (hints && hints->dest_addr && pwf_sockaddr_len(hints->dest_addr)) {
		memcpy(&dst, hints->dest_addr, pwf_sockaddr_len(hints->dest_addr));
		d = &dst;
	}
	if (node || service) {
		if (flags & FI_SOURCE) {
			ret = resolve(node, service, true, hints, &src);
			if (ret)
				return ret;
			s = &src;
		} else {
			ret = resolve(node, service, false, hints, &dst);
			if (ret)
				return ret;
			d = &dst;
		}
	}
	if (!s && !d) {
		ret = local_addrs(&head, &tail, hints, version);
		if (ret) {
			fi_freeinfo(head);
			return ret;
		}
		*info = head;
		return 0;
	}
	if (d && !s) {
		/* the source of a connection: the route's address (else any), any port */
		memset(&src, 0, sizeof(src));
		if (route_source(&dst, &src) != 0) {
			memset(&src, 0, sizeof(src));
			src.ss_family = ((const struct sockaddr *)d)->sa_family;
		}
		s = &src;
	}
	ret = add_info(&head, &tail, hints, version, s, d);
	if (ret)
		return ret;
	if (hints && hints->handle && pwf_pep_addr(hints->handle, NULL) == 0)
		head->handle = hints->handle;
	*info = head;
	return 0;
}

struct fi_info *pwf_connreq_info(const struct fi_info *pep_info,
				 const struct sockaddr_storage *peer)
{
	struct fi_info *fi = fi_dupinfo(pep_info);

	if (!fi)
		return NULL;
	free(fi->dest_addr);
	fi->dest_addrlen = pwf_sockaddr_len(peer);
	fi->dest_addr = dup_addr(peer, fi->dest_addrlen);
	return fi;
}
