/* Which tunnel a request names: the library's host selector
 * (revtun_hostsel_new(3)), as Envoy's reverse-connection cluster picks a
 * host. --host-id-format and --tenant-id-format are its formats; without
 * them the shorthand headers make them: --node-header N and --cluster-header
 * C give %REQ(N?C)% (the node id, or the cluster id when there is none), and
 * --tenant-header T gives %REQ(T)%. The rendered key is tried as a cluster
 * first and then as a node (upstream.c), as revtun_handoff_select(3) does;
 * the proxy renders and looks up itself because it keeps HTTP/2 sessions
 * open on tunnels already handed off, which the library does not know. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

int select_setup(struct proxy *p, const char *host_id_format, const char *tenant_id_format) {
  const struct settings *cfg = &p->cfg;
  char host[600], tenant[300], err[512];
  p->sel_shorthand = !host_id_format;
  p->tenant_shorthand = !tenant_id_format;
  if (!host_id_format) {
    snprintf(host, sizeof(host), "%%REQ(%s?%s)%%", cfg->node_header, cfg->cluster_header);
    host_id_format = host;
  }
  if (!tenant_id_format) {
    snprintf(tenant, sizeof(tenant), "%%REQ(%s)%%", cfg->tenant_header);
    tenant_id_format = tenant;
  }
  if (revtun_hostsel_new(host_id_format, tenant_id_format, &p->sel, err, sizeof(err)) !=
      REVTUN_OK) {
    logmsg("--host-id-format/--tenant-id-format: %s", err);
    return -1;
  }
  return 0;
}

void select_free(struct proxy *p) {
  revtun_hostsel_free(p->sel);
  p->sel = NULL;
}

int select_render(struct proxy *p, struct xchg *x, char *why, size_t whylen) {
  revtun_header_t hd[REVTUN_HEADER_MAX_COUNT];
  size_t n = 0;
  x->key_ok = 0;
  x->key[0] = x->key_tenant[0] = '\0';
  for (size_t i = 0; i < x->req.n; i++) {
    const nghttp2_nv *v = &x->req.v[i];
    if (v->namelen && v->name[0] == ':')
      continue; /* pseudo-headers are not request headers of the format */
    if (n == REVTUN_HEADER_MAX_COUNT) {
      snprintf(why, whylen, "more than %d request headers to select a tunnel by",
               REVTUN_HEADER_MAX_COUNT);
      return 431;
    }
    hd[n++] =
        (revtun_header_t){(const char *)v->name, v->namelen, (const char *)v->value, v->valuelen};
  }
  size_t kl = 0, tl = 0;
  int rc = revtun_hostsel_render(p->sel, hd, n, x->key, sizeof(x->key), &kl, x->key_tenant,
                                 sizeof(x->key_tenant), &tl);
  if (rc == REVTUN_E_NOSPACE) {
    snprintf(why, whylen, "the tunnel key or tenant is longer than %d bytes", MAX_ID_BYTES);
    return 431;
  }
  if (rc != REVTUN_OK) {
    snprintf(why, whylen, "request headers unusable for selecting a tunnel (%s)",
             revtun_strerror(rc));
    return 400;
  }
  x->key_ok = kl > 0 && strcmp(x->key, "-") != 0;
  if (tl == 1 && x->key_tenant[0] == '-')
    x->key_tenant[0] = '\0'; /* the text of an absent header: no tenant */
  return 0;
}

int select_names_cluster(struct proxy *p, const struct xchg *x) {
  const char *tenant = x->key_tenant[0] ? x->key_tenant : NULL;
  if (revtun_cluster_node_count(p->h, x->key, tenant) > 0)
    return 1;
  /* With the shorthand headers a key from the cluster header stays a
   * cluster's name even where this instance has no such cluster (another
   * instance of the fleet may have it). */
  const char *node = hdrs_get(&x->req, p->cfg.node_header);
  return p->sel_shorthand && !(node && *node);
}

void select_miss(struct proxy *p, const struct xchg *x, char *why, size_t whylen) {
  if (!x->key_ok) {
    if (p->sel_shorthand)
      snprintf(why, whylen, "missing %s header", p->cfg.node_header);
    else
      snprintf(why, whylen, "--host-id-format renders no tunnel key for this request");
    return;
  }
  snprintf(why, whylen, "no reverse tunnel for %s %s",
           select_names_cluster(p, x) ? "cluster" : "node", x->key);
}
