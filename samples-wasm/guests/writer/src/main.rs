//! Writes `CONTENT` (default "hello from writer") to the file named by its first argument
//! (default /data/message.txt). Exits 1 with the error on stderr if the write fails. With
//! `LINK_FROM=PATH` it makes the file a hard link to PATH instead (for escape attempts).
fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/data/message.txt".to_string());
    if let Ok(from) = std::env::var("LINK_FROM") {
        match std::fs::hard_link(&from, &path) {
            Ok(()) => println!("linked {path} to {from}"),
            Err(error) => {
                eprintln!("link {path} to {from}: {error}");
                std::process::exit(1);
            }
        }
        return;
    }
    let content = std::env::var("CONTENT").unwrap_or_else(|_| "hello from writer".to_string());
    match std::fs::write(&path, content) {
        Ok(()) => println!("wrote {path}"),
        Err(error) => {
            eprintln!("write {path}: {error}");
            std::process::exit(1);
        }
    }
}
