/* What the files of the OpenSSL companion library share. */
#ifndef REVTUN_OPENSSL_INT_H
#define REVTUN_OPENSSL_INT_H

#include <stddef.h>

#include "revtun/openssl.h"

/* Writes "what file: <first OpenSSL error>" into err, clears OpenSSL's error
 * queue, returns status. */
int rto_fail(int status, char *err, size_t errlen, const char *what, const char *file);

/* The peer identity of an established session, rendered as Envoy's
 * %DOWNSTREAM_PEER_*% operators render it, into a malloc'd string (*out) of
 * *len bytes; REVTUN_E_NOT_FOUND when the field has no value. */
int rto_peer_field(SSL *ssl, int field, char **out, size_t *len);

/* A DNS or URI SAN of cert (as flags say) equal to id. */
int rto_cert_names(X509 *cert, const char *id, size_t id_len, int flags);

#endif
