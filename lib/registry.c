/*
 * The driver registry: in-tree drivers compiled into this build, plus
 * drivers registered at run time, found by URI scheme (like sqlite3_vfs_find).
 * Which drivers are built in, and the schemes of those this build left out
 * (so that using one gives a clear SR_EDRIVER instead of "unknown scheme"),
 * come from the build (sr_drivers_table.h, generated from each
 * drivers/<name>/meson.build): no driver is named here.
 */
#include "registry.h"

#include <ctype.h>
#include <string.h>

#include "schemes.h"
#include "sr_drivers_table.h"

SR_BUILTIN_DRIVER_DECLS

static const sr_driver *const builtin_drivers[] = {SR_BUILTIN_DRIVER_LIST NULL};

static const sr_driver *find_builtin(const char *scheme)
{
    for (int i = 0; builtin_drivers[i]; i++)
        if (sr__driver_has_scheme(builtin_drivers[i], scheme))
            return builtin_drivers[i];
    return NULL;
}

SR_API const sr_driver *sr_driver_find(const char *scheme)
{
    if (!scheme)
        return NULL;
    const sr_driver *d = find_builtin(scheme);
    return d ? d : sr__schemes_find(scheme);
}

/* A scheme as the URI parser produces it: a lower-case letter, then
 * lower-case letters, digits, '+', '-' or '.'. Anything else could never be
 * found. */
static bool scheme_well_formed(const char *s)
{
    if (!islower((unsigned char)s[0]))
        return false;
    for (; *s; s++)
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '+' || *s == '-' ||
              *s == '.'))
            return false;
    return true;
}

SR_API int sr_driver_register(const sr_driver *d)
{
    if (!d)
        return SR_EINVAL;
    /* Checked first, before any field past the ABI 1 ones is trusted: a
     * driver from a newer header may depend on what this library does not
     * do (call its newer slots, fill newer connect arguments). */
    if (d->abi_version < 1 || d->abi_version > SR_DRIVER_ABI_VERSION)
        return SR_EDRIVER;
    if (!d->name || !d->schemes || !d->schemes[0] || !d->connect || !d->close || !d->exec ||
        !d->begin || !d->commit || !d->rollback || !d->ping)
        return SR_EINVAL;
    for (const char *const *s = d->schemes; *s; s++)
        if (!scheme_well_formed(*s) || find_builtin(*s))
            return SR_EINVAL;
    for (int i = 0; builtin_drivers[i]; i++)
        if (builtin_drivers[i] == d)
            return SR_EINVAL;
    return sr__schemes_add(d);
}

SR_API int sr_driver_unregister(const sr_driver *d)
{
    if (!d)
        return SR_EINVAL;
    return sr__schemes_remove(d);
}

int sr__driver_lookup(const char *scheme, const sr_driver **out, char *err, size_t errlen)
{
    const sr_driver *d = sr_driver_find(scheme);
    if (d) {
        *out = d;
        return SR_OK;
    }
    const sr__known_scheme *k = sr__scheme_known(scheme);
    if (k && !k->built) {
        sr__fmt(err, errlen,
                "the %s driver (scheme '%s') is not part of this build of shardroute: "
                "rebuild with %s",
                k->driver, scheme, k->option);
        return SR_EDRIVER;
    }
    sr__fmt(err, errlen, "no driver for URI scheme '%s' (register one with sr_driver_register)",
            scheme);
    return SR_EDRIVER;
}
