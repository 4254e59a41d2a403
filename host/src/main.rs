fn main() -> std::process::ExitCode {
    mulesoft_audit_host::cli::main()
}
