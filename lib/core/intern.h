/* Interned strings: tenant ids and initiator worker ids repeat across many
 * sockets, so each distinct value is stored once, reference counted, in the
 * handle's string table. */
#ifndef REVTUN_CORE_INTERN_H
#define REVTUN_CORE_INTERN_H

#include <stdint.h>

#include "base/hash.h"
#include "revtun/revtun.h"

struct rt_istr {
  struct rt_hnode hn;
  uint32_t refs;
  char str[];
};

/* A reference to s, or NULL for NULL, "" and when memory ran out. */
struct rt_istr *rt_istr_get(revtun_t *h, const char *s);
void rt_istr_put(revtun_t *h, struct rt_istr *s);
static inline const char *rt_istr_str(const struct rt_istr *s) { return s ? s->str : ""; }

#endif
