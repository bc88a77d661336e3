/* bench_tls_handshake: reverse-tunnel handshakes over TLS completed per
 * second on loopback, through the library's acceptor with the OpenSSL
 * transport, against the floor of a bare OpenSSL server that accepts, runs
 * the TLS handshake, writes the same 200 inside the session and closes
 * (target: at least 0.8x the floor).
 *
 * A forked client keeps CONCURRENCY connections in flight: connect, TLS
 * handshake, send the exact Envoy handshake request inside the session, read
 * until the whole 200 is in, close, start the next. Both servers use the same
 * SSL_CTX settings (revtun_openssl_server_ctx: TLS 1.3 here, P-256 key, no
 * tickets); the same client runs against both, alternately, for several
 * rounds; the median of the per-round ratios is reported.
 *
 *   library server: poll(2) loop, every accepted fd to revtun_acceptor_accept
 *                   with the OpenSSL transport; each tunnel is closed again
 *                   from its tunnel_setup record so the pool does not grow;
 *   floor server:   accept, SSL handshake, write the 200, quiet close; it does
 *                   not even read the request. */
#define _GNU_SOURCE /* accept4 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include <revtun/openssl.h>
#include <revtun/revtun.h>
#include <revtun/transport.h>

#define CONCURRENCY 16
#define PER_ROUND 1500
#define ROUNDS 5
#define MAX_FDS 4096

static const char REQUEST[] = "GET /reverse_connections/request HTTP/1.1\r\n"
                              "host: 127.0.0.1:1\r\n"
                              "x-envoy-reverse-tunnel-node-id: bench-node\r\n"
                              "x-envoy-reverse-tunnel-cluster-id: bench-cluster\r\n"
                              "x-envoy-reverse-tunnel-tenant-id: bench\r\n"
                              "content-length: 0\r\n\r\n";
static const char ANSWER[] = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static revtun_time_ms_t now_ms(void) { return (revtun_time_ms_t)(now_s() * 1000.0); }

static int listener(struct sockaddr_in *sa) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sa->sin_family = AF_INET;
  sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa->sin_port = 0;
  socklen_t sl = sizeof(*sa);
  if (bind(fd, (struct sockaddr *)sa, sizeof(*sa)) || listen(fd, 1024) ||
      getsockname(fd, (struct sockaddr *)sa, &sl)) {
    perror("listen");
    exit(1);
  }
  return fd;
}

/* A throwaway self-signed certificate and key, as PEM files in dir. */
static void make_identity(const char *dir, char *cert_path, char *key_path) {
  EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  X509 *c = X509_new();
  if (!key || !c)
    exit(1);
  X509_set_version(c, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(c), 1);
  X509_gmtime_adj(X509_getm_notBefore(c), -60);
  X509_gmtime_adj(X509_getm_notAfter(c), 86400);
  X509_set_pubkey(c, key);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(c), "CN", MBSTRING_ASC,
                             (const unsigned char *)"upstream", -1, -1, 0);
  X509_set_issuer_name(c, X509_get_subject_name(c));
  X509_sign(c, key, EVP_sha256());
  sprintf(cert_path, "%s/cert.pem", dir);
  sprintf(key_path, "%s/key.pem", dir);
  FILE *f = fopen(cert_path, "w"), *k = fopen(key_path, "w");
  if (!f || !k || !PEM_write_X509(f, c) || !PEM_write_PrivateKey(k, key, NULL, NULL, 0, NULL, NULL))
    exit(1);
  fclose(f);
  fclose(k);
  X509_free(c);
  EVP_PKEY_free(key);
}

/* ------------------------------------------------------------ the client */

struct conn {
  int fd;
  SSL *ssl;
  int state; /* 0 handshake, 1 send, 2 read */
  size_t sent, got;
};

static SSL_CTX *client_ctx;

static void start(struct conn *c, const struct sockaddr_in *sa) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) && errno != EINPROGRESS) {
    perror("connect");
    exit(1);
  }
  *c = (struct conn){fd, SSL_new(client_ctx), 0, 0, 0};
  SSL_set_fd(c->ssl, fd);
  SSL_set_connect_state(c->ssl);
}

static void finish(struct conn *c) {
  SSL_set_quiet_shutdown(c->ssl, 1);
  SSL_free(c->ssl);
  close(c->fd);
  ERR_clear_error();
}

/* Advances one connection; 1 when its answer is in, -1 when it failed. */
static int step(struct conn *c, short *events) {
  for (;;) {
    int r;
    if (c->state == 0) {
      r = SSL_do_handshake(c->ssl);
      if (r == 1) {
        c->state = 1;
        continue;
      }
    } else if (c->state == 1) {
      r = SSL_write(c->ssl, REQUEST + c->sent, (int)(sizeof(REQUEST) - 1 - c->sent));
      if (r > 0 && (c->sent += (size_t)r) == sizeof(REQUEST) - 1) {
        c->state = 2;
        continue;
      }
      if (r > 0)
        continue;
    } else {
      char buf[256];
      r = SSL_read(c->ssl, buf, sizeof(buf));
      if (r > 0 && (c->got += (size_t)r) >= sizeof(ANSWER) - 1)
        return 1;
      if (r > 0)
        continue;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
      *events = POLLIN;
    else if (e == SSL_ERROR_WANT_WRITE)
      *events = POLLOUT;
    else
      return -1;
    return 0;
  }
}

/* Completes `total` TLS handshakes with CONCURRENCY in flight; seconds. */
static double run_client(const struct sockaddr_in *sa, int total) {
  struct conn c[CONCURRENCY];
  struct pollfd p[CONCURRENCY];
  int done = 0;
  double t0 = now_s();
  for (int i = 0; i < CONCURRENCY; i++) {
    start(&c[i], sa);
    p[i] = (struct pollfd){c[i].fd, POLLOUT, 0};
  }
  while (done < total) {
    if (poll(p, CONCURRENCY, 5000) <= 0) {
      fprintf(stderr, "client stalled\n");
      exit(1);
    }
    for (int i = 0; i < CONCURRENCY; i++) {
      if (!p[i].revents)
        continue;
      int r = step(&c[i], &p[i].events);
      if (r == 0)
        continue;
      done += r > 0;
      finish(&c[i]);
      start(&c[i], sa);
      p[i] = (struct pollfd){c[i].fd, POLLOUT, 0};
    }
  }
  double dt = now_s() - t0;
  for (int i = 0; i < CONCURRENCY; i++)
    finish(&c[i]);
  return dt;
}

/* ------------------------------------------------------------ the servers */

static volatile sig_atomic_t stop;
static void on_term(int sig) {
  (void)sig;
  stop = 1;
}

static SSL_CTX *server_ctx;
static struct pollfd fds[MAX_FDS];
static nfds_t nfds = 1;

static void floor_server(int lfd) {
  static SSL *ssl_of[65536];
  fds[0] = (struct pollfd){lfd, POLLIN, 0};
  while (!stop) {
    if (poll(fds, nfds, 100) <= 0)
      continue;
    for (nfds_t i = 1; i < nfds; i++) {
      if (!fds[i].revents)
        continue;
      int fd = fds[i].fd;
      SSL *s = ssl_of[fd];
      int r = SSL_do_handshake(s);
      int e = r == 1 ? 0 : SSL_get_error(s, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        fds[i].events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        continue;
      }
      if (r == 1)
        SSL_write(s, ANSWER, sizeof(ANSWER) - 1);
      SSL_set_quiet_shutdown(s, 1);
      SSL_free(s);
      ERR_clear_error();
      close(fd);
      fds[i--] = fds[--nfds];
    }
    if (fds[0].revents) {
      int fd;
      while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0 && nfds < MAX_FDS) {
        SSL *s = SSL_new(server_ctx);
        SSL_set_fd(s, fd);
        SSL_set_accept_state(s);
        ssl_of[fd] = s;
        fds[nfds++] = (struct pollfd){fd, POLLIN, 0};
      }
    }
  }
}

static int on_io(revtun_t *h, int fd, int events, void *sock_user, void *user) {
  (void)h, (void)sock_user, (void)user;
  nfds_t i = 1;
  while (i < nfds && fds[i].fd != fd)
    i++;
  if (events & REVTUN_IO_REMOVE) {
    if (i < nfds)
      fds[i] = fds[--nfds];
    return 0;
  }
  if (i == nfds) {
    if (nfds == MAX_FDS)
      return -1;
    nfds++;
  }
  fds[i] = (struct pollfd){fd,
                           (short)(((events & REVTUN_IO_READ) ? POLLIN : 0) |
                                   ((events & REVTUN_IO_WRITE) ? POLLOUT : 0)),
                           0};
  return 0;
}

/* A real proxy keeps the tunnel; here it is closed again at once. */
static void on_record(revtun_t *h, const revtun_event_t *ev, void *user) {
  (void)user;
  if (revtun_event_kind(ev) == REVTUN_EV_TUNNEL_SETUP)
    revtun_mark_dead(h, revtun_event_fd(ev), REVTUN_CLOSE_EXPLICIT_CLOSE, revtun_event_time_ms(ev));
}

static void library_server(int lfd) {
  revtun_options_t *o;
  revtun_t *h;
  revtun_acceptor_t *acc;
  revtun_openssl_t *tls;
  if (revtun_options_new(&o) || revtun_options_set_io_cb(o, on_io) ||
      revtun_options_set_access_log_cb(o, on_record) ||
      revtun_new(&h, NULL, 0, o, now_ms(), NULL, 0) ||
      revtun_acceptor_new(&acc, h, NULL, 0, NULL, 0) || revtun_openssl_new(&tls, server_ctx) ||
      revtun_acceptor_set_transport(acc, revtun_openssl_transport(tls)))
    exit(1);
  revtun_options_free(o);
  fds[0] = (struct pollfd){lfd, POLLIN, 0};
  static revtun_io_event_t ready[MAX_FDS];
  while (!stop) {
    if (poll(fds, nfds, 100) <= 0)
      continue;
    revtun_time_ms_t now = now_ms();
    size_t n = 0;
    for (nfds_t i = 1; i < nfds; i++)
      if (fds[i].revents)
        ready[n++] = (revtun_io_event_t){
            fds[i].fd, ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) ? REVTUN_IO_READ : 0) |
                           ((fds[i].revents & POLLOUT) ? REVTUN_IO_WRITE : 0)};
    if (fds[0].revents) {
      int fd;
      while ((fd = accept(lfd, NULL, NULL)) >= 0)
        if (revtun_acceptor_accept(acc, fd, NULL, now) != REVTUN_OK)
          close(fd);
    }
    revtun_process_io_batch(h, ready, n, now);
  }
  uint64_t accepted = 0;
  revtun_stats_get(h, "reverse_tunnel.handshake.accepted", &accepted);
  fprintf(stderr, "  library server: %llu handshakes accepted\n", (unsigned long long)accepted);
  revtun_free(h);
  revtun_openssl_free(tls);
}

static pid_t serve(void (*fn)(int), struct sockaddr_in *sa) {
  int lfd = listener(sa);
  pid_t pid = fork();
  if (pid == 0) {
    signal(SIGTERM, on_term);
    fn(lfd);
    _exit(0);
  }
  close(lfd);
  return pid;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  char dir[] = "/tmp/revtun-bench-tls-XXXXXX", cert[256], key[256], err[256];
  if (!mkdtemp(dir))
    return 1;
  make_identity(dir, cert, key);
  if (revtun_openssl_server_ctx(&server_ctx, cert, key, NULL, NULL, err, sizeof(err))) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  unlink(cert);
  unlink(key);
  rmdir(dir);
  client_ctx = SSL_CTX_new(TLS_client_method());
  struct sockaddr_in lib_sa, floor_sa;
  pid_t lib = serve(library_server, &lib_sa), flo = serve(floor_server, &floor_sa);
  run_client(&lib_sa, 200); /* warm-up */
  run_client(&floor_sa, 200);
  double ratios[ROUNDS], lib_rate[ROUNDS], floor_rate[ROUNDS];
  for (int r = 0; r < ROUNDS; r++) {
    double tl, tf;
    if (r % 2) { /* alternate the order so drift in the machine hits both alike */
      tf = run_client(&floor_sa, PER_ROUND);
      tl = run_client(&lib_sa, PER_ROUND);
    } else {
      tl = run_client(&lib_sa, PER_ROUND);
      tf = run_client(&floor_sa, PER_ROUND);
    }
    lib_rate[r] = PER_ROUND / tl;
    floor_rate[r] = PER_ROUND / tf;
    ratios[r] = lib_rate[r] / floor_rate[r];
    printf("  round %d: library %.0f/s, floor %.0f/s, ratio %.3f\n", r + 1, lib_rate[r],
           floor_rate[r], ratios[r]);
  }
  kill(lib, SIGTERM);
  kill(flo, SIGTERM);
  waitpid(lib, NULL, 0);
  waitpid(flo, NULL, 0);
  qsort(ratios, ROUNDS, sizeof(double), cmp);
  qsort(lib_rate, ROUNDS, sizeof(double), cmp);
  qsort(floor_rate, ROUNDS, sizeof(double), cmp);
  double median = ratios[ROUNDS / 2];
  printf("TLS handshakes/s (median of %d rounds of %d, %d in flight): library %.0f, "
         "OpenSSL accept+handshake+write+close floor %.0f\n",
         ROUNDS, PER_ROUND, CONCURRENCY, lib_rate[ROUNDS / 2], floor_rate[ROUNDS / 2]);
  printf("RESULT|tls_handshake|TLS handshakes/s library/floor|%.3f|x|>= 0.8|%s\n", median,
         median >= 0.8 ? "within" : "under");
  SSL_CTX_free(client_ctx);
  SSL_CTX_free(server_ctx);
  return 0;
}
