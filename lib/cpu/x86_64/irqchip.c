/* SPDX-License-Identifier: Apache-2.0 */
/* The in-kernel irqchip's GSI routing, matching the machine description. */
#include <errno.h>

#include "../cpu_internal.h"

#define ISA_IRQS    16
#define PIC_PINS    8
#define TIMER_IRQ   0
#define CASCADE_IRQ 2
#define IOAPIC_PINS 24

/*
 * The MP table and the MADT say what a PC says: ISA IRQ 0 arrives at IOAPIC
 * pin 2 (the pin the 8259 cascade would use), the other ISA IRQs at their own
 * pin. KVM's default routing sends GSI n to IOAPIC pin n, so the in-kernel
 * PIT, which raises GSI 0, would reach pin 0 while the guest unmasks pin 2.
 * A guest that boots with ACPI on a hardware-reduced machine never uses the
 * PIT; one booted with acpi=off takes it for its clock and would wait for
 * ticks forever. So: GSI 0-15 to the 8259 pair (all but the cascade), GSI 0
 * to IOAPIC pin 2, and GSI n to pin n for the other pins (GSI 2 has none).
 */
int vmm_x86_kernel_irqchip_routes(struct vmm_vm *vm)
{
    struct kvm_irq_routing_entry e[(ISA_IRQS - 1) + (IOAPIC_PINS - 1)];
    unsigned n = 0;
    for (unsigned irq = 0; irq < ISA_IRQS; irq++) {
        if (irq == CASCADE_IRQ)
            continue;
        e[n++] = (struct kvm_irq_routing_entry){
            .gsi = irq,
            .type = KVM_IRQ_ROUTING_IRQCHIP,
            .u.irqchip = {.irqchip =
                              irq < PIC_PINS ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE,
                          .pin = irq % PIC_PINS}};
    }
    for (unsigned gsi = 0; gsi < IOAPIC_PINS; gsi++) {
        if (gsi == CASCADE_IRQ)
            continue;
        e[n++] = (struct kvm_irq_routing_entry){
            .gsi = gsi,
            .type = KVM_IRQ_ROUTING_IRQCHIP,
            .u.irqchip = {.irqchip = KVM_IRQCHIP_IOAPIC,
                          .pin = gsi == TIMER_IRQ ? CASCADE_IRQ : gsi}};
    }
    return vmm_vm_routes_set_chip(vm, e, n);
}
