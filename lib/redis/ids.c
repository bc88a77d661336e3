/* Node and cluster ids into the keys the core uses (revtun_event_node_key):
 * "tenant:id" under tenant isolation, the id alone otherwise. A directory
 * that keyed differently from its handle would publish a node under one name
 * and be asked for it under another. */
#include <string.h>

#include "rr_int.h"

size_t rr_ids_key(bool isolation, const char *id, size_t id_len, const char *tenant,
                  size_t tenant_len, char *buf) {
  if (!id || id_len == 0 || id_len > RR_MAX_ID || memchr(id, '\0', id_len))
    return 0;
  if (!isolation) {
    memcpy(buf, id, id_len);
    return id_len;
  }
  if (!tenant || tenant_len == 0 || tenant_len > RR_MAX_ID || memchr(tenant, '\0', tenant_len) ||
      memchr(id, ':', id_len) || memchr(tenant, ':', tenant_len))
    return 0;
  memcpy(buf, tenant, tenant_len);
  buf[tenant_len] = ':';
  memcpy(buf + tenant_len + 1, id, id_len);
  return tenant_len + 1 + id_len;
}
