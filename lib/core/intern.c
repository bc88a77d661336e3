/* See intern.h. */
#include <string.h>

#include "base/macros.h"
#include "core/handle.h"
#include "core/intern.h"

struct rt_istr *rt_istr_get(revtun_t *h, const char *s) {
  if (!s || !*s)
    return NULL;
  size_t n = strlen(s);
  struct rt_hnode *hn = rt_htable_find(&h->strings, s, n);
  struct rt_istr *is;
  if (hn) {
    is = RT_CONTAINER_OF(hn, struct rt_istr, hn);
    is->refs++;
    return is;
  }
  is = rt_malloc(&h->mem, sizeof(*is) + n + 1);
  if (!is)
    return NULL;
  memcpy(is->str, s, n + 1);
  is->refs = 1;
  if (rt_htable_insert(&h->mem, &h->strings, &is->hn, is->str, n)) {
    rt_free(&h->mem, is);
    return NULL;
  }
  return is;
}

void rt_istr_put(revtun_t *h, struct rt_istr *is) {
  if (!is || --is->refs)
    return;
  rt_htable_remove(&h->strings, &is->hn);
  rt_free(&h->mem, is);
}
