/* The socket pool: register, lookup, FIFO handoff, round robin, membership,
 * limits, death and teardown, with real socketpairs. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"

static struct tu_rec rec;

static int make_pair(int *peer) {
  int sv[2];
  tu_socketpair(sv);
  *peer = sv[1];
  return sv[0];
}

static int handoff(revtun_t *h, const char *node, const char *tenant) {
  int fd = -7;
  int rc = revtun_handoff(h, node, tenant, 10, &fd, NULL);
  return rc == REVTUN_OK ? fd : rc;
}

START_TEST(fifo_handoff_on_one_node) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int fds[3], peers[3];
  for (int i = 0; i < 3; i++) {
    fds[i] = make_pair(&peers[i]);
    ck_assert_int_eq(tu_register(h, fds[i], "test-node", "test-cluster", NULL, 0, 1), REVTUN_OK);
    ck_assert_int_eq(revtun_idle_count(h, "test-node", NULL), i + 1);
    ck_assert_int_eq(rec.io_events[fds[i]], REVTUN_IO_READ);
  }
  ck_assert_int_eq(revtun_idle_count_cluster(h, "test-cluster", NULL), 3);
  for (int i = 0; i < 3; i++) {
    ck_assert_int_eq(handoff(h, "test-node", NULL), fds[i]); /* oldest first */
    ck_assert_int_eq(rec.io_events[fds[i]], REVTUN_IO_REMOVE);
    ck_assert_int_eq(revtun_idle_count(h, "test-node", NULL), 2 - i);
    /* HANDED_OFF is only ever the state of the handoff record */
    ck_assert_int_eq(revtun_socket_state(h, fds[i]), REVTUN_SOCK_IN_USE);
  }
  int fd = 5;
  ck_assert_int_eq(revtun_handoff(h, "test-node", NULL, 10, &fd, NULL), REVTUN_E_NOT_FOUND);
  ck_assert_int_eq(fd, -1);
  ck_assert_int_eq(revtun_handoff(h, "nobody", NULL, 10, &fd, NULL), REVTUN_E_NOT_FOUND);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel_acceptor.fallback_no_reverse_socket"), 2);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel_acceptor.handoff"), 3);
  ck_assert_uint_eq(tu_count(&rec, REVTUN_EV_SOCKET_HANDOFF), 3);
  const struct tu_event *e = tu_last(&rec, REVTUN_EV_SOCKET_HANDOFF);
  ck_assert_int_eq(e->state, REVTUN_SOCK_HANDED_OFF);
  ck_assert_ptr_nonnull(strstr(e->meta, "handoff_kind=pool_to_upstream;"));
  ck_assert_ptr_nonnull(strstr(e->meta, "socket_state=handed_off;"));
  /* handed-off sockets are still live bookkeeping until mark_dead */
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel_acceptor.worker_0.total_nodes"), 1);
  for (int i = 0; i < 3; i++) {
    ck_assert_int_eq(revtun_mark_dead(h, fds[i], REVTUN_CLOSE_REMOTE_CLOSE, 20), REVTUN_OK);
    ck_assert(tu_fd_open(fds[i])); /* the host owns handed-off fds */
    close(fds[i]);
    close(peers[i]);
  }
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel_acceptor.worker_0.total_nodes"), 0);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel_acceptor.worker_0.total_clusters"), 0);
  revtun_free(h);
}
END_TEST

START_TEST(nodes_are_independent) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int p1, p2;
  int a = make_pair(&p1), b = make_pair(&p2);
  ck_assert_int_eq(tu_register(h, a, "node1", "cluster1", NULL, 0, 0), REVTUN_OK);
  ck_assert_int_eq(tu_register(h, b, "node2", "cluster2", NULL, 0, 0), REVTUN_OK);
  const char *n, *c, *t;
  ck_assert_int_eq(revtun_socket_identity(h, b, &n, &c, &t), REVTUN_OK);
  ck_assert_str_eq(n, "node2");
  ck_assert_str_eq(c, "cluster2");
  ck_assert_str_eq(t, "");
  ck_assert_int_eq(handoff(h, "node2", NULL), b);
  ck_assert_int_eq(handoff(h, "node2", NULL), REVTUN_E_NOT_FOUND);
  ck_assert_int_eq(handoff(h, "node1", NULL), a);
  ck_assert_int_eq(revtun_socket_identity(h, 999, &n, &c, &t), REVTUN_E_NOT_FOUND);
  revtun_free(h);
  close(a), close(b), close(p1), close(p2);
}
END_TEST

START_TEST(empty_ids_are_errors_and_the_caller_keeps_the_fd) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int peer, fd = make_pair(&peer);
  ck_assert_int_eq(tu_register(h, fd, "test-node", "", NULL, 0, 0), REVTUN_E_INVAL);
  ck_assert_int_eq(tu_register(h, fd, "", "test-cluster", NULL, 0, 0), REVTUN_E_INVAL);
  ck_assert_int_eq(tu_register(h, fd, NULL, "test-cluster", NULL, 0, 0), REVTUN_E_INVAL);
  ck_assert_int_eq(tu_register(h, -1, "n", "c", NULL, 0, 0), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_register_socket(h, fd, NULL, 0), REVTUN_E_INVAL);
  ck_assert(tu_fd_open(fd));
  ck_assert_uint_eq(rec.n, 1); /* only server_initialized: no tunnel events */
  ck_assert_int_eq(rec.ev[0].kind, REVTUN_EV_REPORT_SERVER_INITIALIZED);
  ck_assert_int_eq(rec.io_calls, 0); /* no io interest */
  ck_assert_int_eq(revtun_socket_state(h, fd), REVTUN_E_NOT_FOUND);
  ck_assert_int_eq(handoff(h, "test-node", NULL), REVTUN_E_NOT_FOUND);
  revtun_free(h);
  ck_assert(tu_fd_open(fd));
  close(fd), close(peer);
}
END_TEST

START_TEST(colon_rejected_only_with_isolation) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("isolation", &rec, 0);
  int peer, fd = make_pair(&peer);
  ck_assert_int_eq(tu_register(h, fd, "node:x", "c", "t", 0, 0), REVTUN_E_INVAL);
  ck_assert_int_eq(tu_register(h, fd, "n", "c:x", "t", 0, 0), REVTUN_E_INVAL);
  ck_assert_int_eq(tu_register(h, fd, "n", "c", "t:x", 0, 0), REVTUN_E_INVAL);
  ck_assert(tu_fd_open(fd));
  revtun_free(h);
  h = tu_new("empty", &rec, 0);
  ck_assert_int_eq(tu_register(h, fd, "node:x", "c:x", "t:x", 0, 0), REVTUN_OK);
  ck_assert_int_eq(handoff(h, "node:x", NULL), fd);
  revtun_free(h);
  close(fd), close(peer);
}
END_TEST

START_TEST(tenant_scoped_keys) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("isolation", &rec, 0);
  int p1, p2, p3;
  int a = make_pair(&p1), b = make_pair(&p2), c = make_pair(&p3);
  ck_assert_int_eq(tu_register(h, a, "node-1", "cluster-1", "tenant-alpha", 0, 0), REVTUN_OK);
  ck_assert_int_eq(tu_register(h, b, "node-1", "cluster-1", "tenant-beta", 0, 0), REVTUN_OK);
  /* with isolation every registration names its tenant */
  ck_assert_int_eq(tu_register(h, c, "node-1", "cluster-1", NULL, 0, 0), REVTUN_E_INVAL);
  ck_assert_int_eq(tu_register(h, c, "node-1", "cluster-1", "", 0, 0), REVTUN_E_INVAL);
  ck_assert_int_eq(tu_register(h, c, "node-1", "cluster-1", "tenant-gamma", 0, 0), REVTUN_OK);
  const struct tu_event *e = tu_nth(&rec, REVTUN_EV_TUNNEL_SETUP, 0);
  ck_assert_str_eq(e->node_key, "tenant-alpha:node-1");
  ck_assert_str_eq(e->cluster_key, "tenant-alpha:cluster-1");
  ck_assert_str_eq(e->node, "node-1"); /* records carry raw ids */
  ck_assert_str_eq(e->tenant, "tenant-alpha");
  e = tu_nth(&rec, REVTUN_EV_REPORT_CONNECTED, 0); /* reporter gets scoped keys */
  ck_assert_str_eq(e->node_key, "tenant-alpha:node-1");
  ck_assert_str_eq(e->tenant, "tenant-alpha");
  e = tu_nth(&rec, REVTUN_EV_TUNNEL_SETUP, 2);
  ck_assert_str_eq(e->node_key, "tenant-gamma:node-1");
  ck_assert_int_eq(revtun_idle_count(h, "node-1", "tenant-alpha"), 1);
  ck_assert_int_eq(revtun_idle_count(h, "node-1", "tenant-beta"), 1);
  ck_assert_int_eq(revtun_idle_count(h, "node-1", "tenant-gamma"), 1);
  /* and so does every lookup: no tenant never means "any tenant" */
  ck_assert_int_eq(revtun_idle_count(h, "node-1", NULL), REVTUN_E_INVAL);
  ck_assert_int_eq(handoff(h, "node-1", NULL), REVTUN_E_INVAL);
  ck_assert_int_eq(handoff(h, "node-1", ""), REVTUN_E_INVAL);
  ck_assert_int_eq(handoff(h, "node-1", "tenant-beta"), b);
  ck_assert_int_eq(handoff(h, "node-1", "tenant-beta"), REVTUN_E_NOT_FOUND);
  int fd;
  ck_assert_int_eq(revtun_handoff_by_cluster(h, "cluster-1", "tenant-alpha", 0, &fd, NULL),
                   REVTUN_OK);
  ck_assert_int_eq(fd, a);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel_acceptor.worker_0.total_nodes"), 3);
  revtun_free(h);
  /* without isolation the tenant does not scope the key */
  tu_rec_init(&rec);
  h = tu_new("empty", &rec, 0);
  int d = make_pair(&p1);
  ck_assert_int_eq(tu_register(h, d, "node-1", "cluster-1", "tenant-alpha", 0, 0), REVTUN_OK);
  ck_assert_str_eq(tu_last(&rec, REVTUN_EV_TUNNEL_SETUP)->node_key, "node-1");
  ck_assert_str_eq(tu_last(&rec, REVTUN_EV_TUNNEL_SETUP)->tenant, "tenant-alpha");
  ck_assert_int_eq(revtun_idle_count(h, "node-1", "whatever"), 1);
  revtun_free(h);
  ck_assert(!tu_fd_open(d)); /* idle: closed by free */
  close(a), close(b), close(c), close(p1), close(p2), close(p3);
}
END_TEST

START_TEST(cluster_round_robin) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  const char *nodes[3] = {"a", "b", "c"};
  int fds[6], peers[6];
  for (int i = 0; i < 6; i++) {
    fds[i] = make_pair(&peers[i]);
    ck_assert_int_eq(tu_register(h, fds[i], nodes[i % 3], "C", NULL, 0, 0), REVTUN_OK);
  }
  /* each node once before any node twice */
  int seen[3] = {0};
  for (int i = 0; i < 3; i++) {
    int fd;
    ck_assert_int_eq(revtun_handoff_by_cluster(h, "C", NULL, 0, &fd, NULL), REVTUN_OK);
    const char *n;
    ck_assert_int_eq(revtun_socket_identity(h, fd, &n, NULL, NULL), REVTUN_OK);
    seen[n[0] - 'a']++;
  }
  ck_assert(seen[0] == 1 && seen[1] == 1 && seen[2] == 1);
  const char *first, *second;
  ck_assert_int_eq(revtun_lookup_cluster(h, "C", NULL, &first), REVTUN_OK);
  ck_assert_int_eq(revtun_lookup_cluster(h, "C", NULL, &second), REVTUN_OK);
  ck_assert_str_ne(first, second);
  ck_assert_int_eq(revtun_lookup_cluster(h, "nope", NULL, &first), REVTUN_E_NOT_FOUND);
  revtun_free(h);
  for (int i = 0; i < 6; i++)
    close(peers[i]);
}
END_TEST

/* revtun_cluster_node_count and revtun_cluster_member read a cluster's
 * members without moving the round robin that revtun_lookup_cluster (Envoy's
 * host pick) and revtun_handoff_by_cluster advance. */
START_TEST(cluster_queries_leave_the_round_robin_alone) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  const char *nodes[3] = {"a", "b", "c"};
  int fds[3], peers[3];
  for (int i = 0; i < 3; i++) {
    fds[i] = make_pair(&peers[i]);
    ck_assert_int_eq(tu_register(h, fds[i], nodes[i], "C", NULL, 0, 0), REVTUN_OK);
  }
  ck_assert_int_eq(revtun_cluster_node_count(h, "C", NULL), 3);
  const char *first, *m, *next, *again;
  ck_assert_int_eq(revtun_lookup_cluster(h, "C", NULL, &first), REVTUN_OK);
  int seen[3] = {0};
  for (size_t i = 0; i < 3; i++) {
    ck_assert_int_eq(revtun_cluster_member(h, "C", NULL, i, &m), REVTUN_OK);
    seen[m[0] - 'a']++;
  }
  ck_assert(seen[0] == 1 && seen[1] == 1 && seen[2] == 1); /* every member once */
  m = "x";
  ck_assert_int_eq(revtun_cluster_member(h, "C", NULL, 3, &m), REVTUN_E_NOT_FOUND);
  ck_assert_ptr_null(m);
  /* the pick after the queries is the one after `first`, as if they never ran */
  ck_assert_int_eq(revtun_lookup_cluster(h, "C", NULL, &next), REVTUN_OK);
  ck_assert_str_ne(next, first);
  ck_assert_int_eq(revtun_lookup_cluster(h, "C", NULL, &again), REVTUN_OK);
  ck_assert_str_ne(again, first);
  ck_assert_str_ne(again, next);
  /* a node whose only socket is handed off is still a member */
  ck_assert_int_eq(handoff(h, "b", NULL), fds[1]);
  ck_assert_int_eq(revtun_cluster_node_count(h, "C", NULL), 3);
  ck_assert_int_eq(revtun_mark_dead(h, fds[1], REVTUN_CLOSE_LOCAL_CLOSE, 20), REVTUN_OK);
  close(fds[1]);
  ck_assert_int_eq(revtun_cluster_node_count(h, "C", NULL), 2);
  for (size_t i = 0; i < 2; i++) {
    ck_assert_int_eq(revtun_cluster_member(h, "C", NULL, i, &m), REVTUN_OK);
    ck_assert_str_ne(m, "b");
  }
  ck_assert_int_eq(revtun_cluster_node_count(h, "nope", NULL), 0);
  ck_assert_int_eq(revtun_cluster_member(h, "nope", NULL, 0, &m), REVTUN_E_NOT_FOUND);
  ck_assert_int_eq(revtun_cluster_node_count(h, "", NULL), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_cluster_node_count(NULL, "C", NULL), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_cluster_member(h, "C", NULL, 0, NULL), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_cluster_member(h, NULL, NULL, 0, &m), REVTUN_E_INVAL);
  revtun_free(h);
  for (int i = 0; i < 3; i++)
    close(peers[i]);
}
END_TEST

START_TEST(membership_lives_while_a_handed_off_fd_lives) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int peer, fd = make_pair(&peer);
  ck_assert_int_eq(tu_register(h, fd, "node-a", "cluster-a", NULL, 0, 0), REVTUN_OK);
  ck_assert_int_eq(handoff(h, "node-a", NULL), fd);
  /* membership outlives the handoff (Envoy PR #41584): the cluster still
   * resolves to node-a */
  const char *n;
  ck_assert_int_eq(revtun_lookup_cluster(h, "cluster-a", NULL, &n), REVTUN_OK);
  ck_assert_str_eq(n, "node-a");
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel_acceptor.worker_0.total_clusters"), 1);
  ck_assert_int_eq(revtun_mark_dead(h, fd, REVTUN_CLOSE_LOCAL_CLOSE, 5), REVTUN_OK);
  ck_assert_int_eq(revtun_lookup_cluster(h, "cluster-a", NULL, &n), REVTUN_E_NOT_FOUND);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel_acceptor.worker_0.total_clusters"), 0);
  const struct tu_event *e = tu_last(&rec, REVTUN_EV_TUNNEL_CLOSED);
  ck_assert_int_eq(e->reason, REVTUN_CLOSE_LOCAL_CLOSE);
  ck_assert_int_eq(e->state, REVTUN_SOCK_IN_USE);
  ck_assert_ptr_nonnull(strstr(e->meta, "close_reason=local_close;"));
  revtun_free(h);
  close(fd), close(peer);
}
END_TEST

START_TEST(idle_socket_dies_and_others_remain) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int p1, p2;
  int a = make_pair(&p1), b = make_pair(&p2);
  ck_assert_int_eq(tu_register(h, a, "test-node", "test-cluster", NULL, 0, 0), REVTUN_OK);
  ck_assert_int_eq(tu_register(h, b, "test-node", "test-cluster", NULL, 0, 0), REVTUN_OK);
  ck_assert_int_eq(revtun_mark_dead(h, a, REVTUN_CLOSE_NONE, 3), REVTUN_OK);
  ck_assert_int_eq(rec.io_events[a], REVTUN_IO_REMOVE);
  char c;
  ck_assert_int_eq(recv(p1, &c, 1, 0), 0); /* the library closed the idle fd */
  ck_assert_int_eq(revtun_idle_count(h, "test-node", NULL), 1);
  const struct tu_event *e = tu_last(&rec, REVTUN_EV_TUNNEL_CLOSED);
  ck_assert_int_eq(e->fd, a);
  ck_assert_int_eq(e->reason, REVTUN_CLOSE_EXPLICIT_CLOSE);
  ck_assert_int_eq(e->state, REVTUN_SOCK_IDLE);
  ck_assert_uint_eq(e->time, 3);
  ck_assert_str_eq(tu_last(&rec, REVTUN_EV_REPORT_DISCONNECTED)->node_key, "test-node");
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel_acceptor.tunnel_closed.explicit_close"), 1);
  /* double close and unknown fds: no effect */
  ck_assert_int_eq(revtun_mark_dead(h, a, REVTUN_CLOSE_NONE, 3), REVTUN_E_NOT_FOUND);
  ck_assert_int_eq(revtun_mark_dead(h, 999, REVTUN_CLOSE_NONE, 3), REVTUN_E_NOT_FOUND);
  ck_assert_int_eq(revtun_mark_dead(h, -1, REVTUN_CLOSE_NONE, 3), REVTUN_E_NOT_FOUND);
  ck_assert_int_eq(revtun_mark_dead(h, 0, REVTUN_CLOSE_NONE, 3), REVTUN_E_NOT_FOUND);
  ck_assert_int_eq(revtun_mark_dead(h, b, 77, 3), REVTUN_E_INVAL);
  ck_assert_uint_eq(tu_count(&rec, REVTUN_EV_TUNNEL_CLOSED), 1);
  ck_assert_int_eq(handoff(h, "test-node", NULL), b);
  revtun_free(h);
  close(b), close(p1), close(p2);
}
END_TEST

START_TEST(last_socket_cleans_node_and_cluster) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int fds[3], peers[3];
  for (int i = 0; i < 3; i++) {
    fds[i] = make_pair(&peers[i]);
    ck_assert_int_eq(tu_register(h, fds[i], "test-node", "test-cluster", NULL, 0, 0), REVTUN_OK);
  }
  for (int i = 0; i < 3; i++) {
    const char *n;
    ck_assert_int_eq(revtun_lookup_cluster(h, "test-cluster", NULL, &n), REVTUN_OK);
    ck_assert_int_eq(revtun_mark_dead(h, fds[i], REVTUN_CLOSE_NONE, 1), REVTUN_OK);
    ck_assert_int_eq(revtun_idle_count(h, "test-node", NULL), 2 - i);
  }
  const char *n;
  ck_assert_int_eq(revtun_lookup_cluster(h, "test-cluster", NULL, &n), REVTUN_E_NOT_FOUND);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel_acceptor.worker_0.total_nodes"), 0);
  revtun_free(h);
  for (int i = 0; i < 3; i++)
    close(peers[i]);
}
END_TEST

START_TEST(reused_fd_number) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int peer, fd = make_pair(&peer);
  ck_assert_int_eq(tu_register(h, fd, "n", "c", NULL, 0, 0), REVTUN_OK);
  ck_assert_int_eq(handoff(h, "n", NULL), fd);
  /* the host closes its connection but forgets mark_dead; the number comes back */
  close(fd);
  close(peer);
  int peer2, fd2 = make_pair(&peer2);
  ck_assert_int_eq(fd2, fd);
  ck_assert_int_eq(tu_register(h, fd2, "n2", "c2", NULL, 0, 0), REVTUN_E_EXISTS);
  ck_assert(tu_fd_open(fd2)); /* still the caller's */
  ck_assert_int_eq(revtun_mark_dead(h, fd, REVTUN_CLOSE_LOCAL_CLOSE, 1), REVTUN_OK);
  ck_assert(tu_fd_open(fd2)); /* bookkeeping only: the new socket is untouched */
  ck_assert_int_eq(tu_register(h, fd2, "n2", "c2", NULL, 0, 0), REVTUN_OK);
  ck_assert_int_eq(handoff(h, "n2", NULL), fd2);
  revtun_free(h);
  close(fd2), close(peer2);
}
END_TEST

START_TEST(per_node_limit) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("limit2", &rec, 0);
  int fds[4], peers[4];
  for (int i = 0; i < 4; i++)
    fds[i] = make_pair(&peers[i]);
  ck_assert_int_eq(tu_register(h, fds[0], "n", "c", NULL, 0, 0), REVTUN_OK);
  ck_assert_int_eq(tu_register(h, fds[1], "n", "c", NULL, 0, 0), REVTUN_OK);
  ck_assert_int_eq(handoff(h, "n", NULL), fds[0]); /* handed-off sockets still count */
  ck_assert_int_eq(tu_register(h, fds[2], "n", "c", NULL, 0, 0), REVTUN_E_LIMIT);
  ck_assert(tu_fd_open(fds[2]));
  ck_assert_int_eq(tu_register(h, fds[3], "other", "c", NULL, 0, 0), REVTUN_OK);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel_acceptor.registration_rejected"), 1);
  ck_assert_int_eq(revtun_mark_dead(h, fds[0], REVTUN_CLOSE_REMOTE_CLOSE, 1), REVTUN_OK);
  ck_assert_int_eq(tu_register(h, fds[2], "n", "c", NULL, 0, 0), REVTUN_OK);
  revtun_free(h);
  close(fds[0]);
  for (int i = 0; i < 4; i++)
    close(peers[i]);
}
END_TEST

START_TEST(zero_limit_means_unlimited) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int peers[50];
  for (int i = 0; i < 50; i++)
    ck_assert_int_eq(tu_register(h, make_pair(&peers[i]), "n", "c", NULL, 0, 0), REVTUN_OK);
  ck_assert_int_eq(revtun_idle_count(h, "n", NULL), 50);
  revtun_free(h);
  for (int i = 0; i < 50; i++)
    close(peers[i]);
}
END_TEST

START_TEST(free_closes_idle_with_records) {
  tu_rec_init(&rec);
  int before = tu_open_fds();
  revtun_t *h = tu_new("empty", &rec, 0);
  int p1, p2, p3;
  int a = make_pair(&p1), b = make_pair(&p2), c = make_pair(&p3);
  ck_assert_int_eq(tu_register(h, a, "n", "c", NULL, 0, 0), REVTUN_OK);
  ck_assert_int_eq(tu_register(h, b, "n", "c", NULL, 0, 0), REVTUN_OK);
  ck_assert_int_eq(tu_register(h, c, "m", "c", NULL, 0, 0), REVTUN_OK);
  ck_assert_int_eq(handoff(h, "m", NULL), c);
  size_t closed_before = tu_count(&rec, REVTUN_EV_TUNNEL_CLOSED);
  revtun_free(h);
  ck_assert_uint_eq(tu_count(&rec, REVTUN_EV_TUNNEL_CLOSED) - closed_before, 3);
  ck_assert_uint_eq(tu_count(&rec, REVTUN_EV_REPORT_DISCONNECTED), 3);
  ck_assert_int_eq(tu_last(&rec, REVTUN_EV_TUNNEL_CLOSED)->reason, REVTUN_CLOSE_SHUTDOWN);
  ck_assert(!tu_fd_open(a));
  ck_assert(!tu_fd_open(b));
  ck_assert(tu_fd_open(c));           /* handed off: the host's */
  ck_assert_int_eq(rec.timer_ms, -1); /* timer cancelled */
  close(c), close(p1), close(p2), close(p3);
  ck_assert_int_eq(tu_open_fds(), before);
}
END_TEST

START_TEST(setup_record_fields_over_tcp) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof(sa);
  ck_assert_int_eq(bind(ls, (struct sockaddr *)&sa, sizeof(sa)), 0);
  ck_assert_int_eq(listen(ls, 1), 0);
  getsockname(ls, (struct sockaddr *)&sa, &sl);
  int cl = socket(AF_INET, SOCK_STREAM, 0);
  ck_assert_int_eq(connect(cl, (struct sockaddr *)&sa, sizeof(sa)), 0);
  int fd = accept(ls, NULL, NULL);
  revtun_reg_t *reg;
  ck_assert_int_eq(revtun_reg_new(h, &reg), REVTUN_OK);
  revtun_reg_set_ids(reg, "node-c", "cluster-c", "tenant-c");
  revtun_reg_set_initiator(reg, 1700000000123, "worker_2", "42");
  int tag;
  revtun_reg_set_sock_user(reg, &tag);
  ck_assert_int_eq(revtun_register_socket(h, fd, reg, 77), REVTUN_OK);
  revtun_reg_free(reg);
  const struct tu_event *e = tu_last(&rec, REVTUN_EV_TUNNEL_SETUP);
  ck_assert_str_eq(e->node, "node-c");
  ck_assert_str_eq(e->cluster, "cluster-c");
  ck_assert_str_eq(e->tenant, "tenant-c");
  ck_assert_str_eq(e->worker, "worker_0");
  ck_assert_str_eq(e->init_worker, "worker_2");
  ck_assert_str_eq(e->init_conn, "42");
  ck_assert_int_eq(e->initiation_time, 1700000000123);
  ck_assert_int_eq(e->fd, fd);
  ck_assert_uint_eq(e->time, 77);
  ck_assert_int_eq(e->state, REVTUN_SOCK_IDLE);
  ck_assert_ptr_eq(e->sock_user, &tag);
  char want[256];
  snprintf(want, sizeof(want),
           "event=tunnel_setup;node_id=node-c;cluster_id=cluster-c;tenant_id=tenant-c;"
           "worker=worker_0;socket_state=idle;fd=%d;initiator_worker_id=worker_2;"
           "initiator_connection_id=42;",
           fd);
  ck_assert_str_eq(e->meta, want);
  const struct tu_event *c = tu_last(&rec, REVTUN_EV_REPORT_CONNECTED);
  ck_assert_int_eq(c->initiation_time, 1700000000123);
  ck_assert_int_eq(c->fd, fd);
  close(cl);
  close(ls);
  revtun_free(h);
}
END_TEST

static void check_addrs(revtun_t *h, const revtun_event_t *ev, struct tu_rec *r) {
  (void)h;
  if (revtun_event_kind(ev) != REVTUN_EV_TUNNEL_SETUP)
    return;
  socklen_t ll, rl;
  const struct sockaddr *l = revtun_event_local_addr(ev, &ll);
  const struct sockaddr *rm = revtun_event_remote_addr(ev, &rl);
  int *ok = r->test_data;
  *ok = l && rm && l->sa_family == AF_INET && rm->sa_family == AF_INET &&
        ll == sizeof(struct sockaddr_in) &&
        ((const struct sockaddr_in *)l)->sin_port != ((const struct sockaddr_in *)rm)->sin_port;
}

START_TEST(addresses_in_records) {
  tu_rec_init(&rec);
  int ok = 0;
  rec.on_event = check_addrs;
  rec.test_data = &ok;
  revtun_t *h = tu_new("empty", &rec, 0);
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof(sa);
  bind(ls, (struct sockaddr *)&sa, sizeof(sa));
  listen(ls, 1);
  getsockname(ls, (struct sockaddr *)&sa, &sl);
  int cl = socket(AF_INET, SOCK_STREAM, 0);
  ck_assert_int_eq(connect(cl, (struct sockaddr *)&sa, sizeof(sa)), 0);
  int fd = accept(ls, NULL, NULL);
  ck_assert_int_eq(tu_register(h, fd, "n", "c", NULL, 0, 0), REVTUN_OK);
  ck_assert_int_eq(ok, 1);
  revtun_free(h);
  close(cl), close(ls);
}
END_TEST

START_TEST(detailed_stats_names) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("detailed_isolation", &rec, 0);
  int p1, p2, p3;
  int a = make_pair(&p1), b = make_pair(&p2), c = make_pair(&p3);
  ck_assert_int_eq(tu_register(h, a, "node1", "cluster1", "t1", 0, 0), REVTUN_OK);
  ck_assert_int_eq(tu_register(h, b, "node1", "cluster1", "t2", 0, 0), REVTUN_OK);
  ck_assert_int_eq(tu_register(h, c, "node2", "cluster1", "t2", 0, 0), REVTUN_OK);
  ck_assert_uint_eq(tu_stat(h, "rt.worker_0.total_nodes"), 3); /* scoped keys */
  ck_assert_uint_eq(tu_stat(h, "rt.worker_0.total_clusters"), 2);
  ck_assert_uint_eq(tu_stat(h, "rt.nodes.node1"), 2); /* unscoped id, shared by tenants */
  ck_assert_uint_eq(tu_stat(h, "rt.nodes.node2"), 1);
  ck_assert_uint_eq(tu_stat(h, "rt.clusters.cluster1"), 3);
  ck_assert_uint_eq(tu_stat(h, "rt.tenants.t1.nodes.node1"), 1);
  ck_assert_uint_eq(tu_stat(h, "rt.worker_0.node.node1"), 2);
  ck_assert_uint_eq(tu_stat(h, "rt.worker_0.cluster.cluster1"), 3);
  ck_assert_uint_eq(tu_stat(h, "rt.tenants.t2.nodes.node2"), 1);
  ck_assert_uint_eq(tu_stat(h, "rt.tenants.t2.clusters.cluster1"), 2);
  uint64_t v;
  ck_assert_int_eq(revtun_stats_get(h, "rt.tenants..nodes.node2", &v), REVTUN_E_NOT_FOUND);
  ck_assert_int_eq(revtun_mark_dead(h, a, REVTUN_CLOSE_NONE, 0), REVTUN_OK);
  ck_assert_uint_eq(tu_stat(h, "rt.nodes.node1"), 1);
  ck_assert_int_eq(revtun_stats_get(h, "rt.tenants.t1.nodes.node1", &v), REVTUN_E_NOT_FOUND);
  revtun_free(h);
  close(p1), close(p2), close(p3);
}
END_TEST

START_TEST(no_detailed_stats_by_default) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int p, a = make_pair(&p);
  ck_assert_int_eq(tu_register(h, a, "node1", "cluster1", NULL, 0, 0), REVTUN_OK);
  uint64_t v;
  ck_assert_int_eq(revtun_stats_get(h, "reverse_tunnel_acceptor.nodes.node1", &v),
                   REVTUN_E_NOT_FOUND);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel_acceptor.worker_0.idle_sockets"), 1);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel_acceptor.tunnel_setup"), 1);
  revtun_free(h);
  close(p);
}
END_TEST

static void act_in_callback(revtun_t *h, const revtun_event_t *ev, struct tu_rec *r) {
  int *state = r->test_data;
  if (revtun_event_kind(ev) != REVTUN_EV_TUNNEL_SETUP || state[0])
    return;
  state[0] = 1;
  /* forbidden: loop entry points */
  state[1] = revtun_tick(h, 1);
  state[2] = tu_register(h, state[5], "x", "y", NULL, 0, 1);
  /* allowed: handoff of the socket just set up */
  int fd;
  state[3] = revtun_handoff(h, "cb-node", NULL, 1, &fd, NULL);
  state[4] = fd;
  /* allowed and deferred: free */
  revtun_free(h);
}

START_TEST(reentrancy_rules) {
  tu_rec_init(&rec);
  int state[6] = {0};
  int p1, p2;
  int a = make_pair(&p1);
  state[5] = make_pair(&p2);
  rec.on_event = act_in_callback;
  rec.test_data = state;
  revtun_t *h = tu_new("empty", &rec, 0);
  ck_assert_int_eq(tu_register(h, a, "cb-node", "cb-cluster", NULL, 0, 0), REVTUN_OK);
  ck_assert_int_eq(state[1], REVTUN_E_RECURSIVE);
  ck_assert_int_eq(state[2], REVTUN_E_RECURSIVE);
  ck_assert_int_eq(state[3], REVTUN_OK);
  ck_assert_int_eq(state[4], a);
  ck_assert(tu_fd_open(state[5])); /* refused registration left the fd alone */
  /* the handle was freed when the outer call returned: the handed-off
   * socket got its closing record */
  ck_assert_int_eq(tu_last(&rec, REVTUN_EV_TUNNEL_CLOSED)->reason, REVTUN_CLOSE_SHUTDOWN);
  close(a), close(state[5]), close(p1), close(p2);
}
END_TEST

static int closed_fds[8], n_closed;
static void my_close(revtun_t *h, int fd, void *sock_user, void *user) {
  (void)h, (void)sock_user, (void)user;
  closed_fds[n_closed++] = fd;
  close(fd);
}

START_TEST(close_cb_replaces_close) {
  tu_rec_init(&rec);
  revtun_options_t *o;
  ck_assert_int_eq(revtun_options_new(&o), REVTUN_OK);
  tu_options(o, &rec);
  revtun_options_set_close_cb(o, my_close);
  revtun_t *h = tu_new_opts("empty", o, 0);
  revtun_options_free(o);
  int p, a = make_pair(&p);
  n_closed = 0;
  ck_assert_int_eq(tu_register(h, a, "n", "c", NULL, 0, 0), REVTUN_OK);
  ck_assert_int_eq(revtun_mark_dead(h, a, REVTUN_CLOSE_NONE, 0), REVTUN_OK);
  ck_assert_int_eq(n_closed, 1);
  ck_assert_int_eq(closed_fds[0], a);
  revtun_free(h);
  close(p);
}
END_TEST

START_TEST(io_callback_failure_rolls_back) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int p, a = make_pair(&p);
  rec.io_fail_fd = a;
  ck_assert_int_eq(tu_register(h, a, "n", "c", NULL, 0, 0), REVTUN_E_HOST);
  ck_assert(tu_fd_open(a));
  ck_assert_uint_eq(rec.n, 1); /* only server_initialized: no tunnel events */
  ck_assert_int_eq(rec.ev[0].kind, REVTUN_EV_REPORT_SERVER_INITIALIZED);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel_acceptor.worker_0.total_nodes"), 0);
  rec.io_fail_fd = -2;
  ck_assert_int_eq(tu_register(h, a, "n", "c", NULL, 0, 0), REVTUN_OK);
  revtun_free(h);
  close(p);
}
END_TEST

static int count_nodes(const char *node, const char *tenant, const char *cluster, size_t idle,
                       size_t live, void *user) {
  (void)tenant, (void)cluster;
  size_t *acc = user;
  acc[0]++;
  acc[1] += idle;
  acc[2] += live;
  if (strcmp(node, "n2") == 0 && strcmp(tenant, "t") == 0)
    acc[3]++;
  return 0;
}

static int count_clusters(const char *cluster, const char *tenant, size_t nodes, size_t idle,
                          size_t live, void *user) {
  (void)cluster, (void)tenant;
  size_t *acc = user;
  acc[0]++;
  acc[1] += nodes;
  acc[2] += idle;
  acc[3] += live;
  return 0;
}

START_TEST(introspection) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("isolation", &rec, 0);
  int p[3];
  ck_assert_int_eq(tu_register(h, make_pair(&p[0]), "n1", "c", "t", 0, 0), REVTUN_OK);
  ck_assert_int_eq(tu_register(h, make_pair(&p[1]), "n2", "c", "t", 0, 0), REVTUN_OK);
  int a = make_pair(&p[2]);
  ck_assert_int_eq(tu_register(h, a, "n2", "c", "t", 0, 0), REVTUN_OK);
  ck_assert_int_eq(handoff(h, "n2", "t") >= 0, 1);
  size_t nodes[4] = {0}, clusters[4] = {0};
  ck_assert_int_eq(revtun_foreach_node(h, count_nodes, nodes), REVTUN_OK);
  ck_assert_uint_eq(nodes[0], 2);
  ck_assert_uint_eq(nodes[1], 2);
  ck_assert_uint_eq(nodes[2], 3);
  ck_assert_uint_eq(nodes[3], 1);
  ck_assert_int_eq(revtun_foreach_cluster(h, count_clusters, clusters), REVTUN_OK);
  ck_assert_uint_eq(clusters[0], 1);
  ck_assert_uint_eq(clusters[1], 2);
  ck_assert_uint_eq(clusters[2], 2);
  ck_assert_uint_eq(clusters[3], 3);
  /* the walks of 0.2 see the same */
  size_t walked_nodes[4] = {0}, walked_clusters[4] = {0};
  ck_assert_int_eq(revtun_walk_nodes(h, count_nodes, walked_nodes), REVTUN_OK);
  ck_assert_int_eq(revtun_walk_clusters(h, count_clusters, walked_clusters), REVTUN_OK);
  ck_assert_mem_eq(walked_nodes, nodes, sizeof(nodes));
  ck_assert_mem_eq(walked_clusters, clusters, sizeof(clusters));
  ck_assert_int_eq(revtun_cluster_node_count(h, "c", "t"), 2);
  ck_assert_int_eq(revtun_walk_nodes(NULL, count_nodes, walked_nodes), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_walk_clusters(h, NULL, NULL), REVTUN_E_INVAL);
  revtun_free(h);
  for (int i = 0; i < 3; i++)
    close(p[i]);
}
END_TEST

START_TEST(node_in_two_clusters) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int p1, p2;
  int a = make_pair(&p1), b = make_pair(&p2);
  ck_assert_int_eq(tu_register(h, a, "n", "A", NULL, 0, 0), REVTUN_OK);
  ck_assert_int_eq(tu_register(h, b, "n", "B", NULL, 0, 0), REVTUN_OK);
  int fd;
  ck_assert_int_eq(revtun_handoff_by_cluster(h, "B", NULL, 0, &fd, NULL), REVTUN_OK);
  ck_assert_int_eq(fd, b); /* the socket registered for B, not the node's oldest */
  const char *c;
  ck_assert_int_eq(revtun_socket_identity(h, fd, NULL, &c, NULL), REVTUN_OK);
  ck_assert_str_eq(c, "B");
  ck_assert_int_eq(handoff(h, "n", NULL), a);
  revtun_free(h);
  close(a), close(b), close(p1), close(p2);
}
END_TEST

START_TEST(handoff_skips_dead_sockets) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int p1, p2, p3;
  int a = make_pair(&p1), b = make_pair(&p2), c = make_pair(&p3);
  ck_assert_int_eq(tu_register(h, a, "n", "c", NULL, 0, 0), REVTUN_OK);
  ck_assert_int_eq(tu_register(h, b, "n", "c", NULL, 0, 0), REVTUN_OK);
  ck_assert_int_eq(tu_register(h, c, "n", "c", NULL, 0, 0), REVTUN_OK);
  close(p1);          /* peer gone, the library has not read it yet */
  tu_write(p2, "RP"); /* pending echo bytes: alive, and not consumed */
  revtun_strip_t strip = 99;
  int fd;
  ck_assert_int_eq(revtun_handoff(h, "n", NULL, 5, &fd, &strip), REVTUN_OK);
  ck_assert_int_eq(fd, b);
  ck_assert_uint_eq(strip, 0);
  ck_assert_int_eq(tu_last(&rec, REVTUN_EV_TUNNEL_CLOSED)->fd, a);
  ck_assert_int_eq(tu_last(&rec, REVTUN_EV_TUNNEL_CLOSED)->reason, REVTUN_CLOSE_IDLE_PEER_CLOSE);
  char buf[4];
  ck_assert_int_eq(recv(b, buf, sizeof(buf), MSG_DONTWAIT), 2); /* bytes left for the host */
  close(p3); /* a reset-like error on the last one */
  ck_assert_int_eq(revtun_handoff_by_cluster(h, "c", NULL, 5, &fd, NULL), REVTUN_E_NOT_FOUND);
  ck_assert_uint_eq(tu_stat(h, "reverse_tunnel_acceptor.tunnel_closed.idle_peer_close"), 2);
  revtun_free(h);
  close(b), close(p2);
}
END_TEST

START_TEST(refused_registration_leaves_the_fd_as_given) {
  tu_rec_init(&rec);
  revtun_t *h = tu_new("empty", &rec, 0);
  int sv[2];
  ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0); /* blocking */
  rec.io_fail_fd = sv[0];
  ck_assert_int_eq(tu_register(h, sv[0], "n", "c", NULL, 0, 0), REVTUN_E_HOST);
  ck_assert_int_eq(fcntl(sv[0], F_GETFL) & O_NONBLOCK, 0);
  revtun_acceptor_t *acc;
  ck_assert_int_eq(revtun_acceptor_new(&acc, h, NULL, 0, NULL, 0), REVTUN_OK);
  ck_assert_int_eq(revtun_acceptor_accept(acc, sv[0], NULL, 0), REVTUN_E_HOST);
  ck_assert_int_eq(fcntl(sv[0], F_GETFL) & O_NONBLOCK, 0);
  rec.io_fail_fd = -2;
  ck_assert_int_eq(tu_register(h, sv[0], "n", "c", NULL, 0, 0), REVTUN_OK);
  ck_assert_int_ne(fcntl(sv[0], F_GETFL) & O_NONBLOCK, 0); /* the library's now */
  revtun_free(h);
  close(sv[1]);
}
END_TEST

static revtun_t *walk_handle;
static int walk_calls, walk_rc;
static int free_in_walk(const char *node, const char *tenant, const char *cluster, size_t idle,
                        size_t live, void *user) {
  (void)node, (void)tenant, (void)cluster, (void)idle, (void)live, (void)user;
  int fd, rc = revtun_handoff(walk_handle, "a", NULL, 1, &fd, NULL);
  if (walk_calls++ == 0)
    walk_rc = rc;           /* refused: walking (later calls: the handle is going away) */
  revtun_free(walk_handle); /* deferred to the end of the walk */
  return 0;
}

START_TEST(free_from_a_walk_and_from_the_timer) {
  tu_rec_init(&rec);
  walk_handle = tu_new("empty", &rec, 0);
  int p1, p2;
  ck_assert_int_eq(tu_register(walk_handle, make_pair(&p1), "a", "c", NULL, 0, 0), REVTUN_OK);
  ck_assert_int_eq(tu_register(walk_handle, make_pair(&p2), "b", "c", NULL, 0, 0), REVTUN_OK);
  walk_calls = 0;
  ck_assert_int_eq(revtun_foreach_node(walk_handle, free_in_walk, NULL), REVTUN_OK);
  ck_assert_int_eq(walk_calls, 2); /* the walk finished over live structures */
  ck_assert_int_eq(walk_rc, REVTUN_E_RECURSIVE);
  ck_assert_uint_eq(tu_count(&rec, REVTUN_EV_TUNNEL_CLOSED), 2); /* then the free ran */
  close(p1), close(p2);
}
END_TEST

/* The walks of 0.2 take a handle they may free: a callback's revtun_free
 * runs when the walk returns, for nodes, clusters and stats alike. */
static int free_in_cluster_walk(const char *cluster, const char *tenant, size_t nodes, size_t idle,
                                size_t live, void *user) {
  (void)cluster, (void)tenant, (void)nodes, (void)idle, (void)live, (void)user;
  /* a walk's callback is a library callback: the loop and registration are refused */
  ck_assert_int_eq(revtun_tick(walk_handle, 1), REVTUN_E_RECURSIVE);
  int sv[2];
  tu_socketpair(sv);
  ck_assert_int_eq(tu_register(walk_handle, sv[0], "x", "y", NULL, 0, 1), REVTUN_E_RECURSIVE);
  close(sv[0]), close(sv[1]);
  walk_calls++;
  revtun_free(walk_handle);
  return 0;
}

static int free_in_stat_walk(const char *name, int type, uint64_t value, void *user) {
  (void)name, (void)type, (void)value, (void)user;
  uint64_t v;
  /* reading the stats inside a walk runs no callback and changes nothing */
  ck_assert_int_eq(revtun_stats_get(walk_handle, "reverse_tunnel_acceptor.tunnel_setup", &v),
                   REVTUN_OK);
  ck_assert_uint_eq(v, 2);
  ck_assert_int_eq(revtun_reopen_logs(walk_handle), REVTUN_E_RECURSIVE);
  walk_calls++;
  revtun_free(walk_handle);
  return 1; /* stop after the first */
}

START_TEST(walks_may_free_the_handle) {
  for (int walk = 0; walk < 3; walk++) {
    tu_rec_init(&rec);
    walk_handle = tu_new("empty", &rec, 0);
    int p1, p2;
    ck_assert_int_eq(tu_register(walk_handle, make_pair(&p1), "a", "c1", NULL, 0, 0), REVTUN_OK);
    ck_assert_int_eq(tu_register(walk_handle, make_pair(&p2), "b", "c2", NULL, 0, 0), REVTUN_OK);
    walk_calls = 0;
    int rc = walk == 0   ? revtun_walk_nodes(walk_handle, free_in_walk, NULL)
             : walk == 1 ? revtun_walk_clusters(walk_handle, free_in_cluster_walk, NULL)
                         : revtun_walk_stats(walk_handle, free_in_stat_walk, NULL);
    ck_assert_int_eq(rc, REVTUN_OK);
    ck_assert_int_eq(walk_calls, walk == 2 ? 1 : 2); /* the walk finished over live structures */
    ck_assert_uint_eq(tu_count(&rec, REVTUN_EV_TUNNEL_CLOSED), 2); /* then the free ran */
    close(p1), close(p2);
  }
}
END_TEST

static int free_from_timer(revtun_t *h, int64_t ms, void *user) {
  (void)ms, (void)user;
  revtun_free(h);
  return 0;
}

static void free_on_init(revtun_t *h, const revtun_event_t *ev, void *user) {
  (void)user;
  if (revtun_event_kind(ev) == REVTUN_EV_REPORT_SERVER_INITIALIZED)
    revtun_free(h);
}

START_TEST(free_from_timer_and_init_callbacks) {
  revtun_options_t *o;
  ck_assert_int_eq(revtun_options_new(&o), REVTUN_OK);
  revtun_options_set_timer_cb(o, free_from_timer);
  revtun_t *h = tu_new_opts("empty", o, 0);
  int p;
  int fd = make_pair(&p);
  /* arming the timer for the new socket frees the handle at the end of the call */
  ck_assert_int_eq(tu_register(h, fd, "n", "c", NULL, 0, 0), REVTUN_OK);
  ck_assert(!tu_fd_open(fd)); /* closed by the free */
  close(p);
  revtun_options_set_timer_cb(o, NULL);
  revtun_options_set_reporter_cb(o, free_on_init);
  h = (revtun_t *)&h;
  char err[128];
  ck_assert_int_eq(revtun_new(&h, NULL, 0, o, 0, err, sizeof(err)), REVTUN_E_STATE);
  ck_assert_ptr_null(h);
  revtun_options_free(o);
}
END_TEST

int main(void) {
  Suite *s = suite_create("pool");
  TCase *tc = tcase_create("pool");
  tcase_add_test(tc, fifo_handoff_on_one_node);
  tcase_add_test(tc, nodes_are_independent);
  tcase_add_test(tc, empty_ids_are_errors_and_the_caller_keeps_the_fd);
  tcase_add_test(tc, colon_rejected_only_with_isolation);
  tcase_add_test(tc, tenant_scoped_keys);
  tcase_add_test(tc, cluster_round_robin);
  tcase_add_test(tc, cluster_queries_leave_the_round_robin_alone);
  tcase_add_test(tc, membership_lives_while_a_handed_off_fd_lives);
  tcase_add_test(tc, idle_socket_dies_and_others_remain);
  tcase_add_test(tc, last_socket_cleans_node_and_cluster);
  tcase_add_test(tc, reused_fd_number);
  tcase_add_test(tc, per_node_limit);
  tcase_add_test(tc, zero_limit_means_unlimited);
  tcase_add_test(tc, free_closes_idle_with_records);
  tcase_add_test(tc, setup_record_fields_over_tcp);
  tcase_add_test(tc, addresses_in_records);
  tcase_add_test(tc, detailed_stats_names);
  tcase_add_test(tc, no_detailed_stats_by_default);
  tcase_add_test(tc, reentrancy_rules);
  tcase_add_test(tc, close_cb_replaces_close);
  tcase_add_test(tc, io_callback_failure_rolls_back);
  tcase_add_test(tc, introspection);
  tcase_add_test(tc, node_in_two_clusters);
  tcase_add_test(tc, handoff_skips_dead_sockets);
  tcase_add_test(tc, refused_registration_leaves_the_fd_as_given);
  tcase_add_test(tc, free_from_a_walk_and_from_the_timer);
  tcase_add_test(tc, walks_may_free_the_handle);
  tcase_add_test(tc, free_from_timer_and_init_callbacks);
  suite_add_tcase(s, tc);
  return tu_run(s);
}
