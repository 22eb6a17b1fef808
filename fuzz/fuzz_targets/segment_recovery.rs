//! Recovery: the bytes as the only segment of a log directory, opened, read, reopened.
#![no_main]
use std::path::PathBuf;
use std::sync::OnceLock;

/// One scratch directory per fuzzing process, emptied before every input (tmpfs when present).
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("minikafka-fuzz-recovery-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch directory");
        dir
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = scratch();
    for entry in std::fs::read_dir(dir).expect("scratch directory").flatten() {
        let _ = std::fs::remove_file(entry.path());
    }
    minikafka::fuzzing::recover_segment(dir, data);
});
