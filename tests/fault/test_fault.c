/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fault injection through the set-up paths that need no /dev/kvm: every
 * allocation and set-up system call of guest memory, the event loop, the
 * platform devices, the virtio transport with each device (blk over a real
 * io_uring) and the loaders fails in turn (fault.h), and each time the call
 * returns -errno with nothing leaked: no memory (LeakSanitizer, in the
 * sanitizer build) and no fd.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <vmm/devices.h>
#include <vmm/event.h>
#include <vmm/linux.h>
#include <vmm/loader.h>
#include <vmm/memory.h>
#include <vmm/virtio.h>
#include <vmm/virtio_blk.h>
#include <vmm/virtio_console.h>
#include <vmm/virtio_mmio.h>
#include <vmm/virtio_rng.h>

#include "check_compat.h"
#include "fault.h"

/* What an operation made, for its cleanup. */
struct made {
    struct vmm_memory *mem;
    struct vmm_event_loop *loop;
    struct vmm_virtio_mmio *mmio[3];
    struct vmm_uart *uart;
    struct vmm_rtc *rtc;
    struct vmm_i8042 *i8042;
    struct vmm_acpi_pm *pm;
};

static struct made made;
static char img[PATH_MAX], initrd[PATH_MAX];
static int pipe_in[2] = {-1, -1}, pipe_out[2] = {-1, -1};

static void setup(void)
{
    memset(&made, 0, sizeof(made));
    int fd = mkstemp(vmm_test_tmpname(img, sizeof(img), "fault-img-"));
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, 1 << 20), 0);
    close(fd);
    fd = mkstemp(vmm_test_tmpname(initrd, sizeof(initrd), "fault-initrd-"));
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "initrd!", 7), 7);
    close(fd);
    ck_assert_int_eq(pipe2(pipe_in, O_CLOEXEC | O_NONBLOCK), 0);
    ck_assert_int_eq(pipe2(pipe_out, O_CLOEXEC | O_NONBLOCK), 0);
}

static void teardown(void)
{
    unlink(img);
    unlink(initrd);
    for (int i = 0; i < 2; i++) {
        close(pipe_in[i]);
        close(pipe_out[i]);
    }
}

static void noop(void *ctx)
{
    (void)ctx;
}

/* ---- guest memory ---- */

static int memory_op(void *ctx)
{
    struct made *m = ctx;
    int r = vmm_memory_create(&m->mem);
    if (r < 0)
        return r;
    struct vmm_region_config anon =
        VMM_INIT(struct vmm_region_config, .gpa = 0, .len = 2 << 20, .flags = VMM_MEMORY_F_THP);
    struct vmm_region_config memfd = VMM_INIT(struct vmm_region_config, .gpa = 4 << 20,
                                              .len = 2 << 20, .backing = VMM_MEMORY_MEMFD);
    static uint8_t ext[1 << 16] __attribute__((aligned(4096)));
    if ((r = vmm_memory_add_region(m->mem, &anon)) < 0 ||
        (r = vmm_memory_add_region(m->mem, &memfd)) < 0 ||
        (r = vmm_memory_add_external(m->mem, 8 << 20, sizeof(ext), ext)) < 0) {
        vmm_memory_destroy(m->mem);
        return r;
    }
    return 0;
}

static void memory_cleanup(void *ctx)
{
    struct made *m = ctx;
    vmm_memory_destroy(m->mem);
}

START_TEST(test_memory)
{
    struct fault_case c = {"memory", memory_op, memory_cleanup, &made};
    ck_assert_uint_gt(fault_walk(&c), 3);
}
END_TEST

/* ---- event loop and platform devices ---- */

static int devices_op(void *ctx)
{
    struct made *m = ctx;
    int r = vmm_event_loop_create(&m->loop);
    if (r < 0)
        return r;
    struct vmm_uart_config uc =
        VMM_INIT(struct vmm_uart_config, .out_fd = pipe_out[1], .in_fd = pipe_in[0]);
    if ((r = vmm_uart_create(&uc, &m->uart)) < 0)
        goto no_uart;
    if ((r = vmm_rtc_create(&m->rtc)) < 0)
        goto no_rtc;
    if ((r = vmm_i8042_create(NULL, NULL, &m->i8042)) < 0)
        goto no_i8042;
    if ((r = vmm_acpi_pm_create(NULL, NULL, &m->pm)) < 0)
        goto no_pm;
    return 0;
no_pm:
    vmm_i8042_destroy(m->i8042);
no_i8042:
    vmm_rtc_destroy(m->rtc);
no_rtc:
    vmm_uart_destroy(m->uart);
no_uart:
    vmm_event_loop_destroy(m->loop);
    return r;
}

static void devices_cleanup(void *ctx)
{
    struct made *m = ctx;
    vmm_acpi_pm_destroy(m->pm);
    vmm_i8042_destroy(m->i8042);
    vmm_rtc_destroy(m->rtc);
    vmm_uart_destroy(m->uart);
    vmm_event_loop_destroy(m->loop);
}

START_TEST(test_devices)
{
    struct fault_case c = {"devices", devices_op, devices_cleanup, &made};
    ck_assert_uint_gt(fault_walk(&c), 3);
}
END_TEST

/* ---- virtio-mmio with blk, console and rng on an event loop ---- */

static int add_virtio(struct made *m, unsigned i, struct vmm_virtio_device *dev)
{
    struct vmm_virtio_mmio_config mc =
        VMM_INIT(struct vmm_virtio_mmio_config, .base = 0xd0000000 + 0x1000ull * i, .gsi = 5 + i,
                 .mem = m->mem, .loop = m->loop);
    return vmm_virtio_mmio_create(&mc, dev, &m->mmio[i]);
}

static void virtio_cleanup(void *ctx)
{
    struct made *m = ctx;
    for (int i = 2; i >= 0; i--) {
        vmm_virtio_mmio_destroy(m->mmio[i]);
        m->mmio[i] = NULL;
    }
    vmm_event_loop_destroy(m->loop);
    vmm_memory_destroy(m->mem);
}

static int virtio_op(void *ctx)
{
    struct made *m = ctx;
    static uint8_t ram[1 << 16] __attribute__((aligned(4096)));
    int r = vmm_memory_create(&m->mem);
    if (r < 0)
        return r;
    if ((r = vmm_memory_add_external(m->mem, 0, sizeof(ram), ram)) < 0 ||
        (r = vmm_event_loop_create(&m->loop)) < 0) {
        vmm_memory_destroy(m->mem);
        return r;
    }
    struct vmm_virtio_device dev = VMM_INIT(struct vmm_virtio_device);
    struct vmm_virtio_blk_config bc = VMM_INIT(struct vmm_virtio_blk_config, .path = img);
    struct vmm_virtio_console_config cc =
        VMM_INIT(struct vmm_virtio_console_config, .in_fd = pipe_in[0], .out_fd = pipe_out[1]);
    struct vmm_virtio_rng_config rc = VMM_INIT(struct vmm_virtio_rng_config, .rate_limit = 1000);
    /* A description a transport did not take is the caller's to free. */
    if ((r = vmm_virtio_blk_create(&bc, &dev)) < 0 || (r = add_virtio(m, 0, &dev)) < 0 ||
        (r = vmm_virtio_console_create(&cc, &dev)) < 0 || (r = add_virtio(m, 1, &dev)) < 0 ||
        (r = vmm_virtio_rng_create(&rc, &dev)) < 0 || (r = add_virtio(m, 2, &dev)) < 0) {
        virtio_cleanup(m);
        return r;
    }
    return 0;
}

START_TEST(test_virtio)
{
    struct fault_case c = {"virtio", virtio_op, virtio_cleanup, &made};
    ck_assert_uint_gt(fault_walk(&c), 10);
}
END_TEST

/* ---- loaders ---- */

static int loader_op(void *ctx)
{
    struct made *m = ctx;
    int r = vmm_memory_create(&m->mem);
    if (r < 0)
        return r;
    struct vmm_region_config ram = VMM_INIT(struct vmm_region_config, .gpa = 0, .len = 32 << 20);
    struct vmm_load_result res = VMM_INIT(struct vmm_load_result);
    struct vmm_linux_config lc =
        VMM_INIT(struct vmm_linux_config, .kernel_path = VMM_GUEST_DIR "/linux_boot.bzImage",
                 .initrd_path = initrd, .cmdline = "console=ttyS0");
    struct vmm_linux_boot boot = VMM_INIT(struct vmm_linux_boot);
    if ((r = vmm_memory_add_region(m->mem, &ram)) < 0 ||
        (r = vmm_elf_load_file(m->mem, VMM_GUEST_DIR "/hello.elf", NULL, &res)) < 0 ||
        (r = vmm_linux_boot_setup(m->mem, &lc, &boot)) < 0) {
        vmm_memory_destroy(m->mem);
        return r;
    }
    return 0;
}

START_TEST(test_loaders)
{
    struct fault_case c = {"loaders", loader_op, memory_cleanup, &made};
    ck_assert_uint_gt(fault_walk(&c), 3);
}
END_TEST

static Suite *fault_suite(void)
{
    Suite *s = suite_create("fault");
    TCase *tc = tcase_create("walk");
    tcase_add_checked_fixture(tc, setup, teardown);
    /* Hundreds of runs each; slower under the sanitizers' leak checks. */
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_memory);
    tcase_add_test(tc, test_devices);
    tcase_add_test(tc, test_virtio);
    tcase_add_test(tc, test_loaders);
    suite_add_tcase(s, tc);
    (void)noop;
    return s;
}

int main(void)
{
    return vmm_test_run_suite(fault_suite());
}
