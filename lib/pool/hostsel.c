/* Host selection as Envoy's reverse-connection cluster does it: a host-id
 * format (and, under tenant isolation, a tenant-id format) rendered over the
 * request's headers names the tunnel. The rendered key is tried as a cluster
 * first (round robin over its member nodes) and, when the handle has no
 * cluster of that name, as a node; under isolation both lookups are scoped
 * to the rendered tenant, as Envoy joins "tenant:key". A key or tenant that
 * renders empty or "-" (the formatter's text for a missing value) finds
 * nothing.
 *
 * The formats are compiled by the format engine (lib/format) with only the
 * %REQ(...)% operator allowed: request headers are the only context a host
 * selection has. Headers come from the wire through the host, so every one is
 * checked (count, total size, name characters, no NUL/CR/LF in values)
 * before anything is rendered. */
#include <string.h>

#include "base/ids.h"
#include "base/mem.h"
#include "base/text.h"
#include "core/handle.h"
#include "format/format.h"
#include "revtun/revtun.h"

struct revtun_hostsel {
  struct rt_mem mem;
  struct rt_fmt *host_id;
  struct rt_fmt *tenant_id; /* NULL: no tenant format */
};

/* The headers a render reads, checked. */
struct header_set {
  const revtun_header_t *h;
  size_t n;
};

static int ascii_lower(int c) { return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c; }

/* %REQ(name)%: the first header of that name, compared case-insensitively
 * (the format engine gives the name in lower case). */
static const char *find_header(const void *user, const char *name, size_t *len) {
  const struct header_set *set = user;
  size_t nlen = strlen(name);
  for (size_t i = 0; i < set->n; i++) {
    const revtun_header_t *hd = &set->h[i];
    if (hd->name_len != nlen)
      continue;
    size_t k = 0;
    while (k < nlen && ascii_lower((unsigned char)hd->name[k]) == (unsigned char)name[k])
      k++;
    if (k == nlen) {
      *len = hd->value_len;
      return hd->value_len ? hd->value : "";
    }
  }
  return NULL;
}

/* An HTTP token character (RFC 9110), the only bytes a header name has. */
static bool token_char(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
    return true;
  return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int check_headers(const revtun_header_t *h, size_t n) {
  if (n > REVTUN_HEADER_MAX_COUNT || (n && !h))
    return REVTUN_E_INVAL;
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    const revtun_header_t *hd = &h[i];
    if (!hd->name || hd->name_len == 0 || hd->name_len > REVTUN_HEADER_MAX_BYTES ||
        hd->value_len > REVTUN_HEADER_MAX_BYTES || (hd->value_len && !hd->value))
      return REVTUN_E_INVAL;
    total += hd->name_len + hd->value_len;
    if (total > REVTUN_HEADER_MAX_BYTES)
      return REVTUN_E_INVAL;
    for (size_t k = 0; k < hd->name_len; k++)
      if (!token_char((unsigned char)hd->name[k]))
        return REVTUN_E_INVAL;
    for (size_t k = 0; k < hd->value_len; k++) {
      unsigned char c = (unsigned char)hd->value[k];
      if (c == '\0' || c == '\r' || c == '\n')
        return REVTUN_E_INVAL;
    }
  }
  return REVTUN_OK;
}

static int compile(struct revtun_hostsel *sel, const char *src, const char *what,
                   struct rt_fmt **out, char *err, size_t errlen) {
  size_t len = strnlen(src, REVTUN_HOSTSEL_FORMAT_MAX + 1);
  if (len == 0 || len > REVTUN_HOSTSEL_FORMAT_MAX)
    return rt_fail(REVTUN_E_CONFIG, err, errlen, "%s must be 1 to %u bytes", what,
                   (unsigned)REVTUN_HOSTSEL_FORMAT_MAX);
  char msg[256];
  int rc = rt_fmt_compile(&sel->mem, src, len, RT_FMT_OP_REQ, 0, out, msg, sizeof(msg));
  if (rc)
    return rt_fail(rc, err, errlen, "%s: %s", what, msg);
  return REVTUN_OK;
}

int revtun_hostsel_new(const char *host_id_format, const char *tenant_id_format,
                       revtun_hostsel_t **out, char *errbuf, size_t errbuf_len) {
  if (errbuf && errbuf_len)
    errbuf[0] = '\0';
  if (!out)
    return REVTUN_E_INVAL;
  *out = NULL;
  if (!host_id_format)
    return rt_fail(REVTUN_E_INVAL, errbuf, errbuf_len, "host_id_format is required");
  struct rt_mem m;
  rt_mem_default(&m);
  struct revtun_hostsel *sel = rt_calloc(&m, 1, sizeof(*sel));
  if (!sel)
    return REVTUN_E_NOMEM;
  sel->mem = m;
  int rc = compile(sel, host_id_format, "host_id_format", &sel->host_id, errbuf, errbuf_len);
  if (!rc && tenant_id_format)
    rc = compile(sel, tenant_id_format, "tenant_id_format", &sel->tenant_id, errbuf, errbuf_len);
  if (rc) {
    revtun_hostsel_free(sel);
    return rc;
  }
  *out = sel;
  return REVTUN_OK;
}

void revtun_hostsel_free(revtun_hostsel_t *sel) {
  if (!sel)
    return;
  rt_fmt_free(&sel->mem, sel->host_id);
  rt_fmt_free(&sel->mem, sel->tenant_id);
  rt_free(&sel->mem, sel);
}

/* Renders f into buf (NUL-terminated); REVTUN_E_NOSPACE when the whole value
 * does not fit in cap - 1 bytes or is longer than a key may be. */
static int render_one(const struct rt_fmt *f, const struct header_set *set, char *buf, size_t cap,
                      size_t *len_out) {
  char tmp[REVTUN_HOSTSEL_KEY_MAX + 1];
  struct rt_fmt_ctx ctx = {.req_header = find_header, .req_user = set};
  unsigned flags = 0;
  size_t n = rt_fmt_render(f, &ctx, tmp, sizeof(tmp), &flags);
  if (len_out)
    *len_out = n;
  if ((flags & RT_FMT_R_SHORTENED) || n > REVTUN_HOSTSEL_KEY_MAX || n >= cap)
    return REVTUN_E_NOSPACE;
  memcpy(buf, tmp, n);
  buf[n] = '\0';
  return REVTUN_OK;
}

int revtun_hostsel_render(const revtun_hostsel_t *sel, const revtun_header_t *headers,
                          size_t n_headers, char *key, size_t key_cap, size_t *key_len_out,
                          char *tenant, size_t tenant_cap, size_t *tenant_len_out) {
  if (key_len_out)
    *key_len_out = 0;
  if (tenant_len_out)
    *tenant_len_out = 0;
  if (!sel || !key || key_cap == 0 || (tenant_cap && !tenant))
    return REVTUN_E_INVAL;
  key[0] = '\0';
  if (tenant_cap)
    tenant[0] = '\0';
  int rc = check_headers(headers, n_headers);
  if (rc)
    return rc;
  struct header_set set = {headers, n_headers};
  rc = render_one(sel->host_id, &set, key, key_cap, key_len_out);
  if (!rc && sel->tenant_id && tenant_cap)
    rc = render_one(sel->tenant_id, &set, tenant, tenant_cap, tenant_len_out);
  return rc;
}

/* Envoy's test for "the formatter found nothing". */
static bool renders_nothing(const char *s, size_t n) { return n == 0 || (n == 1 && s[0] == '-'); }

int revtun_handoff_select(revtun_t *h, const revtun_hostsel_t *sel, const revtun_header_t *headers,
                          size_t n_headers, revtun_time_ms_t now, int *fd_out,
                          revtun_strip_t *strip_out, int *lookup_out) {
  if (lookup_out)
    *lookup_out = 0;
  if (!fd_out)
    return REVTUN_E_INVAL;
  *fd_out = -1;
  if (!h || !sel)
    return REVTUN_E_INVAL;
  int rc = check_headers(headers, n_headers);
  if (rc)
    return rc;
  bool isolation = h->cfg.tenant_isolation;
  if (isolation && !sel->tenant_id)
    return REVTUN_E_CONFIG; /* Envoy refuses this cluster config outright */

  struct header_set set = {headers, n_headers};
  char key[REVTUN_HOSTSEL_KEY_MAX + 1], tenant[REVTUN_HOSTSEL_KEY_MAX + 1];
  size_t key_len = 0, tenant_len = 0;
  /* A key too long for any id names no socket: not found, like an empty one. */
  if (render_one(sel->host_id, &set, key, sizeof(key), &key_len) || renders_nothing(key, key_len))
    return REVTUN_E_NOT_FOUND;
  const char *scope = NULL; /* without isolation the tenant does not take part */
  if (isolation) {
    if (render_one(sel->tenant_id, &set, tenant, sizeof(tenant), &tenant_len) ||
        renders_nothing(tenant, tenant_len))
      return REVTUN_E_NOT_FOUND;
    scope = tenant;
  }
  /* Ids a socket can be filed under (no ':' under isolation): anything else
   * is refused by the lookups below and names nothing. */
  int members = revtun_cluster_node_count(h, key, scope);
  if (members < 0)
    return REVTUN_E_NOT_FOUND;
  int lookup = members > 0 ? REVTUN_LOOKUP_CLUSTER : REVTUN_LOOKUP_NODE;
  if (lookup_out)
    *lookup_out = lookup;
  if (lookup == REVTUN_LOOKUP_CLUSTER)
    return revtun_handoff_by_cluster(h, key, scope, now, fd_out, strip_out);
  return revtun_handoff(h, key, scope, now, fd_out, strip_out);
}
