/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The snapshot guest: fills a memory area with a pattern, sets up the
 * entropy device, then counts in three rounds of ten ticks, each tick a
 * line on COM1 with a value carried in a register from tick to tick. Before
 * the second and third rounds it says "waiting" and polls the UART until
 * the host sends a byte (the host snapshots it there), and each round reads
 * entropy through the virtqueue. At the end it checks the pattern and the
 * count in memory. Exit 0, or FAIL_* on the console and as the status.
 *
 * It also takes the VM generation ID's interrupt (GSI 3, the Generic Event
 * Device line a restore raises, devices.h): each one copies the 16-byte ID
 * at VMM_X86_VMGENID to GENID_SEEN (after a count of such interrupts), for
 * the host to compare with the ID it wrote. Nothing is printed for them, so
 * the output stays the same with or without restores.
 */
#include "virtio_drv.h"

#define AREA       0x200000ul
#define GENID      0xff000ul  /* VMM_X86_VMGENID */
#define GENID_SEEN 0x300000ul /* u64 interrupts taken, then the last ID read */
#define GENID_PIN  3
#define GENID_VEC  0x23
#define SPURIOUS   0xff
#define AREA_WORDS ((256u << 10) / 8)
#define ROUNDS     3
#define TICKS      10

enum { FAIL_RNG = 2, FAIL_MEMORY = 3, FAIL_COUNT = 4 };

static struct vdev dev;
static struct vq q;
static uint8_t buf[32];
static volatile uint64_t count;

static uint64_t pattern(uint64_t i)
{
    return i * 0x9e3779b97f4a7c15ull ^ 0x5a5a5a5a5a5a5a5aull;
}

__attribute__((interrupt)) static void genid_handler(struct interrupt_frame *f)
{
    (void)f;
    volatile uint64_t *seen = (volatile uint64_t *)GENID_SEEN;
    volatile uint64_t *id = (volatile uint64_t *)GENID;
    seen[1] = id[0];
    seen[2] = id[1];
    seen[0]++;
    lapic_eoi();
}

__attribute__((interrupt)) static void spurious_handler(struct interrupt_frame *f)
{
    (void)f;
}

/* The VM generation ID's edge on GENID_PIN to genid_handler, interrupts on
 * (the code below mostly polls, so they cost nothing). */
static void genid_setup(void)
{
    idt_set_handler(GENID_VEC, genid_handler);
    idt_set_handler(SPURIOUS, spurious_handler);
    pic_mask_all();
    lapic_enable();
    lapic_write(LAPIC_LVT_LINT0, LAPIC_LVT_MASKED);
    ioapic_set_redir(GENID_PIN, GENID_VEC, 0); /* fixed, physical, edge, active high */
    __asm__ volatile("sti" ::: "memory");
}

static int rng_read(unsigned k)
{
    uint16_t head = (uint16_t)(k % VQ_SIZE);
    vq_desc(&q, head, (uint64_t)buf, sizeof(buf), VIRTQ_DESC_F_WRITE, 0);
    vq_submit(&q, head);
    uint32_t id, len;
    if (vq_wait(&q, &id, &len) < 0 || id != head || len != sizeof(buf)) {
        printf("snapcount: entropy request %u failed\n", k);
        return -1;
    }
    return 0;
}

static char wait_for_host(void)
{
    /* Interrupts on where the host snapshots it (vq_wait leaves them off). */
    __asm__ volatile("sti" ::: "memory");
    puts("waiting\n");
    while (!(inb(COM1_LSR) & UART_LSR_DR))
        cpu_pause();
    return (char)inb(COM1_RBR);
}

int guest_main(unsigned cpu, unsigned ncpus)
{
    (void)ncpus;
    if (cpu != 0)
        guest_park();
    genid_setup();
    volatile uint64_t *area = (volatile uint64_t *)AREA;
    for (uint64_t i = 0; i < AREA_WORDS; i++)
        area[i] = pattern(i);
    if (vdev_find(&dev, VIRTIO_ID_RNG, 0) < 0 || vdev_init(&dev, VIRTIO_F_EVENT_IDX) < 0 ||
        vq_setup(&dev, &q, 0) < 0 || vdev_driver_ok(&dev) < 0) {
        puts("snapcount: no entropy device\n");
        return FAIL_RNG;
    }

    uint64_t acc = 0x1234;
    for (unsigned round = 0; round < ROUNDS; round++) {
        if (round) {
            char c = wait_for_host();
            printf("got %c\n", c);
        }
        if (rng_read(round) < 0)
            return FAIL_RNG;
        for (unsigned i = round * TICKS; i < (round + 1) * TICKS; i++) {
            acc = acc * 6364136223846793005ull + i;
            count = i;
            printf("tick %u %lx\n", i, acc);
        }
    }
    for (uint64_t i = 0; i < AREA_WORDS; i++) {
        if (area[i] != pattern(i)) {
            printf("snapcount: memory word %lu changed\n", i);
            return FAIL_MEMORY;
        }
    }
    if (count != ROUNDS * TICKS - 1) {
        puts("snapcount: the count in memory is wrong\n");
        return FAIL_COUNT;
    }
    puts("done\n");
    return 0;
}
