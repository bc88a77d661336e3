/* See ids.h. */
#include <string.h>

#include "base/ids.h"
#include "revtun/revtun.h"

static bool has_colon(const char *s, size_t n) { return memchr(s, ':', n) != NULL; }

int rt_ids_check(bool isolation, const char *id, const char *tenant, struct rt_idpair *out) {
  if (!id)
    return REVTUN_E_INVAL;
  size_t n = strnlen(id, RT_MAX_ID_LEN + 1);
  if (n == 0 || n > RT_MAX_ID_LEN)
    return REVTUN_E_INVAL;
  size_t t = tenant ? strnlen(tenant, RT_MAX_ID_LEN + 1) : 0;
  if (t > RT_MAX_ID_LEN)
    return REVTUN_E_INVAL;
  if (isolation && (t == 0 || has_colon(id, n) || has_colon(tenant, t)))
    return REVTUN_E_INVAL;
  *out = (struct rt_idpair){t ? tenant : "", id, t, n, isolation};
  return REVTUN_OK;
}

bool rt_ids_optional_ok(const char *s) {
  return !s || strnlen(s, RT_MAX_ID_LEN + 1) <= RT_MAX_ID_LEN;
}

size_t rt_ids_key(const struct rt_idpair *p, char *buf) {
  size_t n = 0;
  if (p->scoped) {
    memcpy(buf, p->tenant, p->tenant_len);
    n = p->tenant_len;
    buf[n++] = ':';
  }
  memcpy(buf + n, p->id, p->id_len);
  n += p->id_len;
  buf[n] = '\0';
  return n;
}
