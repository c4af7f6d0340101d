# PVH entry: QEMU (or Xen) enters here in 32-bit protected mode with paging off and ebx holding
# the physical address of the hvm_start_info structure. We build boot page tables that map the
# first 4 GiB three times over with 2 MiB pages -- at 0 (identity, for this stub), at the
# direct-map base 0xffff800000000000, and the first GiB at 0xffffffff80000000 where the kernel
# is linked -- enter long mode and call kernel_main(start_info_phys) on the boot stack.
# AT&T syntax. See docs/boot.md.

.section .note.pvh, "a", @note
    .balign 4
    .long 4                     # name size ("Xen\0")
    .long 8                     # descriptor size: QEMU reads a 64-bit entry for ELF64
    .long 18                    # XEN_ELFNOTE_PHYS32_ENTRY
    .asciz "Xen"
    .balign 4
    .quad pvh_start32
    .balign 4

.section .boot.text, "ax"
.code32
.global pvh_start32
pvh_start32:
    cli
    cld
    movl %ebx, %esi                     # keep hvm_start_info across the setup

    # Zero the boot page tables.
    movl $__boot_bss_start, %edi
    movl $__boot_bss_end, %ecx
    subl %edi, %ecx
    xorl %eax, %eax
    rep stosb

    # PML4[0] (identity) and PML4[256] (direct map) -> boot_pdpt_low; PML4[511] -> boot_pdpt_high.
    movl $boot_pdpt_low, %eax
    orl $3, %eax
    movl %eax, boot_pml4
    movl %eax, boot_pml4 + 256 * 8
    movl $boot_pdpt_high, %eax
    orl $3, %eax
    movl %eax, boot_pml4 + 511 * 8

    # boot_pdpt_low[0..4] -> the four page directories; boot_pdpt_high[510] -> the first one.
    movl $boot_pd, %eax
    orl $3, %eax
    movl %eax, boot_pdpt_high + 510 * 8
    xorl %ecx, %ecx
1:  movl %eax, boot_pdpt_low(, %ecx, 8)
    addl $4096, %eax
    incl %ecx
    cmpl $4, %ecx
    jne 1b

    # 2048 entries of 2 MiB: physical 0 .. 4 GiB, present + writable + huge.
    xorl %ecx, %ecx
2:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax
    movl %eax, boot_pd(, %ecx, 8)
    incl %ecx
    cmpl $2048, %ecx
    jne 2b

    # CR4: PAE, OSFXSR, OSXMMEXCPT (SSE is used by the precompiled core library).
    movl %cr4, %eax
    orl $((1 << 5) | (1 << 9) | (1 << 10)), %eax
    movl %eax, %cr4
    movl $boot_pml4, %eax
    movl %eax, %cr3
    # EFER: SCE, LME, NXE.
    movl $0xc0000080, %ecx
    rdmsr
    orl $((1 << 0) | (1 << 8) | (1 << 11)), %eax
    wrmsr
    # CR0: PE, MP, no EM, WP, PG.
    movl %cr0, %eax
    andl $~(1 << 2), %eax
    orl $((1 << 31) | (1 << 16) | (1 << 1) | 1), %eax
    movl %eax, %cr0

    lgdt boot_gdtr
    ljmp $0x08, $pvh_start64

.code64
pvh_start64:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movabsq $boot_stack_top, %rsp

    # Zero the kernel's .bss (the boot stack is in it, but nothing is on it yet).
    movabsq $__bss_start, %rdi
    movabsq $__bss_end, %rcx
    subq %rdi, %rcx
    xorl %eax, %eax
    rep stosb

    movl %esi, %edi                     # kernel_main(start_info_phys)
    xorl %ebp, %ebp                     # ends frame-pointer backtraces
    movabsq $kernel_main, %rax
    callq *%rax
3:  cli
    hlt
    jmp 3b

.section .boot.data, "aw"
    .balign 8
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff            # 0x08: 64-bit kernel code
    .quad 0x00cf92000000ffff            # 0x10: kernel data
boot_gdt_end:
boot_gdtr:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt

.section .boot.bss, "aw", @nobits
    .balign 4096
boot_pml4:      .skip 4096
boot_pdpt_low:  .skip 4096
boot_pdpt_high: .skip 4096
boot_pd:        .skip 4096 * 4

# The kernel stack and the double-fault stack, each above an unmapped guard page (the kernel's
# own page tables leave the guard pages out; see paging.rs).
.section .bss.stacks, "aw", @nobits
    .balign 4096
.global boot_stack_guard, boot_stack_bottom, boot_stack_top
boot_stack_guard:   .skip 4096
boot_stack_bottom:  .skip 65536
boot_stack_top:
.global fault_stack_guard, fault_stack_bottom, fault_stack_top
fault_stack_guard:  .skip 4096
fault_stack_bottom: .skip 16384
fault_stack_top:
