# Stops in the stopwatch driver's interrupt handler and shows where:
#   cargo xtask gdb --batch xtask/gdb/stopwatch-interrupt.gdb
# then type `timeout 1` in the guest shell (`cargo xtask serial`).
# `cargo xtask test debug gdb` runs it and checks the backtrace.
break guest_kernel::drivers::stopwatch::Stopwatch::handle_interrupt
continue
backtrace
info locals
