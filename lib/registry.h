/* The driver registry (see registry.c). */
#ifndef SR_REGISTRY_H
#define SR_REGISTRY_H

#include "internal.h"

/* The driver for `scheme`, or SR_EDRIVER with a message naming the missing driver. */
int sr__driver_lookup(const char *scheme, const sr_driver **out, char *err, size_t errlen);

#endif
