/*
 * The watched configuration file: a stat() per round of health checks
 * (prober.c), and a reload from the file when what it reports changed. No
 * inotify: the rounds are already there, a stat costs microseconds, and it
 * works the same on every filesystem (network mounts, bind mounts, atomic
 * renames by configuration management).
 */
#include "watch.h"

#include <string.h>
#include <sys/stat.h>

#include "reload.h"

/* The file's state now; false (and errno) when it cannot be stat'ed. */
static bool state_of(const char *path, struct sr_file_state *out)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return false;
    out->dev = (uint64_t)st.st_dev;
    out->ino = (uint64_t)st.st_ino;
    out->size = (int64_t)st.st_size;
    out->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    out->seen = true;
    return true;
}

static bool same_state(const struct sr_file_state *a, const struct sr_file_state *b)
{
    return a->seen == b->seen && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime_ns == b->mtime_ns;
}

void sr__watch_init(sr_router *r)
{
    sr_topo *t = atomic_load(&r->current);
    memset(&r->watched, 0, sizeof r->watched);
    memcpy(r->watched.path, t->opts.topology_file, sizeof r->watched.path);
    if (r->watched.path[0])
        state_of(r->watched.path, &r->watched);
}

void sr__watch_poll(sr_router *r)
{
    char path[SR_OPTION_STRING_MAX];
    sr_topo *t = sr__topo_borrow(r);
    memcpy(path, t->opts.topology_file, sizeof path);
    sr__topo_unborrow(r);
    if (!path[0])
        return;
    /* One check at a time (the prober and an application's sr_router_maintain may meet). */
    if (pthread_mutex_trylock(&r->watch_lock) != 0)
        return;
    struct sr_file_state now = {0};
    memcpy(now.path, path, sizeof now.path);
    bool readable = state_of(path, &now);
    bool renamed = strcmp(path, r->watched.path) != 0; /* a reload named another file */
    if (!renamed && same_state(&now, &r->watched)) {
        pthread_mutex_unlock(&r->watch_lock);
        return;
    }
    r->watched = now; /* a bad file is tried again only once it changes again */
    pthread_mutex_unlock(&r->watch_lock);

    sr_topo *cur = sr__topo_acquire(r);
    if (!readable) {
        sr__log(cur, SR_LOG_WARN, "topology.file %s cannot be read: the topology is unchanged",
                path);
        sr__topo_release(cur);
        return;
    }
    sr_config *c = sr_config_new();
    char err[SR_ERRMSG_LEN] = "";
    int rc = c ? sr_config_load_file(c, path) : SR_ENOMEM;
    if (rc == SR_OK) {
        sr__reload_from_source(r, cur, c, "reloaded from topology.file", err, sizeof err);
    } else {
        sr__log(cur, SR_LOG_WARN, "topology.file %s: %s: the topology is unchanged", path,
                c ? sr_config_errmsg(c) : "out of memory");
    }
    sr_config_free(c);
    sr__topo_release(cur);
}
