//! Writes `CONTENT` (default "hello from writer") to the file named by its first argument
//! (default /data/message.txt). Exits 1 with the error on stderr if the write fails.
fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/data/message.txt".to_string());
    let content = std::env::var("CONTENT").unwrap_or_else(|_| "hello from writer".to_string());
    match std::fs::write(&path, content) {
        Ok(()) => println!("wrote {path}"),
        Err(error) => {
            eprintln!("write {path}: {error}");
            std::process::exit(1);
        }
    }
}
