/* revtun_stats_prometheus(): the text exposition format 0.0.4 as Envoy's
 * admin writes it, parsed back line by line: the grammar, one TYPE per
 * metric before its sample, counters then gauges each sorted, names
 * sanitized as Envoy does, values equal to revtun_stats_foreach; and the
 * snprintf-style buffer contract. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static struct tu_rec rec;

#define MAX_METRICS 256

struct metric {
  char name[256];
  char type[32];
  unsigned long long value;
  int samples;
};

struct parsed {
  struct metric m[MAX_METRICS];
  int n;
};

static bool valid_name(const char *s) {
  if (!(isalpha((unsigned char)*s) || *s == '_'))
    return false;
  for (; *s; s++)
    if (!(isalnum((unsigned char)*s) || *s == '_'))
      return false;
  return true;
}

/* Parses the whole exposition, failing the test on any deviation. */
static void parse(const char *text, struct parsed *p) {
  p->n = 0;
  const char *line = text;
  int current = -1;
  bool blank_after_sample = false;
  while (*line) {
    const char *nl = strchr(line, '\n');
    ck_assert_msg(nl != NULL, "last line not terminated: %s", line);
    char buf[512];
    size_t len = (size_t)(nl - line);
    ck_assert_uint_lt(len, sizeof(buf));
    memcpy(buf, line, len);
    buf[len] = '\0';
    line = nl + 1;
    if (!len) { /* Envoy ends each metric's group with an empty line */
      ck_assert_msg(current >= 0 && p->m[current].samples == 1, "stray empty line");
      blank_after_sample = true;
      continue;
    }
    char name[256], type[32], extra[8];
    if (strncmp(buf, "# TYPE ", 7) == 0) {
      ck_assert_int_eq(sscanf(buf, "# TYPE %255s %31s %7s", name, type, extra), 2);
      ck_assert_msg(valid_name(name), "bad name %s", name);
      ck_assert_msg(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0, "type %s", type);
      ck_assert_msg(current < 0 || blank_after_sample, "group not closed before %s", name);
      for (int i = 0; i < p->n; i++)
        ck_assert_msg(strcmp(p->m[i].name, name) != 0, "second TYPE line for %s", name);
      ck_assert_int_lt(p->n, MAX_METRICS);
      current = p->n++;
      snprintf(p->m[current].name, sizeof(p->m[current].name), "%s", name);
      snprintf(p->m[current].type, sizeof(p->m[current].type), "%s", type);
      p->m[current].samples = 0;
      blank_after_sample = false;
      continue;
    }
    ck_assert_msg(buf[0] != '#', "unexpected comment: %s", buf);
    /* sample: name{} value */
    char *brace = strstr(buf, "{} ");
    ck_assert_msg(brace != NULL, "bad sample line: %s", buf);
    *brace = '\0';
    ck_assert_msg(current >= 0 && strcmp(buf, p->m[current].name) == 0,
                  "sample %s outside its TYPE group", buf);
    ck_assert_int_eq(p->m[current].samples, 0);
    const char *v = brace + 3;
    ck_assert_msg(*v && strspn(v, "0123456789") == strlen(v), "bad value %s", v);
    p->m[current].value = strtoull(v, NULL, 10);
    p->m[current].samples = 1;
  }
  ck_assert(current < 0 || blank_after_sample);
}

static const struct metric *find(const struct parsed *p, const char *name) {
  for (int i = 0; i < p->n; i++)
    if (strcmp(p->m[i].name, name) == 0)
      return &p->m[i];
  return NULL;
}

static char *render(const revtun_t *h) {
  size_t len = 0;
  ck_assert_int_eq(revtun_stats_prometheus(h, NULL, 0, &len), REVTUN_E_NOSPACE);
  char *buf = malloc(len + 1);
  size_t len2 = 0;
  ck_assert_int_eq(revtun_stats_prometheus(h, buf, len + 1, &len2), REVTUN_OK);
  ck_assert_uint_eq(len2, len);
  ck_assert_uint_eq(strlen(buf), len);
  return buf;
}

/* Envoy's sanitizer, written independently: envoy_ + [^a-zA-Z0-9_] -> '_'
 * per UTF-8 character (ids here are valid UTF-8). */
static void sanitize(const char *in, char *out, size_t cap) {
  size_t o = (size_t)snprintf(out, cap, "envoy_");
  for (const unsigned char *p = (const unsigned char *)in; *p && o + 1 < cap; p++) {
    if (isalnum(*p) || *p == '_')
      out[o++] = (char)*p;
    else if ((*p & 0xc0) != 0x80) /* continuation bytes join their lead's '_' */
      out[o++] = '_';
  }
  out[o] = '\0';
}

struct check_ctx {
  const struct parsed *p;
  int seen;
};

static int compare_cb(const char *name, int type, uint64_t value, void *user) {
  struct check_ctx *c = user;
  char want[512];
  sanitize(name, want, sizeof(want));
  const struct metric *m = find(c->p, want);
  ck_assert_msg(m != NULL, "%s (%s) missing", name, want);
  ck_assert_str_eq(m->type, type == REVTUN_STAT_COUNTER ? "counter" : "gauge");
  ck_assert_uint_eq(m->value, value);
  c->seen++;
  return 0;
}

static int pair(int *peer) {
  int sv[2];
  tu_socketpair(sv);
  *peer = sv[1];
  return sv[0];
}

START_TEST(exposition_parses_and_matches_foreach) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("detailed", &rec, 0);
  int peers[4];
  const char *nodes[] = {"node-1", "node.2", "n\xc3\xa9ud", "node-1"};
  for (int i = 0; i < 4; i++)
    ck_assert_int_eq(tu_register(h, pair(&peers[i]), nodes[i], "cl-1", NULL, 0, 0), REVTUN_OK);
  int fd;
  ck_assert_int_eq(revtun_handoff(h, "node.2", NULL, 1, &fd, NULL), REVTUN_OK);
  ck_assert_int_eq(revtun_mark_dead(h, fd, REVTUN_CLOSE_REMOTE_CLOSE, 1), REVTUN_OK);
  char *text = render(h);
  static struct parsed p; /* too large for the stack */
  parse(text, &p);
  struct check_ctx c = {&p, 0};
  ck_assert_int_eq(revtun_stats_foreach(h, compare_cb, &c), REVTUN_OK);
  ck_assert_int_eq(c.seen, p.n); /* nothing extra, nothing missing */
  /* names as Envoy writes them: no _total suffix on counters */
  const struct metric *m = find(&p, "envoy_rt_tunnel_setup");
  ck_assert_ptr_nonnull(m);
  ck_assert_str_eq(m->type, "counter");
  ck_assert_uint_eq(m->value, 4);
  ck_assert_ptr_null(find(&p, "envoy_rt_tunnel_setup_total"));
  m = find(&p, "envoy_rt_tunnel_closed_remote_close");
  ck_assert_uint_eq(m->value, 1);
  m = find(&p, "envoy_rt_worker_0_total_nodes");
  ck_assert_str_eq(m->type, "gauge");
  ck_assert_uint_eq(m->value, 2);
  m = find(&p, "envoy_rt_nodes_node_1");
  ck_assert_uint_eq(m->value, 2);
  m = find(&p, "envoy_rt_nodes_n_ud"); /* one '_' for the two-byte character */
  ck_assert_ptr_nonnull(m);
  ck_assert_uint_eq(m->value, 1);
  ck_assert_ptr_nonnull(
      strstr(text, "# TYPE envoy_rt_clusters_cl_1 gauge\nenvoy_rt_clusters_cl_1{} 3\n\n"));
  /* counters first, then gauges, each sorted by name */
  for (int i = 1; i < p.n; i++) {
    int prev = strcmp(p.m[i - 1].type, "counter") == 0 ? 0 : 1;
    int cur = strcmp(p.m[i].type, "counter") == 0 ? 0 : 1;
    ck_assert_int_le(prev, cur);
    if (prev == cur)
      ck_assert_msg(strcmp(p.m[i - 1].name, p.m[i].name) < 0, "%s before %s", p.m[i - 1].name,
                    p.m[i].name);
  }
  free(text);
  revtun_free(h);
  for (int i = 0; i < 4; i++)
    close(peers[i]);
}
END_TEST

START_TEST(colliding_names_share_one_series) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("detailed", &rec, 0);
  int pa, pb;
  ck_assert_int_eq(tu_register(h, pair(&pa), "a-b", "c", NULL, 0, 0), REVTUN_OK);
  ck_assert_int_eq(tu_register(h, pair(&pb), "a.b", "c", NULL, 0, 0), REVTUN_OK);
  char *text = render(h);
  static struct parsed p; /* too large for the stack */
  parse(text, &p);        /* would fail on a second TYPE line */
  const struct metric *m = find(&p, "envoy_rt_nodes_a_b");
  ck_assert_ptr_nonnull(m);
  ck_assert_uint_eq(m->value, 2);
  free(text);
  revtun_free(h);
  close(pa);
  close(pb);
}
END_TEST

START_TEST(buffer_contract_is_snprintf) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  size_t len = 0;
  ck_assert_int_eq(revtun_stats_prometheus(h, NULL, 0, &len), REVTUN_E_NOSPACE);
  ck_assert_uint_gt(len, 100);
  char *full = malloc(len + 1);
  ck_assert_int_eq(revtun_stats_prometheus(h, full, len + 1, NULL), REVTUN_OK);
  ck_assert_uint_eq(strlen(full), len);
  ck_assert_str_eq(full + len -
                       strlen("envoy_reverse_tunnel_acceptor_worker_0_total_nodes{} 0\n\n"),
                   "envoy_reverse_tunnel_acceptor_worker_0_total_nodes{} 0\n\n");
  /* one byte short: truncated, NUL-terminated, the full length reported */
  char *small = malloc(len);
  memset(small, 'x', len);
  size_t got = 0;
  ck_assert_int_eq(revtun_stats_prometheus(h, small, len, &got), REVTUN_E_NOSPACE);
  ck_assert_uint_eq(got, len);
  ck_assert_uint_eq(strlen(small), len - 1);
  ck_assert_int_eq(strncmp(small, full, len - 1), 0);
  char one[1] = {'x'};
  ck_assert_int_eq(revtun_stats_prometheus(h, one, 1, &got), REVTUN_E_NOSPACE);
  ck_assert_int_eq(one[0], '\0');
  ck_assert_int_eq(revtun_stats_prometheus(h, NULL, 5, &got), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_stats_prometheus(NULL, full, len + 1, &got), REVTUN_E_INVAL);
  ck_assert_uint_eq(got, 0);
  /* counters come first; the first metric of an empty handle */
  ck_assert_int_eq(strncmp(full,
                           "# TYPE envoy_reverse_tunnel_acceptor_access_log_dropped_records "
                           "counter\nenvoy_reverse_tunnel_acceptor_access_log_dropped_records{} "
                           "0\n\n",
                           strlen("# TYPE envoy_reverse_tunnel_acceptor_access_log_dropped_records "
                                  "counter\n")),
                   0);
  free(full);
  free(small);
  revtun_free(h);
}
END_TEST

static int fail_after = -1;
static void *counting_malloc(size_t n, void *u) {
  (void)u;
  if (fail_after == 0)
    return NULL;
  if (fail_after > 0)
    fail_after--;
  return malloc(n);
}
static void *counting_realloc(void *p, size_t n, void *u) {
  (void)u;
  if (fail_after == 0)
    return NULL;
  if (fail_after > 0)
    fail_after--;
  return realloc(p, n);
}
static void counting_free(void *p, void *u) {
  (void)u;
  free(p);
}

START_TEST(allocation_failure_is_reported) {
  tu_rec_init(&rec);
  revtun_options_t *o;
  ck_assert_int_eq(revtun_options_new(&o), REVTUN_OK);
  tu_options(o, &rec);
  ck_assert_int_eq(
      revtun_options_set_allocator(o, counting_malloc, counting_realloc, counting_free, NULL),
      REVTUN_OK);
  revtun_t *h = tu_new_opts("empty", o, 0);
  for (int n = 0;; n++) {
    fail_after = n;
    size_t len = 7;
    int rc = revtun_stats_prometheus(h, NULL, 0, &len);
    fail_after = -1;
    if (rc == REVTUN_E_NOSPACE)
      break;
    ck_assert_int_eq(rc, REVTUN_E_NOMEM);
    ck_assert_uint_eq(len, 0);
    ck_assert_int_lt(n, 200);
  }
  revtun_free(h);
  revtun_options_free(o);
}
END_TEST

int main(void) {
  Suite *s = suite_create("prometheus");
  TCase *t = tcase_create("exposition");
  tcase_add_test(t, exposition_parses_and_matches_foreach);
  tcase_add_test(t, colliding_names_share_one_series);
  tcase_add_test(t, buffer_contract_is_snprintf);
  tcase_add_test(t, allocation_failure_is_reported);
  suite_add_tcase(s, t);
  return tu_run(s);
}
