/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vCPUs stepped with vmm_vcpu_run_once on real KVM: the example's own devices
 * (examples/custom_device.c with its guest), and guests whose port I/O, MMIO,
 * MSRs, hypercalls and exits the library does not know reach the test as
 * exit records it answers; bad records, stop, pause and misuse from the wrong
 * place.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <vmm/vmm.h>

#include "check_compat.h"
#include "harness.h"

#define FREE_PORT 0x560        /* nothing on the PIO bus */
#define FREE_MMIO 0xd1000000ul /* nothing on the MMIO bus, no RAM */

static enum vmm_irqchip chip(int i)
{
    return i == 0 ? VMM_IRQCHIP_SPLIT : VMM_IRQCHIP_KERNEL;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* A VM with one vCPU entering code at HARNESS_RAW_ENTRY. */
static struct vmm_vcpu *raw_vm(struct harness *h, enum vmm_irqchip irqchip, const uint8_t *code,
                               size_t len)
{
    harness_init(h, irqchip, 16);
    harness_load_raw(h, code, len, 1);
    return vmm_vm_vcpu(h->vm, 0);
}

static struct vmm_vcpu_exit step(struct vmm_vcpu *vcpu)
{
    struct vmm_vcpu_exit ex = {.size = sizeof(ex)};
    int r = vmm_vcpu_run_once(vcpu, &ex);
    ck_assert_msg(r == 0, "vmm_vcpu_run_once: %s", vmm_strerror(r));
    ck_assert_uint_eq(ex.size, sizeof(ex));
    return ex;
}

/* Step past what the library handled to the next exit for the test. */
static struct vmm_vcpu_exit next_exit(struct vmm_vcpu *vcpu)
{
    for (unsigned i = 0; i < 1000; i++) {
        struct vmm_vcpu_exit ex = step(vcpu);
        if (ex.kind != VMM_VCPU_EXIT_HANDLED)
            return ex;
    }
    ck_abort_msg("1000 steps without an exit for the application");
    return (struct vmm_vcpu_exit){0};
}

static void expect_kind(const struct vmm_vcpu_exit *ex, uint32_t kind)
{
    ck_assert_msg(ex->kind == kind, "got a %s exit (KVM exit %u), want %s",
                  vmm_vcpu_exit_kind_name(ex->kind), ex->kvm_reason, vmm_vcpu_exit_kind_name(kind));
}

static void expect_io(const struct vmm_vcpu_exit *ex, uint16_t port, uint8_t size, bool write)
{
    expect_kind(ex, VMM_VCPU_EXIT_IO);
    ck_assert_uint_eq(ex->kvm_reason, KVM_EXIT_IO);
    ck_assert_uint_eq(ex->io.port, port);
    ck_assert_uint_eq(ex->io.size, size);
    ck_assert_int_eq(ex->io.write, write);
    ck_assert_uint_eq(ex->io.count, 1);
    ck_assert_ptr_nonnull(ex->io.data);
}

static uint32_t io_u32(const struct vmm_vcpu_exit *ex)
{
    uint32_t v;
    memcpy(&v, ex->io.data, 4);
    return v;
}

static void expect_guest_exit(const struct vmm_vcpu_exit *ex, int status)
{
    expect_kind(ex, VMM_VCPU_EXIT_END);
    ck_assert_int_eq(ex->end.reason, VMM_EXIT_GUEST_EXIT);
    ck_assert_int_eq(ex->end.status, status);
    ck_assert_uint_eq(ex->end.vcpu, 0);
}

/* ---- the example: its own port device and virtio device ---- */

static void slurp(int fd, char *buf, size_t size)
{
    ssize_t n = pread(fd, buf, size - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
}

START_TEST(example_drives_its_own_devices)
{
    char out[PATH_MAX], err[PATH_MAX];
    int ofd = mkstemp(vmm_test_tmpname(out, sizeof(out), "vmm-test-out"));
    int efd = mkstemp(vmm_test_tmpname(err, sizeof(err), "vmm-test-err"));
    ck_assert(ofd >= 0 && efd >= 0);
    unlink(out);
    unlink(err);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(ofd, 1);
        dup2(efd, 2);
        execl(VMM_CUSTOM_DEVICE_PATH, VMM_CUSTOM_DEVICE_PATH, harness_guest_path("custom_device"),
              (char *)NULL);
        _exit(127);
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    static char o[8192], e[4096];
    slurp(ofd, o, sizeof(o));
    slurp(efd, e, sizeof(e));
    close(ofd);
    close(efd);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d\nstdout:\n%s\nstderr:\n%s", st,
                  o, e);
    ck_assert_str_eq(e, "");
    /* What the guest saw: the application's answers and the echo replies. */
    static const char *const want[] = {
        "custom_device: accumulator 55, tape 'libvmm'\n",
        "custom_device: echo 'HelloDevice' -> 'hELLOdEVICE'\n",
        "custom_device: echo 'stepBYstep' -> 'STEPbySTEP'\n",
        "custom_device ok\n",
        /* What the devices saw: ten adds and one more, two reads, the
         * guest's REP OUTSB, two requests with the key it set. */
        "custom-device: accumulator 11 adds, 2 reads, sum 4151; tape 'guest says hi';",
        "custom-device: echo served 2 requests, key 0x20\n",
        "custom-device: guest ended: guest-exit, status 0\n",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        ck_assert_msg(strstr(o, want[i]), "stdout lacks '%s':\n%s", want[i], o);
}
END_TEST

/* ---- port I/O and MMIO nobody claims ---- */

START_TEST(in_from_an_unclaimed_port_gets_the_embedders_answer)
{
    static const uint8_t code[] = {
        0x66, 0xba, 0x60, 0x05, /* mov dx, 0x560 */
        0xed,                   /* in eax, dx: answered */
        0x66, 0xba, 0x64, 0x05, /* mov dx, 0x564 */
        0xef,                   /* out dx, eax */
        0xed,                   /* in eax, dx: not answered */
        0xef,                   /* out dx, eax */
        0xb0, 0x05, 0xe6, 0xf4, /* exit 5 */
    };
    struct harness h;
    struct vmm_vcpu *vcpu = raw_vm(&h, chip(_i), code, sizeof(code));
    struct vmm_vcpu_exit ex = next_exit(vcpu);
    expect_io(&ex, FREE_PORT, 4, false);
    ck_assert_uint_eq(io_u32(&ex), 0xffffffff); /* the default answer */
    ck_assert_ptr_eq(ex.run, (void *)(ex.io.data - ex.run->io.data_offset));
    uint32_t answer = 0xcafef00d;
    memcpy(ex.io.data, &answer, 4);
    ex = next_exit(vcpu);
    expect_io(&ex, FREE_PORT + 4, 4, true);
    ck_assert_uint_eq(io_u32(&ex), answer);
    ex = next_exit(vcpu);
    expect_io(&ex, FREE_PORT + 4, 4, false);
    ex = next_exit(vcpu);
    expect_io(&ex, FREE_PORT + 4, 4, true);
    ck_assert_uint_eq(io_u32(&ex), 0xffffffff);
    ex = next_exit(vcpu);
    expect_guest_exit(&ex, 5);
    ck_assert_uint_eq(ex.kvm_reason, KVM_EXIT_IO);
    ck_assert_uint_eq(ex.end.kvm_reason, KVM_EXIT_IO);
    /* The bus still counts what it did not claim. */
    struct vmm_bus_stats stats = VMM_INIT(struct vmm_bus_stats);
    vmm_bus_get_stats(vmm_vm_pio_bus(h.vm), &stats);
    ck_assert_uint_eq(stats.unclaimed_reads, 2);
    ck_assert_uint_eq(stats.unclaimed_writes, 2);
    harness_fini(&h);
}
END_TEST

START_TEST(mmio_to_an_unclaimed_address_gets_the_embedders_answer)
{
    static const uint8_t code[] = {
        0xbb, 0x00, 0x00, 0x00, 0xd1, /* mov ebx, 0xd1000000 */
        0x8b, 0x03,                   /* mov eax, [rbx] */
        0x89, 0x43, 0x10,             /* mov [rbx + 0x10], eax */
        0x48, 0x8b, 0x43, 0x08,       /* mov rax, [rbx + 8] */
        0x48, 0x89, 0x43, 0x18,       /* mov [rbx + 0x18], rax */
        0xb0, 0x00, 0xe6, 0xf4,       /* exit 0 */
    };
    struct harness h;
    struct vmm_vcpu *vcpu = raw_vm(&h, chip(_i), code, sizeof(code));
    struct vmm_vcpu_exit ex = next_exit(vcpu);
    expect_kind(&ex, VMM_VCPU_EXIT_MMIO);
    ck_assert_uint_eq(ex.kvm_reason, KVM_EXIT_MMIO);
    ck_assert_uint_eq(ex.mmio.addr, FREE_MMIO);
    ck_assert_uint_eq(ex.mmio.len, 4);
    ck_assert(!ex.mmio.write);
    uint32_t a = 0x600dcafe;
    memcpy(ex.mmio.data, &a, 4);
    ex = next_exit(vcpu);
    expect_kind(&ex, VMM_VCPU_EXIT_MMIO);
    ck_assert_uint_eq(ex.mmio.addr, FREE_MMIO + 0x10);
    ck_assert(ex.mmio.write);
    ck_assert_int_eq(memcmp(ex.mmio.data, &a, 4), 0);
    ex = next_exit(vcpu);
    expect_kind(&ex, VMM_VCPU_EXIT_MMIO);
    ck_assert_uint_eq(ex.mmio.addr, FREE_MMIO + 8);
    ck_assert_uint_eq(ex.mmio.len, 8);
    uint64_t b = 0x0123456789abcdefull;
    memcpy(ex.mmio.data, &b, 8);
    ex = next_exit(vcpu);
    expect_kind(&ex, VMM_VCPU_EXIT_MMIO);
    ck_assert_uint_eq(ex.mmio.addr, FREE_MMIO + 0x18);
    ck_assert_uint_eq(ex.mmio.len, 8);
    ck_assert_int_eq(memcmp(ex.mmio.data, &b, 8), 0);
    expect_guest_exit((ex = next_exit(vcpu), &ex), 0);
    harness_fini(&h);
}
END_TEST

/* ---- what the library's devices own stays theirs ---- */

static atomic_uint claimed_writes;

static void count_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
    claimed_writes++;
}

START_TEST(claimed_exits_are_handled_by_the_library)
{
    static const uint8_t code[] = {
        0xe6, 0x70,             /* out 0x70, al: the test's device */
        0x66, 0xba, 0x60, 0x05, /* mov dx, 0x560 */
        0xee,                   /* out dx, al: nobody's */
        0xb0, 0x03, 0xe6, 0xf4, /* exit 3 */
    };
    struct vmm_bus_ops ops = {.size = sizeof(struct vmm_bus_ops), .write = count_write};
    struct harness h;
    struct vmm_vcpu *vcpu = raw_vm(&h, VMM_IRQCHIP_SPLIT, code, sizeof(code));
    ck_assert_int_eq(vmm_bus_register(vmm_vm_pio_bus(h.vm), 0x70, 1, &ops, NULL), 0);
    claimed_writes = 0;
    uint64_t before = vmm_vcpu_exit_count(vcpu);
    struct vmm_vcpu_exit ex;
    do
        ex = step(vcpu);
    while (ex.kind == VMM_VCPU_EXIT_HANDLED && ex.kvm_reason != KVM_EXIT_IO);
    expect_kind(&ex, VMM_VCPU_EXIT_HANDLED);
    ck_assert_uint_eq(claimed_writes, 1);
    ck_assert_uint_eq(ex.vcpu, 0);
    ex = next_exit(vcpu);
    expect_io(&ex, FREE_PORT, 1, true);
    ex = next_exit(vcpu);
    expect_guest_exit(&ex, 3);
    ck_assert_uint_ge(vmm_vcpu_exit_count(vcpu) - before, 3);
    harness_fini(&h);
}
END_TEST

/* ---- MSRs and hypercalls the application asked KVM for ---- */

#define ODD_MSR 0x1234u /* no MSR KVM knows */

START_TEST(msrs_the_library_never_heard_of_reach_the_embedder)
{
    static const uint8_t code[] = {
        0xb9, 0x34, 0x12, 0x00, 0x00, /* mov ecx, ODD_MSR */
        0x0f, 0x32,                   /* rdmsr */
        0x83, 0xc0, 0x01,             /* add eax, 1 */
        0x0f, 0x30,                   /* wrmsr */
        0x0f, 0x32,                   /* rdmsr: refused, #GP, no IDT */
        0xb0, 0x00, 0xe6, 0xf4,       /* exit 0 (not reached) */
    };
    struct harness h;
    struct vmm_vcpu *vcpu = raw_vm(&h, chip(_i), code, sizeof(code));
    struct kvm_enable_cap cap = {.cap = KVM_CAP_X86_USER_SPACE_MSR,
                                 .args = {KVM_MSR_EXIT_REASON_UNKNOWN}};
    ck_assert_int_eq(vmm_vm_enable_cap(h.vm, &cap), 0);
    ck_assert_int_eq(vmm_vm_enable_cap(h.vm, NULL), -EINVAL);

    struct vmm_vcpu_exit ex = next_exit(vcpu);
    expect_kind(&ex, VMM_VCPU_EXIT_RDMSR);
    ck_assert_uint_eq(ex.kvm_reason, KVM_EXIT_X86_RDMSR);
    ck_assert_uint_eq(ex.msr.index, ODD_MSR);
    ck_assert_uint_eq(ex.msr.reason, KVM_MSR_EXIT_REASON_UNKNOWN);
    *ex.msr.data = 0x1122334455667788ull;
    ex = next_exit(vcpu);
    expect_kind(&ex, VMM_VCPU_EXIT_WRMSR);
    ck_assert_uint_eq(ex.msr.index, ODD_MSR);
    ck_assert_uint_eq(ex.msr.value, 0x1122334455667789ull);
    ex = next_exit(vcpu);
    expect_kind(&ex, VMM_VCPU_EXIT_RDMSR);
    *ex.msr.error = 1;
    /* #GP without an IDT: a triple fault (or, where KVM emulates the
     * delivery and gives up, an internal error): the application's to judge,
     * not the end of the run. */
    ex = next_exit(vcpu);
    ck_assert_msg(ex.kind == VMM_VCPU_EXIT_SHUTDOWN || ex.kind == VMM_VCPU_EXIT_INTERNAL_ERROR,
                  "got %s", vmm_vcpu_exit_kind_name(ex.kind));
    vmm_vm_stop(h.vm);
    ex = step(vcpu);
    expect_kind(&ex, VMM_VCPU_EXIT_END);
    ck_assert_int_eq(ex.end.reason, VMM_EXIT_STOPPED);
    ck_assert_uint_eq(ex.kvm_reason, 0);
    harness_fini(&h);
}
END_TEST

static bool host_is_amd(void)
{
    unsigned a, b, c, d;
    __asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0), "c"(0));
    return b == 0x68747541 || b == 0x6f677948; /* AuthenticAMD, HygonGenuine */
}

struct watchdog {
    struct vmm_vm *vm;
    unsigned ms;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
};

/* Stop the VM unless the test is done within ms. */
static void *watch(void *arg)
{
    struct watchdog *w = arg;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += w->ms / 1000;
    pthread_mutex_lock(&w->lock);
    while (!w->done)
        if (pthread_cond_timedwait(&w->cond, &w->lock, &until) != 0)
            break;
    if (!w->done)
        vmm_vm_stop(w->vm);
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

START_TEST(hypercalls_reach_the_embedder)
{
    uint8_t code[] = {
        0xb8, 0x0c, 0x00, 0x00, 0x00, /* mov eax, KVM_HC_MAP_GPA_RANGE */
        0xbb, 0x00, 0x00, 0x20, 0x00, /* mov ebx, 0x200000 (gpa) */
        0xb9, 0x02, 0x00, 0x00, 0x00, /* mov ecx, 2 (pages) */
        0x31, 0xd2,                   /* xor edx, edx (attributes) */
        0x0f, 0x01, 0xc1,             /* vmcall (patched below on AMD) */
        0x66, 0xba, 0x60, 0x05,       /* mov dx, 0x560 */
        0xef,                         /* out dx, eax: the return value */
        0xb0, 0x00, 0xe6, 0xf4,       /* exit 0 */
    };
    if (host_is_amd())
        code[19] = 0xd9; /* vmmcall */
    struct harness h;
    struct vmm_vcpu *vcpu = raw_vm(&h, VMM_IRQCHIP_SPLIT, code, sizeof(code));
    struct kvm_enable_cap cap = {.cap = KVM_CAP_EXIT_HYPERCALL, .args = {1u << 12}};
    int r = vmm_vm_enable_cap(h.vm, &cap);
    if (r == -EINVAL) {
        printf("hypercalls: this KVM cannot pass KVM_HC_MAP_GPA_RANGE on, not tested\n");
        harness_fini(&h);
        return;
    }
    ck_assert_int_eq(r, 0);
    /* Some KVMs (the PVM module) never finish a guest's hypercall
     * instruction: the vCPU spins on it inside KVM_RUN. */
    struct watchdog w = {.vm = h.vm,
                         .ms = 3000,
                         .lock = PTHREAD_MUTEX_INITIALIZER,
                         .cond = PTHREAD_COND_INITIALIZER};
    pthread_t t;
    pthread_create(&t, NULL, watch, &w);
    struct vmm_vcpu_exit ex = next_exit(vcpu);
    pthread_mutex_lock(&w.lock);
    w.done = true;
    pthread_cond_signal(&w.cond);
    pthread_mutex_unlock(&w.lock);
    pthread_join(t, NULL);
    struct kvm_regs regs;
    ck_assert_int_eq(vmm_vcpu_get_regs(vcpu, &regs), 0);
    if (ex.kind == VMM_VCPU_EXIT_END && regs.rip == HARNESS_RAW_ENTRY + 17) {
        printf("hypercalls: this KVM never completes the guest's VMCALL, not tested\n");
        harness_fini(&h);
        return;
    }
    expect_kind(&ex, VMM_VCPU_EXIT_HYPERCALL);
    ck_assert_uint_eq(ex.kvm_reason, KVM_EXIT_HYPERCALL);
    ck_assert_uint_eq(ex.hypercall.nr, 12);
    ck_assert_uint_eq(ex.hypercall.args[0], 0x200000);
    ck_assert_uint_eq(ex.hypercall.args[1], 2);
    ck_assert_uint_eq(ex.hypercall.args[2], 0);
    ck_assert_uint_eq(ex.hypercall.flags & 1, 1); /* from 64-bit mode */
    *ex.hypercall.ret = 0x77;
    ex = next_exit(vcpu);
    expect_io(&ex, FREE_PORT, 4, true);
    ck_assert_uint_eq(io_u32(&ex), 0x77);
    expect_guest_exit((ex = next_exit(vcpu), &ex), 0);
    harness_fini(&h);
}
END_TEST

/* ---- an exit the library has no name for ---- */

START_TEST(unknown_exits_are_returned_not_fatal)
{
    /* The test asks KVM, through the raw kvm_run page, for an exit when the
     * guest can take an interrupt (KVM_EXIT_IRQ_WINDOW_OPEN), which the
     * library has no kind for. */
    static const uint8_t code[] = {
        0x66, 0xba, 0x60, 0x05,                         /* mov dx, 0x560 */
        0xee,                                           /* out dx, al */
        0xfb,                                           /* sti: the window opens */
        0x80, 0x3c, 0x25, 0x00, 0x00, 0x20, 0x00, 0x00, /* 1: cmp byte [0x200000], 0 */
        0x74, 0xf6,                                     /* je 1b */
        0xfa,                                           /* cli */
        0xee,                                           /* out dx, al */
        0xb0, 0x00, 0xe6, 0xf4,                         /* exit 0 */
    };
    struct harness h;
    struct vmm_vcpu *vcpu = raw_vm(&h, VMM_IRQCHIP_SPLIT, code, sizeof(code));
    struct vmm_vcpu_exit ex = next_exit(vcpu);
    expect_io(&ex, FREE_PORT, 1, true);
    ex.run->request_interrupt_window = 1;
    ex = next_exit(vcpu);
    expect_kind(&ex, VMM_VCPU_EXIT_UNKNOWN);
    ck_assert_uint_eq(ex.kvm_reason, KVM_EXIT_IRQ_WINDOW_OPEN);
    ck_assert_uint_eq(ex.run->exit_reason, KVM_EXIT_IRQ_WINDOW_OPEN);
    ex.run->request_interrupt_window = 0;
    /* The guest goes on where it was, and leaves its loop when told. */
    uint8_t one = 1;
    ck_assert_int_eq(vmm_memory_write(vmm_vm_memory(h.vm), 0x200000, &one, 1), 0);
    ex = next_exit(vcpu);
    expect_io(&ex, FREE_PORT, 1, true);
    expect_guest_exit((ex = next_exit(vcpu), &ex), 0);
    harness_fini(&h);
}
END_TEST

/* ---- bad records and calls from the wrong place ---- */

START_TEST(a_record_with_a_bad_size_is_refused)
{
    static const uint8_t code[] = {0xb0, 0x00, 0xe6, 0xf4}; /* exit 0 */
    struct harness h;
    struct vmm_vcpu *vcpu = raw_vm(&h, VMM_IRQCHIP_SPLIT, code, sizeof(code));
    uint64_t before = vmm_vcpu_exit_count(vcpu);
    static const uint32_t bad[] = {
        0, 1, 24, sizeof(struct vmm_vcpu_exit) - 8, sizeof(struct vmm_vcpu_exit) + 8, UINT32_MAX};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct vmm_vcpu_exit ex;
        memset(&ex, 0x5a, sizeof(ex));
        ex.size = bad[i];
        ck_assert_int_eq(vmm_vcpu_run_once(vcpu, &ex), -EINVAL);
        ck_assert_uint_eq(ex.size, bad[i]);
        ck_assert_uint_eq(ex.kind, 0x5a5a5a5a); /* untouched */
    }
    ck_assert_int_eq(vmm_vcpu_run_once(vcpu, NULL), -EINVAL);
    ck_assert_uint_eq(vmm_vcpu_exit_count(vcpu), before); /* nothing ran */
    expect_guest_exit((struct vmm_vcpu_exit[]){next_exit(vcpu)}, 0);
    ck_assert_str_eq(vmm_vcpu_exit_kind_name(VMM_VCPU_EXIT_MMIO), "mmio");
    ck_assert_str_eq(vmm_vcpu_exit_kind_name(12345), "?");
    harness_fini(&h);
}
END_TEST

static const uint8_t spin[] = {0xeb, 0xfe}; /* jmp $ */

struct runner {
    struct vmm_vcpu *vcpu;
    struct vmm_exit exit;
    int ret;
};

static void *run_vcpu(void *arg)
{
    struct runner *r = arg;
    r->ret = vmm_vcpu_run(r->vcpu, &r->exit);
    return NULL;
}

struct nested {
    struct vmm_vcpu *vcpu;
    int ret;
};

static void nested_step(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
    struct nested *n = opaque;
    struct vmm_vcpu_exit ex = {.size = sizeof(ex)};
    n->ret = vmm_vcpu_run_once(n->vcpu, &ex);
}

/* mov dx, 0x560; 1: out dx, al; jmp 1b */
static const uint8_t out_loop[] = {0x66, 0xba, 0x60, 0x05, 0xee, 0xeb, 0xfd};

START_TEST(stepping_from_the_wrong_place_is_refused)
{
    struct harness h;
    struct vmm_vcpu *vcpu = raw_vm(&h, VMM_IRQCHIP_SPLIT, out_loop, sizeof(out_loop));
    struct runner r = {.vcpu = vcpu, .exit = VMM_INIT(struct vmm_exit)};
    pthread_t t;
    pthread_create(&t, NULL, run_vcpu, &r);
    while (vmm_vcpu_exit_count(vcpu) == 0)
        sleep_ms(1);
    struct vmm_vcpu_exit ex = {.size = sizeof(ex)};
    ck_assert_int_eq(vmm_vcpu_run_once(vcpu, &ex), -EBUSY); /* running elsewhere */
    vmm_vm_stop(h.vm);
    pthread_join(t, NULL);
    ck_assert_int_eq(r.ret, 0);
    ck_assert_int_eq(r.exit.reason, VMM_EXIT_STOPPED);
    harness_fini(&h);

    /* From a bus callback of the vCPU itself. */
    static const uint8_t out[] = {0xe6, 0x70, 0xb0, 0x00, 0xe6, 0xf4}; /* out 0x70; exit 0 */
    vcpu = raw_vm(&h, VMM_IRQCHIP_SPLIT, out, sizeof(out));
    struct nested n = {.vcpu = vcpu, .ret = 1};
    struct vmm_bus_ops ops = {.size = sizeof(struct vmm_bus_ops), .write = nested_step};
    ck_assert_int_eq(vmm_bus_register(vmm_vm_pio_bus(h.vm), 0x70, 1, &ops, &n), 0);
    expect_guest_exit((struct vmm_vcpu_exit[]){next_exit(vcpu)}, 0);
    ck_assert_int_eq(n.ret, -EDEADLK);
    harness_fini(&h);
}
END_TEST

/* ---- stop and pause reach a stepped vCPU ---- */

START_TEST(a_stop_before_the_step_ends_it_without_entering)
{
    static const uint8_t code[] = {0xb0, 0x00, 0xe6, 0xf4}; /* exit 0 */
    struct harness h;
    struct vmm_vcpu *vcpu = raw_vm(&h, chip(_i), code, sizeof(code));
    vmm_vm_stop(h.vm);
    uint64_t before = vmm_vcpu_exit_count(vcpu);
    struct vmm_vcpu_exit ex = step(vcpu);
    expect_kind(&ex, VMM_VCPU_EXIT_END);
    ck_assert_int_eq(ex.end.reason, VMM_EXIT_STOPPED);
    ck_assert_uint_eq(ex.kvm_reason, 0);
    ck_assert_uint_eq(vmm_vcpu_exit_count(vcpu), before);
    /* Reported, the end is over: the next step runs the guest. */
    expect_guest_exit((ex = next_exit(vcpu), &ex), 0);
    ck_assert_uint_gt(vmm_vcpu_exit_count(vcpu), before);
    harness_fini(&h);
}
END_TEST

struct stepper {
    struct vmm_vcpu *vcpu;
    atomic_ulong ios;
    struct vmm_vcpu_exit last;
    int ret;
};

/* Step until the end, counting the port writes (each an exit record). */
static void *step_until_end(void *arg)
{
    struct stepper *s = arg;
    for (;;) {
        struct vmm_vcpu_exit ex = {.size = sizeof(ex)};
        s->ret = vmm_vcpu_run_once(s->vcpu, &ex);
        if (s->ret < 0 || ex.kind == VMM_VCPU_EXIT_END) {
            s->last = ex;
            return NULL;
        }
        if (ex.kind == VMM_VCPU_EXIT_IO)
            s->ios++;
    }
}

START_TEST(stop_and_pause_reach_a_stepping_vcpu)
{
    struct harness h;
    struct vmm_vcpu *vcpu = raw_vm(&h, chip(_i), out_loop, sizeof(out_loop));
    struct stepper s = {.vcpu = vcpu};
    pthread_t t;
    pthread_create(&t, NULL, step_until_end, &s);
    while (s.ios < 100)
        sleep_ms(1);
    ck_assert_int_eq(vmm_vm_pause(h.vm), 0);
    unsigned long held = s.ios;
    sleep_ms(100);
    ck_assert_uint_le(s.ios, held + 1); /* at most the step that was running */
    held = s.ios;
    sleep_ms(50);
    ck_assert_uint_eq(s.ios, held);
    ck_assert_int_eq(vmm_vm_resume(h.vm), 0);
    while (s.ios < held + 100)
        sleep_ms(1);
    vmm_vm_stop(h.vm);
    pthread_join(t, NULL);
    ck_assert_int_eq(s.ret, 0);
    expect_kind(&s.last, VMM_VCPU_EXIT_END);
    ck_assert_int_eq(s.last.end.reason, VMM_EXIT_STOPPED);
    harness_fini(&h);

    /* A guest spinning inside KVM_RUN is kicked out by the stop. */
    vcpu = raw_vm(&h, chip(_i), spin, sizeof(spin));
    s = (struct stepper){.vcpu = vcpu};
    pthread_create(&t, NULL, step_until_end, &s);
    sleep_ms(50);
    vmm_vm_stop(h.vm);
    pthread_join(t, NULL);
    ck_assert_int_eq(s.ret, 0);
    ck_assert_int_eq(s.last.end.reason, VMM_EXIT_STOPPED);
    harness_fini(&h);
}
END_TEST

int main(void)
{
    vmm_test_require_kvm();
    Suite *s = suite_create("step");
    TCase *tc = tcase_create("run_once");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, example_drives_its_own_devices);
    tcase_add_loop_test(tc, in_from_an_unclaimed_port_gets_the_embedders_answer, 0, 2);
    tcase_add_loop_test(tc, mmio_to_an_unclaimed_address_gets_the_embedders_answer, 0, 2);
    tcase_add_test(tc, claimed_exits_are_handled_by_the_library);
    tcase_add_loop_test(tc, msrs_the_library_never_heard_of_reach_the_embedder, 0, 2);
    tcase_add_test(tc, hypercalls_reach_the_embedder);
    tcase_add_test(tc, unknown_exits_are_returned_not_fatal);
    tcase_add_test(tc, a_record_with_a_bad_size_is_refused);
    tcase_add_test(tc, stepping_from_the_wrong_place_is_refused);
    tcase_add_loop_test(tc, a_stop_before_the_step_ends_it_without_entering, 0, 2);
    tcase_add_loop_test(tc, stop_and_pause_reach_a_stepping_vcpu, 0, 2);
    suite_add_tcase(s, tc);
    return vmm_test_run_suite(s);
}
