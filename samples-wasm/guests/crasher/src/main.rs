//! Runs for a moment (`CRASH_AFTER_MS`, default 200), then exits with `EXIT_CODE` (default 3).
//!
//! `FAIL_PERCENT` (0–100, default 100) makes the failure a matter of chance: each run
//! exits with `EXIT_CODE` with that probability and with 0 otherwise, for Jobs whose pods
//! fail some of the time.
use std::hash::BuildHasher;

fn main() {
    let after = std::env::var("CRASH_AFTER_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(200);
    let code = std::env::var("EXIT_CODE")
        .ok()
        .and_then(|code| code.parse().ok())
        .unwrap_or(3);
    let fail_percent: u64 = std::env::var("FAIL_PERCENT")
        .ok()
        .and_then(|percent| percent.parse().ok())
        .unwrap_or(100)
        .min(100);
    // std seeds its hash maps from the host's random source (WASI `random_get`), so a
    // fresh hasher gives a random number without a dependency.
    let roll = std::hash::RandomState::new().hash_one(0u8) % 100;
    let code = if roll < fail_percent { code } else { 0 };
    println!("crasher starting");
    std::thread::sleep(std::time::Duration::from_millis(after));
    eprintln!("crasher exiting with {code}");
    std::process::exit(code);
}
