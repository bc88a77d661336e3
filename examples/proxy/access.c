/*
 * revtun-upstream-proxy: whether a request may be routed at all.
 *
 * Two checks run before routing:
 *
 *  - client tokens (--client-auth FILE): "authorization: Bearer <token>"
 *    must name a token of the file (401 otherwise), and one of the token's
 *    grants must cover the request's tenant and node (403 otherwise);
 *  - id rules: ids longer than MAX_ID_BYTES get 431, control bytes 400;
 *    with tenant isolation a tenant is required and no id may contain ':'
 *    (400), since the library's keys must not be forgeable from a node id.
 *
 * The token file, one token per line:
 *
 *   # comment
 *   <token> <grant> [<grant>...]
 *
 * token: 16..256 characters of A-Z a-z 0-9 - . _ ~ + / (then '=' padding);
 * grant: <tenant> (any node of that tenant, by node or cluster header),
 *        <tenant>/<node> (that node only, by node header), '*' for the
 *        tenant (any tenant, the tenant header may then be absent) or '*'
 *        for the node. At most AUTH_MAX_GRANTS grants per token,
 *        AUTH_MAX_TOKENS tokens and AUTH_MAX_FILE bytes. Tokens are
 *        compared in constant time, against every token of the file.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

#define AUTH_TOKEN_MIN 16
#define AUTH_TOKEN_MAX 256
#define AUTH_MAX_GRANTS 64
#define AUTH_MAX_TOKENS 10000
#define AUTH_MAX_FILE (1 << 20)

struct grant {
  char *tenant, *node; /* NULL: any */
  size_t tenant_len, node_len;
};

struct auth_entry {
  uint8_t token[AUTH_TOKEN_MAX]; /* zero-padded */
  size_t len;
  struct grant grants[AUTH_MAX_GRANTS];
  size_t ngrants;
};

struct auth_table {
  struct auth_entry *e;
  size_t n;
};

static int is_b64token_char(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~' || c == '+' || c == '/';
}

/* A bearer token: letters, digits, - . _ ~ + / then optional '=' padding. */
static int is_b64token(const char *t, size_t n) {
  size_t i = 0;

  while (i < n && is_b64token_char((unsigned char)t[i]))
    i++;
  if (i == 0)
    return 0;
  while (i < n && t[i] == '=')
    i++;
  return i == n;
}

/* Equal length and bytes, in time that depends only on AUTH_TOKEN_MAX. */
static int token_equal(const uint8_t a[AUTH_TOKEN_MAX], size_t alen,
                       const uint8_t b[AUTH_TOKEN_MAX], size_t blen) {
  unsigned diff = (unsigned)(alen ^ blen);

  for (size_t i = 0; i < AUTH_TOKEN_MAX; i++)
    diff |= (unsigned)(a[i] ^ b[i]);
  return diff == 0;
}

static int id_ok(const char *s, size_t n) {
  if (n == 0 || n > MAX_ID_BYTES)
    return 0;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] == 0x7f)
      return 0;
  return 1;
}

static int parse_grant(const char *w, size_t n, struct grant *g) {
  const char *slash = memchr(w, '/', n);
  size_t tl = slash ? (size_t)(slash - w) : n;

  memset(g, 0, sizeof(*g));
  if (!(tl == 1 && w[0] == '*')) {
    if (!id_ok(w, tl) || !(g->tenant = dup_bytes(w, tl)))
      return -1;
    g->tenant_len = tl;
  }
  if (slash) {
    const char *nd = slash + 1;
    size_t nl = n - tl - 1;
    if (!(nl == 1 && nd[0] == '*')) {
      if (!id_ok(nd, nl) || !(g->node = dup_bytes(nd, nl)))
        return -1;
      g->node_len = nl;
    }
  }
  return 0;
}

static void table_free(struct auth_table *t) {
  if (!t)
    return;
  for (size_t i = 0; i < t->n; i++)
    for (size_t k = 0; k < t->e[i].ngrants; k++) {
      free(t->e[i].grants[k].tenant);
      free(t->e[i].grants[k].node);
    }
  free(t->e);
  free(t);
}

/* One line (without its newline): 0 added, 1 blank or comment, -1 bad. */
static int parse_line(struct auth_table *t, const char *l, size_t n, const char **err) {
  size_t i = 0;
  struct auth_entry *e;

  while (i < n && (l[i] == ' ' || l[i] == '\t'))
    i++;
  if (i == n || l[i] == '#')
    return 1;
  if (t->n == AUTH_MAX_TOKENS) {
    *err = "too many tokens";
    return -1;
  }
  e = &t->e[t->n];
  memset(e, 0, sizeof(*e));
  while (i < n) {
    size_t start = i;
    while (i < n && l[i] != ' ' && l[i] != '\t')
      i++;
    if (i > start) {
      if (e->len == 0) {
        if (i - start < AUTH_TOKEN_MIN || i - start > AUTH_TOKEN_MAX ||
            !is_b64token(l + start, i - start)) {
          *err = "a token is 16..256 characters of A-Z a-z 0-9 - . _ ~ + / and '=' padding";
          return -1;
        }
        memcpy(e->token, l + start, i - start);
        e->len = i - start;
      } else if (e->ngrants == AUTH_MAX_GRANTS) {
        *err = "too many grants for one token";
        return -1;
      } else if (parse_grant(l + start, i - start, &e->grants[e->ngrants++]) < 0) {
        *err = "a grant is TENANT, TENANT/NODE or '*' in either place (ids 1..1024 visible bytes)";
        return -1;
      }
    }
    while (i < n && (l[i] == ' ' || l[i] == '\t'))
      i++;
  }
  if (e->ngrants == 0) {
    *err = "a token needs at least one grant";
    return -1;
  }
  for (size_t k = 0; k < t->n; k++)
    if (token_equal(t->e[k].token, t->e[k].len, e->token, e->len)) {
      *err = "the same token twice";
      return -1;
    }
  t->n++;
  return 0;
}

int access_load(struct proxy *p, const char *path) {
  uint8_t *buf;
  size_t len, lines = 0, lineno = 0;
  struct auth_table *t;
  const char *err = NULL;

  if (read_file(path, AUTH_MAX_FILE, &buf, &len) < 0) {
    fprintf(stderr, PROG ": --client-auth %s: %s\n", path, strerror(errno));
    return -1;
  }
  for (size_t i = 0; i < len; i++)
    lines += buf[i] == '\n';
  lines++;
  if (lines > AUTH_MAX_TOKENS)
    lines = AUTH_MAX_TOKENS;
  if (!(t = calloc(1, sizeof(*t))) || !(t->e = calloc(lines, sizeof(*t->e)))) {
    free(t);
    free(buf);
    fprintf(stderr, PROG ": --client-auth %s: out of memory\n", path);
    return -1;
  }
  for (size_t pos = 0; pos < len && !err;) {
    const uint8_t *nl = memchr(buf + pos, '\n', len - pos);
    size_t end = nl ? (size_t)(nl - buf) : len, n = end - pos;
    lineno++;
    if (n > 0 && buf[pos + n - 1] == '\r')
      n--;
    if (memchr(buf + pos, '\0', n))
      err = "NUL byte";
    else
      parse_line(t, (const char *)buf + pos, n, &err);
    pos = end + 1;
  }
  free(buf);
  if (!err && t->n == 0)
    err = "no token";
  if (err) {
    fprintf(stderr, PROG ": --client-auth %s:%zu: %s\n", path, lineno, err);
    table_free(t);
    return -1;
  }
  p->auth = t;
  logmsg("client authorization: %zu token(s) from %s", t->n, path);
  return 0;
}

void access_free(struct proxy *p) {
  table_free(p->auth);
  p->auth = NULL;
}

/* The entry whose token the authorization value names, or NULL. Every
 * entry is compared, whatever matches. */
static const struct auth_entry *token_lookup(const struct auth_table *t, const char *v, size_t n) {
  uint8_t tok[AUTH_TOKEN_MAX];
  size_t i = 0, len;
  const struct auth_entry *found = NULL;

  if (n < 7 || !h1_str_ieq((struct h1_str){v, 6}, "bearer") || v[6] != ' ')
    return NULL;
  for (i = 7; i < n && v[i] == ' '; i++)
    ;
  len = n - i;
  if (len > AUTH_TOKEN_MAX || !is_b64token(v + i, len))
    return NULL;
  memset(tok, 0, sizeof(tok));
  memcpy(tok, v + i, len);
  for (size_t k = 0; k < t->n; k++) {
    int eq = token_equal(t->e[k].token, t->e[k].len, tok, len);
    if (eq && !found)
      found = &t->e[k];
  }
  return found;
}

static int span_eq(const char *a, size_t an, const char *b) {
  return b && strlen(b) == an && !memcmp(a, b, an);
}

/* Does one of e's grants cover this tenant and node? A grant naming a
 * node covers only requests whose tunnel key is that node's id (not a
 * cluster). Both are what the host selector rendered (NULL: none). */
static int granted(const struct auth_entry *e, const char *tenant, const char *node) {
  for (size_t i = 0; i < e->ngrants; i++) {
    const struct grant *g = &e->grants[i];
    if (g->tenant && !span_eq(g->tenant, g->tenant_len, tenant))
      continue;
    if (g->node && !span_eq(g->node, g->node_len, node))
      continue;
    return 1;
  }
  return 0;
}

static int has_ctl(const nghttp2_nv *v) {
  for (size_t i = 0; i < v->valuelen; i++)
    if (v->value[i] < 0x20 || v->value[i] == 0x7f)
      return 1;
  return 0;
}

int access_check(struct proxy *p, struct xchg *x, const char **hname, const char **hvalue,
                 char *why, size_t whylen) {
  const struct settings *cfg = &p->cfg;
  const nghttp2_nv *ids[3] = {hdrs_find(&x->req, cfg->node_header),
                              hdrs_find(&x->req, cfg->cluster_header),
                              hdrs_find(&x->req, cfg->tenant_header)};
  const char *names[3] = {cfg->node_header, cfg->cluster_header, cfg->tenant_header};
  const struct auth_entry *e = NULL;
  int isolation = revtun_config_tenant_isolation(p->h);
  int status;

  if (p->auth) {
    if (!x->auth) {
      p->st.auth_failures++;
      *hname = "www-authenticate";
      *hvalue = "Bearer realm=\"revtun\"";
      snprintf(why, whylen, "a bearer token is required (authorization: Bearer <token>)");
      return 401;
    }
    if (!(e = token_lookup(p->auth, x->auth, x->auth_len))) {
      p->st.auth_failures++;
      *hname = "www-authenticate";
      *hvalue = "Bearer realm=\"revtun\", error=\"invalid_token\"";
      snprintf(why, whylen, "unknown bearer token");
      return 401;
    }
  }
  for (int i = 0; i < 3; i++) {
    if (!ids[i])
      continue;
    if (ids[i]->valuelen > MAX_ID_BYTES) {
      snprintf(why, whylen, "%s is longer than %d bytes", names[i], MAX_ID_BYTES);
      return 431;
    }
    if (memchr(ids[i]->value, '\0', ids[i]->valuelen) || has_ctl(ids[i])) {
      snprintf(why, whylen, "%s holds control bytes", names[i]);
      return 400;
    }
    if (isolation && memchr(ids[i]->value, ':', ids[i]->valuelen)) {
      snprintf(why, whylen, "%s may not contain ':' with tenant isolation", names[i]);
      return 400;
    }
  }
  /* what the tunnel is selected by, checked as the ids above */
  if ((status = select_render(p, x, why, whylen)) != 0)
    return status;
  const char *sel[2] = {x->key, x->key_tenant};
  for (int i = 0; i < 2; i++) {
    for (const char *c = sel[i]; *c; c++)
      if ((unsigned char)*c < 0x20 || *c == 0x7f) {
        snprintf(why, whylen, "the tunnel %s holds control bytes", i ? "tenant" : "key");
        return 400;
      }
    if (isolation && strchr(sel[i], ':')) {
      snprintf(why, whylen, "the tunnel %s may not contain ':' with tenant isolation",
               i ? "tenant" : "key");
      return 400;
    }
  }
  if (isolation && !x->key_tenant[0]) {
    if (p->tenant_shorthand)
      snprintf(why, whylen, "tenant isolation is on: a non-empty %s header is required",
               cfg->tenant_header);
    else
      snprintf(why, whylen, "tenant isolation is on: --tenant-id-format renders no tenant");
    return 400;
  }
  /* A key that is a cluster here grants as a cluster (no node). */
  const char *tenant = x->key_tenant[0] ? x->key_tenant : NULL;
  const char *node = x->key_ok && !select_names_cluster(p, x) ? x->key : NULL;
  if (e && !granted(e, tenant, node)) {
    p->st.auth_failures++;
    snprintf(why, whylen, "this token does not grant the %s and %s of this request",
             p->tenant_shorthand ? cfg->tenant_header : "tenant",
             node ? (p->sel_shorthand ? cfg->node_header : "node") : "cluster");
    return 403;
  }
  return 0;
}
