/*
 * URI schemes and their drivers, below the registry: what uri.c needs to
 * know of a scheme (its URI form) without depending on any driver, and the
 * list of drivers registered at run time (see schemes.c).
 */
#ifndef SR_SCHEMES_H
#define SR_SCHEMES_H

#include "internal.h"

/* A scheme of an in-tree driver, whether this build has the driver or not. */
typedef struct sr__known_scheme {
    const char *scheme;
    const char *driver; /* the driver's name */
    const char *option; /* the build option that enables it */
    bool built;
    bool path_uri;      /* SR_DRIVER_URI_PATH */
} sr__known_scheme;

/* The in-tree entry for `scheme` (lower-case), or NULL. */
const sr__known_scheme *sr__scheme_known(const char *scheme);

/*
 * Whether URIs of `scheme` (lower-case) take the path form (SCHEME:PATH):
 * an in-tree driver declared so in its meson.build, or a driver registered
 * at run time has SR_DRIVER_URI_PATH. Thread-safe.
 */
bool sr__scheme_path_uri(const char *scheme);

/*
 * The drivers registered at run time (sr_driver_register), kept in
 * registration order in a growing array under one lock. _add refuses
 * (SR_EINVAL) a driver already listed or one with a scheme some listed
 * driver handles; SR_ENOMEM. _remove: SR_EINVAL when not listed. _find:
 * the listed driver for `scheme`, or NULL. All thread-safe.
 */
int sr__schemes_add(const sr_driver *d);
int sr__schemes_remove(const sr_driver *d);
const sr_driver *sr__schemes_find(const char *scheme);

/* 1 when `d` lists `scheme` among its schemes. */
bool sr__driver_has_scheme(const sr_driver *d, const char *scheme);

#endif
