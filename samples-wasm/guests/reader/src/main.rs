//! Prints the contents of the file named by its first argument (default /data/message.txt).
//! Exits 1 with the error on stderr if it cannot be read. Used for volume sharing and for
//! escape attempts (`..`, absolute paths, symlinks).
fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/data/message.txt".to_string());
    match std::fs::read_to_string(&path) {
        Ok(content) => println!("{content}"),
        Err(error) => {
            eprintln!("read {path}: {error}");
            std::process::exit(1);
        }
    }
}
