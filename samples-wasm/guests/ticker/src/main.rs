//! Long-running: prints `tick N` every `TICK_MS` milliseconds (default 1000), forever.
fn main() {
    let period = std::env::var("TICK_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(1000);
    for n in 0u64.. {
        println!("tick {n}");
        std::thread::sleep(std::time::Duration::from_millis(period));
    }
}
