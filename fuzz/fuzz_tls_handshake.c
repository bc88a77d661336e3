/* libFuzzer harness: the reverse-tunnel handshake fed through the TLS
 * transport.
 *
 * A real acceptor runs with the OpenSSL transport on one end of a socket
 * pair. On the other end a TLS client drives its session over memory BIOs,
 * so the harness moves every byte itself: it completes the TLS handshake,
 * then sends the input as application data in records whose sizes the first
 * byte picks, so the handshake parser sees the request split at record
 * boundaries it does not choose. Whatever the acceptor does, it ends with one
 * answer inside the session or a registered tunnel, never both; the parked
 * tunnel is a live pool socket; and nothing leaks. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <revtun/openssl.h>
#include <revtun/revtun.h>
#include <revtun/transport.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static SSL_CTX *server_ctx, *client_ctx;
static revtun_openssl_t *tls;

/* A throwaway self-signed EC certificate, made once in memory. */
static void setup(void) {
  EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  X509 *cert = X509_new();
  if (!key || !cert)
    abort();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
  X509_set_pubkey(cert, key);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC,
                             (const unsigned char *)"upstream", -1, -1, 0);
  X509_set_issuer_name(cert, X509_get_subject_name(cert));
  if (!X509_sign(cert, key, EVP_sha256()))
    abort();
  server_ctx = SSL_CTX_new(TLS_server_method());
  client_ctx = SSL_CTX_new(TLS_client_method());
  if (!server_ctx || !client_ctx || SSL_CTX_use_certificate(server_ctx, cert) != 1 ||
      SSL_CTX_use_PrivateKey(server_ctx, key) != 1 || revtun_openssl_new(&tls, server_ctx))
    abort();
  SSL_CTX_set_num_tickets(server_ctx, 0);
  X509_free(cert);
  EVP_PKEY_free(key);
}

struct client {
  SSL *ssl;
  BIO *in, *out; /* in: bytes from the acceptor; out: bytes for it */
  int fd;
};

/* Moves what the client wrote to the socket and what the socket holds to
 * the client. */
static void shuttle(struct client *c) {
  static char buf[16384];
  int n;
  while ((n = BIO_read(c->out, buf, sizeof(buf))) > 0)
    if (send(c->fd, buf, (size_t)n, MSG_NOSIGNAL) != n)
      break;
  ssize_t r;
  while ((r = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
    BIO_write(c->in, buf, (int)r);
}

static int tunnels;

static void on_event(revtun_t *h, const revtun_event_t *ev, void *user) {
  (void)h, (void)user;
  if (revtun_event_kind(ev) == REVTUN_EV_TUNNEL_SETUP)
    tunnels++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!tls)
    setup();
  if (size < 1)
    return 0;
  size_t record = (size_t)data[0] % 64 + 1;
  data++, size--;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
    return 0;
  int big = 1 << 20;
  setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
  fcntl(sv[1], F_SETFL, O_NONBLOCK);
  revtun_options_t *o;
  if (revtun_options_new(&o))
    abort();
  revtun_options_set_access_log_cb(o, on_event);
  revtun_t *h;
  if (revtun_new(&h, NULL, 0, o, 0, NULL, 0))
    abort();
  revtun_options_free(o);
  revtun_acceptor_t *acc;
  if (revtun_acceptor_new(&acc, h, NULL, 0, NULL, 0) ||
      revtun_acceptor_set_transport(acc, revtun_openssl_transport(tls)) ||
      revtun_acceptor_accept(acc, sv[0], NULL, 1))
    abort();
  tunnels = 0;

  struct client c = {SSL_new(client_ctx), BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()), sv[1]};
  if (!c.ssl || !c.in || !c.out)
    abort();
  SSL_set_bio(c.ssl, c.in, c.out);
  SSL_set_connect_state(c.ssl);
  int up = 0;
  for (int i = 0; i < 16 && !up; i++) {
    up = SSL_do_handshake(c.ssl) == 1;
    shuttle(&c);
    revtun_process_io(h, sv[0], REVTUN_IO_READ | REVTUN_IO_WRITE, 2);
    shuttle(&c);
  }
  if (!up) /* the acceptor's TLS handshake with a plain client must succeed */
    __builtin_trap();
  for (size_t off = 0; off < size && revtun_acceptor_pending(acc); off += record) {
    size_t n = size - off < record ? size - off : record;
    if (SSL_write(c.ssl, data + off, (int)n) != (int)n)
      break;
    shuttle(&c);
    revtun_process_io(h, sv[0], REVTUN_IO_READ | REVTUN_IO_WRITE, 2);
    shuttle(&c);
  }
  char answer[2048];
  int got = SSL_read(c.ssl, answer, (int)sizeof(answer) - 1);
  if (got > 0) {
    answer[got] = '\0';
    int ok = strncmp(answer, "HTTP/1.1 200 OK\r\n", 17) == 0;
    if (strncmp(answer, "HTTP/1.1 ", 9) != 0 || ok != (tunnels == 1) || tunnels > 1)
      __builtin_trap(); /* an answer is HTTP, and a 200 always means a tunnel */
    if (ok && revtun_socket_state(h, sv[0]) != REVTUN_SOCK_IDLE)
      __builtin_trap(); /* the parked tunnel is a live pool socket */
  } else if (tunnels) {
    __builtin_trap();
  }
  ERR_clear_error();
  SSL_free(c.ssl);
  revtun_tick(h, 1000000); /* timeouts and lingering connections end */
  revtun_free(h);
  close(sv[1]);
  return 0;
}
