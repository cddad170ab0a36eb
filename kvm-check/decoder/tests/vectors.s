// SPDX-License-Identifier: GPL-2.0-or-later
//
// Test vectors for the A64 access classifier: one instruction per line,
// its expected class key after `// expect:`. Assembled at test time by
// `aarch64-linux-gnu-as` (Debian's binutils-aarch64-linux-gnu), so the
// words are the assembler's, not hand-encoded.

    // Single general-purpose register, every size and addressing form.
    ldr     w0, [x1]                // expect: single/unsigned-offset
    ldr     x0, [x1, #8]            // expect: single/unsigned-offset
    ldrb    w0, [x1, #3]            // expect: single/unsigned-offset
    ldrh    w0, [x1, #2]            // expect: single/unsigned-offset
    ldrsb   x0, [x1]                // expect: single/unsigned-offset
    ldrsh   w0, [x1]                // expect: single/unsigned-offset
    ldrsw   x0, [x1, #4]            // expect: single/unsigned-offset
    str     w0, [x1]                // expect: single/unsigned-offset
    str     x0, [x1, #4088]         // expect: single/unsigned-offset
    strb    w0, [x1]                // expect: single/unsigned-offset
    strh    w0, [x1, #6]            // expect: single/unsigned-offset
    str     wzr, [x1, #48]          // expect: single/unsigned-offset
    ldur    w0, [x1, #-4]           // expect: single/unscaled
    stur    x0, [x1, #1]            // expect: single/unscaled
    ldursw  x0, [x1, #-8]           // expect: single/unscaled
    ldr     w0, [x1, x2]            // expect: single/register-offset
    ldr     x0, [x1, w2, uxtw #3]   // expect: single/register-offset
    strb    w0, [x1, x2]            // expect: single/register-offset
    ldtr    w0, [x1]                // expect: single/unprivileged
    sttr    x0, [x1, #8]            // expect: single/unprivileged
    ldr     w0, .                   // expect: single/literal
    ldrsw   x0, .                   // expect: single/literal

    // Acquire/release of one register: emulable.
    ldar    w0, [x1]                // expect: ordered
    stlr    x0, [x1]                // expect: ordered
    ldarb   w0, [x1]                // expect: ordered
    stlrh   w0, [x1]                // expect: ordered
    ldlar   w0, [x1]                // expect: ordered
    ldapr   w0, [x1]                // expect: ordered
    ldapr   x0, [x1]                // expect: ordered
    ldapur  w0, [x1, #4]            // expect: ordered
    stlur   x0, [x1, #-8]           // expect: ordered

    // Prefetches access no data.
    prfm    pldl1keep, [x1]         // expect: prefetch
    prfum   pldl1keep, [x1, #1]     // expect: prefetch
    prfm    pldl1keep, [x1, x2]     // expect: prefetch
    prfm    pldl1keep, .            // expect: prefetch

    // Writeback: what read_volatile can become (the trial's offender first).
    ldr     w8, [x26, #48]!         // expect: writeback/pre-index
    ldr     w0, [x1, #0]!           // expect: writeback/pre-index
    str     x0, [x1, #-16]!         // expect: writeback/pre-index
    strb    w0, [x1, #1]!           // expect: writeback/pre-index
    ldr     w0, [x1], #4            // expect: writeback/post-index
    strh    w0, [x1], #2            // expect: writeback/post-index
    ldrsw   x0, [x1], #4            // expect: writeback/post-index

    // Pairs, any addressing.
    ldp     w0, w1, [x2]            // expect: pair
    stp     x0, x1, [x2, #16]       // expect: pair
    ldp     x0, x1, [x2, #16]!      // expect: pair
    stp     xzr, xzr, [x2], #16     // expect: pair
    ldnp    x0, x1, [x2]            // expect: pair
    ldpsw   x0, x1, [x2]            // expect: pair

    // SIMD/FP registers.
    ldr     q0, [x1]                // expect: simd-fp
    str     d0, [x1, #8]            // expect: simd-fp
    ldr     s0, [x1, x2]            // expect: simd-fp
    ldur    b0, [x1, #-1]           // expect: simd-fp
    ldr     q0, [x1, #16]!          // expect: simd-fp
    str     h0, [x1], #2            // expect: simd-fp
    ldp     q0, q1, [x2]            // expect: simd-fp
    ldr     d0, .                   // expect: simd-fp
    ld1     {v0.4s}, [x1]           // expect: simd-structure
    st1     {v0.16b, v1.16b}, [x1], #32 // expect: simd-structure
    ld1     {v0.s}[1], [x1]         // expect: simd-structure
    ld4r    {v0.8b-v3.8b}, [x1]     // expect: simd-structure

    // Exclusives and atomics.
    ldxr    w0, [x1]                // expect: exclusive
    stxr    w2, x0, [x1]            // expect: exclusive
    ldaxr   x0, [x1]                // expect: exclusive
    stlxrb  w2, w0, [x1]            // expect: exclusive
    ldxp    x0, x1, [x2]            // expect: exclusive
    stlxp   w3, x0, x1, [x2]        // expect: exclusive
    cas     w0, w1, [x2]            // expect: atomic
    casal   x0, x1, [x2]            // expect: atomic
    casp    x0, x1, x2, x3, [x4]    // expect: atomic
    ldadd   w0, w1, [x2]            // expect: atomic
    swpal   x0, x1, [x2]            // expect: atomic
    stset   w0, [x2]                // expect: atomic
    ldumaxh w0, w1, [x2]            // expect: atomic

    // Pointer authentication and memory tagging.
    ldraa   x0, [x1]                // expect: pointer-auth
    ldrab   x0, [x1, #8]!           // expect: pointer-auth
    stg     x0, [x1]                // expect: memory-tag
    ldg     x0, [x1]                // expect: memory-tag

    // Memory copy and set (FEAT_MOPS), in prologue/main/epilogue triples.
    cpyfp   [x0]!, [x1]!, x2!       // expect: other-load-store
    cpyfm   [x0]!, [x1]!, x2!       // expect: other-load-store
    cpyfe   [x0]!, [x1]!, x2!       // expect: other-load-store
    setp    [x0]!, x1!, x2          // expect: other-load-store
    setm    [x0]!, x1!, x2          // expect: other-load-store
    sete    [x0]!, x1!, x2          // expect: other-load-store

    // Not loads or stores at all.
    nop                             // expect: not-load-store
    dc      zva, x0                 // expect: not-load-store
    hlt     #0xf000                 // expect: not-load-store
    add     x0, x1, x2              // expect: not-load-store
