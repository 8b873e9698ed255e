/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The growth convention of every public struct that crosses the API, and
 * VMM_INIT to follow it. Included by error.h, so by every libvmm header.
 *
 * A struct the caller passes in (a config, options, a boot state, an ops or
 * callback table) or the library fills out (a result, a record, stats)
 * starts with `uint32_t size`, which the caller sets to sizeof the struct as
 * its headers declare it. Fields are only ever appended, so:
 *
 * - a struct passed in is read for its first .size bytes only; the fields
 *   past them (added after the caller was built) take their defaults, which
 *   is what zero means in every such struct (a NULL callback: none);
 * - a struct filled out gets its first .size bytes only; .size keeps the
 *   caller's value;
 * - a size the library does not know, 0 (or less than the size field
 *   itself) or larger than its own struct (headers newer than the library),
 *   is refused with -EINVAL before anything happens. vmm_vcpu_exit, whose
 *   payload union must come whole, knows only the sizes its versions had.
 *
 * The library keeps its own zero-filled copy of what it reads, so a caller's
 * struct can be temporary. Not covered, because nothing there can grow: the
 * plain-data structs that only live inside another one (array elements,
 * payloads, sub-records: the outer struct's size covers them), fixed records
 * of an outside ABI (Linux boot_params, e820, PVH start info), and the
 * structs the library allocates and hands out by pointer.
 *
 * VMM_INIT(type, designators...) is a compound literal of type with .size
 * set: `struct vmm_vm_config cfg = VMM_INIT(struct vmm_vm_config,
 * .irqchip = VMM_IRQCHIP_SPLIT);` or `vmm_vm_create(&VMM_INIT(struct
 * vmm_vm_config), &vm)`. A struct filled out is declared the same way.
 */
#ifndef VMM_ABI_H
#define VMM_ABI_H

#define VMM_INIT(type, ...) ((type){.size = sizeof(type), __VA_ARGS__})

#endif /* VMM_ABI_H */
