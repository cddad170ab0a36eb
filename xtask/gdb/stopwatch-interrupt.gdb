# SPDX-License-Identifier: GPL-2.0-or-later
# Stops in the stopwatch driver's interrupt handler and shows where:
#   cargo xtask gdb --batch xtask/gdb/stopwatch-interrupt.gdb
# then type `timeout 1` in the guest shell (`cargo xtask serial`).
# `cargo xtask test debug gdb` runs it and checks the backtrace.
# (By file and function: the kernel's line tables carry no full Rust
# paths for gdb to resolve `Stopwatch::handle_interrupt`.)
break stopwatch/mod.rs:handle_interrupt
continue
backtrace
info locals
