/* Access loggers built from the config's access_log entries:
 * a factory the host registered under the entry's name with
 * revtun_access_logger_register(), else a built-in chosen by the entry's
 * typed_config type (file, stdout, stderr; accesslog_spec.c). Each
 * lifecycle record goes to every logger after the host's access-log callback.
 *
 * Built-ins never block the host's loop: a record is rendered once into its
 * logger's buffer (whole, or dropped and counted when the buffer is at its
 * limit) and written later, by rt_loggers_flush():
 *   - at the end of every outermost API call (rt_leave) when a buffer holds
 *     RT_LOGFILE_FLUSH_BYTES or more, or the flush deadline has passed;
 *   - from revtun_tick() when h->log_flush_due is reached -- the deadline is
 *     set to now + log_flush_ms when the first byte is buffered, so the core
 *     arms the host's timer for it, and goes back to 0 once all is written;
 *   - from revtun_reopen_logs() (rotation) and revtun_free().
 * Bytes a write did not take stay buffered and are retried; failed writes are
 * counted (access_log.write_errors) and logged once per change of errno. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "base/text.h"
#include "core/handle.h"
#include "core/host.h"
#include "core/reentry.h"
#include "observe/accesslog.h"
#include "observe/accesslog_int.h"
#include "observe/logfile.h"

#define RETRY_MS 100u    /* earliest retry of a write that made no progress */
#define FREE_WAIT_MS 100 /* how long revtun_free waits for room on a stream */

struct rt_logger {
  const struct rt_factory *factory; /* host factory, or NULL */
  void *instance;
  /* built-in */
  int kind; /* enum rt_builtin_logger; RT_LOGGER_NONE for a host factory */
  struct rt_fmt *fmt;
  struct rt_logfile out;
  size_t index;
  int logged_errno; /* the last write error reported through the log callback */
};

static const struct rt_factory *host_factory(const revtun_options_t *opts,
                                             const struct rt_ext_entry *e) {
  return rt_options_find_factory(opts, e->name, false);
}

static int unknown_logger(const struct rt_ext_entry *e, size_t i, char *err, size_t errlen) {
  return rt_fail(REVTUN_E_CONFIG, err, errlen,
                 "access_log[%zu]: logger '%s' (typed_config %s) is not known; built in are "
                 "envoy.extensions.access_loggers.file.v3.FileAccessLog, "
                 "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog and "
                 "StderrAccessLog; hosts add theirs with revtun_access_logger_register",
                 i, e->name, *e->type_url ? e->type_url : "(none)");
}

int rt_loggers_validate(const struct rt_mem *mem, const struct rt_config *cfg,
                        const revtun_options_t *opts, char *errbuf, size_t errbuf_len) {
  for (size_t i = 0; i < cfg->n_access_logs; i++) {
    const struct rt_ext_entry *e = &cfg->access_logs[i];
    if (host_factory(opts, e))
      continue;
    if (!rt_logger_builtin_kind(e))
      return unknown_logger(e, i, errbuf, errbuf_len);
    struct rt_logspec spec;
    int rc = rt_logspec_parse(mem, e, i, &spec, errbuf, errbuf_len);
    rt_logspec_clear(mem, &spec);
    if (rc)
      return rc;
  }
  return REVTUN_OK;
}

static int create_builtin(revtun_t *h, struct rt_logger *l, const struct rt_ext_entry *e, size_t i,
                          char *errbuf, size_t errbuf_len) {
  struct rt_logspec spec;
  int rc = rt_logspec_parse(&h->mem, e, i, &spec, errbuf, errbuf_len);
  if (rc)
    return rc;
  l->kind = spec.kind;
  l->fmt = spec.fmt;
  spec.fmt = NULL;
  size_t limit = h->opts.limits.log_buffer_bytes;
  if (spec.kind == RT_LOGGER_FILE) {
    int err = rt_logfile_open(&h->mem, &l->out, spec.path, limit, h->opts.directory);
    if (err)
      rc = err == ENOMEM ? rt_fail(REVTUN_E_NOMEM, errbuf, errbuf_len, "out of memory")
                         : rt_fail(REVTUN_E_CONFIG, errbuf, errbuf_len,
                                   "access_log[%zu] ('%s'): cannot open '%s': %s", i, e->name,
                                   spec.path, strerror(err));
  } else {
    if (rt_logfile_use_fd(&h->mem, &l->out,
                          spec.kind == RT_LOGGER_STDOUT ? STDOUT_FILENO : STDERR_FILENO, limit,
                          h->opts.directory))
      rc = rt_fail(REVTUN_E_NOMEM, errbuf, errbuf_len, "out of memory");
  }
  rt_logspec_clear(&h->mem, &spec);
  return rc;
}

int rt_loggers_create(revtun_t *h, char *errbuf, size_t errbuf_len) {
  if (!h->cfg.n_access_logs)
    return REVTUN_OK;
  h->loggers = rt_calloc(&h->mem, h->cfg.n_access_logs, sizeof(*h->loggers));
  if (!h->loggers)
    return rt_fail(REVTUN_E_NOMEM, errbuf, errbuf_len, "out of memory");
  for (size_t i = 0; i < h->cfg.n_access_logs; i++) {
    const struct rt_ext_entry *e = &h->cfg.access_logs[i];
    struct rt_logger *l = rt_calloc(&h->mem, 1, sizeof(*l));
    if (!l)
      return rt_fail(REVTUN_E_NOMEM, errbuf, errbuf_len, "out of memory");
    l->index = i;
    h->loggers[h->n_loggers++] = l; /* rt_loggers_free copes with a half-built one */
    const struct rt_factory *f = host_factory(&h->opts, e);
    int rc;
    if (f) {
      char msg[256] = "";
      rc = f->create(e->type_url, e->value, e->value_len, f->user, &l->instance, msg, sizeof(msg));
      if (rc)
        return rt_fail(rc == REVTUN_E_NOMEM ? rc : REVTUN_E_CONFIG, errbuf, errbuf_len,
                       "access_log[%zu] ('%s'): %s", i, e->name, *msg ? msg : revtun_strerror(rc));
      l->factory = f;
    } else if (rt_logger_builtin_kind(e)) {
      if ((rc = create_builtin(h, l, e, i, errbuf, errbuf_len)))
        return rc;
    } else {
      return unknown_logger(e, i, errbuf, errbuf_len);
    }
  }
  return REVTUN_OK;
}

/* ---------------------------------------------------------------- records */

static revtun_time_ms_t next_due(const revtun_t *h, uint64_t ms) {
  revtun_time_ms_t due = h->last_now + ms;
  return due ? due : 1; /* 0 means "nothing buffered" */
}

static void log_builtin(revtun_t *h, struct rt_logger *l, const revtun_event_t *ev) {
  char *at;
  size_t room = rt_logfile_reserve(&h->mem, &l->out, RT_FMT_MAX_RECORD, &at);
  unsigned flags = 0;
  struct rt_fmt_ctx ctx = {.ev = ev};
  size_t n = room ? rt_fmt_render(l->fmt, &ctx, at, room, &flags) : 0;
  /* A record cut short only because the buffer is nearly full is dropped
   * whole; one longer than RT_FMT_MAX_RECORD is kept with shortened values. */
  if (!room || ((flags & RT_FMT_R_SHORTENED) && (room < RT_FMT_MAX_RECORD || !n))) {
    rt_count(h, RT_C_LOG_DROPPED);
    return;
  }
  rt_logfile_commit(&l->out, n);
  if (n && !h->log_flush_due)
    h->log_flush_due = next_due(h, h->opts.limits.log_flush_ms);
}

void rt_loggers_log(revtun_t *h, const revtun_event_t *ev) {
  for (size_t i = 0; i < h->n_loggers; i++) {
    struct rt_logger *l = h->loggers[i];
    if (l->factory) {
      h->cb_depth++;
      l->factory->event(l->instance, ev);
      h->cb_depth--;
    } else if (l->fmt) {
      log_builtin(h, l, ev);
    }
  }
}

/* ---------------------------------------------------------------- writing */

static const char *target_name(const struct rt_logger *l) {
  switch (l->kind) {
  case RT_LOGGER_STDOUT: return "stdout";
  case RT_LOGGER_STDERR: return "stderr";
  default: return rt_logfile_path(&l->out) ? rt_logfile_path(&l->out) : "?";
  }
}

static void note_result(revtun_t *h, struct rt_logger *l, int err) {
  if (err)
    rt_count(h, RT_C_LOG_WRITE_ERRORS);
  if (err == l->logged_errno)
    return;
  if (err)
    rt_log(h, REVTUN_LOG_WARN,
           "access_log[%zu]: writing to %s failed: %s (%zu bytes kept for "
           "retry)",
           l->index, target_name(l), strerror(err), rt_logfile_pending(&l->out));
  else
    rt_log(h, REVTUN_LOG_INFO, "access_log[%zu]: writing to %s works again", l->index,
           target_name(l));
  l->logged_errno = err;
}

static void flush_one(revtun_t *h, struct rt_logger *l, int wait_ms) {
  if (!rt_logfile_pending(&l->out))
    return;
  note_result(h, l, rt_logfile_flush(&h->mem, &l->out, wait_ms));
}

void rt_loggers_flush(revtun_t *h, bool force) {
  if (!h->log_flush_due)
    return; /* nothing buffered */
  bool due = force || h->log_flush_due <= h->last_now;
  size_t left = 0;
  for (size_t i = 0; i < h->n_loggers; i++) {
    struct rt_logger *l = h->loggers[i];
    if (!l->fmt)
      continue;
    if (due || rt_logfile_pending(&l->out) >= RT_LOGFILE_FLUSH_BYTES)
      flush_one(h, l, 0);
    left += rt_logfile_pending(&l->out);
  }
  if (!left)
    h->log_flush_due = 0;
  else if (due) /* a full pipe or a failing file: try again later, not in a busy loop */
    h->log_flush_due = next_due(
        h, h->opts.limits.log_flush_ms > RETRY_MS ? h->opts.limits.log_flush_ms : RETRY_MS);
}

static int reopen_all(revtun_t *h) {
  int rc = REVTUN_OK;
  for (size_t i = 0; i < h->n_loggers; i++) {
    struct rt_logger *l = h->loggers[i];
    if (!l->fmt)
      continue;
    if (l->kind != RT_LOGGER_FILE) {
      flush_one(h, l, 0);
      continue;
    }
    /* Everything buffered so far is written to the old file first, so no
     * line is split between the two and none is written twice. (Only bytes
     * a failing write left behind -- a full disk -- go to the new file.) */
    int err = rt_logfile_reopen(&h->mem, &l->out);
    if (err) {
      rt_count(h, RT_C_LOG_WRITE_ERRORS);
      rt_log(h, REVTUN_LOG_ERROR,
             "access_log[%zu]: reopening %s failed: %s; still writing to "
             "the old file",
             i, target_name(l), strerror(err));
      rc = REVTUN_E_IO;
    }
  }
  return rc;
}

int revtun_reopen_logs(revtun_t *h) {
  int rc = rt_enter(h, h ? h->last_now : 0);
  if (rc)
    return rc;
  rc = reopen_all(h);
  rt_leave(h);
  return rc;
}

void rt_loggers_free(revtun_t *h) {
  for (size_t i = 0; i < h->n_loggers; i++) {
    struct rt_logger *l = h->loggers[i];
    if (l->factory && l->factory->destroy)
      l->factory->destroy(l->instance);
    if (l->fmt)
      flush_one(h, l, FREE_WAIT_MS); /* the last records, including tunnel_closed ones */
    rt_fmt_free(&h->mem, l->fmt);
    rt_logfile_close(&h->mem, &l->out);
    rt_free(&h->mem, l);
  }
  rt_free(&h->mem, h->loggers);
  h->loggers = NULL;
  h->n_loggers = 0;
  h->log_flush_due = 0;
}
