/*
 * The driver registry: in-tree drivers compiled into this build, plus
 * drivers registered at run time, found by URI scheme (like sqlite3_vfs_find).
 * Schemes of in-tree drivers that this build left out are known by name so
 * that using one gives a clear SR_EDRIVER instead of "unknown scheme".
 */
#include "registry.h"

#include <pthread.h>
#include <string.h>

#ifdef SR_HAVE_SQLITE
extern const sr_driver sr__driver_sqlite;
#endif
#ifdef SR_HAVE_POSTGRES
extern const sr_driver sr__driver_postgres;
#endif
#ifdef SR_HAVE_MYSQL
extern const sr_driver sr__driver_mysql;
#endif

static const sr_driver *const builtin_drivers[] = {
#ifdef SR_HAVE_SQLITE
    &sr__driver_sqlite,
#endif
#ifdef SR_HAVE_POSTGRES
    &sr__driver_postgres,
#endif
#ifdef SR_HAVE_MYSQL
    &sr__driver_mysql,
#endif
    NULL,
};

/* Every scheme an in-tree driver handles, and the build option that enables it. */
static const struct {
    const char *scheme;
    const char *driver;
    const char *option;
} known_schemes[] = {
    {"sqlite", "sqlite", "-Dsqlite=enabled (needs libsqlite3-dev)"},
    {"postgresql", "postgres", "-Dpostgres=enabled (needs libpq-dev)"},
    {"postgres", "postgres", "-Dpostgres=enabled (needs libpq-dev)"},
    {"mysql", "mysql", "-Dmysql=enabled (needs default-libmysqlclient-dev)"},
    {"mariadb", "mysql", "-Dmysql=enabled (needs default-libmysqlclient-dev)"},
};

#define SR_MAX_EXTRA_DRIVERS 32
static const sr_driver *extra_drivers[SR_MAX_EXTRA_DRIVERS];
static int n_extra_drivers;
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;

static int driver_has_scheme(const sr_driver *d, const char *scheme)
{
    for (const char *const *s = d->schemes; s && *s; s++)
        if (strcmp(*s, scheme) == 0)
            return 1;
    return 0;
}

static const sr_driver *find_locked(const char *scheme)
{
    for (int i = 0; builtin_drivers[i]; i++)
        if (driver_has_scheme(builtin_drivers[i], scheme))
            return builtin_drivers[i];
    for (int i = 0; i < n_extra_drivers; i++)
        if (driver_has_scheme(extra_drivers[i], scheme))
            return extra_drivers[i];
    return NULL;
}

SR_API const sr_driver *sr_driver_find(const char *scheme)
{
    if (!scheme)
        return NULL;
    pthread_mutex_lock(&registry_lock);
    const sr_driver *d = find_locked(scheme);
    pthread_mutex_unlock(&registry_lock);
    return d;
}

SR_API int sr_driver_register(const sr_driver *d)
{
    if (!d || d->abi_version < 1 || !d->name || !d->schemes || !d->schemes[0] || !d->connect ||
        !d->close || !d->exec || !d->begin || !d->commit || !d->rollback || !d->ping)
        return SR_EINVAL;
    int rc = SR_OK;
    pthread_mutex_lock(&registry_lock);
    for (const char *const *s = d->schemes; *s; s++)
        if (find_locked(*s))
            rc = SR_EINVAL;
    if (rc == SR_OK) {
        if (n_extra_drivers == SR_MAX_EXTRA_DRIVERS)
            rc = SR_ENOMEM;
        else
            extra_drivers[n_extra_drivers++] = d;
    }
    pthread_mutex_unlock(&registry_lock);
    return rc;
}

int sr__driver_lookup(const char *scheme, const sr_driver **out, char *err, size_t errlen)
{
    const sr_driver *d = sr_driver_find(scheme);
    if (d) {
        *out = d;
        return SR_OK;
    }
    for (size_t i = 0; i < SR_ARRAY_LEN(known_schemes); i++) {
        if (strcmp(known_schemes[i].scheme, scheme) == 0) {
            sr__fmt(err, errlen,
                    "the %s driver (scheme '%s') is not part of this build of shardroute: "
                    "rebuild with %s",
                    known_schemes[i].driver, scheme, known_schemes[i].option);
            return SR_EDRIVER;
        }
    }
    sr__fmt(err, errlen, "no driver for URI scheme '%s' (register one with sr_driver_register)",
            scheme);
    return SR_EDRIVER;
}
