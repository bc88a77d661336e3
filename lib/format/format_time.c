/* %START_TIME(...)%: strftime in UTC plus the specifiers Envoy adds on top
 * (it formats with absl): %f and %1f..%9f (fractional seconds, truncated),
 * %s (Unix seconds), %E<n>S and %E*S (seconds with n or all significant
 * fractional digits), %Ez (+00:00), %Z (UTC). The format is checked when the
 * config is loaded, so rendering never meets a conversion it cannot do. */
#include <stdio.h>
#include <string.h>

#include "format/format_int.h"

#define DEFAULT_TIME_FORMAT "%Y-%m-%dT%H:%M:%E3SZ"

/* Conversions passed to strftime (glibc, C99 and POSIX). 'n' is left out:
 * a newline inside a record breaks line-oriented logs (Envoy rejects it too). */
static const char strftime_letters[] = "aAbBcCdDeFgGhHIjklmMpPrRStTuUVwWxXyYzZ+";

struct spec {
  size_t len;  /* bytes of the specifier after '%' */
  char kind;   /* 'f' fraction, 's' seconds, 'S' %E<n>S, 'z' %Ez, 'Z', '%', or 'x' strftime */
  int digits;  /* 'f'/'S': fractional digits; -1 = all significant (%E*S) */
  bool star_z; /* %E*z */
};

/* Scans the specifier at f (just after a '%'); false when it is not one. */
static bool scan_spec(const char *f, struct spec *sp) {
  memset(sp, 0, sizeof(*sp));
  if (*f == '%' || *f == 's' || *f == 'Z') {
    sp->len = 1, sp->kind = *f;
    return true;
  }
  if (*f == 'f') {
    sp->len = 1, sp->kind = 'f', sp->digits = 9;
    return true;
  }
  if (*f >= '1' && *f <= '9' && f[1] == 'f') {
    sp->len = 2, sp->kind = 'f', sp->digits = *f - '0';
    return true;
  }
  if (*f == 'E') {
    if (f[1] >= '0' && f[1] <= '9' && f[2] == 'S') {
      sp->len = 3, sp->kind = 'S', sp->digits = f[1] - '0';
      return true;
    }
    if (f[1] == '*' && f[2] == 'S') {
      sp->len = 3, sp->kind = 'S', sp->digits = -1;
      return true;
    }
    if (f[1] == 'z') {
      sp->len = 2, sp->kind = 'z';
      return true;
    }
    if (f[1] == '*' && f[2] == 'z') {
      sp->len = 3, sp->kind = 'z', sp->star_z = true;
      return true;
    }
  }
  /* strftime: [flags][width][E|O]letter */
  size_t i = 0;
  while (f[i] && strchr("_-0^#", f[i]) && i < 4)
    i++;
  while (f[i] >= '0' && f[i] <= '9' && i < 8)
    i++;
  if (f[i] == 'E' || f[i] == 'O')
    i++;
  if (!f[i] || !strchr(strftime_letters, f[i]))
    return false;
  sp->len = i + 1, sp->kind = 'x';
  return true;
}

int rt_fmt_check_time_format(const char *f, char *err, size_t errlen) {
  for (size_t i = 0; f[i]; i++) {
    if (f[i] == '\n')
      return rt_fmt_fail(err, errlen, "a newline is not allowed in a time format");
    if (f[i] != '%')
      continue;
    struct spec sp;
    if (!scan_spec(f + i + 1, &sp))
      return rt_fmt_fail(err, errlen, "unsupported time conversion '%%%.*s' at offset %zu",
                         f[i + 1] ? 1 : 0, f + i + 1, i);
    i += sp.len;
  }
  return REVTUN_OK;
}

struct out {
  char *p;
  size_t cap, len;
};

static void put(struct out *o, const char *d, size_t n) {
  if (n > o->cap - o->len)
    n = o->cap - o->len;
  memcpy(o->p + o->len, d, n);
  o->len += n;
}

/* n decimal digits of v, zero-padded (the common conversions are done here
 * rather than by strftime, a large part of a record's cost). */
static void put_digits(struct out *o, unsigned long v, int n) {
  char buf[20];
  for (int i = n - 1; i >= 0; i--) {
    buf[i] = (char)('0' + v % 10);
    v /= 10;
  }
  put(o, buf, (size_t)n);
}

static void put_fraction(struct out *o, long nsec, int digits) {
  char buf[10];
  unsigned long v = nsec < 0 || nsec > 999999999 ? 0 : (unsigned long)nsec;
  for (int i = 8; i >= 0; i--) {
    buf[i] = (char)('0' + v % 10);
    v /= 10;
  }
  if (digits < 0) { /* all significant digits: trailing zeros trimmed */
    digits = 9;
    while (digits > 0 && buf[digits - 1] == '0')
      digits--;
  }
  put(o, buf, (size_t)digits);
}

/* %Y %m %d %H %M %S %j without strftime; false for anything else. */
static bool fast_conversion(struct out *o, char c, const struct tm *tm) {
  switch (c) {
  case 'Y':
    if (tm->tm_year < -1900 || tm->tm_year > 8099)
      return false;
    put_digits(o, (unsigned long)(tm->tm_year + 1900), 4);
    return true;
  case 'm': put_digits(o, (unsigned long)tm->tm_mon + 1, 2); return true;
  case 'd': put_digits(o, (unsigned long)tm->tm_mday, 2); return true;
  case 'H': put_digits(o, (unsigned long)tm->tm_hour, 2); return true;
  case 'M': put_digits(o, (unsigned long)tm->tm_min, 2); return true;
  case 'S': put_digits(o, (unsigned long)tm->tm_sec, 2); return true;
  case 'j': put_digits(o, (unsigned long)tm->tm_yday + 1, 3); return true;
  default: return false;
  }
}

size_t rt_fmt_time(const char *fmt, const struct timespec *ts, char *dst, size_t cap) {
  struct out o = {dst, cap, 0};
  struct tm tm;
  time_t t = ts->tv_sec;
  if (!gmtime_r(&t, &tm))
    memset(&tm, 0, sizeof(tm));
  if (!fmt)
    fmt = DEFAULT_TIME_FORMAT;
  char buf[128];
  for (const char *f = fmt; *f;) {
    if (*f != '%') {
      const char *pct = strchr(f, '%');
      size_t n = pct ? (size_t)(pct - f) : strlen(f);
      put(&o, f, n);
      f += n;
      continue;
    }
    struct spec sp;
    if (!scan_spec(f + 1, &sp)) { /* checked at load: only reached for a lone '%' */
      put(&o, "%", 1);
      f++;
      continue;
    }
    int n = 0;
    switch (sp.kind) {
    case '%': put(&o, "%", 1); break;
    case 'Z': put(&o, "UTC", 3); break;
    case 'z': put(&o, sp.star_z ? "+00:00:00" : "+00:00", sp.star_z ? 9 : 6); break;
    case 's':
      n = snprintf(buf, sizeof(buf), "%lld", (long long)ts->tv_sec);
      put(&o, buf, (size_t)n);
      break;
    case 'f': put_fraction(&o, ts->tv_nsec, sp.digits); break;
    case 'S':
      put_digits(&o, (unsigned long)tm.tm_sec, 2);
      if (sp.digits != 0 && !(sp.digits < 0 && ts->tv_nsec == 0)) {
        put(&o, ".", 1);
        put_fraction(&o, ts->tv_nsec, sp.digits);
      }
      break;
    case 'x':
      if (sp.len == 1 && fast_conversion(&o, f[1], &tm))
        break;
      /* fall through */
    default: {
      char conv[16] = "%";
      memcpy(conv + 1, f + 1, sp.len);
      conv[sp.len + 1] = '\0';
      /* One conversion, checked against strftime_letters when the config
       * was loaded; the compiler cannot see that. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
      size_t w = strftime(buf, sizeof(buf), conv, &tm);
#pragma GCC diagnostic pop
      put(&o, buf, w);
    }
    }
    f += 1 + sp.len;
  }
  return o.len;
}
