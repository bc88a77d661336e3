/* access_log entries for the built-in loggers -> rt_logspec.
 *
 *   envoy.access_loggers.file    envoy.extensions.access_loggers.file.v3.FileAccessLog
 *   envoy.access_loggers.stdout  envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
 *   envoy.access_loggers.stderr  envoy.extensions.access_loggers.stream.v3.StderrAccessLog
 *
 * FileAccessLog accepts every format field Envoy has: path (required),
 * log_format, and the deprecated format (text; empty = the default),
 * json_format (every value a string) and typed_json_format. */
#include <stdio.h>
#include <string.h>

#include "base/macros.h"
#include "base/text.h"
#include "observe/accesslog_int.h"
#include "envoy/extensions/access_loggers/file/v3/file.pb-c.h"
#include "envoy/extensions/access_loggers/stream/v3/stream.pb-c.h"
#include "base/proto.h"

/* The deprecated format fields are read on purpose: Envoy still accepts
 * them, and a control plane may still send them. */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

typedef Envoy__Extensions__AccessLoggers__File__V3__FileAccessLog FileAccessLog;
typedef Envoy__Extensions__AccessLoggers__Stream__V3__StdoutAccessLog StdoutAccessLog;
typedef Envoy__Extensions__AccessLoggers__Stream__V3__StderrAccessLog StderrAccessLog;

static const struct {
  int kind;
  const char *name;
  const char *type;
} builtins[] = {
    {RT_LOGGER_FILE, "envoy.access_loggers.file",
     "envoy.extensions.access_loggers.file.v3.FileAccessLog"},
    {RT_LOGGER_STDOUT, "envoy.access_loggers.stdout",
     "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"},
    {RT_LOGGER_STDERR, "envoy.access_loggers.stderr",
     "envoy.extensions.access_loggers.stream.v3.StderrAccessLog"},
};

int rt_logger_builtin_kind(const struct rt_ext_entry *e) {
  bool typed = e->type_url && *e->type_url;
  const char *type = typed ? rt_pb_type_name(e->type_url) : NULL;
  for (size_t i = 0; i < RT_COUNT_OF(builtins); i++) {
    if (typed ? strcmp(type, builtins[i].type) == 0 : strcmp(e->name, builtins[i].name) == 0)
      return builtins[i].kind;
  }
  return RT_LOGGER_NONE;
}

void rt_logspec_clear(const struct rt_mem *m, struct rt_logspec *spec) {
  rt_free(m, spec->path);
  rt_fmt_free(m, spec->fmt);
  memset(spec, 0, sizeof(*spec));
}

static int default_format(const struct rt_mem *m, struct rt_logspec *spec, char *err,
                          size_t errlen) {
  static const char def[] = RT_DEFAULT_LOG_FORMAT;
  return rt_fmt_compile(m, def, sizeof(def) - 1, RT_FMT_OPS_LIFECYCLE, 0, &spec->fmt, err, errlen);
}

static int file_spec(const struct rt_mem *m, const FileAccessLog *c, const char *what,
                     struct rt_logspec *spec, char *err, size_t errlen) {
  if (!c->path || !*c->path)
    return rt_fail(REVTUN_E_CONFIG, err, errlen, "%s.path must not be empty", what);
  if (!(spec->path = rt_strdup(m, c->path)))
    return rt_fail(REVTUN_E_NOMEM, err, errlen, "%s: out of memory", what);
  char msg[256], field[200];
  int rc;
  switch (c->access_log_format_case) {
  case ENVOY__EXTENSIONS__ACCESS_LOGGERS__FILE__V3__FILE_ACCESS_LOG__ACCESS_LOG_FORMAT_FORMAT:
    if (!c->format || !*c->format) /* as Envoy: an empty format means the default */
      return default_format(m, spec, err, errlen);
    rc = rt_fmt_compile(m, c->format, strlen(c->format), RT_FMT_OPS_LIFECYCLE, 0, &spec->fmt, msg,
                        sizeof(msg));
    if (rc)
      return rt_fail(rc, err, errlen, "%s.format: %s", what, msg);
    return REVTUN_OK;
  case ENVOY__EXTENSIONS__ACCESS_LOGGERS__FILE__V3__FILE_ACCESS_LOG__ACCESS_LOG_FORMAT_JSON_FORMAT:
    rc = rt_fmt_compile_json(m, c->json_format, RT_FMT_OPS_LIFECYCLE, RT_FMT_UNTYPED, &spec->fmt,
                             msg, sizeof(msg));
    if (rc) /* the message starts with "json_format" and names the key */
      return rt_fail(rc, err, errlen, "%s.%s", what, msg);
    return REVTUN_OK;
  case ENVOY__EXTENSIONS__ACCESS_LOGGERS__FILE__V3__FILE_ACCESS_LOG__ACCESS_LOG_FORMAT_TYPED_JSON_FORMAT:
    rc = rt_fmt_compile_json(m, c->typed_json_format, RT_FMT_OPS_LIFECYCLE, 0, &spec->fmt, msg,
                             sizeof(msg));
    if (rc)
      return rt_fail(rc, err, errlen, "%s.typed_%s", what, msg);
    return REVTUN_OK;
  case ENVOY__EXTENSIONS__ACCESS_LOGGERS__FILE__V3__FILE_ACCESS_LOG__ACCESS_LOG_FORMAT_LOG_FORMAT:
    snprintf(field, sizeof(field), "%s.log_format", what);
    return rt_fmt_from_sfs(m, c->log_format, RT_FMT_OPS_LIFECYCLE, field, &spec->fmt, err, errlen);
  default: return default_format(m, spec, err, errlen);
  }
}

static int stream_spec(const struct rt_mem *m,
                       const Envoy__Config__Core__V3__SubstitutionFormatString *lf,
                       const char *what, struct rt_logspec *spec, char *err, size_t errlen) {
  if (!lf)
    return default_format(m, spec, err, errlen);
  char field[200];
  snprintf(field, sizeof(field), "%s.log_format", what);
  return rt_fmt_from_sfs(m, lf, RT_FMT_OPS_LIFECYCLE, field, &spec->fmt, err, errlen);
}

int rt_logspec_parse(const struct rt_mem *m, const struct rt_ext_entry *e, size_t index,
                     struct rt_logspec *spec, char *err, size_t errlen) {
  memset(spec, 0, sizeof(*spec));
  spec->kind = rt_logger_builtin_kind(e);
  char what[160];
  snprintf(what, sizeof(what), "access_log[%zu] ('%.64s')", index, e->name);
  const ProtobufCMessageDescriptor *desc;
  switch (spec->kind) {
  case RT_LOGGER_FILE:
    desc = &envoy__extensions__access_loggers__file__v3__file_access_log__descriptor;
    break;
  case RT_LOGGER_STDOUT:
    desc = &envoy__extensions__access_loggers__stream__v3__stdout_access_log__descriptor;
    break;
  case RT_LOGGER_STDERR:
    desc = &envoy__extensions__access_loggers__stream__v3__stderr_access_log__descriptor;
    break;
  default: return rt_fail(REVTUN_E_CONFIG, err, errlen, "%s: not a built-in logger", what);
  }
  ProtobufCMessage *msg;
  int rc = rt_pb_unpack(m, desc, e->value, e->value_len, what, &msg, err, errlen);
  if (rc)
    return rc;
  if (spec->kind == RT_LOGGER_FILE)
    rc = file_spec(m, (const FileAccessLog *)msg, what, spec, err, errlen);
  else if (spec->kind == RT_LOGGER_STDOUT)
    rc = stream_spec(m, ((const StdoutAccessLog *)msg)->log_format, what, spec, err, errlen);
  else
    rc = stream_spec(m, ((const StderrAccessLog *)msg)->log_format, what, spec, err, errlen);
  rt_pb_free(m, msg);
  if (rc)
    rt_logspec_clear(m, spec);
  return rc;
}
