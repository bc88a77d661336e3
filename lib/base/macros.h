/* Two macros every layer uses. */
#ifndef REVTUN_BASE_MACROS_H
#define REVTUN_BASE_MACROS_H

#include <stddef.h>

/* Elements of an array (not a pointer). */
#define RT_COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))
/* The struct of the given type that holds ptr as its member. */
#define RT_CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#endif
