/* SPDX-License-Identifier: Apache-2.0 */
/* Standalone platform devices put on a VM: their ports on its PIO bus, their
 * exit requests to its run, their life tied to it. */
#include <errno.h>
#include <stdlib.h>
#include <vmm/bus.h>
#include <vmm/vm.h>

#include "devices_internal.h"
#include "vmm_internal.h"

void devices_vm_request_exit(void *vm, enum vmm_exit_reason reason, int status, const char *detail)
{
    vmm_vm_request_exit(vm, reason, status, detail);
}

struct devices_vm_glue {
    struct vmm_vm *vm;
    void *dev;
    void (*destroy)(void *dev);
    unsigned nports;
    uint16_t ports[DEVICES_MAX_RANGES]; /* the bases claimed */
};

static void glue_release(struct devices_vm_glue *g)
{
    struct vmm_bus *pio = vmm_vm_pio_bus(g->vm);
    while (g->nports > 0)
        (void)vmm_bus_unregister(pio, g->ports[--g->nports]);
}

static void glue_cleanup(void *opaque)
{
    struct devices_vm_glue *g = opaque;
    glue_release(g);
    g->destroy(g->dev);
    free(g);
}

int devices_vm_attach_pio(struct vmm_vm *vm, const char *name, void *dev,
                          void (*destroy)(void *dev), const struct devices_pio_range *ranges,
                          unsigned n)
{
    int r = -EINVAL;
    struct devices_vm_glue *g = NULL;
#if defined(__aarch64__)
    /* arm64 has no port I/O: nothing would ever reach the ports. */
    vmm_log_error("%s: port I/O devices do not exist on arm64", name);
    r = -ENOTSUP;
    goto err;
#endif
    if (n == 0 || n > DEVICES_MAX_RANGES)
        goto err;
    r = -ENOMEM;
    g = calloc(1, sizeof(*g));
    if (!g)
        goto err;
    *g = (struct devices_vm_glue){.vm = vm, .dev = dev, .destroy = destroy};
    for (unsigned i = 0; i < n; i++) {
        const struct devices_pio_range *p = &ranges[i];
        r = vmm_bus_register(vmm_vm_pio_bus(vm), p->port, p->len, p->ops, dev);
        if (r < 0 && p->len == 1)
            vmm_log_error("%s: cannot claim port 0x%x: %s", name, p->port, vmm_strerror(r));
        else if (r < 0)
            vmm_log_error("%s: cannot claim ports 0x%x-0x%x: %s", name, p->port,
                          p->port + p->len - 1u, vmm_strerror(r));
        if (r < 0)
            goto err_release;
        g->ports[g->nports++] = p->port;
    }
    r = vmm_vm_add_cleanup(vm, glue_cleanup, g);
    if (r < 0)
        goto err_release;
    return 0;

err_release:
    glue_release(g);
err:
    free(g);
    destroy(dev);
    return r;
}
