//! Grows its memory by 1 MiB every `STEP_MS` milliseconds (default 5), touching every page,
//! and prints the total after each 8 MiB, until it is stopped or its allocator fails.
fn main() {
    let step = std::env::var("STEP_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(5);
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        held.push(vec![1u8; 1 << 20]);
        if held.len() % 8 == 0 {
            println!("holding {} MiB", held.len());
        }
        std::thread::sleep(std::time::Duration::from_millis(step));
    }
}
