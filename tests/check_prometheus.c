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

#include "prom_parse.h"
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

/* Parses the whole exposition with the strict parser, failing the test on
 * any deviation; p gets the families that are not histograms (one sample
 * each: the Envoy layout has no labels). */
static void parse(const char *text, struct parsed *p) {
  struct prom_result r;
  ck_assert_msg(prom_parse(text, strlen(text), &r) == 0, "%s", r.err);
  p->n = 0;
  for (size_t i = 0; i < r.nf; i++) {
    if (!strcmp(r.f[i].type, "histogram"))
      continue;
    ck_assert_msg(valid_name(r.f[i].name), "bad name %s", r.f[i].name);
    ck_assert_int_lt(p->n, MAX_METRICS);
    struct metric *m = &p->m[p->n++];
    snprintf(m->name, sizeof(m->name), "%s", r.f[i].name);
    snprintf(m->type, sizeof(m->type), "%s", r.f[i].type);
    const struct prom_sample *smp = prom_find(&r, m->name, "");
    ck_assert_msg(smp != NULL, "no sample for %s", m->name);
    m->value = (unsigned long long)smp->value;
    m->samples = 1;
  }
  prom_free(&r);
}

static const struct metric *find(const struct parsed *p, const char *name) {
  for (int i = 0; i < p->n; i++)
    if (strcmp(p->m[i].name, name) == 0)
      return &p->m[i];
  return NULL;
}

static char *render_ex(const revtun_t *h, unsigned flags) {
  size_t len = 0;
  ck_assert_int_eq(revtun_stats_prometheus_ex(h, flags, NULL, 0, &len), REVTUN_E_NOSPACE);
  char *buf = malloc(len + 1);
  size_t len2 = 0;
  ck_assert_int_eq(revtun_stats_prometheus_ex(h, flags, buf, len + 1, &len2), REVTUN_OK);
  ck_assert_uint_eq(len2, len);
  ck_assert_uint_eq(strlen(buf), len);
  return buf;
}

static char *render(const revtun_t *h) { return render_ex(h, REVTUN_PROM_HIDDEN_INCLUDE); }

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
      strstr(text, "# TYPE envoy_rt_clusters_cl_1 gauge\nenvoy_rt_clusters_cl_1{} 3\n# TYPE "));
  /* counters first, then gauges, each sorted by name (then histograms) */
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
  ck_assert_str_eq(full + len - strlen("envoy_reverse_tunnel_acceptor_cx_upgrade_time_count{} 0\n"),
                   "envoy_reverse_tunnel_acceptor_cx_upgrade_time_count{} 0\n");
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
                           "0\n",
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
    ck_assert_int_lt(n, 400);
  }
  revtun_free(h);
  revtun_options_free(o);
}
END_TEST

static char *text_of(const revtun_t *h, unsigned flags, struct prom_result *r) {
  char *text = render_ex(h, flags);
  ck_assert_msg(prom_parse(text, strlen(text), r) == 0, "%s\n%s", r->err, text);
  return text;
}

/* Envoy's per-node/cluster/tenant gauges are HiddenAccumulate: not in
 * /stats/prometheus unless ?hidden=include; the per-worker ones are. */
START_TEST(hidden_gauges_need_hidden_include) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("detailed", &rec, 0);
  int peer;
  ck_assert_int_eq(tu_register(h, pair(&peer), "node-1", "cl-1", NULL, 0, 0), REVTUN_OK);
  struct prom_result r;
  char *text = text_of(h, 0, &r);
  ck_assert_ptr_null(prom_type(&r, "envoy_rt_nodes_node_1"));
  ck_assert_ptr_null(prom_type(&r, "envoy_rt_clusters_cl_1"));
  ck_assert_ptr_nonnull(prom_find(&r, "envoy_rt_worker_0_node_node_1", ""));
  ck_assert_ptr_nonnull(prom_find(&r, "envoy_rt_worker_0_cluster_cl_1", ""));
  size_t len = 0;
  ck_assert_int_eq(revtun_stats_prometheus(h, NULL, 0, &len), REVTUN_E_NOSPACE);
  ck_assert_uint_eq(len, strlen(text)); /* the 0.1 call is the default layout */
  prom_free(&r);
  free(text);
  text = text_of(h, REVTUN_PROM_HIDDEN_INCLUDE, &r);
  ck_assert_double_eq(prom_find(&r, "envoy_rt_nodes_node_1", "")->value, 1);
  ck_assert_str_eq(prom_type(&r, "envoy_rt_nodes_node_1")->type, "gauge");
  prom_free(&r);
  free(text);
  ck_assert_int_eq(revtun_stats_prometheus_ex(h, 0x4, NULL, 0, &len), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_stats_prometheus_ex(NULL, 0, NULL, 0, &len), REVTUN_E_INVAL);
  revtun_free(h);
  close(peer);
}
END_TEST

/* The labelled form: ids out of the names, escaped as label values. */
START_TEST(labels_carry_the_ids) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("detailed_isolation", &rec, 0);
  int p1, p2, p3;
  ck_assert_int_eq(tu_register(h, pair(&p1), "edge-1", "cl.a", "acme", 0, 0), REVTUN_OK);
  ck_assert_int_eq(tu_register(h, pair(&p2), "edge-1", "cl.a", "acme", 0, 0), REVTUN_OK);
  ck_assert_int_eq(tu_register(h, pair(&p3), "q\"\\\xc3\xa9", "cl.a", "b.nodes.c", 0, 0),
                   REVTUN_OK);
  struct prom_result r;
  char *text = text_of(h, REVTUN_PROM_LABELS | REVTUN_PROM_HIDDEN_INCLUDE, &r);
  ck_assert_ptr_nonnull(strstr(text, "# TYPE envoy_rt_nodes gauge\n"));
  ck_assert_double_eq(prom_find(&r, "envoy_rt_nodes", "node=edge-1\x1f")->value, 2);
  ck_assert_double_eq(prom_find(&r, "envoy_rt_clusters", "cluster=cl.a\x1f")->value, 3);
  ck_assert_double_eq(
      prom_find(&r, "envoy_rt_tenants_nodes", "node=edge-1\x1ftenant=acme\x1f")->value, 2);
  ck_assert_double_eq(
      prom_find(&r, "envoy_rt_tenants_clusters", "cluster=cl.a\x1ftenant=b.nodes.c\x1f")->value, 1);
  ck_assert_double_eq(prom_find(&r, "envoy_rt_worker_0_node", "node=edge-1\x1f")->value, 2);
  /* the quote and the backslash escaped, the UTF-8 character kept */
  ck_assert_ptr_nonnull(strstr(text, "envoy_rt_nodes{node=\"q\\\"\\\\\xc3\xa9\"} 1\n"));
  ck_assert_ptr_nonnull(prom_find(&r, "envoy_rt_nodes", "node=q\"\\\xc3\xa9\x1f"));
  ck_assert_str_eq(prom_type(&r, "envoy_rt_tenants_nodes")->type, "gauge");
  prom_free(&r);
  free(text);
  /* labels without hidden: only the per-worker families */
  text = text_of(h, REVTUN_PROM_LABELS, &r);
  ck_assert_ptr_null(prom_type(&r, "envoy_rt_nodes"));
  ck_assert_ptr_nonnull(prom_type(&r, "envoy_rt_worker_0_cluster"));
  prom_free(&r);
  free(text);
  revtun_free(h);
  close(p1);
  close(p2);
  close(p3);
}
END_TEST

struct hist_seen {
  char name[3][128];
  uint64_t count[3], sum[3], le50[3], inf[3];
  size_t n, bounds;
};

static int hist_cb(const char *name, const double *bounds, const uint64_t *cum, size_t n,
                   uint64_t count, uint64_t sum, void *user) {
  struct hist_seen *hs = user;
  ck_assert_uint_lt(hs->n, 3);
  snprintf(hs->name[hs->n], sizeof(hs->name[0]), "%s", name);
  hs->count[hs->n] = count;
  hs->sum[hs->n] = sum;
  for (size_t i = 0; i < n; i++)
    if (bounds[i] == 50)
      hs->le50[hs->n] = cum[i];
  hs->inf[hs->n] = cum[n - 1];
  hs->bounds = n;
  hs->n++;
  return 0;
}

/* cx_upgrade_time: parked -> handed off; cx_idle_expire_time: parked ->
 * died idle; cx_post_upgrade_lifetime: handed off -> gone. */
START_TEST(histograms_time_the_tunnel) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int p1, p2, fd1 = pair(&p1), fd2 = pair(&p2), fd;
  ck_assert_int_eq(tu_register(h, fd1, "n1", "c", NULL, 0, 100), REVTUN_OK);
  ck_assert_int_eq(tu_register(h, fd2, "n2", "c", NULL, 0, 100), REVTUN_OK);
  ck_assert_int_eq(revtun_handoff(h, "n1", NULL, 130, &fd, NULL), REVTUN_OK); /* 30 ms */
  ck_assert_int_eq(revtun_mark_dead(h, fd, REVTUN_CLOSE_REMOTE_CLOSE, 2130), REVTUN_OK);
  ck_assert_int_eq(revtun_mark_dead(h, fd2, REVTUN_CLOSE_EXPLICIT_CLOSE, 7100), REVTUN_OK);
  struct hist_seen hs = {0};
  ck_assert_int_eq(revtun_walk_histograms(h, hist_cb, &hs), REVTUN_OK);
  ck_assert_uint_eq(hs.n, 3);
  ck_assert_uint_eq(hs.bounds, 19);
  ck_assert_str_eq(hs.name[0], "reverse_tunnel_acceptor.cx_upgrade_time");
  ck_assert_uint_eq(hs.count[0], 1);
  ck_assert_uint_eq(hs.sum[0], 30);
  ck_assert_uint_eq(hs.le50[0], 1);
  ck_assert_str_eq(hs.name[1], "reverse_tunnel_acceptor.cx_idle_expire_time");
  ck_assert_uint_eq(hs.sum[1], 7000);
  ck_assert_uint_eq(hs.le50[1], 0);
  ck_assert_str_eq(hs.name[2], "reverse_tunnel_acceptor.cx_post_upgrade_lifetime");
  ck_assert_uint_eq(hs.sum[2], 2000);
  ck_assert_uint_eq(hs.inf[2], 1);
  ck_assert_int_eq(revtun_walk_histograms(h, NULL, NULL), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_walk_histograms(NULL, hist_cb, &hs), REVTUN_E_INVAL);

  struct prom_result r;
  char *text = text_of(h, 0, &r);
  const char *fam = "envoy_reverse_tunnel_acceptor_cx_upgrade_time";
  ck_assert_str_eq(prom_type(&r, fam)->type, "histogram");
  ck_assert_ptr_nonnull(
      strstr(text, "# TYPE envoy_reverse_tunnel_acceptor_cx_upgrade_time histogram\n"
                   "envoy_reverse_tunnel_acceptor_cx_upgrade_time_bucket{le=\"0.5\"} 0\n"
                   "envoy_reverse_tunnel_acceptor_cx_upgrade_time_bucket{le=\"1\"} 0\n"));
  ck_assert_ptr_nonnull(
      strstr(text, "envoy_reverse_tunnel_acceptor_cx_upgrade_time_bucket{le=\"3600000\"} 1\n"
                   "envoy_reverse_tunnel_acceptor_cx_upgrade_time_bucket{le=\"+Inf\"} 1\n"
                   "envoy_reverse_tunnel_acceptor_cx_upgrade_time_sum{} 30\n"
                   "envoy_reverse_tunnel_acceptor_cx_upgrade_time_count{} 1\n"));
  ck_assert_ptr_nonnull(
      strstr(text, "envoy_reverse_tunnel_acceptor_cx_idle_expire_time_bucket{le=\"10000\"} 1\n"));
  ck_assert_ptr_nonnull(
      strstr(text, "envoy_reverse_tunnel_acceptor_cx_idle_expire_time_bucket{le=\"5000\"} 0\n"));
  /* histograms come last */
  ck_assert_str_eq(r.f[r.nf - 1].type, "histogram");
  ck_assert_str_eq(r.f[r.nf - 3].type, "histogram");
  ck_assert_str_ne(r.f[r.nf - 4].type, "histogram");
  /* what promtool's lint flags is Envoy's naming: counters without _total */
  size_t counters = 0, flagged = 0;
  for (size_t i = 0; i < r.nf; i++)
    counters += !strcmp(r.f[i].type, "counter");
  ck_assert_uint_eq(prom_lint(&r, &flagged), counters);
  prom_free(&r);
  free(text);
  revtun_free(h);
  close(p1);
  close(p2);
}
END_TEST

/* The parser is strict: each of these is refused. */
START_TEST(parser_refuses_bad_text) {
  static const char *const bad[] = {
      "# TYPE a counter\na{} 1\n\n",                                  /* empty line */
      "# TYPE a counter\n# TYPE a counter\na{} 1\n",                  /* second TYPE */
      "a{} 1\n# TYPE a counter\n",                                    /* TYPE after samples */
      "# TYPE a counter\na{} 1",                                      /* unterminated */
      "# TYPE a counter\na{x=\"\\t\"} 1\n",                           /* bad escape */
      "# TYPE a counter\na{x=\"\xff\"} 1\n",                          /* not UTF-8 */
      "# TYPE a counter\na{x=\"1\",x=\"2\"} 1\n",                     /* label twice */
      "# TYPE a counter\na{__x=\"1\"} 1\n",                           /* reserved */
      "# TYPE a counter\na{} 1\na{} 2\n",                             /* series twice */
      "# TYPE a gauge\na{} 1x\n",                                     /* bad value */
      "# TYPE a-b gauge\n",                                           /* bad name */
      "# TYPE a gauge\n# TYPE b gauge\na{} 1\nb{} 1\na{x=\"1\"} 1\n", /* not contiguous */
      "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum{} 1\nh_count{} 1\n",
      "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum{} 1\nh_count{} 1\n", /* no +Inf */
      "# TYPE h histogram\nh_bucket{} 1\n",                                 /* bucket without le */
      "# comment\n",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    struct prom_result r;
    ck_assert_msg(prom_parse(bad[i], strlen(bad[i]), &r) != 0, "accepted #%zu", i);
    prom_free(&r);
  }
  const char *good = "# TYPE h histogram\nh_bucket{le=\"0.5\"} 0\nh_bucket{le=\"+Inf\"} 1\n"
                     "h_sum{} 2.5\nh_count{} 1\n# TYPE g gauge\ng{a=\"x\\\"y\",b=\"\\n\"} -1e3\n";
  struct prom_result r;
  ck_assert_msg(prom_parse(good, strlen(good), &r) == 0, "%s", r.err);
  ck_assert_double_eq(prom_find(&r, "g",
                                "a=x\"y\x1f"
                                "b=\n\x1f")
                          ->value,
                      -1000);
  prom_free(&r);
}
END_TEST

int main(void) {
  Suite *s = suite_create("prometheus");
  TCase *t = tcase_create("exposition");
  tcase_add_test(t, exposition_parses_and_matches_foreach);
  tcase_add_test(t, colliding_names_share_one_series);
  tcase_add_test(t, buffer_contract_is_snprintf);
  tcase_add_test(t, allocation_failure_is_reported);
  tcase_add_test(t, hidden_gauges_need_hidden_include);
  tcase_add_test(t, labels_carry_the_ids);
  tcase_add_test(t, histograms_time_the_tunnel);
  tcase_add_test(t, parser_refuses_bad_text);
  suite_add_tcase(s, t);
  return tu_run(s);
}
