/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The VM generation ID (devices.h): 16 random bytes in guest memory that
 * change whenever the VM becomes a new instance of itself (a restore, a
 * clone), announced by an edge on the Generic Event Device's line, which
 * the DSDT turns into Notify(VGEN, 0x80) (lib/loader/acpi.c). The device
 * keeps the current ID itself: the copy in guest memory is the guest's to
 * read (and to scribble over).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <vmm/devices.h>
#include <vmm/memory.h>
#include <vmm/vm.h>

#include "snapshot/snapshot_internal.h"
#include "vmm_internal.h"

struct vmm_vmgenid {
    struct vmm_vm *vm;
    uint64_t gpa;
    unsigned gsi;
    uint8_t id[VMM_VMGENID_SIZE];
};

/* A new ID, into the device and guest memory (marked dirty). */
static int new_generation(struct vmm_vmgenid *g)
{
    uint8_t id[VMM_VMGENID_SIZE];
    if (getrandom(id, sizeof(id), 0) != (ssize_t)sizeof(id))
        return -errno;
    int r = vmm_memory_write(vmm_vm_memory(g->vm), g->gpa, id, sizeof(id));
    if (r < 0)
        return r;
    memcpy(g->id, id, sizeof(id));
    return 0;
}

/* ---- snapshots: where it is, and the ID (a migration keeps it) ---- */

static int vmgenid_save(void *opaque, struct vmm_snap_writer *w)
{
    struct vmm_vmgenid *g = opaque;
    snap_put_u64(w, g->gpa);
    snap_put_u32(w, g->gsi);
    snap_put(w, g->id, sizeof(g->id));
    return 0;
}

static int vmgenid_restore(void *opaque, struct vmm_snap_reader *r)
{
    struct vmm_vmgenid *g = opaque;
    uint64_t gpa;
    uint32_t gsi;
    uint8_t id[VMM_VMGENID_SIZE];
    if (snap_get_u64(r, &gpa) < 0 || snap_get_u32(r, &gsi) < 0 || snap_get(r, id, sizeof(id)) < 0 ||
        snap_done(r) < 0) {
        vmm_log_error("restore: malformed VMGenID state");
        return -EBADMSG;
    }
    if (gpa != g->gpa || gsi != g->gsi) {
        vmm_log_error("restore: the snapshot's VMGenID is at 0x%" PRIx64 " on GSI %" PRIu32
                      ", this VM's at 0x%" PRIx64 " on GSI %u",
                      gpa, gsi, g->gpa, g->gsi);
        return -EINVAL;
    }
    memcpy(g->id, id, sizeof(id));
    return 0;
}

/* After a whole restore, before the VM runs: a new generation, and the
 * edge that has the guest read it (the interrupt controllers are restored,
 * so it is delivered when the vCPUs run). */
static int vmgenid_restored(void *opaque)
{
    struct vmm_vmgenid *g = opaque;
    int r = new_generation(g);
    if (r == 0 && (r = vmm_vm_set_irq(g->vm, g->gsi, true)) == 0)
        r = vmm_vm_set_irq(g->vm, g->gsi, false);
    if (r < 0)
        vmm_log_error("restore: a new VM generation ID: %s", vmm_strerror(r));
    return r;
}

static const struct vmm_snap_part_ops vmgenid_snap = {
    .name = "VMGenID",
    .tag = SNAP_TAG_VGEN,
    .save = vmgenid_save,
    .restore = vmgenid_restore,
    .restored = vmgenid_restored,
};

static void vmgenid_free(void *opaque)
{
    free(opaque);
}

int vmm_vm_add_vmgenid(struct vmm_vm *vm, uint64_t gpa, unsigned gsi)
{
    if (!vm || (gpa & 7) || gsi >= VMM_IOAPIC_PINS || !vmm_vm_memory(vm) ||
        vmm_memory_check_range(vmm_vm_memory(vm), gpa, VMM_VMGENID_SIZE) != 0)
        return -EINVAL;
    struct vmm_vmgenid *g = calloc(1, sizeof(*g));
    if (!g)
        return -ENOMEM;
    *g = (struct vmm_vmgenid){.vm = vm, .gpa = gpa, .gsi = gsi};
    int r = new_generation(g);
    if (r < 0) {
        free(g);
        return r == -EROFS ? -EINVAL : r;
    }
    if ((r = vmm_snap_register(vm, &vmgenid_snap, 0, g)) < 0) {
        free(g);
        return r;
    }
    if ((r = vmm_vm_add_cleanup(vm, vmgenid_free, g)) < 0) {
        vmm_snap_unregister(vm, SNAP_TAG_VGEN, 0);
        free(g);
    }
    return r;
}

int vmm_vm_vmgenid(struct vmm_vm *vm, uint8_t id[VMM_VMGENID_SIZE])
{
    if (!vm || !id)
        return -EINVAL;
    struct vmm_vmgenid *g = vmm_snap_part_opaque(vm, SNAP_TAG_VGEN, 0);
    if (!g)
        return -ENOENT;
    memcpy(id, g->id, VMM_VMGENID_SIZE);
    return 0;
}
