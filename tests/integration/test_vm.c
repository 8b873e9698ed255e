/* SPDX-License-Identifier: Apache-2.0 */
/* Guests run through the library on real KVM: console, exit status, memory,
 * SMP, device round trips, unclaimed accesses, interrupts, stop/pause/resume,
 * fatal exits and dirty logging, on both interrupt controller models. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <vmm/vmm.h>

#include "check_compat.h"
#include "harness.h"
#include "vmm_internal.h"

/* Loop iterations run the same cases with each interrupt controller. */
static enum vmm_irqchip chip(int i)
{
    return i == 0 ? VMM_IRQCHIP_SPLIT : VMM_IRQCHIP_KERNEL;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

START_TEST(hello_prints_and_exits_zero)
{
    struct harness h;
    harness_init(&h, chip(_i), 64);
    harness_load_guest(&h, "hello", 1);
    harness_run(&h);
    ck_assert_int_eq(h.exit.reason, VMM_EXIT_GUEST_EXIT);
    ck_assert_int_eq(h.exit.status, 0);
    ck_assert_msg(strstr(h.output, "Hello from a libvmm guest!\n"), "output: %s", h.output);
    ck_assert_uint_gt(vmm_vcpu_exit_count(vmm_vm_vcpu(h.vm, 0)), 10);
    harness_fini(&h);
}
END_TEST

START_TEST(mempattern_is_visible_to_the_host)
{
    struct harness h;
    harness_init(&h, VMM_IRQCHIP_SPLIT, 64);
    harness_load_guest(&h, "mempattern", 1);
    harness_run(&h);
    ck_assert_int_eq(h.exit.reason, VMM_EXIT_GUEST_EXIT);
    ck_assert_int_eq(h.exit.status, 0);
    static uint32_t words[65536];
    ck_assert_int_eq(vmm_memory_read(vmm_vm_memory(h.vm), 0x200000, words, sizeof(words)), 0);
    for (uint32_t i = 0; i < 65536; i++) {
        uint32_t addr = 0x200000 + i * 4;
        ck_assert_msg(words[i] == (addr ^ 0x5a5a5a5au), "word at %x is %x", addr, words[i]);
    }
    harness_fini(&h);
}
END_TEST

/* ---- SMP: every vCPU reports its APIC id on port 0x510 ---- */

struct id_report {
    pthread_mutex_t lock;
    uint64_t seen; /* bit n: APIC id n reported */
    unsigned reports;
};

static void report_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
    struct id_report *rep = opaque;
    uint32_t id = 0;
    memcpy(&id, data, len < 4 ? len : 4);
    pthread_mutex_lock(&rep->lock);
    if (id < 64)
        rep->seen |= 1ull << id;
    rep->reports++;
    pthread_mutex_unlock(&rep->lock);
}

START_TEST(smp_every_vcpu_reports_its_apic_id)
{
    static const unsigned counts[] = {1, 2, 4};
    for (unsigned k = 0; k < 3; k++) {
        unsigned n = counts[k];
        struct id_report rep = {.lock = PTHREAD_MUTEX_INITIALIZER};
        struct vmm_bus_ops ops = {.size = sizeof(struct vmm_bus_ops), .write = report_write};
        struct harness h;
        harness_init(&h, chip(_i), 64);
        ck_assert_int_eq(vmm_bus_register(vmm_vm_pio_bus(h.vm), 0x510, 4, &ops, &rep), 0);
        harness_load_guest(&h, "smp", n);
        harness_run(&h);
        ck_assert_int_eq(h.exit.reason, VMM_EXIT_GUEST_EXIT);
        ck_assert_int_eq(h.exit.status, 0);
        ck_assert_uint_eq(rep.reports, n);
        ck_assert_uint_eq(rep.seen, (1ull << n) - 1);
        harness_fini(&h);
    }
}
END_TEST

/* ---- device round trips: reads return the stored bytes inverted ---- */

struct echo_dev {
    uint8_t regs[256];
    atomic_uint reads, writes;
};

static void echo_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
    struct echo_dev *d = opaque;
    for (uint32_t i = 0; i < len; i++)
        data[i] = (uint8_t)~d->regs[off + i];
    d->reads++;
}

static void echo_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
    struct echo_dev *d = opaque;
    memcpy(&d->regs[off], data, len);
    d->writes++;
}

START_TEST(pio_and_mmio_round_trips)
{
    struct echo_dev pio = {0}, mmio = {0};
    struct vmm_bus_ops ops = {
        .size = sizeof(struct vmm_bus_ops), .read = echo_read, .write = echo_write};
    struct harness h;
    harness_init(&h, chip(_i), 64);
    ck_assert_int_eq(vmm_bus_register(vmm_vm_pio_bus(h.vm), 0x520, 8, &ops, &pio), 0);
    ck_assert_int_eq(vmm_bus_register(vmm_vm_mmio_bus(h.vm), 0xd0000000, 256, &ops, &mmio), 0);
    harness_load_guest(&h, "iodev", 1);
    harness_run(&h);
    ck_assert_msg(h.exit.reason == VMM_EXIT_GUEST_EXIT && h.exit.status == 0,
                  "exit %d status %d: %s", h.exit.reason, h.exit.status, h.output);
    ck_assert_uint_ge(pio.reads, 3);
    ck_assert_uint_ge(pio.writes, 3);
    ck_assert_uint_ge(mmio.reads, 4);
    ck_assert_uint_ge(mmio.writes, 4);
    ck_assert_ptr_nonnull(strstr(h.output, "iodev ok"));
    harness_fini(&h);
}
END_TEST

/* A device callback records the stack size of the thread it runs on. */
static void stack_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    size_t *size = opaque;
    pthread_attr_t a;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
        (void)pthread_attr_getstacksize(&a, size);
        pthread_attr_destroy(&a);
    }
}

/* vmm_vm_run's threads (the vCPU's here) have the stacks vm.h promises,
 * under 2 MiB so that none takes a transparent huge page. */
START_TEST(run_threads_have_small_stacks)
{
    /* mov dx, 0x530; out dx, al; mov al, 0; out 0xf4, al; hlt */
    static const uint8_t code[] = {0x66, 0xba, 0x30, 0x05, 0xee, 0xb0, 0x00, 0xe6, 0xf4, 0xf4};
    size_t size = 0;
    struct vmm_bus_ops ops = {.size = sizeof(struct vmm_bus_ops), .write = stack_write};
    struct harness h;
    harness_init(&h, VMM_IRQCHIP_SPLIT, 16);
    ck_assert_int_eq(vmm_bus_register(vmm_vm_pio_bus(h.vm), 0x530, 1, &ops, &size), 0);
    harness_load_raw(&h, code, sizeof(code), 1);
    harness_run(&h);
    ck_assert_int_eq(h.exit.reason, VMM_EXIT_GUEST_EXIT);
    ck_assert_uint_eq(size, VMM_VM_THREAD_STACK);
    ck_assert_uint_lt(VMM_VM_THREAD_STACK, 2u << 20);
    harness_fini(&h);
}
END_TEST

START_TEST(unclaimed_accesses_read_ones_and_are_counted)
{
    struct harness h;
    harness_init(&h, VMM_IRQCHIP_SPLIT, 64);
    harness_load_guest(&h, "unclaimed", 1);
    harness_run(&h);
    ck_assert_msg(h.exit.reason == VMM_EXIT_GUEST_EXIT && h.exit.status == 0,
                  "exit %d status %d: %s", h.exit.reason, h.exit.status, h.output);
    struct vmm_bus_stats pio = VMM_INIT(struct vmm_bus_stats),
                         mmio = VMM_INIT(struct vmm_bus_stats);
    vmm_bus_get_stats(vmm_vm_pio_bus(h.vm), &pio);
    vmm_bus_get_stats(vmm_vm_mmio_bus(h.vm), &mmio);
    ck_assert_uint_ge(pio.unclaimed_reads, 3);
    ck_assert_uint_ge(pio.unclaimed_writes, 1);
    ck_assert_uint_ge(mmio.unclaimed_reads, 4);
    ck_assert_uint_ge(mmio.unclaimed_writes, 1);
    ck_assert_uint_eq(mmio.last_unclaimed_addr & ~0xfull, 0xd1000000);
    harness_fini(&h);
}
END_TEST

/* The exit profile counts the unclaimed guest's known accesses at their
 * sites: 6 reads and 3 writes of port 0x530 (inb/inw/inl twice, outb/outw/
 * outl once), reads and writes of MMIO 0xd1000000 (a 64-bit access may come
 * as two halves), and every exit in its reason. */
START_TEST(exit_profile_counts_the_known_exits)
{
    struct harness h;
    harness_init(&h, VMM_IRQCHIP_SPLIT, 64);
    harness_load_guest(&h, "unclaimed", 1);
    struct vmm_stats st = VMM_INIT(struct vmm_stats);
    ck_assert_int_eq(vmm_vm_stats_read(h.vm, &st), -ENODATA); /* off */
    ck_assert_int_eq(vmm_vm_stats_enable(h.vm), 0);
    harness_run(&h);
    ck_assert_msg(h.exit.reason == VMM_EXIT_GUEST_EXIT && h.exit.status == 0,
                  "exit %d status %d: %s", h.exit.reason, h.exit.status, h.output);
    struct vmm_stats bad = {.size = 3};
    ck_assert_int_eq(vmm_vm_stats_read(h.vm, &bad), -EINVAL);
    ck_assert_int_eq(vmm_vm_stats_read(h.vm, NULL), -EINVAL);
    ck_assert_int_eq(vmm_vm_stats_read(h.vm, &st), 0);

    uint64_t pio_rd = 0, pio_wr = 0, mmio_rd = 0, mmio_wr = 0, in_sites = st.other_count;
    for (uint32_t i = 0; i < st.nr_sites; i++) {
        const struct vmm_stats_site *s = &st.sites[i];
        in_sites += s->count;
        if (s->kvm_reason == KVM_EXIT_IO && s->addr == 0x530)
            *(s->write ? &pio_wr : &pio_rd) += s->count;
        if (s->kvm_reason == KVM_EXIT_MMIO && (s->addr & ~0xfull) == 0xd1000000)
            *(s->write ? &mmio_wr : &mmio_rd) += s->count;
        if (i > 0)
            ck_assert_uint_le(s->ns, st.sites[i - 1].ns);
    }
    ck_assert_uint_eq(pio_rd, 6);
    ck_assert_uint_eq(pio_wr, 3);
    ck_assert_uint_ge(mmio_rd, 8);
    ck_assert_uint_ge(mmio_wr, 4);
    uint64_t by_reason = 0;
    for (unsigned r = 0; r < VMM_STATS_REASONS; r++)
        by_reason += st.reasons[r].count;
    ck_assert_uint_eq(by_reason, st.exits);
    ck_assert_uint_eq(in_sites, st.reasons[KVM_EXIT_IO].count + st.reasons[KVM_EXIT_MMIO].count +
                                    st.reasons[KVM_EXIT_X86_RDMSR].count +
                                    st.reasons[KVM_EXIT_X86_WRMSR].count +
                                    st.reasons[KVM_EXIT_HYPERCALL].count);
    ck_assert_uint_eq(st.exits, vmm_vcpu_exit_count(vmm_vm_vcpu(h.vm, 0)));
    ck_assert_uint_ge(st.first_run_ns, st.created_ns);
    ck_assert_uint_gt(st.guest_ns, 0);
    ck_assert_uint_gt(st.exit_ns, 0);
    ck_assert_str_eq(vmm_kvm_exit_reason_name(KVM_EXIT_MMIO), "MMIO");
    ck_assert_str_eq(vmm_kvm_exit_reason_name(100000), "?");
    harness_fini(&h);
}
END_TEST

START_TEST(uart_interrupts_reach_the_guest)
{
    struct harness h;
    harness_init(&h, chip(_i), 64);
    ck_assert_int_eq(write(h.input[1], "ping\n", 5), 5);
    harness_load_guest(&h, "uart_irq", 1);
    harness_run(&h);
    ck_assert_msg(h.exit.reason == VMM_EXIT_GUEST_EXIT && h.exit.status == 0,
                  "exit %d status %d: %s", h.exit.reason, h.exit.status, h.output);
    ck_assert_ptr_nonnull(strstr(h.output, "rx: ping"));
    ck_assert_ptr_nonnull(strstr(h.output, "uart_irq ok"));
    harness_fini(&h);
}
END_TEST

/* ---- run control from another thread ---- */

static const uint8_t spin[] = {0xeb, 0xfe}; /* jmp $ */

struct stopper {
    struct vmm_vm *vm;
    unsigned delay_ms;
};

static void *stop_later(void *arg)
{
    struct stopper *s = arg;
    sleep_ms(s->delay_ms);
    vmm_vm_stop(s->vm);
    return NULL;
}

START_TEST(stop_from_another_thread_ends_a_spinning_guest)
{
    struct harness h;
    harness_init(&h, chip(_i), 16);
    harness_load_raw(&h, spin, sizeof(spin), 2);
    struct stopper s = {h.vm, 100};
    pthread_t t;
    pthread_create(&t, NULL, stop_later, &s);
    harness_run(&h);
    pthread_join(t, NULL);
    ck_assert_int_eq(h.exit.reason, VMM_EXIT_STOPPED);
    /* The VM can run again after a stop. */
    pthread_create(&t, NULL, stop_later, &s);
    harness_run(&h);
    pthread_join(t, NULL);
    ck_assert_int_eq(h.exit.reason, VMM_EXIT_STOPPED);
    harness_fini(&h);
}
END_TEST

static atomic_ulong ticks;

static void tick_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
    ticks++;
}

static void *run_vm(void *arg)
{
    struct harness *h = arg;
    harness_run(h);
    return NULL;
}

START_TEST(pause_holds_every_vcpu_and_resume_lets_them_go)
{
    /* mov dx, 0x540; 1: out dx, al; jmp 1b */
    static const uint8_t loop[] = {0x66, 0xba, 0x40, 0x05, 0xee, 0xeb, 0xfd};
    struct vmm_bus_ops ops = {.size = sizeof(struct vmm_bus_ops), .write = tick_write};
    struct harness h;
    harness_init(&h, VMM_IRQCHIP_SPLIT, 16);
    ck_assert_int_eq(vmm_bus_register(vmm_vm_pio_bus(h.vm), 0x540, 1, &ops, NULL), 0);
    harness_load_raw(&h, loop, sizeof(loop), 2);
    ticks = 0;
    pthread_t t;
    pthread_create(&t, NULL, run_vm, &h);
    while (ticks < 100)
        sleep_ms(1);
    ck_assert_int_eq(vmm_vm_pause(h.vm), 0);
    unsigned long held = ticks;
    sleep_ms(100);
    ck_assert_uint_eq(ticks, held);
    ck_assert_int_eq(vmm_vm_resume(h.vm), 0);
    while (ticks < held + 100)
        sleep_ms(1);
    vmm_vm_stop(h.vm);
    pthread_join(t, NULL);
    ck_assert_int_eq(h.exit.reason, VMM_EXIT_STOPPED);
    harness_fini(&h);
}
END_TEST

START_TEST(i8042_reset_ends_the_run)
{
    static const uint8_t reset[] = {0xb0, 0xfe, 0xe6, 0x64, 0xf4}; /* mov al,0xfe; out 0x64,al */
    struct harness h;
    harness_init(&h, chip(_i), 16);
    harness_load_raw(&h, reset, sizeof(reset), 1);
    harness_run(&h);
    ck_assert_int_eq(h.exit.reason, VMM_EXIT_RESET);
    harness_fini(&h);
}
END_TEST

START_TEST(fatal_exits_end_the_run_with_a_reason_and_rip)
{
    /* ud2 with no IDT: #UD -> #DF -> triple fault (or, under an instruction
     * emulator, an internal error); either way a named end, never a hang. */
    static const uint8_t ud2[] = {0x90, 0x0f, 0x0b};
    struct harness h;
    harness_init(&h, chip(_i), 16);
    harness_load_raw(&h, ud2, sizeof(ud2), 1);
    harness_run(&h);
    ck_assert_msg(h.exit.reason == VMM_EXIT_SHUTDOWN || h.exit.reason == VMM_EXIT_ERROR,
                  "reason %s", vmm_exit_reason_name(h.exit.reason));
    ck_assert_str_ne(h.exit.detail, "");
    ck_assert_uint_eq(h.exit.vcpu, 0);
    harness_fini(&h);
}
END_TEST

START_TEST(dirty_log_sees_guest_and_vmm_writes)
{
    static const uint8_t code[] = {
        0xc6, 0x04, 0x25, 0x00, 0x00, 0x30, 0x00, 0x01, /* mov byte [0x300000], 1 */
        0xc6, 0x04, 0x25, 0x00, 0x50, 0x30, 0x00, 0x01, /* mov byte [0x305000], 1 */
        0xb0, 0x00, 0xe6, 0xf4,                         /* exit 0 */
    };
    struct harness h;
    harness_init(&h, VMM_IRQCHIP_SPLIT, 16);
    harness_load_raw(&h, code, sizeof(code), 1);
    uint64_t bitmap[64];
    ck_assert_int_eq(vmm_vm_dirty_log_fetch(h.vm, 0, bitmap, 64), -EINVAL); /* not started */
    ck_assert_int_eq(vmm_vm_dirty_log_start(h.vm, 0), 0);
    ck_assert_int_eq(vmm_vm_dirty_log_fetch(h.vm, 0, bitmap, 1), -ENOSPC);
    ck_assert_int_eq(vmm_vm_dirty_log_fetch(h.vm, 0, bitmap, 64), 0); /* clean slate */
    harness_run(&h);
    ck_assert_int_eq(h.exit.reason, VMM_EXIT_GUEST_EXIT);
    uint8_t one = 1;
    ck_assert_int_eq(vmm_memory_write(vmm_vm_memory(h.vm), 0x400000, &one, 1), 0);
    ck_assert_int_eq(vmm_vm_dirty_log_fetch(h.vm, 0, bitmap, 64), 0);
    unsigned pages[] = {0x300, 0x305, 0x400};
    for (unsigned i = 0; i < 3; i++)
        ck_assert_msg(bitmap[pages[i] / 64] & (1ull << (pages[i] % 64)), "page %x not dirty",
                      pages[i]);
    ck_assert(!(bitmap[0x301 / 64] & (1ull << (0x301 % 64))));
    ck_assert_int_eq(vmm_vm_dirty_log_fetch(h.vm, 0, bitmap, 64), 0);
    ck_assert(!(bitmap[0x400 / 64] & (1ull << (0x400 % 64)))); /* fetch cleared it */
    ck_assert_int_eq(vmm_vm_dirty_log_stop(h.vm, 0), 0);
    harness_fini(&h);
}
END_TEST

START_TEST(bad_configuration_is_refused)
{
    struct vmm_vm *vm;
    struct vmm_vm_config cfg = VMM_INIT(struct vmm_vm_config, .irqchip = 42);
    ck_assert_int_eq(vmm_vm_create(&cfg, &vm), -EINVAL);
    cfg = VMM_INIT(struct vmm_vm_config, .kvm_path = "/nonexistent/kvm");
    ck_assert_int_eq(vmm_vm_create(&cfg, &vm), -ENOENT);
    /* The growth convention: a size of 0 or past the library's struct is
     * refused before anything opens; an older, shorter struct gets defaults
     * (kick_signal here) for the fields it lacks. */
    cfg = VMM_INIT(struct vmm_vm_config, .kvm_path = "/nonexistent/kvm");
    cfg.size = 0;
    ck_assert_int_eq(vmm_vm_create(&cfg, &vm), -EINVAL);
    cfg.size = sizeof(cfg) + 8;
    ck_assert_int_eq(vmm_vm_create(&cfg, &vm), -EINVAL);
    cfg = VMM_INIT(struct vmm_vm_config, .kick_signal = -1);
    cfg.size = offsetof(struct vmm_vm_config, kick_signal);
    ck_assert_int_eq(vmm_vm_create(&cfg, &vm), 0);
    vmm_vm_destroy(vm);

    ck_assert_int_eq(vmm_vm_create(NULL, &vm), 0);
    /* A region config of a size the library does not know leaves no map. */
    struct vmm_region_config rc = VMM_INIT(struct vmm_region_config, .len = 1 << 20);
    rc.size = 0;
    ck_assert_int_eq(vmm_vm_add_memory(vm, &rc), -EINVAL);
    rc.size = sizeof(rc) + 8;
    ck_assert_int_eq(vmm_vm_add_memory(vm, &rc), -EINVAL);
    ck_assert_ptr_null(vmm_vm_memory(vm));
    struct vmm_vcpu *vcpu;
    ck_assert_int_eq(vmm_vcpu_create(vm, 1, &vcpu), -EINVAL); /* out of order */
    ck_assert_int_eq(vmm_vcpu_create(vm, 0, &vcpu), 0);
    struct vmm_x86_boot_state boot = VMM_INIT(struct vmm_x86_boot_state, .entry = 0x100000);
    ck_assert_int_eq(vmm_vcpu_set_boot_state(vcpu, &boot), -EFAULT); /* no memory */
    ck_assert_int_eq(vmm_vm_set_irq(vm, VMM_IOAPIC_PINS, true), -EINVAL);
    ck_assert_int_eq(vmm_vm_set_irq(vm, 4, true), 0);
    /* A resampling irqfd under the split irqchip: on an IOAPIC pin only,
     * once per eventfd. */
    int efd = eventfd(0, EFD_CLOEXEC), rfd = eventfd(0, EFD_CLOEXEC);
    ck_assert_int_ge(efd, 0);
    ck_assert_int_ge(rfd, 0);
    ck_assert_int_eq(vmm_vm_irqfd(vm, efd, 4, rfd), 0);
    ck_assert_int_eq(vmm_vm_irqfd(vm, efd, 4, rfd), -EEXIST);
    ck_assert_int_eq(vmm_vm_irqfd(vm, efd, VMM_IOAPIC_PINS, rfd), -EINVAL);
    ck_assert_int_eq(vmm_vm_irqfd_remove(vm, efd, 4), 0);
    ck_assert_int_eq(vmm_vm_irqfd(vm, efd, 4, rfd), 0); /* left for vmm_vm_destroy */
    close(efd);
    close(rfd);
    vmm_vm_destroy(vm);
    vmm_vm_destroy(NULL);
}
END_TEST

START_TEST(boot_states_and_exit_records_check_their_size)
{
    /* Growth convention (vmm/abi.h): a boot state or an exit record whose
     * .size is 0 or larger than the library's struct is refused with -EINVAL
     * before anything changes or runs; an older, shorter one is read (or
     * filled) that far, the fields it lacks taking their zero defaults. */
    static const uint8_t reset[] = {0xb0, 0xfe, 0xe6, 0x64, 0xf4}; /* mov al,0xfe; out 0x64,al */
    struct harness h;
    harness_init(&h, VMM_IRQCHIP_SPLIT, 16);
    harness_load_raw(&h, reset, sizeof(reset), 1);
    struct vmm_vcpu *vcpu = vmm_vm_vcpu(h.vm, 0);
    struct kvm_regs regs;

    struct vmm_x86_boot_state boot =
        VMM_INIT(struct vmm_x86_boot_state, .entry = 0x200000, .arg0 = 7, .arg1 = 9);
    boot.size = 0;
    ck_assert_int_eq(vmm_vcpu_set_boot_state(vcpu, &boot), -EINVAL);
    boot.size = sizeof(boot) + 8;
    ck_assert_int_eq(vmm_vcpu_set_boot_state(vcpu, &boot), -EINVAL);
    struct vmm_x86_pm32_boot_state pm32 =
        VMM_INIT(struct vmm_x86_pm32_boot_state, .entry = 0x200000, .ebx = 7, .esi = 9);
    pm32.size = 0;
    ck_assert_int_eq(vmm_vcpu_set_boot_state_pm32(vcpu, &pm32), -EINVAL);
    pm32.size = sizeof(pm32) + 4;
    ck_assert_int_eq(vmm_vcpu_set_boot_state_pm32(vcpu, &pm32), -EINVAL);
    ck_assert_int_eq(vmm_vcpu_get_regs(vcpu, &regs), 0);
    ck_assert_uint_eq(regs.rip, HARNESS_RAW_ENTRY); /* untouched */

    pm32.size = offsetof(struct vmm_x86_pm32_boot_state, esi);
    ck_assert_int_eq(vmm_vcpu_set_boot_state_pm32(vcpu, &pm32), 0);
    ck_assert_int_eq(vmm_vcpu_get_regs(vcpu, &regs), 0);
    ck_assert_uint_eq(regs.rip, 0x200000);
    ck_assert_uint_eq(regs.rbx, 7);
    ck_assert_uint_eq(regs.rsi, 0); /* beyond the older struct: default */

    boot = VMM_INIT(struct vmm_x86_boot_state, .entry = HARNESS_RAW_ENTRY, .arg0 = 7, .arg1 = 9);
    boot.size = offsetof(struct vmm_x86_boot_state, arg1);
    ck_assert_int_eq(vmm_vcpu_set_boot_state(vcpu, &boot), 0);
    ck_assert_int_eq(vmm_vcpu_get_regs(vcpu, &regs), 0);
    ck_assert_uint_eq(regs.rip, HARNESS_RAW_ENTRY);
    ck_assert_uint_eq(regs.rdi, 7);
    ck_assert_uint_eq(regs.rsi, 0);

    struct vmm_exit ex = VMM_INIT(struct vmm_exit);
    ex.size = 0;
    ck_assert_int_eq(vmm_vm_run(h.vm, &ex), -EINVAL);
    ck_assert_int_eq(vmm_vcpu_run(vcpu, &ex), -EINVAL);
    ex.size = sizeof(ex) + 8;
    ck_assert_int_eq(vmm_vm_run(h.vm, &ex), -EINVAL);
    ck_assert_int_eq(vmm_vcpu_run(vcpu, &ex), -EINVAL);
    ck_assert_uint_eq(vmm_vcpu_exit_count(vcpu), 0); /* nothing ran */
    ck_assert_int_eq(ex.reason, VMM_EXIT_NONE);

    /* An older record without detail: filled up to it, detail untouched. */
    memset(&ex, 0x5a, sizeof(ex));
    ex.size = offsetof(struct vmm_exit, detail);
    ck_assert_int_eq(vmm_vm_run(h.vm, &ex), 0);
    ck_assert_uint_eq(ex.size, offsetof(struct vmm_exit, detail));
    ck_assert_int_eq(ex.reason, VMM_EXIT_RESET);
    ck_assert_uint_eq((uint8_t)ex.detail[0], 0x5a);
    harness_fini(&h);
}
END_TEST

/* A VM with vCPU 0, and the CPUID table (up to 256 entries) it presents. */
static int vm_with_cpuid(struct vmm_vm **vm, struct vmm_vcpu **vcpu, struct kvm_cpuid_entry2 *e)
{
    ck_assert_int_eq(vmm_vm_create(NULL, vm), 0);
    ck_assert_int_eq(vmm_vcpu_create(*vm, 0, vcpu), 0);
    int n = vmm_vcpu_get_cpuid(*vcpu, e, 256);
    ck_assert_int_gt(n, 2);
    return n;
}

START_TEST(cpuid_filter_round_trips)
{
    struct vmm_vm *vm;
    struct vmm_vcpu *vcpu;
    static struct kvm_cpuid_entry2 e[256];
    int n = vm_with_cpuid(&vm, &vcpu, e);
    bool found = false;
    for (int i = 0; i < n; i++) {
        if (e[i].function == 1) {
            ck_assert(e[i].ecx & (1u << 31)); /* hypervisor bit */
            e[i].ecx &= ~(1u << 26);          /* filter XSAVE out */
            found = true;
        }
    }
    ck_assert(found);
    ck_assert_int_eq(vmm_vcpu_set_cpuid(vcpu, e, (unsigned)n), 0);
    static struct kvm_cpuid_entry2 back[256];
    ck_assert_int_eq(vmm_vcpu_get_cpuid(vcpu, back, 256), n);
    for (int i = 0; i < n; i++)
        if (back[i].function == 1)
            ck_assert(!(back[i].ecx & (1u << 26)));
    ck_assert_int_eq(vmm_vcpu_set_cpuid(vcpu, e, 100000), -E2BIG);
    vmm_vm_destroy(vm);
}
END_TEST

START_TEST(cpuid_offers_the_tsc_deadline_timer)
{
    /* KVM_GET_SUPPORTED_CPUID leaves the TSC-deadline timer out although the
     * in-kernel LAPIC has it: without it Linux calibrates its LAPIC timer
     * against a PIT, which the split irqchip lacks (acpi=off guests lost
     * their clock). The vCPU offers it exactly when KVM says it can. */
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    ck_assert_int_ge(kvm, 0);
    bool cap = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0;
    close(kvm);
    struct vmm_vm *vm;
    struct vmm_vcpu *vcpu;
    static struct kvm_cpuid_entry2 e[256];
    int n = vm_with_cpuid(&vm, &vcpu, e);
    bool leaf1 = false;
    for (int i = 0; i < n; i++) {
        if (e[i].function == 1) {
            leaf1 = true;
            ck_assert_int_eq(!!(e[i].ecx & (1u << 24)), cap);
        }
    }
    ck_assert(leaf1);
    /* --cpu-disable tsc-deadline still takes it away. */
    ck_assert_int_ge(vmm_cpuid_set_feature(e, (unsigned)n, "tsc-deadline", false), 0);
    for (int i = 0; i < n; i++)
        if (e[i].function == 1)
            ck_assert_uint_eq(e[i].ecx & (1u << 24), 0);
    vmm_vm_destroy(vm);
}
END_TEST

START_TEST(cpuid_named_features_apply)
{
    /* What vmm-run --cpu-disable does, on KVM's real table: the named bits
     * are gone from what the vCPU presents afterwards. */
    struct vmm_vm *vm;
    struct vmm_vcpu *vcpu;
    static struct kvm_cpuid_entry2 e[256], back[256];
    int n = vm_with_cpuid(&vm, &vcpu, e);
    ck_assert_int_ge(vmm_cpuid_set_feature(e, (unsigned)n, "xsave", false), 0);
    ck_assert_int_ge(vmm_cpuid_set_feature(e, (unsigned)n, "kvmclock", false), 0);
    ck_assert_int_eq(vmm_vcpu_set_cpuid(vcpu, e, (unsigned)n), 0);
    ck_assert_int_eq(vmm_vcpu_get_cpuid(vcpu, back, 256), n);
    bool leaf1 = false;
    for (int i = 0; i < n; i++) {
        if (back[i].function == 1) {
            leaf1 = true;
            ck_assert_uint_eq(back[i].ecx & (7u << 26), 0); /* XSAVE, OSXSAVE, AVX */
        }
        if (back[i].function == 7 && back[i].index == 0)
            ck_assert_uint_eq(back[i].ebx & ((1u << 5) | (1u << 16)), 0); /* AVX2, AVX-512F */
        if (back[i].function == 0x40000001)
            ck_assert_uint_eq(back[i].eax & 0x9u, 0); /* both kvmclock bits */
    }
    ck_assert(leaf1);
    vmm_vm_destroy(vm);
}
END_TEST

/* ---- device memory slots and memory listeners (lib/vfio's BAR mappings) ---- */

#define DEVICE_GPA 0xd1000000ul /* no RAM, nothing on the MMIO bus */

static unsigned listened;
static int listen_result;

static int on_region(void *opaque, unsigned region)
{
    (void)opaque;
    listened = region + 1;
    return listen_result;
}

START_TEST(device_slots_map_host_memory_without_exits)
{
    /* mov eax, [DEVICE_GPA]; add eax, 1; mov [DEVICE_GPA + 4], eax;
     * out 0xf4, al; jmp $ */
    static const uint8_t code[] = {0xa1, 0x00, 0x00, 0x00, 0xd1, 0x00, 0x00, 0x00, 0x00,
                                   0x83, 0xc0, 0x01, 0xa3, 0x04, 0x00, 0x00, 0xd1, 0x00,
                                   0x00, 0x00, 0x00, 0xe6, 0xf4, 0xeb, 0xfe};
    uint32_t *dev = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(dev, MAP_FAILED);
    dev[0] = 41;
    struct harness h;
    harness_init(&h, VMM_IRQCHIP_SPLIT, 16);
    unsigned slot;
    ck_assert_int_eq(vmm_vm_device_slot_set(h.vm, DEVICE_GPA, 4096, dev, &slot), 0);
    harness_load_raw(&h, code, sizeof(code), 1);
    harness_run(&h);
    ck_assert_int_eq(h.exit.reason, VMM_EXIT_GUEST_EXIT);
    ck_assert_int_eq(h.exit.status, 42);
    ck_assert_uint_eq(dev[1], 42); /* the guest's store, straight into host memory */
    vmm_vm_device_slot_clear(h.vm, slot);
    vmm_vm_device_slot_clear(h.vm, slot); /* twice: nothing */
    harness_fini(&h);

    /* Without the slot the same code reads all ones from the empty bus. */
    harness_init(&h, VMM_IRQCHIP_SPLIT, 16);
    ck_assert_int_eq(vmm_vm_device_slot_set(h.vm, DEVICE_GPA, 4096, dev, &slot), 0);
    vmm_vm_device_slot_clear(h.vm, slot);
    harness_load_raw(&h, code, sizeof(code), 1);
    harness_run(&h);
    ck_assert_int_eq(h.exit.reason, VMM_EXIT_GUEST_EXIT);
    ck_assert_int_eq(h.exit.status, 0); /* 0xffffffff + 1 */
    /* The slots run out after VMM_VM_DEVICE_SLOTS. */
    unsigned slots[VMM_VM_DEVICE_SLOTS];
    for (unsigned i = 0; i < VMM_VM_DEVICE_SLOTS; i++)
        ck_assert_int_eq(
            vmm_vm_device_slot_set(h.vm, DEVICE_GPA + i * 4096ul, 4096, dev, &slots[i]), 0);
    ck_assert_int_eq(vmm_vm_device_slot_set(h.vm, DEVICE_GPA + 0x100000, 4096, dev, &slot),
                     -ENOSPC);
    for (unsigned i = 0; i < VMM_VM_DEVICE_SLOTS; i++)
        vmm_vm_device_slot_clear(h.vm, slots[i]);
    harness_fini(&h);
    munmap(dev, 4096);
}
END_TEST

START_TEST(memory_listeners_see_added_regions)
{
    struct vmm_vm *vm;
    ck_assert_int_eq(vmm_vm_create(NULL, &vm), 0);
    struct vmm_region_config rc = VMM_INIT(struct vmm_region_config, .gpa = 0, .len = 1u << 20);
    ck_assert_int_eq(vmm_vm_add_memory(vm, &rc), 0);
    listened = 0;
    listen_result = 0;
    for (unsigned i = 0; i < VMM_VM_MAX_LISTENERS; i++)
        ck_assert_int_eq(vmm_vm_add_memory_listener(vm, on_region, (void *)(uintptr_t)i), 0);
    ck_assert_int_eq(vmm_vm_add_memory_listener(vm, on_region, NULL), -ENOSPC);
    for (unsigned i = 1; i < VMM_VM_MAX_LISTENERS; i++)
        vmm_vm_remove_memory_listener(vm, on_region, (void *)(uintptr_t)i);
    rc.gpa = 1u << 20;
    ck_assert_int_eq(vmm_vm_add_memory(vm, &rc), 1);
    ck_assert_uint_eq(listened, 2);
    /* A listener's failure fails the call. */
    listen_result = -EIO;
    rc.gpa = 2u << 20;
    ck_assert_int_eq(vmm_vm_add_memory(vm, &rc), -EIO);
    vmm_vm_remove_memory_listener(vm, on_region, NULL);
    listened = 0;
    rc.gpa = 3u << 20;
    ck_assert_int_eq(vmm_vm_add_memory(vm, &rc), 3);
    ck_assert_uint_eq(listened, 0);
    vmm_vm_destroy(vm);
}
END_TEST

int main(void)
{
    vmm_test_require_kvm();
    Suite *s = suite_create("vm");
    TCase *tc = tcase_create("guests");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, hello_prints_and_exits_zero, 0, 2);
    tcase_add_test(tc, mempattern_is_visible_to_the_host);
    tcase_add_loop_test(tc, smp_every_vcpu_reports_its_apic_id, 0, 2);
    tcase_add_loop_test(tc, pio_and_mmio_round_trips, 0, 2);
    tcase_add_test(tc, run_threads_have_small_stacks);
    tcase_add_test(tc, unclaimed_accesses_read_ones_and_are_counted);
    tcase_add_test(tc, exit_profile_counts_the_known_exits);
    tcase_add_loop_test(tc, uart_interrupts_reach_the_guest, 0, 2);
    tcase_add_loop_test(tc, stop_from_another_thread_ends_a_spinning_guest, 0, 2);
    tcase_add_test(tc, pause_holds_every_vcpu_and_resume_lets_them_go);
    tcase_add_loop_test(tc, i8042_reset_ends_the_run, 0, 2);
    tcase_add_loop_test(tc, fatal_exits_end_the_run_with_a_reason_and_rip, 0, 2);
    tcase_add_test(tc, dirty_log_sees_guest_and_vmm_writes);
    tcase_add_test(tc, bad_configuration_is_refused);
    tcase_add_test(tc, boot_states_and_exit_records_check_their_size);
    tcase_add_test(tc, cpuid_filter_round_trips);
    tcase_add_test(tc, cpuid_named_features_apply);
    tcase_add_test(tc, cpuid_offers_the_tsc_deadline_timer);
    tcase_add_test(tc, device_slots_map_host_memory_without_exits);
    tcase_add_test(tc, memory_listeners_see_added_regions);
    suite_add_tcase(s, tc);
    return vmm_test_run_suite(s);
}
