/* SPDX-License-Identifier: MIT */
/*
 * Entry point of the external (DL) provider: libfabric dlopens
 * libpagewire-fi.so from FI_PROVIDER_PATH or its provider directory and
 * calls fi_prov_ini(). The provider's parameters are defined here so that
 * `fi_info -e` lists them; libfabric maps each to FI_PAGEWIRE_<NAME>.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pwf.h"

struct pwf_params pwf_params;

static void pwf_cleanup(void)
{
}

struct fi_provider pwf_prov = {
	.version = PWF_PROV_VERSION,
	.fi_version = PWF_FI_VERSION,
	.name = PWF_NAME,
	.getinfo = pwf_getinfo,
	.fabric = pwf_fabric_open,
	.cleanup = pwf_cleanup,
};

/* "256M", "4G", "1048576": bytes, or 0 with *ok false for garbage. */
static uint64_t parse_size(const char *s, bool *ok)
{
	char *end;
	unsigned long long v;

	*ok = false;
	if (!s || !isdigit((unsigned char)*s))
		return 0;
	v = strtoull(s, &end, 10);
	switch (toupper((unsigned char)*end)) {
	case 'K': v <<= 10; end++; break;
	case 'M': v <<= 20; end++; break;
	case 'G': v <<= 30; end++; break;
	case 'T': v <<= 40; end++; break;
	default: break;
	}
	if (*end == 'B' || *end == 'b')
		end++;
	*ok = *end == '\0';
	return v;
}

static void read_params(void)
{
	char *s = NULL;
	bool ok;

	int busy = 1;

	memset(&pwf_params, 0, sizeof(pwf_params));
	fi_param_get_bool(&pwf_prov, "busy_poll", &busy);
	pwf_params.busy_poll = busy != 0;
	if (!fi_param_get_str(&pwf_prov, "mr", &s) && s) {
		if (!strcasecmp(s, "pinned"))
			pwf_params.mr_pinned = 1;
		else if (strcasecmp(s, "odp"))
			PWF_WARN(FI_LOG_CORE, "FI_PAGEWIRE_MR=%s: not odp or pinned; using odp\n", s);
	}
	s = NULL;
	if (!fi_param_get_str(&pwf_prov, "policy", &s) && s) {
		if (!strcasecmp(s, "stall"))
			pwf_params.fault_policy = PW_FAULT_STALL;
		else if (!strcasecmp(s, "drop"))
			pwf_params.fault_policy = PW_FAULT_DROP;
		else if (!strcasecmp(s, "notify"))
			pwf_params.fault_policy = PW_FAULT_NOTIFY;
		else
			PWF_WARN(FI_LOG_CORE, "FI_PAGEWIRE_POLICY=%s: not stall, drop or notify; using stall\n", s);
	}
	s = NULL;
	if (!fi_param_get_str(&pwf_prov, "iface", &s) && s) {
		if (strlen(s) >= sizeof(pwf_params.iface))
			PWF_WARN(FI_LOG_CORE, "FI_PAGEWIRE_IFACE: longer than %zu bytes; ignored\n",
				 sizeof(pwf_params.iface) - 1);
		else
			strcpy(pwf_params.iface, s);
	}
	s = NULL;
	if (!fi_param_get_str(&pwf_prov, "budget", &s) && s) {
		pwf_params.mem_budget = parse_size(s, &ok);
		if (!ok) {
			PWF_WARN(FI_LOG_CORE, "FI_PAGEWIRE_BUDGET=%s: not a size (e.g. 256M); no budget\n", s);
			pwf_params.mem_budget = 0;
		}
	}
}

/* libfabric looks this symbol up by name after dlopen() */
struct fi_provider *fi_prov_ini(void);

FI_EXT_INI
{
	fi_param_define(&pwf_prov, "mr", FI_PARAM_STRING,
			"How fi_mr_reg registers memory: odp (default: on demand, "
			"never pinned, O(1) in the length, no RLIMIT_MEMLOCK) or "
			"pinned (populated and mlock'ed up front)");
	fi_param_define(&pwf_prov, "policy", FI_PARAM_STRING,
			"What a responder does when a remote operation needs pages "
			"not yet in the region's page table: stall (default), drop "
			"(NAK, the requester resends) or notify (peers are told when "
			"ranges go away and ask for them first)");
	fi_param_define(&pwf_prov, "budget", FI_PARAM_STRING,
			"Bytes the on-demand regions' page tables may hold (e.g. 256M); "
			"past it cold pages are reclaimed. Default: no budget");
	fi_param_define(&pwf_prov, "iface", FI_PARAM_STRING,
			"Network interfaces (names, comma-separated, e.g. eth0,lo) "
			"whose addresses fi_getinfo offers when given no address. "
			"Default: every interface that is up except loopback, which is "
			"offered only when no other is (a peer on another host cannot "
			"reach a loopback address)");
	fi_param_define(&pwf_prov, "busy_poll", FI_PARAM_BOOL,
			"Whether an fi_cq_read that finds nothing runs one pass of "
			"pagewire's progress engine in the calling thread (default: "
			"yes; the lowest latency for applications that poll). 0 leaves "
			"the sockets to pagewire's progress thread, which a polling "
			"thread then competes with for the CPU");
	read_params();
	return &pwf_prov;
}
