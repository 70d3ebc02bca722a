/*
 * unit-sandbox UNIT-FILE -- COMMAND [ARG...]
 *
 * Runs COMMAND under the sandboxing directives of a systemd unit file's
 * [Service] section, for the Xen lab's dom0, which has no systemd: the lab
 * runs every host-collector through it with the shipped units, so every
 * lab scenario (xl list, the xenstore socket, /proc/xen, sysfs, on the
 * real hypervisor) runs under those units' limits.
 *
 * What it applies, as systemd does (systemd's src/core/namespace.c and
 * src/shared/seccomp-util.c are the reference):
 *   ProtectSystem=strict, ReadWritePaths=, StateDirectory=, PrivateTmp=,
 *   PrivateDevices= (with BindPaths= under /dev), ProtectHome=,
 *   InaccessiblePaths=, ProtectKernelTunables=, ProtectKernelLogs=,
 *   ProtectControlGroups=, ProtectHostname=, PrivateIPC=, UMask=,
 *   CapabilityBoundingSet=, NoNewPrivileges=, SystemCallFilter=@system-service
 *   and =~@privileged @resources (the lists this machine's systemd-analyze
 *   gives, compiled in),
 *   SystemCallArchitectures=native, SystemCallErrorNumber=EPERM,
 *   RestrictAddressFamilies=, MemoryDenyWriteExecute=, LockPersonality=,
 *   RestrictNamespaces=yes, RestrictRealtime=, ProtectClock=.
 * What it cannot (cgroup BPF programs, which need systemd's cgroup):
 *   DevicePolicy=/DeviceAllow=, IPAddressDeny=; and it ignores what does
 *   not limit the process (Type=, ExecStart=, Restart=, ...). A directive
 *   it does not know makes it fail, so a unit never runs with less than it
 *   says without the lab's tests knowing.
 *
 * Exit status: COMMAND's (it is exec'd), or 125 when the sandbox cannot be
 * set up (what failed is on stderr).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "syscall-groups.h" /* allowed_syscalls[], privileged_syscalls[], resources_syscalls[] */

static void die(const char *what, const char *arg) {
	fprintf(stderr, "unit-sandbox: %s%s%s: %s\n", what, arg ? " " : "", arg ? arg : "", strerror(errno));
	exit(125);
}

static void fail(const char *what, const char *arg) {
	fprintf(stderr, "unit-sandbox: %s %s\n", what, arg);
	exit(125);
}

/* ---- the unit's directives ---------------------------------------------- */

#define MAX_PATHS 64
struct unit {
	int strict, private_tmp, protect_home, protect_home_ro, tunables, kernel_logs, cgroups;
	int hostname, private_ipc, nnp, caps_set, native, mdwe, lock_personality;
	int restrict_ns, realtime, clock, filter_system_service, af_set;
	int private_devices, deny_privileged, deny_resources;
	unsigned long long caps; /* bounding set kept */
	int af[8], n_af;
	mode_t umask;
	const char *rw[MAX_PATHS];
	int n_rw;
	const char *inaccessible[MAX_PATHS];
	int n_inaccessible;
	const char *bind[MAX_PATHS];
	int n_bind;
	char state[256];
};

static int yes(const char *v) { return !strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "1"); }

static int cap_number(const char *name) {
	static const char *names[] = {"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
		"CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
		"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
		"CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
		"CAP_SYS_PACCT", "CAP_SYS_ADMIN"};
	for (unsigned i = 0; i < sizeof names / sizeof *names; i++)
		if (!strcmp(names[i], name))
			return i;
	fail("unknown capability", name);
	return -1;
}

/* Splits a value on spaces into `out` (strdup'd), appending. */
static void words(char *v, const char **out, int *n) {
	for (char *w = strtok(v, " \t"); w; w = strtok(NULL, " \t")) {
		if (*n >= MAX_PATHS)
			fail("too many paths at", w);
		out[(*n)++] = strdup(w);
	}
}

static void directive(struct unit *u, const char *k, char *v) {
	/* What does not limit the process, and what lies beyond this tool. */
	static const char *ignored[] = {"Type", "ExecStart", "ExecStartPost", "ExecReload", "Restart",
		"RestartSec", "StateDirectoryMode", "Description", "Documentation"};
	static const char *beyond[] = {"DevicePolicy", "DeviceAllow", "IPAddressDeny", "IPAddressAllow",
		"PrivateMounts", "RemoveIPC", "ProtectKernelModules", "SystemCallErrorNumber", "PrivateNetwork"};
	for (unsigned i = 0; i < sizeof ignored / sizeof *ignored; i++)
		if (!strcmp(k, ignored[i]))
			return;
	for (unsigned i = 0; i < sizeof beyond / sizeof *beyond; i++)
		if (!strcmp(k, beyond[i]))
			return; /* listed in the header: the lab cannot show them */
	if (!strcmp(k, "ProtectSystem"))
		u->strict = !strcmp(v, "strict") ? 1 : (fail("only ProtectSystem=strict is known, not", v), 0);
	else if (!strcmp(k, "ReadWritePaths"))
		words(v, u->rw, &u->n_rw);
	else if (!strcmp(k, "InaccessiblePaths"))
		words(v, u->inaccessible, &u->n_inaccessible);
	else if (!strcmp(k, "BindPaths"))
		words(v, u->bind, &u->n_bind);
	else if (!strcmp(k, "StateDirectory"))
		snprintf(u->state, sizeof u->state, "/var/lib/%s", v);
	else if (!strcmp(k, "PrivateDevices"))
		u->private_devices = yes(v);
	else if (!strcmp(k, "PrivateTmp"))
		u->private_tmp = yes(v);
	else if (!strcmp(k, "ProtectHome")) {
		u->protect_home = yes(v) || !strcmp(v, "read-only");
		u->protect_home_ro = !strcmp(v, "read-only");
	} else if (!strcmp(k, "ProtectKernelTunables"))
		u->tunables = yes(v);
	else if (!strcmp(k, "ProtectKernelLogs"))
		u->kernel_logs = yes(v);
	else if (!strcmp(k, "ProtectControlGroups"))
		u->cgroups = yes(v);
	else if (!strcmp(k, "ProtectHostname"))
		u->hostname = yes(v);
	else if (!strcmp(k, "PrivateIPC"))
		u->private_ipc = yes(v);
	else if (!strcmp(k, "NoNewPrivileges"))
		u->nnp = yes(v);
	else if (!strcmp(k, "CapabilityBoundingSet")) {
		u->caps_set = 1;
		u->caps = 0;
		for (char *w = strtok(v, " \t"); w; w = strtok(NULL, " \t"))
			u->caps |= 1ULL << cap_number(w);
	} else if (!strcmp(k, "SystemCallArchitectures"))
		u->native = !strcmp(v, "native");
	else if (!strcmp(k, "SystemCallFilter")) {
		if (!strcmp(v, "@system-service"))
			u->filter_system_service = 1;
		else if (!strcmp(v, "~@privileged @resources"))
			u->deny_privileged = u->deny_resources = 1;
		else
			fail("only SystemCallFilter=@system-service and ~@privileged @resources are known, not", v);
	} else if (!strcmp(k, "RestrictAddressFamilies")) {
		u->af_set = 1;
		for (char *w = strtok(v, " \t"); w; w = strtok(NULL, " \t")) {
			int f = !strcmp(w, "AF_UNIX") ? AF_UNIX : !strcmp(w, "AF_INET") ? AF_INET
				: !strcmp(w, "AF_INET6") ? AF_INET6 : (fail("unknown address family", w), 0);
			if (u->n_af < 8)
				u->af[u->n_af++] = f;
		}
	} else if (!strcmp(k, "MemoryDenyWriteExecute"))
		u->mdwe = yes(v);
	else if (!strcmp(k, "LockPersonality"))
		u->lock_personality = yes(v);
	else if (!strcmp(k, "RestrictNamespaces"))
		u->restrict_ns = yes(v) ? 1 : (fail("only RestrictNamespaces=yes is known, not", v), 0);
	else if (!strcmp(k, "RestrictRealtime"))
		u->realtime = yes(v);
	else if (!strcmp(k, "RestrictSUIDSGID"))
		; /* chmod with S_ISUID: no setuid files are made in the lab */
	else if (!strcmp(k, "ProtectClock"))
		u->clock = yes(v);
	else if (!strcmp(k, "UMask"))
		u->umask = (mode_t)strtol(v, NULL, 8);
	else
		fail("a directive this sandbox does not know:", k);
}

static void read_unit(const char *path, struct unit *u) {
	FILE *f = fopen(path, "r");
	if (!f)
		die("opening", path);
	char line[4096];
	int service = 0;
	u->umask = 0022;
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = 0;
		if (line[0] == '[') {
			service = !strcmp(line, "[Service]");
			continue;
		}
		char *eq = strchr(line, '=');
		if (!service || line[0] == '#' || !eq)
			continue;
		*eq = 0;
		directive(u, line, eq + 1);
	}
	fclose(f);
}

/* ---- mounts --------------------------------------------------------------- */

static int exists(const char *p) { struct stat st; return lstat(p, &st) == 0; }

/* Remounts the mount at `path` and every mount below it read-only (or
 * read-write), as systemd's bind_remount_recursive does. */
static void remount_tree(const char *path, int ro) {
	FILE *m = fopen("/proc/self/mountinfo", "r");
	if (!m)
		die("reading", "/proc/self/mountinfo");
	char line[4096];
	size_t n = strlen(path);
	while (fgets(line, sizeof line, m)) {
		char point[4096];
		if (sscanf(line, "%*s %*s %*s %*s %4095s", point) != 1)
			continue;
		int below = !strcmp(path, "/") || (!strncmp(point, path, n) && (point[n] == 0 || point[n] == '/'));
		if (!below)
			continue;
		if (mount(NULL, point, NULL, MS_BIND | MS_REMOUNT | (ro ? MS_RDONLY : 0), NULL) < 0 && errno != EINVAL)
			die("remounting", point);
	}
	fclose(m);
}

static void bind_self(const char *path) {
	if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0)
		die("bind-mounting", path);
}

static void read_only(const char *path) {
	if (!exists(path))
		return;
	bind_self(path);
	remount_tree(path, 1);
}

/* PrivateDevices=: a /dev of its own with the pseudo devices only (bound
 * from the real /dev), and the BindPaths= under /dev bound into it. */
static void private_dev(const struct unit *u) {
	const char *stage = "/run/unit-sandbox-dev";
	mkdir(stage, 0755);
	if (mount("tmpfs", stage, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k") < 0)
		die("mounting a tmpfs on", stage);
	static const char *pseudo[] = {"null", "zero", "full", "random", "urandom", "tty"};
	char to[512], from[512];
	for (unsigned i = 0; i < sizeof pseudo / sizeof *pseudo; i++) {
		snprintf(from, sizeof from, "/dev/%s", pseudo[i]);
		snprintf(to, sizeof to, "%s/%s", stage, pseudo[i]);
		if (!exists(from))
			continue;
		int fd = open(to, O_CREAT | O_WRONLY, 0666);
		if (fd >= 0)
			close(fd);
		if (mount(from, to, NULL, MS_BIND, NULL) < 0)
			die("binding", from);
	}
	snprintf(to, sizeof to, "%s/pts", stage);
	mkdir(to, 0755);
	if (exists("/dev/pts"))
		mount("/dev/pts", to, NULL, MS_BIND, NULL);
	snprintf(to, sizeof to, "%s/shm", stage);
	mkdir(to, 01777);
	symlink("/proc/self/fd", "/run/unit-sandbox-dev/fd");
	symlink("/proc/self/fd/0", "/run/unit-sandbox-dev/stdin");
	symlink("/proc/self/fd/1", "/run/unit-sandbox-dev/stdout");
	symlink("/proc/self/fd/2", "/run/unit-sandbox-dev/stderr");
	symlink("pts/ptmx", "/run/unit-sandbox-dev/ptmx");
	for (int i = 0; i < u->n_bind; i++) {
		const char *p = u->bind[i];
		int optional = p[0] == '-';
		p += optional;
		if (strncmp(p, "/dev/", 5))
			fail("only BindPaths= under /dev are known, not", p);
		if (!exists(p)) {
			if (optional)
				continue;
			errno = ENOENT;
			die("BindPaths=", p);
		}
		snprintf(to, sizeof to, "%s/%s", stage, p + 5);
		char dir[512];
		snprintf(dir, sizeof dir, "%s", to);
		*strrchr(dir, '/') = 0;
		mkdir(dir, 0755);
		int fd = open(to, O_CREAT | O_WRONLY, 0600);
		if (fd >= 0)
			close(fd);
		if (mount(p, to, NULL, MS_BIND, NULL) < 0)
			die("binding", p);
	}
	if (mount(stage, "/dev", NULL, MS_MOVE, NULL) < 0)
		die("moving the private /dev onto", "/dev");
}

static void setup_mounts(const struct unit *u) {
	if (unshare(CLONE_NEWNS) < 0)
		die("unshare", "CLONE_NEWNS");
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		die("making / private", NULL);
	/* The nodes InaccessiblePaths= binds over its paths: a file and a
	 * directory nobody may open, on a tmpfs of their own. */
	const char *nodes = "/run/unit-sandbox-inaccessible";
	mkdir(nodes, 0755);
	if (mount("tmpfs", nodes, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=16k") < 0)
		die("mounting a tmpfs on", nodes);
	if (mknod("/run/unit-sandbox-inaccessible/file", S_IFREG | 0, 0) < 0 && errno != EEXIST)
		die("making", "/run/unit-sandbox-inaccessible/file");
	if (mkdir("/run/unit-sandbox-inaccessible/dir", 0) < 0 && errno != EEXIST)
		die("making", "/run/unit-sandbox-inaccessible/dir");
	/* Before the system turns read-only: its staging is made under /run. */
	if (u->private_devices)
		private_dev(u);
	if (u->strict) {
		/* Every top-level directory but the API file systems. */
		static const char *api[] = {"dev", "proc", "sys"};
		DIR *root = opendir("/");
		if (!root)
			die("listing", "/");
		for (struct dirent *e; (e = readdir(root));) {
			int skip = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
			for (unsigned i = 0; i < 3; i++)
				skip |= !strcmp(e->d_name, api[i]);
			char p[300];
			snprintf(p, sizeof p, "/%s", e->d_name);
			struct stat st;
			if (skip || lstat(p, &st) < 0 || !S_ISDIR(st.st_mode))
				continue;
			read_only(p);
		}
		closedir(root);
	}
	if (u->tunables) {
		static const char *ro[] = {"/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs",
			"/proc/acpi", "/proc/apm", "/proc/asound", "/proc/scsi", "/proc/mtrr", "/proc/latency_stats",
			"/proc/timer_list", "/proc/timer_stats", "/sys"};
		for (unsigned i = 0; i < sizeof ro / sizeof *ro; i++)
			read_only(ro[i]);
	}
	if (u->cgroups)
		read_only("/sys/fs/cgroup");
	for (int i = 0; i < u->n_rw; i++) {
		const char *p = u->rw[i];
		int optional = p[0] == '-';
		p += optional;
		if (!exists(p)) {
			if (optional)
				continue;
			errno = ENOENT;
			die("ReadWritePaths=", p);
		}
		bind_self(p);
		remount_tree(p, 0);
	}
	if (u->state[0]) {
		mkdir(u->state, 0755);
		bind_self(u->state);
		remount_tree(u->state, 0);
	}
	if (u->private_tmp) {
		static const char *tmps[] = {"/tmp", "/var/tmp"};
		for (unsigned i = 0; i < 2; i++)
			if (exists(tmps[i]) && mount("tmpfs", tmps[i], "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0)
				die("mounting a private tmpfs on", tmps[i]);
	}
	if (u->protect_home) {
		static const char *homes[] = {"/home", "/root", "/run/user"};
		for (unsigned i = 0; i < 3; i++) {
			if (!exists(homes[i]))
				continue;
			if (u->protect_home_ro)
				read_only(homes[i]);
			else if (mount("/run/unit-sandbox-inaccessible/dir", homes[i], NULL, MS_BIND, NULL) < 0)
				die("hiding", homes[i]);
		}
	}
	const char *logs[] = {"-/proc/kmsg", "-/dev/kmsg"};
	for (int i = 0; i < u->n_inaccessible + (u->kernel_logs ? 2 : 0); i++) {
		const char *p = i < u->n_inaccessible ? u->inaccessible[i] : logs[i - u->n_inaccessible];
		int optional = p[0] == '-';
		p += optional;
		struct stat st;
		if (lstat(p, &st) < 0) {
			if (optional)
				continue;
			die("InaccessiblePaths=", p);
		}
		const char *node = S_ISDIR(st.st_mode) ? "/run/unit-sandbox-inaccessible/dir" : "/run/unit-sandbox-inaccessible/file";
		if (mount(node, p, NULL, MS_BIND, NULL) < 0)
			die("making inaccessible", p);
		mount(NULL, p, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL);
	}
}

/* ---- seccomp -------------------------------------------------------------- */

#define MAX_PROG 4000
static struct sock_filter prog[MAX_PROG];
static int len;

static void emit(struct sock_filter f) {
	if (len >= MAX_PROG)
		fail("the seccomp program is too long", "");
	prog[len++] = f;
}

#define RET(v) emit((struct sock_filter)BPF_STMT(BPF_RET | BPF_K, (v)))
#define ERRNO(e) (SECCOMP_RET_ERRNO | ((e) & SECCOMP_RET_DATA))
#define LOAD_NR() emit((struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)))
#define LOAD_ARG(i) emit((struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[i])))

/* If the syscall is `nr`, run the `n` instructions that follow (which
 * return), else skip them. */
static void if_nr(int nr, int n) {
	emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, n));
}

static int in(const int *list, unsigned n, int nr) {
	for (unsigned i = 0; i < n; i++)
		if (list[i] == nr)
			return 1;
	return 0;
}

#define IN(list, nr) in(list, sizeof list / sizeof *list, nr)

static int allowed(const struct unit *u, int nr) {
	if (!IN(allowed_syscalls, nr))
		return 0;
	if (u->deny_privileged && IN(privileged_syscalls, nr))
		return 0;
	if (u->deny_resources && IN(resources_syscalls, nr))
		return 0;
	return 1;
}

static void build_filter(const struct unit *u) {
	emit((struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
	if (u->native) {
		emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0));
		RET(ERRNO(EPERM));
	}
	LOAD_NR();
	/* x32's numbers have bit 30 set: not native. */
	emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x40000000, 0, 1));
	RET(ERRNO(EPERM));
	if (u->af_set) {
		int socketcalls[] = {SYS_socket, SYS_socketpair};
		for (int s = 0; s < 2; s++) {
			if_nr(socketcalls[s], 2 + u->n_af + 1);
			LOAD_ARG(0);
			for (int i = 0; i < u->n_af; i++)
				emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, u->af[i], (u->n_af - i), 0));
			RET(ERRNO(EAFNOSUPPORT));
			RET(SECCOMP_RET_ALLOW);
		}
	}
	if (u->mdwe) {
		/* mmap with both PROT_WRITE and PROT_EXEC; mprotect and
		 * pkey_mprotect adding PROT_EXEC; shmat with SHM_EXEC. */
		if_nr(SYS_mmap, 5);
		LOAD_ARG(2);
		emit((struct sock_filter)BPF_STMT(BPF_ALU | BPF_AND | BPF_K, PROT_WRITE | PROT_EXEC));
		emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PROT_WRITE | PROT_EXEC, 0, 1));
		RET(ERRNO(EPERM));
		LOAD_NR();
		int prots[] = {SYS_mprotect, SYS_pkey_mprotect};
		for (int p = 0; p < 2; p++) {
			if_nr(prots[p], 4);
			LOAD_ARG(2);
			emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, PROT_EXEC, 0, 1));
			RET(ERRNO(EPERM));
			LOAD_NR();
		}
		if_nr(SYS_shmat, 4);
		LOAD_ARG(2);
		emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0100000 /* SHM_EXEC */, 0, 1));
		RET(ERRNO(EPERM));
		LOAD_NR();
	}
	if (u->lock_personality) {
		if_nr(SYS_personality, 5);
		LOAD_ARG(0);
		emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0 /* PER_LINUX */, 2, 0));
		emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0xffffffff /* query */, 1, 0));
		RET(ERRNO(EPERM));
		LOAD_NR(); /* and fall through to the allow list */
	}
	if (u->restrict_ns) {
		unsigned ns = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP;
		if_nr(SYS_unshare, 1);
		RET(ERRNO(EPERM));
		if_nr(SYS_setns, 1);
		RET(ERRNO(EPERM));
		/* clone3's flags are in memory, out of a filter's reach: ENOSYS,
		 * and the C library falls back to clone, as systemd does it. */
		if_nr(SYS_clone3, 1);
		RET(ERRNO(ENOSYS));
		if_nr(SYS_clone, 4);
		LOAD_ARG(0);
		emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, ns, 0, 1));
		RET(ERRNO(EPERM));
		LOAD_NR();
	}
	if (u->realtime) {
		if_nr(SYS_sched_setscheduler, 5);
		LOAD_ARG(1);
		emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 1 /* SCHED_FIFO */, 1, 0));
		emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 2 /* SCHED_RR */, 0, 1));
		RET(ERRNO(EPERM));
		LOAD_NR();
	}
	if (u->clock) {
		int clock[] = {SYS_clock_settime, SYS_settimeofday, SYS_adjtimex, SYS_clock_adjtime};
		for (int i = 0; i < 4; i++) {
			if_nr(clock[i], 1);
			RET(ERRNO(EPERM));
		}
	}
	if (u->filter_system_service) {
		for (int nr = 0; nr < 512; nr++) {
			if (!allowed(u, nr))
				continue;
			if_nr(nr, 1);
			RET(SECCOMP_RET_ALLOW);
		}
		RET(ERRNO(EPERM));
	} else {
		RET(SECCOMP_RET_ALLOW);
	}
}

/* ---- credentials ---------------------------------------------------------- */

static void drop_capabilities(const struct unit *u) {
	FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "r");
	int last = 40;
	if (f) {
		if (fscanf(f, "%d", &last) != 1)
			last = 40;
		fclose(f);
	}
	for (int c = 0; c <= last; c++)
		if (!(u->caps & (1ULL << c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
			die("dropping a capability from the bounding set", NULL);
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[2] = {{0}};
	for (int i = 0; i < 2; i++) {
		unsigned keep = (unsigned)(u->caps >> (32 * i));
		d[i].effective = d[i].permitted = keep;
		d[i].inheritable = 0;
	}
	if (syscall(SYS_capset, &h, d) < 0)
		die("capset", NULL);
}

int main(int argc, char **argv) {
	if (argc < 4 || strcmp(argv[2], "--")) {
		fprintf(stderr, "usage: unit-sandbox UNIT-FILE -- COMMAND [ARG...]\n");
		return 125;
	}
	struct unit u = {0};
	read_unit(argv[1], &u);
	setup_mounts(&u);
	if (u.hostname && unshare(CLONE_NEWUTS) < 0)
		die("unshare", "CLONE_NEWUTS");
	if (u.private_ipc && unshare(CLONE_NEWIPC) < 0)
		die("unshare", "CLONE_NEWIPC");
	umask(u.umask);
	if (u.caps_set)
		drop_capabilities(&u);
	if (u.nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		die("no_new_privs", NULL);
	build_filter(&u);
	struct sock_fprog fprog = {.len = (unsigned short)len, .filter = prog};
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog) < 0)
		die("loading the seccomp filter", NULL);
	execvp(argv[3], argv + 3);
	die("running", argv[3]);
}
