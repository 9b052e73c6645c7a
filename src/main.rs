fn main() -> std::process::ExitCode {
    firebreak::cli::main()
}
