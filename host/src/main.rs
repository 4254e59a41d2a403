fn main() -> std::process::ExitCode {
    fixed_mmap_threshold();
    mulesoft_audit_host::cli::main()
}

/// Large blocks (an object's bytes, lifted from the guest: megabytes each) straight from and
/// back to the system. glibc raises its mmap threshold to the largest block freed so far, after
/// which such blocks come from the heap and their memory stays with the process once freed: a
/// 1M-entry backfill held two objects' worth more (peak RSS 67.5 against 57 MiB; BENCHMARKS.md).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn fixed_mmap_threshold() {
    // SAFETY: mallopt only sets an allocator parameter; called first, before any thread exists.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn fixed_mmap_threshold() {}
