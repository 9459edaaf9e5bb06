//! The smallest Rust program: the floor under every cold-start figure (the
//! cost of starting and ending a process on this machine).

fn main() {}
