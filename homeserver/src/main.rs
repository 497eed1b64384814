//! The `mobium` binary (a placeholder until the server is wired up).

fn main() {}
