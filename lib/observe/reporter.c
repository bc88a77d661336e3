/* The reporter chosen by reporter_config: a factory the host
 * registered with revtun_reporter_register() under reporter_config.name, else
 * a built-in one, found by name or by typed_config type as Envoy finds
 * extensions:
 *   envoy.extensions.reverse_tunnel.reporting_service.dynamic_modules
 *     (envoy.extensions.bootstrap.reverse_tunnel.reporter.dynamic_modules.v3.
 *      DynamicModuleReverseTunnelReporter; dynamic_module.c, include/revtun/reporter_module.h)
 * It sees the reporter events (server_initialized, connected, disconnected,
 * goaway) after the host's own reporter callback. */
#include <string.h>

#include "base/proto.h"
#include "base/text.h"
#include "core/handle.h"
#include "observe/dynamic_module.h"
#include "observe/reporter.h"

/* Built-ins are created by reporter.c itself (they need the handle), so
 * only event and destroy are used from this table. */
static const struct rt_factory dynmod_factory = {
    .name = (char *)RT_DYNMOD_REPORTER_NAME,
    .event = rt_dynmod_event,
    .destroy = rt_dynmod_destroy,
    .is_reporter = true,
};

enum pick { PICK_NONE, PICK_HOST, PICK_DYNMOD, PICK_WRONG_TYPE };

static enum pick pick(const revtun_options_t *opts, const struct rt_ext_entry *e,
                      const struct rt_factory **host) {
  *host = rt_options_find_factory(opts, e->name, true);
  if (*host)
    return PICK_HOST;
  bool typed = e->type_url && *e->type_url;
  bool type_match = typed && strcmp(rt_pb_type_name(e->type_url), RT_DYNMOD_REPORTER_TYPE) == 0;
  if (type_match)
    return PICK_DYNMOD;
  if (strcmp(e->name, RT_DYNMOD_REPORTER_NAME) == 0)
    return typed ? PICK_WRONG_TYPE : PICK_DYNMOD;
  return PICK_NONE;
}

int rt_reporter_validate(const struct rt_mem *mem, const struct rt_config *cfg,
                         const revtun_options_t *opts, char *errbuf, size_t errbuf_len) {
  if (!cfg->has_reporter)
    return REVTUN_OK;
  const struct rt_ext_entry *e = &cfg->reporter;
  const struct rt_factory *host;
  switch (pick(opts, e, &host)) {
  case PICK_HOST: return REVTUN_OK;
  case PICK_DYNMOD: return rt_dynmod_validate(mem, e->value, e->value_len, errbuf, errbuf_len);
  case PICK_WRONG_TYPE:
    return rt_fail(REVTUN_E_CONFIG, errbuf, errbuf_len,
                   "reporter_config '%s': typed_config must be %s (got %s)", e->name,
                   RT_DYNMOD_REPORTER_TYPE, e->type_url);
  default:
    return rt_fail(REVTUN_E_CONFIG, errbuf, errbuf_len,
                   "reporter_config.name '%s' is not a known reporter (built in: %s; hosts add "
                   "theirs with revtun_reporter_register)",
                   e->name, RT_DYNMOD_REPORTER_NAME);
  }
}

int rt_reporter_create(revtun_t *h, char *errbuf, size_t errbuf_len) {
  if (!h->cfg.has_reporter)
    return REVTUN_OK;
  int rc = rt_reporter_validate(&h->mem, &h->cfg, &h->opts, errbuf, errbuf_len);
  if (rc)
    return rc;
  const struct rt_ext_entry *e = &h->cfg.reporter;
  const struct rt_factory *f;
  void *instance = NULL;
  if (pick(&h->opts, e, &f) == PICK_HOST) {
    char msg[256] = "";
    rc = f->create(e->type_url, e->value, e->value_len, f->user, &instance, msg, sizeof(msg));
    if (rc)
      return rt_fail(rc == REVTUN_E_NOMEM ? rc : REVTUN_E_CONFIG, errbuf, errbuf_len,
                     "reporter_config ('%s'): %s", e->name, *msg ? msg : revtun_strerror(rc));
  } else {
    f = &dynmod_factory;
    if ((rc = rt_dynmod_create(h, e->value, e->value_len, &instance, errbuf, errbuf_len)))
      return rc;
  }
  h->reporter_factory = f;
  h->reporter_instance = instance;
  return REVTUN_OK; /* revtun_new() reports server_initialized once all is built */
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
