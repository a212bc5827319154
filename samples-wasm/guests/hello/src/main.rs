//! Prints a greeting, its arguments and the `GREETING` variable, then exits 0.
fn main() {
    println!("hello from wasm");
    for arg in std::env::args().skip(1) {
        println!("arg: {arg}");
    }
    if let Ok(greeting) = std::env::var("GREETING") {
        println!("GREETING={greeting}");
    }
    eprintln!("hello on stderr");
}
