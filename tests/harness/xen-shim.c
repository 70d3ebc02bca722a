/*
 * xen-shim: the one stand-in xsmon's tests allow, and it stands only for the
 * hypervisor.  oxenstored (Xen's own xenstore daemon) is real; this LD_PRELOAD
 * library lets it start on a machine without /dev/xen by
 *   - clamping its RLIMIT_NOFILE request to the hard limit (it asks for
 *     1048576 and exits on EPERM where the hard limit is lower), and
 *   - answering the hypervisor interface calls it makes at start
 *     (xc_interface_open, xenevtchn_*) with a dummy handle and an eventfd
 *     that never fires, since no domain will ever signal it.
 * Everything the daemon does over its unix socket (protocol, permissions,
 * quotas, transactions) runs unchanged.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/types.h>

typedef int (*setrlimit_fn)(int, const struct rlimit *);

static void clamp(struct rlimit *want)
{
    struct rlimit have;
    if (getrlimit(RLIMIT_NOFILE, &have) != 0)
        return;
    if (have.rlim_max != RLIM_INFINITY) {
        if (want->rlim_max == RLIM_INFINITY || want->rlim_max > have.rlim_max)
            want->rlim_max = have.rlim_max;
        if (want->rlim_cur == RLIM_INFINITY || want->rlim_cur > want->rlim_max)
            want->rlim_cur = want->rlim_max;
    }
}

int setrlimit(__rlimit_resource_t resource, const struct rlimit *rlim)
{
    static setrlimit_fn real;
    struct rlimit copy = *rlim;
    if (!real)
        real = (setrlimit_fn)dlsym(RTLD_NEXT, "setrlimit");
    if (resource == RLIMIT_NOFILE)
        clamp(&copy);
    return real(resource, &copy);
}

int setrlimit64(__rlimit_resource_t resource, const struct rlimit64 *rlim)
{
    struct rlimit copy = { (rlim_t)rlim->rlim_cur, (rlim_t)rlim->rlim_max };
    return setrlimit(resource, &copy);
}

int prlimit(pid_t pid, __rlimit_resource_t resource, const struct rlimit *new_limit,
            struct rlimit *old_limit)
{
    typedef int (*prlimit_fn)(pid_t, __rlimit_resource_t, const struct rlimit *, struct rlimit *);
    static prlimit_fn real;
    struct rlimit copy;
    if (!real)
        real = (prlimit_fn)dlsym(RTLD_NEXT, "prlimit");
    if (new_limit && resource == RLIMIT_NOFILE) {
        copy = *new_limit;
        clamp(&copy);
        new_limit = &copy;
    }
    return real(pid, resource, new_limit, old_limit);
}

/* A non-NULL pointer the daemon only ever hands back to us. */
static char dummy_handle[64];
static int evtchn_fd = -1;

void *xc_interface_open(void *logger, void *dombuild_logger, unsigned open_flags)
{
    (void)logger; (void)dombuild_logger; (void)open_flags;
    return dummy_handle;
}

int xc_interface_close(void *xch) { (void)xch; return 0; }

void *xenevtchn_open(void *logger, unsigned open_flags)
{
    (void)logger; (void)open_flags;
    if (evtchn_fd < 0)
        evtchn_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return dummy_handle;
}

int xenevtchn_close(void *xce) { (void)xce; return 0; }
int xenevtchn_fd(void *xce) { (void)xce; return evtchn_fd; }
int xenevtchn_bind_virq(void *xce, unsigned int virq) { (void)xce; (void)virq; return 1; }
int xenevtchn_pending(void *xce) { (void)xce; return -1; }
int xenevtchn_unmask(void *xce, uint32_t port) { (void)xce; (void)port; return 0; }
int xenevtchn_notify(void *xce, uint32_t port) { (void)xce; (void)port; return 0; }
int xenevtchn_unbind(void *xce, uint32_t port) { (void)xce; (void)port; return 0; }
