/* The dynamic-module reporter: a shared object found and loaded as Envoy
 * loads dynamic modules, driven through the C ABI declared in
 * include/revtun/reporter_module.h (read that header for the contract).
 * Validation decodes the config only; code is loaded by revtun_new(), never
 * by revtun_config_validate(). */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/text.h"
#include "core/handle.h"
#include "core/host.h"
#include "observe/dynamic_module.h"
#include "envoy/extensions/bootstrap/reverse_tunnel/reporter/dynamic_modules/v3/dynamic_module_reporter.pb-c.h"
#include "format/format.h"
#include "google/protobuf/struct.pb-c.h"
#include "google/protobuf/wrappers.pb-c.h"
#include "base/proto.h"
#include "revtun/reporter_module.h"

#define SEARCH_PATH_ENV "ENVOY_DYNAMIC_MODULES_SEARCH_PATH"
#define ASYNC_DATA_SOURCE_REMOTE 2 /* not in lib/proto: refused when present */
#define MAX_MODULE_NAME 255u
#define MAX_MODULE_PATH 4096u

typedef Envoy__Extensions__Bootstrap__ReverseTunnel__Reporter__DynamicModules__V3__DynamicModuleReverseTunnelReporter
    ReporterConfig;
#define REPORTER_CONFIG_DESC                                                                       \
  envoy__extensions__bootstrap__reverse_tunnel__reporter__dynamic_modules__v3__dynamic_module_reverse_tunnel_reporter__descriptor

typedef revtun_module_reporter_t (*new_fn)(revtun_module_buffer_t);
typedef void (*destroy_fn)(revtun_module_reporter_t);
typedef void (*init_fn)(revtun_module_reporter_t);
typedef void (*connected_fn)(revtun_module_reporter_t, revtun_module_buffer_t,
                             revtun_module_buffer_t, revtun_module_buffer_t);
typedef void (*pair_fn)(revtun_module_reporter_t, revtun_module_buffer_t, revtun_module_buffer_t);
typedef const char *(*program_init_fn)(void);

/* What the config asks for, decoded. */
struct modspec {
  char *filename; /* module.local.filename, or NULL to search by name */
  char *name;
  bool do_not_close, load_globally;
  uint8_t *config; /* reporter_config as the module sees it */
  size_t config_len;
};

struct dynmod {
  struct rt_mem mem;
  void *dl;
  revtun_module_reporter_t obj;
  destroy_fn destroy;
  init_fn server_initialized;
  connected_fn connected;
  pair_fn disconnected, goaway;
};

static void modspec_clear(const struct rt_mem *m, struct modspec *s) {
  rt_free(m, s->filename);
  rt_free(m, s->name);
  rt_free(m, s->config);
  memset(s, 0, sizeof(*s));
}

static int copy_bytes(const struct rt_mem *m, struct modspec *s, const void *p, size_t n) {
  if (!(s->config = rt_malloc(m, n)))
    return REVTUN_E_NOMEM;
  if (n)
    memcpy(s->config, p, n);
  s->config_len = n;
  return REVTUN_OK;
}

/* reporter_config (Any) -> bytes, as Envoy's MessageUtil::anyToBytes plus the
 * Struct-as-JSON rule of the dynamic-module extensions. */
static int config_bytes(const struct rt_mem *m, const Google__Protobuf__Any *any, struct modspec *s,
                        char *err, size_t errlen) {
  if (!any)
    return copy_bytes(m, s, "", 0);
  const char *type = rt_pb_type_name(any->type_url ? any->type_url : "");
  const ProtobufCMessageDescriptor *desc = NULL;
  if (strcmp(type, "google.protobuf.Struct") == 0)
    desc = &google__protobuf__struct__descriptor;
  else if (strcmp(type, "google.protobuf.StringValue") == 0)
    desc = &google__protobuf__string_value__descriptor;
  else if (strcmp(type, "google.protobuf.BytesValue") == 0)
    desc = &google__protobuf__bytes_value__descriptor;
  if (!desc) /* any other message: its serialized bytes */
    return copy_bytes(m, s, any->value.data, any->value.len);
  ProtobufCMessage *msg;
  int rc = rt_pb_unpack(m, desc, any->value.data, any->value.len,
                        "reporter_config.typed_config."
                        "reporter_config",
                        &msg, err, errlen);
  if (rc)
    return rc;
  if (desc == &google__protobuf__struct__descriptor) {
    char *json;
    size_t len;
    rc = rt_json_from_struct(m, (const Google__Protobuf__Struct *)msg, &json, &len);
    if (!rc) {
      s->config = (uint8_t *)json;
      s->config_len = len;
    }
  } else if (desc == &google__protobuf__string_value__descriptor) {
    const char *v = ((const Google__Protobuf__StringValue *)msg)->value;
    rc = copy_bytes(m, s, v ? v : "", v ? strlen(v) : 0);
  } else {
    const ProtobufCBinaryData *v = &((const Google__Protobuf__BytesValue *)msg)->value;
    rc = copy_bytes(m, s, v->data, v->len);
  }
  rt_pb_free(m, msg);
  return rc;
}

/* A module name is one file-name component: it cannot climb out of the
 * search directory or name an absolute path. */
static bool name_ok(const char *name) {
  size_t n = strnlen(name, MAX_MODULE_NAME + 1);
  return n && n <= MAX_MODULE_NAME && !memchr(name, '/', n);
}

static int parse(const struct rt_mem *m, const uint8_t *cfg, size_t len, struct modspec *s,
                 char *err, size_t errlen) {
  memset(s, 0, sizeof(*s));
  ProtobufCMessage *msg;
  int rc = rt_pb_unpack(m, &REPORTER_CONFIG_DESC, cfg, len,
                        "reporter_config.typed_config (DynamicModuleReverseTunnelReporter)", &msg,
                        err, errlen);
  if (rc)
    return rc;
  const ReporterConfig *c = (const ReporterConfig *)msg;
  const Envoy__Extensions__DynamicModules__V3__DynamicModuleConfig *dm = c->dynamic_module_config;
  if (!dm) {
    rc =
        rt_fail(REVTUN_E_CONFIG, err, errlen, "reporter_config: dynamic_module_config is required");
  } else if (dm->module && rt_pb_has_unknown(&dm->module->base, ASYNC_DATA_SOURCE_REMOTE)) {
    rc = rt_fail(REVTUN_E_CONFIG, err, errlen,
                 "reporter_config: dynamic_module_config.module.remote is not supported "
                 "(modules are never fetched); use module.local.filename");
  } else if (dm->module && (!dm->module->local ||
                            dm->module->local->specifier_case !=
                                ENVOY__CONFIG__CORE__V3__DATA_SOURCE__SPECIFIER_FILENAME ||
                            !*dm->module->local->filename)) {
    rc = rt_fail(REVTUN_E_CONFIG, err, errlen,
                 "reporter_config: dynamic_module_config.module must be local.filename "
                 "(inline bytes and environment variables are not supported)");
  } else if (!dm->module && (!dm->name || !*dm->name)) {
    rc = rt_fail(REVTUN_E_CONFIG, err, errlen,
                 "reporter_config: dynamic_module_config needs a name or module.local.filename");
  } else if (!dm->module && !name_ok(dm->name)) {
    rc = rt_fail(REVTUN_E_CONFIG, err, errlen,
                 "reporter_config: dynamic_module_config.name must be a file name of at most %u "
                 "bytes without '/'",
                 MAX_MODULE_NAME);
  } else {
    s->do_not_close = dm->do_not_close;
    s->load_globally = dm->load_globally;
    if ((dm->module && !(s->filename = rt_strdup(m, dm->module->local->filename))) ||
        !(s->name = rt_strdup(m, dm->name ? dm->name : "")))
      rc = rt_fail(REVTUN_E_NOMEM, err, errlen, "out of memory");
    else
      rc = config_bytes(m, c->reporter_config, s, err, errlen);
  }
  rt_pb_free(m, msg);
  if (rc)
    modspec_clear(m, s);
  return rc;
}

int rt_dynmod_validate(const struct rt_mem *m, const uint8_t *cfg, size_t len, char *err,
                       size_t errlen) {
  struct modspec s;
  int rc = parse(m, cfg, len, &s, err, errlen);
  modspec_clear(m, &s);
  return rc;
}

/* ---------------------------------------------------------------- loading */

/* dlopen as Envoy's newDynamicModule: an object already resident is reused
 * without running its init again; a fresh one runs program_init. */
static void *load(revtun_t *h, const char *path, const struct modspec *s, char *err,
                  size_t errlen) {
  int extra = (s->load_globally ? RTLD_GLOBAL : 0) | (s->do_not_close ? RTLD_NODELETE : 0);
  void *dl = dlopen(path, RTLD_NOLOAD | RTLD_LAZY | extra);
  if (dl)
    return dl;
  dl = dlopen(path, RTLD_LAZY | (s->load_globally ? RTLD_GLOBAL : RTLD_LOCAL) | extra);
  if (!dl) {
    const char *why = dlerror();
    rt_fail(REVTUN_E_CONFIG, err, errlen, "reporter_config: cannot load dynamic module '%s': %s",
            path, why ? why : "unknown error");
    return NULL;
  }
  program_init_fn init = (program_init_fn)dlsym(dl, REVTUN_MODULE_SYM_PROGRAM_INIT);
  if (init) {
    const char *abi = init();
    if (!abi) {
      rt_fail(REVTUN_E_CONFIG, err, errlen,
              "reporter_config: dynamic module '%s' failed to initialize (%s returned NULL)", path,
              REVTUN_MODULE_SYM_PROGRAM_INIT);
      dlclose(dl);
      return NULL;
    }
    rt_log(h, REVTUN_LOG_INFO, "dynamic module '%s' loaded (ABI version %.64s)", path, abi);
  }
  return dl;
}

/* Finds the module (see reporter_module.h): the explicit file name; else the
 * search directory (the host's option, else the environment variable) when
 * the file exists there; else the system's own library search. The current
 * directory is never searched unless named. *used gets the file name that
 * was tried last, for messages. */
static void *find_and_load(revtun_t *h, const struct modspec *s, char *used, size_t used_len,
                           char *err, size_t errlen) {
  if (s->filename) {
    if (snprintf(used, used_len, "%s", s->filename) >= (int)used_len) {
      rt_fail(REVTUN_E_CONFIG, err, errlen, "reporter_config: module file name is too long");
      return NULL;
    }
    return load(h, s->filename, s, err, errlen);
  }
  const char *dir = h->opts.module_path;
  if (!dir)
    dir = getenv(SEARCH_PATH_ENV);
  bool searched = dir && *dir;
  if (searched) {
    if (snprintf(used, used_len, "%s/lib%s.so", dir, s->name) >= (int)used_len) {
      rt_fail(REVTUN_E_CONFIG, err, errlen, "reporter_config: module search path is too long");
      return NULL;
    }
    if (access(used, F_OK) == 0) /* exists: its load error is the useful one */
      return load(h, used, s, err, errlen);
  }
  char where[300];
  snprintf(where, sizeof(where), "%.280s%s", searched ? used : "",
           searched ? " nor in" : "neither in a search directory (none is set) nor in");
  snprintf(used, used_len, "lib%s.so", s->name);
  void *dl = load(h, used, s, err, errlen);
  if (!dl) {
    char why[256];
    snprintf(why, sizeof(why), "%s", err ? err : "");
    rt_fail(REVTUN_E_CONFIG, err, errlen,
            "reporter_config: dynamic module lib%s.so not found %s%s the standard library paths "
            "(%s)",
            s->name, searched ? "in " : "", where, why);
  }
  return dl;
}

static void *sym(void *dl, const char *name) { return dlsym(dl, name); }

int rt_dynmod_create(revtun_t *h, const uint8_t *cfg, size_t len, void **instance, char *err,
                     size_t errlen) {
  struct modspec s;
  int rc = parse(&h->mem, cfg, len, &s, err, errlen);
  if (rc)
    return rc;
  struct dynmod *d = rt_calloc(&h->mem, 1, sizeof(*d));
  char *file = rt_malloc(&h->mem, MAX_MODULE_PATH);
  if (!d || !file) {
    rc = rt_fail(REVTUN_E_NOMEM, err, errlen, "out of memory");
    goto out;
  }
  d->mem = h->mem;
  if (!(d->dl = find_and_load(h, &s, file, MAX_MODULE_PATH, err, errlen))) {
    rc = REVTUN_E_CONFIG;
    goto out;
  }
  /* Function pointers from dlsym: POSIX guarantees the conversion. */
  new_fn make = (new_fn)sym(d->dl, REVTUN_MODULE_SYM_REPORTER_NEW);
  d->destroy = (destroy_fn)sym(d->dl, REVTUN_MODULE_SYM_REPORTER_DESTROY);
  d->server_initialized = (init_fn)sym(d->dl, REVTUN_MODULE_SYM_SERVER_INITIALIZED);
  d->connected = (connected_fn)sym(d->dl, REVTUN_MODULE_SYM_CONNECTED);
  d->disconnected = (pair_fn)sym(d->dl, REVTUN_MODULE_SYM_DISCONNECTED);
  d->goaway = (pair_fn)sym(d->dl, REVTUN_MODULE_SYM_GOAWAY);
  if (!make || !d->destroy) {
    rc = rt_fail(REVTUN_E_CONFIG, err, errlen,
                 "reporter_config: dynamic module '%s' does not define %s, which a reverse "
                 "tunnel reporter module must",
                 file, make ? REVTUN_MODULE_SYM_REPORTER_DESTROY : REVTUN_MODULE_SYM_REPORTER_NEW);
    goto out;
  }
  revtun_module_buffer_t conf = {(const char *)s.config, s.config_len};
  h->cb_depth++; /* module code runs: the library must not be re-entered */
  d->obj = make(conf);
  h->cb_depth--;
  if (!d->obj) {
    rc = rt_fail(REVTUN_E_CONFIG, err, errlen,
                 "reporter_config: %s in '%s' returned NULL (the module rejected its config)",
                 REVTUN_MODULE_SYM_REPORTER_NEW, file);
    goto out;
  }
  *instance = d;
  d = NULL;
out:
  if (d) {
    if (d->dl)
      dlclose(d->dl);
    rt_free(&h->mem, d);
  }
  rt_free(&h->mem, file);
  modspec_clear(&h->mem, &s);
  return rc;
}

static revtun_module_buffer_t buf(const char *s) {
  return (revtun_module_buffer_t){s ? s : "", s ? strlen(s) : 0};
}

void rt_dynmod_event(void *instance, const revtun_event_t *ev) {
  struct dynmod *d = instance;
  switch (revtun_event_kind(ev)) {
  case REVTUN_EV_REPORT_SERVER_INITIALIZED:
    if (d->server_initialized)
      d->server_initialized(d->obj);
    break;
  case REVTUN_EV_REPORT_CONNECTED: /* scoped keys + raw tenant, as Envoy reports them */
    if (d->connected)
      d->connected(d->obj, buf(revtun_event_node_key(ev, NULL)),
                   buf(revtun_event_cluster_key(ev, NULL)), buf(revtun_event_tenant_id(ev, NULL)));
    break;
  case REVTUN_EV_REPORT_DISCONNECTED:
    if (d->disconnected)
      d->disconnected(d->obj, buf(revtun_event_node_key(ev, NULL)),
                      buf(revtun_event_cluster_key(ev, NULL)));
    break;
  case REVTUN_EV_REPORT_GOAWAY:
    if (d->goaway)
      d->goaway(d->obj, buf(revtun_event_node_key(ev, NULL)),
                buf(revtun_event_cluster_key(ev, NULL)));
    break;
  default: break;
  }
}

void rt_dynmod_destroy(void *instance) {
  struct dynmod *d = instance;
  if (!d)
    return;
  d->destroy(d->obj);
  dlclose(d->dl); /* with do_not_close (RTLD_NODELETE) the object stays mapped */
  struct rt_mem m = d->mem;
  rt_free(&m, d);
}
