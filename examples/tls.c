/* TLS for the example programs with OpenSSL (tls.h). */
#define _POSIX_C_SOURCE 200809L

#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#ifdef EXAMPLES_TLS

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

/* One record's worth at a time from the front of out. */
static int filter_write(void *ctx, struct evbuffer *out) {
  SSL *ssl = ctx;
  struct evbuffer_iovec v;
  size_t n = 0;
  int e;

  if (evbuffer_peek(out, 16384, NULL, &v, 1) < 1)
    return 0;
  if (v.iov_len > 16384)
    v.iov_len = 16384;
  ERR_clear_error();
  if (SSL_write_ex(ssl, v.iov_base, v.iov_len, &n) == 1) {
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

SSL_CTX *tls_ctx_new(const char *ca, const char *cert, const char *key, char *err, size_t errlen) {
  SSL_CTX *ctx;

  ERR_clear_error();
  if (!(ctx = SSL_CTX_new(TLS_client_method()))) {
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
  if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
    tls_why(NULL, ca, err, errlen);
    goto fail;
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  return ctx;
fail:
  SSL_CTX_free(ctx);
  return NULL;
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

#endif
