//! A newcomer's first minute (issue 11): the broker starts on a data directory given as a bare
//! relative name that does not exist yet.

mod common;

use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Item 21: `--data-dir mydata` (no `./`, not there yet) used to fail with "fsync directory :
/// No such file or directory": the parent of `mydata` is the empty path, which cannot be opened.
#[test]
fn a_bare_relative_data_dir_is_created_in_the_working_directory() {
    let cwd = tempfile::tempdir().unwrap();
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let log = cwd.path().join("broker.log");
    let mut child = Command::new(common::BIN)
        .current_dir(cwd.path())
        .args(["broker", "--data-dir", "mydata", "--listen", &addr])
        .args(["--kafka-listen", "off", "--http-listen", "off"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(&addr).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("the broker exited ({status}) instead of starting:\n{log}");
        }
        assert!(Instant::now() < deadline, "the broker did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    }
    common::ok(common::run_cli(&addr, &["topic", "create", "first"], None));
    assert!(cwd.path().join("mydata").join("first").is_dir(), "created under the working dir");
    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let out = common::wait_with_deadline(child, Duration::from_secs(60), &["broker"]);
    assert!(out.status.success(), "{}", std::fs::read_to_string(&log).unwrap_or_default());
}
