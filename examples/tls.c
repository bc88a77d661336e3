/* TLS for the example programs with OpenSSL (tls.h). */
#define _POSIX_C_SOURCE 200809L

#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#ifdef EXAMPLES_TLS

#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/x509_vfy.h>

int tls_available(void) { return 1; }

/* Why the last call on ssl (or the context setup, ssl NULL) failed. */
static void tls_why(SSL *ssl, const char *what, char *err, size_t errlen) {
  long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
  unsigned long e = ERR_peek_error();
  char reason[256];

  if (vr != X509_V_OK)
    snprintf(reason, sizeof(reason), "certificate verify failed: %s",
             X509_verify_cert_error_string(vr));
  else if (e)
    ERR_error_string_n(e, reason, sizeof(reason));
  else
    snprintf(reason, sizeof(reason), "%s", errno ? strerror(errno) : "connection closed");
  ERR_clear_error();
  if (err && errlen)
    snprintf(err, errlen, "%s: %s", what, reason);
}

static ssize_t filter_read(void *ctx, void *buf, size_t len) {
  SSL *ssl = ctx;
  size_t n = 0;
  int e;

  ERR_clear_error();
  if (SSL_read_ex(ssl, buf, len, &n) == 1)
    return (ssize_t)n;
  e = SSL_get_error(ssl, 0);
  ERR_clear_error();
  if (e == SSL_ERROR_ZERO_RETURN)
    return 0;
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    errno = EAGAIN;
    return -1;
  }
  if (e == SSL_ERROR_SYSCALL && errno == 0)
    return 0; /* EOF without close_notify: a truncation, reported as EOF */
  if (e != SSL_ERROR_SYSCALL)
    errno = EPROTO;
  return -1;
}

/* One full record's worth at a time from the front of out: HTTP/2 frames
 * sit in many small chains, and a record (and a send) per chain would cost
 * a syscall per frame, so up to 16 KiB are made contiguous first. */
static int filter_write(void *ctx, struct evbuffer *out) {
  SSL *ssl = ctx;
  size_t len = evbuffer_get_length(out), n = 0;
  unsigned char *p;
  int e;

  if (len == 0)
    return 0;
  if (len > 16384)
    len = 16384;
  if (!(p = evbuffer_pullup(out, (ev_ssize_t)len))) {
    errno = ENOMEM;
    return -1;
  }
  ERR_clear_error();
  if (SSL_write_ex(ssl, p, len, &n) == 1) {
    evbuffer_drain(out, n);
    return (int)n;
  }
  e = SSL_get_error(ssl, 0);
  ERR_clear_error();
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    errno = EAGAIN;
    return -1;
  }
  if (e != SSL_ERROR_SYSCALL || errno == 0)
    errno = EPROTO;
  return -1;
}

const struct sock_filter tls_filter = {filter_read, filter_write};

/* A context of either side with the settings both share, presenting cert
 * and key (both or neither), verifying peers against ca (NULL: no peer
 * certificate is asked for). NULL on failure, with the reason in err. */
static SSL_CTX *ctx_new(const SSL_METHOD *method, const char *ca, const char *cert, const char *key,
                        char *err, size_t errlen) {
  SSL_CTX *ctx;

  ERR_clear_error();
  if (!(ctx = SSL_CTX_new(method))) {
    tls_why(NULL, "SSL_CTX_new", err, errlen);
    return NULL;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (cert && SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
    tls_why(NULL, cert, err, errlen);
    goto fail;
  }
  if (key && (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
              SSL_CTX_check_private_key(ctx) != 1)) {
    tls_why(NULL, key, err, errlen);
    goto fail;
  }
  if (ca) {
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
      tls_why(NULL, ca, err, errlen);
      goto fail;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  }
  return ctx;
fail:
  SSL_CTX_free(ctx);
  return NULL;
}

SSL_CTX *tls_ctx_new(const char *ca, const char *cert, const char *key, char *err, size_t errlen) {
  if (!ca) {
    snprintf(err, errlen, "a CA bundle is needed to verify the server");
    return NULL;
  }
  return ctx_new(TLS_client_method(), ca, cert, key, err, errlen);
}

void tls_ctx_free(SSL_CTX *ctx) { SSL_CTX_free(ctx); }

SSL *tls_new(SSL_CTX *ctx, int fd) {
  SSL *ssl = SSL_new(ctx);

  if (!ssl || SSL_set_fd(ssl, fd) != 1) {
    SSL_free(ssl);
    ERR_clear_error();
    return NULL;
  }
  SSL_set_read_ahead(ssl, 0);
  SSL_set_connect_state(ssl);
  return ssl;
}

int tls_handshake(SSL *ssl, char *err, size_t errlen) {
  int r, e;

  ERR_clear_error();
  errno = 0;
  if ((r = SSL_do_handshake(ssl)) == 1)
    return 1;
  e = SSL_get_error(ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    ERR_clear_error();
    return e == SSL_ERROR_WANT_READ ? 0 : 2;
  }
  tls_why(ssl, "TLS handshake", err, errlen);
  return -1;
}

const char *tls_version(const SSL *ssl) { return SSL_get_version(ssl); }

void tls_quiet_free(SSL *ssl) {
  if (!ssl)
    return;
  SSL_set_quiet_shutdown(ssl, 1);
  SSL_shutdown(ssl);
  SSL_free(ssl);
  ERR_clear_error();
}

/* ---------------------------------------------- the post-handoff server */

/* ALPN: the session after a handoff carries HTTP/2 and nothing else. */
static int select_h2(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                     const unsigned char *in, unsigned int inlen, void *arg) {
  static const unsigned char h2[] = {2, 'h', '2'};
  (void)ssl, (void)arg;
  if (SSL_select_next_proto((unsigned char **)out, outlen, h2, sizeof(h2), in, inlen) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  return SSL_TLSEXT_ERR_OK;
}

/* A client certificate the upstream presents must chain to ca; none is also
 * accepted (the upstream proved itself on the handshake phase). */
SSL_CTX *tls_server_ctx_new(const char *ca, const char *cert, const char *key, char *err,
                            size_t errlen) {
  SSL_CTX *ctx;

  if (!cert || !key) {
    snprintf(err, errlen, "a certificate and its key are needed to serve TLS");
    return NULL;
  }
  if ((ctx = ctx_new(TLS_server_method(), ca, cert, key, err, errlen)))
    SSL_CTX_set_alpn_select_cb(ctx, select_h2, NULL);
  return ctx;
}

/* A BIO that gives the bytes already read off the socket (the ClientHello's
 * start, read while RPINGs were being echoed) before reading the socket. */
struct prefix_bio {
  int fd;
  size_t len, off;
  unsigned char bytes[];
};

static int pbio_create(BIO *b) {
  BIO_set_init(b, 0);
  BIO_set_data(b, NULL);
  return 1;
}

static int pbio_destroy(BIO *b) {
  free(BIO_get_data(b)); /* the fd is the caller's */
  BIO_set_data(b, NULL);
  return 1;
}

static int pbio_read(BIO *b, char *out, int outl) {
  struct prefix_bio *s = BIO_get_data(b);
  ssize_t r;

  BIO_clear_retry_flags(b);
  if (outl <= 0)
    return 0;
  if (s->off < s->len) {
    size_t n = s->len - s->off < (size_t)outl ? s->len - s->off : (size_t)outl;
    memcpy(out, s->bytes + s->off, n);
    s->off += n;
    return (int)n;
  }
  do
    r = recv(s->fd, out, (size_t)outl, 0);
  while (r < 0 && errno == EINTR);
  if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
    BIO_set_retry_read(b);
  return (int)r;
}

static int pbio_write(BIO *b, const char *in, int inl) {
  struct prefix_bio *s = BIO_get_data(b);
  ssize_t r;

  BIO_clear_retry_flags(b);
  do
    r = send(s->fd, in, (size_t)inl, MSG_NOSIGNAL);
  while (r < 0 && errno == EINTR);
  if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
    BIO_set_retry_write(b);
  return (int)r;
}

static long pbio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  struct prefix_bio *s = BIO_get_data(b);

  (void)num, (void)ptr;
  switch (cmd) {
  case BIO_CTRL_FLUSH: return 1;
  case BIO_CTRL_PENDING: return (long)(s->len - s->off);
  default: return 0;
  }
}

static BIO_METHOD *prefix_method;
static pthread_once_t prefix_once = PTHREAD_ONCE_INIT;

static void make_prefix_method(void) {
  prefix_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "prefix then fd");
  if (prefix_method) {
    BIO_meth_set_create(prefix_method, pbio_create);
    BIO_meth_set_destroy(prefix_method, pbio_destroy);
    BIO_meth_set_read(prefix_method, pbio_read);
    BIO_meth_set_write(prefix_method, pbio_write);
    BIO_meth_set_ctrl(prefix_method, pbio_ctrl);
  }
}

SSL *tls_server_new(SSL_CTX *ctx, int fd, const void *prefix, size_t plen, const void *rest,
                    size_t restlen) {
  struct prefix_bio *s;
  SSL *ssl;
  BIO *bio;

  pthread_once(&prefix_once, make_prefix_method);
  if (!prefix_method || plen > 16 || restlen > (1u << 20))
    return NULL;
  if (!(s = malloc(sizeof(*s) + plen + restlen)))
    return NULL;
  s->fd = fd;
  s->off = 0;
  s->len = plen + restlen;
  if (plen)
    memcpy(s->bytes, prefix, plen);
  if (restlen)
    memcpy(s->bytes + plen, rest, restlen);
  if (!(ssl = SSL_new(ctx)) || !(bio = BIO_new(prefix_method))) {
    SSL_free(ssl);
    free(s);
    ERR_clear_error();
    return NULL;
  }
  BIO_set_data(bio, s);
  BIO_set_init(bio, 1);
  SSL_set_bio(ssl, bio, bio);
  SSL_set_read_ahead(ssl, 1); /* whole reads, not a record per recv */
  SSL_set_accept_state(ssl);
  return ssl;
}

int tls_has_pending(const SSL *ssl) { return SSL_has_pending(ssl); }

int tls_alpn_is_h2(const SSL *ssl) {
  const unsigned char *p = NULL;
  unsigned int n = 0;

  SSL_get0_alpn_selected(ssl, &p, &n);
  return n == 2 && p[0] == 'h' && p[1] == '2';
}

void tls_free(SSL *ssl) {
  SSL_free(ssl);
  ERR_clear_error();
}

#else /* without OpenSSL */

int tls_available(void) { return 0; }

static ssize_t filter_read(void *ctx, void *buf, size_t len) {
  (void)ctx, (void)buf, (void)len;
  errno = ENOTSUP;
  return -1;
}

static int filter_write(void *ctx, struct evbuffer *out) {
  (void)ctx, (void)out;
  errno = ENOTSUP;
  return -1;
}

const struct sock_filter tls_filter = {filter_read, filter_write};

SSL_CTX *tls_ctx_new(const char *ca, const char *cert, const char *key, char *err, size_t errlen) {
  (void)ca, (void)cert, (void)key;
  snprintf(err, errlen, "built without OpenSSL: no TLS");
  return NULL;
}

void tls_ctx_free(SSL_CTX *ctx) { (void)ctx; }

SSL *tls_new(SSL_CTX *ctx, int fd) {
  (void)ctx, (void)fd;
  return NULL;
}

int tls_handshake(SSL *ssl, char *err, size_t errlen) {
  (void)ssl;
  snprintf(err, errlen, "built without OpenSSL: no TLS");
  return -1;
}

const char *tls_version(const SSL *ssl) {
  (void)ssl;
  return "none";
}

void tls_quiet_free(SSL *ssl) { (void)ssl; }

SSL_CTX *tls_server_ctx_new(const char *ca, const char *cert, const char *key, char *err,
                            size_t errlen) {
  (void)ca, (void)cert, (void)key;
  snprintf(err, errlen, "built without OpenSSL: no TLS");
  return NULL;
}

SSL *tls_server_new(SSL_CTX *ctx, int fd, const void *prefix, size_t plen, const void *rest,
                    size_t restlen) {
  (void)ctx, (void)fd, (void)prefix, (void)plen, (void)rest, (void)restlen;
  return NULL;
}

int tls_has_pending(const SSL *ssl) {
  (void)ssl;
  return 0;
}

int tls_alpn_is_h2(const SSL *ssl) {
  (void)ssl;
  return 0;
}

void tls_free(SSL *ssl) { (void)ssl; }

#endif
