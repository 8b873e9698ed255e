/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An embedding that brings its own devices and drives its vCPU step by step:
 *
 * - an "accumulator" on ports 0x560-0x567 that is not registered anywhere:
 *   vmm_vcpu_run_once hands back every access to it as an exit record, and
 *   this program answers reads by writing the record's data in place;
 * - a virtio "echo" device written here against the public device model
 *   (struct vmm_virtio_device): it sends each request's bytes back XORed with
 *   a key the driver sets in its configuration space.
 *
 * usage: vmm-custom-device GUEST.elf   (tests/guests/custom_device.c is one)
 * Prints what the devices saw and exits with the guest's status.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmm/vmm.h>

/* ---- the accumulator: handled from exit records ---- */

#define ACC_PORT  0x560 /* 4-byte OUT adds, 4-byte IN reads the sum */
#define TAPE_PORT 0x564 /* OUT appends to the tape, IN reads the message */
#define ACC_PORTS 8

struct accumulator {
    uint32_t sum;
    unsigned adds, reads;
    char tape[64];
    size_t tape_len;
    const char *message; /* what IN from TAPE_PORT reads, byte by byte */
    size_t message_pos;
};

/* Answer one port I/O record for our ports; false when it is not ours. A
 * REP INS/OUTS comes as one record with count accesses. */
static bool accumulator_io(struct accumulator *acc, const struct vmm_vcpu_exit_io *io)
{
    if (io->port < ACC_PORT || io->port >= ACC_PORT + ACC_PORTS)
        return false;
    for (uint32_t i = 0; i < io->count; i++) {
        uint8_t *data = io->data + (size_t)i * io->size;
        if (io->port == ACC_PORT && io->size == 4) {
            uint32_t v;
            memcpy(&v, data, 4);
            if (io->write) {
                acc->sum += v;
                acc->adds++;
            } else {
                memcpy(data, &acc->sum, 4);
                acc->reads++;
            }
        } else if (io->port == TAPE_PORT && io->size == 1) {
            if (io->write && acc->tape_len < sizeof(acc->tape) - 1)
                acc->tape[acc->tape_len++] = (char)data[0];
            else if (!io->write)
                data[0] = (uint8_t)acc->message[acc->message_pos++ % strlen(acc->message)];
        }
        /* Anything else on our ports reads as all ones (the record's
         * default) and is ignored on write. */
    }
    return true;
}

/* ---- the echo device: a virtio device model outside the library ---- */

#define ECHO_DEVICE_ID  0x4543484fu /* "ECHO": not a virtio standard id */
#define ECHO_MMIO_BASE  0xd0000000ull
#define ECHO_GSI        5
#define ECHO_CFG_KEY    0 /* le32, read/write */
#define ECHO_CFG_SERVED 4 /* le32, read-only */
#define ECHO_CFG_SIZE   8
#define ECHO_MAX_BYTES  256 /* of one request */

struct echo {
    struct vmm_virtio_transport *t;
    uint32_t key;    /* guarded by the device lock */
    uint32_t served; /* guarded by the device lock */
};

static int echo_attach(void *opaque, struct vmm_virtio_transport *t)
{
    ((struct echo *)opaque)->t = t;
    return 0;
}

static void store_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void echo_config_read(void *opaque, uint32_t offset, void *data, uint32_t len)
{
    struct echo *d = opaque;
    uint8_t cfg[ECHO_CFG_SIZE];
    store_le32(cfg + ECHO_CFG_KEY, d->key);
    store_le32(cfg + ECHO_CFG_SERVED, d->served);
    memcpy(data, cfg + offset, len); /* the transport checked the range */
}

static void echo_config_write(void *opaque, uint32_t offset, const void *data, uint32_t len)
{
    struct echo *d = opaque;
    uint8_t cfg[ECHO_CFG_SIZE];
    store_le32(cfg + ECHO_CFG_KEY, d->key);
    memcpy(cfg + offset, data, len);
    d->key = cfg[0] | (uint32_t)cfg[1] << 8 | (uint32_t)cfg[2] << 16 | (uint32_t)cfg[3] << 24;
}

static void echo_reset(void *opaque)
{
    ((struct echo *)opaque)->key = 0;
}

/* Runs on the VM's event loop thread (the queue's ioeventfd). */
static void echo_queue_notify(void *opaque, unsigned index)
{
    struct echo *d = opaque;
    struct vmm_virtq *q = vmm_virtio_queue(d->t, index);
    struct vmm_virtq_chain *c;
    while (vmm_virtq_pop(q, &c) == 1) {
        uint8_t buf[ECHO_MAX_BYTES];
        int n = vmm_virtq_chain_read(c, 0, buf, sizeof(buf));
        if (n < 0)
            n = 0;
        for (int i = 0; i < n; i++)
            buf[i] ^= (uint8_t)d->key;
        int w = vmm_virtq_chain_write(c, 0, buf, (size_t)n);
        (void)vmm_virtq_push(q, c, w < 0 ? 0 : (uint32_t)w);
        d->served++;
    }
    vmm_virtq_notify(q);
}

static void echo_destroy(void *opaque)
{
    free(opaque);
}

static const struct vmm_virtio_device_ops echo_ops = {
    .size = sizeof(struct vmm_virtio_device_ops),
    .attach = echo_attach,
    .config_read = echo_config_read,
    .config_write = echo_config_write,
    .reset = echo_reset,
    .queue_notify = echo_queue_notify,
    .destroy = echo_destroy,
};

/* ---- the program ---- */

static void log_line(void *opaque, enum vmm_log_level level, const char *msg)
{
    (void)opaque;
    fprintf(stderr, "libvmm %s: %s\n", vmm_log_level_name(level), msg);
}

static void *event_loop_main(void *loop)
{
    (void)vmm_event_loop_run(loop);
    return NULL;
}

/* Step the vCPU until the VM's run ends. Returns 0 with *end filled, -EIO
 * after an exit this program does not handle (named on stderr), or a -errno
 * from the library. */
static int step_loop(struct vmm_vcpu *vcpu, struct accumulator *acc, unsigned *unclaimed,
                     struct vmm_exit *end)
{
    struct vmm_vcpu_exit ex = {.size = sizeof(ex)};
    for (;;) {
        int r = vmm_vcpu_run_once(vcpu, &ex);
        if (r < 0)
            return r;
        switch (ex.kind) {
        case VMM_VCPU_EXIT_HANDLED: /* a device of the library's took it */
            break;
        case VMM_VCPU_EXIT_END: /* the exit device, or vmm_vm_stop */
            *end = ex.end;
            return 0;
        case VMM_VCPU_EXIT_IO:
            /* Not ours either (e.g. the guest masking a PIC this machine does
             * not have): reads keep the all-ones default. */
            if (!accumulator_io(acc, &ex.io))
                ++*unclaimed;
            break;
        case VMM_VCPU_EXIT_MMIO:
            ++*unclaimed;
            break;
        default:
            fprintf(stderr, "unexpected exit: %s (KVM exit %u)\n", vmm_vcpu_exit_kind_name(ex.kind),
                    ex.kvm_reason);
            return -EIO;
        }
    }
}

/* Run the VM with the vCPU stepped on this thread and the VM's event loop on
 * another (queue notifications arrive through ioeventfds on it: vmm_vm_run
 * would run it on a thread of its own; stepping, we do), then report. */
static int run(struct vmm_vm *vm, struct vmm_vcpu *vcpu, const struct echo *echo)
{
    struct vmm_event_loop *loop = vmm_vm_event_loop(vm);
    pthread_t loop_thread;
    if (!loop)
        return -ENOMEM;
    int r = -pthread_create(&loop_thread, NULL, event_loop_main, loop);
    if (r < 0)
        return r;
    struct accumulator acc = {.message = "libvmm"};
    unsigned unclaimed = 0;
    struct vmm_exit end = VMM_INIT(struct vmm_exit);
    r = step_loop(vcpu, &acc, &unclaimed, &end);
    vmm_event_loop_stop(loop);
    pthread_join(loop_thread, NULL);
    if (r < 0)
        return r;
    /* The loop thread is gone: the echo device's state is ours to read. */
    printf("custom-device: accumulator %u adds, %u reads, sum %u; tape '%.*s'; "
           "%u other unclaimed accesses\n",
           acc.adds, acc.reads, acc.sum, (int)acc.tape_len, acc.tape, unclaimed);
    printf("custom-device: echo served %u requests, key 0x%x\n", echo->served, echo->key);
    printf("custom-device: guest ended: %s, status %d\n", vmm_exit_reason_name(end.reason),
           end.status);
    return end.reason == VMM_EXIT_GUEST_EXIT ? end.status : 1;
}

/* RAM, the guest program, a console on stdout, the exit device, one vCPU. */
static int setup(struct vmm_vm *vm, const char *guest, struct vmm_load_result *image,
                 struct vmm_vcpu **vcpu)
{
    struct vmm_region_config ram = {
        .size = sizeof(struct vmm_region_config), .gpa = 0, .len = 64 << 20};
    struct vmm_uart_config console = VMM_INIT(struct vmm_uart_config, .out_fd = 1, .in_fd = -1);
    int r;
    if ((r = vmm_vm_add_memory(vm, &ram)) < 0 ||
        (r = vmm_elf_load_file(vmm_vm_memory(vm), guest, NULL, image)) < 0 ||
        (r = vmm_vm_add_uart(vm, VMM_COM1_PORT, VMM_COM1_IRQ, &console, NULL)) < 0 ||
        (r = vmm_vm_add_exit_device(vm, VMM_EXIT_PORT)) < 0 ||
        (r = vmm_vcpu_create(vm, 0, vcpu)) < 0)
        return r;
    struct vmm_x86_boot_state boot =
        VMM_INIT(struct vmm_x86_boot_state, .entry = image->entry, .arg0 = 0, .arg1 = 1);
    return vmm_vcpu_set_boot_state(*vcpu, &boot);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s GUEST.elf\n", argv[0]);
        return 2;
    }
    vmm_log_set_handler(log_line, NULL, VMM_LOG_WARN);

    struct vmm_vm *vm;
    int r = vmm_vm_create(NULL, &vm);
    if (r < 0) {
        fprintf(stderr, "create VM: %s\n", vmm_strerror(r));
        return 1;
    }
    struct vmm_load_result image = VMM_INIT(struct vmm_load_result);
    struct vmm_vcpu *vcpu;
    struct echo *echo = calloc(1, sizeof(*echo));
    r = echo ? setup(vm, argv[1], &image, &vcpu) : -ENOMEM;
    if (r < 0) {
        free(echo);
    } else {
        struct vmm_virtio_device dev = VMM_INIT(
            struct vmm_virtio_device, .type = ECHO_DEVICE_ID, .num_queues = 1, .queue_max_size = 16,
            .config_size = ECHO_CFG_SIZE, .ops = &echo_ops, .opaque = echo, .name = "virtio-echo");
        /* The transport owns echo from here on (destroying it if this
         * fails), and the VM owns the transport: echo lives until
         * vmm_vm_destroy. */
        r = vmm_vm_add_virtio_mmio(vm, ECHO_MMIO_BASE, ECHO_GSI, &dev, NULL);
        if (r == 0)
            r = run(vm, vcpu, echo);
    }
    if (r < 0)
        fprintf(stderr, "error: %s%s%s\n", vmm_strerror(r), image.error[0] ? ": " : "",
                image.error[0] ? image.error : "");
    vmm_vm_destroy(vm);
    return r < 0 ? 1 : r;
}
