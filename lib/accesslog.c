/* Access loggers built from the config's access_log entries: a factory the
 * host registered under the entry's name with revtun_access_logger_register(),
 * or a built-in logger. Each lifecycle record goes to every logger after the
 * host's access-log callback. */
#include <string.h>

#include "revtun_int.h"

struct rt_logger {
  const struct rt_factory *factory; /* NULL for built-ins */
  void *instance;
};

static const struct rt_factory *find_logger(const revtun_options_t *opts,
                                            const struct rt_ext_entry *e) {
  return rt_options_find_factory(opts, e->name, false);
}

int rt_loggers_validate(const struct rt_mem *mem, const struct rt_config *cfg,
                        const revtun_options_t *opts, char *errbuf, size_t errbuf_len) {
  (void)mem;
  for (size_t i = 0; i < cfg->n_access_logs; i++) {
    const struct rt_ext_entry *e = &cfg->access_logs[i];
    if (find_logger(opts, e))
      continue;
    return rt_fail(REVTUN_E_CONFIG, errbuf, errbuf_len,
                   "access_log[%zu]: logger '%s' (typed_config %s) is not known; built in are "
                   "none yet, hosts add theirs with revtun_access_logger_register",
                   i, e->name, *e->type_url ? e->type_url : "(none)");
  }
  return REVTUN_OK;
}

int rt_loggers_create(revtun_t *h, char *errbuf, size_t errbuf_len) {
  int rc = rt_loggers_validate(&h->mem, &h->cfg, &h->opts, errbuf, errbuf_len);
  if (rc || !h->cfg.n_access_logs)
    return rc;
  h->loggers = rt_calloc(&h->mem, h->cfg.n_access_logs, sizeof(*h->loggers));
  if (!h->loggers)
    return rt_fail(REVTUN_E_NOMEM, errbuf, errbuf_len, "out of memory");
  for (size_t i = 0; i < h->cfg.n_access_logs; i++) {
    const struct rt_ext_entry *e = &h->cfg.access_logs[i];
    struct rt_logger *l = rt_calloc(&h->mem, 1, sizeof(*l));
    if (!l)
      return rt_fail(REVTUN_E_NOMEM, errbuf, errbuf_len, "out of memory");
    h->loggers[h->n_loggers++] = l;
    l->factory = find_logger(&h->opts, e);
    char msg[256] = "";
    rc = l->factory->create(e->type_url, e->value, e->value_len, l->factory->user, &l->instance,
                            msg, sizeof(msg));
    if (rc) {
      l->factory = NULL; /* nothing to destroy */
      return rt_fail(rc == REVTUN_E_NOMEM ? rc : REVTUN_E_CONFIG, errbuf, errbuf_len,
                     "access_log[%zu] ('%s'): %s", i, e->name, *msg ? msg : revtun_strerror(rc));
    }
  }
  return REVTUN_OK;
}

void rt_loggers_log(revtun_t *h, const revtun_event_t *ev) {
  for (size_t i = 0; i < h->n_loggers; i++) {
    struct rt_logger *l = h->loggers[i];
    if (l->factory) {
      h->cb_depth++;
      l->factory->event(l->instance, ev);
      h->cb_depth--;
    }
  }
}

void rt_loggers_flush(revtun_t *h, bool force) {
  (void)h;
  (void)force;
}

int rt_loggers_reopen(revtun_t *h) {
  (void)h;
  return REVTUN_OK;
}

int revtun_reopen_logs(revtun_t *h) {
  int rc = rt_enter(h, h ? h->last_now : 0);
  if (rc)
    return rc;
  rc = rt_loggers_reopen(h);
  rt_leave(h);
  return rc;
}

void rt_loggers_free(revtun_t *h) {
  for (size_t i = 0; i < h->n_loggers; i++) {
    struct rt_logger *l = h->loggers[i];
    if (l->factory && l->factory->destroy)
      l->factory->destroy(l->instance);
    rt_free(&h->mem, l);
  }
  rt_free(&h->mem, h->loggers);
  h->loggers = NULL;
  h->n_loggers = 0;
}

int revtun_stats_prometheus(const revtun_t *h, char *buf, size_t cap, size_t *len_out) {
  (void)h;
  (void)buf;
  (void)cap;
  (void)len_out;
  return REVTUN_E_UNSUPPORTED; /* TEMPORARY: issue 5 */
}
