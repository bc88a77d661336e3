/* envoy.config.core.v3.SubstitutionFormatString -> compiled format.
 *
 * text_format (deprecated), text_format_source (inline_string or
 * inline_bytes) and json_format (typed, as Envoy's SubstitutionFormatString)
 * are supported, with omit_empty_values. content_type is checked (it would
 * end up in a header: no control characters, at most 256 bytes) and then
 * not used: the loggers write records, not HTTP responses. A format read
 * from a file or an environment variable is refused with a sentence rather
 * than read at config time behind the host's back, and so are formatter
 * extensions and json_format_options, which this library does not have. */
#include <string.h>

#include "envoy/config/core/v3/substitution_format_string.pb-c.h"
#include "format/format_int.h"
#include "base/proto.h"

/* text_format is deprecated in Envoy's API but still accepted there. */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

#define SFS_JSON_FORMAT_OPTIONS 7 /* not in lib/proto: refused when present */
#define CONTENT_TYPE_MAX 256u

typedef Envoy__Config__Core__V3__SubstitutionFormatString Sfs;
typedef Envoy__Config__Core__V3__DataSource DataSource;

static int check_content_type(const char *ct, const char *what, char *err, size_t errlen) {
  size_t n = strlen(ct);
  if (n > CONTENT_TYPE_MAX)
    return rt_fmt_fail(err, errlen, "%s.content_type is %zu bytes, more than %u", what, n,
                       CONTENT_TYPE_MAX);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)ct[i];
    if (c < 0x20 || c == 0x7f) /* it may end up in a header: no CR, LF or NUL */
      return rt_fmt_fail(err, errlen, "%s.content_type contains control character 0x%02x", what, c);
  }
  return REVTUN_OK;
}

static int text_source(const DataSource *ds, const char *what, const char **src, size_t *len,
                       char *err, size_t errlen) {
  switch (ds ? ds->specifier_case : ENVOY__CONFIG__CORE__V3__DATA_SOURCE__SPECIFIER__NOT_SET) {
  case ENVOY__CONFIG__CORE__V3__DATA_SOURCE__SPECIFIER_INLINE_STRING:
    *src = ds->inline_string ? ds->inline_string : "";
    *len = strlen(*src);
    return REVTUN_OK;
  case ENVOY__CONFIG__CORE__V3__DATA_SOURCE__SPECIFIER_INLINE_BYTES:
    *src = (const char *)ds->inline_bytes.data;
    *len = ds->inline_bytes.len;
    if (*len && memchr(*src, '\0', *len))
      return rt_fmt_fail(err, errlen, "%s.text_format_source.inline_bytes contains a NUL byte",
                         what);
    return REVTUN_OK;
  case ENVOY__CONFIG__CORE__V3__DATA_SOURCE__SPECIFIER_FILENAME:
    return rt_fmt_fail(err, errlen,
                       "%s.text_format_source.filename is not supported; put the format in "
                       "inline_string",
                       what);
  case ENVOY__CONFIG__CORE__V3__DATA_SOURCE__SPECIFIER_ENVIRONMENT_VARIABLE:
    return rt_fmt_fail(err, errlen,
                       "%s.text_format_source.environment_variable is not supported; put the "
                       "format in inline_string",
                       what);
  default:
    return rt_fmt_fail(err, errlen,
                       "%s.text_format_source must set inline_string or "
                       "inline_bytes",
                       what);
  }
}

int rt_fmt_from_sfs(const struct rt_mem *m, const Sfs *sfs, unsigned ops, const char *what,
                    struct rt_fmt **out, char *err, size_t errlen) {
  *out = NULL;
  if (sfs->n_formatters)
    return rt_fmt_fail(err, errlen,
                       "%s.formatters is not supported (no formatter extensions "
                       "are built in)",
                       what);
  if (rt_pb_has_unknown(&sfs->base, SFS_JSON_FORMAT_OPTIONS))
    return rt_fmt_fail(err, errlen, "%s.json_format_options is not supported", what);
  const char *ct = sfs->content_type ? sfs->content_type : "";
  int rc = check_content_type(ct, what, err, errlen);
  if (rc)
    return rc;
  unsigned flags = sfs->omit_empty_values ? RT_FMT_OMIT_EMPTY : 0;
  char msg[256];
  const char *src = NULL, *field = NULL;
  size_t len = 0;
  switch (sfs->format_case) {
  case ENVOY__CONFIG__CORE__V3__SUBSTITUTION_FORMAT_STRING__FORMAT_TEXT_FORMAT:
    src = sfs->text_format ? sfs->text_format : "";
    len = strlen(src);
    field = "text_format";
    break;
  case ENVOY__CONFIG__CORE__V3__SUBSTITUTION_FORMAT_STRING__FORMAT_TEXT_FORMAT_SOURCE:
    if ((rc = text_source(sfs->text_format_source, what, &src, &len, err, errlen)))
      return rc;
    field = "text_format_source";
    break;
  case ENVOY__CONFIG__CORE__V3__SUBSTITUTION_FORMAT_STRING__FORMAT_JSON_FORMAT:
    rc = rt_fmt_compile_json(m, sfs->json_format, ops, flags, out, msg, sizeof(msg));
    if (rc)
      return rc == REVTUN_E_NOMEM ? rc : rt_fmt_fail(err, errlen, "%s.%s", what, msg);
    break;
  default:
    return rt_fmt_fail(err, errlen,
                       "%s must set one of text_format, text_format_source or "
                       "json_format",
                       what);
  }
  if (field) {
    rc = rt_fmt_compile(m, src, len, ops, flags, out, msg, sizeof(msg));
    if (rc)
      return rc == REVTUN_E_NOMEM ? rc : rt_fmt_fail(err, errlen, "%s.%s: %s", what, field, msg);
  }
  return REVTUN_OK;
}
