/* After the handoff: the host speaks TLS as the client on the handed-off fd.
 *
 * The agent may still echo an RPING the pool sent just before the handoff;
 * those 5-byte echoes arrive on the raw stream ahead of the agent's first TLS
 * record, below the session. A BIO between OpenSSL and the socket strips them
 * with revtun_rping_strip() before OpenSSL sees a byte (as Envoy strips them
 * on its TLS read path), and a verify callback insists that the agent's
 * certificate names the node the tunnel was handed off for. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "openssl_int.h"

#define READ_CHUNK 2048u
#define FLOOD_BYTES 65536u /* echoes in one read call: a keepalive flood */

/* ---------------------------------------------------------- the strip BIO */

struct strip_bio {
  int fd;
  revtun_strip_t strip;
  uint8_t pend[8]; /* application bytes the caller had no room for (at most 4) */
  size_t npend, pend_off;
};

/* ------------------------------------------------------- node verification */

struct expect {
  char *node;
  size_t len;
  int flags;
};

static void free_expect(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                        void *argp) {
  (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
  struct expect *e = ptr;
  if (e)
    free(e->node);
  free(e);
}

static BIO_METHOD *strip_method;
static pthread_once_t strip_once = PTHREAD_ONCE_INIT;
static int ex_index = -1; /* SSL ex_data: the expected node */

static int bio_create(BIO *b) {
  BIO_set_init(b, 0);
  BIO_set_data(b, NULL);
  return 1;
}

static int bio_destroy(BIO *b) {
  free(BIO_get_data(b)); /* the fd is the caller's */
  BIO_set_data(b, NULL);
  return 1;
}

static int bio_read(BIO *b, char *out, int outl) {
  struct strip_bio *s = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (outl <= 0)
    return 0;
  size_t room = (size_t)outl;
  if (s->npend) {
    size_t n = s->npend < room ? s->npend : room;
    memcpy(out, s->pend + s->pend_off, n);
    s->npend -= n;
    s->pend_off += n;
    return (int)n;
  }
  if (!revtun_rping_strip_active(s->strip)) { /* past the first application byte */
    ssize_t r = recv(s->fd, out, room, 0);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
      BIO_set_retry_read(b);
    return (int)r;
  }
  size_t stripped = 0;
  for (;;) {
    uint8_t in[READ_CHUNK], clean[READ_CHUNK + 4];
    size_t want = room < READ_CHUNK ? room : READ_CHUNK;
    ssize_t r = recv(s->fd, in, want, 0);
    if (r <= 0) {
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_read(b);
      return (int)r;
    }
    size_t n = 0, pings = 0;
    if (revtun_rping_strip(&s->strip, in, (size_t)r, clean, &n, &pings) != REVTUN_OK ||
        (stripped += pings * 5) >= FLOOD_BYTES) {
      errno = ECONNRESET; /* a keepalive flood ahead of the session */
      return -1;
    }
    if (!n)
      continue; /* only echoes: read on */
    size_t give = n < room ? n : room;
    memcpy(out, clean, give);
    s->npend = n - give; /* a held partial that turned out to be data: <= 4 */
    s->pend_off = 0;
    memcpy(s->pend, clean + give, s->npend);
    return (int)give;
  }
}

static int bio_write(BIO *b, const char *in, int inl) {
  struct strip_bio *s = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  ssize_t r = send(s->fd, in, (size_t)inl, MSG_NOSIGNAL);
  if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    BIO_set_retry_write(b);
  return (int)r;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  (void)num;
  struct strip_bio *s = BIO_get_data(b);
  switch (cmd) {
  case BIO_CTRL_FLUSH: return 1;
  case BIO_C_GET_FD:
    if (ptr)
      *(int *)ptr = s->fd;
    return s->fd;
  case BIO_CTRL_PENDING: return (long)s->npend;
  default: return 0;
  }
}

static void make_method(void) {
  strip_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "revtun rping strip");
  if (strip_method) {
    BIO_meth_set_create(strip_method, bio_create);
    BIO_meth_set_destroy(strip_method, bio_destroy);
    BIO_meth_set_read(strip_method, bio_read);
    BIO_meth_set_write(strip_method, bio_write);
    BIO_meth_set_ctrl(strip_method, bio_ctrl);
  }
  ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, free_expect);
}

static int verify_node(int ok, X509_STORE_CTX *store) {
  if (!ok || X509_STORE_CTX_get_error_depth(store) != 0)
    return ok;
  SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
  const struct expect *e = ssl ? SSL_get_ex_data(ssl, ex_index) : NULL;
  if (!e || !e->flags)
    return ok;
  if (rto_cert_names(X509_STORE_CTX_get_current_cert(store), e->node, e->len, e->flags))
    return 1;
  X509_STORE_CTX_set_error(store, X509_V_ERR_HOSTNAME_MISMATCH);
  return 0;
}

/* ------------------------------------------------------------ the object */

int revtun_openssl_handoff_new(SSL **out, SSL_CTX *ctx, int fd, revtun_strip_t strip,
                               const char *node_id, int verify, const char *sni, char *err,
                               size_t errlen) {
  if (!out || !ctx || fd < 0 || !node_id || !*node_id || strnlen(node_id, 1025) > 1024) {
    if (err && errlen)
      snprintf(err, errlen, "need out, a context, an fd and a node id of 1 to 1024 bytes");
    return REVTUN_E_INVAL;
  }
  *out = NULL;
  pthread_once(&strip_once, make_method);
  if (!strip_method || ex_index < 0)
    return rto_fail(REVTUN_E_NOMEM, err, errlen, "cannot create the BIO method", NULL);
  if (verify < 0)
    verify = REVTUN_OPENSSL_NODE_DNS_SAN | REVTUN_OPENSSL_NODE_URI_SAN;
  ERR_clear_error();
  SSL *ssl = SSL_new(ctx);
  BIO *bio = ssl ? BIO_new(strip_method) : NULL;
  struct strip_bio *s = bio ? calloc(1, sizeof(*s)) : NULL;
  struct expect *e = s ? calloc(1, sizeof(*e)) : NULL;
  if (!e || !(e->node = strdup(node_id))) {
    free(e);
    free(s);
    BIO_free(bio);
    SSL_free(ssl);
    return rto_fail(REVTUN_E_NOMEM, err, errlen, "out of memory", NULL);
  }
  s->fd = fd;
  s->strip = strip;
  BIO_set_data(bio, s);
  BIO_set_init(bio, 1);
  SSL_set_bio(ssl, bio, bio);
  e->len = strlen(node_id);
  e->flags = verify;
  SSL_set_ex_data(ssl, ex_index, e);
  SSL_set_verify(ssl, SSL_VERIFY_PEER, verify_node);
  if (sni && SSL_set_tlsext_host_name(ssl, sni) != 1) {
    SSL_free(ssl); /* frees the BIO and, through ex_data, the expectation */
    return rto_fail(REVTUN_E_INVAL, err, errlen, "bad server name", sni);
  }
  SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_set_connect_state(ssl);
  *out = ssl;
  return REVTUN_OK;
}
