/* The handle as the host sees it: config validation, creation (where the
 * layers are built and core's upcalls wired to them), freeing, and the
 * config getters. */
#include <string.h>

#include "acceptor/acceptor.h"
#include "base/text.h"
#include "core/config.h"
#include "core/event.h"
#include "core/fdtable.h"
#include "core/handle.h"
#include "core/host.h"
#include "core/options.h"
#include "core/reentry.h"
#include "core/stats.h"
#include "observe/accesslog.h"
#include "observe/reporter.h"
#include "pool/pool.h"
#include "pool/remote.h"

/* The handle and the pool's state, allocated together. */
struct handle_block {
  struct revtun h; /* first: the block is freed through h */
  struct rt_pool pool;
};

/* ------------------------------------------------------------ validation */

int revtun_config_validate(const void *config, size_t len, const revtun_options_t *opts,
                           char *errbuf, size_t errbuf_len) {
  revtun_options_t defaults;
  if (!opts) {
    rt_options_defaults(&defaults);
    opts = &defaults;
  }
  struct rt_config cfg;
  int rc = rt_config_parse(&opts->mem, config, len, &opts->limits, &cfg, errbuf, errbuf_len);
  if (rc)
    return rc;
  rc = rt_loggers_validate(&opts->mem, &cfg, opts, errbuf, errbuf_len);
  if (!rc)
    rc = rt_reporter_validate(&opts->mem, &cfg, opts, errbuf, errbuf_len);
  rt_config_clear(&opts->mem, &cfg);
  if (!rc && errbuf && errbuf_len)
    errbuf[0] = '\0';
  return rc;
}

/* ---------------------------------------------------------------- freeing */

static void destroy(revtun_t *h) {
  h->free_pending = false;
  h->freeing = true;
  /* Tunnels first: their closing callbacks may still free an acceptor
   * (deferred), which the line after then finishes. Sockets on their way
   * here from other handles join the pool first, so that they close with
   * it. */
  rt_remote_detach(h, h->last_now);
  rt_pool_free(h);
  rt_acceptors_free_all(h);
  rt_free_deferred_all(h);
  rt_reporter_free(h);
  rt_loggers_free(h);
  rt_disarm_timer(h);
  rt_handle_clear(h);
  struct rt_mem m = h->mem;
  rt_free(&m, h); /* the block: h and the pool's state */
}

/* The finish upcall: what callbacks asked for inside a call, run when no
 * library frame is left. */
static void finish(revtun_t *h) {
  if (h->acceptor_free_pending)
    rt_acceptors_free_pending(h);
  if (h->free_pending)
    destroy(h);
}

void revtun_free(revtun_t *h) {
  if (!h || h->freeing)
    return;
  if (h->depth || h->cb_depth) {
    h->free_pending = true; /* the outermost rt_leave() finishes the job */
    return;
  }
  destroy(h);
}

/* --------------------------------------------------------------- creation */

int revtun_new(revtun_t **out, const void *config, size_t len, const revtun_options_t *opts,
               revtun_time_ms_t now, char *errbuf, size_t errbuf_len) {
  if (!out)
    return rt_fail(REVTUN_E_INVAL, errbuf, errbuf_len, "out must not be NULL");
  *out = NULL;
  if (now > RT_MAX_TIME_MS)
    return rt_fail(REVTUN_E_INVAL, errbuf, errbuf_len, "now is beyond 2^62 milliseconds");
  revtun_options_t defaults;
  if (!opts) {
    rt_options_defaults(&defaults);
    opts = &defaults;
  }
  struct handle_block *b = rt_calloc(&opts->mem, 1, sizeof(*b));
  if (!b)
    return rt_fail(REVTUN_E_NOMEM, errbuf, errbuf_len, "out of memory");
  revtun_t *h = &b->h;
  rt_handle_init(h, opts, now);
  rt_pool_init(h, &b->pool);
  h->upcalls.flush = rt_loggers_flush;
  h->upcalls.finish = finish;

  int rc = rt_options_copy(&h->mem, &h->opts, opts);
  if (rc) {
    rt_fail(rc, errbuf, errbuf_len, "out of memory");
    goto fail;
  }
  rc = rt_config_parse(&h->mem, config, len, &opts->limits, &h->cfg, errbuf, errbuf_len);
  if (rc)
    goto fail;
  if ((rc = rt_loggers_create(h, errbuf, errbuf_len)))
    goto fail;
  if ((rc = rt_reporter_create(h, errbuf, errbuf_len)))
    goto fail;
  if (h->n_loggers)
    h->upcalls.record = rt_loggers_log;
  if (h->reporter_factory)
    h->upcalls.report = rt_reporter_event;
  if (opts->directory && (rc = rt_remote_attach(h, opts->directory))) {
    rt_fail(rc, errbuf, errbuf_len,
            rc == REVTUN_E_CONFIG  ? "tenant_isolation differs from the directory's other handles"
            : rc == REVTUN_E_LIMIT ? "the directory serves the most handles it can"
                                   : "cannot join the directory");
    goto fail;
  }
  struct revtun_event ev;
  rt_event_init(&ev, h, REVTUN_EV_REPORT_SERVER_INITIALIZED, now);
  rt_report(h, &ev);     /* host reporter callback, then the configured reporter */
  if (h->free_pending) { /* freed by that callback: there is no handle to return */
    destroy(h);
    return rt_fail(REVTUN_E_STATE, errbuf, errbuf_len, "freed during creation");
  }
  if (errbuf && errbuf_len)
    errbuf[0] = '\0';
  *out = h;
  return REVTUN_OK;
fail:
  destroy(h);
  return rc;
}

void *revtun_get_user_data(const revtun_t *h) { return h ? h->opts.user_data : NULL; }

/* ----------------------------------------------------------- config getters */

const char *revtun_config_stat_prefix(const revtun_t *h) { return h ? h->cfg.stat_prefix : NULL; }
uint32_t revtun_config_ping_failure_threshold(const revtun_t *h) {
  return h ? h->cfg.ping_failure_threshold : 0;
}
int revtun_config_detailed_stats(const revtun_t *h) { return h ? h->cfg.detailed_stats : 0; }
int revtun_config_tenant_isolation(const revtun_t *h) { return h ? h->cfg.tenant_isolation : 0; }
uint32_t revtun_config_max_connections_per_node(const revtun_t *h) {
  return h ? h->cfg.max_connections_per_node : 0;
}

static int get_entry(const struct rt_ext_entry *e, const char **name, const char **type_url,
                     const uint8_t **value, size_t *value_len) {
  if (name)
    *name = e->name;
  if (type_url)
    *type_url = e->type_url;
  if (value)
    *value = e->value;
  if (value_len)
    *value_len = e->value_len;
  return REVTUN_OK;
}

int revtun_config_reporter(const revtun_t *h, const char **name, const char **type_url,
                           const uint8_t **value, size_t *value_len) {
  if (!h)
    return REVTUN_E_INVAL;
  if (!h->cfg.has_reporter)
    return REVTUN_E_NOT_FOUND;
  return get_entry(&h->cfg.reporter, name, type_url, value, value_len);
}

size_t revtun_config_access_log_count(const revtun_t *h) { return h ? h->cfg.n_access_logs : 0; }

int revtun_config_access_log(const revtun_t *h, size_t i, const char **name, const char **type_url,
                             const uint8_t **value, size_t *value_len) {
  if (!h)
    return REVTUN_E_INVAL;
  if (i >= h->cfg.n_access_logs)
    return REVTUN_E_NOT_FOUND;
  return get_entry(&h->cfg.access_logs[i], name, type_url, value, value_len);
}
