//! `spoke`: run a hub, or list, describe and call connectors through one.

fn main() -> std::process::ExitCode {
    spoke_hub::cli::main()
}
