//! Traps. With the argument `stack-overflow` it recurses until the wasm stack is exhausted;
//! otherwise it executes `unreachable`.
fn recurse(depth: u64) -> u64 {
    // Calling through black_box keeps the optimiser from turning the recursion into a loop.
    let next = std::hint::black_box(recurse as fn(u64) -> u64);
    1 + next(std::hint::black_box(depth + 1))
}

fn main() {
    println!("trapper about to trap");
    if std::env::args().nth(1).as_deref() == Some("stack-overflow") {
        println!("{}", recurse(0));
    } else {
        std::process::abort();
    }
}
