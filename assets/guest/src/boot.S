/*
 * Ferry demo guest: multiboot v1 entry (32-bit protected mode, paging off), switch to long
 * mode, drop to ring 3 with IOPL=3. Ring-0 work is kept to a few dozen instructions because
 * nested PVM KVM emulates ring-0 code one instruction at a time (see ../README.md).
 *
 * Ring 0 maps the first RING0_PDES * 2 MiB (kernel, stacks, page tables, multiboot info);
 * ring 3 completes the identity map of the first 4 GiB (guest.c: complete_identity_map), which
 * it can because every page-table page lies inside that user-accessible first mapping.
 */

#define MB_MAGIC   0x1BADB002
#define MB_FLAGS   0x00000003          /* page-align modules, provide memory info */

/* Linux's x86-64 GDT layout (64-bit user code 0x33, user data 0x2b): PVM KVM runs ring 3 on
 * the host's own user segments, so the guest mirrors the layout it expects. */
#define SEL_KCODE  0x10
#define SEL_KDATA  0x18
#define SEL_UCODE32 0x20
#define SEL_UDATA  0x28
#define SEL_UCODE  0x30
#define SEL_TSS    0x40

#define PTE_FLAGS  0x07                /* present, writable, user */
#define PDE_FLAGS  0x87                /* present, writable, user, 2 MiB page */
#define RING0_PDES 4                   /* 8 MiB mapped before ring 3 */

        .section .multiboot, "a"
        .balign 4
        .long MB_MAGIC
        .long MB_FLAGS
        .long -(MB_MAGIC + MB_FLAGS)

        .section .text.boot, "ax"
        .code32
        .globl _start
_start:
        cli
        movl $boot_stack_top, %esp
        movl %ebx, mb_info_ptr

        /* PML4[0] -> PDPT; PDPT[0..3] -> PD0..PD3 (the PDs are zero: the loader zeroes .bss) */
        movl $(pdpt + PTE_FLAGS), pml4
        movl $(pd + PTE_FLAGS), pdpt
        movl $(pd + 0x1000 + PTE_FLAGS), pdpt + 8
        movl $(pd + 0x2000 + PTE_FLAGS), pdpt + 16
        movl $(pd + 0x3000 + PTE_FLAGS), pdpt + 24

        /* PD0[0..RING0_PDES-1]: identity, 2 MiB pages */
        movl $pd, %edi
        movl $PDE_FLAGS, %eax
        movl $RING0_PDES, %ecx
1:      movl %eax, (%edi)
        addl $0x200000, %eax
        addl $8, %edi
        decl %ecx
        jnz 1b

        /* TSS: RSP0, and an I/O permission bitmap that allows every port. IOPL=3 is enough
         * on TCG and ordinary KVM, but nested PVM KVM forces IOPL to 0 in ring 3 and grants
         * (emulates) a user-mode port access only when the TSS bitmap allows it. The bitmap
         * itself is zero (= allowed) because the loader zeroes .bss; 0xff terminates it. */
        movl $boot_stack_top, tss + 4
        movw $104, tss + 102
        movb $0xff, tss + 104 + 8192
        /* TSS descriptor base (bits 0..31; the image lives below 4 GiB) */
        movl $tss, %eax
        movw %ax, gdt_tss + 2
        shrl $16, %eax
        movb %al, gdt_tss + 4
        movb %ah, gdt_tss + 7

        lgdt gdt_ptr
        movw $SEL_KDATA, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss

        movl %cr4, %eax
        orl $0x20, %eax                 /* PAE */
        movl %eax, %cr4
        movl $pml4, %eax
        movl %eax, %cr3
        movl $0xC0000080, %ecx          /* EFER */
        rdmsr
        orl $0x100, %eax                /* LME */
        wrmsr
        movl %cr0, %eax
        orl $0x80000001, %eax           /* PG | PE */
        movl %eax, %cr0
        ljmp $SEL_KCODE, $long_entry

        .code64
long_entry:
        movw $SEL_KDATA, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        xorl %eax, %eax
        movw %ax, %fs
        movw %ax, %gs
        movw $SEL_TSS, %ax
        ltr %ax
        movl mb_info_ptr, %edi          /* first argument of guest_main */
        pushq $(SEL_UDATA | 3)          /* SS */
        pushq $user_stack_top           /* RSP */
        pushq $0x3002                   /* RFLAGS: IOPL=3, IF=0 (PVM keeps IF=1 underneath) */
        pushq $(SEL_UCODE | 3)          /* CS */
        pushq $user_entry               /* RIP */
        iretq

        .text
        .globl user_entry
user_entry:                             /* ring 3 from here on */
        xorl %r15d, %r15d               /* G, the rewrite counter: lives in r15 only */
        call guest_main
2:      jmp 2b

        .data
        .balign 16
gdt:
        .quad 0
        .quad 0x00CF9A000000FFFF        /* 0x08 kernel code, 32-bit (unused) */
        .quad 0x00AF9A000000FFFF        /* 0x10 kernel code, 64-bit */
        .quad 0x00CF92000000FFFF        /* 0x18 kernel data */
        .quad 0x00CFFA000000FFFF        /* 0x20 user code, 32-bit, DPL 3 (unused) */
        .quad 0x00CFF2000000FFFF        /* 0x28 user data, DPL 3 */
        .quad 0x00AFFA000000FFFF        /* 0x30 user code, 64-bit, DPL 3 */
        .quad 0
gdt_tss:                                /* 0x40 64-bit TSS, available; base filled at boot */
        .word 104 + 8192, 0             /* limit: TSS + full I/O bitmap + terminator - 1 */
        .byte 0, 0x89, 0x00, 0
        .long 0, 0
gdt_end:
        .balign 4
        .word 0
gdt_ptr:
        .word gdt_end - gdt - 1
        .long gdt


        .bss
        .balign 4096
pml4:   .skip 4096
pdpt:   .skip 4096
        .globl pd
pd:     .skip 4 * 4096
tss:    .skip 104 + 8192 + 1
        .balign 16
        .skip 4096
boot_stack_top:
        .skip 65536
user_stack_top:
        .balign 4
mb_info_ptr:
        .long 0

        .section .note.GNU-stack, "", @progbits
