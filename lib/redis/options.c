/* revtun_redis_options_t: the creation-time settings of a directory, and the
 * rules for the strings that end up in Redis keys and answers. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "rr_int.h"

void rr_options_defaults(struct revtun_redis_options *o) {
  memset(o, 0, sizeof(*o));
  strcpy(o->host, "127.0.0.1");
  o->port = 6379;
  strcpy(o->prefix, "revtun:");
  o->heartbeat_ms = 5000;
  o->ttl_ms = 0; /* 3 x heartbeat */
  o->cache_ttl_ms = 1000;
  o->timeout_ms = 1000;
  o->backoff_min_ms = 100;
  o->backoff_max_ms = 5000;
  o->log_level = REVTUN_LOG_WARN;
}

bool rr_printable(const char *s, size_t n, size_t max) {
  if (!s || n == 0 || n > max)
    return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
      return false;
  return true;
}

bool rr_instance_ok(const char *s, size_t n) { return rr_printable(s, n, RR_MAX_INSTANCE); }
bool rr_address_ok(const char *s, size_t n) { return rr_printable(s, n, RR_MAX_ADDR); }

/* Length of s if it is at most max bytes, else max + 1. */
static size_t bounded_len(const char *s, size_t max) { return s ? strnlen(s, max + 1) : 0; }

static bool copy_printable(char *dst, const char *s, size_t max) {
  size_t n = bounded_len(s, max);
  if (!rr_printable(s, n, max))
    return false;
  memcpy(dst, s, n);
  dst[n] = '\0';
  return true;
}

int revtun_redis_options_new(revtun_redis_options_t **out) {
  if (!out)
    return REVTUN_E_INVAL;
  *out = malloc(sizeof(**out));
  if (!*out)
    return REVTUN_E_NOMEM;
  rr_options_defaults(*out);
  return REVTUN_OK;
}

void revtun_redis_options_free(revtun_redis_options_t *o) {
  if (!o)
    return;
  /* the password is a secret: do not leave it in freed memory */
  explicit_bzero(o, sizeof(*o));
  free(o);
}

/* hiredis resolves a host name with a blocking getaddrinfo(3): only numeric
 * addresses, or a unix socket path, keep the loop from stalling. */
int revtun_redis_options_set_server(revtun_redis_options_t *o, const char *host, int port) {
  if (!o || !host)
    return REVTUN_E_INVAL;
  size_t n = bounded_len(host, RR_MAX_HOST);
  if (n == 0 || n > RR_MAX_HOST)
    return REVTUN_E_INVAL;
  if (host[0] == '/') {
    if (n >= 108) /* sun_path */
      return REVTUN_E_INVAL;
  } else {
    unsigned char buf[16];
    if (inet_pton(AF_INET, host, buf) != 1 && inet_pton(AF_INET6, host, buf) != 1)
      return REVTUN_E_INVAL;
    if (port < 1 || port > 65535)
      return REVTUN_E_INVAL;
  }
  memcpy(o->host, host, n + 1);
  o->port = port;
  return REVTUN_OK;
}

int revtun_redis_options_set_auth(revtun_redis_options_t *o, const char *username,
                                  const char *password) {
  if (!o)
    return REVTUN_E_INVAL;
  size_t un = bounded_len(username, RR_MAX_SECRET), pn = bounded_len(password, RR_MAX_SECRET);
  if (un > RR_MAX_SECRET || pn > RR_MAX_SECRET || (un && !pn))
    return REVTUN_E_INVAL;
  memcpy(o->username, username ? username : "", un + 1);
  memcpy(o->password, password ? password : "", pn + 1);
  return REVTUN_OK;
}

int revtun_redis_options_set_prefix(revtun_redis_options_t *o, const char *prefix) {
  if (!o || !copy_printable(o->prefix, prefix, RR_MAX_PREFIX))
    return REVTUN_E_INVAL;
  return REVTUN_OK;
}

int revtun_redis_options_set_instance(revtun_redis_options_t *o, const char *instance_id,
                                      const char *address) {
  if (!o)
    return REVTUN_E_INVAL;
  char id[RR_MAX_INSTANCE + 1], addr[RR_MAX_ADDR + 1];
  if (!copy_printable(id, instance_id, RR_MAX_INSTANCE) ||
      !copy_printable(addr, address, RR_MAX_ADDR))
    return REVTUN_E_INVAL;
  memcpy(o->instance, id, sizeof(id));
  memcpy(o->address, addr, sizeof(addr));
  return REVTUN_OK;
}

int revtun_redis_options_set_token(revtun_redis_options_t *o, const char *token) {
  if (!o)
    return REVTUN_E_INVAL;
  if (!token) {
    o->token[0] = '\0';
    return REVTUN_OK;
  }
  size_t n = bounded_len(token, RR_MAX_TOKEN);
  if (n < RR_MIN_TOKEN || !copy_printable(o->token, token, RR_MAX_TOKEN))
    return REVTUN_E_INVAL;
  return REVTUN_OK;
}

int revtun_redis_options_set_heartbeat(revtun_redis_options_t *o, uint32_t interval_ms,
                                       uint32_t ttl_ms) {
  if (!o || interval_ms < 10 || interval_ms > 3600000)
    return REVTUN_E_INVAL;
  if (ttl_ms && (ttl_ms <= interval_ms || ttl_ms > 86400000))
    return REVTUN_E_INVAL;
  o->heartbeat_ms = interval_ms;
  o->ttl_ms = ttl_ms;
  return REVTUN_OK;
}

int revtun_redis_options_set_cache_ttl(revtun_redis_options_t *o, uint32_t ttl_ms) {
  if (!o || ttl_ms > 3600000)
    return REVTUN_E_INVAL;
  o->cache_ttl_ms = ttl_ms;
  return REVTUN_OK;
}

int revtun_redis_options_set_timeout(revtun_redis_options_t *o, uint32_t timeout_ms) {
  if (!o || timeout_ms < 10 || timeout_ms > 600000)
    return REVTUN_E_INVAL;
  o->timeout_ms = timeout_ms;
  return REVTUN_OK;
}

int revtun_redis_options_set_backoff(revtun_redis_options_t *o, uint32_t min_ms, uint32_t max_ms) {
  if (!o || min_ms < 1 || max_ms < min_ms || max_ms > 600000)
    return REVTUN_E_INVAL;
  o->backoff_min_ms = min_ms;
  o->backoff_max_ms = max_ms;
  return REVTUN_OK;
}

int revtun_redis_options_set_tenant_isolation(revtun_redis_options_t *o, int on) {
  if (!o)
    return REVTUN_E_INVAL;
  o->isolation = on != 0;
  return REVTUN_OK;
}

int revtun_redis_options_set_log_cb(revtun_redis_options_t *o, revtun_redis_log_cb cb,
                                    int min_level, void *user) {
  if (!o || min_level < REVTUN_LOG_ERROR || min_level > REVTUN_LOG_DEBUG)
    return REVTUN_E_INVAL;
  o->log_cb = cb;
  o->log_level = min_level;
  o->log_user = user;
  return REVTUN_OK;
}
