/*
 * gmem-helper: performs guest_memfd, memslot and mmap calls on the running kernel for @gmemlab/linux.
 *
 * It speaks a line protocol on stdin/stdout (see packages/linux/README.md): one request line, one response
 * line. It exists as a separate process because a host access through a guest_memfd mapping can raise SIGBUS,
 * which only a process that owns its signal handlers can catch (sigsetjmp/siglongjmp); V8 owns Node's.
 *
 * Objects (VMs, files, mappings) are named by handles the helper hands out, never by raw fd numbers, so that a
 * closed fd whose number the kernel reuses cannot be confused with a live one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/kvm.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* uAPI the distribution headers (6.1 era) lack; from the kernel's include/uapi/linux/kvm.h (kernel-contract §10). */
struct gmem_create_guest_memfd {
	__u64 size;
	__u64 flags;
	__u64 reserved[6];
};
#define GMEM_KVM_CREATE_GUEST_MEMFD _IOWR(KVMIO, 0xd4, struct gmem_create_guest_memfd)

struct gmem_userspace_memory_region2 {
	__u32 slot;
	__u32 flags;
	__u64 guest_phys_addr;
	__u64 memory_size;
	__u64 userspace_addr;
	__u64 guest_memfd_offset;
	__u32 guest_memfd;
	__u32 pad1;
	__u64 pad2[14];
};
#define GMEM_KVM_SET_USER_MEMORY_REGION2 _IOW(KVMIO, 0x49, struct gmem_userspace_memory_region2)
#define GMEM_KVM_EXIT_MEMORY_FAULT 39

/* KVM_SET_MEMORY_ATTRIBUTES on the VM fd (include/uapi/linux/kvm.h, Linux 6.8+; kernel-contract §4.4). */
struct gmem_memory_attributes {
	__u64 address;
	__u64 size;
	__u64 attributes;
	__u64 flags;
};
#define GMEM_KVM_SET_MEMORY_ATTRIBUTES _IOW(KVMIO, 0xd2, struct gmem_memory_attributes)

/* The tiny guest: a memslot below 1 MiB holding `cld; rep movsb; hlt` and a scratch buffer. */
#define CODE_SLOT 32000
#define CODE_GPA 0xc0000ULL
#define CODE_SIZE 0x40000ULL
#define SCRATCH_OFFSET 0x1000ULL
#define SCRATCH_SIZE (CODE_SIZE - SCRATCH_OFFSET)

#define PAGE 4096ULL
#define MAX_HANDLES 4096
#define CLOSED_FD 1000000 /* an fd number no process here has open: the kernel answers EBADF */
/* Unmapped space left after each mapping: larger than any range a caller madvises past a mapping's end, so such
 * a range meets a hole (ENOMEM) and never another mapping. */
#define GUARD (64 * 1024ULL)
/* The most a memfd fallocate may allocate: shmem memory is not bounded by any limit of this process, and an
 * unbounded allocation takes the whole machine down. */
#define MEMFD_FALLOCATE_MAX (256ULL << 20)

enum kind { FREE = 0, VM, FILE_FD, MAPPING };

struct handle {
	enum kind kind;
	int fd; /* VM and FILE_FD; -1 once closed */
	int is_memfd; /* FILE_FD made by `memfd` */
	/* VM */
	int vcpu_fd;
	struct kvm_run *run;
	unsigned char *code;
	int code_slot;
	/* MAPPING */
	unsigned char *addr;
	size_t len;
	int alive;
};

static struct handle handles[MAX_HANDLES];
static int kvm_fd = -1;
static int vcpu_mmap_size;
static sigjmp_buf fault_jmp;
static volatile sig_atomic_t fault_armed;
static volatile int fault_signal;

static const char *errname(int e)
{
	const char *n = strerrorname_np(e);
	return n ? n : "EUNKNOWN";
}

static void reply_err(int e) { printf("err %s\n", errname(e)); }

static void on_fault(int sig, siginfo_t *info, void *ctx)
{
	(void)info;
	(void)ctx;
	if (!fault_armed) {
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	fault_signal = sig;
	siglongjmp(fault_jmp, 1);
}

static int new_handle(enum kind kind)
{
	for (int i = 1; i < MAX_HANDLES; i++) {
		if (handles[i].kind == FREE) {
			memset(&handles[i], 0, sizeof(handles[i]));
			handles[i].kind = kind;
			handles[i].fd = -1;
			handles[i].vcpu_fd = -1;
			return i;
		}
	}
	return -1;
}

static struct handle *get(long h, enum kind kind)
{
	if (h <= 0 || h >= MAX_HANDLES || handles[h].kind != kind)
		return NULL;
	return &handles[h];
}

/* An fd argument: a handle of a VM or file ("h<n>"), "kvm" for /dev/kvm, or a raw number. */
static int fd_arg(const char *tok)
{
	if (!strcmp(tok, "kvm"))
		return kvm_fd;
	if (tok[0] == 'h') {
		long h = strtol(tok + 1, NULL, 10);
		if (h > 0 && h < MAX_HANDLES && (handles[h].kind == VM || handles[h].kind == FILE_FD))
			return handles[h].fd >= 0 ? handles[h].fd : CLOSED_FD;
		return CLOSED_FD;
	}
	return (int)strtol(tok, NULL, 10);
}

static unsigned long long u64(const char *tok) { return tok ? strtoull(tok, NULL, 10) : 0; }
static long long s64(const char *tok) { return tok ? strtoll(tok, NULL, 10) : 0; }

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Data tokens: "-" (empty) or hex. Returns a malloc'd buffer (never NULL) and its length. */
static unsigned char *decode(const char *tok, size_t *len)
{
	size_t n = (!tok || !strcmp(tok, "-")) ? 0 : strlen(tok) / 2;
	unsigned char *buf = malloc(n ? n : 1);
	for (size_t i = 0; i < n; i++)
		buf[i] = (unsigned char)(hexval(tok[2 * i]) << 4 | hexval(tok[2 * i + 1]));
	*len = n;
	return buf;
}

static void print_hex(const unsigned char *buf, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	if (n == 0) {
		fputc('-', stdout);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		fputc(digits[buf[i] >> 4], stdout);
		fputc(digits[buf[i] & 15], stdout);
	}
}

/* --- host accesses through a mapping, page by page; a SIGBUS/SIGSEGV ends the access as a fault --- */

static void host_access(struct handle *m, unsigned long long off, unsigned char *buf, size_t n, int write)
{
	volatile size_t done = 0;
	if (sigsetjmp(fault_jmp, 1)) {
		fault_armed = 0;
		printf("fault %s %llu %zu\n", fault_signal == SIGBUS ? "sigbus" : "sigsegv", off + done, (size_t)done);
		return;
	}
	while (done < n) {
		unsigned long long at = off + done;
		if (!m->alive || at >= m->len) {
			/* No VMA there: report it rather than touch memory the helper may own. */
			printf("fault sigsegv %llu %zu\n", at, (size_t)done);
			return;
		}
		size_t chunk = PAGE - at % PAGE;
		if (chunk > n - done)
			chunk = n - done;
		fault_armed = 1;
		if (write)
			memcpy(m->addr + at, buf + done, chunk);
		else
			memcpy(buf + done, m->addr + at, chunk);
		fault_armed = 0;
		done += chunk;
	}
	if (write) {
		printf("ok\n");
	} else {
		printf("ok ");
		print_hex(buf, n);
		printf("\n");
	}
}

/* --- the guest: 32-bit flat protected mode, code and scratch in a memslot below 1 MiB --- */

static int guest_setup(struct handle *vm)
{
	if (vm->vcpu_fd >= 0)
		return 0;
	if (!vm->code) {
		vm->code = mmap(NULL, CODE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (vm->code == MAP_FAILED) {
			vm->code = NULL;
			return -errno;
		}
		static const unsigned char program[] = { 0xfc, 0xf3, 0xa4, 0xf4 }; /* cld; rep movsb; hlt */
		memcpy(vm->code, program, sizeof(program));
		struct kvm_userspace_memory_region r = {
			.slot = CODE_SLOT,
			.flags = 0,
			.guest_phys_addr = CODE_GPA,
			.memory_size = CODE_SIZE,
			.userspace_addr = (unsigned long)vm->code,
		};
		if (ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
			return -errno;
		vm->code_slot = 1;
	}
	/* Each vCPU index is used once: a vCPU left mid-instruction by a fault is replaced, never resumed. */
	static int next_vcpu_id;
	int vcpu = ioctl(vm->fd, KVM_CREATE_VCPU, next_vcpu_id++ % 1024);
	if (vcpu < 0)
		return -errno;
	struct kvm_run *run = mmap(NULL, vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED) {
		int e = errno;
		close(vcpu);
		return -e;
	}
	struct kvm_sregs s;
	if (ioctl(vcpu, KVM_GET_SREGS, &s) < 0)
		goto fail;
	struct kvm_segment flat = { .base = 0, .limit = 0xffffffff, .present = 1, .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1 };
	s.cs = flat;
	s.cs.selector = 0x8;
	s.cs.type = 11;
	flat.selector = 0x10;
	flat.type = 3;
	s.ds = s.es = s.ss = s.fs = s.gs = flat;
	s.cr0 |= 1; /* PE */
	if (ioctl(vcpu, KVM_SET_SREGS, &s) < 0)
		goto fail;
	vm->vcpu_fd = vcpu;
	vm->run = run;
	return 0;
fail:;
	int e = errno;
	munmap(run, vcpu_mmap_size);
	close(vcpu);
	return -e;
}

static void guest_drop_vcpu(struct handle *vm)
{
	if (vm->vcpu_fd < 0)
		return;
	munmap(vm->run, vcpu_mmap_size);
	close(vm->vcpu_fd);
	vm->vcpu_fd = -1;
	vm->run = NULL;
}

static void guest_access(struct handle *vm, unsigned long long gpa, unsigned char *buf, size_t n, int write)
{
	if (n > SCRATCH_SIZE) {
		reply_err(E2BIG);
		return;
	}
	int r = guest_setup(vm);
	if (r < 0) {
		reply_err(-r);
		return;
	}
	unsigned char *scratch = vm->code + SCRATCH_OFFSET;
	if (write)
		memcpy(scratch, buf, n);
	struct kvm_regs regs = { 0 };
	regs.rip = CODE_GPA;
	regs.rflags = 2;
	regs.rcx = n;
	regs.rsi = write ? CODE_GPA + SCRATCH_OFFSET : gpa;
	regs.rdi = write ? gpa : CODE_GPA + SCRATCH_OFFSET;
	if (ioctl(vm->vcpu_fd, KVM_SET_REGS, &regs) < 0) {
		reply_err(errno);
		return;
	}
	for (;;) {
		int ret = ioctl(vm->vcpu_fd, KVM_RUN, 0);
		int e = errno;
		struct kvm_run *run = vm->run;
		if (ret == 0 && run->exit_reason == KVM_EXIT_HLT) {
			if (write) {
				printf("ok\n");
			} else {
				printf("ok ");
				print_hex(scratch, n);
				printf("\n");
			}
			return;
		}
		if (ret < 0 && e == EINTR)
			continue;
		struct kvm_regs now;
		unsigned long long done = 0;
		if (ioctl(vm->vcpu_fd, KVM_GET_REGS, &now) == 0)
			done = n - now.rcx;
		if (ret == 0 && run->exit_reason == KVM_EXIT_MMIO) {
			unsigned long long at = run->mmio.phys_addr;
			if (at >= gpa && at < gpa + n)
				done = at - gpa;
			printf("fault mmio %llu %llu\n", gpa + done, done);
		} else if (ret < 0 && e == EFAULT) {
			if (run->exit_reason == GMEM_KVM_EXIT_MEMORY_FAULT) {
				/* run->memory_fault { flags; gpa; size } overlays the exit union. */
				unsigned long long at = ((__u64 *)&run->mmio)[1];
				if (at >= gpa && at < gpa + n)
					done = at - gpa;
			}
			printf("fault efault %llu %llu\n", gpa + done, done);
		} else if (ret < 0) {
			reply_err(e);
		} else {
			printf("fault exit-%u %llu %llu\n", run->exit_reason, gpa + done, done);
		}
		guest_drop_vcpu(vm);
		return;
	}
}

/* --- requests --- */

#define MAXTOK 16

static void handle_line(char *line)
{
	char *tok[MAXTOK] = { 0 };
	int nt = 0;
	for (char *save, *t = strtok_r(line, " \t\r\n", &save); t && nt < MAXTOK; t = strtok_r(NULL, " \t\r\n", &save))
		tok[nt++] = t;
	if (nt == 0) {
		reply_err(EINVAL);
		return;
	}
	const char *cmd = tok[0];

	if (!strcmp(cmd, "check")) { /* check <fd> <cap> */
		int r = ioctl(fd_arg(tok[1]), KVM_CHECK_EXTENSION, (unsigned long)s64(tok[2]));
		if (r < 0)
			reply_err(errno);
		else
			printf("ok %d\n", r);
	} else if (!strcmp(cmd, "create_vm")) { /* create_vm <type> */
		int h = new_handle(VM);
		if (h < 0) {
			reply_err(EMFILE);
			return;
		}
		int fd = ioctl(kvm_fd, KVM_CREATE_VM, (unsigned long)u64(tok[1]));
		if (fd < 0) {
			reply_err(errno);
			handles[h].kind = FREE;
			return;
		}
		handles[h].fd = fd;
		printf("ok h%d\n", h);
	} else if (!strcmp(cmd, "attrs")) { /* attrs <vm> <address> <size> <attributes> <flags> */
		struct gmem_memory_attributes a = { .address = u64(tok[2]), .size = u64(tok[3]), .attributes = u64(tok[4]), .flags = u64(tok[5]) };
		if (ioctl(fd_arg(tok[1]), GMEM_KVM_SET_MEMORY_ATTRIBUTES, &a) < 0)
			reply_err(errno);
		else
			printf("ok\n");
	} else if (!strcmp(cmd, "create_gmem")) { /* create_gmem <vm> <size> <flags> */
		struct gmem_create_guest_memfd a = { .size = u64(tok[2]), .flags = u64(tok[3]) };
		int fd = ioctl(fd_arg(tok[1]), GMEM_KVM_CREATE_GUEST_MEMFD, &a);
		if (fd < 0) {
			reply_err(errno);
			return;
		}
		int h = new_handle(FILE_FD);
		handles[h].fd = fd;
		printf("ok h%d\n", h);
	} else if (!strcmp(cmd, "memfd")) { /* memfd <size> */
		int fd = memfd_create("gmemlab", MFD_CLOEXEC);
		if (fd < 0 || ftruncate(fd, (off_t)u64(tok[1])) < 0) {
			int e = errno;
			if (fd >= 0)
				close(fd);
			reply_err(e);
			return;
		}
		int h = new_handle(FILE_FD);
		handles[h].fd = fd;
		handles[h].is_memfd = 1;
		printf("ok h%d\n", h);
	} else if (!strcmp(cmd, "fstat")) { /* fstat <fd> */
		struct stat st;
		if (fstat(fd_arg(tok[1]), &st) < 0)
			reply_err(errno);
		else
			printf("ok %lld %ld %llu\n", (long long)st.st_size, (long)st.st_blksize, (unsigned long long)st.st_ino);
	} else if (!strcmp(cmd, "read") || !strcmp(cmd, "pread")) { /* read <fd> <len> | pread <fd> <len> <off> */
		size_t n = (size_t)u64(tok[2]);
		if (n > (64u << 20)) {
			reply_err(E2BIG);
			return;
		}
		unsigned char *buf = malloc(n ? n : 1);
		ssize_t r = cmd[0] == 'p' ? pread(fd_arg(tok[1]), buf, n, (off_t)s64(tok[3])) : read(fd_arg(tok[1]), buf, n);
		if (r < 0) {
			reply_err(errno);
		} else {
			printf("ok ");
			print_hex(buf, (size_t)r);
			printf("\n");
		}
		free(buf);
	} else if (!strcmp(cmd, "write") || !strcmp(cmd, "pwrite")) { /* write <fd> <hex> | pwrite <fd> <hex> <off> */
		size_t n;
		unsigned char *buf = decode(tok[2], &n);
		ssize_t r = cmd[0] == 'p' ? pwrite(fd_arg(tok[1]), buf, n, (off_t)s64(tok[3])) : write(fd_arg(tok[1]), buf, n);
		if (r < 0)
			reply_err(errno);
		else
			printf("ok %zd\n", r);
		free(buf);
	} else if (!strcmp(cmd, "fallocate")) { /* fallocate <fd> <mode> <off> <len> */
		long h = tok[1] && tok[1][0] == 'h' ? strtol(tok[1] + 1, NULL, 10) : 0;
		int memfd = h > 0 && h < MAX_HANDLES && handles[h].kind == FILE_FD && handles[h].is_memfd && handles[h].fd >= 0;
		if (memfd && !(s64(tok[2]) & FALLOC_FL_PUNCH_HOLE) && s64(tok[4]) > (long long)MEMFD_FALLOCATE_MAX) {
			reply_err(E2BIG);
			return;
		}
		if (fallocate(fd_arg(tok[1]), (int)s64(tok[2]), (off_t)s64(tok[3]), (off_t)s64(tok[4])) < 0)
			reply_err(errno);
		else
			printf("ok\n");
	} else if (!strcmp(cmd, "mmap")) { /* mmap <fd> <len> <off> <shared> */
		unsigned long long len = u64(tok[2]);
		long long off = s64(tok[3]);
		int shared = (int)s64(tok[4]);
		/* Reserve GUARD bytes after the mapping, then leave them unmapped: as in the model, what follows a
		 * mapping is never another mapping. */
		unsigned long long rounded = (len + PAGE - 1) & ~(PAGE - 1);
		int flags = shared ? MAP_SHARED : MAP_PRIVATE;
		void *reserve = MAP_FAILED;
		if (len != 0 && rounded >= len && rounded + GUARD > rounded)
			reserve = mmap(NULL, rounded + GUARD, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		/* Without a reservation (a zero, overflowing or huge length) the kernel judges the call as given. */
		void *p = mmap(reserve == MAP_FAILED ? NULL : reserve, len, PROT_READ | PROT_WRITE,
			       flags | (reserve == MAP_FAILED ? 0 : MAP_FIXED), fd_arg(tok[1]), off);
		if (p == MAP_FAILED) {
			int e = errno;
			if (reserve != MAP_FAILED)
				munmap(reserve, rounded + GUARD);
			reply_err(e);
			return;
		}
		if (reserve != MAP_FAILED)
			munmap((unsigned char *)reserve + rounded, GUARD);
		int h = new_handle(MAPPING);
		handles[h].addr = p;
		handles[h].len = rounded;
		handles[h].alive = 1;
		printf("ok h%d\n", h);
	} else if (!strcmp(cmd, "hread") || !strcmp(cmd, "hwrite")) { /* hread <map> <off> <len> | hwrite <map> <off> <hex> */
		struct handle *m = get(strtol(tok[1] + 1, NULL, 10), MAPPING);
		if (!m) {
			reply_err(EBADF);
			return;
		}
		size_t n;
		unsigned char *buf;
		if (cmd[1] == 'r') {
			n = (size_t)u64(tok[3]);
			if (n > (64u << 20)) {
				reply_err(E2BIG);
				return;
			}
			buf = malloc(n ? n : 1);
		} else {
			buf = decode(tok[3], &n);
		}
		host_access(m, u64(tok[2]), buf, n, cmd[1] == 'w');
		free(buf);
	} else if (!strcmp(cmd, "munmap")) { /* munmap <map> */
		struct handle *m = get(strtol(tok[1] + 1, NULL, 10), MAPPING);
		if (!m) {
			reply_err(EBADF);
			return;
		}
		/* Unmap by putting an inaccessible reservation in its place, so that no later mapping of the helper's (the
		 * guest's code memslot, say) can land at an address a memslot still names. */
		if (m->alive && mmap(m->addr, m->len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) == MAP_FAILED) {
			reply_err(errno);
			return;
		}
		m->alive = 0;
		printf("ok\n");
	} else if (!strcmp(cmd, "madvise")) { /* madvise <map> <off> <len> <advice> */
		struct handle *m = get(strtol(tok[1] + 1, NULL, 10), MAPPING);
		if (!m) {
			reply_err(EBADF);
			return;
		}
		unsigned char *at = m->addr + u64(tok[2]);
		if (!m->alive) {
			/* The range may hold other mappings by now: ask the kernel about a range known to be unmapped, at the
			 * same page offset (a reservation made and dropped just now; nothing maps in between). */
			unsigned long long span = u64(tok[2]) + u64(tok[3]) + PAGE;
			if (span > (1ULL << 30)) {
				reply_err(E2BIG);
				return;
			}
			void *fresh = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
			if (fresh == MAP_FAILED) {
				reply_err(errno);
				return;
			}
			munmap(fresh, span);
			at = (unsigned char *)fresh + u64(tok[2]);
		}
		if (madvise(at, (size_t)u64(tok[3]), (int)s64(tok[4])) < 0)
			reply_err(errno);
		else
			printf("ok\n");
	} else if (!strcmp(cmd, "region") || !strcmp(cmd, "region2")) {
		/* region <vm> <slot> <flags> <gpa> <size> <uaddr> | region2 ... <gmem fd> <gmem offset> */
		struct gmem_userspace_memory_region2 r = { 0 };
		r.slot = (__u32)u64(tok[2]);
		r.flags = (__u32)u64(tok[3]);
		r.guest_phys_addr = u64(tok[4]);
		r.memory_size = u64(tok[5]);
		r.userspace_addr = u64(tok[6]);
		/* A "h<n>+<off>" userspace address names an offset into a mapping the helper made. */
		if (tok[6] && tok[6][0] == 'h') {
			char *plus;
			struct handle *m = get(strtol(tok[6] + 1, &plus, 10), MAPPING);
			r.userspace_addr = (m ? (unsigned long)m->addr : 0) + (*plus == '+' ? u64(plus + 1) : 0);
		}
		int rc;
		if (cmd[6] == '2') {
			r.guest_memfd = (__u32)fd_arg(tok[7] ? tok[7] : "0");
			r.guest_memfd_offset = u64(tok[8]);
			rc = ioctl(fd_arg(tok[1]), GMEM_KVM_SET_USER_MEMORY_REGION2, &r);
		} else {
			rc = ioctl(fd_arg(tok[1]), KVM_SET_USER_MEMORY_REGION, &r); /* the v1 struct is a prefix of v2 */
		}
		if (rc < 0)
			reply_err(errno);
		else
			printf("ok\n");
	} else if (!strcmp(cmd, "gread") || !strcmp(cmd, "gwrite")) { /* gread <vm> <gpa> <len> | gwrite <vm> <gpa> <hex> */
		struct handle *vm = get(strtol(tok[1] + 1, NULL, 10), VM);
		if (!vm || (vm->fd < 0 && vm->vcpu_fd < 0)) {
			reply_err(EBADF);
			return;
		}
		size_t n;
		unsigned char *buf;
		if (cmd[1] == 'r') {
			n = (size_t)u64(tok[3]);
			buf = malloc(1);
		} else {
			buf = decode(tok[3], &n);
		}
		guest_access(vm, u64(tok[2]), buf, n, cmd[1] == 'w');
		free(buf);
	} else if (!strcmp(cmd, "close")) { /* close <handle> */
		long h = tok[1] && tok[1][0] == 'h' ? strtol(tok[1] + 1, NULL, 10) : 0;
		if (h <= 0 || h >= MAX_HANDLES || (handles[h].kind != VM && handles[h].kind != FILE_FD) || handles[h].fd < 0) {
			reply_err(EBADF);
			return;
		}
		/* A VM's vCPU and code memslot stay until the end, as a VMM's would: the vCPU pins the VM. */
		int rc = close(handles[h].fd);
		handles[h].fd = -1;
		if (rc < 0)
			reply_err(errno);
		else
			printf("ok\n");
	} else if (!strcmp(cmd, "release")) { /* release: close and unmap everything, back to a fresh state */
		for (int i = 1; i < MAX_HANDLES; i++) {
			struct handle *x = &handles[i];
			if (x->kind == MAPPING)
				munmap(x->addr, x->len);
			if (x->kind == VM) {
				guest_drop_vcpu(x);
				if (x->code)
					munmap(x->code, CODE_SIZE);
			}
			if ((x->kind == VM || x->kind == FILE_FD) && x->fd >= 0)
				close(x->fd);
			x->kind = FREE;
		}
		printf("ok\n");
	} else if (!strcmp(cmd, "ping")) {
		printf("ok pong\n");
	} else {
		reply_err(ENOSYS);
	}
}

int main(void)
{
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	struct sigaction sa = { 0 };
	sa.sa_sigaction = on_fault;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);

	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm_fd < 0) {
		printf("hello err %s\n", errname(errno));
		fflush(stdout);
		return 0;
	}
	int api = ioctl(kvm_fd, KVM_GET_API_VERSION, 0);
	vcpu_mmap_size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	printf("hello ok %d\n", api);
	fflush(stdout);

	char *line = NULL;
	size_t cap = 0;
	while (getline(&line, &cap, stdin) > 0) {
		if (!strncmp(line, "quit", 4))
			break;
		handle_line(line);
		fflush(stdout);
	}
	free(line);
	/* Every resource goes with the process; release explicitly anyway so leaks show up in strace, not later. */
	char rel[] = "release";
	handle_line(rel);
	fflush(stdout);
	return 0;
}
