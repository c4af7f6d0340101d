//! The Linux baseline: Debian's kernel and a busybox initramfs, booted in the same QEMU with the
//! same flags as Tutti, so every benchmark has a Linux figure measured in the same run.
