/* The reporter chosen by reporter_config.name (reference §2.2): a factory the
 * host registered with revtun_reporter_register(), or a built-in one. It sees
 * the reporter events (connected, disconnected, goaway, server_initialized)
 * after the host's own reporter callback. */
#include <string.h>

#include "revtun_int.h"

/* Built-in reporters, looked up when the host registered none by that name. */
static const struct rt_factory *builtin_reporter(const char *name) {
  (void)name;
  return NULL;
}

static const struct rt_factory *find_reporter(const revtun_options_t *opts, const char *name) {
  const struct rt_factory *f = rt_options_find_factory(opts, name, true);
  return f ? f : builtin_reporter(name);
}

int rt_reporter_validate(const struct rt_mem *mem, const struct rt_config *cfg,
                         const revtun_options_t *opts, char *errbuf, size_t errbuf_len) {
  (void)mem;
  if (!cfg->has_reporter || find_reporter(opts, cfg->reporter.name))
    return REVTUN_OK;
  return rt_fail(REVTUN_E_CONFIG, errbuf, errbuf_len,
                 "reporter_config.name '%s' is not a known reporter (built in: none matched; "
                 "hosts add theirs with revtun_reporter_register)",
                 cfg->reporter.name);
}

int rt_reporter_create(revtun_t *h, char *errbuf, size_t errbuf_len) {
  if (!h->cfg.has_reporter)
    return REVTUN_OK;
  int rc = rt_reporter_validate(&h->mem, &h->cfg, &h->opts, errbuf, errbuf_len);
  if (rc)
    return rc;
  const struct rt_factory *f = find_reporter(&h->opts, h->cfg.reporter.name);
  void *instance = NULL;
  char msg[256] = "";
  rc = f->create(h->cfg.reporter.type_url, h->cfg.reporter.value, h->cfg.reporter.value_len,
                 f->user, &instance, msg, sizeof(msg));
  if (rc)
    return rt_fail(rc == REVTUN_E_NOMEM ? rc : REVTUN_E_CONFIG, errbuf, errbuf_len,
                   "reporter_config ('%s'): %s", h->cfg.reporter.name,
                   *msg ? msg : revtun_strerror(rc));
  h->reporter_factory = f;
  h->reporter_instance = instance;
  struct revtun_event ev;
  rt_event_init(&ev, h, REVTUN_EV_REPORT_SERVER_INITIALIZED, h->last_now, NULL);
  rt_reporter_event(h, &ev);
  return REVTUN_OK;
}

void rt_reporter_event(revtun_t *h, const revtun_event_t *ev) {
  if (!h->reporter_factory)
    return;
  h->cb_depth++;
  h->reporter_factory->event(h->reporter_instance, ev);
  h->cb_depth--;
}

void rt_reporter_free(revtun_t *h) {
  if (h->reporter_factory && h->reporter_factory->destroy)
    h->reporter_factory->destroy(h->reporter_instance);
  h->reporter_factory = NULL;
  h->reporter_instance = NULL;
}
