/* The acceptor's transport seam with OpenSSL: one server session per
 * handshake connection, driven non-blocking in the host's loop, parked with a
 * quiet shutdown (no close_notify) once the answer is out, so the tunnel goes
 * on as the raw TCP stream.
 *
 * OpenSSL keeps an error queue per thread: every call here clears it before
 * and after, so nothing stale reaches the host's own OpenSSL calls. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509_vfy.h>

#include "openssl_int.h"

#define N_FIELDS (REVTUN_PEER_CERT_V_END + 1)

struct revtun_openssl {
  pthread_mutex_t lock; /* the SSL_CTX may be swapped while other threads accept */
  SSL_CTX *ctx;
  revtun_transport_t *tp;
};

struct conn {
  SSL *ssl;
  int failure; /* enum revtun_tp_failure, after FAILED */
  char why[256];
  char *field[N_FIELDS]; /* peer fields rendered on first use */
  size_t field_len[N_FIELDS];
};

/* ------------------------------------------------------------- outcomes */

static void classify(struct conn *c, const char *op) {
  long vr = SSL_get_verify_result(c->ssl);
  unsigned long e = ERR_peek_error();
  char reason[200];
  if (e)
    ERR_error_string_n(e, reason, sizeof(reason));
  else
    snprintf(reason, sizeof(reason), "%s", errno ? strerror(errno) : "unexpected end of stream");
  if (vr != X509_V_OK) {
    c->failure = REVTUN_TP_FAIL_VERIFY;
    snprintf(c->why, sizeof(c->why), "TLS %s: peer certificate rejected: %s", op,
             X509_verify_cert_error_string(vr));
  } else if (e && ERR_GET_REASON(e) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
    c->failure = REVTUN_TP_FAIL_NO_PEER_CERT;
    snprintf(c->why, sizeof(c->why), "TLS %s: the peer presented no certificate", op);
  } else {
    c->failure = REVTUN_TP_FAIL_CONNECTION;
    snprintf(c->why, sizeof(c->why), "TLS %s: %s", op, reason);
  }
  ERR_clear_error();
}

/* Maps an SSL_* result to a revtun_tp_status. */
static int outcome(struct conn *c, int ret, const char *op) {
  int e = SSL_get_error(c->ssl, ret);
  switch (e) {
  case SSL_ERROR_WANT_READ: ERR_clear_error(); return REVTUN_TP_WANT_READ;
  case SSL_ERROR_WANT_WRITE: ERR_clear_error(); return REVTUN_TP_WANT_WRITE;
  case SSL_ERROR_ZERO_RETURN: ERR_clear_error(); return REVTUN_TP_CLOSED;
  default: classify(c, op); return REVTUN_TP_FAILED;
  }
}

/* -------------------------------------------------------------- the seam */

static int tp_open(void *user, int fd, void **out) {
  revtun_openssl_t *o = user;
  struct conn *c = calloc(1, sizeof(*c));
  if (!c)
    return REVTUN_E_NOMEM;
  pthread_mutex_lock(&o->lock);
  ERR_clear_error();
  c->ssl = SSL_new(o->ctx);
  pthread_mutex_unlock(&o->lock);
  /* SSL_set_fd's socket BIO does not close the fd: the library owns it. */
  if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
    ERR_clear_error();
    SSL_free(c->ssl);
    free(c);
    return REVTUN_E_NOMEM;
  }
  SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  /* Read exactly one record at a time: bytes behind the last record belong
   * to the raw tunnel after the park and must stay in the kernel. */
  SSL_set_read_ahead(c->ssl, 0);
  SSL_set_accept_state(c->ssl);
  *out = c;
  return REVTUN_OK;
}

static int tp_handshake(void *conn) {
  struct conn *c = conn;
  ERR_clear_error();
  errno = 0;
  int r = SSL_do_handshake(c->ssl);
  return r == 1 ? (ERR_clear_error(), REVTUN_TP_DONE) : outcome(c, r, "handshake");
}

static int tp_read(void *conn, uint8_t *buf, size_t cap, size_t *n) {
  struct conn *c = conn;
  ERR_clear_error();
  errno = 0;
  return SSL_read_ex(c->ssl, buf, cap, n) == 1 ? REVTUN_TP_DONE : outcome(c, 0, "read");
}

static int tp_write(void *conn, const uint8_t *buf, size_t len, size_t *n) {
  struct conn *c = conn;
  ERR_clear_error();
  errno = 0;
  return SSL_write_ex(c->ssl, buf, len, n) == 1 ? REVTUN_TP_DONE : outcome(c, 0, "write");
}

/* Quiet shutdown: SSL_shutdown() then marks the session closed without
 * writing a close_notify alert, so the peer sees no TLS record after the
 * answer and both sides carry on with the raw stream. */
static void tp_park(void *conn) {
  struct conn *c = conn;
  SSL_set_quiet_shutdown(c->ssl, 1);
  SSL_shutdown(c->ssl);
  ERR_clear_error();
}

static void tp_close(void *conn) {
  struct conn *c = conn;
  for (int i = 0; i < N_FIELDS; i++)
    free(c->field[i]);
  SSL_free(c->ssl);
  ERR_clear_error();
  free(c);
}

static int tp_failure(void *conn, char *why, size_t why_len) {
  struct conn *c = conn;
  if (why && why_len)
    snprintf(why, why_len, "%s", c->why);
  return c->failure ? c->failure : REVTUN_TP_FAIL_CONNECTION;
}

static int tp_peer(void *conn, int field, const char **value, size_t *len) {
  struct conn *c = conn;
  if (field <= 0 || field >= N_FIELDS)
    return REVTUN_E_NOT_FOUND;
  if (!c->field[field]) {
    int rc = rto_peer_field(c->ssl, field, &c->field[field], &c->field_len[field]);
    if (rc)
      return rc;
  }
  *value = c->field[field];
  *len = c->field_len[field];
  return REVTUN_OK;
}

/* ------------------------------------------------------------ the object */

int revtun_openssl_new(revtun_openssl_t **out, SSL_CTX *ctx) {
  if (!out || !ctx)
    return REVTUN_E_INVAL;
  *out = NULL;
  revtun_openssl_t *o = calloc(1, sizeof(*o));
  if (!o)
    return REVTUN_E_NOMEM;
  int rc = revtun_transport_new(&o->tp, o);
  if (rc) {
    free(o);
    return rc;
  }
  revtun_transport_set_session(o->tp, tp_open, tp_close);
  revtun_transport_set_io(o->tp, tp_handshake, tp_read, tp_write, tp_park);
  revtun_transport_set_diagnostics(o->tp, tp_failure, tp_peer);
  pthread_mutex_init(&o->lock, NULL);
  SSL_CTX_up_ref(ctx);
  o->ctx = ctx;
  *out = o;
  return REVTUN_OK;
}

int revtun_openssl_set_ctx(revtun_openssl_t *o, SSL_CTX *ctx) {
  if (!o || !ctx)
    return REVTUN_E_INVAL;
  SSL_CTX_up_ref(ctx);
  pthread_mutex_lock(&o->lock);
  SSL_CTX *old = o->ctx;
  o->ctx = ctx;
  pthread_mutex_unlock(&o->lock);
  SSL_CTX_free(old); /* sessions in progress hold their own reference */
  return REVTUN_OK;
}

const revtun_transport_t *revtun_openssl_transport(const revtun_openssl_t *o) {
  return o ? o->tp : NULL;
}

void revtun_openssl_free(revtun_openssl_t *o) {
  if (!o)
    return;
  revtun_transport_free(o->tp);
  SSL_CTX_free(o->ctx);
  pthread_mutex_destroy(&o->lock);
  free(o);
}
