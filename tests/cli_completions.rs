//! `minikafka completions SHELL` prints a script that completes the real command tree.

use std::process::Command;

fn completions(shell: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_minikafka"))
        .args(["completions", shell])
        .output()
        .expect("the minikafka binary runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn each_supported_shell_gets_a_script_naming_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let (ok, script) = completions(shell);
        assert!(ok, "{shell}: non-zero exit");
        for word in ["minikafka", "topic", "produce", "consume", "completions"] {
            assert!(script.contains(word), "{shell} script lacks {word}");
        }
    }
    let (_, bash) = completions("bash");
    assert!(bash.contains("complete -F _minikafka"), "bash registers its function");
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_minikafka"))
        .args(["completions", "tcsh"])
        .output()
        .expect("the minikafka binary runs");
    assert_eq!(out.status.code(), Some(2), "clap's usage-error exit code");
    assert!(out.stdout.is_empty());
}
