//! Runs for a moment (`CRASH_AFTER_MS`, default 200), then exits with `EXIT_CODE` (default 3).
fn main() {
    let after = std::env::var("CRASH_AFTER_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(200);
    let code = std::env::var("EXIT_CODE")
        .ok()
        .and_then(|code| code.parse().ok())
        .unwrap_or(3);
    println!("crasher starting");
    std::thread::sleep(std::time::Duration::from_millis(after));
    eprintln!("crasher exiting with {code}");
    std::process::exit(code);
}
