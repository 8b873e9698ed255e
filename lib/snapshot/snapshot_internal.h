/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the components share to take part in a snapshot (include/vmm/snapshot.h):
 * the state file's building blocks (sections written into a growing buffer,
 * read back through a bounded cursor) and the VM's list of parts, each a
 * device or chip with its own freeze/save/restore.
 *
 * Everything a reader hands out comes from a file, so from anyone: every
 * get is bounded by its section, and a short or overlong section is
 * -EBADMSG. State is written in host byte order (x86_64 only for now).
 */
#ifndef VMM_SNAPSHOT_INTERNAL_H
#define VMM_SNAPSHOT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vmm_vm;

/* Section tags: four ASCII characters, first in the low byte. */
#define SNAP_TAG(a, b, c, d)                                                                       \
    ((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 | (uint32_t)(d) << 24)

#define SNAP_TAG_META   SNAP_TAG('M', 'E', 'T', 'A') /* id, vCPU count, irqchip */
#define SNAP_TAG_APP    SNAP_TAG('A', 'P', 'P', 'D') /* the embedder's blob */
#define SNAP_TAG_MEMORY SNAP_TAG('M', 'E', 'M', 'R') /* region table of the memory file */
#define SNAP_TAG_VM     SNAP_TAG('V', 'M', 'S', 'T') /* clock, in-kernel irqchip */
#define SNAP_TAG_VCPU   SNAP_TAG('V', 'C', 'P', 'U') /* instance: vCPU index */
#define SNAP_TAG_IOAPIC SNAP_TAG('I', 'O', 'A', 'P') /* the split irqchip's IOAPIC */
#define SNAP_TAG_UART   SNAP_TAG('U', 'A', 'R', 'T') /* instance: base port */
#define SNAP_TAG_RTC    SNAP_TAG('R', 'T', 'C', ' ') /* instance: base port */
#define SNAP_TAG_VIRTIO SNAP_TAG('V', 'I', 'R', 'T') /* instance: MMIO base >> 12 */
#define SNAP_TAG_VGEN   SNAP_TAG('V', 'G', 'E', 'N') /* the VMGenID; instance 0 */
#define SNAP_TAG_BASE   SNAP_TAG('B', 'A', 'S', 'E') /* a standalone diff's base */
#define SNAP_TAG_PCI    SNAP_TAG('P', 'C', 'I', 'B') /* a root complex; instance: ECAM >> 20 */
#define SNAP_TAG_VPCI   SNAP_TAG('V', 'P', 'C', 'I') /* a virtio-pci function; instance: BDF */

/* ---- writing ---- */

/* A state file being built in memory. err is sticky: once a put fails
 * (out of memory) every later one does nothing, and the caller checks it
 * once at the end. */
struct vmm_snap_writer {
    uint8_t *buf;
    size_t len, cap;
    size_t section; /* offset of the open section's header; SIZE_MAX: none */
    int err;
};

void snap_writer_init(struct vmm_snap_writer *w);
void snap_writer_fini(struct vmm_snap_writer *w);
void snap_put(struct vmm_snap_writer *w, const void *p, size_t n);
void snap_put_u32(struct vmm_snap_writer *w, uint32_t v);
void snap_put_u64(struct vmm_snap_writer *w, uint64_t v);
/* Open a section (closing any open one) and close it (pads to 8 bytes). */
void snap_section_begin(struct vmm_snap_writer *w, uint32_t tag, uint32_t instance);
void snap_section_end(struct vmm_snap_writer *w);

/* ---- reading ---- */

/* A bounded view of one section's payload. */
struct vmm_snap_reader {
    const uint8_t *p;
    size_t left;
    uint32_t tag, instance;
};

/* Copy n bytes out, or -EBADMSG (nothing copied) when fewer are left. */
int snap_get(struct vmm_snap_reader *r, void *p, size_t n);
int snap_get_u32(struct vmm_snap_reader *r, uint32_t *v);
int snap_get_u64(struct vmm_snap_reader *r, uint64_t *v);
/* -EBADMSG unless the section was read to its end exactly. */
int snap_done(const struct vmm_snap_reader *r);

/* A parsed state file: its body, checked, split into sections. */
struct snap_section {
    uint32_t tag, instance;
    const uint8_t *payload;
    size_t len;
    bool used; /* restore: a part took it */
};

struct vmm_snap_file {
    uint8_t *data; /* the whole file */
    size_t size;
    struct snap_section *sections;
    unsigned count;
};

/* State file header. */
#define SNAP_MAGIC        "LIBVMMSN"
#define SNAP_VERSION      1u
#define SNAP_HEADER_SIZE  32u
#define SNAP_MAX_FILE     (64u << 20) /* a state file larger than this is refused */
#define SNAP_MAX_SECTIONS 4096u

/* Memory file: a header page, then each region at a page-aligned offset. */
#define SNAP_MEM_MAGIC   "LIBVMMMF"
#define SNAP_MEM_HEADER  4096u
#define SNAP_ID_BYTES    16u
#define SNAP_STATE_FILE  "state"
#define SNAP_MEMORY_FILE "memory"

/* CRC-32 (IEEE 802.3, reflected, as zlib's crc32) of n bytes, continuing crc
 * (0 to start). */
uint32_t snap_crc32(uint32_t crc, const void *p, size_t n);

/* Frame the writer's sections as a state file: header (magic, version,
 * length, CRC) then body. Returns a malloc'ed buffer of *size bytes or NULL
 * (w->err or -ENOMEM). */
uint8_t *snap_file_build(struct vmm_snap_writer *w, size_t *size);

/*
 * Check and split a state file held in data[0..size) (taken over: freed by
 * snap_file_free, also on failure). Returns 0, or -EBADMSG (bad magic, a
 * truncated or corrupt file, a malformed section), -EPROTO (another format
 * version): why gets a one-line reason either way.
 */
int snap_file_parse(uint8_t *data, size_t size, struct vmm_snap_file *f, char *why, size_t why_len);
void snap_file_free(struct vmm_snap_file *f);

/* The section (tag, instance) as a reader, marked used; -ENOENT if absent. */
int snap_file_find(struct vmm_snap_file *f, uint32_t tag, uint32_t instance,
                   struct vmm_snap_reader *r);

/* ---- steps shared by snapshots and migration (snapshot.c) ---- */

/* Pause the VM (*was_paused: whether it was already), have every vCPU
 * complete its last exit and freeze every part. On failure (logged) all is
 * as it was. */
int snap_world_stop(struct vmm_vm *vm, bool *was_paused);
/* Thaw every part (the VM stays paused). */
void snap_world_thaw(struct vmm_vm *vm);
/* The sections of everything but memory: META (id), APPD, the VM, vCPUs and
 * parts. Returns 0 or -errno (logged). */
int snap_state_put(struct vmm_vm *vm, const uint8_t *id, const void *app, uint32_t app_len,
                   struct vmm_snap_writer *w);
/* -EBUSY (logged) when the VM has run or runs. */
int snap_restore_check_fresh(struct vmm_vm *vm);
/* Check META against the VM and copy its id out. */
int snap_restore_meta(struct vmm_vm *vm, struct vmm_snap_file *f, uint8_t *id);
/* Everything after memory: the parts (each must be there, nothing else
 * may), the VM, then every vCPU. */
int snap_restore_rest(struct vmm_vm *vm, struct vmm_snap_file *f);

/* ---- VMM_RESTORE_UFFD (uffd.c) ---- */

struct vmm_uffd;
struct vmm_memory;

/* A userfaultfd over file_fd (dup'ed) for up to max_regions regions.
 * Returns 0 or -errno (logged). */
int vmm_snap_uffd_prepare(struct vmm_uffd **out, int file_fd, unsigned max_regions);
/* Empty region index and have its missing pages come from file_off on:
 * -ENOTSUP for a region not mapped anonymously by the library. */
int vmm_snap_uffd_add(struct vmm_uffd *u, struct vmm_memory *mem, unsigned index,
                      uint64_t file_off);
/* Start answering faults (and copying ahead), the VM owning the thread from
 * now on; without regions, just free u. Returns 0 or -errno. */
int vmm_snap_uffd_start(struct vmm_uffd *u, struct vmm_vm *vm);
/* Free u before start (its regions then fill with zeros as usual). */
void vmm_snap_uffd_abort(struct vmm_uffd *u);

/* ---- the VM's parts ---- */

/*
 * A device or chip that takes part in snapshots. Every call gets the
 * opaque registered with it. At snapshot, with every vCPU paused: freeze
 * (finish what is in flight, e.g. disk requests, then hold the part still
 * until thaw: typically by keeping its lock), save, then after guest memory
 * is written, thaw. freeze may refuse (-EBUSY...), logged; save and restore
 * return 0 or -errno, restore with a one-line reason logged. restore runs
 * on a part created like the saved one, before any vCPU runs. restored
 * (optional) runs once vmm_vm_restore has loaded everything, vCPUs
 * included, before the VM runs (not after a migration, which moves the same
 * instance): what a new instance of the saved VM needs (a new identity);
 * it returns 0 or -errno, logged.
 */
struct vmm_snap_part_ops {
    const char *name;
    uint32_t tag;
    int (*freeze)(void *opaque);
    void (*thaw)(void *opaque);
    int (*save)(void *opaque, struct vmm_snap_writer *w);
    int (*restore)(void *opaque, struct vmm_snap_reader *r);
    int (*restored)(void *opaque);
};

/* Register a part of vm under (ops->tag, instance): unique per VM.
 * Returns 0, -EEXIST or -ENOMEM. ops must outlive the VM. */
int vmm_snap_register(struct vmm_vm *vm, const struct vmm_snap_part_ops *ops, uint32_t instance,
                      void *opaque);

/* The opaque of the part (tag, instance), or NULL. */
void *vmm_snap_part_opaque(struct vmm_vm *vm, uint32_t tag, uint32_t instance);

/* Take a part off the list again (a device whose creation failed later). */
void vmm_snap_unregister(struct vmm_vm *vm, uint32_t tag, uint32_t instance);

/* Free the VM's list (vmm_vm_destroy). */
void vmm_snap_parts_free(struct vmm_vm *vm);

/* ---- live migration's stream (migrate.c) ---- */

struct vmm_memory;

#define MIG_MAGIC        SNAP_TAG('L', 'V', 'M', 'G')
#define MIG_VERSION_COPY 1u /* memory copied: HELLO, PAGES..., STATE, END */
#define MIG_VERSION      2u /* HELLO, then OFFER answered by ACCEPT */
#define MIG_HELLO        1u
#define MIG_PAGES        2u
#define MIG_STATE        3u
#define MIG_END          4u
#define MIG_REPLY        5u
#define MIG_OFFER        6u /* source: u32 capabilities it can use */
#define MIG_ACCEPT       7u /* target: u32 capabilities it takes (a subset) */
#define MIG_MEMFD        8u /* source: struct mig_memfd, one memfd in SCM_RIGHTS */

#define MIG_CAP_MEMFD (1u << 0) /* guest memory passed as memfds (Unix sockets) */

/* The most descriptors a message is read with (MIG_MEMFD carries one;
 * more is refused, not truncated away). */
#define MIG_MAX_FDS 4u

struct mig_header {
    uint32_t magic, type;
    uint64_t len;
};

/* MIG_MEMFD's payload: which region the descriptor backs, as the source
 * has it (checked against the target's). */
struct mig_memfd {
    uint32_t region;
    uint32_t flags; /* 0 */
    uint64_t gpa;
    uint64_t len;
};

/*
 * Read a message header from fd, with the descriptors that came with it
 * (close-on-exec) into fds[0 .. *nfds). Returns 0, -EPROTO (a bad magic,
 * more than MIG_MAX_FDS descriptors: none kept) or a socket error.
 */
int mig_recv_header(int fd, struct mig_header *h, int fds[MIG_MAX_FDS], unsigned *nfds);

/*
 * Check a MIG_MEMFD message (payload m, the nfds descriptors that came
 * with it) against mem: exactly one descriptor, a region of mem that may
 * take one (memory_region_anonymous or memory_region_memfd) at the same
 * gpa and of the same length, and a memfd of exactly that size sealed
 * against shrinking and open for writing. Returns 0 with *region set, or
 * -EPROTO with a one-line reason in why. Closes nothing.
 */
int mig_memfd_check(const struct vmm_memory *mem, const struct mig_memfd *m, const int *fds,
                    unsigned nfds, unsigned *region, char *why, size_t why_len);

#endif /* VMM_SNAPSHOT_INTERNAL_H */
