//! Prints the contents of the file named by its first argument (default /data/message.txt).
//! Exits 1 with the error on stderr if it cannot be read. Used for volume sharing and for
//! escape attempts (`..`, absolute paths, symlinks). With `READ_EVERY_MS` set it keeps
//! running, reading the file again that often and printing it whenever it changed (for
//! volumes that are kept current). With `KEEP_GOING=1` as well, a failed read is printed to
//! stderr and the loop goes on (for paths swapped under the guest while it reads).
fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/data/message.txt".to_string());
    let every = std::env::var("READ_EVERY_MS")
        .ok()
        .and_then(|ms| ms.parse::<u64>().ok());
    let keep_going = std::env::var("KEEP_GOING").is_ok_and(|v| v == "1");
    let mut last = None;
    loop {
        match std::fs::read_to_string(&path) {
            Ok(content) => {
                if last.as_ref() != Some(&content) {
                    println!("{content}");
                    last = Some(content);
                }
            }
            Err(error) => {
                eprintln!("read {path}: {error}");
                if !(keep_going && every.is_some()) {
                    std::process::exit(1);
                }
                last = None;
            }
        }
        match every {
            Some(ms) => std::thread::sleep(std::time::Duration::from_millis(ms)),
            None => return,
        }
    }
}
