/* revtun_options_t: the creation-time wiring a host hands to revtun_new(). */
#include <string.h>

#include "core/options.h"

#define RT_DEFAULT_WORKER "worker_0"
#define RT_MAX_FACTORIES 64u

void rt_options_defaults(revtun_options_t *o) {
  memset(o, 0, sizeof(*o));
  rt_mem_default(&o->mem);
  rt_mem_default(&o->own_mem);
  o->log_level = REVTUN_LOG_WARN;
  strcpy(o->worker, RT_DEFAULT_WORKER);
  o->limits.config_bytes = 1u << 20;
  o->limits.log_buffer_bytes = 1u << 20;
  o->limits.access_logs = 64;
  o->limits.log_flush_ms = 1000;
}

/* Allocator hooks: all three, or none for the C library's. */
static int hooks(struct rt_mem *m, revtun_malloc_fn malloc_fn, revtun_realloc_fn realloc_fn,
                 revtun_free_fn free_fn, void *alloc_user) {
  if (!malloc_fn && !realloc_fn && !free_fn) {
    rt_mem_default(m);
    return REVTUN_OK;
  }
  if (!malloc_fn || !realloc_fn || !free_fn)
    return REVTUN_E_INVAL;
  *m = (struct rt_mem){malloc_fn, realloc_fn, free_fn, alloc_user};
  return REVTUN_OK;
}

int revtun_options_new_with_allocator(revtun_options_t **out, revtun_malloc_fn malloc_fn,
                                      revtun_realloc_fn realloc_fn, revtun_free_fn free_fn,
                                      void *alloc_user) {
  if (!out)
    return REVTUN_E_INVAL;
  *out = NULL;
  struct rt_mem m;
  if (hooks(&m, malloc_fn, realloc_fn, free_fn, alloc_user))
    return REVTUN_E_INVAL;
  revtun_options_t *o = rt_malloc(&m, sizeof(*o));
  if (!o)
    return REVTUN_E_NOMEM;
  rt_options_defaults(o);
  o->own_mem = o->mem = m;
  *out = o;
  return REVTUN_OK;
}

int revtun_options_new(revtun_options_t **out) {
  return revtun_options_new_with_allocator(out, NULL, NULL, NULL, NULL);
}

static void free_factories(const struct rt_mem *m, struct rt_factory *f, size_t n) {
  for (size_t i = 0; i < n; i++)
    rt_free(m, f[i].name);
  rt_free(m, f);
}

void revtun_options_free(revtun_options_t *o) {
  if (!o)
    return;
  struct rt_mem m = o->own_mem;
  free_factories(&m, o->factories, o->n_factories);
  rt_free(&m, o->module_path);
  rt_free(&m, o);
}

#define SETTER(name, field, type)                                                                  \
  int revtun_options_set_##name(revtun_options_t *o, type v) {                                     \
    if (!o)                                                                                        \
      return REVTUN_E_INVAL;                                                                       \
    o->field = v;                                                                                  \
    return REVTUN_OK;                                                                              \
  }

SETTER(user_data, user_data, void *)
SETTER(io_cb, io_cb, revtun_io_cb)
SETTER(timer_cb, timer_cb, revtun_timer_cb)
SETTER(access_log_cb, access_log_cb, revtun_event_cb)
SETTER(reporter_cb, reporter_cb, revtun_event_cb)
SETTER(close_cb, close_cb, revtun_close_cb)

int revtun_options_set_log_cb(revtun_options_t *o, revtun_log_cb cb, int min_level) {
  if (!o || min_level < REVTUN_LOG_ERROR || min_level > REVTUN_LOG_DEBUG)
    return REVTUN_E_INVAL;
  o->log_cb = cb;
  o->log_level = min_level;
  return REVTUN_OK;
}

int revtun_options_set_allocator(revtun_options_t *o, revtun_malloc_fn malloc_fn,
                                 revtun_realloc_fn realloc_fn, revtun_free_fn free_fn,
                                 void *alloc_user) {
  if (!o)
    return REVTUN_E_INVAL;
  return hooks(&o->mem, malloc_fn, realloc_fn, free_fn, alloc_user);
}

int revtun_options_set_worker_name(revtun_options_t *o, const char *name) {
  if (!o || !name || !*name || strnlen(name, sizeof(o->worker)) >= sizeof(o->worker))
    return REVTUN_E_INVAL;
  strcpy(o->worker, name);
  return REVTUN_OK;
}

int revtun_options_set_seed(revtun_options_t *o, uint64_t seed) {
  if (!o)
    return REVTUN_E_INVAL;
  o->seed = seed;
  o->seed_set = true;
  return REVTUN_OK;
}

/* The largest value each limit takes: beyond them a value is a mistake, and
 * bounding them keeps every size and deadline computed from them in range. */
static uint64_t limit_max(int limit) {
  switch (limit) {
  case REVTUN_LIMIT_CONFIG_BYTES: return 64u << 20;
  case REVTUN_LIMIT_LOG_BUFFER_BYTES: return 1024u << 20;
  case REVTUN_LIMIT_ACCESS_LOGS: return 1024;
  case REVTUN_LIMIT_LOG_FLUSH_MS: return 3600000;
  default: return 0;
  }
}

#define MAX_MODULE_PATH_LEN 4000u

int revtun_options_set_module_path(revtun_options_t *o, const char *dir) {
  if (!o || (dir && (!*dir || strnlen(dir, MAX_MODULE_PATH_LEN + 1) > MAX_MODULE_PATH_LEN)))
    return REVTUN_E_INVAL;
  char *copy = NULL;
  if (dir && !(copy = rt_strdup(&o->own_mem, dir)))
    return REVTUN_E_NOMEM;
  rt_free(&o->own_mem, o->module_path);
  o->module_path = copy;
  return REVTUN_OK;
}

int revtun_options_set_directory(revtun_options_t *o, revtun_directory_t *dir) {
  if (!o)
    return REVTUN_E_INVAL;
  o->directory = dir;
  return REVTUN_OK;
}

int revtun_options_set_arrival_cb(revtun_options_t *o, revtun_arrival_cb cb) {
  if (!o)
    return REVTUN_E_INVAL;
  o->arrival_cb = cb;
  return REVTUN_OK;
}

int revtun_options_set_limit(revtun_options_t *o, int limit, uint64_t value) {
  if (!o || value == 0 || value > limit_max(limit))
    return REVTUN_E_INVAL;
  switch (limit) {
  case REVTUN_LIMIT_CONFIG_BYTES: o->limits.config_bytes = value; break;
  case REVTUN_LIMIT_LOG_BUFFER_BYTES: o->limits.log_buffer_bytes = value; break;
  case REVTUN_LIMIT_ACCESS_LOGS: o->limits.access_logs = value; break;
  default: o->limits.log_flush_ms = value; break;
  }
  return REVTUN_OK;
}

static int add_factory(revtun_options_t *o, const char *name, revtun_ext_create_cb create,
                       revtun_ext_event_cb event, revtun_ext_destroy_cb destroy, void *user,
                       bool is_reporter) {
  if (!o || !name || !*name || !create || !event)
    return REVTUN_E_INVAL;
  for (size_t i = 0; i < o->n_factories; i++)
    if (o->factories[i].is_reporter == is_reporter && strcmp(o->factories[i].name, name) == 0)
      return REVTUN_E_EXISTS;
  if (o->n_factories >= RT_MAX_FACTORIES)
    return REVTUN_E_LIMIT;
  const struct rt_mem *m = &o->own_mem;
  struct rt_factory *f = rt_realloc(m, o->factories, (o->n_factories + 1) * sizeof(*f));
  if (!f)
    return REVTUN_E_NOMEM;
  o->factories = f;
  f += o->n_factories;
  f->name = rt_strdup(m, name);
  if (!f->name)
    return REVTUN_E_NOMEM;
  f->create = create;
  f->event = event;
  f->destroy = destroy;
  f->user = user;
  f->is_reporter = is_reporter;
  o->n_factories++;
  return REVTUN_OK;
}

int revtun_reporter_register(revtun_options_t *o, const char *name, revtun_ext_create_cb create,
                             revtun_ext_event_cb event, revtun_ext_destroy_cb destroy, void *user) {
  return add_factory(o, name, create, event, destroy, user, true);
}

int revtun_access_logger_register(revtun_options_t *o, const char *name,
                                  revtun_ext_create_cb create, revtun_ext_event_cb event,
                                  revtun_ext_destroy_cb destroy, void *user) {
  return add_factory(o, name, create, event, destroy, user, false);
}

const struct rt_factory *rt_options_find_factory(const revtun_options_t *o, const char *name,
                                                 bool reporter) {
  if (!o || !name)
    return NULL;
  for (size_t i = 0; i < o->n_factories; i++)
    if (o->factories[i].is_reporter == reporter && strcmp(o->factories[i].name, name) == 0)
      return &o->factories[i];
  return NULL;
}

/* Deep copy into the handle (factory names with the handle's allocator). */
int rt_options_copy(const struct rt_mem *m, revtun_options_t *dst, const revtun_options_t *src) {
  *dst = *src;
  dst->own_mem = *m;
  dst->factories = NULL;
  dst->n_factories = 0;
  dst->module_path = NULL;
  if (src->module_path && !(dst->module_path = rt_strdup(m, src->module_path)))
    return REVTUN_E_NOMEM;
  if (!src->n_factories)
    return REVTUN_OK;
  dst->factories = rt_calloc(m, src->n_factories, sizeof(*dst->factories));
  if (!dst->factories)
    return REVTUN_E_NOMEM;
  for (size_t i = 0; i < src->n_factories; i++) {
    dst->factories[i] = src->factories[i];
    dst->factories[i].name = rt_strdup(m, src->factories[i].name);
    dst->n_factories = i + 1;
    if (!dst->factories[i].name)
      return REVTUN_E_NOMEM;
  }
  return REVTUN_OK;
}

void rt_options_clear(const struct rt_mem *m, revtun_options_t *o) {
  free_factories(m, o->factories, o->n_factories);
  o->factories = NULL;
  o->n_factories = 0;
  rt_free(m, o->module_path);
  o->module_path = NULL;
}
